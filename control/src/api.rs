//! A rollout's state as the admin API, the CLI and the dashboard show it.

use serde_json::{Value, json};
use weir_config::model::Weight;
use weir_config::rollout::{Rollout, Strategy};

use crate::analysis::AnalysisRun;
use crate::engine::{TrafficPlan, desired_weight};
use crate::state::RolloutStatus;

fn run_json(r: &AnalysisRun, kind: &str) -> Value {
    let (s, f, i, e) = r.tally();
    json!({
        "name": r.name,
        "kind": kind,
        "phase": r.phase,
        "message": r.message,
        "startedAt": r.started_at,
        "completedAt": r.completed_at,
        "successful": s, "failed": f, "inconclusive": i, "error": e,
        "waiting": r.waiting(),
        "metrics": r.metrics.iter().map(|m| json!({
            "name": m.name,
            "phase": m.phase,
            "dryRun": m.dry_run,
            "count": m.count,
            "successful": m.successful,
            "failed": m.failed,
            "inconclusive": m.inconclusive,
            "error": m.error,
            "consecutiveError": m.consecutive_error,
            "message": m.message,
            "waiting": m.waiting,
            "measurements": m.measurements,
        })).collect::<Vec<_>>(),
    })
}

/// The JSON state of one rollout (spec.md's fields and more).
pub fn status_json(st: &RolloutStatus, spec: &Rollout, plan: Option<&TrafficPlan>) -> Value {
    let steps: Vec<String> = match &spec.strategy {
        Strategy::Canary(c) => c.steps.iter().map(|s| s.describe()).collect(),
        Strategy::BlueGreen(_) => Vec::new(),
    };
    let set_weight = match &spec.strategy {
        Strategy::Canary(c) => desired_weight(st, c),
        Strategy::BlueGreen(_) => Weight::ZERO,
    };
    let canary_weight = plan.map_or(Weight::ZERO, |p| p.canary_weight);
    let updating = st.updating();
    let mut runs: Vec<Value> = Vec::new();
    for (r, kind) in [
        (&st.step_run, "Step"),
        (&st.background_run, "Background"),
        (&st.pre_run, "PrePromotion"),
        (&st.post_run, "PostPromotion"),
    ] {
        if let Some(r) = r {
            runs.push(run_json(r, kind));
        }
    }
    let past: Vec<Value> = st
        .past_runs
        .iter()
        .rev()
        .map(|r| run_json(r, "Finished"))
        .collect();
    // Which revision each run measured (run names start `<rollout>-<hash>-<number>`).
    let revision_of = |name: &str| {
        st.history
            .iter()
            .chain(st.current.iter())
            .find(|h| {
                name.strip_prefix(&format!("{}-{}-{}", st.name, h.hash, h.number))
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
            })
            .map(|h| h.number)
    };
    let (mut runs, mut past) = (runs, past);
    for r in runs.iter_mut().chain(past.iter_mut()) {
        let n = r["name"].as_str().and_then(revision_of);
        r["revision"] = json!(n);
    }
    json!({
        "name": st.name,
        "strategy": spec.strategy.name(),
        "phase": st.phase,
        "aborted": st.aborted,
        "message": st.message,
        "currentStepIndex": match spec.strategy { Strategy::Canary(_) => json!(st.current_step_index), _ => Value::Null },
        "stepCount": steps.len(),
        "steps": steps,
        "stableRevision": st.stable.as_ref().map(|r| r.image.clone()),
        "canaryRevision": if updating { st.current.as_ref().map(|r| r.image.clone()) } else { None },
        "stableRevisionNumber": st.stable.as_ref().map(|r| r.number),
        "currentRevisionNumber": st.current.as_ref().map(|r| r.number),
        "activeRevision": match spec.strategy { Strategy::BlueGreen(_) => json!(st.active.as_ref().map(|r| r.image.clone())), _ => Value::Null },
        "previewRevision": match spec.strategy { Strategy::BlueGreen(_) => json!(st.current.as_ref().map(|r| r.image.clone())), _ => Value::Null },
        "canaryWeight": canary_weight.percent(),
        "setWeight": set_weight.percent(),
        "actualWeight": canary_weight.percent(),
        "paused": st.manual_pause || spec.paused || !st.pause_conditions.is_empty(),
        "pauseConditions": st.pause_conditions,
        "promoteFull": st.promote_full,
        "analysisRuns": runs,
        "pastAnalysisRuns": past,
        "revisions": st.history.iter().rev().map(|r| json!({"number": r.number, "image": r.image, "hash": r.hash})).collect::<Vec<_>>(),
        "headerRoutes": plan.map(|p| p.header_routes.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()).unwrap_or_default(),
        "mirrorRoutes": plan.map(|p| p.mirror_routes.iter().map(|(n, w, _)| json!({"name": n, "percentage": w.percent()})).collect::<Vec<_>>()).unwrap_or_default(),
        "events": st.events,
        "updatedAt": st.updated_at,
    })
}
