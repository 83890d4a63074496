//! `Rollout`s: the pod template (inline or borrowed from a Deployment) whose image is the
//! revision, the selector, the numbers, and (in [`super::strategy`]) the strategy. Argo's
//! own validation rules are mirrored (argo-reference §1.7, §3); fields that mean nothing
//! without pods are accepted and named once in a notice.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde_json::Value;

use crate::decode::argo as raw;
use crate::decode::scalar::{Int, Text};
use crate::defaults;
use crate::model::Service;
use crate::read::Document;
use crate::read::node::Node;
use crate::rollout::{Argo, Rollout, Strategy};

use super::ctx::{Ctx, check_name, int_field, secs_field};
use super::{refs, strategy};

/// Validates the Rollouts into `argo.rollouts` (templates and Secrets already there).
pub(super) fn rollouts(
    ctx: &mut Ctx,
    docs: &[(Document, Arc<raw::RolloutDoc>)],
    deployments: &BTreeMap<String, Value>,
    services: &BTreeMap<String, Arc<Service>>,
    argo: &mut Argo,
) {
    for (doc, r) in docs {
        if let Some(ro) = rollout(ctx, doc, r, deployments, argo) {
            if argo.rollouts.contains_key(&ro.name) {
                ctx.issue(
                    doc,
                    "metadata.name",
                    format!("a Rollout named {:?} is already defined", ro.name),
                );
                continue;
            }
            refs::rollout_service(ctx, doc, &ro, services);
            argo.rollouts.insert(ro.name.clone(), Arc::new(ro));
        }
    }
}

/// One Rollout; `None` when it has an issue.
fn rollout(
    ctx: &mut Ctx,
    doc: &Document,
    r: &raw::RolloutDoc,
    deployments: &BTreeMap<String, Value>,
    argo: &Argo,
) -> Option<Rollout> {
    let before = ctx.issue_count();
    let name = check_name(ctx, doc, r.metadata.name.as_deref());
    let Some(spec) = &r.spec else {
        ctx.issue(doc, "spec", "a Rollout needs a spec");
        return None;
    };
    let mut not_applicable: Vec<String> = Vec::new();
    for (f, present) in [
        ("replicas", spec.replicas.is_some()),
        ("minReadySeconds", spec.min_ready_seconds.is_some()),
        ("restartAt", spec.restart_at.is_some()),
    ] {
        if present {
            not_applicable.push(f.to_owned());
        }
    }

    // The template: inline, or from a Deployment in the configuration.
    let template = match (&spec.template, &spec.workload_ref) {
        (Some(_), Some(_)) => {
            ctx.issue(
                doc,
                "spec.workloadRef",
                "give template or workloadRef, not both",
            );
            None
        }
        (Some(t), None) => Some(t.clone()),
        (None, Some(w)) => refs::workload_template(ctx, doc, w, deployments),
        (None, None) => {
            ctx.issue(
                doc,
                "spec.template",
                "a Rollout needs spec.template (or spec.workloadRef)",
            );
            None
        }
    };
    if spec
        .workload_ref
        .as_ref()
        .is_some_and(|w| w.scale_down.is_some())
    {
        not_applicable.push("workloadRef.scaleDown".into());
    }
    let image = template.as_ref().and_then(|t| match first_image(t) {
        Some(i) if !i.is_empty() => Some(i.to_owned()),
        _ => {
            ctx.issue(
                doc,
                if spec.template.is_some() { "spec.template.spec.containers" } else { "spec.workloadRef" },
                "the template needs a container with an image: the first container's image is the revision",
            );
            None
        }
    });
    // The selector must match the template's labels (unless the workload supplies both).
    if spec.workload_ref.is_none() {
        match &spec.selector {
            None => ctx.issue(doc, "spec.selector", "a Rollout needs spec.selector"),
            Some(sel) => {
                if let (Some(ml), Some(t)) = (&sel.match_labels, &template) {
                    let labels = t.get("metadata").and_then(|m| m.get("labels"));
                    for (k, want) in ml {
                        let have = labels.and_then(|l| l.get(k)).and_then(label_text);
                        if !matches!(want, Text::Text(w) if have.as_deref() == Some(w.as_str())) {
                            ctx.issue(
                                doc,
                                "spec.selector.matchLabels",
                                format!(
                                    "the selector wants {k}={want} but the template's labels do not have it"
                                ),
                            );
                        }
                    }
                }
            }
        }
    }

    let progress_deadline = secs_field(
        ctx,
        doc,
        "spec.progressDeadlineSeconds",
        spec.progress_deadline_seconds.as_ref(),
        defaults::PROGRESS_DEADLINE,
    );
    if let Some(min_ready) = spec.min_ready_seconds.as_ref().and_then(Int::as_i64)
        && progress_deadline.as_secs() as i64 <= min_ready
    {
        ctx.issue(
            doc,
            "spec.progressDeadlineSeconds",
            "must be more than minReadySeconds",
        );
    }
    let revision_history_limit = match int_field(
        ctx,
        doc,
        "spec.revisionHistoryLimit",
        spec.revision_history_limit.as_ref(),
    ) {
        None => defaults::REVISION_HISTORY_LIMIT,
        Some(n) if n >= 0 => n as u32,
        Some(_) => {
            ctx.issue(doc, "spec.revisionHistoryLimit", "must be 0 or more");
            defaults::REVISION_HISTORY_LIMIT
        }
    };
    let rollback_window = match spec
        .rollback_window
        .as_ref()
        .and_then(|w| w.revisions.as_ref())
    {
        None => None,
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 => Some(n as u32),
            _ => {
                ctx.issue(
                    doc,
                    "spec.rollbackWindow.revisions",
                    format!("{v} is not a whole number, 0 or more"),
                );
                None
            }
        },
    };

    let strategy = match spec.strategy.as_ref().map(|s| (&s.canary, &s.blue_green)) {
        Some((Some(_), Some(_))) => {
            ctx.issue(doc, "spec.strategy", "give canary or blueGreen, not both");
            None
        }
        None | Some((None, None)) => {
            ctx.issue(
                doc,
                "spec.strategy",
                "a Rollout needs spec.strategy.canary or spec.strategy.blueGreen",
            );
            None
        }
        Some((Some(c), None)) => {
            strategy::canary(ctx, doc, c, argo, &mut not_applicable).map(Strategy::Canary)
        }
        Some((None, Some(b))) => {
            strategy::blue_green(ctx, doc, b, argo, &mut not_applicable).map(Strategy::BlueGreen)
        }
    };

    if !not_applicable.is_empty() {
        ctx.notice(
            doc,
            "spec",
            format!(
                "Rollout {}: {} mean nothing without pods and are ignored",
                name.as_deref().unwrap_or("?"),
                not_applicable.join(", ")
            ),
        );
    }
    if ctx.issue_count() > before {
        return None;
    }
    let mut run_history_limits = (defaults::RUN_HISTORY_LIMIT, defaults::RUN_HISTORY_LIMIT);
    if let Some(h) = &spec.analysis {
        for (field, v, slot) in [
            (
                "spec.analysis.successfulRunHistoryLimit",
                h.successful_run_history_limit.as_ref(),
                &mut run_history_limits.0,
            ),
            (
                "spec.analysis.unsuccessfulRunHistoryLimit",
                h.unsuccessful_run_history_limit.as_ref(),
                &mut run_history_limits.1,
            ),
        ] {
            match int_field(ctx, doc, field, v) {
                None => {}
                Some(n) if n >= 0 => *slot = n.min(i64::from(u32::MAX)) as u32,
                Some(_) => ctx.issue(doc, field, "must be 0 or more"),
            }
        }
    }
    let (name, template, image, strategy) = (name?, template?, image?, strategy?);
    // The steps as written, so that the hash is the same whatever weir makes of them.
    let steps_hash = match &spec.strategy.as_ref().and_then(|s| s.canary.as_ref()) {
        Some(_) => match doc.node.at("spec.strategy.canary.steps").map(Node::to_json) {
            Some(steps @ Value::Array(_)) => hash_json(&steps),
            _ => hash_json(&Value::Array(Vec::new())),
        },
        None => String::new(),
    };
    Some(Rollout {
        name,
        annotations: r.metadata.annotations.clone(),
        labels: r.metadata.labels.clone(),
        image,
        template_hash: hash_json(&template),
        template,
        steps_hash,
        paused: spec.paused.unwrap_or(defaults::PAUSED),
        progress_deadline,
        progress_deadline_abort: spec
            .progress_deadline_abort
            .unwrap_or(defaults::PROGRESS_DEADLINE_ABORT),
        rollback_window,
        revision_history_limit,
        run_history_limits,
        strategy,
    })
}

/// A template label's value as text (Kubernetes wants strings; YAML may say `1`).
fn label_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn first_image(template: &Value) -> Option<&str> {
    template
        .get("spec")?
        .get("containers")?
        .as_array()?
        .first()?
        .get("image")?
        .as_str()
}

fn hash_json(v: &Value) -> String {
    // serde_json's map keeps keys sorted, so equal templates serialise equally.
    let mut h = std::hash::DefaultHasher::new();
    v.to_string().hash(&mut h);
    format!("{:08x}", h.finish() as u32)
}
