//! Notifications on rollout events, as Argo's notification annotations ask:
//! `notifications.argoproj.io/subscribe.<trigger>.<service>: <recipient>;<recipient>`,
//! where the trigger is the event reason in kebab-case with `on-` in front
//! (`RolloutCompleted` is `on-rollout-completed`) and the service is one of the Proxy's
//! `spec.notifications.services`. Sending runs in its own tasks, so it never blocks the
//! control loop; a failed delivery is retried with backoff, and every outcome is
//! counted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;
use tokio::sync::{broadcast, watch};

use crate::controller::EventStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weir_config::Model;
use weir_config::model::Notifier as Service;

use crate::providers::HttpClient;
use crate::state::Event;

/// Attempts per delivery.
pub const ATTEMPTS: u32 = 5;
/// Wait before the second attempt; doubled for each later one.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);

const PREFIX: &str = "notifications.argoproj.io/subscribe.";

/// Delivery counts, for metrics.
#[derive(Debug, Default)]
pub struct NotifyStats {
    /// Delivered, by (service, trigger).
    pub sent: Mutex<BTreeMap<(String, String), u64>>,
    /// Attempts that failed (each is retried until the attempts run out).
    pub send_errors: AtomicU64,
    /// Deliveries given up after every attempt failed, or to a service that is not
    /// configured.
    pub failed: AtomicU64,
    /// Events the notifier never saw because it fell too far behind the control loop:
    /// their notifications, if any were subscribed, were not sent.
    pub dropped: AtomicU64,
}

/// `RolloutStepCompleted` -> `on-rollout-step-completed`.
pub fn trigger_of(reason: &str) -> String {
    let mut out = String::from("on");
    for c in reason.chars() {
        if c.is_ascii_uppercase() {
            out.push('-');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// (service, recipient) pairs subscribed to `trigger` by these annotations.
pub fn subscriptions(
    annotations: &BTreeMap<String, String>,
    trigger: &str,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in annotations {
        let Some(rest) = k.strip_prefix(PREFIX) else {
            continue;
        };
        let Some((t, service)) = rest.split_once('.') else {
            continue;
        };
        if t != trigger {
            continue;
        }
        for r in v.split([';', ',']).map(str::trim).filter(|r| !r.is_empty()) {
            out.push((service.to_owned(), r.to_owned()));
        }
    }
    out
}

/// Sends notifications for the controller's events.
pub struct Notifier {
    model: watch::Receiver<Arc<Model>>,
    events: EventStream,
    http: HttpClient,
    stats: Arc<NotifyStats>,
    first_backoff: Duration,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifier")
    }
}

/// How long deliveries still in flight at shutdown may take to finish.
pub const DELIVERY_GRACE: Duration = Duration::from_secs(5);

impl Notifier {
    /// A notifier for `events`, configured by the model's Proxy and Rollout annotations.
    pub fn new(
        model: watch::Receiver<Arc<Model>>,
        events: EventStream,
        stats: Arc<NotifyStats>,
    ) -> Self {
        Notifier {
            model,
            events,
            http: HttpClient::new(),
            stats,
            first_backoff: FIRST_BACKOFF,
        }
    }

    /// Runs until `shutdown`; deliveries in flight then get [`DELIVERY_GRACE`] to finish.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let deliveries = TaskTracker::new();
        let give_up = CancellationToken::new();
        self.deliver(&shutdown, &deliveries, &give_up).await;
        deliveries.close();
        if tokio::time::timeout(DELIVERY_GRACE, deliveries.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "notifications: {} deliveries still retrying at shutdown were dropped",
                deliveries.len()
            );
            give_up.cancel();
            deliveries.wait().await;
        }
    }

    async fn deliver(
        &mut self,
        shutdown: &CancellationToken,
        deliveries: &TaskTracker,
        give_up: &CancellationToken,
    ) {
        loop {
            let (rollout, event) = tokio::select! {
                _ = shutdown.cancelled() => return,
                e = self.events.recv() => match e {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        self.stats.dropped.fetch_add(n, Ordering::Relaxed);
                        tracing::error!("notifications: {n} events were missed (the notifier fell behind the control loop); their notifications were not sent");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            let model = self.model.borrow().clone();
            let Some(spec) = model.argo.rollouts.get(&rollout) else {
                continue;
            };
            let trigger = trigger_of(event.reason.as_str());
            for (service, recipient) in subscriptions(&spec.annotations, &trigger) {
                let Some(svc) = model.proxy.notifiers.get(&service).cloned() else {
                    tracing::warn!(rollout = %rollout, %service, "notification service {service:?} is not configured in the Proxy's spec.notifications.services");
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let job = Delivery {
                    http: self.http.clone(),
                    stats: self.stats.clone(),
                    service,
                    svc,
                    recipient,
                    rollout: rollout.clone(),
                    trigger: trigger.clone(),
                    event: event.clone(),
                    first_backoff: self.first_backoff,
                };
                let give_up = give_up.clone();
                deliveries.spawn(async move {
                    tokio::select! {
                        _ = give_up.cancelled() => {}
                        _ = job.run() => {}
                    }
                });
            }
        }
    }
}

struct Delivery {
    http: HttpClient,
    stats: Arc<NotifyStats>,
    service: String,
    svc: Service,
    recipient: String,
    rollout: String,
    trigger: String,
    event: Event,
    first_backoff: Duration,
}

impl Delivery {
    fn request(&self) -> Result<http::Request<Full<Bytes>>, String> {
        let time = humantime_ms(self.event.time);
        let (method, url, headers, body) = match &self.svc {
            Service::Webhook {
                url,
                method,
                headers,
            } => (
                method.clone(),
                url.clone(),
                headers.clone(),
                json!({
                    "rollout": self.rollout,
                    "trigger": self.trigger,
                    "reason": self.event.reason,
                    "message": self.event.message,
                    "time": time,
                    "recipient": self.recipient,
                }),
            ),
            Service::Slack {
                webhook_url,
                username,
                icon_emoji,
            } => {
                let color = match self.trigger.as_str() {
                    "on-rollout-completed" => "good",
                    "on-rollout-aborted" | "on-analysis-run-failed" | "on-analysis-run-error" => {
                        "danger"
                    }
                    _ => "warning",
                };
                let mut body = json!({
                    "channel": self.recipient,
                    "text": format!("Rollout *{}*: {}", self.rollout, self.event.message),
                    "attachments": [{
                        "color": color,
                        "title": format!("{} ({})", self.rollout, self.trigger),
                        "text": self.event.message,
                        "fields": [
                            {"title": "Event", "value": self.event.reason, "short": true},
                            {"title": "Time", "value": time, "short": true},
                        ],
                    }],
                });
                if let Some(u) = username {
                    body["username"] = json!(u);
                }
                if let Some(e) = icon_emoji {
                    body["icon_emoji"] = json!(e);
                }
                ("POST".to_owned(), webhook_url.clone(), Vec::new(), body)
            }
        };
        let mut req = http::Request::builder()
            .method(method.as_str())
            .uri(&url)
            .header(http::header::CONTENT_TYPE, "application/json");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| format!("bad notification request to {url}: {e}"))
    }

    async fn run(self) {
        let mut backoff = self.first_backoff;
        for attempt in 1..=ATTEMPTS {
            let outcome = match self.request() {
                Ok(req) => self.http.send(req, Duration::from_secs(10), false).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok((status, _)) if status.is_success() => {
                    let mut sent = self.stats.sent.lock().unwrap_or_else(|e| e.into_inner());
                    *sent
                        .entry((self.service.clone(), self.trigger.clone()))
                        .or_insert(0) += 1;
                    tracing::debug!(rollout = %self.rollout, service = %self.service, trigger = %self.trigger, "notification sent");
                    return;
                }
                other => {
                    self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    let why = match other {
                        Ok((status, _)) => format!("answered {status}"),
                        Err(e) => e,
                    };
                    tracing::warn!(rollout = %self.rollout, service = %self.service, trigger = %self.trigger, attempt, "notification not delivered: {why}");
                }
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        tracing::error!(rollout = %self.rollout, service = %self.service, trigger = %self.trigger, "notification dropped after {ATTEMPTS} attempts");
    }
}

fn humantime_ms(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_and_subscriptions() {
        assert_eq!(
            trigger_of("RolloutStepCompleted"),
            "on-rollout-step-completed"
        );
        assert_eq!(trigger_of("AnalysisRunFailed"), "on-analysis-run-failed");
        let a: BTreeMap<String, String> = [
            (
                "notifications.argoproj.io/subscribe.on-rollout-completed.slack".to_owned(),
                "my-channel; ops".to_owned(),
            ),
            (
                "notifications.argoproj.io/subscribe.on-rollout-aborted.slack".to_owned(),
                "my-channel".to_owned(),
            ),
            ("other".to_owned(), "x".to_owned()),
        ]
        .into();
        assert_eq!(
            subscriptions(&a, "on-rollout-completed"),
            vec![
                ("slack".to_owned(), "my-channel".to_owned()),
                ("slack".to_owned(), "ops".to_owned())
            ]
        );
        assert!(subscriptions(&a, "on-rollout-paused").is_empty());
        assert_eq!(humantime_ms(1_795_803_910_123), "2026-11-27T18:25:10Z");
    }

    fn event(i: u64) -> (String, Event) {
        (
            "app".into(),
            Event {
                time: i,
                reason: crate::state::Reason::RolloutStepCompleted,
                message: format!("step {i}"),
            },
        )
    }

    /// Issue 10, item 9: a subscriber that falls behind is told how many events it
    /// missed, and the notifier counts them as dropped.
    #[tokio::test]
    async fn missed_events_are_counted() {
        let events = crate::controller::Events::new(2);
        let mut stream = events.subscribe();
        let notified = events.subscribe();
        // Five batches of three into a channel that keeps two: nine events missed.
        for b in 0..5 {
            events.publish((0..3).map(|i| event(b * 3 + i)).collect());
        }
        assert_eq!(
            stream.recv().await,
            Err(broadcast::error::RecvError::Lagged(9))
        );
        for i in 9..15 {
            assert_eq!(
                stream.recv().await.unwrap().1.time,
                i,
                "then the rest, in order"
            );
        }

        let model = weir_config::load_str(
            std::path::Path::new("/t/weir.yaml"),
            "apiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {name: a}\nspec: {endpoints: []}\n",
        )
        .unwrap();
        let (_tx, rx) = watch::channel(Arc::new(model));
        let stats = Arc::new(NotifyStats::default());
        let n = Notifier::new(rx, notified, stats.clone());
        let stop = CancellationToken::new();
        let task = tokio::spawn(n.run(stop.clone()));
        for _ in 0..100 {
            if stats.dropped.load(Ordering::Relaxed) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 9);
        stop.cancel();
        task.await.unwrap();
    }
}
