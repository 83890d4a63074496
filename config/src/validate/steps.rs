//! A canary's steps: `setWeight`, `pause`, `analysis`, `setHeaderRoute`,
//! `setMirrorRoute` and `setCanaryScale` (accepted, with nothing to do without pods);
//! `experiment` and `plugin` are refused.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::decode::argo::{self as raw, CanaryStep, Pause, StepEntry};
use crate::decode::scalar::IntOrString;
use crate::defaults;
use crate::duration::{self, DurationError};
use crate::model::{HeaderMatch, HeaderMatchKind, Weight};
use crate::read::Document;
use crate::rollout::{Argo, MirrorMatch, Step, StringMatch};

use super::analysis::{AnalysisPlace, analysis_ref};
use super::ctx::Ctx;

/// The canary steps.
pub(super) fn steps(
    ctx: &mut Ctx,
    doc: &Document,
    list: &[StepEntry],
    max_weight: u32,
    managed: Option<&BTreeSet<String>>,
    argo: &Argo,
    not_applicable: &mut Vec<String>,
) -> Vec<Step> {
    let mut out = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let field = format!("spec.strategy.canary.steps[{i}]");
        let StepEntry::Mapping { keys, kinds } = entry else {
            ctx.issue(
                doc,
                &field,
                "a step is a mapping with one key, e.g. setWeight: 20",
            );
            continue;
        };
        // setCanaryScale only changes pod counts, so weir lets it share a step with the
        // step it accompanies (Argo's own APISIX example does so).
        let mut chosen: Vec<&CanaryStep> = kinds.iter().collect();
        let scale = |k: &&CanaryStep| matches!(k, CanaryStep::SetCanaryScale);
        if chosen.len() > 1 && chosen.iter().any(scale) {
            not_applicable.push(format!("steps[{i}].setCanaryScale"));
            chosen.retain(|k| !scale(k));
        }
        let (&[step], true) = (&chosen[..], keys.len() == kinds.len()) else {
            ctx.issue(
                doc,
                &field,
                if keys.is_empty() {
                    "a step needs exactly one of setWeight, pause, analysis, setHeaderRoute, setMirrorRoute, setCanaryScale".to_owned()
                } else {
                    format!("a step has exactly one kind; this one has {}", keys.join(", "))
                },
            );
            continue;
        };
        let f = format!("{field}.{}", step.key());
        match step {
            CanaryStep::SetWeight(v) => match v.as_f64() {
                Some(w) if w >= 0.0 && w <= f64::from(max_weight) => {
                    match Weight::from_percent(w * 100.0 / f64::from(max_weight)) {
                        Some(weight) => out.push(Step::SetWeight(weight)),
                        None => ctx.issue(doc, &f, format!("{w} of {max_weight} is finer than 0.01%")),
                    }
                }
                _ => ctx.issue(doc, &f, format!("{v} is not a weight from 0 to {max_weight}")),
            },
            CanaryStep::Pause(Pause::NotAMapping(v)) => ctx.issue(
                doc,
                &f,
                format!(
                    "pause takes a mapping: `pause: {{duration: {v}}}` for a timed pause, `pause: {{}}` to wait for promote"
                ),
            ),
            CanaryStep::Pause(Pause::Mapping { duration: None }) => out.push(Step::Pause(None)),
            CanaryStep::Pause(Pause::Mapping { duration: Some(d) }) => match pause_duration(d) {
                Ok(d) => out.push(Step::Pause(Some(d))),
                Err(e) => ctx.issue(doc, &format!("{f}.duration"), e.to_string()),
            },
            CanaryStep::Analysis(Ok(a)) => out.push(Step::Analysis(analysis_ref(
                ctx,
                doc,
                &f,
                a,
                AnalysisPlace::Step,
                argo,
            ))),
            CanaryStep::Experiment => ctx.issue(
                doc,
                &f,
                "experiment steps are not supported by weir: run the experiment's analysis as an analysis step instead",
            ),
            CanaryStep::Plugin => ctx.issue(doc, &f, "step plugins are not supported by weir"),
            CanaryStep::SetCanaryScale => {
                not_applicable.push(format!("steps[{i}].setCanaryScale"));
                out.push(Step::SetCanaryScale);
            }
            CanaryStep::SetHeaderRoute(Ok(h)) => {
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
            CanaryStep::SetMirrorRoute(Ok(m)) => {
                let Some(name) = m.name.clone() else {
                    ctx.issue(doc, &f, "setMirrorRoute needs a name");
                    continue;
                };
                check_managed(ctx, doc, &f, &name, managed);
                let percentage = match m.percentage.as_ref() {
                    None => defaults::MIRROR_PERCENTAGE,
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
            CanaryStep::Analysis(Err(e))
            | CanaryStep::SetHeaderRoute(Err(e))
            | CanaryStep::SetMirrorRoute(Err(e)) => ctx.issue(doc, &f, e.as_str()),
        }
    }
    out
}

/// A pause's `duration`: whole seconds as a number or a string, or a Go duration
/// truncated to whole seconds.
fn pause_duration(d: &IntOrString) -> Result<Duration, DurationError> {
    match d {
        IntOrString::Int(n) => duration::pause_seconds(*n),
        IntOrString::String(s) => duration::parse_pause(s),
        IntOrString::Number(w) => Err(DurationError::NotWholeSeconds(w.to_string())),
        IntOrString::Other(w) => Err(DurationError::NotAPause(w.to_string())),
    }
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

fn string_match(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    m: Option<&raw::StringMatch>,
) -> Option<StringMatch> {
    let Some(m) = m else {
        ctx.issue(
            doc,
            field,
            "a match needs exactly one of exact, prefix, regex",
        );
        return None;
    };
    match (&m.exact, &m.prefix, &m.regex) {
        (Some(e), None, None) => Some(StringMatch::Exact(e.clone())),
        (None, Some(p), None) => Some(StringMatch::Prefix(p.clone())),
        (None, None, Some(r)) => match regex::Regex::new(&format!("^(?:{r})$")) {
            Ok(re) => Some(StringMatch::Regex(re)),
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
        StringMatch::Exact(e) => HeaderMatchKind::Exact(e),
        StringMatch::Prefix(p) => HeaderMatchKind::Prefix(p),
        StringMatch::Regex(r) => HeaderMatchKind::Regex(r),
    };
    Some(HeaderMatch {
        name: name.to_ascii_lowercase(),
        kind,
    })
}
