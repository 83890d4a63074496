//! Serde mirrors of the `weir.dev/v1alpha1` kinds: `Proxy` and `Service`. Plain data, no
//! defaults, no logic. Unknown fields are refused, so that typos fail loudly.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// The `apiVersion` of weir's own kinds.
pub const WEIR_API: &str = "weir.dev/v1alpha1";

/// `metadata` as weir's own kinds accept it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WeirMetadata {
    /// Required: the object's name.
    pub name: Option<String>,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Free-form annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// A `Proxy` document.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProxyDoc {
    /// `weir.dev/v1alpha1`.
    pub api_version: String,
    /// `Proxy`.
    pub kind: String,
    /// Name and labels.
    #[serde(default)]
    pub metadata: WeirMetadata,
    /// The proxy itself.
    pub spec: ProxySpec,
}

/// `Proxy.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProxySpec {
    /// Where clients connect.
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// The admin listener (metrics, health, API).
    pub admin: Option<Admin>,
    /// Routes, matched most specific first.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Upstream connection settings.
    pub upstream: Option<Upstream>,
    /// Client-side limits.
    pub limits: Option<Limits>,
    /// The per-request access log.
    pub access_log: Option<AccessLog>,
    /// Add `x-weir-*` headers to responses saying which route, revision and endpoint
    /// served them (off by default).
    pub debug_headers: Option<bool>,
    /// Where rollout notifications go.
    pub notifications: Option<Notifications>,
    /// Besides `weir`, the `gatewayClassName`s of the Gateways weir serves.
    pub gateway_class_names: Option<Vec<String>>,
    /// Besides `weir`, the classes of the Ingresses weir serves (`[nginx]` takes over
    /// ingress-nginx's).
    pub ingress_class_names: Option<Vec<String>>,
    /// The address Gateway listeners bind when their Gateway names no `IPAddress`
    /// (default `0.0.0.0`).
    pub gateway_address: Option<String>,
    /// Several replicas as one: where they meet (etcd).
    pub cluster: Option<Cluster>,
}

/// `spec.cluster`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cluster {
    /// The etcd cluster the replicas share.
    pub etcd: Option<Etcd>,
}

/// `spec.cluster.etcd`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Etcd {
    /// Client URLs of the etcd members (`http://host:port`).
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// The key prefix weir's keys live under (default `/weir`).
    pub prefix: Option<String>,
}

/// `spec.notifications`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Notifications {
    /// The services Rollout annotations subscribe to, by name.
    #[serde(default)]
    pub services: Vec<NotificationService>,
}

/// One notification service: exactly one of `webhook`, `slack`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NotificationService {
    /// The name used in `notifications.argoproj.io/subscribe.<trigger>.<name>`.
    pub name: Option<String>,
    /// A generic webhook.
    pub webhook: Option<Webhook>,
    /// A Slack incoming webhook.
    pub slack: Option<Slack>,
}

/// A generic webhook.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Webhook {
    /// Where to send.
    pub url: Option<String>,
    /// POST (default) or PUT.
    pub method: Option<String>,
    /// Extra headers.
    #[serde(default)]
    pub headers: Vec<NameValue>,
}

/// A Slack incoming webhook.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Slack {
    /// The incoming-webhook URL.
    pub webhook_url: Option<String>,
    /// Name shown as the sender.
    pub username: Option<String>,
    /// Emoji shown as the sender's icon, e.g. `:rocket:`.
    pub icon_emoji: Option<String>,
}

/// A name and a value.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NameValue {
    /// Name.
    pub name: Option<String>,
    /// Value.
    pub value: Option<String>,
}

/// A client listener.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Listener {
    /// Unique name.
    pub name: Option<String>,
    /// `host:port` to bind.
    pub address: Option<String>,
    /// Terminate TLS with these certificates.
    pub tls: Option<Tls>,
    /// Whether a Rollout's role names (`canaryService`, ...) are routable as Host here.
    pub role_hosts: Option<bool>,
}

/// A listener's TLS settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Tls {
    /// Certificates; the one matching the client's SNI is served, else the first.
    #[serde(default)]
    pub certificates: Vec<Certificate>,
}

/// One certificate chain and its key, as PEM files.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Certificate {
    /// PEM certificate chain, leaf first; relative to the config file.
    pub cert_file: Option<String>,
    /// PEM private key; relative to the config file.
    pub key_file: Option<String>,
}

/// The admin listener.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Admin {
    /// `host:port` to bind.
    pub address: Option<String>,
    /// More names the admin listener answers to (its `Host`), besides IP addresses,
    /// `localhost` and the name in `address`.
    pub hosts: Option<Vec<String>>,
    /// A file holding the bearer token every admin `POST` must present; relative to the
    /// config file.
    pub token_file: Option<String>,
}

/// A route.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Route {
    /// Unique name, used in metrics and logs.
    pub name: Option<String>,
    /// What requests it takes.
    #[serde(rename = "match")]
    pub matches: Option<Match>,
    /// Split between this Rollout's stable and canary revisions.
    pub rollout: Option<String>,
    /// Or a fixed weighted split between Services.
    pub backends: Option<Vec<Backend>>,
    /// Only on these listeners (by name); all when unset.
    pub listeners: Option<Vec<String>>,
    /// Keeps each user on one revision across requests.
    pub session_affinity: Option<SessionAffinity>,
}

/// `sessionAffinity`: a cookie weir sets (Flagger's names), or a header the client sends
/// (a user id).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SessionAffinity {
    /// The cookie that carries the user's id.
    pub cookie_name: Option<String>,
    /// How long the cookie lives (a duration, or seconds as Flagger writes it).
    pub max_age: Option<super::scalar::Text>,
    /// Or: the request header whose value identifies the user.
    pub header: Option<String>,
}

/// A route's match.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Match {
    /// One host: exact (`api.example.com`) or wildcard (`*.example.com`).
    pub host: Option<String>,
    /// Several hosts.
    pub hosts: Option<Vec<String>>,
    /// Path prefix, `/` when unset.
    pub path_prefix: Option<String>,
    /// Header conditions, all of which must hold.
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
}

/// One header condition: exactly one of `exact`, `prefix`, `regex`, `present`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderMatch {
    /// Header name, case-insensitive.
    pub name: Option<String>,
    /// The value equals this.
    pub exact: Option<String>,
    /// The value starts with this.
    pub prefix: Option<String>,
    /// The value matches this regular expression (anchored).
    pub regex: Option<String>,
    /// The header is present (`true`) or absent (`false`).
    pub present: Option<bool>,
}

/// A weighted backend.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Backend {
    /// A `Service` name.
    pub service: Option<String>,
    /// Percent of the route's traffic, down to 0.01.
    pub weight: Option<f64>,
}

/// Upstream connection settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Upstream {
    /// Time allowed to open a connection.
    pub connect_timeout: Option<String>,
    /// Time allowed from sending a request to receiving the response headers.
    pub request_timeout: Option<String>,
    /// Idle pooled connections are closed after this.
    pub idle_timeout: Option<String>,
    /// Idle connections kept per endpoint.
    pub max_idle_per_endpoint: Option<u32>,
}

/// Client-side limits.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Limits {
    /// Open client connections at once, over all listeners.
    pub max_connections: Option<u32>,
    /// Bytes of request line and headers.
    pub max_header_bytes: Option<u32>,
    /// Time a client has to send the request headers.
    pub header_timeout: Option<String>,
    /// Idle keep-alive client connections are closed after this.
    pub idle_timeout: Option<String>,
    /// Longest wait for the next bytes of a request body, and its grace before
    /// `min_body_rate` applies.
    pub body_timeout: Option<String>,
    /// Slowest average rate of a request body, bytes per second (0: no floor).
    pub min_body_rate: Option<u64>,
    /// Longest time a write to a client may make no progress.
    pub send_timeout: Option<String>,
}

/// The access log.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AccessLog {
    /// On or off (off by default).
    pub enabled: Option<bool>,
    /// `stdout`, `stderr` or a file path (relative to the config file).
    pub path: Option<String>,
}

/// A `Service` document.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceDoc {
    /// `weir.dev/v1alpha1`.
    pub api_version: String,
    /// `Service`.
    pub kind: String,
    /// Name and labels.
    #[serde(default)]
    pub metadata: WeirMetadata,
    /// The endpoints.
    pub spec: ServiceSpec,
}

/// `Service.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceSpec {
    /// The addresses that serve it.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// `roundRobin` (default) or `leastRequest`.
    pub load_balancer: Option<String>,
    /// What the endpoints speak: `http1` (default) or `h2c`.
    pub protocol: Option<String>,
    /// Active health checks of each endpoint.
    pub health_check: Option<HealthCheck>,
}

/// `spec.healthCheck`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthCheck {
    /// The path asked with `GET` (default `/`).
    pub path: Option<String>,
    /// Between checks (default 5s).
    pub interval: Option<String>,
    /// Longest wait for an answer (default 1s).
    pub timeout: Option<String>,
    /// Passes in a row that make an endpoint healthy again (default 2).
    pub healthy_threshold: Option<super::scalar::Int>,
    /// Failures in a row that make it unhealthy (default 3).
    pub unhealthy_threshold: Option<super::scalar::Int>,
}

/// An endpoint: `"host:port"` or `{address, image}`.
#[derive(Clone, Debug, Default)]
pub struct Endpoint {
    /// `host:port`.
    pub address: Option<String>,
    /// The image (revision) this endpoint runs, for Rollouts.
    pub image: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EndpointFields {
    address: Option<String>,
    image: Option<String>,
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Endpoint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"host:port\" or {address, image}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Endpoint, E> {
                Ok(Endpoint {
                    address: Some(v.to_owned()),
                    image: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<Endpoint, A::Error> {
                let f = EndpointFields::deserialize(de::value::MapAccessDeserializer::new(a))?;
                Ok(Endpoint {
                    address: f.address,
                    image: f.image,
                })
            }
        }
        d.deserialize_any(V)
    }
}
