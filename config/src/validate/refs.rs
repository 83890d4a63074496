//! Every check one document makes against another, in one place: a route's Service or
//! Rollout, a Rollout's Service (for endpoints), Deployment (for `workloadRef`) and
//! analysis templates (with the templates they include), an arg's Secret. The kind
//! validators call these where the reference is written, so each issue is reported at
//! that field.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use crate::decode::argo as raw;
use crate::model::Service;
use crate::read::Document;
use crate::rollout::{ArgSpec, Argo, Rollout, TemplateRef, ValueFrom};

use super::ctx::{Ctx, kind_name};

/// A route backend's `service` names a Service.
pub(super) fn backend_service(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    service: &str,
    services: &BTreeMap<String, Arc<Service>>,
) {
    if !services.contains_key(service) {
        ctx.issue(
            doc,
            field,
            format!("no Service is named {service:?}: define a Service with that metadata.name"),
        );
    }
}

/// A route's `rollout` names a Rollout.
pub(super) fn route_rollout(ctx: &mut Ctx, doc: &Document, field: &str, name: &str, argo: &Argo) {
    if !argo.rollouts.contains_key(name) {
        ctx.issue(
            doc,
            field,
            format!(
                "no Rollout is named {name:?}: define one (argoproj.io/v1alpha1, kind Rollout)"
            ),
        );
    }
}

/// A Rollout's revisions are reached through the Service of the same name, whose
/// endpoints say which image runs where: without it, or without an endpoint for the
/// Rollout's image, an update has nowhere to send traffic (a warning, not an issue: the
/// endpoints may come later).
pub(super) fn rollout_service(
    ctx: &mut Ctx,
    doc: &Document,
    ro: &Rollout,
    services: &BTreeMap<String, Arc<Service>>,
) {
    match services.get(&ro.name) {
        None => ctx.warn(
            doc,
            "metadata.name",
            format!(
                "Rollout {0}: there is no Service named {0:?}, so no revision has endpoints: add a Service (weir.dev/v1alpha1) named {0} whose endpoints say where each image runs, e.g. `- {{address: HOST:PORT, image: {1}}}`",
                ro.name, ro.image
            ),
        ),
        Some(s) if !s.endpoints.iter().any(|e| e.image.as_deref() == Some(ro.image.as_str())) => ctx.warn(
            doc,
            "spec.template",
            format!(
                "Rollout {0}: Service {0:?} has no endpoint with image {1}: add `- {{address: HOST:PORT, image: {1}}}` to its endpoints where that version runs. Until then an update to it waits with no traffic (a first deploy answers 503)",
                ro.name, ro.image
            ),
        ),
        _ => {}
    }
}

/// The pod template a Rollout's `workloadRef` borrows, from a Deployment in the
/// configuration.
pub(super) fn workload_template(
    ctx: &mut Ctx,
    doc: &Document,
    w: &raw::WorkloadRef,
    deployments: &BTreeMap<String, Value>,
) -> Option<Value> {
    let kind = w
        .kind
        .as_deref()
        .unwrap_or(crate::defaults::WORKLOAD_REF_KIND);
    match (kind, w.name.as_deref()) {
        ("Deployment", Some(n)) => match deployments.get(n) {
            Some(t) => Some(t.clone()),
            None => {
                ctx.issue(
                    doc,
                    "spec.workloadRef.name",
                    format!("Deployment {n:?} is not in the configuration: add it, or write the template into the Rollout"),
                );
                None
            }
        },
        (_, None) => {
            ctx.issue(doc, "spec.workloadRef.name", "workloadRef needs a name");
            None
        }
        (other, _) => {
            ctx.issue(
                doc,
                "spec.workloadRef.kind",
                format!("workloadRef to a {other} is not supported: use a Deployment"),
            );
            None
        }
    }
}

/// A template's `secretKeyRef` args read a key of a Secret in the configuration.
pub(super) fn secret_args(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    args: &[(usize, ArgSpec)],
    secrets: &BTreeMap<String, BTreeMap<String, String>>,
) {
    for (i, a) in args {
        if let Some(ValueFrom::SecretKeyRef { name: s, key }) = &a.value_from {
            match secrets.get(s) {
                None => ctx.issue(
                    doc,
                    &format!("{field}[{i}].valueFrom.secretKeyRef.name"),
                    format!("arg {:?} reads Secret {s:?}, which is not in the configuration: add the Secret document", a.name),
                ),
                Some(keys) if !keys.contains_key(key) => ctx.issue(
                    doc,
                    &format!("{field}[{i}].valueFrom.secretKeyRef.key"),
                    format!("Secret {s:?} has no key {key:?}"),
                ),
                _ => {}
            }
        }
    }
}

/// Whether every template an analysis at `field` names is in the configuration, with the
/// templates those include. A background analysis runs as soon as an update starts, and
/// a ClusterAnalysisTemplate is shared infrastructure: a missing one is an issue. A step
/// or blue-green analysis is resolved when it is reached (as Argo does); until then a
/// missing template is a warning.
pub(super) fn analysis_templates(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    templates: &[TemplateRef],
    background: bool,
    argo: &Argo,
) -> bool {
    // Missing templates. A background analysis runs as soon as an update starts, and a
    // ClusterAnalysisTemplate is shared infrastructure: both must be in the
    // configuration. A step or blue-green analysis is resolved when it is reached (as
    // Argo does); until then a missing template is a notice.
    let missing: Vec<&TemplateRef> = templates
        .iter()
        .filter(|t| !template_tree_complete(argo, t))
        .collect();
    if !missing.is_empty() {
        let names = missing
            .iter()
            .map(|t| format!("{} {:?}", kind_name(t.cluster), t.name))
            .collect::<Vec<_>>()
            .join(", ");
        let strict = background || missing.iter().any(|t| t.cluster);
        if strict {
            ctx.issue(
                doc,
                &format!("{field}.templates"),
                format!("not found: {names}; add the template to the configuration (a file in the same folder is enough)"),
            );
        } else {
            ctx.warn(
                doc,
                &format!("{field}.templates"),
                format!("{names} not in this configuration: add it, or fix the templateName; an update that reaches this analysis is aborted while it is missing"),
            );
        }
        return false;
    }
    true
}

fn template_tree_complete(argo: &Argo, t: &TemplateRef) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![t.clone()];
    while let Some(t) = stack.pop() {
        if !seen.insert(t.clone()) {
            continue;
        }
        match argo.templates.get(&t) {
            None => return false,
            Some(tpl) => stack.extend(tpl.templates.iter().cloned()),
        }
    }
    true
}
