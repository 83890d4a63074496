//! The validated, immutable configuration. Nothing here is an `Option` that means
//! "default": validation has applied every default already.
//!
//! [`Model`] holds the weir kinds ([`weir`], whose types are re-exported here) and the
//! Argo kinds ([`crate::rollout`]); [`http`] is what routes match and do, shared by every
//! kind that routes, and [`gateway`] the status of the Gateway API objects.

pub mod gateway;
pub mod http;
pub mod weir;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::Notice;

pub use gateway::{Condition, GatewayStatus, SectionStatus, StatusKind};
pub use http::{
    Affinity, Cors, Filter, HeaderModifier, Mirror, PathMatch, PathRewrite, QueryMatch, Redirect,
    Rewrite, RouteMatch, RouteTimeouts, SourceRanges, Steer, SteerWhen, ValueMatch,
};
pub use weir::{
    AccessLog, AdminToken, CertificateSource, ClusterSettings, Endpoint, HeaderMatch,
    HeaderMatchKind, HealthCheck, HostMatch, Limits, Listener, LoadBalancer, Notifier, Proxy,
    Route, RouteTarget, ServedFor, Service, Tls, TlsCertificate, UpstreamProtocol,
    UpstreamSettings, Weight, WeightedService,
};

/// Everything weir runs from.
#[derive(Clone, Debug)]
pub struct Model {
    /// The proxy: listeners, admin, routes, settings.
    pub proxy: Proxy,
    /// Services by name.
    pub services: BTreeMap<String, Arc<Service>>,
    /// Rollouts, analysis templates and the Kubernetes data they use.
    pub argo: crate::rollout::Argo,
    /// Every file that was read, and every file the model depends on (certificates):
    /// the watcher reloads when any of them changes.
    pub files: Vec<PathBuf>,
    /// Things worth saying that are not errors.
    pub notices: Vec<Notice>,
    /// A hash of the contents of `files`, to tell a real change from a spurious event.
    pub fingerprint: u64,
    /// The status of each Gateway API object (GatewayClass, Gateway, HTTPRoute), in the
    /// order the documents were read.
    pub gateway_status: Vec<GatewayStatus>,
}
