//! The exact split: at weight w% the canary gets round(w·n/100) of any n consecutive
//! requests, within one, under 64 concurrent connections on every worker thread.

use std::time::Duration;

use crate::kit::*;

/// Runs 64 connections through a stable/canary split at `canary` percent and checks
/// every window of 10, 100 and 1000 requests in the order the split handed them out.
async fn exact_at(canary: f64, total: usize) {
    let stable_b = backend("stable").await;
    let canary_b = backend("canary").await;
    let yaml = proxy(
        &split_route("app", &[("stable", 100.0 - canary), ("canary", canary)]),
        "",
    ) + &service("stable", &[stable_b.addr()])
        + &service("canary", &[canary_b.addr()]);
    let weir = Weir::start(&yaml).await;
    let mut results = drive(weir.web(), "app.test", 64, total).await;
    assert!(results.iter().all(|r| r.0 == 200), "all requests succeed");
    assert_eq!(results.len(), total);
    // Order by the split's own sequence numbers: consecutive requests as weir saw them.
    results.sort_by_key(|r| r.1.expect("x-weir-split-seq on every response"));
    let seqs: Vec<u64> = results.iter().map(|r| r.1.unwrap_or(0)).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "sequence numbers are consecutive"
    );
    let is_canary: Vec<bool> = results.iter().map(|r| r.2 == "canary").collect();
    let share = canary / 100.0;
    for n in [10, 100, 1000] {
        let worst = worst_deviation(&is_canary, share, n);
        assert!(worst <= 1.0, "canary {canary}%: window {n} off by {worst}");
    }
    let canary_total = is_canary.iter().filter(|b| **b).count();
    assert!(
        (canary_total as f64 - share * total as f64).abs() <= 1.0,
        "canary {canary}%: {canary_total} of {total}"
    );
    assert_eq!(
        canary_b.hits() as usize,
        canary_total,
        "the canary backend saw exactly these"
    );
    weir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_5_95() {
    exact_at(5.0, 4000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_10_90() {
    exact_at(10.0, 4000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_half_percent() {
    exact_at(0.5, 4000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_0_100() {
    exact_at(0.0, 2000).await;
    exact_at(100.0, 2000).await;
}

/// Headers route and hosts: the most specific route wins, no match is a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn most_specific_route_wins() {
    let a = backend("a").await;
    let b = backend("b").await;
    let c = backend("c").await;
    let d = backend("d").await;
    let routes = "    - name: any\n      match: {pathPrefix: /}\n      backends: [{service: a}]\n    - name: api\n      match: {host: api.example.com, pathPrefix: /v1}\n      backends: [{service: b}]\n    - name: wild\n      match: {host: \"*.example.com\"}\n      backends: [{service: c}]\n    - name: hdr\n      match: {host: api.example.com, pathPrefix: /v1, headers: [{name: x-beta, exact: \"1\"}]}\n      backends: [{service: d}]\n    - name: only-docs\n      match: {host: docs.example.org, pathPrefix: /docs}\n      backends: [{service: a}]\n";
    let yaml = proxy(routes, "")
        + &service("a", &[a.addr()])
        + &service("b", &[b.addr()])
        + &service("c", &[c.addr()])
        + &service("d", &[d.addr()]);
    let weir = Weir::start(&yaml).await;
    let w = weir.web();
    let cl = client();
    let who = |r: Resp| r.header("x-backend").unwrap_or("none").to_owned();
    assert_eq!(
        who(get_with(&cl, w, "api.example.com", "/v1/x", &[]).await),
        "b"
    );
    assert_eq!(
        who(get_with(&cl, w, "API.Example.com:8080", "/v1/x", &[]).await),
        "b"
    );
    assert_eq!(
        who(get_with(&cl, w, "api.example.com", "/v1/x", &[("x-beta", "1")]).await),
        "d"
    );
    assert_eq!(
        who(get_with(&cl, w, "api.example.com", "/v2", &[]).await),
        "c"
    );
    assert_eq!(
        who(get_with(&cl, w, "www.example.com", "/", &[]).await),
        "c"
    );
    assert_eq!(who(get_with(&cl, w, "example.com", "/", &[]).await), "a");
    assert_eq!(who(get_with(&cl, w, "other.test", "/", &[]).await), "a");
    let r = get_with(&cl, w, "docs.example.org", "/docs/1", &[]).await;
    assert_eq!(who(r), "a");
    weir.shutdown().await;

    // Without a catch-all route, no match is a short 404.
    let yaml = proxy(
        "    - name: api\n      match: {host: api.example.com}\n      backends: [{service: a}]\n",
        "",
    ) + &service("a", &[a.addr()]);
    let weir = Weir::start(&yaml).await;
    let r = get(weir.web(), "nope.example.com", "/").await;
    assert_eq!(r.status, 404);
    assert!(
        r.text().len() < 100 && r.text().contains("no route"),
        "{}",
        r.text()
    );
    eventually("the 404 is counted", Duration::from_secs(5), || async {
        sample(
            &metrics(weir.admin()).await,
            "weir_proxy_errors_total{kind=\"no_route\"}",
        ) == Some(1.0)
    })
    .await;
    weir.shutdown().await;
}

/// Endpoints inside a service share the load (round robin).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_over_endpoints() {
    let a = backend("a").await;
    let b = backend("b").await;
    let yaml = proxy("    - name: r\n      backends: [{service: s}]\n", "")
        + &service("s", &[a.addr(), b.addr()]);
    let weir = Weir::start(&yaml).await;
    let results = drive(weir.web(), "x", 4, 400).await;
    assert!(results.iter().all(|r| r.0 == 200));
    assert_eq!(a.hits() + b.hits(), 400);
    assert_eq!(a.hits(), 200, "round robin gives each endpoint half");
    weir.shutdown().await;
}
