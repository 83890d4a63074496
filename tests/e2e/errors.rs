//! Upstream faults: connect refused gives 502, a timeout 504, no endpoints 503, each
//! with a short body, each counted, and charged to the backend's stats.

use std::time::Duration;

use crate::kit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_get_502_503_504() {
    // A port nobody listens on: bind, note the port, close.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let slow = FakeBackend::start(
        "slow",
        Behavior {
            latency: Latency::Fixed { ms: 3000.0 },
            ..Behavior::default()
        },
    )
    .await
    .unwrap();
    let routes = "    - name: refused\n      match: {host: refused.test}\n      backends: [{service: refused}]\n    - name: empty\n      match: {host: empty.test}\n      backends: [{service: empty}]\n    - name: slow\n      match: {host: slow.test}\n      backends: [{service: slow}]\n";
    let yaml = proxy(
        routes,
        "  upstream: {requestTimeout: 300ms, connectTimeout: 1s}\n",
    ) + &service("refused", &[closed])
        + "---\napiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {name: empty}\nspec: {endpoints: []}\n"
        + &service("slow", &[slow.addr()]);
    let weir = Weir::start(&yaml).await;
    let w = weir.web();

    let r = get(w, "refused.test", "/").await;
    assert_eq!(r.status, 502);
    assert!(
        r.text().starts_with("502 Bad Gateway") && r.text().len() < 100,
        "{}",
        r.text()
    );

    let r = get(w, "empty.test", "/").await;
    assert_eq!(r.status, 503);
    assert!(
        r.text().starts_with("503 Service Unavailable") && r.text().len() < 100,
        "{}",
        r.text()
    );

    let r = get(w, "slow.test", "/").await;
    assert_eq!(r.status, 504);
    assert!(
        r.text().starts_with("504 Gateway Timeout") && r.text().len() < 100,
        "{}",
        r.text()
    );

    eventually("each fault is counted", Duration::from_secs(5), || async {
        let m = metrics(weir.admin()).await;
        sample(&m, "weir_proxy_errors_total{kind=\"connect_failed\"}") == Some(1.0)
            && sample(&m, "weir_proxy_errors_total{kind=\"no_endpoints\"}") == Some(1.0)
            && sample(&m, "weir_proxy_errors_total{kind=\"response_timeout\"}") == Some(1.0)
            && sample(
                &m,
                "http_requests_total{service=\"refused\",role=\"\",revision=\"\",status=\"502\"}",
            ) == Some(1.0)
            && sample(
                &m,
                "http_requests_total{service=\"slow\",role=\"\",revision=\"\",status=\"504\"}",
            ) == Some(1.0)
    })
    .await;
    // The stats API shows them as failures.
    let stats = get(weir.admin(), "127.0.0.1", "/api/v1/stats?window=1m").await;
    let v: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
    let slow_leg = v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "slow")
        .unwrap()["legs"][0]
        .clone();
    assert_eq!(slow_leg["window"]["failures"], 1);
    assert_eq!(slow_leg["window"]["successRate"], 0.0);
    weir.shutdown().await;
}

/// An upstream answering 500 passes the 500 through and counts as a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_5xx_pass_through_and_count_as_failures() {
    let b = FakeBackend::start(
        "flaky",
        Behavior {
            status: 503,
            ..Behavior::default()
        },
    )
    .await
    .unwrap();
    let yaml = proxy(&split_route("app", &[("flaky", 100.0)]), "") + &service("flaky", &[b.addr()]);
    let weir = Weir::start(&yaml).await;
    for _ in 0..5 {
        assert_eq!(get(weir.web(), "x", "/").await.status, 503);
    }
    b.set(Behavior::default());
    for _ in 0..15 {
        assert_eq!(get(weir.web(), "x", "/").await.status, 200);
    }
    let stats = get(weir.admin(), "127.0.0.1", "/api/v1/stats").await;
    let v: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
    let w = &v["routes"][0]["legs"][0]["window"];
    assert_eq!(w["requests"], 20);
    assert_eq!(w["failures"], 5);
    assert_eq!(w["successRate"], 0.75);
    assert_eq!(w["status"]["serverError"], 5);
    weir.shutdown().await;
}
