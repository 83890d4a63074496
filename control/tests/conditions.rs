//! Issue 10, items 5 and 6: conditions. An expression that would exhaust memory or the
//! stack, or that panics, makes its measurement an Error and nothing else: the control
//! loop goes on, and shows that it does. Prometheus's NaN and ±Inf reach conditions as
//! numbers, as in Argo.

mod common;

use common::serve_once;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::{canary, start};
use serde_json::{Value, json};
use weir_config::analysis::{Provider, decode_metric};
use weir_control::analysis::{AnalysisRun, Phase};
use weir_control::providers::{HttpClient, prometheus};
use weir_control::state::RolloutPhase;

const HUGE: &str = r#"
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: huge}
spec:
  metrics:
    - name: huge
      interval: 10s
      count: 10
      successCondition: "len(0..9223372036854775806) > 0"
      provider: {weir: {metric: requests}}
"#;

const STEPS: &str =
    "[{setWeight: 10}, {analysis: {templates: [{templateName: huge}]}}, {setWeight: 50}]";

#[tokio::test(start_paused = true)]
async fn a_condition_that_cannot_be_evaluated_fails_its_measurement_not_the_loop() {
    let h = start(canary("v1", STEPS, HUGE), None);
    h.until(Duration::from_secs(30), |v| {
        v.phase == Some(RolloutPhase::Healthy)
    })
    .await;
    let turns = h.handle.stats.turns.load(Relaxed);
    let beat = h.handle.stats.heartbeat_ms.load(Relaxed);
    assert!(beat > 0, "the loop shows it is alive");
    h.tx.send(canary("v2", STEPS, HUGE)).unwrap();
    // Five Errors in a row (consecutiveErrorLimit 4) end the run in Error: the update
    // aborts, as Argo's would.
    let v = h
        .until(Duration::from_secs(120), |v| {
            v.phase == Some(RolloutPhase::Degraded)
        })
        .await;
    assert!(v.aborted, "{}", v.message);
    let run = v
        .past_analysis_runs
        .iter()
        .find(|r| r.name.ends_with("-1"))
        .expect("the step run");
    assert_eq!(run.phase, Phase::Error, "{}", run.message);
    let m = &run.metrics[0];
    assert_eq!(m.error, 5);
    let said = m.measurements[0].message.as_deref().unwrap_or_default();
    assert!(said.contains("1000000"), "{said}");
    // The loop still answers and still turns.
    assert_eq!(h.handle.list().await.len(), 1);
    assert!(h.handle.stats.turns.load(Relaxed) > turns);
    assert!(h.handle.stats.heartbeat_ms.load(Relaxed) > beat);
    h.stop().await;
}

/// One measurement of a Prometheus metric whose server answers `data`: its phase and
/// recorded value.
async fn prometheus_measurement(data: Value, condition: &str) -> (Phase, String, Option<String>) {
    let url = serve_once(
        json!({"status": "success", "data": data}).to_string(),
        Some("application/json"),
    )
    .await;
    let metric = json!({"name": "m", "successCondition": condition,
        "provider": {"prometheus": {"address": url, "query": "up"}}});
    let spec = decode_metric(&metric, false).expect("valid metric");
    let Provider::Prometheus(p) = &spec.provider else {
        panic!("a prometheus metric")
    };
    let outcome = prometheus::measure(&HttpClient::new(), p).await;
    let mut run = AnalysisRun::new("r".into(), vec![(metric, spec.clone())], &[], &[], 0);
    run.begin(0);
    run.record(0, outcome, 0, 1);
    let m = &run.metrics[0].measurements[0];
    (
        m.phase,
        m.value.clone().unwrap_or_default(),
        m.message.clone(),
    )
}

#[tokio::test]
async fn prometheus_nan_and_inf_are_numbers_to_conditions() {
    let vector =
        |v: &str| json!({"resultType": "vector", "result": [{"metric": {}, "value": [1.0, v]}]});
    let (phase, value, msg) =
        prometheus_measurement(vector("NaN"), "isNaN(result[0]) || result[0] >= 0.95").await;
    assert_eq!(
        (phase, value.as_str()),
        (Phase::Successful, "[NaN]"),
        "{msg:?}"
    );
    let (phase, _, msg) = prometheus_measurement(vector("NaN"), "result[0] >= 0.95").await;
    assert_eq!(phase, Phase::Failed, "NaN >= x is false: {msg:?}");
    let (phase, value, msg) = prometheus_measurement(vector("+Inf"), "isInf(result[0])").await;
    assert_eq!(
        (phase, value.as_str()),
        (Phase::Successful, "[+Inf]"),
        "{msg:?}"
    );
    let (phase, value, msg) = prometheus_measurement(vector("-Inf"), "result[0] < 0").await;
    assert_eq!(
        (phase, value.as_str()),
        (Phase::Successful, "[-Inf]"),
        "{msg:?}"
    );
    let scalar = json!({"resultType": "scalar", "result": [1.0, "NaN"]});
    let (phase, value, msg) = prometheus_measurement(scalar, "isNaN(result)").await;
    assert_eq!(
        (phase, value.as_str()),
        (Phase::Successful, "NaN"),
        "{msg:?}"
    );
    let matrix = json!({"resultType": "matrix", "result": [{"metric": {}, "values": [[1, "0.5"], [2, "+Inf"]]}]});
    let (phase, value, msg) = prometheus_measurement(matrix, "any(result, isInf(#))").await;
    assert_eq!(
        (phase, value.as_str()),
        (Phase::Successful, "[0.5,+Inf]"),
        "{msg:?}"
    );
}
