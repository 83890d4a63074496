//! Rollouts end to end on real sockets: the proxy measures, the control loop decides,
//! the weights move.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weir_fixtures::load::{LoadSpec, Mode, run};

use crate::kit::*;

/// A Proxy routing everything to rollout `app`, a Service with one endpoint per image,
/// a Rollout with `steps` on `image`, and a fast analysis template measured by weir.
pub(crate) fn rollout_config(
    image: &str,
    strategy: &str,
    endpoints: &[(SocketAddr, &str)],
) -> String {
    let mut eps = String::new();
    for (a, img) in endpoints {
        eps.push_str(&format!("    - {{address: \"{a}\", image: \"{img}\"}}\n"));
    }
    format!(
        r#"apiVersion: weir.dev/v1alpha1
kind: Proxy
metadata: {{name: edge}}
spec:
  listeners: [{{name: web, address: "127.0.0.1:0"}}]
  admin: {{address: "127.0.0.1:0"}}
  routes:
    - name: app
      rollout: app
---
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
{strategy}
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

pub(crate) const CANARY: &str = "    canary:
      canaryService: app-canary
      stableService: app-stable
      steps:
        - setWeight: 20
        - pause: {duration: 1}
        - analysis: {templates: [{templateName: health}]}
        - setWeight: 60
        - pause: {duration: 1}
        - analysis: {templates: [{templateName: health}]}";

/// Open-loop load on `addr` until the token is cancelled.
pub(crate) fn load(
    addr: SocketAddr,
    rate: f64,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<weir_fixtures::load::Report>,
) {
    let stop = CancellationToken::new();
    let spec = LoadSpec {
        connections: 4,
        mode: Mode::Open { rate },
        duration: Duration::from_secs(600),
        host: "app.test".into(),
        ..LoadSpec::new(addr)
    };
    let s = stop.clone();
    (stop, tokio::spawn(async move { run(spec, s).await }))
}

pub(crate) async fn state(admin: SocketAddr) -> serde_json::Value {
    let r = get(admin, "127.0.0.1", "/api/v1/rollouts/app").await;
    serde_json::from_slice(&r.body).unwrap_or_default()
}

pub(crate) async fn wait_phase(
    admin: SocketAddr,
    phase: &str,
    within: Duration,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        last = state(admin).await;
        if last["phase"] == phase {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "not {phase} within {within:?}: {}",
        serde_json::to_string_pretty(&last).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_request_after_start_is_routed() {
    // weir serves only once the control loop's first turn has routed every Rollout:
    // a request sent the moment it started must not get 503 "no revision yet".
    let v1 = backend("v1").await;
    let eps = [(v1.addr(), "app:v1")];
    let weir = Weir::start(&rollout_config("app:v1", CANARY, &eps)).await;
    let r = get(weir.web(), "app.test", "/").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-backend"), Some("v1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_walks_every_step_and_is_promoted() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let eps = [(v1.addr(), "app:v1"), (v2.addr(), "app:v2")];
    let weir = Weir::start(&rollout_config("app:v1", CANARY, &eps)).await;
    assert_eq!(
        wait_phase(weir.admin(), "Healthy", Duration::from_secs(5)).await["stableRevision"],
        "app:v1"
    );
    let (stop, load) = load(weir.web(), 200.0);
    weir.write_config(&rollout_config("app:v2", CANARY, &eps));
    let mut seen_weights = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let done = loop {
        let s = state(weir.admin()).await;
        if let Some(w) = s["canaryWeight"].as_f64() {
            seen_weights.insert(w as u64);
        }
        if s["phase"] == "Healthy" && s["stableRevision"] == "app:v2" {
            break s;
        }
        assert!(tokio::time::Instant::now() < deadline, "not promoted: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.cancel();
    let report = load.await.unwrap();
    assert_eq!(report.errors, 0);
    assert!(
        report.by_status.keys().all(|s| *s == 200),
        "{:?}",
        report.by_status
    );
    assert!(
        seen_weights.contains(&20) && seen_weights.contains(&60),
        "{seen_weights:?}"
    );
    let events: Vec<String> = done["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "RolloutStepCompleted")
            .count(),
        6,
        "{events:?}"
    );
    assert!(events.contains(&"RolloutCompleted".to_owned()));
    assert!(
        done["pastAnalysisRuns"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["phase"] == "Successful")
            .count()
            >= 2
    );
    // All traffic now reaches v2.
    let r = get(weir.web(), "app.test", "/").await;
    assert_eq!(r.header("x-backend"), Some("v2"));
    weir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_canary_is_aborted_with_the_weight_back_to_zero() {
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
    let weir = Weir::start(&rollout_config("app:v1", CANARY, &eps)).await;
    wait_phase(weir.admin(), "Healthy", Duration::from_secs(5)).await;
    let (stop, load) = load(weir.web(), 200.0);
    weir.write_config(&rollout_config("app:v2", CANARY, &eps));
    let s = wait_phase(weir.admin(), "Degraded", Duration::from_secs(30)).await;
    assert_eq!(s["aborted"], true);
    assert_eq!(s["canaryWeight"], 0.0);
    assert_eq!(s["stableRevision"], "app:v1");
    assert!(
        s["message"].as_str().unwrap().starts_with("RolloutAborted"),
        "{s}"
    );
    // Once aborted, no request reaches v2: the next 100 requests all go to v1 (counted
    // by requests served, not by time waited).
    let (v1_before, v2_before) = (v1.hits(), v2.hits());
    eventually(
        "100 more requests served",
        Duration::from_secs(10),
        || async { v1.hits() >= v1_before + 100 },
    )
    .await;
    assert_eq!(
        v2.hits(),
        v2_before,
        "the canary gets nothing after the abort"
    );
    stop.cancel();
    let report = load.await.unwrap();
    let failed = report.by_status.get(&500).copied().unwrap_or(0);
    assert!(
        failed > 0,
        "some requests reached the broken canary before the verdict"
    );
    // `weir abort` on an aborted rollout says so; the stable keeps serving.
    let r = get(weir.web(), "app.test", "/").await;
    assert_eq!(r.header("x-backend"), Some("v1"));
    weir.shutdown().await;
}

/// Blue-green: the preview is reachable by its service name before promotion; the
/// switch is one snapshot swap; a failing post-promotion analysis switches back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_preview_promote_and_switch_back() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let v3 = backend("v3").await;
    let eps = [
        (v1.addr(), "app:v1"),
        (v2.addr(), "app:v2"),
        (v3.addr(), "app:v3"),
    ];
    let bg = "    blueGreen:
      activeService: app-active
      previewService: app-preview
      autoPromotionEnabled: false
      postPromotionAnalysis: {templates: [{templateName: health}]}";
    let weir = Weir::start(&rollout_config("app:v1", bg, &eps)).await;
    wait_phase(weir.admin(), "Healthy", Duration::from_secs(5)).await;
    weir.write_config(&rollout_config("app:v2", bg, &eps));
    let s = wait_phase(weir.admin(), "Paused", Duration::from_secs(10)).await;
    assert_eq!(s["previewRevision"], "app:v2");
    let who = |host: &'static str| {
        let w = weir.web();
        async move {
            get(w, host, "/")
                .await
                .header("x-backend")
                .map(str::to_owned)
        }
    };
    assert_eq!(
        who("app.test").await.as_deref(),
        Some("v1"),
        "production stays on the active revision"
    );
    assert_eq!(
        who("app-preview").await.as_deref(),
        Some("v2"),
        "the preview is reachable by its name"
    );
    assert_eq!(who("app-active").await.as_deref(), Some("v1"));
    let (stop, load) = load(weir.web(), 200.0);
    let r = get(weir.admin(), "127.0.0.1", "/api/v1/rollouts/app/promote").await;
    assert_eq!(r.status, 405, "promote is a POST");
    post(weir.admin(), "/api/v1/rollouts/app/promote").await;
    wait_phase(weir.admin(), "Healthy", Duration::from_secs(20)).await;
    assert_eq!(who("app.test").await.as_deref(), Some("v2"));

    // v3 answers errors after the switch: the post-promotion analysis fails and the
    // active service goes back to v2.
    v3.set(Behavior {
        status: 503,
        ..Behavior::default()
    });
    weir.write_config(&rollout_config("app:v3", bg, &eps));
    wait_phase(weir.admin(), "Paused", Duration::from_secs(10)).await;
    post(weir.admin(), "/api/v1/rollouts/app/promote").await;
    let s = wait_phase(weir.admin(), "Degraded", Duration::from_secs(20)).await;
    assert_eq!(s["aborted"], true);
    assert_eq!(s["activeRevision"], "app:v2");
    assert_eq!(
        who("app.test").await.as_deref(),
        Some("v2"),
        "switched back"
    );
    stop.cancel();
    let _ = load.await;
    weir.shutdown().await;
}

pub(crate) async fn post(addr: SocketAddr, path: &str) -> Resp {
    let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    Resp {
        status,
        headers,
        body,
    }
}

/// The job provider runs the smoke test of 09-analysis-smoke-test.yaml as a local
/// process; its `curl http://my-app-canary/...` reaches the canary through weir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_smoke_test_reaches_the_canary_by_name() {
    let curl = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .ok()
        .map(|_| "curl".to_owned());
    if crate::kit::process::require("curl", curl, "apt-get install curl").is_none() {
        return;
    }
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let eps = [(v1.addr(), "my-app:v1"), (v2.addr(), "my-app:v2")];
    let smoke = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/conformance/seed/09-analysis-smoke-test.yaml"),
    )
    .unwrap();
    let strategy = "    canary:
      canaryService: my-app-canary
      stableService: my-app-stable
      steps:
        - setWeight: 10
        - analysis: {templates: [{templateName: smoke-test}]}";
    let cfg = |img: &str| {
        rollout_config(img, strategy, &eps)
            .replace("name: app", "name: my-app")
            .replace("rollout: app", "rollout: my-app")
            .replace("{app: app}", "{app: my-app}")
            + "---\n"
            + &smoke
    };
    let weir = Weir::start(&cfg("my-app:v1")).await;
    let st = |w: &Weir| {
        let a = w.admin();
        async move {
            serde_json::from_slice::<serde_json::Value>(
                &get(a, "127.0.0.1", "/api/v1/rollouts/my-app").await.body,
            )
            .unwrap()
        }
    };
    eventually("healthy", Duration::from_secs(5), || async {
        st(&weir).await["phase"] == "Healthy"
    })
    .await;
    let before = v2.hits();
    weir.write_config(&cfg("my-app:v2"));
    eventually(
        "promoted after the smoke test",
        Duration::from_secs(30),
        || async {
            let s = st(&weir).await;
            s["phase"] == "Healthy" && s["stableRevision"] == "my-app:v2"
        },
    )
    .await;
    assert!(
        v2.hits() >= before + 2,
        "the job's two curls reached the canary"
    );
    weir.shutdown().await;
}

/// setHeaderRoute sends matching requests to the canary whatever the weight;
/// setMirrorRoute copies a share of matching requests to it, answered by stable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_and_mirror_routes() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let eps = [(v1.addr(), "app:v1"), (v2.addr(), "app:v2")];
    let strategy = "    canary:
      trafficRouting:
        managedRoutes: [{name: beta}, {name: shadow}]
      steps:
        - setHeaderRoute: {name: beta, match: [{headerName: x-beta, headerValue: {exact: \"1\"}}]}
        - setMirrorRoute: {name: shadow, percentage: 50, match: [{method: {exact: GET}, path: {prefix: /api}}]}
        - pause: {}";
    let weir = Weir::start(&rollout_config("app:v1", strategy, &eps)).await;
    wait_phase(weir.admin(), "Healthy", Duration::from_secs(5)).await;
    weir.write_config(&rollout_config("app:v2", strategy, &eps));
    let s = wait_phase(weir.admin(), "Paused", Duration::from_secs(10)).await;
    assert_eq!(s["canaryWeight"], 0.0);
    let c = client();
    let r = get_with(&c, weir.web(), "app.test", "/", &[("x-beta", "1")]).await;
    assert_eq!(
        r.header("x-backend"),
        Some("v2"),
        "the header route reaches the canary at weight 0"
    );
    let r = get_with(&c, weir.web(), "app.test", "/", &[]).await;
    assert_eq!(r.header("x-backend"), Some("v1"));
    let before = v2.hits();
    for _ in 0..100 {
        let r = get_with(&c, weir.web(), "app.test", "/api/items", &[]).await;
        assert_eq!(
            r.header("x-backend"),
            Some("v1"),
            "mirrored requests are answered by stable"
        );
    }
    eventually(
        "half the matching requests are copied to the canary",
        Duration::from_secs(10),
        || async { v2.hits() - before == 50 },
    )
    .await;
    // The header route's request and the mirror copies count for the canary in
    // Prometheus, but apart from what the split sent it (none, at weight 0): the
    // route's canary leg, which the canary-vs-stable judge reads, has no request.
    eventually(
        "Prometheus counts the canary's requests by rules",
        Duration::from_secs(5),
        || async {
            let m = metrics(weir.admin()).await;
            sample(
                &m,
                "http_requests_total{service=\"app\",role=\"canary\",revision=\"app:v2\",status=\"200\"}",
            ) == Some(51.0)
        },
    )
    .await;
    let stats = get(weir.admin(), "127.0.0.1", "/api/v1/stats?window=1m").await;
    let v: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
    let canary_leg = v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["legs"].as_array().unwrap())
        .find(|l| l["role"] == "canary")
        .expect("the route's canary leg")
        .clone();
    assert_eq!(canary_leg["window"]["requests"], 0, "{canary_leg}");
    // Promotion removes the managed routes.
    post(weir.admin(), "/api/v1/rollouts/app/promote").await;
    wait_phase(weir.admin(), "Healthy", Duration::from_secs(10)).await;
    let s = state(weir.admin()).await;
    assert_eq!(s["headerRoutes"].as_array().unwrap().len(), 0);
    weir.shutdown().await;
}

/// What a recording backend received: (method, path, body).
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String, bytes::Bytes)>>>;

/// A backend that records every request whole and answers 200 with `x-backend: name`.
async fn recording_backend(name: &'static str) -> (SocketAddr, Received) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got: Received = Default::default();
    let seen = got.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            seen.lock().unwrap().push((
                                parts.method.to_string(),
                                parts.uri.path().to_owned(),
                                body,
                            ));
                            let mut resp = http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from_static(b"ok"),
                            ));
                            resp.headers_mut()
                                .insert("x-backend", http::HeaderValue::from_static(name));
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, got)
}

/// Sends `parts` over one HTTP/1.1 connection with a pause between them (so that the body
/// arrives after the head); the `x-backend` of the response.
async fn send_in_parts(addr: SocketAddr, parts: &[&str]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    for p in parts {
        s.write_all(p.as_bytes()).await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.unwrap();
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
        if n == 0 || text.contains("\r\n\r\n") && text.ends_with("ok") || text.ends_with("aa") {
            return text
                .lines()
                .find_map(|l| l.strip_prefix("x-backend: "))
                .unwrap_or("")
                .trim()
                .to_owned();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_routes_copy_requests_with_bodies() {
    let v1 = backend("v1").await;
    let (v2, received) = recording_backend("v2").await;
    let eps = [(v1.addr(), "app:v1"), (v2, "app:v2")];
    let strategy = "    canary:
      steps:
        - setMirrorRoute: {name: shadow, match: [{method: {exact: POST}, path: {prefix: /api}}]}
        - pause: {}";
    let weir = Weir::start(&rollout_config("app:v1", strategy, &eps)).await;
    wait_phase(weir.admin(), "Healthy", Duration::from_secs(5)).await;
    weir.write_config(&rollout_config("app:v2", strategy, &eps));
    wait_phase(weir.admin(), "Paused", Duration::from_secs(10)).await;

    // HTTP/1.1, a sized body that arrives after the head.
    let head =
        "POST /api/a HTTP/1.1\r\nHost: app.test\r\nContent-Length: 11\r\nConnection: close\r\n\r\n";
    assert_eq!(
        send_in_parts(weir.web(), &[head, "hello world"]).await,
        "v1"
    );
    // HTTP/1.1, a chunked body in two pieces.
    let head = "POST /api/b HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    assert_eq!(
        send_in_parts(
            weir.web(),
            &[head, "5\r\nhello\r\n", "6\r\n there\r\n0\r\n\r\n"]
        )
        .await,
        "v1"
    );
    // HTTP/2 (prior knowledge), a body.
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = http::Request::post(format!("http://{}/api/c", weir.web()))
        .header("host", "app.test")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"over h2",
        )))
        .unwrap();
    let r = h2.request(req).await.unwrap();
    assert_eq!(r.headers()["x-backend"], "v1");
    // A GET does not match.
    assert_eq!(
        get(weir.web(), "app.test", "/api/d")
            .await
            .header("x-backend"),
        Some("v1")
    );

    eventually(
        "three copies reach the canary",
        Duration::from_secs(10),
        || async { received.lock().unwrap().len() == 3 },
    )
    .await;
    let mut got: Vec<(String, String, String)> = received
        .lock()
        .unwrap()
        .iter()
        .map(|(m, p, b)| {
            (
                m.clone(),
                p.clone(),
                String::from_utf8_lossy(b).into_owned(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("POST".into(), "/api/a".into(), "hello world".into()),
            ("POST".into(), "/api/b".into(), "hello there".into()),
            ("POST".into(), "/api/c".into(), "over h2".into()),
        ]
    );
    weir.shutdown().await;
}
