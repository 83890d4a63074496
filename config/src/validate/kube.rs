//! The Kubernetes kinds a Rollout draws on: `Secret`s (values for `secretKeyRef` args) and
//! `Deployment`s (pod templates for `workloadRef`).

use std::collections::BTreeMap;

use serde_json::Value;

use std::sync::Arc;

use crate::decode::kube as raw;
use crate::read::Document;

use super::ctx::Ctx;

/// Secrets by name: key -> value, `data` decoded from base64.
pub(super) fn secrets(
    ctx: &mut Ctx,
    docs: &[(Document, Arc<raw::SecretDoc>)],
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (doc, s) in docs {
        let Some(name) = s.metadata.name.clone() else {
            ctx.notice(doc, "metadata", "a Secret without a name is ignored");
            continue;
        };
        let mut values = BTreeMap::new();
        for (k, v) in &s.data {
            match base64_decode(v) {
                Some(d) => {
                    values.insert(k.clone(), d);
                }
                None => ctx.issue(doc, &format!("data.{k}"), "not valid base64"),
            }
        }
        for (k, v) in &s.string_data {
            values.insert(k.clone(), v.clone());
        }
        out.insert(name, values);
    }
    out
}

/// The pod templates of the Deployments, by name.
pub(super) fn deployment_templates(
    docs: &[(Document, Arc<raw::DeploymentDoc>)],
) -> BTreeMap<String, Value> {
    docs.iter()
        .filter_map(|(_, d)| Some((d.metadata.name.clone()?, d.spec.as_ref()?.template.clone()?)))
        .collect()
}

fn base64_decode(s: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}
