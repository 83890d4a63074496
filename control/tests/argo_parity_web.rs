//! Issue 16, case 8: what a web metric records as a measurement's value. Argo:
//! metricproviders/webmetric/webmetric.go `parseResponse` and `getValue` (the value the
//! JSONPath picks is recorded as its JSON encoding; a body that is not JSON is recorded
//! as it is); the expectations of webmetric_test.go `TestRunSuite`.

mod common;

use common::serve_once;
use serde_json::{Value, json};
use weir_config::analysis::{Provider, decode_metric};
use weir_control::analysis::{AnalysisRun, Phase};
use weir_control::providers::{HttpClient, web};

/// Measures a web metric against a server answering `body`; the measurement recorded.
async fn recorded(body: &'static str, json_path: Option<&str>, condition: &str) -> (Phase, String) {
    let url = format!("{}/", serve_once(body, Some("application/json")).await);
    let mut web = json!({"url": url});
    if let Some(p) = json_path {
        web["jsonPath"] = Value::String(p.to_owned());
    }
    let metric = json!({"name": "m", "successCondition": condition, "provider": {"web": web}});
    let spec = decode_metric(&metric, false).expect("valid metric");
    let Provider::Web(w) = &spec.provider else {
        panic!("a web metric")
    };
    let outcome = web::measure(&HttpClient::new(), w).await;
    let mut run = AnalysisRun::new("r".into(), vec![(metric, spec.clone())], &[], &[], 0);
    run.begin(0);
    run.record(0, outcome, 0, 1);
    let m = &run.metrics[0].measurements[0];
    (m.phase, m.value.clone().unwrap_or_default())
}

#[tokio::test]
async fn web_values_are_recorded_as_json() {
    // A string is recorded quoted, and still compared as a string.
    let (phase, value) = recorded(
        r#"{"key": [{"key2": {"value": "1"}}]}"#,
        Some("{$.key[0].key2.value}"),
        "asInt(result) > 0",
    )
    .await;
    assert_eq!((phase, value.as_str()), (Phase::Successful, r#""1""#));
    let (_, value) = recorded(
        r#"{"key": [{"key2": {"value": "true"}}]}"#,
        Some("{$.key[0].key2.value}"),
        r#"result == "true""#,
    )
    .await;
    assert_eq!(value, r#""true""#);
    // Numbers, lists and maps as Go's encoder writes them: keys sorted, 1.0 as 1.
    let (_, value) = recorded(r#"{"v": 1.0}"#, Some("{$.v}"), "result == 1").await;
    assert_eq!(value, "1");
    let (_, value) = recorded(
        r#"{"key":{"num":1.2, "bool":true, "mapfield":{"foo":"bar"}}}"#,
        Some("{$.key}"),
        "result.num > 1.1",
    )
    .await;
    assert_eq!(value, r#"{"bool":true,"mapfield":{"foo":"bar"},"num":1.2}"#);
    let (_, value) = recorded(r#"{"a": 1, "c": [1, 2], "d": null}"#, None, "true").await;
    assert_eq!(value, r#"{"a":1,"c":[1,2],"d":null}"#);
    // A body that is not JSON is recorded as it is.
    let (_, value) = recorded("test: notJson", None, "true").await;
    assert_eq!(value, "test: notJson");
}
