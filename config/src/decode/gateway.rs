//! Serde mirrors of the Gateway API kinds (`gateway.networking.k8s.io`): `GatewayClass`,
//! `Gateway`, `HTTPRoute` and `ReferenceGrant`, at `v1`, `v1beta1` and `v1alpha2` (the
//! same schema, as far as weir reads it).
//!
//! Unknown fields are tolerated, as for the other Kubernetes kinds. Port numbers, weights
//! and status codes are lenient integers ([`Int`]): what is not one is kept as written,
//! so that validation can say so at its field and go on.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::kube::ObjectMeta;
use super::scalar::{Ignored, Int};

/// The Gateway API's group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// The versions of the Gateway API group weir reads.
pub const GATEWAY_VERSIONS: [&str; 3] = [
    "gateway.networking.k8s.io/v1",
    "gateway.networking.k8s.io/v1beta1",
    "gateway.networking.k8s.io/v1alpha2",
];

/// A `GatewayClass`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassDoc {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: Option<GatewayClassSpec>,
}

/// `GatewayClass.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassSpec {
    /// The controller that serves the class (`weir.dev/gateway-controller` for weir).
    pub controller_name: Option<String>,
    /// Implementation parameters: weir has none.
    pub parameters_ref: Option<Ignored>,
}

/// A `Gateway`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayDoc {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: Option<GatewaySpec>,
}

/// `Gateway.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// The class: weir serves `weir`, the Proxy's `spec.gatewayClassNames`, and classes
    /// whose GatewayClass names weir's controller.
    pub gateway_class_name: Option<String>,
    /// The listeners.
    #[serde(default)]
    pub listeners: Vec<GatewayListener>,
    /// Addresses asked for: the first `IPAddress` is the one the listeners bind.
    #[serde(default)]
    pub addresses: Vec<GatewayAddress>,
    /// Infrastructure labels and annotations: no meaning outside Kubernetes.
    pub infrastructure: Option<Ignored>,
}

/// One entry of `Gateway.spec.addresses`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayAddress {
    /// `IPAddress` (the default), `Hostname` or an implementation's own.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// The address.
    pub value: Option<String>,
}

/// A Gateway listener.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayListener {
    /// Its name, unique in the Gateway (what a parentRef's `sectionName` names).
    pub name: Option<String>,
    /// The host names it takes: exact, or a wildcard `*.example.com`; all when unset.
    pub hostname: Option<String>,
    /// The port.
    pub port: Option<Int>,
    /// `HTTP` or `HTTPS` (`TLS`, `TCP`, `UDP` are not served).
    pub protocol: Option<String>,
    /// TLS settings (HTTPS).
    pub tls: Option<GatewayTls>,
    /// Which routes may attach.
    pub allowed_routes: Option<AllowedRoutes>,
}

/// A listener's `tls`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTls {
    /// `Terminate` (the default) or `Passthrough`.
    pub mode: Option<String>,
    /// The Secrets holding the certificate and key.
    #[serde(default)]
    pub certificate_refs: Vec<ObjectRef>,
    /// Implementation options: weir has none.
    pub options: Option<Ignored>,
}

/// A reference to an object by group, kind, namespace and name.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// API group (`""` is the core group).
    pub group: Option<String>,
    /// Kind.
    pub kind: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Namespace (the referrer's when unset).
    pub namespace: Option<String>,
}

/// A listener's `allowedRoutes`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedRoutes {
    /// Which namespaces' routes.
    pub namespaces: Option<RouteNamespaces>,
    /// Which kinds of routes.
    pub kinds: Option<Vec<RouteGroupKind>>,
}

/// `allowedRoutes.namespaces`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteNamespaces {
    /// `Same` (the default), `All` or `Selector`.
    pub from: Option<String>,
    /// With `Selector`: the namespaces' labels.
    pub selector: Option<Selector>,
}

/// A label selector with match expressions.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// Labels that must have these values.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements (`In`, `NotIn`, `Exists`, `DoesNotExist`).
    #[serde(default)]
    pub match_expressions: Vec<SelectorRequirement>,
}

/// One `matchExpressions` requirement.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectorRequirement {
    /// The label.
    pub key: Option<String>,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: Option<String>,
    /// The values (`In`, `NotIn`).
    #[serde(default)]
    pub values: Vec<String>,
}

/// A route kind (`allowedRoutes.kinds[]`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteGroupKind {
    /// The group (default: the Gateway API's).
    pub group: Option<String>,
    /// The kind.
    pub kind: Option<String>,
}

/// An `HTTPRoute`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteDoc {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: Option<HttpRouteSpec>,
}

/// `HTTPRoute.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// The Gateways (and listeners) it attaches to.
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    /// The host names it takes (all the listener's when unset).
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// The rules (one `PathPrefix /` rule to no backend when unset).
    pub rules: Option<Vec<HttpRouteRule>>,
}

/// One `parentRefs` entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// The group (default: the Gateway API's).
    pub group: Option<String>,
    /// The kind (default `Gateway`).
    pub kind: Option<String>,
    /// The namespace (default: the route's).
    pub namespace: Option<String>,
    /// The Gateway's name.
    pub name: Option<String>,
    /// A listener's name.
    pub section_name: Option<String>,
    /// A listener's port.
    pub port: Option<Int>,
}

/// An HTTPRoute rule.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    /// Its name (unique in the route).
    pub name: Option<String>,
    /// The ways a request matches it (OR'd; `PathPrefix /` when unset).
    pub matches: Option<Vec<HttpRouteMatch>>,
    /// What it does to requests and responses.
    #[serde(default)]
    pub filters: Vec<HttpRouteFilter>,
    /// Where its traffic goes.
    #[serde(default)]
    pub backend_refs: Vec<HttpBackendRef>,
    /// Its timeouts.
    pub timeouts: Option<HttpRouteTimeouts>,
    /// Retries: not yet.
    pub retry: Option<Ignored>,
    /// Session persistence: keeps a user on one backend (weir: one leg of the split).
    pub session_persistence: Option<SessionPersistence>,
}

/// `rules[].sessionPersistence`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionPersistence {
    /// The cookie's or header's name.
    pub session_name: Option<String>,
    /// How long the session lasts (the cookie's `Max-Age`).
    pub absolute_timeout: Option<String>,
    /// Idle timeout: not supported (reported).
    pub idle_timeout: Option<String>,
    /// `Cookie` (the default) or `Header`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// `lifetimeType`: `Permanent` or `Session`.
    pub cookie_config: Option<Ignored>,
}

/// One match of a rule: every condition must hold.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    /// The path (`PathPrefix /` when unset).
    pub path: Option<HttpPathMatch>,
    /// Header conditions.
    #[serde(default)]
    pub headers: Vec<HttpValueMatch>,
    /// Query parameter conditions.
    #[serde(default)]
    pub query_params: Vec<HttpValueMatch>,
    /// The method.
    pub method: Option<String>,
}

/// A path match.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpPathMatch {
    /// `Exact`, `PathPrefix` (the default) or `RegularExpression`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// The path (default `/`).
    pub value: Option<String>,
}

/// A header or query parameter match.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpValueMatch {
    /// `Exact` (the default) or `RegularExpression`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// The header's or parameter's name.
    pub name: Option<String>,
    /// The value.
    pub value: Option<String>,
}

/// A filter, at rule or backend level.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteFilter {
    /// `RequestHeaderModifier`, `ResponseHeaderModifier`, `RequestRedirect`,
    /// `URLRewrite`, `RequestMirror`, `CORS`, `ExtensionRef`, ...
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// With `RequestHeaderModifier`.
    pub request_header_modifier: Option<HeaderModifierDoc>,
    /// With `ResponseHeaderModifier`.
    pub response_header_modifier: Option<HeaderModifierDoc>,
    /// With `RequestRedirect`.
    pub request_redirect: Option<RedirectDoc>,
    /// With `URLRewrite`.
    pub url_rewrite: Option<RewriteDoc>,
    /// With `RequestMirror`.
    pub request_mirror: Option<MirrorDoc>,
    /// With `CORS`.
    pub cors: Option<CorsDoc>,
    /// With `ExtensionRef`: no extension is known to weir.
    pub extension_ref: Option<Ignored>,
}

/// A header modifier.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderModifierDoc {
    /// Headers to set (replace).
    #[serde(default)]
    pub set: Vec<HeaderDoc>,
    /// Headers to add (append).
    #[serde(default)]
    pub add: Vec<HeaderDoc>,
    /// Header names to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A header name and value.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderDoc {
    /// Name.
    pub name: Option<String>,
    /// Value.
    pub value: Option<String>,
}

/// A `requestRedirect`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedirectDoc {
    /// `http` or `https`.
    pub scheme: Option<String>,
    /// The host name.
    pub hostname: Option<String>,
    /// The path.
    pub path: Option<PathModifierDoc>,
    /// The port.
    pub port: Option<Int>,
    /// 301, 302 (the default), 303, 307 or 308.
    pub status_code: Option<Int>,
}

/// A `urlRewrite`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RewriteDoc {
    /// The host name.
    pub hostname: Option<String>,
    /// The path.
    pub path: Option<PathModifierDoc>,
}

/// A redirect's or a rewrite's path.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathModifierDoc {
    /// `ReplaceFullPath` or `ReplacePrefixMatch`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// With `ReplaceFullPath`.
    pub replace_full_path: Option<String>,
    /// With `ReplacePrefixMatch`.
    pub replace_prefix_match: Option<String>,
}

/// A `requestMirror`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MirrorDoc {
    /// Where the copies go.
    pub backend_ref: Option<BackendObjectRef>,
    /// Percent of requests copied.
    pub percent: Option<Int>,
    /// Or a fraction of them.
    pub fraction: Option<FractionDoc>,
}

/// A fraction.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FractionDoc {
    /// Numerator.
    pub numerator: Option<Int>,
    /// Denominator (default 100).
    pub denominator: Option<Int>,
}

/// A `cors` filter.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CorsDoc {
    /// Origins allowed.
    #[serde(default)]
    pub allow_origins: Vec<String>,
    /// Whether credentials are allowed.
    pub allow_credentials: Option<bool>,
    /// Methods allowed.
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Request headers allowed.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response headers exposed.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Seconds a preflight's answer may be cached (default 5).
    pub max_age: Option<Int>,
}

/// A reference to a backend (a Service and port).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendObjectRef {
    /// The group (`""`, the core group, by default).
    pub group: Option<String>,
    /// The kind (`Service` by default).
    pub kind: Option<String>,
    /// The name.
    pub name: Option<String>,
    /// The namespace (the route's when unset).
    pub namespace: Option<String>,
    /// The Service's port.
    pub port: Option<Int>,
}

/// One `backendRefs` entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpBackendRef {
    /// The group (`""`, the core group, by default).
    pub group: Option<String>,
    /// The kind (`Service` by default).
    pub kind: Option<String>,
    /// The name.
    pub name: Option<String>,
    /// The namespace (the route's when unset).
    pub namespace: Option<String>,
    /// The Service's port.
    pub port: Option<Int>,
    /// Its weight, relative to the rule's other backends' (default 1).
    pub weight: Option<Int>,
    /// Filters for the requests it gets.
    #[serde(default)]
    pub filters: Vec<HttpRouteFilter>,
}

/// A rule's `timeouts`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteTimeouts {
    /// The whole exchange.
    pub request: Option<String>,
    /// One attempt upstream.
    pub backend_request: Option<String>,
}

/// A `ReferenceGrant`: lets objects of other namespaces refer to objects of its own.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantDoc {
    /// Metadata (its namespace is the one it opens).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: Option<ReferenceGrantSpec>,
}

/// `ReferenceGrant.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantSpec {
    /// Who may refer.
    #[serde(default)]
    pub from: Vec<GrantFrom>,
    /// To what.
    #[serde(default)]
    pub to: Vec<GrantTo>,
}

/// `ReferenceGrant.spec.from[]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantFrom {
    /// The referrer's group.
    pub group: Option<String>,
    /// The referrer's kind.
    pub kind: Option<String>,
    /// The referrer's namespace.
    pub namespace: Option<String>,
}

/// `ReferenceGrant.spec.to[]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantTo {
    /// The referent's group (`""` for Services and Secrets).
    pub group: Option<String>,
    /// The referent's kind.
    pub kind: Option<String>,
    /// The referent's name (every object of that kind when unset).
    pub name: Option<String>,
}
