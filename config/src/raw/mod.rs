//! Serde mirrors of the YAML documents: plain data, no defaults, no logic.
//!
//! weir's own kinds deny unknown fields so that typos fail loudly. Argo's kinds tolerate
//! them, because real Rollouts carry many Kubernetes fields weir has no use for.

pub mod argo;
pub mod weir;

use serde::Deserialize;
use std::collections::BTreeMap;

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
