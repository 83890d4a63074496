//! Analysis runs: starting one from the Rollout's reference (named as Argo names it,
//! collision counter included), and the event its result raises.

use super::*;

/// Starts a run, or aborts with the reason it cannot start.
pub(super) fn start_run(
    st: &mut RolloutStatus,
    spec: &Rollout,
    aref: &AnalysisRef,
    suffix: &str,
    world: &World<'_>,
    events: &mut Vec<Event>,
) -> Option<AnalysisRun> {
    let name = unique_run_name(st, suffix);
    match build_run(name.clone(), aref, spec, world.argo, st, world.now) {
        Ok(run) => {
            push(
                events,
                st,
                world.now,
                Reason::AnalysisRunRunning,
                format!("Analysis run {name} started"),
            );
            Some(run)
        }
        Err(e) => {
            push(
                events,
                st,
                world.now,
                Reason::AnalysisRunError,
                format!("Analysis run {name} could not start: {e}"),
            );
            abort(
                st,
                events,
                world.now,
                &format!("analysis could not start: {e}"),
            );
            None
        }
    }
}

/// The run's name: `ROLLOUT-HASH-REVISION` and the suffix; a name some run of this
/// rollout already has (a run started again for the same revision and step) takes the
/// first free collision counter, `NAME.1`, `NAME.2`, as Argo's CreateWithCollisionCounter
/// gives, so that tools following runs by name tell them apart.
fn unique_run_name(st: &RolloutStatus, suffix: &str) -> String {
    let base = run_name(st, suffix);
    let taken = |name: &str| st.past_runs.iter().chain(st.runs()).any(|r| r.name == name);
    if !taken(&base) {
        return base;
    }
    (1..)
        .map(|n| format!("{base}.{n}"))
        .find(|name| !taken(name))
        .unwrap_or(base)
}

pub(super) fn run_result_event(
    st: &mut RolloutStatus,
    run: &AnalysisRun,
    events: &mut Vec<Event>,
    now: Ms,
) {
    let reason = match run.phase {
        Phase::Successful => Reason::AnalysisRunSuccessful,
        Phase::Failed => Reason::AnalysisRunFailed,
        Phase::Error => Reason::AnalysisRunError,
        Phase::Inconclusive => Reason::AnalysisRunInconclusive,
        Phase::Pending | Phase::Running => Reason::AnalysisRunRunning,
    };
    let msg = if run.message.is_empty() {
        format!("Analysis run {} {:?}", run.name, run.phase)
    } else {
        format!("Analysis run {} {:?}: {}", run.name, run.phase, run.message)
    };
    push(events, st, now, reason, msg);
}
