//! Serde mirrors of the Kubernetes kinds a Rollout may draw on: `Secret` (`v1`, for
//! `secretKeyRef` args) and `Deployment` (`apps/v1`, for `workloadRef`), and the
//! Kubernetes types Argo's kinds are built from (object metadata, label selectors).
//! Unknown fields are tolerated. A pod template stays JSON: see [`super::argo`].

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::scalar::{Ignored, Text};

/// Kubernetes object metadata.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Name.
    pub name: Option<String>,
    /// Namespace (kept for messages; weir has one namespace).
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

/// A Kubernetes `Secret` (for `secretKeyRef` args).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretDoc {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
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
