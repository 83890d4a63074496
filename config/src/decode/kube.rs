//! Serde mirrors of the Kubernetes core kinds weir reads: `Secret` (`v1`, for
//! `secretKeyRef` args and, of type `kubernetes.io/tls`, for Gateway certificates),
//! `Deployment` (`apps/v1`, for `workloadRef`), `Namespace` (`v1`, labels for route
//! selectors), `Service` (`v1`, ports of HTTPRoute backends) and `EndpointSlice`
//! (`discovery.k8s.io/v1`, the addresses behind a Service); and the Kubernetes types
//! Argo's kinds are built from (object metadata, label selectors). Unknown fields are
//! tolerated. A pod template stays JSON: see [`super::argo`].

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::scalar::{Ignored, Int, IntOrString, Text};

/// Kubernetes object metadata.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Name.
    pub name: Option<String>,
    /// Namespace (`default` when not written, for the Kubernetes and Gateway API kinds;
    /// kept for messages by the others).
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations (notification subscriptions live here).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// A label selector.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels the selected pods carry. Kubernetes wants strings; a number or a bool is
    /// taken as its text, as a template's labels are.
    pub match_labels: Option<BTreeMap<String, Text>>,
    /// Set-based requirements (not checked against the template).
    pub match_expressions: Option<Ignored>,
}

/// The `apiVersion` of `EndpointSlice`.
pub const DISCOVERY_API: &str = "discovery.k8s.io/v1";

/// The Secret type that holds a certificate chain and its key.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Kubernetes `Secret`: values for `secretKeyRef` args; of type `kubernetes.io/tls`,
/// the certificate (`tls.crt`) and key (`tls.key`) of a Gateway listener.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretDoc {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `Opaque` (the default), `kubernetes.io/tls`, ...
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// Base64 values.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// Plain values.
    #[serde(default)]
    pub string_data: BTreeMap<String, String>,
}

/// A Kubernetes `Deployment` (for `workloadRef`): only its template is used.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentDoc {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: Option<DeploymentSpec>,
}

/// `Deployment.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// The pod template.
    pub template: Option<Value>,
}

/// A Kubernetes `Namespace`: its labels select routes for a Gateway listener's
/// `allowedRoutes`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceDoc {
    /// Metadata: the name and the labels.
    #[serde(default)]
    pub metadata: ObjectMeta,
}

/// A Kubernetes `Service` (`v1`): the ports an HTTPRoute backend names.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeServiceDoc {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: Option<KubeServiceSpec>,
}

/// `Service.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeServiceSpec {
    /// `ClusterIP` (the default), `NodePort`, `LoadBalancer` or `ExternalName`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// An `ExternalName` Service's DNS name.
    pub external_name: Option<String>,
    /// The ports.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// The pods it selects: no meaning without pods (its EndpointSlices say where they
    /// are).
    pub selector: Option<Ignored>,
}

/// One port of a `Service`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Its name (required when the Service has several ports).
    pub name: Option<String>,
    /// The port clients use (what a backendRef's `port` names).
    pub port: Option<Int>,
    /// The pods' port: a number, or the name of a container port (default: `port`).
    pub target_port: Option<IntOrString>,
    /// `TCP` (the default), `UDP` or `SCTP`.
    pub protocol: Option<String>,
    /// The application protocol (`kubernetes.io/h2c`, `kubernetes.io/ws`, ...).
    pub app_protocol: Option<String>,
}

/// A Kubernetes `EndpointSlice` (`discovery.k8s.io/v1`): addresses behind the Service
/// named by its `kubernetes.io/service-name` label.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSliceDoc {
    /// Metadata (the label `kubernetes.io/service-name` names the Service).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN`.
    pub address_type: Option<String>,
    /// The endpoints.
    #[serde(default)]
    pub endpoints: Vec<SliceEndpoint>,
    /// The ports every endpoint serves.
    #[serde(default)]
    pub ports: Vec<SlicePort>,
}

/// One endpoint of an EndpointSlice.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SliceEndpoint {
    /// Its addresses (one is used; Kubernetes writes one).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Whether it is ready.
    pub conditions: Option<EndpointConditions>,
    /// Pod details: no meaning without pods.
    pub target_ref: Option<Ignored>,
}

/// An endpoint's conditions.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointConditions {
    /// Ready for traffic (not written: ready).
    pub ready: Option<bool>,
    /// Serving (not read: `ready` decides).
    pub serving: Option<bool>,
    /// Terminating (not read: `ready` decides).
    pub terminating: Option<bool>,
}

/// One port of an EndpointSlice.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlicePort {
    /// The Service port's name it serves (empty or absent for an unnamed port).
    pub name: Option<String>,
    /// The port number on the endpoints.
    pub port: Option<Int>,
    /// `TCP` (the default), `UDP` or `SCTP`.
    pub protocol: Option<String>,
    /// The application protocol.
    pub app_protocol: Option<String>,
}

/// A Kubernetes `Endpoints` (`v1`, the kind EndpointSlices replaced): the addresses behind
/// the Service of the same name, in subsets of addresses sharing ports. Read where a
/// Service has no EndpointSlice.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointsDoc {
    /// Metadata: the name is the Service's.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The subsets.
    #[serde(default)]
    pub subsets: Vec<EndpointSubset>,
}

/// One subset of an `Endpoints`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSubset {
    /// Ready addresses.
    #[serde(default)]
    pub addresses: Vec<EndpointAddress>,
    /// Addresses not ready (not used).
    #[serde(default)]
    pub not_ready_addresses: Vec<EndpointAddress>,
    /// The ports every address of the subset serves.
    #[serde(default)]
    pub ports: Vec<SlicePort>,
}

/// One address of an `Endpoints` subset.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointAddress {
    /// The IP address.
    pub ip: Option<String>,
    /// The pod's host name: no meaning without pods.
    pub hostname: Option<String>,
    /// The node: no meaning without nodes.
    pub node_name: Option<String>,
    /// The pod: no meaning without pods.
    pub target_ref: Option<Ignored>,
}
