//! Every default in one place, with its unit: what a field means when it is not written.
//! Applied by `validate` (and, for analysis metrics, by `analysis::decode_metric` when a
//! run starts). Bounds that go with a default (the least header limit, the longest
//! window) are here too.
//!
//! A leaf: it imports only the model's value types.

use std::time::Duration;

use crate::model::weir::{AccessLog, LoadBalancer, UpstreamProtocol, Weight};

// ---- weir.dev/v1alpha1 Proxy ----

/// Upstream connect timeout (TCP connect), 5 s. As Envoy's default.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time from sending a request upstream to its response headers, 60 s (nginx's
/// `proxy_read_timeout`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// An idle pooled upstream connection is closed after 90 s.
pub const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle upstream connections kept per endpoint: 256.
pub const MAX_IDLE_PER_ENDPOINT: u32 = 256;
/// Client connections open at once over all listeners: 50,000. Beyond it new
/// connections are closed at once and counted.
pub const MAX_CONNECTIONS: u32 = 50_000;
/// Request line plus headers: 64 KiB less one byte, which is also the most allowed; more
/// gets 431.
pub const MAX_HEADER_BYTES: u32 = 65_535;
/// Smallest header limit hyper accepts, 8 KiB.
pub const MIN_HEADER_BYTES: u32 = 8 * 1024;
/// A client has 10 s to send its whole request head (HAProxy's advice for
/// `timeout http-request`); the timer covers the head, not each read.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A request body may go 30 s without a byte, and this is also its grace before
/// [`MIN_BODY_RATE`] applies.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// After [`BODY_TIMEOUT`], a request body must have arrived at 1 KiB/s on average
/// (Apache's `mod_reqtimeout` keeps a floor the same way): a body dripped a byte at a
/// time cannot hold a connection for ever.
pub const MIN_BODY_RATE: u64 = 1024;
/// A write to a client may make no progress for 30 s (nginx's `send_timeout` is 60 s).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// An idle keep-alive client connection is closed after 75 s (nginx's `keepalive_timeout`).
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// The admin listener's address when the Proxy names none.
pub const ADMIN_ADDRESS: &str = "127.0.0.1:9901";
/// The path matched when a route gives none.
pub const PATH_PREFIX: &str = "/";

/// The cookie of an HTTPRoute rule's `sessionPersistence` without a `sessionName`.
pub const AFFINITY_COOKIE: &str = "weir-session";

/// How long a `sessionAffinity` cookie lives when `maxAge` is not written: Flagger's
/// default, six hours.
pub const AFFINITY_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(6 * 3600);
/// No access log unless `spec.accessLog` asks for one (also `AccessLog::default()`).
pub const ACCESS_LOG: AccessLog = AccessLog::Off;
/// The access log, when `spec.accessLog` is given without `enabled`, is on.
pub const ACCESS_LOG_ENABLED: bool = true;
/// The access log, when on without a `path`, goes to standard output.
pub const ACCESS_LOG_PATH: &str = "stdout";
/// `x-weir-*` debug headers are off unless `spec.debugHeaders` turns them on.
pub const DEBUG_HEADERS: bool = false;
/// A notification webhook is sent with POST unless `method` says PUT.
pub const WEBHOOK_METHOD: &str = "POST";
/// A route with a single backend and no `weight` sends it all the traffic.
pub const SINGLE_BACKEND_WEIGHT: Weight = Weight::FULL;

/// The address Gateway listeners bind when a Gateway gives no `IPAddress`
/// (`spec.gatewayAddress`): every interface.
pub const GATEWAY_ADDRESS: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

// ---- Kubernetes and the Gateway API ----

/// The namespace of an object that does not name one.
pub const NAMESPACE: &str = "default";
/// The `gatewayClassName` weir always serves.
pub const GATEWAY_CLASS: &str = "weir";
/// A GatewayClass whose `controllerName` is this is weir's.
pub const GATEWAY_CONTROLLER: &str = "weir.dev/gateway-controller";
/// `backendRefs[].weight`: 1.
pub const BACKEND_WEIGHT: u32 = 1;
/// The largest `backendRefs[].weight` the Gateway API allows.
pub const MAX_BACKEND_WEIGHT: i64 = 1_000_000;
/// `requestRedirect.statusCode`: 302.
pub const REDIRECT_STATUS: u16 = 302;
/// `requestMirror` without `percent` or `fraction`: every request is copied.
pub const MIRROR_SHARE: Weight = Weight::FULL;
/// `requestMirror.fraction.denominator`: 100.
pub const MIRROR_DENOMINATOR: i64 = 100;
/// `cors.maxAge`: 5 seconds.
pub const CORS_MAX_AGE: u32 = 5;
/// A Gateway listener's `allowedRoutes.namespaces.from`: routes of its own namespace.
pub const ALLOWED_ROUTES_FROM: &str = "Same";
/// An HTTPRoute rule without `matches` takes every path (`PathPrefix /`).
pub const GATEWAY_PATH_PREFIX: &str = "/";

// ---- weir.dev/v1alpha1 Service ----

/// A Service's endpoints take requests in turn unless `loadBalancer` says otherwise (also
/// `LoadBalancer::default()`).
pub const LOAD_BALANCER: LoadBalancer = LoadBalancer::RoundRobin;
/// A Service's endpoints speak HTTP/1.1 unless `protocol` (a weir Service) or
/// `appProtocol` (a Kubernetes Service port) says otherwise (also
/// `UpstreamProtocol::default()`).
pub const UPSTREAM_PROTOCOL: UpstreamProtocol = UpstreamProtocol::Http1;

// ---- argoproj.io/v1alpha1 Rollout (Argo's own defaults) ----

/// `spec.paused`: not paused.
pub const PAUSED: bool = false;
/// `spec.progressDeadlineSeconds`: 600 s without progress marks the rollout degraded.
pub const PROGRESS_DEADLINE: Duration = Duration::from_secs(600);
/// `spec.progressDeadlineAbort`: a passed deadline does not abort.
pub const PROGRESS_DEADLINE_ABORT: bool = false;
/// `spec.revisionHistoryLimit`: 10 old revisions remembered.
pub const REVISION_HISTORY_LIMIT: u32 = 10;
/// `spec.analysis.successfulRunHistoryLimit` and `unsuccessfulRunHistoryLimit`: 5
/// finished analysis runs of each kind kept.
pub const RUN_HISTORY_LIMIT: u32 = 5;
/// `spec.workloadRef.kind`: a Deployment.
pub const WORKLOAD_REF_KIND: &str = "Deployment";
/// `scaleDownDelaySeconds` and `abortScaleDownDelaySeconds` (canary and blue-green): 30 s.
pub const SCALE_DOWN_DELAY: Duration = Duration::from_secs(30);
/// `canary.trafficRouting.maxTrafficWeight`: weights are percentages.
pub const MAX_TRAFFIC_WEIGHT: u32 = 100;
/// `canary.analysis.startingStep`: background analysis starts with the update.
pub const STARTING_STEP: usize = 0;
/// `setMirrorRoute.percentage`: every matching request is copied.
pub const MIRROR_PERCENTAGE: Weight = Weight::FULL;
/// `blueGreen.autoPromotionEnabled`: the switch happens without waiting for promote.
pub const AUTO_PROMOTION_ENABLED: bool = true;

// ---- Analysis metrics (Argo's defaults, and weir's built-in provider) ----

/// `failureLimit`: no failed measurement is tolerated.
pub const FAILURE_LIMIT: i64 = 0;
/// `inconclusiveLimit`: no inconclusive measurement is tolerated.
pub const INCONCLUSIVE_LIMIT: u32 = 0;
/// `consecutiveErrorLimit`: 4 errors in a row are tolerated (Argo's default).
pub const CONSECUTIVE_ERROR_LIMIT: u32 = 4;
/// `consecutiveSuccessLimit`: off (0).
pub const CONSECUTIVE_SUCCESS_LIMIT: u32 = 0;
/// Built-in provider `weir`: the latency quantile, p99.
pub const WEIR_QUANTILE: f64 = 0.99;
/// Built-in provider `weir`: `role` is the canary unless it says `stable`.
pub const WEIR_ROLE_CANARY: bool = true;
/// Built-in provider `weir`: the look-back window, 60 s.
pub const WEIR_WINDOW: Duration = Duration::from_secs(60);
/// Built-in provider `weir`: the shortest window, 1 s.
pub const WEIR_MIN_WINDOW: Duration = Duration::from_secs(1);
/// Built-in provider `weir`: the longest window, 600 s (the data plane keeps ten minutes
/// of history).
pub const WEIR_MAX_WINDOW: Duration = Duration::from_secs(600);
/// Built-in provider `weir`: requests needed in the window before a verdict, 20.
pub const WEIR_MIN_REQUESTS: u64 = 20;
/// Judge (`metric: canary-vs-stable`): `alphaFail`, 0.001: at most one healthy canary in
/// a thousand is ever failed.
pub const JUDGE_ALPHA_FAIL: f64 = 0.001;
/// Judge: `alphaPass`, 0.05: at most one canary in twenty worse than the margins passes.
pub const JUDGE_ALPHA_PASS: f64 = 0.05;
/// Judge: `failTolerance`, 1.0 (a ratio): a canary failing as often as the stable
/// revision is not worse.
pub const JUDGE_FAIL_TOLERANCE: f64 = 1.0;
/// Judge: `errorMargin`, 2.0 (a ratio): pass needs the canary's failure rate shown below
/// twice the stable's...
pub const JUDGE_ERROR_MARGIN: f64 = 2.0;
/// Judge: `errorBudget`, 0.001 (a rate): ...or below 0.1%.
pub const JUDGE_ERROR_BUDGET: f64 = 0.001;
/// Judge: `latency`, on: slow requests are judged as well as failures.
pub const JUDGE_LATENCY: bool = true;
/// Judge: `latencyMargin`, 2.0 (a ratio): pass needs the canary's share of slow
/// requests shown below twice the stable's.
pub const JUDGE_LATENCY_MARGIN: f64 = 2.0;
/// Judge: `latencyWarmup`, 5 s: slow requests count only after this. Short enough that a
/// +50 ms canary is caught within 10 s at 5% of 1,000 req/s (issue 13's goal); services
/// whose new instances start cold (JIT, caches) should raise it.
pub const JUDGE_LATENCY_WARMUP: Duration = Duration::from_secs(5);
/// Judge: `minCanaryRequests`, 200: canary requests needed before a pass.
pub const JUDGE_MIN_CANARY_REQUESTS: u64 = 200;
/// Judge: `minDuration`, 30 s: time needed before a pass.
pub const JUDGE_MIN_DURATION: Duration = Duration::from_secs(30);
/// Judge: `maxWait`, 10 min: without a verdict by then, Inconclusive.
pub const JUDGE_MAX_WAIT: Duration = Duration::from_secs(600);
/// Judge: the success condition when none is written.
pub const JUDGE_SUCCESS_CONDITION: &str = "result == \"pass\"";
/// Judge: the failure condition when none is written.
pub const JUDGE_FAILURE_CONDITION: &str = "result == \"fail\"";
/// Prometheus provider: query timeout, 30 s.
pub const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(30);
/// Prometheus provider: `rangeQuery.start`, five minutes ago.
pub const PROMETHEUS_RANGE_START: &str = "now() - duration(\"5m\")";
/// Prometheus provider: `rangeQuery.end`, now.
pub const PROMETHEUS_RANGE_END: &str = "now()";
/// Prometheus provider: `rangeQuery.step`, 60 s.
pub const PROMETHEUS_RANGE_STEP: Duration = Duration::from_secs(60);
/// Web provider: request timeout, 10 s.
pub const WEB_TIMEOUT: Duration = Duration::from_secs(10);
/// Web provider: method, GET.
pub const WEB_METHOD: &str = "GET";
/// Prometheus and web providers: TLS certificates are verified (`insecure: false`).
pub const PROVIDER_INSECURE: bool = false;
/// Job provider: retries after a failure before the job counts as failed, 6
/// (Kubernetes' default Job `backoffLimit`).
pub const JOB_BACKOFF_LIMIT: u32 = 6;

/// Between two health checks of an endpoint (`healthCheck.interval`).
pub const HEALTH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// Longest wait for a health check's answer (`healthCheck.timeout`).
pub const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// Passes in a row that make an endpoint healthy again (`healthyThreshold`, as Envoy's).
pub const HEALTHY_THRESHOLD: u32 = 2;
/// Failures in a row that make an endpoint unhealthy (`unhealthyThreshold`).
pub const UNHEALTHY_THRESHOLD: u32 = 3;

/// The etcd key prefix of a cluster's keys (`spec.cluster.etcd.prefix`).
pub const CLUSTER_PREFIX: &str = "/weir";

#[cfg(test)]
mod tests {
    use super::*;

    /// The model's `Default`s are these defaults, not second ones.
    #[test]
    fn model_defaults_agree() {
        assert_eq!(LoadBalancer::default(), LOAD_BALANCER);
        assert_eq!(UpstreamProtocol::default(), UPSTREAM_PROTOCOL);
        assert_eq!(AccessLog::default(), ACCESS_LOG);
    }
}
