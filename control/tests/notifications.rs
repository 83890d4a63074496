//! Issue 10, item 9: events and notifications at scale. A turn that records thousands
//! of events (a 1,000-step rollout run through at once) loses none of them: every
//! subscriber gets each one, and every notification subscribed to is sent.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use common::{load, start};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weir_control::notify::{Notifier, NotifyStats};
use weir_control::state::{Reason, RolloutPhase};

/// A webhook answering 200 to every request; its URL and the count of requests.
async fn webhook() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut sock = BufReader::new(sock);
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if sock.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0u8; length];
                    sock.read_exact(&mut body).await.unwrap();
                    seen.fetch_add(1, Relaxed);
                    sock.get_mut()
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .await
                        .unwrap();
                }
            });
        }
    });
    (format!("http://{addr}/hook"), count)
}

const STEPS: usize = 1000;

fn model(image: &str, hook: &str) -> Arc<weir_config::Model> {
    let steps: Vec<String> = (0..STEPS)
        .map(|i| format!("{{setWeight: {}}}", 1 + i % 2))
        .collect();
    load(&format!(
        r#"
apiVersion: weir.dev/v1alpha1
kind: Proxy
metadata: {{name: edge}}
spec:
  listeners: [{{name: web, address: "127.0.0.1:8080"}}]
  routes: [{{name: app, rollout: app}}]
  notifications:
    services:
      - name: hook
        webhook: {{url: "{hook}"}}
---
apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {{name: app}}
spec:
  endpoints:
    - {{address: "127.0.0.1:9001", image: "app:v1"}}
    - {{address: "127.0.0.1:9002", image: "app:v2"}}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: app
  annotations:
    notifications.argoproj.io/subscribe.on-rollout-step-completed.hook: team
spec:
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec: {{containers: [{{name: app, image: "app:{image}"}}]}}
  strategy:
    canary:
      steps: [{}]
"#,
        steps.join(", ")
    ))
}

#[tokio::test]
async fn thousands_of_events_in_one_turn_all_arrive() {
    let (hook, delivered) = webhook().await;
    let h = start(model("v1", &hook), None);
    h.until(Duration::from_secs(10), |v| {
        v.phase == Some(RolloutPhase::Healthy)
    })
    .await;
    let stats = Arc::new(NotifyStats::default());
    let notifier = Notifier::new(h.tx.subscribe(), h.handle.subscribe(), stats.clone());
    let stop = CancellationToken::new();
    let notifying = tokio::spawn(notifier.run(stop.clone()));
    let mut events = h.handle.subscribe();

    // One turn runs every step: 2 events each, and the update's own.
    h.tx.send(model("v2", &hook)).unwrap();
    let (mut all, mut steps) = (0, 0);
    loop {
        let (_, e) = events.recv().await.expect("no event is missed");
        all += 1;
        if e.reason == Reason::RolloutStepCompleted {
            steps += 1;
        }
        if e.reason == Reason::RolloutCompleted {
            break;
        }
    }
    assert_eq!(steps, STEPS);
    assert!(all > 2 * STEPS, "{all} events");

    // Every step completed is notified.
    for _ in 0..300 {
        if delivered.load(Relaxed) >= STEPS as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(delivered.load(Relaxed), STEPS as u64);
    let sent: u64 = stats.sent.lock().unwrap().values().sum();
    assert_eq!(sent, STEPS as u64);
    assert_eq!(stats.dropped.load(Relaxed), 0);
    assert_eq!(stats.failed.load(Relaxed), 0);
    stop.cancel();
    notifying.await.unwrap();
    h.stop().await;
}
