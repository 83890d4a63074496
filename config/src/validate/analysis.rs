//! The analyses a Rollout runs (background, step, pre- and post-promotion): their
//! templates, args and selectors, and what can be told in advance of the run they would
//! create.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;

use crate::analysis::decode_metric_in;
use crate::decode::argo as raw;
use crate::decode::metric::MetricDoc;
use crate::read::Document;
use crate::rollout::{AnalysisRef, Argo, TemplateRef};

use super::ctx::Ctx;
use super::refs;
use super::template::{args, selectors, template_refs};

/// Where an analysis sits, which decides how strictly its templates are checked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum AnalysisPlace {
    Background,
    Step,
    PrePromotion,
    PostPromotion,
}

/// A Rollout's reference to analysis templates, at `field`.
pub(super) fn analysis_ref(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    a: &raw::RolloutAnalysis,
    place: AnalysisPlace,
    argo: &Argo,
) -> AnalysisRef {
    let templates = template_refs(ctx, doc, &format!("{field}.templates"), &a.templates);
    if a.analysis_run_metadata.is_some() {
        ctx.notice(
            doc,
            &format!("{field}.analysisRunMetadata"),
            "labels and annotations of AnalysisRun objects mean nothing without Kubernetes and are ignored",
        );
    }
    if templates.is_empty() {
        ctx.issue(
            doc,
            &format!("{field}.templates"),
            "an analysis needs at least one template",
        );
    }
    let r = AnalysisRef {
        templates,
        args: args(ctx, doc, &format!("{field}.args"), &a.args)
            .into_iter()
            .map(|(_, a)| a)
            .collect(),
        dry_run: selectors(ctx, doc, &format!("{field}.dryRun"), &a.dry_run, false)
            .into_iter()
            .map(|(n, _)| n)
            .collect(),
        measurement_retention: selectors(
            ctx,
            doc,
            &format!("{field}.measurementRetention"),
            &a.measurement_retention,
            true,
        ),
    };
    if refs::analysis_templates(
        ctx,
        doc,
        field,
        &r.templates,
        place == AnalysisPlace::Background,
        argo,
    ) {
        check_run_shape(ctx, doc, field, &r, place, argo);
    }
    r
}

/// Checks what can be checked of the run an analysis would create: metric names unique
/// across templates, no conflicting arg defaults, required args supplied, no endless
/// metric in a step or blue-green analysis, dryRun/retention rules matching a metric.
fn check_run_shape(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    r: &AnalysisRef,
    place: AnalysisPlace,
    argo: &Argo,
) {
    let mut metrics: Vec<Value> = Vec::new();
    let mut defaults: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut has_from: BTreeSet<String> = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut stack: Vec<TemplateRef> = r.templates.iter().rev().cloned().collect();
    let mut dry: Vec<String> = r.dry_run.clone();
    let mut retention: Vec<String> = r
        .measurement_retention
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    while let Some(t) = stack.pop() {
        if !seen.insert(t.clone()) {
            continue;
        }
        let Some(tpl) = argo.templates.get(&t) else {
            continue;
        };
        metrics.extend(tpl.metrics.iter().cloned());
        for a in &tpl.args {
            if a.value_from.is_some() {
                has_from.insert(a.name.clone());
            }
            let entry = defaults.entry(a.name.clone()).or_insert(None);
            match (&entry, &a.value) {
                (Some(prev), Some(v)) if prev != v => ctx.issue(
                    doc,
                    &format!("{field}.templates"),
                    format!(
                        "arg {:?} has conflicting defaults in the templates ({prev:?} and {v:?})",
                        a.name
                    ),
                ),
                (None, Some(v)) => *entry = Some(v.clone()),
                _ => {}
            }
        }
        dry.extend(tpl.dry_run.iter().cloned());
        retention.extend(tpl.measurement_retention.iter().map(|(n, _)| n.clone()));
        stack.extend(tpl.templates.iter().rev().cloned());
    }
    let mut names = BTreeSet::new();
    for m in &metrics {
        if let Ok(spec) = decode_metric_in(m, true, &ctx.env) {
            if !names.insert(spec.name.clone()) {
                ctx.issue(
                    doc,
                    &format!("{field}.templates"),
                    format!(
                        "metric {:?} is defined in more than one template",
                        spec.name
                    ),
                );
            }
            if place != AnalysisPlace::Background
                && spec.effective_count().is_none()
                && !count_written(m)
            {
                ctx.issue(
                    doc,
                    &format!("{field}.templates"),
                    format!("metric {:?} has an interval and no count, so it never ends: a step or blue-green analysis needs a count", spec.name),
                );
            }
        }
    }
    let rollout_args: BTreeSet<&str> = r.args.iter().map(|a| a.name.as_str()).collect();
    for (name, value) in &defaults {
        if value.is_none() && !has_from.contains(name) && !rollout_args.contains(name.as_str()) {
            ctx.issue(
                doc,
                &format!("{field}.args"),
                format!("arg {name:?} has no value: the template needs it, so give it here (args: [{{name: {name}, value: ...}}])"),
            );
        }
    }
    for (rules, what) in [(&dry, "dryRun"), (&retention, "measurementRetention")] {
        let mut texts = BTreeSet::new();
        for rule in rules.iter() {
            if !texts.insert(rule.clone()) {
                ctx.issue(
                    doc,
                    &format!("{field}.{what}"),
                    format!("{what} rule {rule:?} is given twice"),
                );
            }
            if let Ok(re) = regex::Regex::new(rule)
                && !names.iter().any(|n| re.is_match(n))
            {
                ctx.issue(
                    doc,
                    &format!("{field}.{what}"),
                    format!("{what} rule {rule:?} matches no metric"),
                );
            }
        }
    }
}

/// Whether a metric writes `count` (perhaps as a placeholder).
fn count_written(m: &Value) -> bool {
    MetricDoc::deserialize(m).is_ok_and(|d| d.count.is_some())
}
