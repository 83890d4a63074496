//! The canary-vs-stable judge in the control loop, in paused time, against a simulated
//! data plane (`weir_control::sim`): requests at a steady rate, split exactly, failing
//! as scripted; the judge measured every 100 ms.

mod common;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use weir_control::analysis::Phase;
use weir_control::api::RolloutView;
use weir_control::sim::{SimPlane, Steady};
use weir_control::{Controller, ControllerHandle, ControllerOptions};

/// A Rollout at 5%, judged (`count: 1`, every 100 ms), then 50%, then promoted.
fn model(image: &str) -> Arc<weir_config::Model> {
    common::canary(
        image,
        "[{setWeight: 5}, {analysis: {templates: [{templateName: judge}]}}, {setWeight: 50}]",
        r#"---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: judge}
spec:
  metrics:
    - name: canary-vs-stable
      interval: 100ms
      count: 1
      provider:
        weir: {metric: canary-vs-stable}
"#,
    )
}

struct Run {
    plane: Arc<SimPlane>,
    handle: ControllerHandle,
    stop: CancellationToken,
}

/// Starts the loop over `plane` with `app:v1` stable, then rolls out `app:v2`.
async fn roll_out(plane: Arc<SimPlane>) -> Run {
    roll_out_saving(plane, None).await
}

/// As [`roll_out`], saving the state in `state_dir`.
async fn roll_out_saving(plane: Arc<SimPlane>, state_dir: Option<std::path::PathBuf>) -> Run {
    let (tx, rx) = watch::channel(model("v1"));
    let (c, handle) = Controller::new(
        rx,
        plane.clone(),
        plane.clone(),
        ControllerOptions {
            state_dir,
            proxy_url: None,
            cluster: None,
        },
    )
    .unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(c.run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(1)).await;
    tx.send(model("v2")).unwrap();
    // The sender must outlive the test's turns.
    std::mem::forget(tx);
    Run {
        plane,
        handle,
        stop,
    }
}

impl Run {
    async fn app(&self) -> RolloutView {
        self.handle.get("app").await.expect("the rollout")
    }

    /// Waits (at most 600 s of test time) until app:v2 is promoted or the update aborted.
    async fn promoted_or_aborted(&self) -> RolloutView {
        self.until(Duration::from_secs(600), |v| {
            v.aborted || v.stable_revision.as_deref() == Some("app:v2")
        })
        .await
    }

    /// Waits in steps of 100 ms (test time) until `f` holds, at most `limit`.
    async fn until(&self, limit: Duration, f: impl Fn(&RolloutView) -> bool) -> RolloutView {
        let mut waited = Duration::ZERO;
        loop {
            let v = self.app().await;
            if f(&v) {
                return v;
            }
            assert!(waited < limit, "not within {limit:?}: {v:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += Duration::from_millis(100);
        }
    }
}

/// The judge's run, once it has ended.
fn judged_run(v: &RolloutView) -> &weir_control::api::AnalysisRunView {
    v.past_analysis_runs
        .iter()
        .find(|r| r.metrics.iter().any(|m| m.name == "canary-vs-stable"))
        .expect("the judge's run")
}

/// When the canary first got traffic and when it lost it (ms since the start).
fn canary_span(plane: &SimPlane) -> (u64, Option<u64>) {
    let w = plane.weights();
    let on = w
        .iter()
        .find(|(_, p)| *p > 0.0)
        .expect("the canary got traffic")
        .0;
    let off = w
        .iter()
        .find(|(at, p)| *at >= on && *p == 0.0)
        .map(|(at, _)| *at);
    (on, off)
}

#[tokio::test(start_paused = true)]
async fn a_broken_canary_at_5_percent_of_200_rps_is_aborted_within_half_a_second() {
    let script = Steady {
        canary_failure: 1.0,
        ..Steady::healthy(0.0)
    };
    let run = roll_out(SimPlane::new(200.0, script, 1)).await;
    let v = run.until(Duration::from_secs(5), |v| v.aborted).await;
    let (on, off) = canary_span(&run.plane);
    let off = off.expect("the canary's weight went back to 0");
    let (served, failed) = run.plane.canary_served();
    assert!(
        off - on <= 500,
        "aborted {} ms after the canary got traffic",
        off - on
    );
    assert!(failed <= 5, "{failed} failed canary requests");
    assert_eq!(served, failed, "every canary request failed");
    let runs: Vec<_> = v
        .analysis_runs
        .iter()
        .chain(&v.past_analysis_runs)
        .collect();
    assert!(
        runs.iter().any(|r| r.phase == Phase::Failed),
        "the judge's run failed: {runs:#?}"
    );
    run.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_healthy_canary_with_one_percent_errors_passes() {
    // Both revisions fail 1% of requests; 5% of 1,000 rps.
    let run = roll_out(SimPlane::new(1000.0, Steady::healthy(0.01), 2)).await;
    let v = run.promoted_or_aborted().await;
    assert!(!v.aborted, "aborted: {}", v.message);
    let judged = judged_run(&v);
    assert_eq!(judged.phase, Phase::Successful, "{judged:#?}");
    run.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_incident_on_both_revisions_does_not_fail_the_canary() {
    // 20% errors on both revisions for 10 s, from 5 s into the canary (before the
    // judge could pass), at 5% of 1,000 rps; 1% before and after.
    let script = Steady {
        incident: Some((5.0, 15.0, 0.2)),
        ..Steady::healthy(0.01)
    };
    let run = roll_out(SimPlane::new(1000.0, script, 3)).await;
    let v = run.promoted_or_aborted().await;
    assert!(!v.aborted, "aborted: {}", v.message);
    run.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_judge_that_waits_does_not_rewrite_the_state_file_on_every_measurement() {
    // The judge measures every 100 ms and waits for a verdict for many seconds; only
    // what lasts (steps, weights, verdicts) is saved when it changes.
    let dir = tempfile::tempdir().unwrap();
    let run = roll_out_saving(
        SimPlane::new(1000.0, Steady::healthy(0.01), 2),
        Some(dir.path().to_path_buf()),
    )
    .await;
    let v = run.promoted_or_aborted().await;
    assert!(!v.aborted, "aborted: {}", v.message);
    let judged = judged_run(&v);
    let started = judged.started_at;
    let ended = judged.completed_at.expect("the run's end");
    let attempts = (ended - started) / 100;
    let saves = run
        .handle
        .stats
        .state_saves
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        attempts >= 20,
        "the judge waited {attempts} measurements: too few to tell"
    );
    assert!(
        saves > 0 && saves < 30,
        "{saves} saves for a rollout whose judge tried {attempts} times"
    );
    run.stop.cancel();
}
