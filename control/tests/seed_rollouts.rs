//! The seed's long rollouts run through in test time (tokio's paused time), against
//! in-memory fakes of the two ports.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use weir_config::Model;
use weir_control::state::RolloutPhase;
use weir_control::{
    Action, Controller, ControllerHandle, ControllerOptions, MetricsSource, Sample, Served,
    TrafficPlan, TrafficRouter,
};

#[derive(Default)]
struct FakeMetrics {
    by_revision: Mutex<HashMap<String, Sample>>,
    /// Updates begun and traffic sent, in order (shared with the router).
    log: Arc<Mutex<Vec<String>>>,
}

impl FakeMetrics {
    fn set(&self, revision: &str, requests: u64, failures: u64, latency: f64) {
        self.by_revision.lock().unwrap().insert(
            revision.to_owned(),
            Sample {
                requests,
                failures,
                latency: Some(latency),
                seconds: 60.0,
            },
        );
    }
}

impl MetricsSource for FakeMetrics {
    fn sample(
        &self,
        _service: &str,
        revision: &str,
        _served: Served,
        window: Duration,
        _since: Option<u64>,
        _q: f64,
    ) -> Sample {
        let mut s = self
            .by_revision
            .lock()
            .unwrap()
            .get(revision)
            .copied()
            .unwrap_or_default();
        s.seconds = window.as_secs_f64();
        s
    }

    fn begin(&self, service: &str, revision: &str, _since: u64) {
        self.log
            .lock()
            .unwrap()
            .push(format!("begin {service} {revision}"));
    }
}

#[derive(Default)]
struct FakeRouter {
    plans: Mutex<Vec<(tokio::time::Instant, Option<TrafficPlan>)>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl FakeRouter {
    fn last(&self) -> Option<TrafficPlan> {
        self.plans
            .lock()
            .unwrap()
            .last()
            .and_then(|(_, p)| p.clone())
    }
    fn weights(&self) -> Vec<f64> {
        let mut out: Vec<f64> = Vec::new();
        for (_, p) in self.plans.lock().unwrap().iter() {
            let w = p.as_ref().map_or(0.0, |p| p.canary_weight.percent());
            if out.last() != Some(&w) {
                out.push(w);
            }
        }
        out
    }
}

impl TrafficRouter for FakeRouter {
    fn send(&self, _r: &str, _s: &str, plan: Option<TrafficPlan>) {
        if let Some(p) = &plan {
            self.log.lock().unwrap().push(format!(
                "route {} {}%",
                p.canary.as_deref().unwrap_or("-"),
                p.canary_weight.percent()
            ));
        }
        self.plans
            .lock()
            .unwrap()
            .push((tokio::time::Instant::now(), plan));
    }
    fn flush<'a>(&'a self) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async {})
    }
}

fn conformance(rel: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/conformance")
            .join(rel),
    )
    .unwrap()
}

fn model(yaml: &str) -> Arc<Model> {
    Arc::new(
        weir_config::load_str(Path::new("/test/weir.yaml"), yaml).unwrap_or_else(|e| panic!("{e}")),
    )
}

fn service(name: &str, images: &[&str]) -> String {
    let mut s = format!(
        "---\napiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  endpoints:\n"
    );
    for (i, img) in images.iter().enumerate() {
        s.push_str(&format!(
            "    - {{address: \"127.0.0.1:{}\", image: \"{img}\"}}\n",
            9001 + i
        ));
    }
    s
}

struct Harness {
    tx: watch::Sender<Arc<Model>>,
    metrics: Arc<FakeMetrics>,
    router: Arc<FakeRouter>,
    handle: ControllerHandle,
    stop: CancellationToken,
}

fn start(initial: Arc<Model>) -> Harness {
    let (tx, rx) = watch::channel(initial);
    let metrics = Arc::new(FakeMetrics::default());
    let router = Arc::new(FakeRouter {
        log: metrics.log.clone(),
        ..FakeRouter::default()
    });
    let (c, handle) = Controller::new(
        rx,
        metrics.clone(),
        router.clone(),
        ControllerOptions {
            state_dir: None,
            proxy_url: None,
            cluster: None,
        },
    )
    .unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(c.run(stop.clone()));
    Harness {
        tx,
        metrics,
        router,
        handle,
        stop,
    }
}

async fn phase(h: &Harness, name: &str) -> Option<RolloutPhase> {
    h.handle.get(name).await.expect("rollout").phase
}

/// 01-canary-basic: 5% / 5m / 20% / 5m / 50% / 5m / 100%, a 15-minute rollout (20 with
/// the seed's framing), run in test time.
#[tokio::test(start_paused = true)]
async fn seed_01_canary_basic_runs_through() {
    let v2 = conformance("seed/01-canary-basic.yaml");
    let svc = service("my-app", &["my-app:v2.0.0", "my-app:v3.0.0"]);
    let h = start(model(&(v2.clone() + &svc)));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        phase(&h, "my-app").await,
        Some(RolloutPhase::Healthy),
        "first sight is stable at once"
    );
    assert_eq!(h.router.last().unwrap().stable, "my-app:v2.0.0");

    let start = tokio::time::Instant::now();
    h.tx.send(model(
        &(v2.replace("my-app:v2.0.0", "my-app:v3.0.0") + &svc),
    ))
    .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(h.router.last().unwrap().canary_weight.percent(), 5.0);
    assert_eq!(phase(&h, "my-app").await, Some(RolloutPhase::Paused));
    tokio::time::sleep(Duration::from_secs(5 * 60 + 2)).await;
    assert_eq!(h.router.last().unwrap().canary_weight.percent(), 20.0);
    tokio::time::sleep(Duration::from_secs(5 * 60)).await;
    assert_eq!(h.router.last().unwrap().canary_weight.percent(), 50.0);
    tokio::time::sleep(Duration::from_secs(5 * 60)).await;
    let last = h.router.last().unwrap();
    assert_eq!(last.stable, "my-app:v3.0.0", "promoted");
    assert_eq!(last.canary_weight.percent(), 0.0);
    assert_eq!(phase(&h, "my-app").await, Some(RolloutPhase::Healthy));
    // The last step (setWeight: 100) and the promotion happen in one snapshot swap: v3
    // takes everything as the new stable, with no canary left.
    assert_eq!(h.router.weights(), vec![0.0, 5.0, 20.0, 50.0, 0.0]);
    // The metrics source heard of each revision's start before any of its traffic.
    let log = h.metrics.log.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            "begin my-app my-app:v2.0.0",
            "route - 0%",
            "begin my-app my-app:v3.0.0",
            "route my-app:v3.0.0 5%",
            "route my-app:v3.0.0 20%",
            "route my-app:v3.0.0 50%",
            "route - 0%",
        ],
        "{log:#?}"
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(15 * 60) && took < Duration::from_secs(16 * 60),
        "{took:?}"
    );
    h.stop.cancel();
}

/// Templates for 11-production-api, measured by the proxy (the seed's success-rate
/// queries Prometheus and never ends; these have a count, as a step analysis must).
const TEMPLATES_11: &str = r#"
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: smoke-test}
spec:
  metrics:
    - name: smoke-test
      provider:
        job:
          spec:
            backoffLimit: 1
            template:
              spec:
                containers:
                  - name: smoke
                    image: curlimages/curl
                    command: [/bin/sh, -c, "exit 0"]
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: success-rate}
spec:
  args:
    - name: service-name
  metrics:
    - name: success-rate
      interval: 1m
      count: 3
      successCondition: result[0] >= 0.95
      failureLimit: 1
      provider:
        weir: {metric: success-rate, window: 1m}
"#;

/// 11-production-api: smoke test at 5%, success-rate analysis at 25% and 75%, then 100%.
#[tokio::test(start_paused = true)]
async fn seed_11_production_api_runs_through_and_aborts_a_bad_canary() {
    let v1 = conformance("seed/11-production-api.yaml");
    let svc = service(
        "api",
        &[
            "registry.example.com/api:v1.0.0",
            "registry.example.com/api:v2.0.0",
        ],
    );
    let h = start(model(&(v1.clone() + &svc + TEMPLATES_11)));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(phase(&h, "api").await, Some(RolloutPhase::Healthy));
    h.metrics
        .set("registry.example.com/api:v2.0.0", 1000, 3, 0.05);

    let v2 = v1.replace("api:v1.0.0", "api:v2.0.0");
    h.tx.send(model(&(v2.clone() + &svc + TEMPLATES_11)))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        phase(&h, "api").await,
        Some(RolloutPhase::Paused),
        "at 5%, pausing 2m"
    );
    // 2m + 5m + 10m of pauses and two 3-measurement analyses a minute apart.
    let mut waited = Duration::ZERO;
    while phase(&h, "api").await != Some(RolloutPhase::Healthy)
        && waited < Duration::from_secs(40 * 60)
    {
        tokio::time::sleep(Duration::from_secs(10)).await;
        waited += Duration::from_secs(10);
    }
    assert_eq!(
        phase(&h, "api").await,
        Some(RolloutPhase::Healthy),
        "after {waited:?}"
    );
    assert!(waited >= Duration::from_secs(17 * 60), "{waited:?}");
    assert_eq!(
        h.router.last().unwrap().stable,
        "registry.example.com/api:v2.0.0"
    );
    assert_eq!(h.router.weights(), vec![0.0, 5.0, 25.0, 75.0, 0.0]);
    let v = h.handle.get("api").await.unwrap();
    let runs = &v.past_analysis_runs;
    assert!(
        runs.iter()
            .filter(|r| r.phase == weir_control::analysis::Phase::Successful)
            .count()
            >= 3,
        "{runs:?}"
    );

    // v3 fails half its requests: the analysis at 25% fails and the rollout aborts.
    let svc3 = service(
        "api",
        &[
            "registry.example.com/api:v2.0.0",
            "registry.example.com/api:v3.0.0",
        ],
    );
    h.metrics
        .set("registry.example.com/api:v3.0.0", 1000, 500, 0.05);
    h.tx.send(model(
        &(v1.replace("api:v1.0.0", "api:v3.0.0") + &svc3 + TEMPLATES_11),
    ))
    .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut waited = Duration::ZERO;
    while phase(&h, "api").await != Some(RolloutPhase::Degraded)
        && waited < Duration::from_secs(30 * 60)
    {
        tokio::time::sleep(Duration::from_secs(10)).await;
        waited += Duration::from_secs(10);
    }
    let v = h.handle.get("api").await.unwrap();
    assert_eq!(v.phase, Some(RolloutPhase::Degraded));
    assert!(v.aborted);
    assert!(v.message.starts_with("RolloutAborted"), "{}", v.message);
    assert_eq!(h.router.last().unwrap().canary_weight.percent(), 0.0);
    assert_eq!(
        h.router.last().unwrap().stable,
        "registry.example.com/api:v2.0.0"
    );
    // Retry starts again from step 0 with new runs; going back to the stable template
    // clears the abort at once.
    h.handle.act("api", Action::Retry).await.unwrap();
    assert_eq!(
        h.handle.get("api").await.unwrap().current_step_index,
        Some(1),
        "step 0 (setWeight) done again"
    );
    // The retried update's canary is judged afresh: the metrics source heard of a new
    // start for v3 (the aborted attempt's errors are not judged again).
    let begins = h
        .metrics
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.as_str() == "begin api registry.example.com/api:v3.0.0")
        .count();
    assert_eq!(begins, 2, "once at the update, once at the retry");
    h.tx.send(model(&(v2 + &svc3 + TEMPLATES_11))).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(phase(&h, "api").await, Some(RolloutPhase::Healthy));
    h.stop.cancel();
}
