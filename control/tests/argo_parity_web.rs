//! Issue 16, case 8: what a web metric records as a measurement's value. Argo:
//! metricproviders/webmetric/webmetric.go `parseResponse` and `getValue` (the value the
//! JSONPath picks is recorded as its JSON encoding; a body that is not JSON is recorded
//! as it is); the expectations of webmetric_test.go `TestRunSuite`.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use weir_config::analysis::{Provider, decode_metric};
use weir_control::analysis::{AnalysisRun, Phase};
use weir_control::providers::{HttpClient, web};

/// Serves `body` once, with status 200, on a local port; its URL.
async fn serve_once(body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = sock.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(response.as_bytes()).await.unwrap();
        sock.shutdown().await.ok();
    });
    format!("http://{addr}/")
}

/// Measures a web metric against a server answering `body`; the measurement recorded.
async fn recorded(body: &'static str, json_path: Option<&str>, condition: &str) -> (Phase, String) {
    let url = serve_once(body).await;
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
