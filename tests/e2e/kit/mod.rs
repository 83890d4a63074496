//! Test kit: weir started in-process from inline YAML in a temp dir, fake backends on
//! 127.0.0.1:0, a small HTTP client, and `eventually` instead of sleeps.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use weir::app::{App, ServeOptions};

pub use weir_fixtures::backend::{Behavior, FakeBackend, Latency};

pub mod process;

/// A weir running in this process.
pub struct Weir {
    pub app: Option<App>,
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Weir {
    /// Writes `yaml` to a temp dir and starts weir on it.
    pub async fn start(yaml: &str) -> Weir {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, "weir.yaml", yaml).await
    }

    /// Starts weir on `yaml` written to `file` in `dir`.
    pub async fn start_in(dir: tempfile::TempDir, file: &str, yaml: &str) -> Weir {
        // RUST_LOG=debug shows weir's logs while debugging a test.
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        }
        let path = dir.path().join(file);
        std::fs::write(&path, yaml).expect("write config");
        let model = weir_config::load(&path).unwrap_or_else(|e| panic!("config: {e}"));
        let opts = ServeOptions {
            config: path.clone(),
            state_dir: dir.path().join("state"),
            workers: 2,
            measure: true,
            shutdown_grace: Duration::from_secs(10),
            watch: true,
            node: "test".into(),
        };
        let app = App::start(model, &opts).await.expect("weir starts");
        Weir {
            app: Some(app),
            dir,
            path,
        }
    }

    pub fn app(&self) -> &App {
        self.app.as_ref().expect("running")
    }

    /// The listener named `web`.
    pub fn web(&self) -> SocketAddr {
        self.app().listener("web").expect("a listener named web")
    }

    pub fn admin(&self) -> SocketAddr {
        self.app().admin()
    }

    /// Replaces the config file the way editors do: write a temp file, rename it over.
    pub fn write_config(&self, yaml: &str) {
        let tmp = self.dir.path().join(".weir.yaml.tmp");
        std::fs::write(&tmp, yaml).expect("write");
        std::fs::rename(&tmp, &self.path).expect("rename");
    }

    pub async fn shutdown(mut self) -> bool {
        self.app.take().expect("running").shutdown().await
    }
}

/// A Service document.
pub fn service(name: &str, endpoints: &[SocketAddr]) -> String {
    let eps: Vec<String> = endpoints.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "---\napiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  endpoints: [{}]\n",
        eps.join(", ")
    )
}

/// A Proxy with one `web` listener on port 0 and the given routes (YAML list items,
/// indented by four spaces) and extra spec lines.
pub fn proxy(routes: &str, extra: &str) -> String {
    format!(
        "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {{name: edge}}\nspec:\n  debugHeaders: true\n  listeners:\n    - {{name: web, address: \"127.0.0.1:0\"}}\n  admin: {{address: \"127.0.0.1:0\"}}\n{extra}  routes:\n{routes}"
    )
}

/// A fixed split route over `(service, weight)` legs.
pub fn split_route(name: &str, legs: &[(&str, f64)]) -> String {
    let mut s = format!("    - name: {name}\n      backends:\n");
    for (svc, w) in legs {
        s.push_str(&format!("        - {{service: {svc}, weight: {w}}}\n"));
    }
    s
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET `path` from `addr` with Host `host`.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Resp {
    get_with(&client(), addr, host, path, &[]).await
}

pub async fn get_with(
    c: &HttpClient,
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Resp {
    let mut req = http::Request::builder()
        .uri(format!("http://{addr}{path}"))
        .header(http::header::HOST, host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::<Bytes>::new()).expect("request");
    let resp = c.request(req).await.expect("response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

/// Polls `check` until it holds or `within` passes; panics with `what` then.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("not within {within:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The admin listener's `/metrics`, as text.
pub async fn metrics(admin: SocketAddr) -> String {
    get(admin, "127.0.0.1", "/metrics").await.text()
}

/// The value of the first sample whose line starts with `series` (name plus labels).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Starts a backend named `name` answering 200.
pub async fn backend(name: &str) -> FakeBackend {
    FakeBackend::start(name, Behavior::default())
        .await
        .expect("backend")
}

/// Sends `total` GETs over `connections` keep-alive connections at once; returns each
/// response's (status, `x-weir-split-seq`, `x-backend`), in no particular order.
pub async fn drive(
    addr: SocketAddr,
    host: &str,
    connections: usize,
    total: usize,
) -> Vec<(u16, Option<u64>, String)> {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let next = next.clone();
        let host = host.to_owned();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .expect("handshake");
            tokio::spawn(conn);
            let mut out = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                let req = http::Request::builder()
                    .uri("/")
                    .header(http::header::HOST, &host)
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                let resp = send.send_request(req).await.expect("response");
                let status = resp.status().as_u16();
                let seq = resp
                    .headers()
                    .get("x-weir-split-seq")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                let backend = resp
                    .headers()
                    .get("x-backend")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let _ = resp.into_body().collect().await;
                out.push((status, seq, backend));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    all
}

/// Worst |count - share·n| over every window of `n` consecutive entries of `seq`
/// that are `true`.
pub fn worst_deviation(seq: &[bool], share: f64, n: usize) -> f64 {
    weir_fixtures::worst_deviation(seq, |b| *b, share, n)
}
