//! Validation of Argo's kinds into [`crate::rollout`]: Rollouts, analysis templates, and
//! the Kubernetes objects they draw on (Secrets for `secretKeyRef` args, Deployments for
//! `workloadRef`). Argo's own validation rules are mirrored (argo-reference §1.7, §3);
//! fields that mean nothing without pods are accepted and named once in a notice.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::analysis::decode_metric;
use crate::duration::parse_pause;
use crate::load::Document;
use crate::model::{HeaderMatch, HeaderMatchKind, Weight};
use crate::raw::argo as raw;
use crate::rollout::*;
use crate::validate::{Ctx, check_name};

/// Default `progressDeadlineSeconds`.
const PROGRESS_DEADLINE: Duration = Duration::from_secs(600);
/// Default `scaleDownDelaySeconds` and `abortScaleDownDelaySeconds`.
const SCALE_DOWN_DELAY: Duration = Duration::from_secs(30);
/// Default `revisionHistoryLimit`.
const REVISION_HISTORY_LIMIT: u32 = 10;
/// Argo's default for `successfulRunHistoryLimit` and `unsuccessfulRunHistoryLimit`.
const RUN_HISTORY_LIMIT: u32 = 5;

/// The decoded Argo-side documents of one configuration.
#[derive(Default)]
pub(crate) struct ArgoDocs {
    pub(crate) rollouts: Vec<(Document, raw::RolloutDoc)>,
    pub(crate) templates: Vec<(Document, raw::AnalysisTemplateDoc, bool)>,
    pub(crate) secrets: Vec<(Document, raw::SecretDoc)>,
    pub(crate) deployments: Vec<(Document, raw::DeploymentDoc)>,
}

/// Validates the Argo-side documents.
pub(crate) fn validate(
    ctx: &mut Ctx,
    docs: ArgoDocs,
    services: &BTreeMap<String, Arc<crate::model::Service>>,
) -> Argo {
    let mut argo = Argo::default();
    for (doc, s) in &docs.secrets {
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
        argo.secrets.insert(name, values);
    }
    let deployments: BTreeMap<String, Value> = docs
        .deployments
        .iter()
        .filter_map(|(_, d)| Some((d.metadata.name.clone()?, d.spec.as_ref()?.template.clone()?)))
        .collect();

    for (doc, t, cluster) in &docs.templates {
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
    for (doc, r) in &docs.rollouts {
        if let Some(ro) = rollout(ctx, doc, r, &deployments, &argo) {
            if argo.rollouts.contains_key(&ro.name) {
                ctx.issue(
                    doc,
                    "metadata.name",
                    format!("a Rollout named {:?} is already defined", ro.name),
                );
                continue;
            }
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
            argo.rollouts.insert(ro.name.clone(), Arc::new(ro));
        }
    }
    argo
}

fn kind_name(cluster: bool) -> &'static str {
    if cluster {
        "ClusterAnalysisTemplate"
    } else {
        "AnalysisTemplate"
    }
}

fn base64_decode(s: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn int_field(ctx: &mut Ctx, doc: &Document, field: &str, v: Option<&Value>) -> Option<i64> {
    let v = v?;
    match v.as_i64() {
        Some(n) => Some(n),
        None => {
            ctx.issue(doc, field, format!("{v} is not a whole number"));
            None
        }
    }
}

fn secs_field(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    v: Option<&Value>,
    default: Duration,
) -> Duration {
    match int_field(ctx, doc, field, v) {
        None => default,
        Some(n) if n >= 0 => Duration::from_secs(n as u64),
        Some(n) => {
            ctx.issue(doc, field, format!("{n} is negative"));
            default
        }
    }
}

fn args(ctx: &mut Ctx, doc: &Document, field: &str, list: &[raw::Arg]) -> Vec<ArgSpec> {
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
            Some(v) => match scalar(v) {
                Some(s) => Some(s),
                None => {
                    ctx.issue(doc, &format!("{f}.value"), "an arg value is a string");
                    continue;
                }
            },
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
        out.push(ArgSpec {
            name,
            value,
            value_from,
        });
    }
    out
}

fn selectors(
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
            match s.limit.as_ref().and_then(Value::as_i64) {
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

fn template(
    ctx: &mut Ctx,
    doc: &Document,
    t: &raw::AnalysisTemplateDoc,
    cluster: bool,
    secrets: &BTreeMap<String, BTreeMap<String, String>>,
) -> Option<AnalysisTemplate> {
    let name = check_name(ctx, doc, t.metadata.name.as_deref())?;
    let spec = t.spec.clone().unwrap_or_default();
    let before = ctx.issues.len();
    let mut names = BTreeSet::new();
    for (i, m) in spec.metrics.iter().enumerate() {
        let field = format!("spec.metrics[{i}]");
        match decode_metric(m, true) {
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
    // secretKeyRef args must be resolvable from a Secret in the configuration.
    for (i, a) in args.iter().enumerate() {
        if let Some(ValueFrom::SecretKeyRef { name: s, key }) = &a.value_from {
            match secrets.get(s) {
                None => ctx.issue(
                    doc,
                    &format!("spec.args[{i}].valueFrom.secretKeyRef.name"),
                    format!("arg {:?} reads Secret {s:?}, which is not in the configuration: add the Secret document", a.name),
                ),
                Some(keys) if !keys.contains_key(key) => ctx.issue(
                    doc,
                    &format!("spec.args[{i}].valueFrom.secretKeyRef.key"),
                    format!("Secret {s:?} has no key {key:?}"),
                ),
                _ => {}
            }
        }
    }
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
    (ctx.issues.len() == before).then_some(AnalysisTemplate {
        name,
        cluster,
        metrics: spec.metrics,
        args,
        dry_run,
        measurement_retention,
        templates,
    })
}

fn template_refs(
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

/// Where an analysis sits, which decides how strictly its templates are checked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AnalysisPlace {
    Background,
    Step,
    PrePromotion,
    PostPromotion,
}

fn analysis_ref(
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
        args: args(ctx, doc, &format!("{field}.args"), &a.args),
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
    // Missing templates. A background analysis runs as soon as an update starts, and a
    // ClusterAnalysisTemplate is shared infrastructure: both must be in the
    // configuration. A step or blue-green analysis is resolved when it is reached (as
    // Argo does); until then a missing template is a notice.
    let missing: Vec<&TemplateRef> = r
        .templates
        .iter()
        .filter(|t| !template_tree_complete(argo, t))
        .collect();
    if !missing.is_empty() {
        let names = missing
            .iter()
            .map(|t| format!("{} {:?}", kind_name(t.cluster), t.name))
            .collect::<Vec<_>>()
            .join(", ");
        let strict = place == AnalysisPlace::Background || missing.iter().any(|t| t.cluster);
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
    } else {
        check_run_shape(ctx, doc, field, &r, place, argo);
    }
    r
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
        if let Ok(spec) = decode_metric(m, true) {
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
                && m.get("count").is_none()
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

fn string_match(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    m: Option<&raw::StringMatch>,
) -> Option<crate::rollout::StringMatch> {
    let Some(m) = m else {
        ctx.issue(
            doc,
            field,
            "a match needs exactly one of exact, prefix, regex",
        );
        return None;
    };
    match (&m.exact, &m.prefix, &m.regex) {
        (Some(e), None, None) => Some(crate::rollout::StringMatch::Exact(e.clone())),
        (None, Some(p), None) => Some(crate::rollout::StringMatch::Prefix(p.clone())),
        (None, None, Some(r)) => match regex::Regex::new(&format!("^(?:{r})$")) {
            Ok(re) => Some(crate::rollout::StringMatch::Regex(re)),
            Err(e) => {
                ctx.issue(
                    doc,
                    &format!("{field}.regex"),
                    format!("not a regular expression: {e}"),
                );
                None
            }
        },
        _ => {
            ctx.issue(
                doc,
                field,
                "a match needs exactly one of exact, prefix, regex",
            );
            None
        }
    }
}

fn header_match(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    name: &str,
    m: Option<&raw::StringMatch>,
) -> Option<HeaderMatch> {
    let kind = match string_match(ctx, doc, field, m)? {
        crate::rollout::StringMatch::Exact(e) => HeaderMatchKind::Exact(e),
        crate::rollout::StringMatch::Prefix(p) => HeaderMatchKind::Prefix(p),
        crate::rollout::StringMatch::Regex(r) => HeaderMatchKind::Regex(r),
    };
    Some(HeaderMatch {
        name: name.to_ascii_lowercase(),
        kind,
    })
}

const STEP_KEYS: [&str; 8] = [
    "setWeight",
    "pause",
    "analysis",
    "experiment",
    "setCanaryScale",
    "setHeaderRoute",
    "setMirrorRoute",
    "plugin",
];

#[allow(clippy::too_many_arguments)]
fn steps(
    ctx: &mut Ctx,
    doc: &Document,
    list: &[Value],
    max_weight: u32,
    managed: Option<&BTreeSet<String>>,
    argo: &Argo,
    not_applicable: &mut Vec<String>,
) -> Vec<Step> {
    let mut out = Vec::new();
    for (i, raw_step) in list.iter().enumerate() {
        let field = format!("spec.strategy.canary.steps[{i}]");
        let Some(obj) = raw_step.as_object() else {
            ctx.issue(
                doc,
                &field,
                "a step is a mapping with one key, e.g. setWeight: 20",
            );
            continue;
        };
        // setCanaryScale only changes pod counts, so weir lets it share a step with the
        // step it accompanies (Argo's own APISIX example does so).
        let mut keys: Vec<&String> = obj
            .keys()
            .filter(|k| STEP_KEYS.contains(&k.as_str()))
            .collect();
        if keys.len() > 1 && keys.iter().any(|k| k.as_str() == "setCanaryScale") {
            not_applicable.push(format!("steps[{i}].setCanaryScale"));
            keys.retain(|k| k.as_str() != "setCanaryScale");
        }
        let known = obj
            .keys()
            .filter(|k| STEP_KEYS.contains(&k.as_str()))
            .count();
        if keys.len() != 1 || obj.len() != known {
            ctx.issue(
                doc,
                &field,
                if obj.is_empty() {
                    "a step needs exactly one of setWeight, pause, analysis, setHeaderRoute, setMirrorRoute, setCanaryScale".to_owned()
                } else {
                    format!(
                        "a step has exactly one kind; this one has {}",
                        obj.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
                    )
                },
            );
            continue;
        }
        let key = keys[0].as_str();
        let v = &obj[key];
        let f = format!("{field}.{key}");
        match key {
            "setWeight" => match v.as_f64() {
                Some(w) if w >= 0.0 && w <= f64::from(max_weight) => {
                    match Weight::from_percent(w * 100.0 / f64::from(max_weight)) {
                        Some(weight) => out.push(Step::SetWeight(weight)),
                        None => ctx.issue(doc, &f, format!("{w} of {max_weight} is finer than 0.01%")),
                    }
                }
                _ => ctx.issue(doc, &f, format!("{v} is not a weight from 0 to {max_weight}")),
            },
            "pause" if !(v.is_object() || v.is_null()) => ctx.issue(
                doc,
                &f,
                format!(
                    "pause takes a mapping: `pause: {{duration: {v}}}` for a timed pause, `pause: {{}}` to wait for promote"
                ),
            ),
            "pause" => {
                let dur = v.get("duration");
                match dur {
                    None | Some(Value::Null) => out.push(Step::Pause(None)),
                    Some(d) => match parse_pause(d) {
                        Ok(d) => out.push(Step::Pause(Some(d))),
                        Err(e) => ctx.issue(doc, &format!("{f}.duration"), e.to_string()),
                    },
                }
            }
            "analysis" => match serde_json::from_value::<raw::RolloutAnalysis>(v.clone()) {
                Ok(a) => out.push(Step::Analysis(analysis_ref(ctx, doc, &f, &a, AnalysisPlace::Step, argo))),
                Err(e) => ctx.issue(doc, &f, e.to_string()),
            },
            "experiment" => ctx.issue(
                doc,
                &f,
                "experiment steps are not supported by weir: run the experiment's analysis as an analysis step instead",
            ),
            "plugin" => ctx.issue(doc, &f, "step plugins are not supported by weir"),
            "setCanaryScale" => {
                not_applicable.push(format!("steps[{i}].setCanaryScale"));
                out.push(Step::SetCanaryScale);
            }
            "setHeaderRoute" => match serde_json::from_value::<raw::SetHeaderRoute>(v.clone()) {
                Ok(h) => {
                    let Some(name) = h.name.clone() else {
                        ctx.issue(doc, &f, "setHeaderRoute needs a name");
                        continue;
                    };
                    check_managed(ctx, doc, &f, &name, managed);
                    let mut matches = Vec::new();
                    for (j, m) in h.matches.iter().flatten().enumerate() {
                        let mf = format!("{f}.match[{j}]");
                        let Some(hn) = &m.header_name else {
                            ctx.issue(doc, &mf, "headerName is required");
                            continue;
                        };
                        if let Some(hm) = header_match(ctx, doc, &format!("{mf}.headerValue"), hn, m.header_value.as_ref()) {
                            matches.push(hm);
                        }
                    }
                    out.push(Step::SetHeaderRoute { name, matches });
                }
                Err(e) => ctx.issue(doc, &f, e.to_string()),
            },
            "setMirrorRoute" => match serde_json::from_value::<raw::SetMirrorRoute>(v.clone()) {
                Ok(m) => {
                    let Some(name) = m.name.clone() else {
                        ctx.issue(doc, &f, "setMirrorRoute needs a name");
                        continue;
                    };
                    check_managed(ctx, doc, &f, &name, managed);
                    let percentage = match m.percentage.as_ref() {
                        None => Weight::FULL,
                        Some(p) => match p.as_f64().and_then(Weight::from_percent) {
                            Some(w) => w,
                            None => {
                                ctx.issue(doc, &format!("{f}.percentage"), format!("{p} is not a percentage from 0 to 100"));
                                continue;
                            }
                        },
                    };
                    let mut matches = Vec::new();
                    for (j, mm) in m.matches.iter().flatten().enumerate() {
                        let mf = format!("{f}.match[{j}]");
                        let method = match &mm.method {
                            Some(x) => string_match(ctx, doc, &format!("{mf}.method"), Some(x)),
                            None => None,
                        };
                        let path = match &mm.path {
                            Some(x) => string_match(ctx, doc, &format!("{mf}.path"), Some(x)),
                            None => None,
                        };
                        let mut headers = Vec::new();
                        for (hn, hv) in mm.headers.iter().flatten() {
                            if let Some(h) = header_match(ctx, doc, &format!("{mf}.headers.{hn}"), hn, Some(hv)) {
                                headers.push(h);
                            }
                        }
                        matches.push(MirrorMatch { method, path, headers });
                    }
                    out.push(Step::SetMirrorRoute { name, percentage, matches });
                }
                Err(e) => ctx.issue(doc, &f, e.to_string()),
            },
            _ => unreachable_step(ctx, doc, &f),
        }
    }
    out
}

fn unreachable_step(ctx: &mut Ctx, doc: &Document, f: &str) {
    ctx.issue(doc, f, "unknown step kind");
}

fn check_managed(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    name: &str,
    managed: Option<&BTreeSet<String>>,
) {
    if let Some(m) = managed
        && !m.contains(name)
    {
        ctx.issue(
            doc,
            &format!("{field}.name"),
            format!("route {name:?} is not in trafficRouting.managedRoutes: add it there, or leave managedRoutes out (weir does not need it)"),
        );
    }
}

fn rollout(
    ctx: &mut Ctx,
    doc: &Document,
    r: &raw::RolloutDoc,
    deployments: &BTreeMap<String, Value>,
    argo: &Argo,
) -> Option<Rollout> {
    let before = ctx.issues.len();
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
        (None, Some(w)) => {
            let kind = w.kind.as_deref().unwrap_or("Deployment");
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
                if let (Some(ml), Some(t)) =
                    (sel.get("matchLabels").and_then(Value::as_object), &template)
                {
                    let labels = t.get("metadata").and_then(|m| m.get("labels"));
                    for (k, v) in ml {
                        if labels.and_then(|l| l.get(k)) != Some(v) {
                            ctx.issue(
                                doc,
                                "spec.selector.matchLabels",
                                format!("the selector wants {k}={v} but the template's labels do not have it"),
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
        PROGRESS_DEADLINE,
    );
    if let Some(min_ready) = spec.min_ready_seconds.as_ref().and_then(Value::as_i64)
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
        None => REVISION_HISTORY_LIMIT,
        Some(n) if n >= 0 => n as u32,
        Some(_) => {
            ctx.issue(doc, "spec.revisionHistoryLimit", "must be 0 or more");
            REVISION_HISTORY_LIMIT
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
            canary(ctx, doc, c, argo, &mut not_applicable).map(Strategy::Canary)
        }
        Some((None, Some(b))) => {
            blue_green(ctx, doc, b, argo, &mut not_applicable).map(Strategy::BlueGreen)
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
    if ctx.issues.len() > before {
        return None;
    }
    let mut run_history_limits = (RUN_HISTORY_LIMIT, RUN_HISTORY_LIMIT);
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
    let steps_hash = match &spec.strategy.as_ref().and_then(|s| s.canary.as_ref()) {
        Some(c) => hash_json(&Value::Array(c.steps.clone().unwrap_or_default())),
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
        paused: spec.paused.unwrap_or(false),
        progress_deadline,
        progress_deadline_abort: spec.progress_deadline_abort.unwrap_or(false),
        rollback_window,
        revision_history_limit,
        run_history_limits,
        strategy,
    })
}

fn canary(
    ctx: &mut Ctx,
    doc: &Document,
    c: &raw::Canary,
    argo: &Argo,
    not_applicable: &mut Vec<String>,
) -> Option<Canary> {
    let before = ctx.issues.len();
    for (f, present) in [
        ("maxSurge", c.max_surge.is_some()),
        ("maxUnavailable", c.max_unavailable.is_some()),
        (
            "scaleDownDelayRevisionLimit",
            c.scale_down_delay_revision_limit.is_some(),
        ),
        ("dynamicStableScale", c.dynamic_stable_scale.is_some()),
        ("minPodsPerReplicaSet", c.min_pods_per_replica_set.is_some()),
        (
            "replicaProgressThreshold",
            c.replica_progress_threshold.is_some(),
        ),
        (
            "scaleDownDelaySeconds",
            c.scale_down_delay_seconds.is_some(),
        ),
        (
            "abortScaleDownDelaySeconds",
            c.abort_scale_down_delay_seconds.is_some(),
        ),
        ("canaryMetadata", c.canary_metadata.is_some()),
        ("stableMetadata", c.stable_metadata.is_some()),
        ("antiAffinity", c.anti_affinity.is_some()),
        ("pingPong", c.ping_pong.is_some()),
    ] {
        if present {
            not_applicable.push(f.to_owned());
        }
    }
    if let (Some(a), Some(b)) = (&c.canary_service, &c.stable_service)
        && a == b
    {
        ctx.issue(
            doc,
            "spec.strategy.canary.stableService",
            "canaryService and stableService must differ",
        );
    }
    let mut max_traffic_weight = 100u32;
    let mut managed = None;
    if let Some(tr) = &c.traffic_routing {
        if let Some(m) = &tr.max_traffic_weight {
            match m.as_u64() {
                Some(n) if n > 0 => max_traffic_weight = n as u32,
                _ => ctx.issue(
                    doc,
                    "spec.strategy.canary.trafficRouting.maxTrafficWeight",
                    format!("{m} is not a whole number above 0"),
                ),
            }
        }
        if let Some(routes) = &tr.managed_routes {
            let mut set = BTreeSet::new();
            for (i, r) in routes.iter().enumerate() {
                match &r.name {
                    Some(n) => {
                        set.insert(n.clone());
                    }
                    None => ctx.issue(
                        doc,
                        &format!("spec.strategy.canary.trafficRouting.managedRoutes[{i}]"),
                        "a managed route needs a name",
                    ),
                }
            }
            managed = Some(set);
        }
        for router in tr.routers.keys() {
            ctx.notice(
                doc,
                &format!("spec.strategy.canary.trafficRouting.{router}"),
                format!("trafficRouting.{router} is not needed: weir routes this Rollout's traffic itself"),
            );
        }
    }
    let steps = steps(
        ctx,
        doc,
        c.steps.as_deref().unwrap_or(&[]),
        max_traffic_weight,
        managed.as_ref(),
        argo,
        not_applicable,
    );
    let background = match &c.analysis {
        None => None,
        Some(a) => {
            let starting = match &a.starting_step {
                None => 0,
                Some(v) => match v.as_u64() {
                    Some(n) if (n as usize) <= steps.len() => n as usize,
                    _ => {
                        ctx.issue(
                            doc,
                            "spec.strategy.canary.analysis.startingStep",
                            format!("{v} is not a step index from 0 to {}", steps.len()),
                        );
                        0
                    }
                },
            };
            Some((
                analysis_ref(
                    ctx,
                    doc,
                    "spec.strategy.canary.analysis",
                    a,
                    AnalysisPlace::Background,
                    argo,
                ),
                starting,
            ))
        }
    };
    let scale_down_delay = secs_field(
        ctx,
        doc,
        "spec.strategy.canary.scaleDownDelaySeconds",
        c.scale_down_delay_seconds.as_ref(),
        SCALE_DOWN_DELAY,
    );
    let abort_scale_down_delay = secs_field(
        ctx,
        doc,
        "spec.strategy.canary.abortScaleDownDelaySeconds",
        c.abort_scale_down_delay_seconds.as_ref(),
        SCALE_DOWN_DELAY,
    );
    (ctx.issues.len() == before).then(|| Canary {
        steps,
        canary_service: c.canary_service.clone(),
        stable_service: c.stable_service.clone(),
        background,
        max_traffic_weight,
        managed_routes: managed.map(|m| m.into_iter().collect()).unwrap_or_default(),
        scale_down_delay,
        abort_scale_down_delay,
    })
}

fn blue_green(
    ctx: &mut Ctx,
    doc: &Document,
    b: &raw::BlueGreen,
    argo: &Argo,
    not_applicable: &mut Vec<String>,
) -> Option<BlueGreen> {
    let before = ctx.issues.len();
    for (f, present) in [
        ("previewReplicaCount", b.preview_replica_count.is_some()),
        (
            "scaleDownDelayRevisionLimit",
            b.scale_down_delay_revision_limit.is_some(),
        ),
        (
            "abortScaleDownDelaySeconds",
            b.abort_scale_down_delay_seconds.is_some(),
        ),
        ("previewMetadata", b.preview_metadata.is_some()),
        ("activeMetadata", b.active_metadata.is_some()),
        ("antiAffinity", b.anti_affinity.is_some()),
        ("maxUnavailable", b.max_unavailable.is_some()),
    ] {
        if present {
            not_applicable.push(f.to_owned());
        }
    }
    let active = match &b.active_service {
        Some(a) if !a.is_empty() => a.clone(),
        _ => {
            ctx.issue(
                doc,
                "spec.strategy.blueGreen.activeService",
                "blueGreen needs activeService",
            );
            String::new()
        }
    };
    if b.preview_service.as_deref() == Some(active.as_str()) {
        ctx.issue(
            doc,
            "spec.strategy.blueGreen.previewService",
            "activeService and previewService must differ",
        );
    }
    let auto_promotion_seconds = match int_field(
        ctx,
        doc,
        "spec.strategy.blueGreen.autoPromotionSeconds",
        b.auto_promotion_seconds.as_ref(),
    ) {
        Some(n) if n > 0 => Some(Duration::from_secs(n as u64)),
        Some(n) if n < 0 => {
            ctx.issue(
                doc,
                "spec.strategy.blueGreen.autoPromotionSeconds",
                "must be 0 or more",
            );
            None
        }
        _ => None,
    };
    let pre = b.pre_promotion_analysis.as_ref().map(|a| {
        analysis_ref(
            ctx,
            doc,
            "spec.strategy.blueGreen.prePromotionAnalysis",
            a,
            AnalysisPlace::PrePromotion,
            argo,
        )
    });
    let post = b.post_promotion_analysis.as_ref().map(|a| {
        analysis_ref(
            ctx,
            doc,
            "spec.strategy.blueGreen.postPromotionAnalysis",
            a,
            AnalysisPlace::PostPromotion,
            argo,
        )
    });
    let scale_down_delay = secs_field(
        ctx,
        doc,
        "spec.strategy.blueGreen.scaleDownDelaySeconds",
        b.scale_down_delay_seconds.as_ref(),
        SCALE_DOWN_DELAY,
    );
    let abort_scale_down_delay = secs_field(
        ctx,
        doc,
        "spec.strategy.blueGreen.abortScaleDownDelaySeconds",
        b.abort_scale_down_delay_seconds.as_ref(),
        SCALE_DOWN_DELAY,
    );
    (ctx.issues.len() == before).then(|| BlueGreen {
        active_service: active,
        preview_service: b.preview_service.clone(),
        auto_promotion_enabled: b.auto_promotion_enabled.unwrap_or(true),
        auto_promotion_seconds,
        scale_down_delay,
        abort_scale_down_delay,
        pre_promotion: pre,
        post_promotion: post,
    })
}
