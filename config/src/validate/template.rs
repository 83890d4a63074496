//! `AnalysisTemplate`s and `ClusterAnalysisTemplate`s, and the parts Rollouts share with
//! them: args, dry-run and retention selectors, template references.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::analysis::decode_metric_in;
use crate::decode::argo as raw;
use crate::decode::scalar::{Int, Text};
use crate::read::Document;
use crate::rollout::{AnalysisTemplate, ArgSpec, Argo, TemplateRef, ValueFrom};

use super::ctx::{Ctx, check_name, kind_name};
use super::refs;

/// Validates the analysis templates into `argo.templates` (Secrets already there).
pub(super) fn templates(
    ctx: &mut Ctx,
    docs: &[(Document, Arc<raw::AnalysisTemplateDoc>, bool)],
    argo: &mut Argo,
) {
    for (doc, t, cluster) in docs {
        if let Some(tpl) = template(ctx, doc, t, *cluster, &argo.secrets) {
            let key = TemplateRef {
                name: tpl.name.clone(),
                cluster: tpl.cluster,
            };
            if argo.templates.contains_key(&key) {
                ctx.issue(
                    doc,
                    "metadata.name",
                    format!("{} {:?} is defined twice", kind_name(*cluster), tpl.name),
                );
                continue;
            }
            argo.templates.insert(key, Arc::new(tpl));
        }
    }
}

/// One template; `None` when it has an issue.
fn template(
    ctx: &mut Ctx,
    doc: &Document,
    t: &raw::AnalysisTemplateDoc,
    cluster: bool,
    secrets: &BTreeMap<String, BTreeMap<String, String>>,
) -> Option<AnalysisTemplate> {
    let name = check_name(ctx, doc, t.metadata.name.as_deref())?;
    let spec = t.spec.clone().unwrap_or_default();
    let before = ctx.issue_count();
    let mut names = BTreeSet::new();
    for (i, m) in spec.metrics.iter().enumerate() {
        let field = format!("spec.metrics[{i}]");
        match decode_metric_in(m, true, &ctx.env) {
            Ok(metric) => {
                if !names.insert(metric.name.clone()) {
                    ctx.issue(
                        doc,
                        &format!("{field}.name"),
                        format!("metric {:?} is defined twice", metric.name),
                    );
                }
            }
            Err(issues) => {
                for (f, msg) in issues {
                    let path = if f.is_empty() {
                        field.clone()
                    } else {
                        format!("{field}.{f}")
                    };
                    ctx.issue(doc, &path, msg);
                }
            }
        }
    }
    if spec.metrics.is_empty() && spec.templates.is_empty() {
        ctx.issue(doc, "spec", "a template needs metrics or templates");
    }
    let args = args(ctx, doc, "spec.args", &spec.args);
    refs::secret_args(ctx, doc, "spec.args", &args, secrets);
    let args = args.into_iter().map(|(_, a)| a).collect();
    let dry_run = selectors(ctx, doc, "spec.dryRun", &spec.dry_run, false)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let measurement_retention = selectors(
        ctx,
        doc,
        "spec.measurementRetention",
        &spec.measurement_retention,
        true,
    );
    let templates = template_refs(ctx, doc, "spec.templates", &spec.templates);
    (ctx.issue_count() == before).then_some(AnalysisTemplate {
        name,
        cluster,
        metrics: spec.metrics,
        args,
        dry_run,
        measurement_retention,
        templates,
    })
}

pub(super) fn template_refs(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    list: &[raw::TemplateRef],
) -> Vec<TemplateRef> {
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        match &r.template_name {
            Some(n) if !n.is_empty() => out.push(TemplateRef {
                name: n.clone(),
                cluster: r.cluster_scope,
            }),
            _ => ctx.issue(doc, &format!("{field}[{i}]"), "templateName is required"),
        }
    }
    out
}

/// The args at `field`: the valid ones, each with its index in the list written.
pub(super) fn args(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    list: &[raw::Arg],
) -> Vec<(usize, ArgSpec)> {
    let mut out = Vec::new();
    for (i, a) in list.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let Some(name) = a.name.clone() else {
            ctx.issue(doc, &f, "an arg needs a name");
            continue;
        };
        if a.value.is_some() && a.value_from.is_some() {
            ctx.issue(
                doc,
                &f,
                format!("arg {name:?} has both value and valueFrom: give one"),
            );
            continue;
        }
        let value = match &a.value {
            None => None,
            Some(Text::Text(s)) => Some(s.clone()),
            Some(Text::Other(_)) => {
                ctx.issue(doc, &format!("{f}.value"), "an arg value is a string");
                continue;
            }
        };
        let value_from = match &a.value_from {
            None => None,
            Some(vf) => {
                if let Some(s) = &vf.secret_key_ref {
                    match (&s.name, &s.key) {
                        (Some(n), Some(k)) => Some(ValueFrom::SecretKeyRef {
                            name: n.clone(),
                            key: k.clone(),
                        }),
                        _ => {
                            ctx.issue(
                                doc,
                                &format!("{f}.valueFrom.secretKeyRef"),
                                "secretKeyRef needs name and key",
                            );
                            continue;
                        }
                    }
                } else if let Some(r) = &vf.field_ref {
                    match &r.field_path {
                        Some(p) => Some(ValueFrom::FieldRef(p.clone())),
                        None => {
                            ctx.issue(
                                doc,
                                &format!("{f}.valueFrom.fieldRef"),
                                "fieldRef needs fieldPath",
                            );
                            continue;
                        }
                    }
                } else if let Some(h) = &vf.pod_template_hash_value {
                    match h.as_str() {
                        "Stable" => Some(ValueFrom::PodTemplateHash { stable: true }),
                        "Latest" => Some(ValueFrom::PodTemplateHash { stable: false }),
                        other => {
                            ctx.issue(
                                doc,
                                &format!("{f}.valueFrom.podTemplateHashValue"),
                                format!("{other:?} is not allowed: use Stable or Latest"),
                            );
                            continue;
                        }
                    }
                } else {
                    ctx.issue(
                        doc,
                        &format!("{f}.valueFrom"),
                        "valueFrom needs secretKeyRef, fieldRef or podTemplateHashValue",
                    );
                    continue;
                }
            }
        };
        out.push((
            i,
            ArgSpec {
                name,
                value,
                value_from,
            },
        ));
    }
    out
}

pub(super) fn selectors(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    list: &[raw::MetricSelector],
    with_limit: bool,
) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let Some(name) = s.metric_name.clone() else {
            ctx.issue(doc, &f, "metricName is required");
            continue;
        };
        if let Err(e) = regex::Regex::new(&name) {
            ctx.issue(
                doc,
                &format!("{f}.metricName"),
                format!("not a regular expression: {e}"),
            );
            continue;
        }
        let limit = if with_limit {
            match s.limit.as_ref().and_then(Int::as_i64) {
                Some(n) if n >= 0 => n as u32,
                _ => {
                    ctx.issue(
                        doc,
                        &format!("{f}.limit"),
                        "limit is a whole number, 0 or more",
                    );
                    continue;
                }
            }
        } else {
            0
        };
        out.push((name, limit));
    }
    out
}
