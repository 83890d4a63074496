//! A canary through a Gateway API HTTPRoute, end to end: a Gateway of class `weir`, an
//! HTTPRoute whose rule's backends are a Rollout's `stableService` and `canaryService`, and
//! the Rollout naming that route in `trafficRouting.plugins["argoproj-labs/gatewayAPI"]`.
//! The rule is split by the Rollout's steps exactly as a `rollout:` route of the Proxy is:
//! the exact split at each weight, the header route, weir's own analysis, promotion and
//! abort; and the rule's own filters still apply to both revisions.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use weir_config::model::{RouteTarget, StatusKind};
use weir_fixtures::load::{LoadSpec, Mode, Report, run};

use crate::kit::*;
use crate::rollout::post;

/// The header the rule's RequestHeaderModifier sets, and its value.
const SET_HEADER: (&str, &str) = ("x-route", "app-main");
/// A header clients send that the rule's RequestHeaderModifier removes.
const REMOVED_HEADER: &str = "x-internal";
/// The header the rule's ResponseHeaderModifier adds, and its value.
const RESPONSE_HEADER: (&str, &str) = ("x-gateway", "weir");
/// The setHeaderRoute step's header and value.
const CANARY_HEADER: (&str, &str) = ("x-canary", "always");
/// The model route of the HTTPRoute's rule `main`: NAMESPACE/ROUTE/RULE.
const ROUTE: &str = "default/app/main";
/// The path of the rule `bulk`, which the background load uses: a rule has a split (and
/// ticket counter) of its own, so the background load never takes a ticket from `main`'s
/// sequence, whose exactness is checked.
const BULK: &str = "/bulk";

/// The steps, by index: 0 setWeight 20, 1 pause, 2 setHeaderRoute, 3 analysis,
/// 4 setWeight 50, 5 pause.
const STEPS: &str = "      steps:
        - setWeight: 20
        - pause: {}
        - setHeaderRoute:
            name: beta
            match: [{headerName: x-canary, headerValue: {exact: always}}]
        - analysis: {templates: [{templateName: health}]}
        - setWeight: 50
        - pause: {}";

/// The whole configuration: a Proxy (debug headers, Gateway listeners on 127.0.0.1), a
/// Gateway listening on `port`, the HTTPRoute `app` for `app.test` with two rules between
/// the Rollout's Services (`main` for `/`, `bulk` for [`BULK`]), each with the same
/// filters, weir's Service `app` with one endpoint per image, the Rollout `app` on
/// `image`, and an analysis measured by weir.
fn config(port: u16, image: &str, endpoints: &[(SocketAddr, &str)]) -> String {
    let mut eps = String::new();
    for (a, img) in endpoints {
        eps.push_str(&format!("    - {{address: \"{a}\", image: \"{img}\"}}\n"));
    }
    let (sh, sv) = SET_HEADER;
    let (rh, rv) = RESPONSE_HEADER;
    let mut rules = String::new();
    for (name, prefix) in [("main", "/"), ("bulk", BULK)] {
        rules.push_str(&format!(
            r#"    - name: {name}
      matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set: [{{name: {sh}, value: {sv}}}]
            remove: [{REMOVED_HEADER}]
        - type: ResponseHeaderModifier
          responseHeaderModifier:
            add: [{{name: {rh}, value: {rv}}}]
      backendRefs:
        - {{name: app-stable, port: 80}}
        - {{name: app-canary, port: 80}}
"#
        ));
    }
    format!(
        r#"apiVersion: weir.dev/v1alpha1
kind: Proxy
metadata: {{name: edge}}
spec:
  debugHeaders: true
  gatewayAddress: 127.0.0.1
  admin: {{address: "127.0.0.1:0"}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: default}}
spec:
  gatewayClassName: weir
  listeners:
    - {{name: http, protocol: HTTP, port: {port}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: app, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [app.test]
  rules:
{rules}---
apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {{name: app}}
spec:
  endpoints:
{eps}---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {{name: app}}
spec:
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec: {{containers: [{{name: app, image: "{image}"}}]}}
  strategy:
    canary:
      canaryService: app-canary
      stableService: app-stable
      trafficRouting:
        managedRoutes: [{{name: beta}}]
        plugins:
          argoproj-labs/gatewayAPI: {{httpRoute: app, namespace: default}}
{STEPS}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{name: health}}
spec:
  metrics:
    - name: success-rate
      interval: 1s
      count: 2
      successCondition: result[0] >= 0.95
      provider:
        weir: {{metric: success-rate, window: 2s, minRequests: 5}}
"#
    )
}

/// One revision's backend: answers `status` with `x-backend: NAME`, and counts the
/// requests it gets, those that carry the rule's set header, and those that still carry
/// the header the rule removes.
struct Revision {
    addr: SocketAddr,
    hits: Arc<AtomicU64>,
    stamped: Arc<AtomicU64>,
    leaked: Arc<AtomicU64>,
}

impl Revision {
    async fn start(name: &'static str, status: u16) -> Revision {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let stamped = Arc::new(AtomicU64::new(0));
        let leaked = Arc::new(AtomicU64::new(0));
        let status = Arc::new(AtomicU16::new(status));
        let (h, s, l) = (hits.clone(), stamped.clone(), leaked.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (h, s, l, st) = (h.clone(), s.clone(), l.clone(), status.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            h.fetch_add(1, Ordering::Relaxed);
                            let has = |n: &str, v: Option<&str>| {
                                req.headers()
                                    .get(n)
                                    .is_some_and(|x| v.is_none_or(|v| x == v))
                            };
                            if has(SET_HEADER.0, Some(SET_HEADER.1)) {
                                s.fetch_add(1, Ordering::Relaxed);
                            }
                            if has(REMOVED_HEADER, None) {
                                l.fetch_add(1, Ordering::Relaxed);
                            }
                            let code = st.load(Ordering::Relaxed);
                            async move {
                                let resp = http::Response::builder()
                                    .status(code)
                                    .header("x-backend", name)
                                    .body(Full::new(Bytes::from_static(b"ok")))
                                    .unwrap();
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Revision {
            addr,
            hits,
            stamped,
            leaked,
        }
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Every request it got carried the set header and not the removed one.
    fn assert_filtered(&self, name: &str) {
        let (hits, stamped, leaked) = (
            self.hits(),
            self.stamped.load(Ordering::Relaxed),
            self.leaked.load(Ordering::Relaxed),
        );
        assert!(hits > 0, "{name} got no request");
        assert_eq!(stamped, hits, "{name}: requests without {SET_HEADER:?}");
        assert_eq!(leaked, 0, "{name}: requests that kept {REMOVED_HEADER}");
    }
}

/// A free port on 127.0.0.1 for the Gateway's listener (the Gateway API has no port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One answer of [`burst`].
#[derive(Debug)]
struct Answer {
    status: u16,
    /// `x-weir-split-seq`: the request's ticket in the split (none for a header route).
    seq: Option<u64>,
    /// `x-backend`.
    backend: String,
    /// `x-weir-route`.
    route: String,
    /// The ResponseHeaderModifier's header was there.
    filtered: bool,
}

/// Sends `total` GETs for `app.test` over `connections` keep-alive connections at once,
/// each with `headers` and the header the rule removes.
async fn burst(
    addr: SocketAddr,
    connections: usize,
    total: usize,
    headers: &[(&str, &str)],
) -> Vec<Answer> {
    let next = Arc::new(AtomicU64::new(0));
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (next, headers) = (next.clone(), headers.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut out = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total as u64 {
                let mut req = http::Request::builder()
                    .uri("/")
                    .header(http::header::HOST, "app.test")
                    .header(REMOVED_HEADER, "secret");
                for (k, v) in &headers {
                    req = req.header(k, v);
                }
                let resp = send
                    .send_request(req.body(Empty::<Bytes>::new()).unwrap())
                    .await
                    .unwrap();
                let h = |n: &str| {
                    resp.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                let answer = Answer {
                    status: resp.status().as_u16(),
                    seq: h("x-weir-split-seq").parse().ok(),
                    backend: h("x-backend"),
                    route: h("x-weir-route"),
                    filtered: h(RESPONSE_HEADER.0) == RESPONSE_HEADER.1,
                };
                let _ = resp.into_body().collect().await;
                out.push(answer);
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// Open-loop load on the rule `bulk` until the token is cancelled (what
/// `crate::rollout::load` does, on another path).
fn background_load(addr: SocketAddr) -> (CancellationToken, tokio::task::JoinHandle<Report>) {
    let stop = CancellationToken::new();
    let spec = LoadSpec {
        connections: 4,
        mode: Mode::Open { rate: 200.0 },
        duration: Duration::from_secs(600),
        host: "app.test".into(),
        path: BULK.into(),
        ..LoadSpec::new(addr)
    };
    let s = stop.clone();
    (stop, tokio::spawn(async move { run(spec, s).await }))
}

/// Sends 2,000 requests to the rule `main` at once, under a second load on the same rule
/// (400 requests a second for one second, each response's backend and ticket recorded,
/// left to end by itself so that none is abandoned). Every request weir gave a ticket
/// between the burst's first and last, the load's and the burst's alike, is put back in
/// ticket order: the tickets have no gap, and every window of 10, 100 and 1,000 holds
/// `share` canary requests within one. Returns the burst's answers, how many requests were
/// checked and how many of them the load sent.
async fn exact_under_load(gw: SocketAddr, canary: &str, share: f64) -> (Vec<Answer>, usize, usize) {
    let spec = LoadSpec {
        connections: 4,
        mode: Mode::Open { rate: 400.0 },
        duration: Duration::from_secs(1),
        host: "app.test".into(),
        record_sequence: true,
        ..LoadSpec::new(gw)
    };
    let load = tokio::spawn(run(spec, CancellationToken::new()));
    let answers = burst(gw, 64, 2000, &[]).await;
    let report = load.await.unwrap();
    assert_eq!(report.errors, 0, "{:?}", report.by_status);
    assert!(report.by_status.keys().all(|s| *s == 200), "{report:?}");
    let seqs: Vec<u64> = answers.iter().map(|a| a.seq.expect("a ticket")).collect();
    let (lo, hi) = (*seqs.iter().min().unwrap(), *seqs.iter().max().unwrap());
    let mut tickets: Vec<(u64, &str)> = answers
        .iter()
        .map(|a| (a.seq.unwrap(), a.backend.as_str()))
        .chain(
            report
                .seqs
                .iter()
                .zip(&report.sequence)
                .filter_map(|(s, b)| s.map(|s| (s, b.as_str()))),
        )
        .filter(|(s, _)| (lo..=hi).contains(s))
        .collect();
    tickets.sort();
    assert!(
        tickets
            .iter()
            .enumerate()
            .all(|(i, (s, _))| *s == lo + i as u64),
        "tickets {lo}..={hi} are each handed out once ({} answers)",
        tickets.len()
    );
    let is_canary: Vec<bool> = tickets.iter().map(|(_, b)| *b == canary).collect();
    for n in [10, 100, 1000] {
        let worst = worst_deviation(&is_canary, share, n);
        assert!(worst <= 1.0, "canary {share}: window {n} off by {worst}");
    }
    let total = is_canary.iter().filter(|c| **c).count() as f64;
    assert!(
        (total - share * is_canary.len() as f64).abs() <= 1.0,
        "canary {total} of {}",
        is_canary.len()
    );
    let checked = tickets.len();
    drop(tickets);
    (answers, checked, checked - seqs.len())
}

/// Prints the last rollout state seen when a wait fails.
struct LastState(Arc<Mutex<Value>>);

impl Drop for LastState {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let s = self.0.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!(
                "last state of rollout app: {}",
                serde_json::to_string_pretty(&*s).unwrap_or_default()
            );
        }
    }
}

/// Waits until rollout `app`'s state satisfies `ok`; returns that state.
async fn until(
    admin: SocketAddr,
    what: &str,
    within: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let last = LastState(Arc::new(Mutex::new(Value::Null)));
    eventually(what, within, || {
        let (seen, ok) = (last.0.clone(), &ok);
        async move {
            let s = crate::rollout::state(admin).await;
            let good = ok(&s);
            *seen.lock().unwrap() = s;
            good
        }
    })
    .await;
    last.0.lock().unwrap().clone()
}

/// Paused at step `index` with the canary at `weight` percent.
fn paused_at(index: u64, weight: f64) -> impl Fn(&Value) -> bool {
    move |s| {
        s["phase"] == "Paused"
            && s["currentStepIndex"] == index
            && s["canaryWeight"].as_f64() == Some(weight)
    }
}

fn successful_runs(s: &Value) -> usize {
    s["pastAnalysisRuns"].as_array().map_or(0, |r| {
        r.iter().filter(|r| r["phase"] == "Successful").count()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_through_an_httproute_follows_the_steps_and_is_promoted_then_aborted() {
    let v1 = Revision::start("v1", 200).await;
    let v2 = Revision::start("v2", 200).await;
    let v3 = Revision::start("v3", 200).await;
    let eps = [
        (v1.addr, "app:v1"),
        (v2.addr, "app:v2"),
        (v3.addr, "app:v3"),
    ];
    let port = free_port();
    let gw = SocketAddr::from(([127, 0, 0, 1], port));
    let weir = Weir::start(&config(port, "app:v1", &eps)).await;
    assert_eq!(
        weir.app().listeners(),
        vec![(format!("gateway:{gw}"), gw)],
        "the Gateway's listener is the only one"
    );
    let admin = weir.admin();
    let within = Duration::from_secs(10);
    until(admin, "v1 is stable", within, |s| {
        s["phase"] == "Healthy" && s["stableRevision"] == "app:v1"
    })
    .await;

    // The admin API reports the Gateway's listener with the route attached, and the
    // route accepted with its references resolved.
    let status: Value =
        serde_json::from_slice(&get(admin, "127.0.0.1", "/api/v1/gateway").await.body).unwrap();
    let find = |kind: &str| {
        status
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {status}"))
            .clone()
    };
    assert_eq!(find("Gateway")["sections"][0]["attachedRoutes"], 1);
    let route = find("HTTPRoute");
    assert_eq!(route["name"], "app");
    let conditions: Vec<(&str, &str)> = route["sections"][0]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        conditions,
        [("Accepted", "True"), ("ResolvedRefs", "True")],
        "{route}"
    );

    // Before the update: every request through the rule reaches v1, filtered.
    let answers = burst(gw, 4, 100, &[]).await;
    assert!(
        answers
            .iter()
            .all(|a| a.status == 200 && a.backend == "v1" && a.route == ROUTE && a.filtered)
    );
    let r = get(gw, "app.test", BULK).await;
    assert_eq!(r.header("x-weir-route"), Some("default/app/bulk"));
    // The route's hostnames decide: another host has no route.
    assert_eq!(get(gw, "other.test", "/").await.status, 404);

    // The update, under load: paused at 20%, exactly.
    let (stop, load) = background_load(gw);
    weir.write_config(&config(port, "app:v2", &eps));
    until(admin, "paused at 20%", within, paused_at(1, 20.0)).await;
    let (answers, checked_20, load_20) = exact_under_load(gw, "v2", 0.2).await;
    assert!(answers.iter().all(|a| a.status == 200 && a.filtered));

    // Promote past the pause: the header route, an analysis that passes, 50%.
    post(admin, "/api/v1/rollouts/app/promote").await;
    let s = until(
        admin,
        "paused at 50% after a passed analysis",
        Duration::from_secs(20),
        paused_at(5, 50.0),
    )
    .await;
    assert_eq!(successful_runs(&s), 1, "{s}");
    assert_eq!(s["headerRoutes"], serde_json::json!(["beta"]));
    // The header route reaches the canary whatever the weight, through the same rule
    // with the same filters, and takes no ticket from the split.
    let by_header = burst(gw, 4, 100, &[CANARY_HEADER]).await;
    assert!(
        by_header.iter().all(|a| a.status == 200
            && a.backend == "v2"
            && a.seq.is_none()
            && a.route == ROUTE
            && a.filtered),
        "{:?}",
        by_header.first()
    );
    let (answers, checked_50, load_50) = exact_under_load(gw, "v2", 0.5).await;
    assert!(answers.iter().all(|a| a.status == 200 && a.filtered));
    // The rule's filters applied to both revisions: every request either revision got
    // carried the header the rule sets and not the one it removes, and every response
    // carried the header the rule adds.
    v1.assert_filtered("v1");
    v2.assert_filtered("v2");

    // Promote past the last pause: v2 is stable and takes everything.
    post(admin, "/api/v1/rollouts/app/promote").await;
    let s = until(admin, "v2 promoted", within, |s| {
        s["phase"] == "Healthy" && s["stableRevision"] == "app:v2"
    })
    .await;
    assert_eq!(s["canaryWeight"], 0.0);
    assert_eq!(s["headerRoutes"], serde_json::json!([]));
    let events: Vec<&str> = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(events.contains(&"RolloutCompleted"), "{events:?}");
    let answers = burst(gw, 4, 100, &[]).await;
    let by_header = burst(gw, 4, 20, &[CANARY_HEADER]).await;
    assert!(
        answers
            .iter()
            .chain(&by_header)
            .all(|a| a.status == 200 && a.backend == "v2" && a.filtered)
    );

    // The next update, aborted at 50% with its header route set: everything goes back to
    // the stable revision, the header route's requests too.
    weir.write_config(&config(port, "app:v3", &eps));
    until(admin, "v3 paused at 20%", within, paused_at(1, 20.0)).await;
    post(admin, "/api/v1/rollouts/app/promote").await;
    until(
        admin,
        "v3 paused at 50%",
        Duration::from_secs(20),
        paused_at(5, 50.0),
    )
    .await;
    post(admin, "/api/v1/rollouts/app/abort").await;
    let s = until(admin, "v3 aborted", within, |s| s["phase"] == "Degraded").await;
    assert_eq!(s["aborted"], true);
    assert_eq!(s["canaryWeight"], 0.0);
    assert_eq!(s["stableRevision"], "app:v2");
    assert_eq!(s["headerRoutes"], serde_json::json!([]));
    let v3_before = v3.hits();
    let answers = burst(gw, 8, 200, &[]).await;
    let by_header = burst(gw, 4, 50, &[CANARY_HEADER]).await;
    assert!(
        answers
            .iter()
            .chain(&by_header)
            .all(|a| a.status == 200 && a.backend == "v2" && a.filtered),
        "everything goes to the stable revision after the abort"
    );
    assert_eq!(v3.hits(), v3_before, "the aborted canary gets nothing");
    stop.cancel();
    let report = load.await.unwrap();
    assert_eq!(report.errors, 0);
    assert!(report.by_status.keys().all(|s| *s == 200), "{report:?}");
    v3.assert_filtered("v3");
    println!(
        "gateway canary: exact at 20% over {checked_20} consecutive tickets ({load_20} of them a concurrent load's), at 50% over {checked_50} ({load_50}); background load: {} requests, all 200, by backend {:?}",
        report.requests, report.by_backend
    );
    weir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_through_an_httproute_that_fails_every_request_is_aborted_by_the_analysis() {
    let v1 = Revision::start("v1", 200).await;
    let v2 = Revision::start("v2", 500).await;
    let eps = [(v1.addr, "app:v1"), (v2.addr, "app:v2")];
    let port = free_port();
    let gw = SocketAddr::from(([127, 0, 0, 1], port));
    let weir = Weir::start(&config(port, "app:v1", &eps)).await;
    let admin = weir.admin();
    let within = Duration::from_secs(10);
    until(admin, "v1 is stable", within, |s| s["phase"] == "Healthy").await;
    let (stop, load) = crate::rollout::load(gw, 200.0);
    weir.write_config(&config(port, "app:v2", &eps));
    until(admin, "paused at 20%", within, paused_at(1, 20.0)).await;
    post(admin, "/api/v1/rollouts/app/promote").await;
    let s = until(
        admin,
        "aborted by the analysis",
        Duration::from_secs(20),
        |s| s["phase"] == "Degraded",
    )
    .await;
    assert_eq!(s["aborted"], true);
    assert_eq!(s["canaryWeight"], 0.0);
    assert_eq!(s["stableRevision"], "app:v1");
    assert_eq!(s["headerRoutes"], serde_json::json!([]));
    assert!(
        s["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("RolloutAborted"),
        "{s}"
    );
    assert!(
        s["pastAnalysisRuns"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["phase"] == "Failed")),
        "{s}"
    );
    // Once aborted nothing reaches v2, the header route's requests neither.
    let v2_before = v2.hits();
    let answers = burst(gw, 8, 200, &[]).await;
    let by_header = burst(gw, 4, 50, &[CANARY_HEADER]).await;
    assert!(
        answers
            .iter()
            .chain(&by_header)
            .all(|a| a.status == 200 && a.backend == "v1" && a.filtered)
    );
    assert_eq!(
        v2.hits(),
        v2_before,
        "the canary gets nothing after the abort"
    );
    stop.cancel();
    let report = load.await.unwrap();
    assert!(
        report.by_status.get(&500).copied().unwrap_or(0) > 0,
        "some requests reached the broken canary before the verdict: {:?}",
        report.by_status
    );
    v1.assert_filtered("v1");
    v2.assert_filtered("v2");
    weir.shutdown().await;
}

fn example() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway-canary.yaml");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// examples/gateway-canary.yaml loads with no warning, its Gateway and HTTPRoute are
/// accepted, and its rule is the Rollout's.
#[test]
fn the_gateway_canary_example_loads() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway-canary.yaml");
    let m = weir_config::load(&p).unwrap_or_else(|e| panic!("{e}"));
    let warnings: Vec<&str> = m
        .notices
        .iter()
        .filter(|n| n.warning)
        .map(|n| n.message.as_str())
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(m.argo.rollouts["my-app"].image, "my-app:v1.0.0");
    assert_eq!(m.argo.templates.len(), 1);
    let kinds: Vec<StatusKind> = m.gateway_status.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, [StatusKind::Gateway, StatusKind::HttpRoute]);
    for s in &m.gateway_status {
        for c in s
            .conditions
            .iter()
            .chain(s.sections.iter().flat_map(|x| &x.conditions))
        {
            assert_eq!(
                c.status,
                c.type_ != "Conflicted",
                "{} {}/{}: {c}",
                s.kind,
                s.namespace,
                s.name
            );
        }
    }
    let routes: Vec<(&str, &RouteTarget)> = m
        .proxy
        .routes
        .iter()
        .map(|r| (r.name.as_str(), &r.target))
        .collect();
    assert_eq!(
        routes,
        [(
            "default/my-app/main",
            &RouteTarget::Rollout("my-app".into())
        )]
    );
}

/// examples/gateway-canary.yaml: "edit the Rollout's image to my-app:v2.0.0 and save: the
/// canary begins". The Gateway's port and the fixed addresses are swapped for free ones,
/// time is compressed (pauses and intervals shortened) and load is driven; nothing else
/// changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_canary_example_runs() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let port = free_port();
    let gw = SocketAddr::from(([127, 0, 0, 1], port));
    let yaml = example()
        .replace("port: 8080", &format!("port: {port}"))
        .replace("127.0.0.1:9901", "127.0.0.1:0")
        .replace("127.0.0.1:9001", &v1.addr().to_string())
        .replace("127.0.0.1:9002", &v2.addr().to_string())
        .replace("duration: 10s", "duration: 1s")
        .replace("interval: 2s", "interval: 500ms");
    let weir = Weir::start(&yaml).await;
    let st = || {
        let a = weir.admin();
        async move {
            serde_json::from_slice::<Value>(
                &get(a, "127.0.0.1", "/api/v1/rollouts/my-app").await.body,
            )
            .unwrap_or_default()
        }
    };
    eventually("v1 is stable at once", Duration::from_secs(5), || async {
        st().await["phase"] == "Healthy"
    })
    .await;
    let host = "my-app.example.com";
    assert_eq!(get(gw, host, "/").await.header("x-backend"), Some("v1"));
    let stop = CancellationToken::new();
    let spec = LoadSpec {
        connections: 4,
        mode: Mode::Open { rate: 200.0 },
        duration: Duration::from_secs(600),
        host: host.into(),
        ..LoadSpec::new(gw)
    };
    let load = tokio::spawn(run(spec, stop.clone()));
    let i = yaml.find("kind: Rollout").unwrap();
    let edited = format!(
        "{}{}",
        &yaml[..i],
        yaml[i..].replacen("image: my-app:v1.0.0", "image: my-app:v2.0.0", 1)
    );
    weir.write_config(&edited);
    eventually(
        "the canary begins at 10% with its header route",
        Duration::from_secs(10),
        || async {
            let s = st().await;
            s["canaryWeight"] == 10.0
                && s["headerRoutes"] == serde_json::json!(["canary-by-header"])
        },
    )
    .await;
    let c = client();
    let r = get_with(&c, gw, host, "/", &[("X-Canary", "always")]).await;
    assert_eq!(r.header("x-backend"), Some("v2"));
    eventually("promoted", Duration::from_secs(30), || async {
        let s = st().await;
        s["phase"] == "Healthy" && s["stableRevision"] == "my-app:v2.0.0"
    })
    .await;
    stop.cancel();
    let report = load.await.unwrap();
    assert!(
        report.by_status.keys().all(|s| *s == 200),
        "{:?}",
        report.by_status
    );
    assert!(report.by_backend.get("v2").copied().unwrap_or(0) > 0);
    assert_eq!(get(gw, host, "/").await.header("x-backend"), Some("v2"));
    weir.shutdown().await;
}

/// A RequestMirror filter on a rule the Rollout splits still copies every request (it
/// was left out of Rollout routes), to the stable revision as to the canary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_the_rollout_splits_keeps_its_request_mirror() {
    let v1 = Revision::start("v1", 200).await;
    let v2 = Revision::start("v2", 200).await;
    let shadow = backend("shadow").await;
    let eps = [(v1.addr, "app:v1"), (v2.addr, "app:v2")];
    let port = free_port();
    let gw = SocketAddr::from(([127, 0, 0, 1], port));
    let cfg = |image: &str| {
        config(port, image, &eps).replacen(
            "        - type: ResponseHeaderModifier",
            "        - type: RequestMirror\n          requestMirror: {backendRef: {name: shadow}}\n        - type: ResponseHeaderModifier",
            1,
        ) + &service("shadow", &[shadow.addr()])
    };
    let weir = Weir::start(&cfg("app:v1")).await;
    let admin = weir.admin();
    until(admin, "v1 is stable", Duration::from_secs(10), |s| {
        s["phase"] == "Healthy"
    })
    .await;
    let answers = burst(gw, 4, 100, &[]).await;
    assert!(answers.iter().all(|a| a.status == 200 && a.backend == "v1"));
    eventually(
        "every request to the rule is copied",
        Duration::from_secs(10),
        || async { shadow.hits() == 100 },
    )
    .await;
    weir.write_config(&cfg("app:v2"));
    until(
        admin,
        "paused at 20%",
        Duration::from_secs(10),
        paused_at(1, 20.0),
    )
    .await;
    let answers = burst(gw, 4, 100, &[]).await;
    assert_eq!(answers.iter().filter(|a| a.backend == "v2").count(), 20);
    eventually(
        "every request to the rule is copied, during the canary too",
        Duration::from_secs(10),
        || async { shadow.hits() == 200 },
    )
    .await;
    weir.shutdown().await;
}
