//! The rollout state machine (argo-reference §1.4, §1.6, §2), pure: `reconcile` takes a
//! status, the Rollout as configured, what the data plane offers and the time, and moves
//! the status on, returning the events it produced. `traffic` says what the proxy should
//! do for the status. User actions are functions on the status too.
//!
//! By concern: [`canary`] and [`blue_green`] move an update of each strategy on step by
//! step; [`runs`] starts analysis runs and reports their results; [`history`] keeps the
//! revisions and finds rollback targets; [`traffic`] turns a status into a
//! [`TrafficPlan`]; [`actions`] applies what users ask. This file holds what they share:
//! one turn ([`reconcile`]), the progress deadline and phase ([`finish`]), and the small
//! helpers every step uses.

mod actions;
mod blue_green;
mod canary;
mod history;
mod runs;
mod traffic;

pub use actions::{Action, Refusal, act};
use actions::{abort, add_pause, promote};
use blue_green::blue_green;
use canary::canary;
pub use canary::desired_weight;
use history::{fast_rollback_target, in_rollback_window, new_revision, trim_history};
use runs::{run_result_event, start_run};
pub use traffic::{TrafficPlan, traffic};

use std::time::Duration;

use weir_config::model::{HeaderMatch, Weight};
use weir_config::rollout::{
    AnalysisRef, Argo, BlueGreen, Canary, MirrorMatch, Rollout, Step, Strategy,
};

use crate::analysis::{AnalysisRun, Ms, Phase, after};
use crate::resolve::build_run;
use crate::state::{
    Event, PauseCondition, PauseReason, Reason, Revision, RolloutPhase, RolloutStatus,
};

/// What the control loop sees of the world besides the spec.
pub struct World<'a> {
    /// Now.
    pub now: Ms,
    /// Templates and secrets.
    pub argo: &'a Argo,
    /// Whether the Rollout's Service has endpoints running `image`.
    pub has_endpoints: &'a (dyn Fn(&str) -> bool + Sync),
}

fn desired(st: &RolloutStatus, spec: &Rollout) -> (String, String, serde_json::Value) {
    match &st.undo_to {
        Some(r) => (r.hash.clone(), r.image.clone(), r.template.clone()),
        None => (
            spec.template_hash.clone(),
            spec.image.clone(),
            spec.template.clone(),
        ),
    }
}

fn push(events: &mut Vec<Event>, st: &mut RolloutStatus, now: Ms, reason: Reason, message: String) {
    tracing::info!(rollout = %st.name, reason = reason.as_str(), "{message}");
    events.push(st.event(now, reason, message));
}

fn set_weight(st: &mut RolloutStatus, events: &mut Vec<Event>, now: Ms, w: Weight) {
    if st.canary_weight_bp != w.basis_points() {
        let from = Weight::from_basis_points(st.canary_weight_bp);
        st.canary_weight_bp = w.basis_points();
        push(
            events,
            st,
            now,
            Reason::TrafficWeightUpdated,
            format!("Traffic weight updated from {from} to {w}"),
        );
    }
}

fn steps_of(spec: &Rollout) -> &[Step] {
    match &spec.strategy {
        Strategy::Canary(c) => &c.steps,
        Strategy::BlueGreen(_) => &[],
    }
}

fn run_name(st: &RolloutStatus, suffix: &str) -> String {
    let cur = st.current.as_ref();
    format!(
        "{}-{}-{}{suffix}",
        st.name,
        cur.map_or("0", |c| c.hash.as_str()),
        cur.map_or(0, |c| c.number)
    )
}

/// Moves the status on; returns the events produced.
pub fn reconcile(st: &mut RolloutStatus, spec: &Rollout, world: &World<'_>) -> Vec<Event> {
    let now = world.now;
    let mut events = Vec::new();
    st.name = spec.name.clone();

    // An edit of the configured template ends an undo.
    if st.spec_hash != spec.template_hash {
        if !st.spec_hash.is_empty() && st.undo_to.is_some() {
            st.undo_to = None;
        }
        st.spec_hash = spec.template_hash.clone();
    }
    let (hash, image, template) = desired(st, spec);

    // First sight: stable at once, no steps.
    let Some(stable) = st.stable.clone() else {
        if st.manual_pause && st.note.is_some() {
            // The saved state was lost, and no stable revision is known: the configured
            // revision waits, unserved, for a user to make it stable (`recover`).
            if st.current.as_ref().is_none_or(|c| c.hash != hash) {
                let rev = new_revision(
                    st,
                    &hash,
                    &image,
                    &template,
                    spec.revision_history_limit,
                    now,
                );
                st.current = Some(rev);
            }
            finish(st, spec, world, &mut events);
            return events;
        }
        // A revision held after a lost state keeps its number.
        let rev = match st.current.clone().filter(|c| c.hash == hash) {
            Some(rev) => rev,
            None => new_revision(
                st,
                &hash,
                &image,
                &template,
                spec.revision_history_limit,
                now,
            ),
        };
        st.stable = Some(rev.clone());
        st.current = Some(rev.clone());
        st.active = Some(rev.clone());
        st.current_step_index = Some(steps_of(spec).len());
        st.steps_hash = spec.steps_hash.clone();
        st.progress_since = now;
        push(
            &mut events,
            st,
            now,
            Reason::RolloutCompleted,
            format!(
                "Initial deploy: revision {} ({}) is stable",
                rev.number, rev.image
            ),
        );
        finish(st, spec, world, &mut events);
        return events;
    };

    let current_hash = st
        .current
        .as_ref()
        .map(|c| c.hash.clone())
        .unwrap_or_default();
    if hash != current_hash {
        // A new template: reset everything about the update in progress.
        reset(st, now);
        let in_window = in_rollback_window(st, spec, &hash);
        if hash == stable.hash {
            st.current = Some(stable.clone());
            st.current_step_index = Some(steps_of(spec).len());
            set_weight(st, &mut events, now, Weight::ZERO);
            if matches!(spec.strategy, Strategy::BlueGreen(_)) {
                st.active = Some(stable.clone());
            }
            push(
                &mut events,
                st,
                now,
                Reason::SkipSteps,
                format!(
                    "Rollback to stable: revision {} ({}), no steps",
                    stable.number, stable.image
                ),
            );
        } else if let Some(prev) = fast_rollback_target(st, spec, &hash, now).or(in_window) {
            // Fast rollback: steps and analysis skipped, promoted at once.
            let rev = new_revision(
                st,
                &prev.hash,
                &prev.image,
                &prev.template,
                spec.revision_history_limit,
                now,
            );
            st.stable = Some(rev.clone());
            st.current = Some(rev.clone());
            st.active = Some(rev.clone());
            st.current_step_index = Some(steps_of(spec).len());
            set_weight(st, &mut events, now, Weight::ZERO);
            push(
                &mut events,
                st,
                now,
                Reason::SkipSteps,
                format!(
                    "Fast rollback to revision {} ({}): inside the rollback window, steps skipped",
                    rev.number, rev.image
                ),
            );
            push(
                &mut events,
                st,
                now,
                Reason::RolloutCompleted,
                format!(
                    "Rollout completed update to revision {} ({})",
                    rev.number, rev.image
                ),
            );
        } else {
            let rev = new_revision(
                st,
                &hash,
                &image,
                &template,
                spec.revision_history_limit,
                now,
            );
            st.current = Some(rev.clone());
            st.current_step_index = Some(0);
            st.progress_since = now;
            set_weight(st, &mut events, now, Weight::ZERO);
            push(
                &mut events,
                st,
                now,
                Reason::RolloutUpdated,
                format!("Rollout updated to revision {} ({})", rev.number, rev.image),
            );
        }
        st.steps_hash = spec.steps_hash.clone();
    } else if st.steps_hash != spec.steps_hash {
        // Steps edited mid-rollout: start them again against the same canary.
        st.steps_hash = spec.steps_hash.clone();
        if st.updating() {
            reset(st, now);
            st.current_step_index = Some(0);
            st.progress_since = now;
            push(
                &mut events,
                st,
                now,
                Reason::RolloutUpdated,
                "Steps changed: starting again from step 0".into(),
            );
        } else {
            st.current_step_index = Some(steps_of(spec).len());
        }
    }

    match &spec.strategy {
        Strategy::Canary(c) => canary(st, spec, c, world, &mut events),
        Strategy::BlueGreen(b) => blue_green(st, spec, b, world, &mut events),
    }
    finish(st, spec, world, &mut events);
    events
}

/// The rollout's saved state could not be read (`problem`); `st` holds what could be
/// salvaged of it (the stable revision, the history), if anything. Nothing is guessed:
/// when the configured revision is not the recovered stable one, it is held as a canary
/// at 0%, paused, until a user resumes the update (from its first step), promotes or
/// aborts it; with no stable revision recovered, nothing is served until a user promotes
/// it. Says so in a [`Reason::StateUnreadable`] event.
pub fn recover(st: &mut RolloutStatus, spec: &Rollout, problem: &str, now: Ms) -> Vec<Event> {
    let mut events = Vec::new();
    st.name = spec.name.clone();
    st.spec_hash = spec.template_hash.clone();
    st.steps_hash = spec.steps_hash.clone();
    st.undo_to = None;
    let (hash, image, template) = desired(st, spec);
    match st.stable.clone() {
        Some(stable) if stable.hash == hash => {
            st.current = Some(stable.clone());
            st.active = Some(stable.clone());
            st.current_step_index = Some(steps_of(spec).len());
            st.progress_since = now;
            push(
                &mut events,
                st,
                now,
                Reason::StateUnreadable,
                format!(
                    "The saved state could not be read ({problem}); the stable revision {} ({}) was recovered from it, and is the configured one",
                    stable.number, stable.image
                ),
            );
        }
        stable => {
            let rev = new_revision(
                st,
                &hash,
                &image,
                &template,
                spec.revision_history_limit,
                now,
            );
            st.current = Some(rev.clone());
            st.active = stable.clone();
            st.current_step_index = Some(0);
            st.canary_weight_bp = 0;
            st.manual_pause = true;
            st.progress_since = now;
            let note = match &stable {
                Some(s) => format!(
                    "the saved state could not be read: revision {} ({}) is held as a canary at 0% against the stable revision {} ({}) recovered from it; resume runs the update from its first step, abort stops it",
                    rev.number, rev.image, s.number, s.image
                ),
                None => format!(
                    "the saved state could not be read, nor any stable revision from it: nothing is served until promote makes revision {} ({}) stable",
                    rev.number, rev.image
                ),
            };
            push(
                &mut events,
                st,
                now,
                Reason::StateUnreadable,
                format!("Rollout paused: {note} ({problem})"),
            );
            st.note = Some(note);
        }
    }
    events
}

/// Clears an update's progress: pauses, abort, promote-full, runs.
fn reset(st: &mut RolloutStatus, now: Ms) {
    st.note = None;
    st.pause_conditions.clear();
    st.controller_pause = false;
    st.aborted = false;
    st.aborted_at = None;
    st.promote_full = false;
    st.deadline_exceeded = false;
    st.background_passed = false;
    st.pre_promotion_passed = false;
    st.archive_runs(now);
}

/// Removes the pause conditions of `reason`; when that was the last one (and the update
/// is not aborted), the rollout resumes: Argo raises RolloutResumed whenever its pause
/// conditions go from some to none without an abort (sendStateChangeEvents).
fn end_pause(st: &mut RolloutStatus, reason: PauseReason, events: &mut Vec<Event>, now: Ms) {
    let before = st.pause_conditions.len();
    st.pause_conditions.retain(|p| p.reason != reason);
    if before > 0 && st.pause_conditions.is_empty() && !st.aborted {
        push(
            events,
            st,
            now,
            Reason::RolloutResumed,
            format!("Rollout is resumed: the {reason:?} pause ended"),
        );
    }
}

/// Progress deadline, then phase and message (argo-reference §2.2).
fn finish(st: &mut RolloutStatus, spec: &Rollout, world: &World<'_>, events: &mut Vec<Event>) {
    let now = world.now;
    st.trim_runs(spec.run_history_limits);
    trim_history(st, spec.revision_history_limit);
    let paused = st.manual_pause || spec.paused || !st.pause_conditions.is_empty();
    if st.updating() && !st.aborted && !paused {
        let deadline = after(st.progress_since, spec.progress_deadline);
        let passes_now = !st.deadline_exceeded && now >= deadline;
        // progressDeadlineAbort turned on after the deadline passed aborts too: Argo
        // checks it on every reconcile while the deadline stays exceeded.
        let aborts_late = st.deadline_exceeded && spec.progress_deadline_abort;
        if passes_now || aborts_late {
            let waiting = st
                .runs()
                .find_map(AnalysisRun::waiting)
                .map(|w| format!(" (waiting for {w})"))
                .unwrap_or_default();
            let msg = format!(
                "ProgressDeadlineExceeded: no progress for {}s{waiting}",
                spec.progress_deadline.as_secs()
            );
            if passes_now {
                st.deadline_exceeded = true;
                push(
                    events,
                    st,
                    now,
                    Reason::ProgressDeadlineExceeded,
                    msg.clone(),
                );
            }
            if spec.progress_deadline_abort {
                abort(st, events, now, &msg);
            }
        }
    }
    if !st.updating() {
        st.deadline_exceeded = false;
    }
    let n = st.current.as_ref().map_or(0, |c| c.number);
    let (phase, message) = if st.aborted {
        (
            RolloutPhase::Degraded,
            format!("RolloutAborted: Rollout aborted update to revision {n}"),
        )
    } else if st.deadline_exceeded {
        (
            RolloutPhase::Degraded,
            format!(
                "ProgressDeadlineExceeded: Rollout has not progressed for {}s",
                spec.progress_deadline.as_secs()
            ),
        )
    } else if st.manual_pause || spec.paused {
        let m = match &st.note {
            Some(note) if st.manual_pause => format!("paused by weir: {note}"),
            _ => "manually paused".to_owned(),
        };
        (RolloutPhase::Paused, m)
    } else if let Some(p) = st.pause_conditions.first() {
        let mut m = format!("{:?}", p.reason);
        if p.reason == PauseReason::CanaryPauseStep
            && let Some(Step::Pause(Some(d))) =
                st.current_step_index.and_then(|i| steps_of(spec).get(i))
        {
            let end = after(p.start_time, *d);
            m.push_str(&format!(
                ": {}s left",
                end.saturating_sub(now).div_ceil(1000)
            ));
        }
        (RolloutPhase::Paused, m)
    } else if st.updating() {
        let waiting = st.runs().find_map(AnalysisRun::waiting);
        let m = match waiting {
            Some(w) => format!("waiting for analysis: {w}"),
            None if !st.message.is_empty() && st.message.starts_with("waiting") => {
                st.message.clone()
            }
            None => match &spec.strategy {
                Strategy::Canary(_) => "more steps to complete".to_owned(),
                Strategy::BlueGreen(_) => "active service cutover pending".to_owned(),
            },
        };
        (RolloutPhase::Progressing, m)
    } else {
        (RolloutPhase::Healthy, String::new())
    };
    if st.phase != Some(phase) {
        st.updated_at = now;
    }
    st.phase = Some(phase);
    st.message = message;
}
