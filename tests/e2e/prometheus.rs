//! weir with a real Prometheus: Prometheus scrapes weir's `/metrics`, the seed's queries
//! return the right numbers, and a Rollout whose analysis is the seed's success-rate
//! template (pointed at that Prometheus) promotes a healthy canary and aborts a failing
//! one. Skipped, saying so, where Prometheus is not installed (`.ci/run` installs it).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::kit::process::{require, spawn_on_a_port};
use crate::kit::*;
use crate::rollout::{load, rollout_config};

struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_binary() -> Option<String> {
    for p in ["/usr/bin/prometheus", "/usr/local/bin/prometheus"] {
        if std::path::Path::new(p).exists() {
            return Some(p.to_owned());
        }
    }
    None
}

/// Starts Prometheus scraping `target` every 500 ms.
async fn start_prometheus(target: SocketAddr) -> Option<Prometheus> {
    let bin = require(
        "Prometheus",
        prometheus_binary(),
        "apt-get install prometheus",
    )?;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!("global:\n  scrape_interval: 500ms\n  evaluation_interval: 500ms\nscrape_configs:\n  - job_name: weir\n    static_configs:\n      - targets: ['{target}']\n"),
    )
    .unwrap();
    let (child, port) = spawn_on_a_port("prometheus", |port| {
        let mut c = Command::new(&bin);
        c.arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    })
    .await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let p = Prometheus {
        child,
        addr,
        _dir: dir,
    };
    eventually(
        "Prometheus is ready",
        Duration::from_secs(30),
        || async move {
            tokio::net::TcpStream::connect(addr).await.is_ok()
                && get(addr, "prom", "/-/ready").await.status == 200
        },
    )
    .await;
    Some(p)
}

async fn query(prom: SocketAddr, q: &str) -> Option<f64> {
    let enc: String = q
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let r = get(prom, "prom", &format!("/api/v1/query?query={enc}")).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

fn seed(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/conformance/seed")
            .join(name),
    )
    .unwrap()
}

/// The seed's three queries (08-analysis-comprehensive.yaml) against a split with a known
/// answer: 10% of requests go to a revision answering 500, every request takes ~40 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_queries_return_the_right_numbers() {
    let slow = |name: &'static str, status: u16| async move {
        FakeBackend::start(
            name,
            Behavior {
                status,
                latency: Latency::Fixed { ms: 40.0 },
                ..Behavior::default()
            },
        )
        .await
        .unwrap()
    };
    let v1 = slow("v1", 200).await;
    let v2 = slow("v2", 500).await;
    let eps = [(v1.addr(), "app:v1"), (v2.addr(), "app:v2")];
    let strategy = "    canary:\n      steps: [{setWeight: 10}, {pause: {}}]";
    let weir = Weir::start(&rollout_config("app:v1", strategy, &eps)).await;
    let Some(prom) = start_prometheus(weir.admin()).await else {
        return;
    };
    weir.write_config(&rollout_config("app:v2", strategy, &eps));
    eventually("canary at 10%", Duration::from_secs(10), || async {
        crate::rollout::state(weir.admin()).await["canaryWeight"] == 10.0
    })
    .await;
    let (stop, load) = load(weir.web(), 300.0);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let template = seed("08-analysis-comprehensive.yaml");
    let queries: Vec<String> = template
        .split("query: |")
        .skip(1)
        .map(|q| {
            q.lines()
                .skip(1)
                .take_while(|l| l.starts_with("            "))
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
                .replace("{{args.service-name}}", "app")
                .replace("[5m]", "[4s]")
        })
        .collect();
    assert_eq!(queries.len(), 3, "{queries:?}");
    let success = query(prom.addr, &queries[0]).await.expect("success rate");
    let p99 = query(prom.addr, &queries[1]).await.expect("p99");
    let errors = query(prom.addr, &queries[2]).await.expect("error rate");
    // weir's own view of the same seconds.
    let own: serde_json::Value = serde_json::from_slice(
        &get(weir.admin(), "127.0.0.1", "/api/v1/stats?window=4s")
            .await
            .body,
    )
    .unwrap();
    let legs = own["routes"][0]["legs"].as_array().unwrap().clone();
    let (mut req, mut fail) = (0.0, 0.0);
    let mut own_p99: f64 = 0.0;
    for l in &legs {
        req += l["window"]["requests"].as_f64().unwrap();
        fail += l["window"]["failures"].as_f64().unwrap();
        own_p99 = own_p99.max(l["window"]["p99"].as_f64().unwrap_or(0.0));
    }
    stop.cancel();
    let _ = load.await;
    println!("Prometheus: success rate {success:.4}, p99 {p99:.4}s, 5xx rate {errors:.4}");
    println!(
        "weir itself (last 4 s): success rate {:.4}, p99 {own_p99:.4}s, failures {fail}/{req}",
        (req - fail) / req
    );
    // The split is exact, so the answer is 0.9 / 0.1 up to where the rate windows cut.
    assert!((success - 0.9).abs() < 0.01, "success rate {success}");
    assert!((errors - 0.1).abs() < 0.01, "error rate {errors}");
    // 40 ms lies in the 0.0336-0.04 bucket... plus the proxy's own time: within a bucket.
    assert!(p99 > 0.035 && p99 < 0.06, "p99 {p99}");
    weir.shutdown().await;
}

/// The seed's success-rate template (06), with its address pointed at the test's
/// Prometheus and its interval compressed, as background analysis: a healthy canary is
/// promoted, a failing one aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_template_promotes_a_healthy_canary_and_aborts_a_failing_one() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let v3 = FakeBackend::start(
        "v3",
        Behavior {
            status: 500,
            ..Behavior::default()
        },
    )
    .await
    .unwrap();
    let eps = [
        (v1.addr(), "app:v1"),
        (v2.addr(), "app:v2"),
        (v3.addr(), "app:v3"),
    ];
    let strategy = "    canary:\n      analysis:\n        templates: [{templateName: success-rate}]\n        args: [{name: service-name, value: app}]\n      steps: [{setWeight: 50}, {pause: {duration: 6}}]";
    // Prometheus needs weir's admin address and weir's template needs Prometheus's:
    // pick the admin port first.
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let Some(prom) = start_prometheus(admin).await else {
        return;
    };
    let template = seed("06-analysis-success-rate.yaml")
        .replace(
            "http://prometheus.monitoring:9090",
            &format!("http://{}", prom.addr),
        )
        .replace("interval: 1m", "interval: 1s")
        .replace("[5m]", "[3s]");
    let cfg = |img: &str| {
        format!("{}---\n{template}", rollout_config(img, strategy, &eps)).replace(
            "admin: {address: \"127.0.0.1:0\"}",
            &format!("admin: {{address: \"{admin}\"}}"),
        )
    };
    let weir = Weir::start(&cfg("app:v1")).await;
    let (stop, load) = load(weir.web(), 200.0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    weir.write_config(&cfg("app:v2"));
    eventually(
        "the healthy canary is promoted",
        Duration::from_secs(60),
        || async {
            let s = crate::rollout::state(weir.admin()).await;
            assert_ne!(s["phase"], "Degraded", "{s}");
            s["phase"] == "Healthy" && s["stableRevision"] == "app:v2"
        },
    )
    .await;
    weir.write_config(&cfg("app:v3"));
    let s = crate::rollout::wait_phase(weir.admin(), "Degraded", Duration::from_secs(60)).await;
    assert_eq!(s["aborted"], true);
    assert_eq!(s["canaryWeight"], 0.0);
    let runs = s["pastAnalysisRuns"].as_array().unwrap();
    assert!(runs.iter().any(|r| r["phase"] == "Failed"), "{runs:?}");
    stop.cancel();
    let _ = load.await;
    weir.shutdown().await;
}

/// The prometheus provider against the real server: vector, scalar, range, an empty
/// vector, a bad query and a refused connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prometheus_provider_shapes_results() {
    use weir_config::analysis::PrometheusProvider;
    use weir_control::analysis::Numbers;
    use weir_control::analysis::Outcome;
    use weir_control::providers::HttpClient;
    use weir_control::providers::prometheus::measure;
    let weir = Weir::start(
        &(proxy(&split_route("app", &[("v1", 100.0)]), "")
            + &service("v1", &[backend("v1").await.addr()])),
    )
    .await;
    let Some(prom) = start_prometheus(weir.admin()).await else {
        return;
    };
    let http = HttpClient::new();
    let p = |query: &str, range: Option<(String, String, Duration)>| PrometheusProvider {
        address: format!("http://{}", prom.addr),
        query: query.to_owned(),
        timeout: Duration::from_secs(5),
        insecure: false,
        headers: vec![("X-Scope-OrgID".into(), "test".into())],
        range,
        basic_auth: None,
    };
    eventually("weir is scraped", Duration::from_secs(20), || async {
        matches!(measure(&http, &p("up{job=\"weir\"}", None)).await, Outcome::Numbers(Numbers::List(a)) if a.len() == 1)
    })
    .await;
    assert_eq!(
        measure(&http, &p("up{job=\"weir\"}", None)).await,
        Outcome::Numbers(Numbers::List(vec![1.0]))
    );
    assert_eq!(
        measure(&http, &p("scalar(up{job=\"weir\"})", None)).await,
        Outcome::Numbers(Numbers::Scalar(1.0))
    );
    assert_eq!(
        measure(&http, &p("up{job=\"nothing\"}", None)).await,
        Outcome::Numbers(Numbers::List(vec![])),
        "an empty vector is []: result[0] then makes an Error"
    );
    let range = || {
        Some((
            "now() - duration(\"3s\")".to_owned(),
            "now()".to_owned(),
            Duration::from_secs(1),
        ))
    };
    eventually(
        "a range query gives one flat list of samples",
        Duration::from_secs(20),
        || async {
            match measure(&http, &p("up{job=\"weir\"}", range())).await {
                Outcome::Numbers(Numbers::List(a)) => {
                    assert!(a.iter().all(|v| *v == 1.0), "{a:?}");
                    a.len() >= 3
                }
                other => panic!("{other:?}"),
            }
        },
    )
    .await;
    match measure(&http, &p("sum(", None)).await {
        Outcome::Error(e) => assert!(e.contains("parse error"), "{e}"),
        other => panic!("{other:?}"),
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut refused = p("up", None);
    refused.address = format!("http://{closed}");
    match measure(&http, &refused).await {
        Outcome::Error(e) => assert!(e.contains("Prometheus at"), "{e}"),
        other => panic!("{other:?}"),
    }
    weir.shutdown().await;
}
