//! Serde mirrors of the Kubernetes Ingress kinds (`networking.k8s.io/v1`): `Ingress`
//! (rules by host and path, a default backend, TLS Secrets; ingress-nginx's annotations
//! stay in `metadata.annotations`) and `IngressClass`. An unknown field inside a `spec` is
//! reported (a typo there would change what is served); other top-level fields, such as
//! the `status` of a manifest exported from a cluster, are tolerated.

use serde::Deserialize;

use super::kube::ObjectMeta;
use super::scalar::{Ignored, Int};

/// The `apiVersion` of `Ingress` and `IngressClass`.
pub const INGRESS_API: &str = "networking.k8s.io/v1";

/// The versions Kubernetes removed in 1.22, said so when a document uses one.
pub const REMOVED_INGRESS_APIS: &[&str] = &["extensions/v1beta1", "networking.k8s.io/v1beta1"];

/// The legacy annotation that names an Ingress's class.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// The IngressClass annotation that makes a class the default one.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// A Kubernetes `Ingress`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressDoc {
    /// Metadata: name, namespace, annotations (ingress-nginx's live there).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: Option<IngressSpec>,
}

/// `Ingress.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressSpec {
    /// The class (an IngressClass's name).
    pub ingress_class_name: Option<String>,
    /// Where requests that no rule takes go.
    pub default_backend: Option<IngressBackend>,
    /// TLS: Secrets and the hosts they serve.
    #[serde(default)]
    pub tls: Vec<IngressTls>,
    /// Rules by host.
    #[serde(default)]
    pub rules: Vec<IngressRule>,
}

/// One `spec.tls` entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressTls {
    /// The hosts the Secret is served for (SNI).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// A `kubernetes.io/tls` Secret in the Ingress's namespace.
    pub secret_name: Option<String>,
}

/// One `spec.rules` entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressRule {
    /// The host (exact, or `*.` and a domain); none: every host.
    pub host: Option<String>,
    /// The paths.
    pub http: Option<HttpRuleValue>,
}

/// `rules[].http`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRuleValue {
    /// The paths, each with its backend.
    #[serde(default)]
    pub paths: Vec<HttpPath>,
}

/// One path of a rule.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpPath {
    /// The path (required for `Exact` and `Prefix`).
    pub path: Option<String>,
    /// `Exact`, `Prefix` or `ImplementationSpecific`.
    pub path_type: Option<String>,
    /// Where its requests go.
    pub backend: Option<IngressBackend>,
}

/// An Ingress backend: a Service and port (a `resource` backend has no meaning here).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressBackend {
    /// The Service.
    pub service: Option<ServiceBackend>,
    /// A reference to another kind of object (not served: weir says so).
    pub resource: Option<Ignored>,
}

/// `backend.service`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceBackend {
    /// The Service's name, in the Ingress's namespace.
    pub name: Option<String>,
    /// Its port, by number or by name.
    pub port: Option<ServicePortRef>,
}

/// `backend.service.port`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePortRef {
    /// The Service port's number.
    pub number: Option<Int>,
    /// The Service port's name.
    pub name: Option<String>,
}

/// A Kubernetes `IngressClass`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressClassDoc {
    /// Metadata: the name, and the default-class annotation.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: Option<IngressClassSpec>,
}

/// `IngressClass.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressClassSpec {
    /// The controller (`k8s.io/ingress-nginx`, `weir.dev/ingress-controller`, ...).
    pub controller: Option<String>,
    /// Controller parameters: no meaning for weir.
    pub parameters: Option<Ignored>,
}
