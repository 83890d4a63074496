//! Notifications: the Argo subscription annotations of 10-notifications.yaml deliver to a
//! real HTTP receiver on loopback in Slack's format; failures are retried and counted.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::kit::*;
use crate::rollout::post;

/// An HTTP receiver that records JSON bodies; it answers 500 to the first `fail` requests.
async fn receiver(
    fail: usize,
) -> (
    SocketAddr,
    Arc<Mutex<Vec<serde_json::Value>>>,
    Arc<AtomicUsize>,
) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(AtomicUsize::new(0));
    let (g, a) = (got.clone(), attempts.clone());
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let (g, a) = (g.clone(), a.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (g, a) = (g.clone(), a.clone());
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let n = a.fetch_add(1, Ordering::SeqCst);
                        let status = if n < fail { 500 } else { 200 };
                        if status == 200 {
                            g.lock()
                                .unwrap()
                                .push(serde_json::from_slice(&body).unwrap_or_default());
                        }
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(b"ok")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, got, attempts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_and_aborted_rollouts_notify_slack() {
    let (rx_addr, got, attempts) = receiver(1).await;
    let seed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/conformance/seed/10-notifications.yaml"),
    )
    .unwrap();
    let v2 = backend("v2").await;
    let v3 = backend("v3").await;
    let cfg = |image: &str| {
        format!(
            "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {{name: edge}}\nspec:\n  listeners: [{{name: web, address: \"127.0.0.1:0\"}}]\n  admin: {{address: \"127.0.0.1:0\"}}\n  routes: [{{name: app, rollout: my-app}}]\n  notifications:\n    services:\n      - name: slack\n        slack: {{webhookUrl: \"http://{rx_addr}/services/T0/B0/x\", username: weir}}\n---\napiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {{name: my-app}}\nspec:\n  endpoints:\n    - {{address: \"{}\", image: \"my-app:v2.0.0\"}}\n    - {{address: \"{}\", image: \"my-app:v3.0.0\"}}\n---\n{}",
            v2.addr(),
            v3.addr(),
            seed.replace("my-app:v2.0.0", image)
        )
    };
    let weir = Weir::start(&cfg("my-app:v2.0.0")).await;
    let a = weir.admin();
    let phase = || async move {
        serde_json::from_slice::<serde_json::Value>(
            &get(a, "127.0.0.1", "/api/v1/rollouts/my-app").await.body,
        )
        .unwrap()["phase"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    eventually("initial deploy", Duration::from_secs(5), || async {
        phase().await == "Healthy"
    })
    .await;
    // The initial deploy completes a rollout too: the first attempt fails (500) and the
    // retry delivers it.
    eventually(
        "delivered after a retry",
        Duration::from_secs(10),
        || async { got.lock().unwrap().len() == 1 },
    )
    .await;
    assert_eq!(attempts.load(Ordering::SeqCst), 2);

    weir.write_config(&cfg("my-app:v3.0.0"));
    eventually("paused at 20%", Duration::from_secs(10), || async {
        phase().await == "Paused"
    })
    .await;
    post(a, "/api/v1/rollouts/my-app/promote?full=true").await;
    eventually("completion notified", Duration::from_secs(10), || async {
        got.lock().unwrap().len() == 2
    })
    .await;
    let m = got.lock().unwrap()[1].clone();
    assert_eq!(m["channel"], "my-channel");
    assert!(m["text"].as_str().unwrap().contains("my-app"), "{m}");
    assert!(m["text"].as_str().unwrap().contains("completed"), "{m}");
    assert_eq!(m["attachments"][0]["color"], "good");
    assert_eq!(m["username"], "weir");

    weir.write_config(&cfg("my-app:v2.0.0"));
    eventually(
        "rolling back to v2 starts",
        Duration::from_secs(10),
        || async { phase().await == "Paused" },
    )
    .await;
    post(a, "/api/v1/rollouts/my-app/abort").await;
    eventually("abort notified", Duration::from_secs(10), || async {
        got.lock().unwrap().len() == 3
    })
    .await;
    let m = got.lock().unwrap()[2].clone();
    assert_eq!(m["attachments"][0]["title"], "my-app (on-rollout-aborted)");
    assert_eq!(m["attachments"][0]["color"], "danger");
    let metrics = metrics(a).await;
    assert_eq!(
        sample(
            &metrics,
            "weir_notifications_sent_total{service=\"slack\",trigger=\"on-rollout-completed\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "weir_notifications_sent_total{service=\"slack\",trigger=\"on-rollout-aborted\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "weir_notification_send_errors_total"),
        Some(1.0)
    );
    weir.shutdown().await;
}
