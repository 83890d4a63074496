//! Healthy endpoints only: an endpoint that fails five times in a row (5xx answers, or
//! refused connects) is left out of picks for a while, as Envoy's outlier detection does;
//! a refused connect is tried once more on another endpoint of the same revision; and a
//! backend whose endpoints are all out still gets its requests (never none).

use crate::kit::*;

fn config(endpoints: &[String]) -> String {
    let eps: Vec<String> = endpoints.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "{}---\napiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {{name: app}}\nspec:\n  endpoints: [{}]\n",
        proxy(&split_route("app", &[("app", 100.0)]), ""),
        eps.join(", ")
    )
}

/// A port nothing listens on.
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_ejected_after_five_failures_in_a_row() {
    let good = backend("good").await;
    let bad = FakeBackend::start("bad", Behavior::with_status(500))
        .await
        .unwrap();
    let w = Weir::start(&config(&[good.addr().to_string(), bad.addr().to_string()])).await;
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..100 {
        statuses.push(get_with(&c, w.web(), "app.test", "/", &[]).await.status);
    }
    // Round robin gives the bad endpoint every other request until its fifth 500 in a
    // row ejects it; then the good one takes everything.
    assert_eq!(bad.hits(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 500).count(), 5);
    assert_eq!(good.hits(), 95);
    // The metrics say so.
    let m = metrics(w.admin()).await;
    let at =
        |name: &str, b: &FakeBackend| sample(&m, &format!("{name}{{endpoint=\"{}\"}}", b.addr()));
    assert_eq!(at("weir_upstream_ejections_total", &bad), Some(1.0));
    assert_eq!(at("weir_upstream_ejections_total", &good), Some(0.0));
    assert_eq!(at("weir_upstream_endpoint_serving", &bad), Some(0.0));
    assert_eq!(at("weir_upstream_endpoint_serving", &good), Some(1.0));
    assert!(w.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_is_tried_on_another_endpoint_and_a_lone_endpoint_is_never_left_out() {
    let good = backend("good").await;
    let w = Weir::start(&config(&[closed_port(), good.addr().to_string()])).await;
    let c = client();
    for _ in 0..50 {
        let r = get_with(&c, w.web(), "app.test", "/", &[]).await;
        assert_eq!((r.status, r.header("x-backend")), (200, Some("good")));
    }
    assert_eq!(good.hits(), 50);
    w.shutdown().await;

    // One endpoint, failing: it keeps getting the requests (and answering 502).
    let w = Weir::start(&config(&[closed_port()])).await;
    for _ in 0..10 {
        assert_eq!(
            get_with(&c, w.web(), "app.test", "/", &[]).await.status,
            502
        );
    }
    assert!(w.shutdown().await);
}

/// Active health checks (`healthCheck`): an endpoint takes requests once its check passes,
/// and stops after `unhealthyThreshold` failures in a row; one that comes back takes them
/// again after `healthyThreshold` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks_keep_requests_on_healthy_endpoints() {
    use std::time::Duration;
    let a = backend("a").await;
    let b = FakeBackend::start("b", Behavior::with_status(503))
        .await
        .unwrap();
    let yaml = config(&[a.addr().to_string(), b.addr().to_string()]).replace(
        "spec:\n  endpoints:",
        "spec:\n  healthCheck: {path: /healthz, interval: 100ms, timeout: 500ms, healthyThreshold: 2, unhealthyThreshold: 2}\n  endpoints:",
    );
    let w = Weir::start(&yaml).await;
    let c = client();
    let who = || async {
        let r = get_with(&c, w.web(), "app.test", "/", &[]).await;
        r.header("x-backend").unwrap_or("").to_owned()
    };
    // b never passes: once a has passed, every request goes to a.
    eventually("a passes its check", Duration::from_secs(5), || async {
        let mut all_a = true;
        for _ in 0..10 {
            all_a &= who().await == "a";
        }
        all_a
    })
    .await;
    let before = b.hits();
    for _ in 0..50 {
        assert_eq!(who().await, "a");
    }
    // Only health checks reach b (a few, at 100 ms), no request.
    assert!(b.hits() - before < 50);
    // a fails from now on, b recovers: requests move to b.
    a.set(Behavior::with_status(503));
    b.set(Behavior::default());
    eventually("b takes the requests", Duration::from_secs(5), || async {
        let mut all_b = true;
        for _ in 0..10 {
            all_b &= who().await == "b";
        }
        all_b
    })
    .await;
    assert!(w.shutdown().await);
}

/// As Argo waits for the canary's pods to be available, a canary's weight waits until one
/// of its endpoints passes its health check; the rollout says why it waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_weight_waits_for_a_healthy_canary_endpoint() {
    use std::time::Duration;
    let v1 = backend("v1").await;
    let v2 = FakeBackend::start("v2", Behavior::with_status(503))
        .await
        .unwrap();
    let steps = "    canary:\n      steps:\n        - setWeight: 20\n        - pause: {}";
    let config = |image: &str| {
        crate::rollout::rollout_config(
            image,
            steps,
            &[(v1.addr(), "app:v1"), (v2.addr(), "app:v2")],
        )
        .replace(
            "spec:\n  endpoints:",
            "spec:\n  healthCheck: {path: /healthz, interval: 100ms, timeout: 500ms}\n  endpoints:",
        )
    };
    let w = Weir::start(&config("app:v1")).await;
    let state = || async {
        serde_json::from_slice::<serde_json::Value>(
            &get(w.admin(), "127.0.0.1", "/api/v1/rollouts/app")
                .await
                .body,
        )
        .unwrap_or_default()
    };
    eventually("v1 healthy and stable", Duration::from_secs(5), || async {
        state().await["phase"] == "Healthy"
            && get(w.web(), "app.test", "/").await.header("x-backend") == Some("v1")
    })
    .await;
    w.write_config(&config("app:v2"));
    eventually(
        "the update waits for a healthy v2",
        Duration::from_secs(5),
        || async {
            let s = state().await;
            s["message"]
                .as_str()
                .is_some_and(|m| m.contains("waiting for endpoints running app:v2"))
                && s["canaryWeight"] == 0.0
        },
    )
    .await;
    // Meanwhile no request goes to v2.
    for _ in 0..20 {
        assert_eq!(
            get(w.web(), "app.test", "/").await.header("x-backend"),
            Some("v1")
        );
    }
    // v2 passes its check: the weight goes to 20.
    v2.set(Behavior::default());
    eventually("the canary at 20%", Duration::from_secs(5), || async {
        state().await["canaryWeight"] == 20.0
    })
    .await;
    assert!(w.shutdown().await);
}
