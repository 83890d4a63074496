//! The rollout state machine (argo-reference §1.4, §1.6, §2), pure: `reconcile` takes a
//! status, the Rollout as configured, what the data plane offers and the time, and moves
//! the status on, returning the events it produced. `traffic` says what the proxy should
//! do for the status. User actions are functions on the status too.

use std::time::Duration;

use weir_config::model::{HeaderMatch, Weight};
use weir_config::rollout::{
    AnalysisRef, Argo, BlueGreen, Canary, MirrorMatch, Rollout, Step, Strategy,
};

use crate::analysis::{AnalysisRun, Ms, Phase};
use crate::resolve::build_run;
use crate::state::{Event, PauseCondition, PauseReason, Revision, RolloutPhase, RolloutStatus};

/// What the control loop sees of the world besides the spec.
pub struct World<'a> {
    /// Now.
    pub now: Ms,
    /// Templates and secrets.
    pub argo: &'a Argo,
    /// Whether the Rollout's Service has endpoints running `image`.
    pub has_endpoints: &'a (dyn Fn(&str) -> bool + Sync),
}

/// What the proxy should do for one Rollout.
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficPlan {
    /// The image the stable share goes to (for blue-green: the active revision).
    pub stable: String,
    /// The canary (or preview) image, while there is one.
    pub canary: Option<String>,
    /// The canary's share.
    pub canary_weight: Weight,
    /// setHeaderRoute routes in force: (name, OR'd matches).
    pub header_routes: Vec<(String, Vec<HeaderMatch>)>,
    /// setMirrorRoute routes in force: (name, percentage, match blocks).
    pub mirror_routes: Vec<(String, Weight, Vec<MirrorMatch>)>,
    /// Hosts that reach one role: (host, true for the canary role).
    pub role_hosts: Vec<(String, bool)>,
}

/// A user action (`weir promote`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Move past the pause or the current step.
    Promote,
    /// Skip every remaining step.
    PromoteFull,
    /// Abort the update: canary weight to 0.
    Abort,
    /// Start an aborted update again from step 0.
    Retry,
    /// Pause.
    Pause,
    /// Resume.
    Resume,
    /// Roll back to the previous revision, or to revision `n`.
    Undo(Option<u64>),
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

fn new_revision(
    st: &mut RolloutStatus,
    hash: &str,
    image: &str,
    template: &serde_json::Value,
    limit: u32,
    now: Ms,
) -> Revision {
    let r = Revision {
        created_at: now,
        number: st.next_number,
        hash: hash.to_owned(),
        image: image.to_owned(),
        template: template.clone(),
    };
    st.next_number += 1;
    // A template seen before takes a new number, as Argo re-labels the ReplicaSet it
    // reuses: one entry per template.
    st.history.retain(|h| h.hash != r.hash);
    st.history.push(r.clone());
    trim_history(st, limit);
    r
}

/// Keeps the revisions in use (current, stable, active, the previous active) and the
/// `limit` newest others, as Argo keeps `revisionHistoryLimit` old ReplicaSets.
fn trim_history(st: &mut RolloutStatus, limit: u32) {
    let in_use = |h: &Revision| {
        [
            st.current.as_ref(),
            st.stable.as_ref(),
            st.active.as_ref(),
            st.previous_active.as_ref().map(|(r, _)| r),
        ]
        .into_iter()
        .flatten()
        .any(|r| r.hash == h.hash)
    };
    let mut old_kept = 0;
    let keep: Vec<bool> = st
        .history
        .iter()
        .enumerate()
        .rev()
        .map(|(i, h)| {
            if i + 1 == st.history.len() || in_use(h) {
                true
            } else {
                old_kept += 1;
                old_kept <= limit
            }
        })
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let mut it = keep.into_iter();
    st.history.retain(|_| it.next().unwrap_or(true));
}

fn push(events: &mut Vec<Event>, st: &mut RolloutStatus, now: Ms, reason: &str, message: String) {
    tracing::info!(rollout = %st.name, reason, "{message}");
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
            "TrafficWeightUpdated",
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
        let rev = new_revision(
            st,
            &hash,
            &image,
            &template,
            spec.revision_history_limit,
            now,
        );
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
            "RolloutCompleted",
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
                "SkipSteps",
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
                "SkipSteps",
                format!(
                    "Fast rollback to revision {} ({}): inside the rollback window, steps skipped",
                    rev.number, rev.image
                ),
            );
            push(
                &mut events,
                st,
                now,
                "RolloutCompleted",
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
                "RolloutUpdated",
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
                "RolloutUpdated",
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

/// Clears an update's progress: pauses, abort, promote-full, runs.
fn reset(st: &mut RolloutStatus, now: Ms) {
    st.pause_conditions.clear();
    st.controller_pause = false;
    st.aborted = false;
    st.aborted_at = None;
    st.promote_full = false;
    st.deadline_exceeded = false;
    st.archive_runs(now);
}

/// A revision older than stable is inside `rollbackWindow` when fewer than N
/// revisions were created between it and stable (argo-reference §2.8).
fn in_rollback_window(st: &RolloutStatus, spec: &Rollout, hash: &str) -> Option<Revision> {
    let window = spec.rollback_window?;
    let stable = st.stable.as_ref()?;
    let stable_pos = st.history.iter().rposition(|r| r.hash == stable.hash)?;
    let target_pos = st.history[..stable_pos]
        .iter()
        .rposition(|r| r.hash == hash)?;
    let between = st.history[target_pos + 1..stable_pos]
        .iter()
        .filter(|r| r.hash != hash && r.hash != stable.hash)
        .map(|r| &r.hash)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    (between < window as usize).then(|| st.history[target_pos].clone())
}

/// Blue-green: the previous active revision is still up inside its scale-down delay.
fn fast_rollback_target(
    st: &RolloutStatus,
    spec: &Rollout,
    hash: &str,
    now: Ms,
) -> Option<Revision> {
    if !matches!(spec.strategy, Strategy::BlueGreen(_)) {
        return None;
    }
    match &st.previous_active {
        Some((r, until)) if r.hash == hash && now < *until => Some(r.clone()),
        _ => None,
    }
}

fn complete_step(st: &mut RolloutStatus, spec: &Rollout, events: &mut Vec<Event>, now: Ms) {
    let steps = steps_of(spec);
    let i = st.current_step_index.unwrap_or(0);
    st.pause_conditions
        .retain(|p| p.reason != PauseReason::CanaryPauseStep);
    st.controller_pause = false;
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
        "RolloutStepCompleted",
        format!("Rollout step {}/{} completed ({desc})", i + 1, steps.len()),
    );
}

fn abort(st: &mut RolloutStatus, events: &mut Vec<Event>, now: Ms, why: &str) {
    if st.aborted {
        return;
    }
    st.aborted = true;
    st.aborted_at = Some(now);
    st.pause_conditions.clear();
    st.controller_pause = false;
    st.current_step_index = Some(0);
    set_weight(st, events, now, Weight::ZERO);
    st.archive_runs(now);
    let n = st.current.as_ref().map_or(0, |c| c.number);
    push(
        events,
        st,
        now,
        "RolloutAborted",
        format!("Rollout aborted update to revision {n}: {why}"),
    );
}

fn promote(st: &mut RolloutStatus, spec: &Rollout, events: &mut Vec<Event>, now: Ms) {
    let Some(cur) = st.current.clone() else {
        return;
    };
    if matches!(spec.strategy, Strategy::Canary(_)) {
        // The canary takes everything, then becomes stable (argo-reference §1.6).
        set_weight(st, events, now, Weight::FULL);
    }
    st.stable = Some(cur.clone());
    st.active = Some(cur.clone());
    st.current_step_index = Some(steps_of(spec).len());
    st.pause_conditions.clear();
    st.controller_pause = false;
    st.promote_full = false;
    st.progress_since = now;
    st.archive_runs(now);
    set_weight(st, events, now, Weight::ZERO);
    push(
        events,
        st,
        now,
        "RolloutCompleted",
        format!(
            "Rollout completed update to revision {} ({})",
            cur.number, cur.image
        ),
    );
}

fn add_pause(st: &mut RolloutStatus, reason: PauseReason, now: Ms, events: &mut Vec<Event>) {
    if !st.pause_conditions.iter().any(|p| p.reason == reason) {
        st.pause_conditions.push(PauseCondition {
            reason,
            start_time: now,
        });
        st.controller_pause = true;
        push(
            events,
            st,
            now,
            "RolloutPaused",
            format!("Rollout is paused ({reason:?})"),
        );
    }
}

/// Starts a run, or aborts with the reason it cannot start.
fn start_run(
    st: &mut RolloutStatus,
    spec: &Rollout,
    aref: &AnalysisRef,
    suffix: &str,
    world: &World<'_>,
    events: &mut Vec<Event>,
) -> Option<AnalysisRun> {
    let name = run_name(st, suffix);
    match build_run(name.clone(), aref, spec, world.argo, st, world.now) {
        Ok(run) => {
            push(
                events,
                st,
                world.now,
                "AnalysisRunRunning",
                format!("Analysis run {name} started"),
            );
            Some(run)
        }
        Err(e) => {
            push(
                events,
                st,
                world.now,
                "AnalysisRunError",
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

fn run_result_event(st: &mut RolloutStatus, run: &AnalysisRun, events: &mut Vec<Event>, now: Ms) {
    let reason = format!("AnalysisRun{:?}", run.phase);
    let msg = if run.message.is_empty() {
        format!("Analysis run {} {:?}", run.name, run.phase)
    } else {
        format!("Analysis run {} {:?}: {}", run.name, run.phase, run.message)
    };
    push(events, st, now, &reason, msg);
}

fn canary(
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

    // Background analysis, from its starting step on.
    if let Some((aref, start)) = &c.background {
        let index = st.current_step_index.unwrap_or(0);
        if st.background_run.is_none()
            && index >= *start
            && capacity
            && !st
                .pause_conditions
                .iter()
                .any(|p| p.reason == PauseReason::InconclusiveAnalysisRun)
        {
            let already_passed = st
                .past_runs
                .iter()
                .any(|r| r.name == run_name(st, "-bg") && r.phase == Phase::Successful);
            if !already_passed {
                st.background_run = start_run(st, spec, aref, "-bg", world, events);
            }
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
                }
            }
        }
    }
    if st.aborted {
        return;
    }

    if st.promote_full {
        if capacity {
            promote(st, spec, events, now);
        } else {
            st.message = format!("waiting for endpoints running {image} before promoting");
        }
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
            return;
        }
        match &c.steps[index] {
            Step::SetWeight(w) => {
                if !capacity {
                    st.message = format!(
                        "waiting for endpoints running {image}: the canary weight stays at 0"
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
                        Some(d) if now >= p.start_time + d.as_millis() as Ms => {
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

fn blue_green(
    st: &mut RolloutStatus,
    spec: &Rollout,
    b: &BlueGreen,
    world: &World<'_>,
    events: &mut Vec<Event>,
) {
    let now = world.now;
    if st.active.is_none() {
        st.active = st.stable.clone();
    }
    if let Some((_, until)) = &st.previous_active
        && now >= *until
    {
        st.previous_active = None;
    }
    if !st.updating() {
        return;
    }
    let (Some(cur), Some(active), Some(stable)) =
        (st.current.clone(), st.active.clone(), st.stable.clone())
    else {
        return;
    };
    if st.aborted {
        // The active service stays on, or returns to, the stable revision.
        if active.hash != stable.hash {
            st.active = Some(stable.clone());
            push(
                events,
                st,
                now,
                "ActiveServiceSwitched",
                format!(
                    "Active service switched back to revision {} ({})",
                    stable.number, stable.image
                ),
            );
        }
        return;
    }
    let capacity = (world.has_endpoints)(&cur.image);

    // `promote --full`: pre- and post-promotion analysis are skipped (Argo's
    // skipPrePromotionAnalysisRun and skipPostPromotionAnalysisRun look at promoteFull);
    // the switch waits only for the new revision's endpoints.
    if st.promote_full {
        if !capacity {
            st.message = format!("waiting for endpoints running {} (preview)", cur.image);
            return;
        }
        for r in [st.pre_run.take(), st.post_run.take()] {
            st.archive(r, now);
        }
        st.controller_pause = false;
        if active.hash != cur.hash {
            st.previous_active = Some((active.clone(), now + b.scale_down_delay.as_millis() as Ms));
            st.active = Some(cur.clone());
            push(
                events,
                st,
                now,
                "ActiveServiceSwitched",
                format!(
                    "Active service switched to revision {} ({})",
                    cur.number, cur.image
                ),
            );
        }
        promote(st, spec, events, now);
        return;
    }

    if active.hash != cur.hash {
        // Before the switch: the preview runs the new revision.
        if !capacity {
            st.message = format!("waiting for endpoints running {} (preview)", cur.image);
            return;
        }
        if let Some(aref) = &b.pre_promotion
            && st.pre_run.is_none()
            && !st
                .past_runs
                .iter()
                .any(|r| r.name == run_name(st, "-pre") && r.phase == Phase::Successful)
        {
            st.pre_run = start_run(st, spec, aref, "-pre", world, events);
            if st.aborted {
                return;
            }
        }
        let auto_deadline = b
            .auto_promotion_enabled
            .then_some(b.auto_promotion_seconds)
            .flatten();
        let pause_needed = !b.auto_promotion_enabled || auto_deadline.is_some();
        if pause_needed && !st.controller_pause {
            add_pause(st, PauseReason::BlueGreenPause, now, events);
        }
        let mut pre_ok = true;
        if let Some(run) = st.pre_run.clone() {
            if run.is_done() {
                run_result_event(st, &run, events, now);
                match run.phase {
                    Phase::Failed | Phase::Error => {
                        abort(
                            st,
                            events,
                            now,
                            &format!(
                                "Pre-promotion analysis phase {:?}: {}",
                                run.phase, run.message
                            ),
                        );
                        return;
                    }
                    Phase::Inconclusive => {
                        let r = st.pre_run.take();
                        st.archive(r, now);
                        add_pause(st, PauseReason::InconclusiveAnalysisRun, now, events);
                        return;
                    }
                    _ => {
                        let r = st.pre_run.take();
                        st.archive(r, now);
                    }
                }
            } else {
                pre_ok = false;
            }
        }
        // Auto-promotion after N seconds, even with the pre-promotion run still going.
        if let (Some(d), Some(p)) = (
            auto_deadline,
            st.pause_conditions
                .iter()
                .find(|p| p.reason == PauseReason::BlueGreenPause)
                .cloned(),
        ) && now >= p.start_time + d.as_millis() as Ms
        {
            st.pause_conditions
                .retain(|x| x.reason != PauseReason::BlueGreenPause);
            if let Some(mut r) = st.pre_run.take() {
                r.terminate(now);
                st.archive(Some(r), now);
            }
            pre_ok = true;
        }
        if !pre_ok || !st.pause_conditions.is_empty() || st.manual_pause || spec.paused {
            return;
        }
        // The switch: one snapshot swap.
        st.controller_pause = false;
        st.previous_active = Some((active.clone(), now + b.scale_down_delay.as_millis() as Ms));
        st.active = Some(cur.clone());
        st.progress_since = now;
        st.deadline_exceeded = false;
        push(
            events,
            st,
            now,
            "ActiveServiceSwitched",
            format!(
                "Active service switched to revision {} ({})",
                cur.number, cur.image
            ),
        );
        if b.post_promotion.is_none() {
            promote(st, spec, events, now);
            return;
        }
    }
    // After the switch: post-promotion analysis decides whether it becomes stable.
    if let Some(aref) = &b.post_promotion {
        if st.post_run.is_none()
            && !st
                .pause_conditions
                .iter()
                .any(|p| p.reason == PauseReason::InconclusiveAnalysisRun)
        {
            st.post_run = start_run(st, spec, aref, "-post", world, events);
            if st.aborted {
                st.active = Some(stable.clone());
                return;
            }
        }
        if let Some(run) = st.post_run.clone()
            && run.is_done()
        {
            run_result_event(st, &run, events, now);
            match run.phase {
                Phase::Successful => promote(st, spec, events, now),
                Phase::Failed | Phase::Error => {
                    abort(
                        st,
                        events,
                        now,
                        &format!(
                            "Post-promotion analysis phase {:?}: {}",
                            run.phase, run.message
                        ),
                    );
                    st.active = Some(stable.clone());
                    push(
                        events,
                        st,
                        now,
                        "ActiveServiceSwitched",
                        format!(
                            "Active service switched back to revision {} ({})",
                            stable.number, stable.image
                        ),
                    );
                }
                _ => {
                    let r = st.post_run.take();
                    st.archive(r, now);
                    add_pause(st, PauseReason::InconclusiveAnalysisRun, now, events);
                }
            }
        }
    } else if st.manual_pause || spec.paused || !st.pause_conditions.is_empty() {
    } else {
        promote(st, spec, events, now);
    }
}

/// Progress deadline, then phase and message (argo-reference §2.2).
fn finish(st: &mut RolloutStatus, spec: &Rollout, world: &World<'_>, events: &mut Vec<Event>) {
    let now = world.now;
    st.trim_runs(spec.run_history_limits);
    trim_history(st, spec.revision_history_limit);
    let paused = st.manual_pause || spec.paused || !st.pause_conditions.is_empty();
    if st.updating() && !st.aborted && !paused && !st.deadline_exceeded {
        let deadline = st.progress_since + spec.progress_deadline.as_millis() as Ms;
        if now >= deadline {
            st.deadline_exceeded = true;
            let waiting = st
                .runs()
                .find_map(AnalysisRun::waiting)
                .map(|w| format!(" (waiting for {w})"))
                .unwrap_or_default();
            let msg = format!(
                "ProgressDeadlineExceeded: no progress for {}s{waiting}",
                spec.progress_deadline.as_secs()
            );
            push(events, st, now, "ProgressDeadlineExceeded", msg.clone());
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
        (RolloutPhase::Paused, "manually paused".to_owned())
    } else if let Some(p) = st.pause_conditions.first() {
        let mut m = format!("{:?}", p.reason);
        if p.reason == PauseReason::CanaryPauseStep
            && let Some(Step::Pause(Some(d))) =
                st.current_step_index.and_then(|i| steps_of(spec).get(i))
        {
            let end = p.start_time + d.as_millis() as Ms;
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

/// What the proxy should do for this status.
pub fn traffic(
    st: &RolloutStatus,
    spec: &Rollout,
    has_endpoints: &(dyn Fn(&str) -> bool + Sync),
) -> Option<TrafficPlan> {
    let stable = st.stable.as_ref()?;
    let updating = st.updating();
    match &spec.strategy {
        Strategy::Canary(c) => {
            let canary = st
                .current
                .as_ref()
                .filter(|_| updating)
                .map(|r| r.image.clone());
            let capacity = canary.as_deref().is_some_and(has_endpoints);
            let weight = if capacity {
                desired_weight(st, c)
            } else {
                Weight::ZERO
            };
            let index = st.current_step_index.unwrap_or(0).min(c.steps.len());
            let mut header_routes: Vec<(String, Vec<HeaderMatch>)> = Vec::new();
            let mut mirror_routes: Vec<(String, Weight, Vec<MirrorMatch>)> = Vec::new();
            if updating && !st.aborted && capacity {
                for s in &c.steps[..index] {
                    match s {
                        Step::SetHeaderRoute { name, matches } => {
                            header_routes.retain(|(n, _)| n != name);
                            if !matches.is_empty() {
                                header_routes.push((name.clone(), matches.clone()));
                            }
                        }
                        Step::SetMirrorRoute {
                            name,
                            percentage,
                            matches,
                        } => {
                            mirror_routes.retain(|(n, _, _)| n != name);
                            if !matches.is_empty() {
                                mirror_routes.push((name.clone(), *percentage, matches.clone()));
                            }
                        }
                        _ => {}
                    }
                }
            }
            let mut role_hosts = Vec::new();
            if let Some(h) = &c.canary_service {
                // After an abort the canary service points back at stable.
                role_hosts.push((h.clone(), updating && !st.aborted));
            }
            if let Some(h) = &c.stable_service {
                role_hosts.push((h.clone(), false));
            }
            Some(TrafficPlan {
                stable: stable.image.clone(),
                canary,
                canary_weight: weight,
                header_routes,
                mirror_routes,
                role_hosts,
            })
        }
        Strategy::BlueGreen(b) => {
            let active = st.active.as_ref().unwrap_or(stable);
            let newest = st.current.as_ref().unwrap_or(stable);
            let preview = (newest.hash != active.hash).then(|| newest.image.clone());
            let mut role_hosts = vec![(b.active_service.clone(), false)];
            if let Some(p) = &b.preview_service {
                role_hosts.push((p.clone(), preview.is_some()));
            }
            Some(TrafficPlan {
                stable: active.image.clone(),
                canary: preview,
                canary_weight: Weight::ZERO,
                header_routes: Vec::new(),
                mirror_routes: Vec::new(),
                role_hosts,
            })
        }
    }
}

/// Applies a user action to the status (argo-reference §2.5). Returns an error message
/// when the action does not apply.
pub fn act(
    st: &mut RolloutStatus,
    spec: &Rollout,
    action: &Action,
    now: Ms,
) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    match action {
        Action::Promote => {
            if !st.updating() && !st.manual_pause {
                return Err("nothing to promote: the rollout is not updating".into());
            }
            st.manual_pause = false;
            if !st.pause_conditions.is_empty() {
                let inconclusive = st
                    .pause_conditions
                    .iter()
                    .any(|p| p.reason == PauseReason::InconclusiveAnalysisRun);
                st.pause_conditions.clear();
                if inconclusive {
                    st.controller_pause = false;
                    let step_inconclusive = st
                        .step_run
                        .as_ref()
                        .is_some_and(|r| r.phase == Phase::Inconclusive);
                    if matches!(spec.strategy, Strategy::Canary(_)) && step_inconclusive {
                        // The inconclusive step analysis is passed over.
                        let run = st.step_run.take();
                        st.archive(run, now);
                        let i = st.current_step_index.unwrap_or(0);
                        st.current_step_index = Some(i + 1);
                    }
                }
            } else if matches!(spec.strategy, Strategy::Canary(_)) {
                // Nothing paused: skip the current step (a running analysis included).
                let i = st.current_step_index.unwrap_or(0);
                let run = st.step_run.take();
                st.archive(run, now);
                st.current_step_index = Some((i + 1).min(steps_of(spec).len()));
            }
            push(
                &mut events,
                st,
                now,
                "RolloutResumed",
                "Rollout promoted".into(),
            );
        }
        Action::PromoteFull => {
            if !st.updating() {
                return Err("nothing to promote: the rollout is not updating".into());
            }
            st.manual_pause = false;
            st.promote_full = true;
            st.pause_conditions.clear();
            push(
                &mut events,
                st,
                now,
                "RolloutResumed",
                "Rollout promoted in full: remaining steps skipped".into(),
            );
        }
        Action::Abort => {
            if !st.updating() {
                return Err("nothing to abort: the rollout is not updating".into());
            }
            abort(st, &mut events, now, "aborted by user");
        }
        Action::Retry => {
            if !st.aborted {
                return Err("retry applies to an aborted rollout".into());
            }
            st.aborted = false;
            st.aborted_at = None;
            st.deadline_exceeded = false;
            st.current_step_index = Some(0);
            st.progress_since = now;
            st.retried_at = Some(now);
            // New runs are made: the old ones are history.
            st.archive_runs(now);
            let n = st.current.as_ref().map_or(0, |c| c.number);
            push(
                &mut events,
                st,
                now,
                "RolloutRetry",
                format!("Retrying the update to revision {n} from step 0"),
            );
        }
        Action::Pause => {
            st.manual_pause = true;
            push(
                &mut events,
                st,
                now,
                "RolloutPaused",
                "Rollout paused by user".into(),
            );
        }
        Action::Resume => {
            st.manual_pause = false;
            st.pause_conditions.clear();
            push(
                &mut events,
                st,
                now,
                "RolloutResumed",
                "Rollout resumed by user".into(),
            );
        }
        Action::Undo(to) => {
            let target = match to {
                Some(n) => st
                    .history
                    .iter()
                    .rev()
                    .find(|r| r.number == *n)
                    .cloned()
                    .ok_or_else(|| format!("there is no revision {n}"))?,
                None => {
                    // The revision before the current one.
                    let cur = st
                        .current
                        .as_ref()
                        .map(|c| c.hash.clone())
                        .unwrap_or_default();
                    if st.updating() {
                        st.stable.clone().ok_or("no stable revision")?
                    } else {
                        st.history
                            .iter()
                            .rev()
                            .find(|r| r.hash != cur)
                            .cloned()
                            .ok_or("there is no earlier revision")?
                    }
                }
            };
            if st.current.as_ref().is_some_and(|c| c.hash == target.hash) {
                return Err(format!(
                    "skipped rollback: revision {} is already the current one",
                    target.number
                ));
            }
            st.undo_to = Some(target.clone());
            push(
                &mut events,
                st,
                now,
                "RolloutUpdated",
                format!(
                    "Undo: rolling back to revision {} ({})",
                    target.number, target.image
                ),
            );
        }
    }
    st.updated_at = now;
    Ok(events)
}
