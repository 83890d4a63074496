//! The access log: off by default; when on, one JSON line per request.

use std::time::Duration;

use crate::kit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_are_json() {
    let b = backend("v1").await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = proxy(
        &split_route("app", &[("v1", 100.0)]),
        "  accessLog: {enabled: true, path: access.log}\n",
    ) + &service("v1", &[b.addr()]);
    let weir = Weir::start_in(dir, "weir.yaml", &yaml).await;
    let log = weir.dir.path().join("access.log");
    assert_eq!(get(weir.web(), "shop.test", "/cart?x=1").await.status, 200);
    assert_eq!(get(weir.web(), "nowhere.test", "/").await.status, 200);
    let mut lines = Vec::new();
    eventually("two lines are written", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        lines = text.lines().map(str::to_owned).collect::<Vec<_>>();
        async move { text.lines().count() >= 2 }
    })
    .await;
    // Lines are written as requests end, which for two connections need not be the
    // order they were sent in.
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        parsed.iter().any(|l| l["host"] == "nowhere.test"),
        "{lines:?}"
    );
    let first = parsed
        .iter()
        .find(|l| l["host"] == "shop.test")
        .unwrap_or_else(|| panic!("a line for shop.test: {lines:?}"));
    assert_eq!(first["method"], "GET");
    assert_eq!(first["host"], "shop.test");
    assert_eq!(first["path"], "/cart?x=1");
    assert_eq!(first["status"], 200);
    assert_eq!(first["route"], "app");
    assert_eq!(first["upstream"], b.addr().to_string());
    assert!(first["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(first["duration"].as_f64().unwrap() >= 0.0);
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    weir.shutdown().await;

    // Off by default: no file appears.
    let dir = tempfile::tempdir().unwrap();
    let yaml = proxy(&split_route("app", &[("v1", 100.0)]), "") + &service("v1", &[b.addr()]);
    let weir = Weir::start_in(dir, "weir.yaml", &yaml).await;
    assert_eq!(get(weir.web(), "x", "/").await.status, 200);
    assert!(!weir.dir.path().join("access.log").exists());
    weir.shutdown().await;
}
