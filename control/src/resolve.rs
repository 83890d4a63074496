//! Making an analysis run from a Rollout's analysis reference: flatten the templates,
//! merge their args with the Rollout's, resolve `valueFrom`, put the values into every
//! metric, and decode the result (argo-reference §3.2, §3.3, §3.9, §3.10).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use weir_config::analysis::{decode_metric, resolve_placeholders};
use weir_config::rollout::{AnalysisRef, Argo, Rollout, TemplateRef, ValueFrom};

use crate::analysis::{AnalysisRun, Ms};
use crate::state::RolloutStatus;

/// Builds the run `name` for `aref`.
///
/// # Errors
/// A message saying what is missing or wrong (the rollout aborts with it, as an Error
/// run aborts it in Argo).
pub(crate) fn build_run(
    name: String,
    aref: &AnalysisRef,
    rollout: &Rollout,
    argo: &Argo,
    status: &RolloutStatus,
    now: Ms,
) -> Result<AnalysisRun, String> {
    // Flatten the template tree, each template once, in order.
    let mut seen = BTreeSet::new();
    let mut order: Vec<&TemplateRef> = Vec::new();
    let mut stack: Vec<TemplateRef> = aref.templates.iter().rev().cloned().collect();
    let mut templates = Vec::new();
    while let Some(t) = stack.pop() {
        if !seen.insert(t.clone()) {
            continue;
        }
        let Some(tpl) = argo.templates.get(&t) else {
            return Err(format!(
                "{} {:?} not found: add it to the configuration",
                if t.cluster {
                    "ClusterAnalysisTemplate"
                } else {
                    "AnalysisTemplate"
                },
                t.name
            ));
        };
        templates.push(tpl.clone());
        stack.extend(tpl.templates.iter().rev().cloned());
    }
    order.extend(aref.templates.iter());
    let _ = order;

    // Args: template defaults, unioned; the Rollout's override by name.
    let mut args: BTreeMap<String, (Option<String>, Option<ValueFrom>)> = BTreeMap::new();
    for tpl in &templates {
        for a in &tpl.args {
            let entry = args.entry(a.name.clone()).or_insert((None, None));
            match (&entry.0, &a.value) {
                (Some(prev), Some(v)) if prev != v => {
                    return Err(format!(
                        "arg {:?} has conflicting defaults ({prev:?} and {v:?}) in the templates",
                        a.name
                    ));
                }
                (None, Some(v)) => entry.0 = Some(v.clone()),
                _ => {}
            }
            if entry.1.is_none() {
                entry.1 = a.value_from.clone();
            }
        }
    }
    for a in &aref.args {
        // An arg the templates do not declare is ignored, as in Argo.
        if let Some(entry) = args.get_mut(&a.name) {
            *entry = (a.value.clone(), a.value_from.clone());
        }
    }
    let mut values = BTreeMap::new();
    let mut secrets = Vec::new();
    for (name, (value, from)) in args {
        let v = match (value, from) {
            (Some(v), _) => v,
            (None, Some(from)) => {
                let v = value_from(&from, rollout, argo, status)
                    .map_err(|e| format!("args.{name}: {e}"))?;
                if matches!(from, ValueFrom::SecretKeyRef { .. }) {
                    secrets.push(v.clone());
                }
                v
            }
            (None, None) => {
                return Err(format!(
                    "args.{name} was not resolved: give it a value in the Rollout's analysis args"
                ));
            }
        };
        values.insert(name, v);
    }

    // Metrics, with every placeholder filled in.
    let mut metrics = Vec::new();
    let mut names = BTreeSet::new();
    for tpl in &templates {
        for raw in &tpl.metrics {
            let resolved = resolve_placeholders(raw, &values).map_err(|e| e.to_string())?;
            let spec = decode_metric(&resolved, false).map_err(|issues| {
                let name = resolved.get("name").and_then(Value::as_str).unwrap_or("?");
                format!(
                    "metric {name:?} of {:?}: {}",
                    tpl.name,
                    issues
                        .iter()
                        .map(|(f, m)| if f.is_empty() {
                            m.clone()
                        } else {
                            format!("{f}: {m}")
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })?;
            if !names.insert(spec.name.clone()) {
                return Err(format!(
                    "metric {:?} is defined in more than one template",
                    spec.name
                ));
            }
            metrics.push((resolved, spec));
        }
    }

    // dryRun and measurementRetention: Rollout rules first, then the templates'.
    let mut dry_rules: Vec<String> = aref.dry_run.clone();
    let mut keep_rules: Vec<(String, u32)> = aref.measurement_retention.clone();
    for tpl in &templates {
        dry_rules.extend(tpl.dry_run.iter().cloned());
        keep_rules.extend(tpl.measurement_retention.iter().cloned());
    }
    let compile = |rule: &str, what: &str| -> Result<regex::Regex, String> {
        let re = regex::Regex::new(rule).map_err(|e| format!("{what} rule {rule:?}: {e}"))?;
        if !metrics.iter().any(|(_, m)| re.is_match(&m.name)) {
            return Err(format!("{what} rule {rule:?} matches no metric"));
        }
        Ok(re)
    };
    let dry = dry_rules
        .iter()
        .map(|r| compile(r, "dryRun"))
        .collect::<Result<Vec<_>, _>>()?;
    let keep = keep_rules
        .iter()
        .map(|(r, n)| compile(r, "measurementRetention").map(|re| (re, *n)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut run = AnalysisRun::new(name, metrics, &dry, &keep, now);
    run.secrets = secrets;
    Ok(run)
}

fn value_from(
    from: &ValueFrom,
    rollout: &Rollout,
    argo: &Argo,
    status: &RolloutStatus,
) -> Result<String, String> {
    match from {
        ValueFrom::SecretKeyRef { name, key } => argo
            .secrets
            .get(name)
            .and_then(|s| s.get(key))
            .cloned()
            .ok_or_else(|| format!("Secret {name:?} has no key {key:?}")),
        ValueFrom::PodTemplateHash { stable } => {
            let rev = if *stable {
                &status.stable
            } else {
                &status.current
            };
            rev.as_ref()
                .map(|r| r.hash.clone())
                .ok_or_else(|| "no revision yet".to_owned())
        }
        ValueFrom::FieldRef(path) => field_ref(path, rollout),
    }
}

/// `metadata.name`, `metadata.labels['k']`, `metadata.annotations['k']`, or a path into
/// the template (`spec.template.metadata.labels.version`).
fn field_ref(path: &str, r: &Rollout) -> Result<String, String> {
    let bracket = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")
            .map(str::to_owned)
    };
    if path == "metadata.name" {
        return Ok(r.name.clone());
    }
    if path == "metadata.namespace" {
        return Ok("default".to_owned());
    }
    if let Some(k) = bracket("metadata.labels") {
        return r
            .labels
            .get(&k)
            .cloned()
            .ok_or_else(|| format!("no label {k:?}"));
    }
    if let Some(k) = bracket("metadata.annotations") {
        return r
            .annotations
            .get(&k)
            .cloned()
            .ok_or_else(|| format!("no annotation {k:?}"));
    }
    if let Some(rest) = path.strip_prefix("spec.template.") {
        let mut v = &r.template;
        for seg in rest.split('.') {
            v = match (v, seg.parse::<usize>()) {
                (Value::Array(a), Ok(i)) => a.get(i),
                (Value::Object(o), _) => o.get(seg),
                _ => None,
            }
            .ok_or_else(|| format!("{path} is not in the Rollout"))?;
        }
        return match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(format!("{path} is not a scalar")),
        };
    }
    Err(format!(
        "fieldRef {path:?} is not supported: use metadata.name, metadata.labels['x'], metadata.annotations['x'] or spec.template..."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{MASK, Outcome};
    use weir_config::rollout::{Step, Strategy};

    #[test]
    fn secret_args_are_masked_in_what_the_run_records() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/conformance/argo/rollout-secret.yaml");
        let model = weir_config::load(&path).expect("loads");
        let rollout = &model.argo.rollouts["rollout-secret"];
        let Strategy::Canary(c) = &rollout.strategy else {
            panic!("canary")
        };
        let Step::Analysis(aref) = &c.steps[1] else {
            panic!("step 2 is an analysis")
        };
        let status = RolloutStatus::new("rollout-secret");
        let mut run = build_run("r".into(), aref, rollout, &model.argo, &status, 0).unwrap();
        let url = "https://gist.githubusercontent.com/khhirani/2ab11232402518d5277af030dd8916d7/raw/d272f551f2d1806a03974dbaef11dfd55102feea/example.json";
        assert_eq!(run.secrets, vec![url.to_owned()]);
        // The resolved spec keeps the value: the provider needs it.
        assert_eq!(run.metrics[0].spec["provider"]["web"]["url"], url);
        run.begin(0);
        run.record(
            0,
            Outcome::Error(format!("GET {url}: connection refused")),
            0,
            1,
        );
        let m = &run.metrics[0];
        let shown =
            serde_json::to_string(&(m.message.clone(), &m.measurements, &run.message)).unwrap();
        assert!(!shown.contains(url), "{shown}");
        assert!(
            shown.contains(&format!("GET {MASK}: connection refused")),
            "{shown}"
        );
    }
}
