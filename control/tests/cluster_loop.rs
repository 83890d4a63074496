//! The control loop in cluster mode, in paused time, over the in-memory store
//! (`weir_control::replica::memory`): one leader runs the steps, every replica routes by
//! the committed status, a takeover keeps the step and the pause's time, a deposed leader
//! is fenced, actions asked on a follower reach the leader, replicas that run different
//! specs hold the rollout, and a store out of reach stops every advance.

mod common;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use weir_config::Model;
use weir_control::replica::memory::{MemoryCluster, MemoryLink};
use weir_control::{Action, Controller, ControllerHandle, ControllerOptions};

use common::Router;

const STEPS: &str =
    "[{setWeight: 20}, {pause: {duration: 30s}}, {setWeight: 50}, {pause: {duration: 30s}}]";

fn model(image: &str) -> Arc<Model> {
    common::canary(image, STEPS, "")
}

struct Node {
    handle: ControllerHandle,
    router: Arc<Router>,
    models: watch::Sender<Arc<Model>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Node {
    fn start(link: Arc<MemoryLink>, model: Arc<Model>) -> Node {
        let (models, rx) = watch::channel(model);
        let router = Arc::new(Router::default());
        let (c, handle) = Controller::new(
            rx,
            Arc::new(common::Metrics),
            router.clone(),
            ControllerOptions {
                state_dir: None,
                proxy_url: None,
                cluster: Some(link),
            },
        )
        .unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(c.run(stop.clone()));
        Node {
            handle,
            router,
            models,
            stop,
            task,
        }
    }

    /// The canary weight (basis points) this replica routes now.
    fn weight(&self) -> u32 {
        self.router
            .last()
            .map_or(0, |p| p.canary_weight.basis_points())
    }

    /// Every canary weight it routed, in order, repeats removed.
    fn weights(&self) -> Vec<u32> {
        let mut w: Vec<u32> = self
            .router
            .all()
            .iter()
            .map(|p| p.as_ref().map_or(0, |p| p.canary_weight.basis_points()))
            .collect();
        w.dedup();
        w
    }

    async fn kill(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Waits (test time, 100 ms at a time) until `f` holds, at most `limit`.
async fn until(limit: Duration, what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn committed_weight(cluster: &MemoryCluster) -> u32 {
    cluster
        .status("app")
        .map_or(0, |c| c.status.canary_weight_bp)
}

/// Three replicas; a leads. Rolls out app:v2 and waits for the first step everywhere.
async fn three_at_20_percent() -> (MemoryCluster, Vec<Node>) {
    let cluster = MemoryCluster::new();
    let nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|n| Node::start(cluster.join(n), model("v1")))
        .collect();
    cluster.elect("a");
    until(Duration::from_secs(5), "v1 committed as stable", || {
        cluster
            .status("app")
            .and_then(|c| c.status.stable)
            .is_some_and(|r| r.image == "app:v1")
    })
    .await;
    for n in &nodes {
        n.models.send(model("v2")).unwrap();
    }
    until(Duration::from_secs(5), "every replica routes 20%", || {
        nodes.iter().all(|n| n.weight() == 2000)
    })
    .await;
    (cluster, nodes)
}

#[tokio::test(start_paused = true)]
async fn followers_route_the_committed_weights_and_a_takeover_keeps_the_step_and_its_time() {
    let (cluster, mut nodes) = three_at_20_percent().await;
    assert_eq!(committed_weight(&cluster), 2000);
    let paused_at = tokio::time::Instant::now();
    // 10 s into the 30 s pause, the leader dies; b is elected.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let a = nodes.remove(0);
    a.kill().await;
    cluster.leave("a");
    cluster.elect("b");
    // b goes on from the same step: 50% when the pause ends, 30 s after it began plus
    // what a checkpoint (every 2 s) may lose, not 30 s after the takeover, and not at
    // once.
    until(Duration::from_secs(40), "50% everywhere", || {
        nodes.iter().all(|n| n.weight() == 5000)
    })
    .await;
    let took = paused_at.elapsed();
    assert!(
        took >= Duration::from_secs(29) && took <= Duration::from_secs(33),
        "the pause lasted {took:?} across the takeover"
    );
    // Then 100% (promoted) after the second pause.
    until(Duration::from_secs(40), "promoted everywhere", || {
        cluster
            .status("app")
            .and_then(|c| c.status.stable)
            .is_some_and(|r| r.image == "app:v2")
            && nodes.iter().all(|n| n.weight() == 0)
    })
    .await;
    // No step repeated, skipped or undone on any replica: 0, 20%, 50%, then the
    // promotion (back to 0 on the new stable revision).
    for n in &nodes {
        assert_eq!(n.weights(), vec![0, 2000, 5000, 0]);
    }
    for n in nodes {
        n.kill().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_deposed_leader_is_fenced_and_its_steps_never_reach_traffic() {
    let (cluster, mut nodes) = three_at_20_percent().await;
    // a is cut off (frozen) 5 s into the pause; b is elected and promotes at once.
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.cut("a", true);
    cluster.elect("b");
    let v = nodes[1]
        .handle
        .act("app", Action::Abort)
        .await
        .expect("the new leader aborts");
    assert!(v.aborted);
    until(Duration::from_secs(5), "b and c route 0%", || {
        nodes[1].weight() == 0 && nodes[2].weight() == 0
    })
    .await;
    // a's pause ends while it is cut off: its step cannot be written, so it routes what
    // it had; reconnected, it learns it was deposed and follows the abort.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        nodes[0].weight(),
        2000,
        "a applied a step it could not commit"
    );
    let writes = cluster.writes();
    cluster.cut("a", false);
    until(Duration::from_secs(5), "a follows the abort", || {
        nodes[0].weight() == 0
    })
    .await;
    assert!(committed_weight(&cluster) == 0);
    assert!(cluster.status("app").unwrap().status.aborted);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(cluster.writes(), writes, "the deposed leader wrote");
    assert_eq!(nodes[0].weights(), vec![0, 2000, 0]);
    for n in nodes.drain(..) {
        n.kill().await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_action_asked_on_a_follower_is_applied_by_the_leader() {
    let (cluster, nodes) = three_at_20_percent().await;
    let v = nodes[2]
        .handle
        .act("app", Action::Promote)
        .await
        .expect("promoted through the leader");
    assert_eq!(v.canary_weight, 50.0, "{v:#?}");
    until(Duration::from_secs(5), "50% everywhere", || {
        nodes.iter().all(|n| n.weight() == 5000)
    })
    .await;
    assert_eq!(committed_weight(&cluster), 5000);
    // A refusal is said on the follower at once.
    let err = nodes[1]
        .handle
        .act("app", Action::Retry)
        .await
        .expect_err("retry of a rollout that is not aborted");
    assert!(
        matches!(err, weir_control::ActionError::Refused(_)),
        "{err}"
    );
    for n in nodes {
        n.kill().await;
    }
}

#[tokio::test(start_paused = true)]
async fn replicas_running_different_specs_hold_the_rollout_until_they_agree() {
    let (cluster, nodes) = three_at_20_percent().await;
    // c gets another spec (a config deploy in progress): the pause ends, but the leader
    // holds the step.
    let other = common::canary(
        "v2",
        "[{setWeight: 20}, {pause: {duration: 30s}}, {setWeight: 60}]",
        "",
    );
    nodes[2].models.send(other).unwrap();
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert!(nodes.iter().all(|n| n.weight() == 2000));
    let v = nodes[0].handle.get("app").await.unwrap();
    assert!(v.message.contains("SpecSkew"), "{}", v.message);
    assert!(v.message.contains('c'), "{}", v.message);
    // c runs the same spec again: the rollout goes on.
    nodes[2].models.send(model("v2")).unwrap();
    until(Duration::from_secs(5), "50% everywhere", || {
        nodes.iter().all(|n| n.weight() == 5000)
    })
    .await;
    assert_eq!(committed_weight(&cluster), 5000);
    for n in nodes {
        n.kill().await;
    }
}

#[tokio::test(start_paused = true)]
async fn with_the_store_out_of_reach_nothing_advances_and_every_replica_keeps_its_weights() {
    let (cluster, nodes) = three_at_20_percent().await;
    for n in ["a", "b", "c"] {
        cluster.cut(n, true);
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(nodes.iter().all(|n| n.weight() == 2000));
    assert_eq!(committed_weight(&cluster), 2000);
    for n in ["a", "b", "c"] {
        cluster.cut(n, false);
    }
    // Back: the leader writes the step it is at, and everyone routes it.
    until(Duration::from_secs(5), "50% everywhere", || {
        nodes.iter().all(|n| n.weight() == 5000)
    })
    .await;
    for n in nodes {
        n.kill().await;
    }
}
