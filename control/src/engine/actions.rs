//! What users ask (`weir promote`, `abort`, `retry`, `pause`, `resume`, `undo`), and the
//! abort, promotion and pause that turns apply too.

use super::*;

/// A user action (`weir promote`, ...).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
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

pub(super) fn abort(st: &mut RolloutStatus, events: &mut Vec<Event>, now: Ms, why: &str) {
    if st.aborted {
        return;
    }
    st.aborted = true;
    st.aborted_at = Some(now);
    st.pause_conditions.clear();
    st.controller_pause = false;
    st.current_step_index = Some(0);
    set_weight(st, events, now, Weight::ZERO);
    // Runs after a retry are new ones (Argo's needsNewAnalysisRun looks at abortedAt).
    st.background_passed = false;
    st.pre_promotion_passed = false;
    st.archive_runs(now);
    let n = st.current.as_ref().map_or(0, |c| c.number);
    push(
        events,
        st,
        now,
        Reason::RolloutAborted,
        format!("Rollout aborted update to revision {n}: {why}"),
    );
}

pub(super) fn promote(st: &mut RolloutStatus, spec: &Rollout, events: &mut Vec<Event>, now: Ms) {
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
        Reason::RolloutCompleted,
        format!(
            "Rollout completed update to revision {} ({})",
            cur.number, cur.image
        ),
    );
}

pub(super) fn add_pause(
    st: &mut RolloutStatus,
    reason: PauseReason,
    now: Ms,
    events: &mut Vec<Event>,
) {
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
            Reason::RolloutPaused,
            format!("Rollout is paused ({reason:?})"),
        );
    }
}

/// Why a user action does not apply to a rollout as it stands (the API answers 409).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Promote on a rollout that is not updating.
    #[error("nothing to promote: the rollout is not updating")]
    NothingToPromote,
    /// Abort on a rollout that is not updating.
    #[error("nothing to abort: the rollout is not updating")]
    NothingToAbort,
    /// Retry on a rollout that is not aborted.
    #[error("retry applies to an aborted rollout")]
    NotAborted,
    /// Undo to a revision the history does not hold.
    #[error("there is no revision {0}")]
    NoSuchRevision(u64),
    /// Undo while updating, with no stable revision to go back to.
    #[error("no stable revision")]
    NoStable,
    /// Undo with no earlier revision in the history.
    #[error("there is no earlier revision")]
    NoEarlierRevision,
    /// Undo to the revision that is already the current one.
    #[error("skipped rollback: revision {0} is already the current one")]
    AlreadyCurrent(u64),
}

/// Applies a user action to the status (argo-reference §2.5).
///
/// # Errors
/// [`Refusal`] when the action does not apply.
pub fn act(
    st: &mut RolloutStatus,
    spec: &Rollout,
    action: &Action,
    now: Ms,
) -> Result<Vec<Event>, Refusal> {
    let mut events = Vec::new();
    match action {
        Action::Promote => {
            if !st.updating() && !st.manual_pause {
                return Err(Refusal::NothingToPromote);
            }
            st.manual_pause = false;
            st.note = None;
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
                Reason::RolloutResumed,
                "Rollout promoted".into(),
            );
        }
        Action::PromoteFull => {
            if !st.updating() {
                return Err(Refusal::NothingToPromote);
            }
            st.manual_pause = false;
            st.note = None;
            st.promote_full = true;
            st.pause_conditions.clear();
            // Promoting in full ends an abort too (Argo's syncRolloutStatusCanary and
            // syncRolloutStatusBlueGreen remove the abort while promoteFull is set).
            st.aborted = false;
            st.aborted_at = None;
            push(
                &mut events,
                st,
                now,
                Reason::RolloutResumed,
                "Rollout promoted in full: remaining steps skipped".into(),
            );
        }
        Action::Abort => {
            if !st.updating() {
                return Err(Refusal::NothingToAbort);
            }
            abort(st, &mut events, now, "aborted by user");
        }
        Action::Retry => {
            if !st.aborted {
                return Err(Refusal::NotAborted);
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
                Reason::RolloutRetry,
                format!("Retrying the update to revision {n} from step 0"),
            );
        }
        Action::Pause => {
            st.manual_pause = true;
            push(
                &mut events,
                st,
                now,
                Reason::RolloutPaused,
                "Rollout paused by user".into(),
            );
        }
        Action::Resume => {
            st.manual_pause = false;
            st.note = None;
            st.pause_conditions.clear();
            push(
                &mut events,
                st,
                now,
                Reason::RolloutResumed,
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
                    .ok_or(Refusal::NoSuchRevision(*n))?,
                None => {
                    // The revision before the current one.
                    let cur = st
                        .current
                        .as_ref()
                        .map(|c| c.hash.clone())
                        .unwrap_or_default();
                    if st.updating() {
                        st.stable.clone().ok_or(Refusal::NoStable)?
                    } else {
                        st.history
                            .iter()
                            .rev()
                            .find(|r| r.hash != cur)
                            .cloned()
                            .ok_or(Refusal::NoEarlierRevision)?
                    }
                }
            };
            if st.current.as_ref().is_some_and(|c| c.hash == target.hash) {
                return Err(Refusal::AlreadyCurrent(target.number));
            }
            st.undo_to = Some(target.clone());
            push(
                &mut events,
                st,
                now,
                Reason::RolloutUpdated,
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
