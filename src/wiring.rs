//! Adapters between the crates: the proxy's stats as the control loop's
//! `MetricsSource`, the proxy's updater as its `TrafficRouter`, and the rollouts API on
//! the admin listener.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use weir_control::{
    Action, ActionError, ControllerHandle, MetricsSource, Sample, Served, Tally, TrafficPlan,
    TrafficRouter,
};
use weir_proxy::admin::{AdminBody, AdminExtension, AdminRequest, json, text};
use weir_proxy::{CellKey, HeaderRoute, MirrorRoute, Proxy, Role, RolloutTraffic};

/// The proxy's measurements, summed over the roles a revision was served under.
pub struct ProxyMetrics(pub Arc<Proxy>);

impl ProxyMetrics {
    /// The window of `secs` seconds of `service`'s `revision` served as `served` (None:
    /// no such requests were ever counted).
    pub fn window(
        &self,
        service: &str,
        revision: &str,
        served: Served,
        secs: u64,
        since: Option<u64>,
    ) -> Option<weir_proxy::WindowSample> {
        let mut total: Option<weir_proxy::WindowSample> = None;
        for &role in roles_of(served) {
            let key = CellKey {
                service: Arc::from(service),
                role,
                revision: Arc::from(revision),
            };
            if let Some(w) = self.0.window_since(&key, secs, since) {
                match &mut total {
                    None => total = Some(w),
                    Some(t) => t.merge(&w),
                }
            }
        }
        total
    }
}

/// Adds `t` to second `sec` of `total` (consecutive seconds, not empty). The stats' clock
/// may have moved on since `total` was laid out: a second past its last is added to the
/// last one.
pub(crate) fn add_at(total: &mut [(u64, Tally)], sec: u64, t: weir_proxy::stats::Tally) {
    let start = total.first().map_or(0, |(s, _)| *s);
    let last = total.len().saturating_sub(1);
    if let Some((_, e)) = total.get_mut((sec.saturating_sub(start) as usize).min(last)) {
        e.requests += t.requests;
        e.failures += t.failures;
        e.slow += t.slow;
    }
}

/// The roles of the cells that count as `served`.
pub(crate) fn roles_of(served: Served) -> &'static [Role] {
    match served {
        Served::AsCanary => &AS_CANARY,
        Served::AsCanaryBySplit => &[Role::Canary],
        Served::AsStable => &[Role::Stable],
        Served::Any => &EVERY_ROLE,
    }
}

/// Every role a revision's requests are counted under.
const EVERY_ROLE: [Role; 4] = [Role::Stable, Role::Canary, Role::CanaryPinned, Role::None];
/// The roles of a revision's requests as the canary, by the split and by rules.
const AS_CANARY: [Role; 2] = [Role::Canary, Role::CanaryPinned];

impl MetricsSource for ProxyMetrics {
    fn sample(
        &self,
        service: &str,
        revision: &str,
        served: Served,
        window: Duration,
        since: Option<u64>,
        quantile: f64,
    ) -> Sample {
        // The stats keep ten minutes; a longer window (refused by validation) reads as that.
        let secs = window.as_secs().clamp(1, 600);
        match self.window(service, revision, served, secs, since) {
            None => Sample {
                seconds: secs as f64,
                ..Sample::default()
            },
            Some(w) => Sample {
                requests: w.requests,
                failures: w.failures,
                latency: w.quantile(quantile),
                seconds: secs as f64,
            },
        }
    }

    fn tallies(
        &self,
        service: &str,
        revision: &str,
        served: Served,
        since: Option<u64>,
        from_second: u64,
        slow_above_us: Option<u64>,
    ) -> Option<Vec<(u64, Tally)>> {
        let roles = roles_of(served);
        let now = weir_proxy::epoch_second();
        // One entry per second even for a revision that has had no traffic yet.
        let mut total: Vec<(u64, Tally)> = (from_second.min(now)..=now)
            .map(|s| (s, Tally::default()))
            .collect();
        for &role in roles {
            let key = CellKey {
                service: Arc::from(service),
                role,
                revision: Arc::from(revision),
            };
            for (sec, t) in self
                .0
                .tallies(&key, from_second, since, slow_above_us)
                .unwrap_or_default()
            {
                add_at(&mut total, sec, t);
            }
        }
        Some(total)
    }

    fn begin(&self, service: &str, revision: &str, since: u64) {
        for role in EVERY_ROLE {
            let key = CellKey {
                service: Arc::from(service),
                role,
                revision: Arc::from(revision),
            };
            self.0.cut(&key, since);
        }
    }

    fn series(
        &self,
        service: &str,
        revision: &str,
        points: usize,
        step: Duration,
        quantile: f64,
    ) -> Vec<Sample> {
        let step = step.as_secs().max(1);
        let mut total: Option<Vec<weir_proxy::WindowSample>> = None;
        for role in EVERY_ROLE {
            let key = CellKey {
                service: Arc::from(service),
                role,
                revision: Arc::from(revision),
            };
            if let Some(series) = self.0.series(&key, points, step) {
                match &mut total {
                    None => total = Some(series),
                    Some(t) => t.iter_mut().zip(&series).for_each(|(a, b)| a.merge(b)),
                }
            }
        }
        total
            .unwrap_or_default()
            .iter()
            .map(|w| Sample {
                requests: w.requests,
                failures: w.failures,
                latency: w.quantile(quantile),
                seconds: step as f64,
            })
            .collect()
    }
}

/// Traffic decisions to the proxy's single writer.
pub struct ProxyRouter(pub Arc<Proxy>);

impl TrafficRouter for ProxyRouter {
    fn endpoint_up(&self, addr: std::net::SocketAddr) -> Option<bool> {
        self.0.upstreams.endpoint_up(addr)
    }

    fn send(&self, rollout: &str, service: &str, plan: Option<TrafficPlan>) {
        let traffic = plan.map(|p| RolloutTraffic {
            service: service.to_owned(),
            stable: p.stable,
            canary: p.canary,
            canary_weight: p.canary_weight,
            header_routes: p
                .header_routes
                .into_iter()
                .map(|(name, matches)| HeaderRoute { name, matches })
                .collect(),
            mirror_routes: p
                .mirror_routes
                .into_iter()
                .map(|(name, percentage, matches)| MirrorRoute {
                    name,
                    percentage,
                    matches,
                })
                .collect(),
            role_hosts: p
                .role_hosts
                .into_iter()
                .map(|(h, canary)| (h, if canary { Role::Canary } else { Role::Stable }))
                .collect(),
        });
        self.0.updater.send_traffic(rollout, traffic);
    }

    fn flush<'a>(&'a self) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            self.0.updater.flush().await;
        })
    }
}

/// The dashboard: one page, its CSS and script inside it, built into the binary (no CDN).
const DASHBOARD: &str = include_str!("assets/dashboard.html");

/// `/` (the dashboard), `/api/v1/rollouts...` and `/api/v1/gateway` on the admin
/// listener.
pub struct RolloutsApi {
    /// The control loop.
    pub handle: ControllerHandle,
    /// The configuration in force (for the Gateway API objects' status).
    pub models: tokio::sync::watch::Receiver<Arc<weir_config::Model>>,
    /// Cluster mode: what this replica knows of the cluster.
    pub cluster: Option<Arc<weir_control::cluster::EtcdLink>>,
    /// The data plane (its per-second counts, for the other replicas).
    pub proxy: Arc<Proxy>,
}

/// `/healthz` fails when the control loop has not turned for this long (it turns at least
/// once a second).
const CONTROL_LOOP_STALL_MS: u64 = 10_000;

impl AdminExtension for RolloutsApi {
    fn health(&self) -> Result<(), String> {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = &self.handle.stats;
        if !stats.storage_healthy.load(Relaxed) {
            return Err("rollout state cannot be saved to the state folder (see the log and weir_state_save_failures_total)".into());
        }
        let beat = stats.heartbeat_ms.load(Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if beat != 0 && now.saturating_sub(beat) > CONTROL_LOOP_STALL_MS {
            return Err(format!(
                "the control loop has not turned for {}s",
                now.saturating_sub(beat) / 1000
            ));
        }
        Ok(())
    }

    fn handle(
        &self,
        req: &AdminRequest,
    ) -> Pin<Box<dyn Future<Output = Option<http::Response<AdminBody>>> + Send + '_>> {
        let method = req.method.clone();
        let path = req.path.clone();
        let query = req.query.clone();
        Box::pin(async move {
            if method == Method::GET && (path == "/" || path == "/index.html") {
                let mut r = http::Response::new(http_body_util::BodyExt::boxed_unsync(
                    http_body_util::Full::new(bytes::Bytes::from_static(DASHBOARD.as_bytes())),
                ));
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/html; charset=utf-8"),
                );
                return Some(r);
            }
            if method == Method::GET && path == "/api/v1/cluster/seconds" {
                // ?service=S&from=SECOND: this replica's closed seconds of a service.
                let Some(service) = query.get("service") else {
                    return Some(text(StatusCode::BAD_REQUEST, "service= is required\n"));
                };
                let from = query
                    .get("from")
                    .and_then(|f| f.parse::<u64>().ok())
                    .unwrap_or(0);
                let cells: Vec<crate::cluster::CellSeconds> = self
                    .proxy
                    .closed_seconds(service, from)
                    .into_iter()
                    .map(|(k, seconds)| crate::cluster::CellSeconds {
                        role: k.role,
                        revision: k.revision.to_string(),
                        seconds,
                    })
                    .collect();
                return Some(json(StatusCode::OK, &cells));
            }
            if method == Method::GET && path == "/api/v1/cluster" {
                return Some(match &self.cluster {
                    Some(c) => json(StatusCode::OK, &*c.report().borrow()),
                    None => json(
                        StatusCode::NOT_FOUND,
                        &serde_json::json!({ "error": "not in cluster mode: the Proxy has no spec.cluster" }),
                    ),
                });
            }
            if method == Method::GET && path == "/api/v1/gateway" {
                let model = self.models.borrow().clone();
                return Some(json(StatusCode::OK, &gateway_status(&model)));
            }
            let rest = path.strip_prefix("/api/v1/rollouts")?;
            let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
            Some(match (method, parts.as_slice()) {
                (Method::GET, []) => json(StatusCode::OK, &self.handle.list().await),
                (Method::GET, [name]) => match self.handle.get(name).await {
                    Some(v) => json(StatusCode::OK, &v),
                    None => not_found(name),
                },
                (Method::GET, [name, "history"]) => {
                    // ?minutes=M (default 5, at most 10: the stats' history) &step=S seconds
                    let minutes: u64 = query
                        .get("minutes")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(5)
                        .clamp(1, 10);
                    let step: u64 = query
                        .get("step")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(5)
                        .clamp(1, 60);
                    let points = (minutes * 60).div_ceil(step) as usize;
                    match self
                        .handle
                        .history(name, points, Duration::from_secs(step))
                        .await
                    {
                        Some(v) => json(StatusCode::OK, &v),
                        None => not_found(name),
                    }
                }
                (Method::POST, [name, action]) => {
                    let action = match *action {
                        "promote"
                            if query
                                .get("full")
                                .is_some_and(|v| v == "true" || v.is_empty()) =>
                        {
                            Action::PromoteFull
                        }
                        "promote" => Action::Promote,
                        "abort" => Action::Abort,
                        "retry" => Action::Retry,
                        "pause" => Action::Pause,
                        "resume" => Action::Resume,
                        "undo" => {
                            let to = query
                                .get("toRevision")
                                .or_else(|| query.get("to-revision"))
                                .and_then(|v| v.parse().ok())
                                .filter(|n| *n > 0);
                            Action::Undo(to)
                        }
                        other => {
                            return Some(text(
                                StatusCode::NOT_FOUND,
                                format!(
                                    "no action {other:?}: use promote, abort, retry, pause, resume or undo\n"
                                ),
                            ));
                        }
                    };
                    match self.handle.act(name, action).await {
                        Ok(v) => json(StatusCode::OK, &v),
                        Err(ActionError::NoRollout(_)) => not_found(name),
                        Err(e @ ActionError::Refused(_)) => json(
                            StatusCode::CONFLICT,
                            &serde_json::json!({ "error": e.to_string() }),
                        ),
                        Err(ActionError::NotDurable { view, reason }) => json(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            &serde_json::json!({
                                "error": format!("applied in memory only, not saved: {reason}"),
                                "rollout": view,
                            }),
                        ),
                        Err(e @ (ActionError::Stopped | ActionError::NotApplied(_))) => json(
                            StatusCode::SERVICE_UNAVAILABLE,
                            &serde_json::json!({ "error": e.to_string() }),
                        ),
                    }
                }
                (_, [_, _]) | (_, []) | (_, [_]) => {
                    text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
                }
                _ => text(StatusCode::NOT_FOUND, "not found\n"),
            })
        })
    }
}

fn not_found(name: &str) -> http::Response<AdminBody> {
    json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({ "error": format!("no rollout named {name:?}") }),
    )
}

/// The control loop's own metrics.
pub struct ControlCollector {
    stats: Arc<weir_control::LoopStats>,
    descs: Vec<prometheus::core::Desc>,
}

impl ControlCollector {
    /// A collector over the loop's statistics.
    pub fn new(stats: Arc<weir_control::LoopStats>) -> Self {
        let descs = [
            "weir_control_decisions_total",
            "weir_control_decision_seconds_sum",
            "weir_control_decision_seconds_max",
            "weir_control_turns_total",
            "weir_control_turn_seconds_sum",
            "weir_state_saves_total",
            "weir_state_save_failures_total",
        ]
        .iter()
        .map(|n| {
            prometheus::core::Desc::new((*n).into(), (*n).into(), Vec::new(), Default::default())
                .expect("valid name")
        })
        .collect();
        ControlCollector { stats, descs }
    }
}

impl prometheus::core::Collector for ControlCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.stats;

        use prometheus::proto::MetricType::{COUNTER, GAUGE};
        vec![
            one(
                "weir_control_decisions_total",
                "Traffic changes made right after a measurement result.",
                COUNTER,
                s.decisions.load(Relaxed) as f64,
            ),
            one(
                "weir_control_decision_seconds_sum",
                "Time from a measurement result to the data plane serving the traffic it led to, summed.",
                COUNTER,
                s.decision_us_sum.load(Relaxed) as f64 / 1e6,
            ),
            one(
                "weir_control_decision_seconds_max",
                "The longest time from a measurement result to the new traffic being served.",
                GAUGE,
                s.decision_us_max.load(Relaxed) as f64 / 1e6,
            ),
            one(
                "weir_control_turns_total",
                "Control loop turns over every rollout.",
                COUNTER,
                s.turns.load(Relaxed) as f64,
            ),
            one(
                "weir_control_turn_seconds_sum",
                "Time spent in control loop turns.",
                COUNTER,
                s.turn_us_sum.load(Relaxed) as f64 / 1e6,
            ),
            one(
                "weir_state_saves_total",
                "Saves of a rollout's state to the state folder.",
                COUNTER,
                s.state_saves.load(Relaxed) as f64,
            ),
            one(
                "weir_state_save_failures_total",
                "Saves of a rollout's state that failed (each is retried at the next turn).",
                COUNTER,
                s.state_save_failures.load(Relaxed) as f64,
            ),
        ]
    }
}

/// Notification delivery metrics.
pub struct NotifyCollector {
    stats: Arc<weir_control::notify::NotifyStats>,
    descs: Vec<prometheus::core::Desc>,
}

impl NotifyCollector {
    /// A collector over the notifier's counts.
    pub fn new(stats: Arc<weir_control::notify::NotifyStats>) -> Self {
        let descs = [
            "weir_notifications_sent_total",
            "weir_notification_send_errors_total",
            "weir_notifications_failed_total",
            "weir_notifications_dropped_total",
        ]
        .iter()
        .map(|n| {
            prometheus::core::Desc::new((*n).into(), (*n).into(), Vec::new(), Default::default())
                .expect("valid name")
        })
        .collect();
        NotifyCollector { stats, descs }
    }
}

impl prometheus::core::Collector for NotifyCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        use prometheus::proto::{Counter, LabelPair, Metric, MetricFamily, MetricType};
        use std::sync::atomic::Ordering::Relaxed;
        let counter = |labels: Vec<(&str, &str)>, v: f64| {
            let mut c = Counter::default();
            c.set_value(v);
            let mut m = Metric::default();
            m.set_label(
                labels
                    .into_iter()
                    .map(|(k, v)| {
                        let mut l = LabelPair::default();
                        l.set_name(k.into());
                        l.set_value(v.into());
                        l
                    })
                    .collect(),
            );
            m.set_counter(c);
            m
        };
        let family = |name: &str, help: &str, metrics: Vec<Metric>| {
            let mut f = MetricFamily::default();
            f.set_name(name.into());
            f.set_help(help.into());
            f.set_field_type(MetricType::COUNTER);
            f.set_metric(metrics);
            f
        };
        let sent = self
            .stats
            .sent
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        vec![
            family(
                "weir_notifications_sent_total",
                "Notifications delivered, by service and trigger.",
                sent.iter()
                    .map(|((svc, trig), n)| {
                        counter(vec![("service", svc), ("trigger", trig)], *n as f64)
                    })
                    .collect(),
            ),
            family(
                "weir_notification_send_errors_total",
                "Notification attempts that failed (each is retried with backoff).",
                vec![counter(
                    Vec::new(),
                    self.stats.send_errors.load(Relaxed) as f64,
                )],
            ),
            family(
                "weir_notifications_failed_total",
                "Notifications given up after every attempt, or for a service that is not configured.",
                vec![counter(Vec::new(), self.stats.failed.load(Relaxed) as f64)],
            ),
            family(
                "weir_notifications_dropped_total",
                "Events the notifier missed because it fell too far behind; not notified.",
                vec![counter(Vec::new(), self.stats.dropped.load(Relaxed) as f64)],
            ),
        ]
    }
}

/// `GET /api/v1/gateway`: each Gateway API object's status as weir would write it
/// (kind, namespace, name, conditions; a Gateway's listeners with their attached routes,
/// an HTTPRoute's parents, each with its conditions).
fn gateway_status(model: &weir_config::Model) -> serde_json::Value {
    use serde_json::json;
    let conditions = |list: &[weir_config::model::Condition]| -> Vec<serde_json::Value> {
        list.iter()
            .map(|c| {
                json!({
                    "type": c.type_,
                    "status": if c.status { "True" } else { "False" },
                    "reason": c.reason,
                    "message": c.message,
                })
            })
            .collect()
    };
    model
        .gateway_status
        .iter()
        .map(|s| {
            let sections: Vec<serde_json::Value> = s
                .sections
                .iter()
                .map(|sec| {
                    let mut v = json!({
                        "name": sec.name,
                        "conditions": conditions(&sec.conditions),
                    });
                    if let Some(n) = sec.attached_routes {
                        v["attachedRoutes"] = json!(n);
                    }
                    v
                })
                .collect();
            json!({
                "kind": s.kind.as_str(),
                "namespace": s.namespace,
                "name": s.name,
                "conditions": conditions(&s.conditions),
                "sections": sections,
            })
        })
        .collect()
}

/// Cluster mode's metrics: `weir_cluster_leader` (1 while this replica leads),
/// `weir_cluster_fresh` (0 while it has not heard from etcd: it serves the last weights
/// and takes no step), `weir_cluster_members` and `weir_cluster_etcd_bytes_written_total`.
pub struct ClusterCollector {
    link: Arc<weir_control::cluster::EtcdLink>,
    descs: Vec<prometheus::core::Desc>,
}

impl ClusterCollector {
    /// A collector over `link`.
    pub fn new(link: Arc<weir_control::cluster::EtcdLink>) -> Self {
        let descs = [
            "weir_cluster_leader",
            "weir_cluster_fresh",
            "weir_cluster_members",
            "weir_cluster_etcd_bytes_written_total",
        ]
        .iter()
        .map(|n| {
            prometheus::core::Desc::new((*n).into(), (*n).into(), Vec::new(), Default::default())
                .expect("valid name")
        })
        .collect();
        ClusterCollector { link, descs }
    }
}

impl prometheus::core::Collector for ClusterCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        use prometheus::proto::MetricType::{COUNTER, GAUGE};
        let r = self.link.report().borrow().clone();
        vec![
            one(
                "weir_cluster_leader",
                "1 while this replica leads the cluster (runs the rollouts).",
                GAUGE,
                f64::from(u8::from(r.leading)),
            ),
            one(
                "weir_cluster_fresh",
                "1 while this replica hears from etcd; 0: it serves the last weights it applied and nothing advances.",
                GAUGE,
                f64::from(u8::from(r.fresh)),
            ),
            one(
                "weir_cluster_members",
                "Replicas registered in the cluster.",
                GAUGE,
                r.members.len() as f64,
            ),
            one(
                "weir_cluster_etcd_bytes_written_total",
                "Bytes of keys and values this replica wrote to etcd (statuses, requests, its member record).",
                COUNTER,
                self.link.bytes_written() as f64,
            ),
        ]
    }
}

/// One metric family of one unlabelled counter or gauge.
fn one(
    name: &str,
    help: &str,
    kind: prometheus::proto::MetricType,
    v: f64,
) -> prometheus::proto::MetricFamily {
    let mut m = prometheus::proto::Metric::default();
    if kind == prometheus::proto::MetricType::COUNTER {
        let mut c = prometheus::proto::Counter::default();
        c.set_value(v);
        m.set_counter(c);
    } else {
        let mut g = prometheus::proto::Gauge::default();
        g.set_value(v);
        m.set_gauge(g);
    }
    let mut f = prometheus::proto::MetricFamily::default();
    f.set_name(name.into());
    f.set_help(help.into());
    f.set_field_type(kind);
    f.set_metric(vec![m]);
    f
}
