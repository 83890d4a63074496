//! What the issue-10 tests share: in-memory fakes of the two ports, a controller
//! running over them, and a canary Rollout to drive.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use weir_config::Model;
use weir_control::api::RolloutView;
use weir_control::{
    Controller, ControllerHandle, ControllerOptions, MetricsSource, Sample, Served, TrafficPlan,
    TrafficRouter,
};

/// Every revision answers 100 requests per window, all successful, 10 ms each.
#[derive(Default)]
pub struct Metrics;

impl MetricsSource for Metrics {
    fn sample(
        &self,
        _: &str,
        _: &str,
        _: Served,
        window: Duration,
        _: Option<u64>,
        _: f64,
    ) -> Sample {
        Sample {
            requests: 100,
            failures: 0,
            latency: Some(0.01),
            seconds: window.as_secs_f64(),
        }
    }
}

/// Records every plan sent.
#[derive(Default)]
pub struct Router {
    pub plans: Mutex<Vec<Option<TrafficPlan>>>,
}

impl Router {
    /// The plan in force (None: nothing sent yet, or the Rollout has no revision).
    pub fn last(&self) -> Option<TrafficPlan> {
        self.plans.lock().unwrap().last().cloned().flatten()
    }

    /// Every plan sent, in order.
    pub fn all(&self) -> Vec<Option<TrafficPlan>> {
        self.plans.lock().unwrap().clone()
    }
}

impl TrafficRouter for Router {
    fn send(&self, _: &str, _: &str, plan: Option<TrafficPlan>) {
        self.plans.lock().unwrap().push(plan);
    }
    fn flush<'a>(&'a self) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async {})
    }
}

/// A Proxy-less configuration: the `app` Service with endpoints for `app:v1` to
/// `app:v3`, a canary Rollout `app` running `app:IMAGE` with `steps`, and `extra`
/// documents (templates).
pub fn canary(image: &str, steps: &str, extra: &str) -> Arc<Model> {
    let yaml = format!(
        r#"
apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {{name: app}}
spec:
  endpoints:
    - {{address: "127.0.0.1:9001", image: "app:v1"}}
    - {{address: "127.0.0.1:9002", image: "app:v2"}}
    - {{address: "127.0.0.1:9003", image: "app:v3"}}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {{name: app}}
spec:
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec: {{containers: [{{name: app, image: "app:{image}"}}]}}
  strategy:
    canary:
      steps: {steps}
{extra}"#
    );
    load(&yaml)
}

/// A configuration from YAML.
pub fn load(yaml: &str) -> Arc<Model> {
    Arc::new(
        weir_config::load_str(Path::new("/test/weir.yaml"), yaml).unwrap_or_else(|e| panic!("{e}")),
    )
}

/// A controller running over the fakes.
pub struct Harness {
    pub tx: watch::Sender<Arc<Model>>,
    pub router: Arc<Router>,
    pub handle: ControllerHandle,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Starts a controller over `model`, saving to `state_dir`.
pub fn start(model: Arc<Model>, state_dir: Option<PathBuf>) -> Harness {
    start_with(model, state_dir, Arc::new(Metrics))
}

/// Starts a controller over `model` and `metrics`, saving to `state_dir`.
pub fn start_with(
    model: Arc<Model>,
    state_dir: Option<PathBuf>,
    metrics: Arc<dyn MetricsSource>,
) -> Harness {
    let (tx, rx) = watch::channel(model);
    let router = Arc::new(Router::default());
    let (c, handle) = Controller::new(
        rx,
        metrics,
        router.clone(),
        ControllerOptions {
            state_dir,
            proxy_url: None,
            cluster: None,
        },
    )
    .unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(c.run(stop.clone()));
    Harness {
        tx,
        router,
        handle,
        stop,
        task,
    }
}

impl Harness {
    /// Stops the loop and waits for it to save and end.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("the control loop ended cleanly");
    }

    /// The rollout `app`.
    pub async fn app(&self) -> RolloutView {
        self.handle.get("app").await.expect("the rollout app")
    }

    /// Waits (in test time, a tenth of a second at a time, at most `limit`) until the
    /// rollout `app` is listed and `f` holds for it; its view then.
    pub async fn until(&self, limit: Duration, f: impl Fn(&RolloutView) -> bool) -> RolloutView {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let v = self.handle.get("app").await;
            if let Some(v) = &v
                && f(v)
            {
                return v.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not reached within {limit:?}: {v:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Serves `body` once, with status 200 (and `content_type`, when given), on a local
/// port: the server's base URL, `http://127.0.0.1:PORT`.
pub async fn serve_once(body: impl Into<Vec<u8>>, content_type: Option<&'static str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
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
        let content_type = content_type
            .map(|t| format!("Content-Type: {t}\r\n"))
            .unwrap_or_default();
        let response = format!(
            "HTTP/1.1 200 OK\r\n{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        sock.write_all(response.as_bytes()).await.unwrap();
        sock.write_all(&body).await.unwrap();
        sock.shutdown().await.ok();
    });
    format!("http://{addr}")
}
