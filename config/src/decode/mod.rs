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

/// Every document of a configuration, decoded and sorted by kind.
#[derive(Debug, Default)]
pub struct Documents {
    /// `Proxy` documents (one is allowed; validation says so).
    pub proxies: Vec<(Document, weir::ProxyDoc)>,
    /// `Service` documents.
    pub services: Vec<(Document, weir::ServiceDoc)>,
    /// `Rollout` documents.
    pub rollouts: Vec<(Document, argo::RolloutDoc)>,
    /// `AnalysisTemplate` (false) and `ClusterAnalysisTemplate` (true) documents.
    pub templates: Vec<(Document, argo::AnalysisTemplateDoc, bool)>,
    /// `Secret` documents.
    pub secrets: Vec<(Document, kube::SecretDoc)>,
    /// `Deployment` documents.
    pub deployments: Vec<(Document, kube::DeploymentDoc)>,
    /// `Namespace` documents.
    pub namespaces: Vec<(Document, kube::NamespaceDoc)>,
    /// Kubernetes `Service` (`v1`) documents.
    pub kube_services: Vec<(Document, kube::KubeServiceDoc)>,
    /// `EndpointSlice` documents.
    pub endpoint_slices: Vec<(Document, kube::EndpointSliceDoc)>,
    /// `Endpoints` (`v1`) documents.
    pub endpoints: Vec<(Document, kube::EndpointsDoc)>,
    /// `GatewayClass` documents.
    pub gateway_classes: Vec<(Document, gateway::GatewayClassDoc)>,
    /// `Gateway` documents.
    pub gateways: Vec<(Document, gateway::GatewayDoc)>,
    /// `HTTPRoute` documents, in the order read (the Gateway API's "oldest first").
    pub http_routes: Vec<(Document, gateway::HttpRouteDoc)>,
    /// `ReferenceGrant` documents.
    pub reference_grants: Vec<(Document, gateway::ReferenceGrantDoc)>,
    /// `Ingress` documents, in the order read (ingress-nginx's "oldest first").
    pub ingresses: Vec<(Document, ingress::IngressDoc)>,
    /// `IngressClass` documents.
    pub ingress_classes: Vec<(Document, ingress::IngressClassDoc)>,
}

/// Decodes every document by its `apiVersion` and `kind`. A document that does not decode
/// is reported and left out; a kind weir does not act on is skipped with a notice.
pub fn decode(docs: Vec<Document>, f: &mut Findings) -> Documents {
    let mut out = Documents::default();
    for doc in docs {
        let api = doc.api_version().map(str::to_owned);
        let kind = doc.kind().map(str::to_owned);
        let (Some(api), Some(kind)) = (api, kind) else {
            let missing = if doc.api_version().is_none() {
                "apiVersion"
            } else {
                "kind"
            };
            f.issue(
                &doc,
                missing,
                format!("every document needs apiVersion and kind; this one has no {missing}"),
            );
            continue;
        };
        match (api.as_str(), kind.as_str()) {
            (WEIR_API, "Proxy") => {
                if let Some(raw) = decode_doc(f, &doc) {
                    out.proxies.push((doc, raw));
                }
            }
            (WEIR_API, "Service") => {
                if let Some(raw) = decode_doc(f, &doc) {
                    out.services.push((doc, raw));
                }
            }
            (WEIR_API, other) => f.issue(
                &doc,
                "kind",
                format!("{WEIR_API} has no kind {other:?}: the kinds are Proxy and Service"),
            ),
            (ARGO_API, "Rollout") => {
                if let Some(raw) = decode_doc(f, &doc) {
                    out.rollouts.push((doc, raw));
                }
            }
            (ARGO_API, k @ ("AnalysisTemplate" | "ClusterAnalysisTemplate")) => {
                let cluster = k == "ClusterAnalysisTemplate";
                if let Some(raw) = decode_doc(f, &doc) {
                    out.templates.push((doc, raw, cluster));
                }
            }
            ("v1", "Secret") => {
                if let Some(raw) = decode_doc::<kube::SecretDoc>(f, &doc) {
                    if raw.type_.as_deref() != Some(kube::TLS_SECRET_TYPE) {
                        f.notice(
                            &doc,
                            "kind",
                            "Secret: read for secretKeyRef args, not acted on otherwise",
                        );
                    }
                    out.secrets.push((doc, raw));
                }
            }
            ("v1", "Namespace") => {
                if let Some(raw) = decode_doc(f, &doc) {
                    out.namespaces.push((doc, raw));
                }
            }
            ("v1", "Endpoints") => {
                if let Some(raw) = decode_doc(f, &doc) {
                    out.endpoints.push((doc, raw));
                }
            }
            ("v1", "Service") => {
                if let Some(raw) = decode_doc(f, &doc) {
                    out.kube_services.push((doc, raw));
                }
            }
            (kube::DISCOVERY_API, "EndpointSlice") => {
                if let Some(raw) = decode_doc(f, &doc) {
                    out.endpoint_slices.push((doc, raw));
                }
            }
            (api, kind @ ("GatewayClass" | "Gateway" | "HTTPRoute" | "ReferenceGrant"))
                if gateway::GATEWAY_VERSIONS.contains(&api) =>
            {
                match kind {
                    "GatewayClass" => {
                        if let Some(raw) = decode_doc(f, &doc) {
                            out.gateway_classes.push((doc, raw));
                        }
                    }
                    "Gateway" => {
                        if let Some(raw) = decode_doc(f, &doc) {
                            out.gateways.push((doc, raw));
                        }
                    }
                    "HTTPRoute" => {
                        if let Some(raw) = decode_doc(f, &doc) {
                            out.http_routes.push((doc, raw));
                        }
                    }
                    _ => {
                        if let Some(raw) = decode_doc(f, &doc) {
                            out.reference_grants.push((doc, raw));
                        }
                    }
                }
            }
            (api, kind @ ("GatewayClass" | "Gateway" | "HTTPRoute" | "ReferenceGrant"))
                if api == gateway::GATEWAY_GROUP
                    || api.starts_with(&format!("{}/", gateway::GATEWAY_GROUP)) =>
            {
                f.issue(
                    &doc,
                    "apiVersion",
                    format!(
                        "{api:?} is not a version weir knows for {kind}: the versions are {}",
                        gateway::GATEWAY_VERSIONS.join(", ")
                    ),
                )
            }
            (ingress::INGRESS_API, "Ingress") => {
                if let Some(raw) = decode_doc(f, &doc) {
                    out.ingresses.push((doc, raw));
                }
            }
            (ingress::INGRESS_API, "IngressClass") => {
                if let Some(raw) = decode_doc(f, &doc) {
                    out.ingress_classes.push((doc, raw));
                }
            }
            (api, kind @ ("Ingress" | "IngressClass"))
                if ingress::REMOVED_INGRESS_APIS.contains(&api) =>
            {
                f.issue(
                    &doc,
                    "apiVersion",
                    format!(
                        "{kind} {api} was removed in Kubernetes 1.22: write {}, as `kubectl convert` does",
                        ingress::INGRESS_API
                    ),
                )
            }
            ("apps/v1", "Deployment") => {
                if let Some(raw) = decode_doc(f, &doc) {
                    f.notice(
                        &doc,
                        "kind",
                        "Deployment: read for a Rollout's workloadRef, not acted on otherwise",
                    );
                    out.deployments.push((doc, raw));
                }
            }
            // weir's own group, or Argo's kinds, at a version that does not exist: a typo,
            // not a kind to skip.
            (api, kind) if api == "weir.dev" || api.starts_with("weir.dev/") => f.issue(
                &doc,
                "apiVersion",
                format!(
                    "{api:?} is not a version weir knows for {kind}: the version is {WEIR_API}"
                ),
            ),
            (api, kind @ ("Rollout" | "AnalysisTemplate" | "ClusterAnalysisTemplate"))
                if api == "argoproj.io" || api.starts_with("argoproj.io/") =>
            {
                f.issue(
                    &doc,
                    "apiVersion",
                    format!(
                        "{api:?} is not a version weir knows for {kind}: the version is {ARGO_API}"
                    ),
                )
            }
            (api, kind) => f.notice(
                &doc,
                "kind",
                format!("skipped {kind} ({api}): weir does not act on this kind"),
            ),
        }
    }
    out
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
