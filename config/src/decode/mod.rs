//! Stage 2, decoding: located documents -> typed serde mirrors of each kind, one file per
//! kind family ([`weir`], [`argo`] with [`metric`], [`kube`], [`gateway`]), with typed scalars
//! ([`scalar`]). Mirrors are
//! plain data: no defaults, no cross-document knowledge. A type error names its file,
//! line, column and field.
//!
//! A new kind slots in as a new file of mirror types, one arm in [`decode`] and one list
//! in [`Documents`].

pub mod argo;
pub mod gateway;
pub mod ingress;
pub mod kube;
pub mod metric;
pub mod scalar;
pub mod weir;

use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::error::{Issue, Notice};
use crate::read::Document;

pub use argo::ARGO_API;
pub use weir::WEIR_API;

/// Issues and notices, each placed at a field of a document. Decoding starts the list and
/// validation goes on adding to it.
#[derive(Debug, Default)]
pub struct Findings {
    /// What is wrong.
    pub issues: Vec<Issue>,
    /// What is worth saying.
    pub notices: Vec<Notice>,
}

impl Findings {
    /// Something wrong at `field` of `doc`.
    pub fn issue(&mut self, doc: &Document, field: &str, message: impl Into<String>) {
        self.issues.push(Issue {
            file: doc.file.clone(),
            pos: doc.locate(field),
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// Information about `field` of `doc`.
    pub fn notice(&mut self, doc: &Document, field: &str, message: impl Into<String>) {
        self.notices.push(Notice {
            file: doc.file.clone(),
            pos: doc.locate(field),
            message: message.into(),
            warning: false,
        });
    }

    /// A notice about something that will go wrong at run time unless fixed.
    pub fn warn(&mut self, doc: &Document, field: &str, message: impl Into<String>) {
        self.notices.push(Notice {
            file: doc.file.clone(),
            pos: doc.locate(field),
            message: message.into(),
            warning: true,
        });
    }
}

/// Every document of a configuration, decoded and sorted by kind. The mirrors are shared
/// (a loader keeps them for the next load).
#[derive(Debug, Default)]
pub struct Documents {
    /// `Proxy` documents (one is allowed; validation says so).
    pub proxies: Vec<(Document, Arc<weir::ProxyDoc>)>,
    /// `Service` documents.
    pub services: Vec<(Document, Arc<weir::ServiceDoc>)>,
    /// `Rollout` documents.
    pub rollouts: Vec<(Document, Arc<argo::RolloutDoc>)>,
    /// `AnalysisTemplate` (false) and `ClusterAnalysisTemplate` (true) documents.
    pub templates: Vec<(Document, Arc<argo::AnalysisTemplateDoc>, bool)>,
    /// `Secret` documents.
    pub secrets: Vec<(Document, Arc<kube::SecretDoc>)>,
    /// `Deployment` documents.
    pub deployments: Vec<(Document, Arc<kube::DeploymentDoc>)>,
    /// `Namespace` documents.
    pub namespaces: Vec<(Document, Arc<kube::NamespaceDoc>)>,
    /// Kubernetes `Service` (`v1`) documents.
    pub kube_services: Vec<(Document, Arc<kube::KubeServiceDoc>)>,
    /// `EndpointSlice` documents.
    pub endpoint_slices: Vec<(Document, Arc<kube::EndpointSliceDoc>)>,
    /// `Endpoints` (`v1`) documents.
    pub endpoints: Vec<(Document, Arc<kube::EndpointsDoc>)>,
    /// `GatewayClass` documents.
    pub gateway_classes: Vec<(Document, Arc<gateway::GatewayClassDoc>)>,
    /// `Gateway` documents.
    pub gateways: Vec<(Document, Arc<gateway::GatewayDoc>)>,
    /// `HTTPRoute` documents, in the order read (the Gateway API's "oldest first").
    pub http_routes: Vec<(Document, Arc<gateway::HttpRouteDoc>)>,
    /// `ReferenceGrant` documents.
    pub reference_grants: Vec<(Document, Arc<gateway::ReferenceGrantDoc>)>,
    /// `Ingress` documents, in the order read (ingress-nginx's "oldest first").
    pub ingresses: Vec<(Document, Arc<ingress::IngressDoc>)>,
    /// `IngressClass` documents.
    pub ingress_classes: Vec<(Document, Arc<ingress::IngressClassDoc>)>,
}

/// Decodes every document by its `apiVersion` and `kind`. A document that does not decode
/// is reported and left out; a kind weir does not act on is skipped with a notice.
pub fn decode(docs: Vec<Document>, f: &mut Findings) -> Documents {
    let mut out = Documents::default();
    for doc in docs {
        let decoded = decode_one(&doc, f);
        out.push(doc, decoded);
    }
    out
}

/// One document decoded: its mirror, by kind.
#[derive(Clone, Debug)]
pub enum Decoded {
    /// Reported and left out, or skipped.
    Nothing,
    /// See [`Documents::proxies`].
    Proxy(Arc<weir::ProxyDoc>),
    /// See [`Documents::services`].
    Service(Arc<weir::ServiceDoc>),
    /// See [`Documents::rollouts`].
    Rollout(Arc<argo::RolloutDoc>),
    /// See [`Documents::templates`].
    Template(Arc<argo::AnalysisTemplateDoc>, bool),
    /// See [`Documents::secrets`].
    Secret(Arc<kube::SecretDoc>),
    /// See [`Documents::deployments`].
    Deployment(Arc<kube::DeploymentDoc>),
    /// See [`Documents::namespaces`].
    Namespace(Arc<kube::NamespaceDoc>),
    /// See [`Documents::kube_services`].
    KubeService(Arc<kube::KubeServiceDoc>),
    /// See [`Documents::endpoint_slices`].
    EndpointSlice(Arc<kube::EndpointSliceDoc>),
    /// See [`Documents::endpoints`].
    Endpoints(Arc<kube::EndpointsDoc>),
    /// See [`Documents::ingresses`].
    Ingress(Arc<ingress::IngressDoc>),
    /// See [`Documents::ingress_classes`].
    IngressClass(Arc<ingress::IngressClassDoc>),
    /// See [`Documents::gateway_classes`].
    GatewayClass(Arc<gateway::GatewayClassDoc>),
    /// See [`Documents::gateways`].
    Gateway(Arc<gateway::GatewayDoc>),
    /// See [`Documents::http_routes`].
    HttpRoute(Arc<gateway::HttpRouteDoc>),
    /// See [`Documents::reference_grants`].
    ReferenceGrant(Arc<gateway::ReferenceGrantDoc>),
}

impl Documents {
    /// Files `doc` under its kind.
    pub fn push(&mut self, doc: Document, decoded: Decoded) {
        match decoded {
            Decoded::Nothing => {}
            Decoded::Proxy(raw) => self.proxies.push((doc, raw)),
            Decoded::Service(raw) => self.services.push((doc, raw)),
            Decoded::Rollout(raw) => self.rollouts.push((doc, raw)),
            Decoded::Template(raw, cluster) => self.templates.push((doc, raw, cluster)),
            Decoded::Secret(raw) => self.secrets.push((doc, raw)),
            Decoded::Deployment(raw) => self.deployments.push((doc, raw)),
            Decoded::Namespace(raw) => self.namespaces.push((doc, raw)),
            Decoded::KubeService(raw) => self.kube_services.push((doc, raw)),
            Decoded::EndpointSlice(raw) => self.endpoint_slices.push((doc, raw)),
            Decoded::Endpoints(raw) => self.endpoints.push((doc, raw)),
            Decoded::Ingress(raw) => self.ingresses.push((doc, raw)),
            Decoded::IngressClass(raw) => self.ingress_classes.push((doc, raw)),
            Decoded::GatewayClass(raw) => self.gateway_classes.push((doc, raw)),
            Decoded::Gateway(raw) => self.gateways.push((doc, raw)),
            Decoded::HttpRoute(raw) => self.http_routes.push((doc, raw)),
            Decoded::ReferenceGrant(raw) => self.reference_grants.push((doc, raw)),
        }
    }
}

/// Decodes one document by its `apiVersion` and `kind`, reporting to `f`. It depends on
/// nothing but the document (which is why a loader may keep the result for a document
/// whose text did not change).
pub fn decode_one(doc: &Document, f: &mut Findings) -> Decoded {
    let api = doc.api_version().map(str::to_owned);
    let kind = doc.kind().map(str::to_owned);
    let (Some(api), Some(kind)) = (api, kind) else {
        let missing = if doc.api_version().is_none() {
            "apiVersion"
        } else {
            "kind"
        };
        f.issue(
            doc,
            missing,
            format!("every document needs apiVersion and kind; this one has no {missing}"),
        );
        return Decoded::Nothing;
    };
    match (api.as_str(), kind.as_str()) {
        (WEIR_API, "Proxy") => {
            if let Some(raw) = decode_doc(f, doc) {
                return Decoded::Proxy(Arc::new(raw));
            }
        }
        (WEIR_API, "Service") => {
            if let Some(raw) = decode_doc(f, doc) {
                return Decoded::Service(Arc::new(raw));
            }
        }
        (WEIR_API, other) => f.issue(
            doc,
            "kind",
            format!("{WEIR_API} has no kind {other:?}: the kinds are Proxy and Service"),
        ),
        (ARGO_API, "Rollout") => {
            if let Some(raw) = decode_doc(f, doc) {
                return Decoded::Rollout(Arc::new(raw));
            }
        }
        (ARGO_API, k @ ("AnalysisTemplate" | "ClusterAnalysisTemplate")) => {
            let cluster = k == "ClusterAnalysisTemplate";
            if let Some(raw) = decode_doc(f, doc) {
                return Decoded::Template(Arc::new(raw), cluster);
            }
        }
        ("v1", "Secret") => {
            if let Some(raw) = decode_doc::<kube::SecretDoc>(f, doc) {
                if raw.type_.as_deref() != Some(kube::TLS_SECRET_TYPE) {
                    f.notice(
                        doc,
                        "kind",
                        "Secret: read for secretKeyRef args, not acted on otherwise",
                    );
                }
                return Decoded::Secret(Arc::new(raw));
            }
        }
        ("v1", "Namespace") => {
            if let Some(raw) = decode_doc(f, doc) {
                return Decoded::Namespace(Arc::new(raw));
            }
        }
        ("v1", "Endpoints") => {
            if let Some(raw) = decode_doc(f, doc) {
                return Decoded::Endpoints(Arc::new(raw));
            }
        }
        ("v1", "Service") => {
            if let Some(raw) = decode_doc(f, doc) {
                return Decoded::KubeService(Arc::new(raw));
            }
        }
        (kube::DISCOVERY_API, "EndpointSlice") => {
            if let Some(raw) = decode_doc(f, doc) {
                return Decoded::EndpointSlice(Arc::new(raw));
            }
        }
        (api, kind @ ("GatewayClass" | "Gateway" | "HTTPRoute" | "ReferenceGrant"))
            if gateway::GATEWAY_VERSIONS.contains(&api) =>
        {
            match kind {
                "GatewayClass" => {
                    if let Some(raw) = decode_doc(f, doc) {
                        return Decoded::GatewayClass(Arc::new(raw));
                    }
                }
                "Gateway" => {
                    if let Some(raw) = decode_doc(f, doc) {
                        return Decoded::Gateway(Arc::new(raw));
                    }
                }
                "HTTPRoute" => {
                    if let Some(raw) = decode_doc(f, doc) {
                        return Decoded::HttpRoute(Arc::new(raw));
                    }
                }
                _ => {
                    if let Some(raw) = decode_doc(f, doc) {
                        return Decoded::ReferenceGrant(Arc::new(raw));
                    }
                }
            }
        }
        (api, kind @ ("GatewayClass" | "Gateway" | "HTTPRoute" | "ReferenceGrant"))
            if api == gateway::GATEWAY_GROUP
                || api.starts_with(&format!("{}/", gateway::GATEWAY_GROUP)) =>
        {
            f.issue(
                doc,
                "apiVersion",
                format!(
                    "{api:?} is not a version weir knows for {kind}: the versions are {}",
                    gateway::GATEWAY_VERSIONS.join(", ")
                ),
            )
        }
        (ingress::INGRESS_API, "Ingress") => {
            if let Some(raw) = decode_doc(f, doc) {
                return Decoded::Ingress(Arc::new(raw));
            }
        }
        (ingress::INGRESS_API, "IngressClass") => {
            if let Some(raw) = decode_doc(f, doc) {
                return Decoded::IngressClass(Arc::new(raw));
            }
        }
        (api, kind @ ("Ingress" | "IngressClass")) if ingress::REMOVED_INGRESS_APIS.contains(&api) => {
            f.issue(
                doc,
                "apiVersion",
                format!(
                    "{kind} {api} was removed in Kubernetes 1.22: write {}, as `kubectl convert` does",
                    ingress::INGRESS_API
                ),
            )
        }
        ("apps/v1", "Deployment") => {
            if let Some(raw) = decode_doc(f, doc) {
                f.notice(
                    doc,
                    "kind",
                    "Deployment: read for a Rollout's workloadRef, not acted on otherwise",
                );
                return Decoded::Deployment(Arc::new(raw));
            }
        }
        // weir's own group, or Argo's kinds, at a version that does not exist: a typo,
        // not a kind to skip.
        (api, kind) if api == "weir.dev" || api.starts_with("weir.dev/") => f.issue(
            doc,
            "apiVersion",
            format!("{api:?} is not a version weir knows for {kind}: the version is {WEIR_API}"),
        ),
        (api, kind @ ("Rollout" | "AnalysisTemplate" | "ClusterAnalysisTemplate"))
            if api == "argoproj.io" || api.starts_with("argoproj.io/") =>
        {
            f.issue(
                doc,
                "apiVersion",
                format!(
                    "{api:?} is not a version weir knows for {kind}: the version is {ARGO_API}"
                ),
            )
        }
        (api, kind) => f.notice(
            doc,
            "kind",
            format!("skipped {kind} ({api}): weir does not act on this kind"),
        ),
    }
    Decoded::Nothing
}

/// Decodes a document into its serde mirror, reporting a type error with its field.
///
/// An unknown field is reported and left out, and decoding goes on, so that one misspelt
/// key does not hide the document's other errors: every error at once.
pub fn decode_doc<T: DeserializeOwned>(f: &mut Findings, doc: &Document) -> Option<T> {
    let mut json = doc.node.to_json();
    // Each round reports one unknown field; a document has few keys, this bounds it.
    for _ in 0..256 {
        let e = match serde_path_to_error::deserialize::<_, T>(&json) {
            Ok(v) => return Some(v),
            Err(e) => e,
        };
        let mut field = e.path().to_string();
        if field == "." {
            field.clear();
        }
        let message = e.inner().to_string();
        let unknown = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(name, _)| name.to_owned());
        let Some(name) = unknown else {
            f.issue(doc, &field, message);
            return None;
        };
        // Point the error at the field itself, then leave the field out and go on.
        let parent = e.path().clone();
        let at_field = field.ends_with(name.as_str());
        if !at_field {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(&name);
        }
        f.issue(doc, &field, message);
        if !remove_field(&mut json, &parent, &name) {
            return None;
        }
    }
    None
}

/// Removes key `name` from the object at `path` in `json`; false if there is none.
fn remove_field(
    json: &mut serde_json::Value,
    path: &serde_path_to_error::Path,
    name: &str,
) -> bool {
    use serde_path_to_error::Segment;
    let mut segments: Vec<&Segment> = path.iter().collect();
    // The path may end with the unknown field itself.
    if matches!(segments.last(), Some(Segment::Map { key }) if key == name) {
        segments.pop();
    }
    let mut at = json;
    for seg in segments {
        at = match (seg, at) {
            (Segment::Map { key }, serde_json::Value::Object(m)) => match m.get_mut(key) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Seq { index }, serde_json::Value::Array(a)) => match a.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match at {
        serde_json::Value::Object(m) => m.remove(name).is_some(),
        _ => false,
    }
}
