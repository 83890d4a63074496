//! The canary strategy: steps, weights, pauses and analyses, one step at a time.

use super::*;

pub(super) fn canary(
    st: &mut RolloutStatus,
    spec: &Rollout,
    c: &Canary,
    world: &World<'_>,
    events: &mut Vec<Event>,
) {
    let now = world.now;
    if !st.updating() || st.aborted {
        if st.aborted {
            set_weight(st, events, now, Weight::ZERO);
        }
        return;
    }
    let image = st
        .current
        .as_ref()
        .map(|r| r.image.clone())
        .unwrap_or_default();
    let capacity = (world.has_endpoints)(&image);

    // `promote --full` skips the steps and the analyses (Argo's reconcileAnalysisRuns
    // starts none while promoteFull is set).
    if st.promote_full {
        if capacity {
            promote(st, spec, events, now);
        } else {
            st.message = format!("waiting for endpoints running {image} before promoting");
        }
        return;
    }

    // Background analysis, from its starting step on.
    if let Some((aref, start)) = &c.background {
        let index = st.current_step_index.unwrap_or(0);
        if st.background_run.is_none()
            && !st.background_passed
            && index >= *start
            && capacity
            && !st
                .pause_conditions
                .iter()
                .any(|p| p.reason == PauseReason::InconclusiveAnalysisRun)
        {
            st.background_run = start_run(st, spec, aref, "-bg", world, events);
        }
        if let Some(run) = st.background_run.clone()
            && run.is_done()
        {
            run_result_event(st, &run, events, now);
            match run.phase {
                Phase::Failed | Phase::Error => {
                    abort(
                        st,
                        events,
                        now,
                        &format!("Background analysis phase {:?}: {}", run.phase, run.message),
                    );
                    return;
                }
                Phase::Inconclusive => {
                    let r = st.background_run.take();
                    st.archive(r, now);
                    add_pause(st, PauseReason::InconclusiveAnalysisRun, now, events);
                }
                _ => {
                    let r = st.background_run.take();
                    st.archive(r, now);
                    st.background_passed = true;
                }
            }
        }
    }
    if st.aborted {
        return;
    }

    // Steps, as many as can complete now.
    loop {
        let index = st.current_step_index.unwrap_or(0);
        if index >= c.steps.len() {
            if capacity {
                promote(st, spec, events, now);
            } else {
                st.message = format!("waiting for endpoints running {image}");
            }
            return;
        }
        if st.manual_pause || spec.paused {
            return;
        }
        if st
            .pause_conditions
            .iter()
            .any(|p| p.reason == PauseReason::InconclusiveAnalysisRun)
        {
            // A timed pause step still runs out (Argo's CompletedCanaryPauseStep looks
            // at the step's own condition only); the steps after it wait.
            if let Step::Pause(Some(d)) = &c.steps[index]
                && let Some(p) = st
                    .pause_conditions
                    .iter()
                    .find(|p| p.reason == PauseReason::CanaryPauseStep)
                && now >= after(p.start_time, *d)
            {
                complete_step(st, spec, events, now);
            }
            return;
        }
        match &c.steps[index] {
            Step::SetWeight(w) => {
                if !capacity {
                    st.message = format!(
                        "waiting for endpoints running {image} (that pass their health check, where the Service has one): the canary weight stays at 0"
                    );
                    set_weight(st, events, now, Weight::ZERO);
                    return;
                }
                set_weight(st, events, now, *w);
                complete_step(st, spec, events, now);
            }
            Step::Pause(d) => {
                let cond = st
                    .pause_conditions
                    .iter()
                    .find(|p| p.reason == PauseReason::CanaryPauseStep)
                    .cloned();
                match cond {
                    None if st.controller_pause => {
                        // Paused here, and a user cleared the pause: the step is done.
                        complete_step(st, spec, events, now);
                    }
                    None => {
                        if d == &Some(Duration::ZERO) {
                            complete_step(st, spec, events, now);
                            continue;
                        }
                        add_pause(st, PauseReason::CanaryPauseStep, now, events);
                        return;
                    }
                    Some(p) => match d {
                        Some(d) if now >= after(p.start_time, *d) => {
                            complete_step(st, spec, events, now);
                        }
                        _ => return,
                    },
                }
            }
            Step::Analysis(aref) => {
                if !capacity {
                    st.message = format!("waiting for endpoints running {image} before analysis");
                    return;
                }
                if st.step_run.is_none() {
                    let suffix = format!("-{index}");
                    st.step_run = start_run(st, spec, aref, &suffix, world, events);
                    if st.aborted {
                        return;
                    }
                }
                let Some(run) = st.step_run.clone() else {
                    return;
                };
                if !run.is_done() {
                    return;
                }
                run_result_event(st, &run, events, now);
                match run.phase {
                    Phase::Successful => complete_step(st, spec, events, now),
                    Phase::Failed | Phase::Error => {
                        abort(
                            st,
                            events,
                            now,
                            &format!("Step analysis phase {:?}: {}", run.phase, run.message),
                        );
                        return;
                    }
                    _ => {
                        // Inconclusive: pause; promote moves past the step.
                        add_pause(st, PauseReason::InconclusiveAnalysisRun, now, events);
                        return;
                    }
                }
            }
            Step::SetHeaderRoute { .. } | Step::SetMirrorRoute { .. } | Step::SetCanaryScale => {
                complete_step(st, spec, events, now);
            }
        }
    }
}

pub(super) fn complete_step(
    st: &mut RolloutStatus,
    spec: &Rollout,
    events: &mut Vec<Event>,
    now: Ms,
) {
    let steps = steps_of(spec);
    let i = st.current_step_index.unwrap_or(0);
    let run = st.step_run.take();
    st.archive(run, now);
    st.progress_since = now;
    // Progress again: the Progressing condition is true again (phase no longer Degraded).
    st.deadline_exceeded = false;
    st.current_step_index = Some(i + 1);
    let desc = steps.get(i).map(Step::describe).unwrap_or_default();
    push(
        events,
        st,
        now,
        Reason::RolloutStepCompleted,
        format!("Rollout step {}/{} completed ({desc})", i + 1, steps.len()),
    );
    end_pause(st, PauseReason::CanaryPauseStep, events, now);
    // A pause that still holds (an inconclusive analysis) is still the controller's.
    if st.pause_conditions.is_empty() {
        st.controller_pause = false;
    }
}

/// The weight a canary has: the last setWeight at or before the current step; capped
/// at the weight denominator; 0 without an update, while aborted, or without endpoints.
pub fn desired_weight(st: &RolloutStatus, c: &Canary) -> Weight {
    if !st.updating() || st.aborted {
        return Weight::ZERO;
    }
    let index = st.current_step_index.unwrap_or(0);
    c.steps[..index.min(c.steps.len())]
        .iter()
        .rev()
        .find_map(|s| match s {
            Step::SetWeight(w) => Some(*w),
            _ => None,
        })
        .unwrap_or(Weight::ZERO)
}
