//! Prometheus exposition. Every metric and label name is a constant here, so dashboards,
//! docs and tests use the same strings.
//!
//! Nothing on the hot path touches the `prometheus` crate: the collectors read weir's own
//! stats and counters at scrape time and build the metric families then.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use weir_config::watch::ReloadStats;

use crate::conn::ProxyCounters;
use crate::error::Kind;
use crate::routing::{RouteTable, Target};
use crate::stats::{LATENCY_BUCKETS, Stats, Totals};
use crate::upstream::Upstreams;

/// Requests by service, role, revision and status.
pub const HTTP_REQUESTS_TOTAL: &str = "http_requests_total";
/// Request latency histogram by service, role, revision.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "http_request_duration_seconds";
/// Label: the Rollout's or Service's name.
pub const LABEL_SERVICE: &str = "service";
/// Label: stable, canary, or empty.
pub const LABEL_ROLE: &str = "role";
/// Label: the image.
pub const LABEL_REVISION: &str = "revision";
/// Label: the HTTP status code.
pub const LABEL_STATUS: &str = "status";
/// Responses made by the proxy itself, by kind.
pub const PROXY_ERRORS_TOTAL: &str = "weir_proxy_errors_total";
/// Client connections accepted.
pub const CONNECTIONS_ACCEPTED_TOTAL: &str = "weir_connections_accepted_total";
/// Client connections refused at `maxConnections`.
pub const CONNECTIONS_REJECTED_TOTAL: &str = "weir_connections_rejected_total";
/// Waiting client connections closed at `maxConnections` to make room.
pub const CONNECTIONS_EVICTED_TOTAL: &str = "weir_connections_evicted_total";
/// Client connections open.
pub const CONNECTIONS_OPEN: &str = "weir_connections_open";
/// Failed TLS handshakes.
pub const TLS_HANDSHAKE_ERRORS_TOTAL: &str = "weir_tls_handshake_errors_total";
/// Upgraded (WebSocket) connections open.
pub const UPGRADES_OPEN: &str = "weir_upgraded_connections_open";
/// Config reloads by result.
pub const CONFIG_RELOADS_TOTAL: &str = "weir_config_reloads_total";
/// 1 if the last config reload succeeded.
pub const CONFIG_LAST_RELOAD_SUCCESSFUL: &str = "weir_config_last_reload_successful";
/// The live weight of each route leg, in percent.
pub const ROUTE_WEIGHT: &str = "weir_route_weight_percent";
/// Upstream connections opened, by endpoint.
pub const UPSTREAM_CONNECTS_TOTAL: &str = "weir_upstream_connections_opened_total";
/// Upstream connect failures, by endpoint.
pub const UPSTREAM_CONNECT_ERRORS_TOTAL: &str = "weir_upstream_connect_errors_total";
/// Requests in flight, by endpoint.
pub const UPSTREAM_IN_FLIGHT: &str = "weir_upstream_requests_in_flight";
/// Idle pooled connections, by endpoint.
pub const UPSTREAM_IDLE: &str = "weir_upstream_idle_connections";
/// Times outlier detection ejected an endpoint.
pub const UPSTREAM_EJECTIONS_TOTAL: &str = "weir_upstream_ejections_total";
/// 1 while an endpoint takes requests (not ejected, its health check passing or absent).
pub const UPSTREAM_SERVING: &str = "weir_upstream_endpoint_serving";
/// Access log lines dropped because the writer fell behind.
pub const ACCESS_LOG_DROPPED_TOTAL: &str = "weir_access_log_dropped_total";

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_owned());
    l.set_value(value.to_owned());
    l
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_owned());
    f.set_help(help.to_owned());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn counter(labels: Vec<LabelPair>, v: f64) -> Metric {
    let mut c = Counter::default();
    c.set_value(v);
    let mut m = Metric::default();
    m.set_label(labels);
    m.set_counter(c);
    m
}

fn gauge(labels: Vec<LabelPair>, v: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(v);
    let mut m = Metric::default();
    m.set_label(labels);
    m.set_gauge(g);
    m
}

fn desc(name: &str, help: &str) -> Desc {
    Desc::new(
        name.to_owned(),
        help.to_owned(),
        Vec::new(),
        Default::default(),
    )
    .expect("valid metric name")
}

/// Exposes the per-(service, role, revision) request stats.
#[derive(Debug)]
pub struct StatsCollector {
    stats: Arc<Stats>,
    descs: Vec<Desc>,
}

impl StatsCollector {
    /// A collector over `stats`.
    pub fn new(stats: Arc<Stats>) -> Self {
        StatsCollector {
            stats,
            descs: vec![
                desc(
                    HTTP_REQUESTS_TOTAL,
                    "HTTP requests by service, role, revision and status.",
                ),
                desc(
                    HTTP_REQUEST_DURATION_SECONDS,
                    "HTTP request latency, arrival to end of response.",
                ),
            ],
        }
    }
}

impl Collector for StatsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut requests = Vec::new();
        let mut durations = Vec::new();
        // The canary's requests by the split and by rules are two cells with one label
        // set: summed.
        let mut merged: BTreeMap<(Arc<str>, &'static str, Arc<str>), Totals> = BTreeMap::new();
        for cell in self.stats.cells() {
            let t = cell.totals();
            if t.count == 0 {
                continue;
            }
            let k = cell.key();
            let at = (k.service.clone(), k.role.label(), k.revision.clone());
            match merged.get_mut(&at) {
                Some(sum) => sum.add(&t),
                None => {
                    merged.insert(at, t);
                }
            }
        }
        for ((service, role, revision), t) in merged {
            let base = vec![
                label(LABEL_SERVICE, &service),
                label(LABEL_ROLE, role),
                label(LABEL_REVISION, &revision),
            ];
            for (status, n) in &t.statuses {
                let mut labels = base.clone();
                labels.push(label(LABEL_STATUS, &status.to_string()));
                requests.push(counter(labels, *n as f64));
            }
            let mut h = Histogram::default();
            h.set_sample_count(t.count);
            h.set_sample_sum(t.sum_seconds);
            h.set_bucket(
                LATENCY_BUCKETS
                    .iter()
                    .zip(t.buckets.iter())
                    .map(|(ub, n)| {
                        let mut b = Bucket::default();
                        b.set_upper_bound(*ub);
                        b.set_cumulative_count(*n);
                        b
                    })
                    .collect(),
            );
            let mut m = Metric::default();
            m.set_label(base);
            m.set_histogram(h);
            durations.push(m);
        }
        vec![
            family(
                HTTP_REQUESTS_TOTAL,
                "HTTP requests by service, role, revision and status.",
                MetricType::COUNTER,
                requests,
            ),
            family(
                HTTP_REQUEST_DURATION_SECONDS,
                "HTTP request latency, arrival to end of response.",
                MetricType::HISTOGRAM,
                durations,
            ),
        ]
    }
}

/// Exposes the proxy's own `weir_` metrics.
pub struct ProxyCollector {
    counters: Arc<ProxyCounters>,
    table: Arc<ArcSwap<RouteTable>>,
    upstreams: Arc<Upstreams>,
    reloads: Arc<ReloadStats>,
    access_log_dropped: Box<dyn Fn() -> u64 + Send + Sync>,
    descs: Vec<Desc>,
}

impl std::fmt::Debug for ProxyCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxyCollector")
    }
}

impl ProxyCollector {
    /// A collector over the proxy's parts.
    pub fn new(
        counters: Arc<ProxyCounters>,
        table: Arc<ArcSwap<RouteTable>>,
        upstreams: Arc<Upstreams>,
        reloads: Arc<ReloadStats>,
        access_log_dropped: Box<dyn Fn() -> u64 + Send + Sync>,
    ) -> Self {
        let descs = [
            PROXY_ERRORS_TOTAL,
            CONNECTIONS_ACCEPTED_TOTAL,
            CONNECTIONS_REJECTED_TOTAL,
            CONNECTIONS_OPEN,
            TLS_HANDSHAKE_ERRORS_TOTAL,
            UPGRADES_OPEN,
            CONFIG_RELOADS_TOTAL,
            CONFIG_LAST_RELOAD_SUCCESSFUL,
            ROUTE_WEIGHT,
            UPSTREAM_CONNECTS_TOTAL,
            UPSTREAM_CONNECT_ERRORS_TOTAL,
            UPSTREAM_IN_FLIGHT,
            UPSTREAM_IDLE,
            UPSTREAM_EJECTIONS_TOTAL,
            UPSTREAM_SERVING,
            ACCESS_LOG_DROPPED_TOTAL,
        ]
        .iter()
        .map(|n| desc(n, n))
        .collect();
        ProxyCollector {
            counters,
            table,
            upstreams,
            reloads,
            access_log_dropped,
            descs,
        }
    }
}

impl Collector for ProxyCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let c = &self.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
        let mut out = Vec::new();
        out.push(family(
            PROXY_ERRORS_TOTAL,
            "Responses made by the proxy itself (404 no route, 502, 503, 504), by kind.",
            MetricType::COUNTER,
            Kind::ALL
                .iter()
                .zip(c.errors.iter())
                .map(|(k, n)| counter(vec![label("kind", k.label())], load(n)))
                .collect(),
        ));
        for (name, help, kind, v) in [
            (
                CONNECTIONS_ACCEPTED_TOTAL,
                "Client connections accepted.",
                MetricType::COUNTER,
                load(&c.connections_accepted),
            ),
            (
                CONNECTIONS_REJECTED_TOTAL,
                "Client connections closed at once because maxConnections was reached.",
                MetricType::COUNTER,
                load(&c.connections_rejected),
            ),
            (
                CONNECTIONS_EVICTED_TOTAL,
                "Client connections without a request in flight closed at maxConnections to make room for new ones.",
                MetricType::COUNTER,
                load(&c.connections_evicted),
            ),
            (
                CONNECTIONS_OPEN,
                "Client connections open.",
                MetricType::GAUGE,
                load(&c.connections_open),
            ),
            (
                TLS_HANDSHAKE_ERRORS_TOTAL,
                "Failed TLS handshakes.",
                MetricType::COUNTER,
                load(&c.tls_handshake_errors),
            ),
            (
                UPGRADES_OPEN,
                "Upgraded (WebSocket) connections open.",
                MetricType::GAUGE,
                load(&c.upgrades_open),
            ),
            (
                ACCESS_LOG_DROPPED_TOTAL,
                "Access log lines dropped because the writer fell behind.",
                MetricType::COUNTER,
                (self.access_log_dropped)() as f64,
            ),
        ] {
            let m = if kind == MetricType::COUNTER {
                counter(Vec::new(), v)
            } else {
                gauge(Vec::new(), v)
            };
            out.push(family(name, help, kind, vec![m]));
        }
        out.push(family(
            CONFIG_RELOADS_TOTAL,
            "Configuration reloads by result; a failure keeps the last good configuration.",
            MetricType::COUNTER,
            vec![
                counter(
                    vec![label("result", "success")],
                    load(&self.reloads.successes),
                ),
                counter(
                    vec![label("result", "failure")],
                    load(&self.reloads.failures),
                ),
            ],
        ));
        out.push(family(
            CONFIG_LAST_RELOAD_SUCCESSFUL,
            "1 if the last configuration reload succeeded (or none was tried).",
            MetricType::GAUGE,
            vec![gauge(
                Vec::new(),
                if self.reloads.last_ok() { 1.0 } else { 0.0 },
            )],
        ));
        let table = self.table.load();
        let mut weights = Vec::new();
        for r in table.routes() {
            if let Target::Split(t) = &r.target {
                for (leg, w) in t.legs.iter().zip(t.weights.iter()) {
                    weights.push(gauge(
                        vec![
                            label("route", &r.name),
                            label(LABEL_SERVICE, &leg.key.service),
                            label(LABEL_ROLE, leg.key.role.label()),
                            label(LABEL_REVISION, &leg.key.revision),
                        ],
                        w.percent(),
                    ));
                }
            }
        }
        out.push(family(
            ROUTE_WEIGHT,
            "Live share of each route leg, in percent.",
            MetricType::GAUGE,
            weights,
        ));
        let pools = self.upstreams.pools();
        // One sample per address: an address spoken to in both HTTP/1.1 and h2c (two
        // pools, sorted next to each other) is summed.
        let by_pool = |f: &dyn Fn(&crate::upstream::EndpointPool) -> f64, as_counter: bool| {
            let mut sums: Vec<(std::net::SocketAddr, f64)> = Vec::with_capacity(pools.len());
            for p in &pools {
                match sums.last_mut() {
                    Some((a, v)) if *a == p.addr => *v += f(p),
                    _ => sums.push((p.addr, f(p))),
                }
            }
            sums.into_iter()
                .map(|(addr, v)| {
                    let labels = vec![label("endpoint", &addr.to_string())];
                    if as_counter {
                        counter(labels, v)
                    } else {
                        gauge(labels, v)
                    }
                })
                .collect::<Vec<_>>()
        };
        out.push(family(
            UPSTREAM_CONNECTS_TOTAL,
            "Upstream connections opened, by endpoint.",
            MetricType::COUNTER,
            by_pool(&|p| load(&p.connects), true),
        ));
        out.push(family(
            UPSTREAM_CONNECT_ERRORS_TOTAL,
            "Upstream connections that failed to open, by endpoint.",
            MetricType::COUNTER,
            by_pool(&|p| load(&p.connect_errors), true),
        ));
        out.push(family(
            UPSTREAM_IN_FLIGHT,
            "Requests in flight, by endpoint.",
            MetricType::GAUGE,
            by_pool(&|p| p.in_flight() as f64, false),
        ));
        out.push(family(
            UPSTREAM_IDLE,
            "Idle pooled upstream connections, by endpoint.",
            MetricType::GAUGE,
            by_pool(&|p| p.idle_count() as f64, false),
        ));
        out.push(family(
            UPSTREAM_EJECTIONS_TOTAL,
            "Times outlier detection left an endpoint out (five failures in a row), by endpoint.",
            MetricType::COUNTER,
            by_pool(&|p| load(&p.ejections), true),
        ));
        let now = crate::upstream::clock_ms();
        out.push(family(
            UPSTREAM_SERVING,
            "1 while an endpoint takes requests: not ejected, and its health check passing (or none), by endpoint.",
            MetricType::GAUGE,
            by_pool(&|p| f64::from(u8::from(!p.out_at(now))), false),
        ));
        out
    }
}
