//! The model of weir's own kinds: the `Proxy` (listeners, routes, settings) and
//! `Service`s, and the values they share with the Argo kinds (weights, header matches).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::http::{Filter, RouteMatch, RouteTimeouts, Steer};

/// The `Proxy` document.
#[derive(Clone, Debug)]
pub struct Proxy {
    /// `metadata.name`.
    pub name: String,
    /// Client listeners.
    pub listeners: Vec<Listener>,
    /// The admin listener's address.
    pub admin: SocketAddr,
    /// Host names the admin listener answers to besides IP addresses and `localhost`
    /// (lowercase, no port): the name in `spec.admin.address` and `spec.admin.hosts`.
    /// Any other Host is refused, so that a web page cannot reach the admin API through
    /// a DNS name it controls (DNS rebinding).
    pub admin_hosts: Vec<String>,
    /// The token every admin `POST` must present as `Authorization: Bearer TOKEN`, read
    /// from `spec.admin.tokenFile`; `None` when no file is named.
    pub admin_token: Option<AdminToken>,
    /// Routes in the order written (the router orders them by specificity). Shared: a
    /// reload keeps the routes of unchanged HTTPRoutes, and the table build knows them.
    pub routes: Vec<Arc<Route>>,
    /// Upstream settings.
    pub upstream: UpstreamSettings,
    /// Client limits.
    pub limits: Limits,
    /// Access log.
    pub access_log: AccessLog,
    /// Add `x-weir-route`, `x-weir-upstream`, `x-weir-role`, `x-weir-revision` and
    /// `x-weir-split-seq` to responses.
    pub debug_headers: bool,
    /// Notification services by name.
    pub notifiers: BTreeMap<String, Notifier>,
    /// `spec.gatewayClassNames`: besides `weir`, the `gatewayClassName`s of the Gateways
    /// weir serves.
    pub gateway_class_names: Vec<String>,
    /// `spec.ingressClassNames`: besides `weir`, the classes of the Ingresses weir
    /// serves.
    pub ingress_class_names: Vec<String>,
    /// `spec.gatewayAddress`: the address a Gateway's listeners bind when the Gateway
    /// gives no `IPAddress` in `spec.addresses` (default `0.0.0.0`).
    pub gateway_address: std::net::IpAddr,
    /// `spec.cluster`: replicas that run as one through etcd; `None` for a single node.
    pub cluster: Option<ClusterSettings>,
}

/// Where the replicas of a cluster meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    /// etcd client endpoints, `host:port` (the `http://` scheme removed).
    pub endpoints: Vec<String>,
    /// The key prefix, starting with `/`, without a trailing `/`.
    pub prefix: String,
}

/// The admin API's bearer token. Its `Debug` never shows the secret, and
/// [`AdminToken::matches`] compares in constant time.
/// No `PartialEq`: compare with `matches` only.
#[derive(Clone)]
pub struct AdminToken(Box<[u8]>);

impl AdminToken {
    /// A token of these bytes.
    pub fn new(token: impl Into<Box<[u8]>>) -> AdminToken {
        AdminToken(token.into())
    }

    /// Whether `presented` (the bytes after `Bearer `) is this token, in time that
    /// depends only on the lengths, not on where the bytes differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.0.len() == presented.len() && bool::from(self.0.ct_eq(presented))
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

/// A notification service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notifier {
    /// A generic JSON webhook.
    Webhook {
        /// URL.
        url: String,
        /// POST or PUT.
        method: String,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
    /// A Slack incoming webhook; recipients are channels.
    Slack {
        /// The incoming-webhook URL.
        webhook_url: String,
        /// Sender name.
        username: Option<String>,
        /// Sender icon.
        icon_emoji: Option<String>,
    },
}

/// A client listener.
#[derive(Clone, Debug)]
pub struct Listener {
    /// Unique name.
    pub name: String,
    /// Address to bind.
    pub address: SocketAddr,
    /// TLS, when it terminates TLS.
    pub tls: Option<Tls>,
    /// `roleHosts` as written: whether a Host that names a Rollout's role
    /// (`canaryService`, `stableService`, ...) reaches that role directly here.
    pub role_hosts: Option<bool>,
}

impl Listener {
    /// Whether role hosts are served on this listener: as written, else only on a
    /// loopback address. Anyone who can reach a public listener could otherwise pick the
    /// canary with a Host header.
    pub fn serves_role_hosts(&self) -> bool {
        self.role_hosts
            .unwrap_or_else(|| self.address.ip().is_loopback())
    }
}

impl PartialEq for Listener {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.address == other.address
            && self.tls == other.tls
            && self.role_hosts == other.role_hosts
    }
}

/// A listener's certificates.
#[derive(Clone, Debug, PartialEq)]
pub struct Tls {
    /// In the order written (a Proxy listener's own first, then those of the Gateway
    /// listeners that share its address). For a client's SNI name the one served is: the
    /// first whose [`ServedFor::Host`] is that exact name; else the one whose wildcard
    /// [`ServedFor::Host`] has the longest matching suffix; else the first
    /// [`ServedFor::CertificateNames`] certificate valid for the name; else the first
    /// [`ServedFor::AnyHost`]; else the first certificate. Without SNI: the first
    /// [`ServedFor::AnyHost`], else the first.
    pub certificates: Vec<TlsCertificate>,
}

/// A loaded certificate chain with its key.
#[derive(Clone)]
pub struct TlsCertificate {
    /// Where the chain and key came from.
    pub source: CertificateSource,
    /// Which SNI names it is served for.
    pub served_for: ServedFor,
    /// Chain and signing key, ready for rustls.
    pub key: Arc<rustls::sign::CertifiedKey>,
}

/// Where a certificate came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateSource {
    /// A Proxy listener's `certFile` and `keyFile`.
    Files {
        /// Where the chain was read from.
        cert_file: PathBuf,
        /// Where the key was read from.
        key_file: PathBuf,
    },
    /// A Kubernetes `Secret` of type `kubernetes.io/tls` (`tls.crt`, `tls.key`) that a
    /// Gateway listener names.
    Secret {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

/// Which SNI names a certificate is served for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServedFor {
    /// The names the certificate itself carries (a Proxy listener's certificates).
    CertificateNames,
    /// A Gateway listener's `hostname`: served for SNI names it matches, whatever names
    /// the certificate carries.
    Host(HostMatch),
    /// A Gateway listener without a `hostname`: served for any SNI name no other
    /// certificate claims, and without SNI.
    AnyHost,
}

impl PartialEq for TlsCertificate {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
            && self.served_for == other.served_for
            && self.key.cert == other.key.cert
    }
}

impl fmt::Debug for TlsCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCertificate")
            .field("source", &self.source)
            .field("served_for", &self.served_for)
            .finish_non_exhaustive()
    }
}

/// A route: weir's own, or an HTTPRoute rule or Ingress path validated into the same
/// shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// Unique name (for an HTTPRoute rule, `namespace/route/rule`).
    pub name: String,
    /// Hosts it takes; empty means any host.
    pub hosts: Vec<HostMatch>,
    /// The ways a request can match it (OR'd); never empty.
    pub matches: Vec<RouteMatch>,
    /// Listener names it is bound to; empty means all.
    pub listeners: Vec<String>,
    /// What it does to requests and responses, in order.
    pub filters: Vec<Filter>,
    /// Where its traffic goes.
    pub target: RouteTarget,
    /// Its own timeouts.
    pub timeouts: RouteTimeouts,
    /// The largest request body it takes, in bytes (ingress-nginx's `proxy-body-size`);
    /// a bigger one is answered 413.
    pub max_body: Option<u64>,
    /// ingress-nginx's canary rules, for a route between a main and a canary backend.
    pub steer: Vec<Steer>,
    /// Keeps each user on one revision (`sessionAffinity`).
    pub affinity: Option<super::http::Affinity>,
    /// For an HTTPRoute rule: the hostnames of the Gateway listeners it is attached
    /// through (`None`: a listener without a hostname). On a socket, a request is taken
    /// only by the routes of the listener whose hostname matches its host most
    /// specifically (the Gateway API's listener isolation). Empty for weir's own routes,
    /// which every request on their listeners may reach.
    pub scope: Vec<Option<HostMatch>>,
}

/// A host condition. Hosts are stored lower-case without a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMatch {
    /// `api.example.com`.
    Exact(String),
    /// `*.example.com`, stored as the suffix `.example.com`.
    Suffix(String),
}

/// A header condition.
#[derive(Clone, Debug, PartialEq)]
pub struct HeaderMatch {
    /// Lower-case header name.
    pub name: String,
    /// The test.
    pub kind: HeaderMatchKind,
}

/// How a header is tested.
#[derive(Clone, Debug)]
pub enum HeaderMatchKind {
    /// Equal to.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Matches (anchored at both ends).
    Regex(regex::Regex),
    /// Present (`true`) or absent (`false`).
    Present(bool),
}

impl PartialEq for HeaderMatchKind {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HeaderMatchKind::Exact(a), HeaderMatchKind::Exact(b))
            | (HeaderMatchKind::Prefix(a), HeaderMatchKind::Prefix(b)) => a == b,
            (HeaderMatchKind::Regex(a), HeaderMatchKind::Regex(b)) => a.as_str() == b.as_str(),
            (HeaderMatchKind::Present(a), HeaderMatchKind::Present(b)) => a == b,
            _ => false,
        }
    }
}

impl HeaderMatchKind {
    /// Whether `value` (None when the header is absent) passes.
    pub fn matches(&self, value: Option<&[u8]>) -> bool {
        match (self, value) {
            (HeaderMatchKind::Present(want), v) => v.is_some() == *want,
            (_, None) => false,
            (HeaderMatchKind::Exact(s), Some(v)) => s.as_bytes() == v,
            (HeaderMatchKind::Prefix(s), Some(v)) => v.starts_with(s.as_bytes()),
            (HeaderMatchKind::Regex(r), Some(v)) => {
                std::str::from_utf8(v).is_ok_and(|v| r.is_match(v))
            }
        }
    }
}

/// Where a route sends traffic.
#[derive(Clone, Debug, PartialEq)]
pub enum RouteTarget {
    /// Between this Rollout's stable and canary revisions.
    Rollout(String),
    /// A fixed weighted split over Services.
    Split(Vec<WeightedService>),
    /// Answer every request with this status and short message (an HTTPRoute rule whose
    /// backends are all invalid gets 500, as the Gateway API says).
    Respond {
        /// The status.
        status: u16,
        /// The body, and what the log says.
        message: String,
    },
}

/// One leg of a fixed split.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightedService {
    /// Service name (a key of [`super::Model::services`]).
    pub service: String,
    /// Its weight, relative to the other legs' (weir's routes write hundredths of a
    /// percent; the Gateway API's weights are taken as written). Zero gets no request.
    pub weight: u32,
    /// Filters for the requests this leg gets (an HTTPRoute backendRef's own).
    pub filters: Vec<Filter>,
    /// Why this leg's reference does not resolve, when it does not: its share of the
    /// requests answers 500, as the Gateway API says (`service` is then empty).
    pub invalid: Option<String>,
}

/// A share of traffic in hundredths of a percent: 0..=10000 (0.01% steps).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Weight(u32);

impl Weight {
    /// The whole: 100%.
    pub const FULL: Weight = Weight(10_000);
    /// Nothing.
    pub const ZERO: Weight = Weight(0);
    /// Denominator of [`Weight::basis_points`].
    pub const SCALE: u32 = 10_000;

    /// From a percentage, if it is within 0..=100 and a multiple of 0.01.
    pub fn from_percent(p: f64) -> Option<Weight> {
        if !(0.0..=100.0).contains(&p) {
            return None;
        }
        let scaled = p * 100.0;
        let rounded = scaled.round();
        if (scaled - rounded).abs() > 1e-6 {
            return None;
        }
        Some(Weight(rounded as u32))
    }

    /// From hundredths of a percent, clamped to 100%.
    pub fn from_basis_points(bp: u32) -> Weight {
        Weight(bp.min(Self::SCALE))
    }

    /// Hundredths of a percent.
    pub fn basis_points(self) -> u32 {
        self.0
    }

    /// As a percentage.
    pub fn percent(self) -> f64 {
        f64::from(self.0) / 100.0
    }

    /// What is left of 100%.
    pub fn complement(self) -> Weight {
        Weight(Self::SCALE - self.0)
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(100) {
            write!(f, "{}%", self.0 / 100)
        } else {
            write!(f, "{}%", self.percent())
        }
    }
}

/// A `Service`.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    /// Name.
    pub name: String,
    /// Endpoints, in the order written.
    pub endpoints: Vec<Endpoint>,
    /// How load spreads over them.
    pub load_balancer: LoadBalancer,
    /// The protocol its endpoints speak.
    pub protocol: UpstreamProtocol,
    /// Active health checks of its endpoints.
    pub health: Option<HealthCheck>,
}

/// Active health checks (a Service's `healthCheck`): `GET path` on each endpoint every
/// `interval`; a 2xx or 3xx within `timeout` passes. An endpoint is left out of picks
/// until its first pass, and after `unhealthy` failures in a row until `healthy` passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// The path.
    pub path: String,
    /// Between checks.
    pub interval: Duration,
    /// Longest wait for an answer.
    pub timeout: Duration,
    /// Passes in a row to be healthy again.
    pub healthy: u32,
    /// Failures in a row to be unhealthy.
    pub unhealthy: u32,
}

/// The protocol weir speaks to a service's endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (with Upgrade for WebSocket).
    #[default]
    Http1,
    /// HTTP/2 over cleartext with prior knowledge (h2c, RFC 9113 §3.3): a Kubernetes
    /// Service port's `appProtocol` `kubernetes.io/h2c` (or `h2c`, `grpc`, `http2`), a
    /// weir Service's `protocol: h2c`. gRPC backends are this.
    H2c,
}

impl UpstreamProtocol {
    /// The protocol a Kubernetes Service port's `appProtocol` asks for, when weir knows
    /// it: `kubernetes.io/h2c` (the Gateway API's standard name for HTTP/2 with prior
    /// knowledge), and the values Istio and Envoy Gateway take for HTTP/2 backends (`h2c`,
    /// `grpc`, `http2`); `kubernetes.io/ws`, `kubernetes.io/wss`, `http` and `websocket` are
    /// HTTP/1.1. None for a value weir does not know (then HTTP/1.1).
    pub fn from_app_protocol(app_protocol: &str) -> Option<Self> {
        match app_protocol {
            "kubernetes.io/h2c" | "h2c" | "grpc" | "http2" => Some(UpstreamProtocol::H2c),
            "kubernetes.io/ws" | "kubernetes.io/wss" | "http" | "websocket" => {
                Some(UpstreamProtocol::Http1)
            }
            _ => None,
        }
    }

    /// The name as weir writes it (`http1`, `h2c`).
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::H2c => "h2c",
        }
    }
}

/// One endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Address connected to.
    pub address: SocketAddr,
    /// As written (`host:port`), for logs and the Host of health checks.
    pub authority: String,
    /// Image (revision) it runs, if given.
    pub image: Option<String>,
}

/// Load-balancing policy inside one service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadBalancer {
    /// In turn.
    #[default]
    RoundRobin,
    /// The less busy of two endpoints picked in turn.
    LeastRequest,
}

/// Upstream connection settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time to response headers.
    pub request_timeout: Duration,
    /// Idle pooled connection lifetime.
    pub idle_timeout: Duration,
    /// Idle connections kept per endpoint.
    pub max_idle_per_endpoint: u32,
}

/// Client limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Open client connections.
    pub max_connections: u32,
    /// Request head size.
    pub max_header_bytes: u32,
    /// Time to receive the request head.
    pub header_timeout: Duration,
    /// Idle keep-alive client connection lifetime.
    pub idle_timeout: Duration,
    /// Longest wait for a request body's next bytes; also the grace before
    /// `min_body_rate` applies.
    pub body_timeout: Duration,
    /// Slowest average request body rate, bytes per second, once `body_timeout` has
    /// passed; 0 turns the floor off.
    pub min_body_rate: u64,
    /// Longest time a write to a client may make no progress.
    pub send_timeout: Duration,
}

/// Where access log lines go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AccessLog {
    /// No access log (the default).
    #[default]
    Off,
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Appended to this file.
    File(PathBuf),
}
