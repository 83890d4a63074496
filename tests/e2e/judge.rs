//! The canary-vs-stable judge end to end on real sockets: the proxy counts each
//! revision's requests second by second, the judge reads them every 100 ms.

use std::net::SocketAddr;
use std::time::Duration;

use crate::kit::*;
use crate::rollout::{load, rollout_config, wait_phase};

/// A Rollout whose step analysis is the judge (`judge` holds the provider's extra
/// fields), after a setWeight of `weight`%.
fn judged(image: &str, weight: u32, judge: &str, endpoints: &[(SocketAddr, &str)]) -> String {
    let strategy = format!(
        "    canary:
      steps:
        - setWeight: {weight}
        - analysis: {{templates: [{{templateName: judge}}]}}"
    );
    rollout_config(image, &strategy, endpoints)
        + &format!(
            r#"---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{name: judge}}
spec:
  metrics:
    - name: canary-vs-stable
      interval: 100ms
      count: 1
      provider:
        weir: {{metric: canary-vs-stable{judge}}}
"#
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judge_aborts_a_canary_that_answers_500() {
    let v1 = backend("v1").await;
    let v2 = FakeBackend::start(
        "v2",
        Behavior {
            status: 500,
            ..Behavior::default()
        },
    )
    .await
    .unwrap();
    let eps = [(v1.addr(), "app:v1"), (v2.addr(), "app:v2")];
    let weir = Weir::start(&judged("app:v1", 20, "", &eps)).await;
    wait_phase(weir.admin(), "Healthy", Duration::from_secs(5)).await;
    let (stop, load) = load(weir.web(), 200.0);
    weir.write_config(&judged("app:v2", 20, "", &eps));
    let s = wait_phase(weir.admin(), "Degraded", Duration::from_secs(30)).await;
    assert_eq!(s["aborted"], true);
    assert_eq!(s["canaryWeight"], 0.0);
    let run = &s["pastAnalysisRuns"][0];
    assert_eq!(run["phase"], "Failed", "{s}");
    let m = &run["metrics"][0]["measurements"][0];
    assert_eq!(m["value"], "fail", "{s}");
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .starts_with("the canary is worse (failures)"),
        "{s}"
    );
    stop.cancel();
    let report = load.await.unwrap();
    // At a 20% share each canary failure beside a clean stable revision is worth ln 5
    // of evidence: five or six reach the bar; a few more were in flight.
    let failed = report.by_status.get(&500).copied().unwrap_or(0);
    assert!((1..=20).contains(&failed), "{failed} requests failed");
    weir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judge_promotes_a_healthy_canary() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let eps = [(v1.addr(), "app:v1"), (v2.addr(), "app:v2")];
    // No errors anywhere: the pass comes from the canary's own failure rate shown below
    // a 5% budget (about 90 canary requests). Latency is left out: both fake revisions
    // answer at once, and showing "no slower" at p99 takes thousands of requests.
    let knobs = ", errorBudget: 0.05, latency: false, minCanaryRequests: 50, minDuration: 1s";
    let weir = Weir::start(&judged("app:v1", 50, knobs, &eps)).await;
    wait_phase(weir.admin(), "Healthy", Duration::from_secs(5)).await;
    let (stop, load) = load(weir.web(), 200.0);
    weir.write_config(&judged("app:v2", 50, knobs, &eps));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let done = loop {
        let s = crate::rollout::state(weir.admin()).await;
        if s["phase"] == "Healthy" && s["stableRevision"] == "app:v2" {
            break s;
        }
        assert!(s["aborted"] != true, "aborted: {s}");
        assert!(tokio::time::Instant::now() < deadline, "not promoted: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let run = &done["pastAnalysisRuns"][0];
    assert_eq!(run["phase"], "Successful", "{done}");
    assert_eq!(run["metrics"][0]["measurements"][0]["value"], "pass");
    stop.cancel();
    let report = load.await.unwrap();
    assert_eq!(report.errors, 0);
    weir.shutdown().await;
}
