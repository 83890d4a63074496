//! A rollout's status: everything the control loop knows about one Rollout, persisted
//! after every change so that a restart resumes where it stopped.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::analysis::{AnalysisRun, Ms};

/// Events kept per rollout.
pub const EVENTS_KEPT: usize = 200;
/// Finished analysis runs kept per rollout at most, whatever the Rollout's
/// `successfulRunHistoryLimit` and `unsuccessfulRunHistoryLimit` say.
pub const RUNS_KEPT: usize = 100;

/// One revision of a Rollout's template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    /// Increases with every new revision (Argo's `rollout.argoproj.io/revision`).
    pub number: u64,
    /// Hash of the template.
    pub hash: String,
    /// The image: what selects its endpoints.
    pub image: String,
    /// The template itself, for `undo`.
    pub template: serde_json::Value,
    /// When this revision was made: the canary's measurements start here, so that a
    /// revision deployed before (as stable, or in an earlier update) does not bring its
    /// old traffic into the new update's analysis.
    #[serde(default)]
    pub created_at: Ms,
}

/// Why a rollout is paused (Argo's pause reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PauseReason {
    /// A `pause` step.
    CanaryPauseStep,
    /// Blue-green waiting to switch.
    BlueGreenPause,
    /// An analysis ended Inconclusive.
    InconclusiveAnalysisRun,
}

/// A pause condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseCondition {
    /// Why.
    pub reason: PauseReason,
    /// Since when.
    pub start_time: Ms,
}

/// One entry of the rollout's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// When.
    pub time: Ms,
    /// Argo's event reason; as a notification trigger it is `on-` plus its kebab-case.
    pub reason: Reason,
    /// What happened.
    pub message: String,
}

/// Argo's event reasons that weir raises, serialised by name (`RolloutStepCompleted`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reason {
    /// A new revision's update began (or an undo began one).
    RolloutUpdated,
    /// A canary step finished.
    RolloutStepCompleted,
    /// The canary's weight changed.
    TrafficWeightUpdated,
    /// The rollout paused (a pause step, a user, an inconclusive analysis).
    RolloutPaused,
    /// The rollout resumed.
    RolloutResumed,
    /// The update finished: the new revision is stable.
    RolloutCompleted,
    /// The update was aborted: the canary's weight went back to 0.
    RolloutAborted,
    /// An aborted update was started again.
    RolloutRetry,
    /// Steps were skipped (promote --full, fast rollback, a stable revision).
    SkipSteps,
    /// Blue-green: the active service now serves another revision.
    ActiveServiceSwitched,
    /// An analysis run started.
    AnalysisRunRunning,
    /// An analysis run passed.
    AnalysisRunSuccessful,
    /// An analysis run failed.
    AnalysisRunFailed,
    /// An analysis run ended in Error.
    AnalysisRunError,
    /// An analysis run was neither passed nor failed.
    AnalysisRunInconclusive,
    /// The update made no progress within `progressDeadlineSeconds`.
    ProgressDeadlineExceeded,
    /// weir's own: the rollout's saved state could not be read at start; what weir
    /// did instead (the previous file, or the canary held at 0%) is in the message.
    StateUnreadable,
}

impl Reason {
    /// Its name, as Argo writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RolloutUpdated => "RolloutUpdated",
            Reason::RolloutStepCompleted => "RolloutStepCompleted",
            Reason::TrafficWeightUpdated => "TrafficWeightUpdated",
            Reason::RolloutPaused => "RolloutPaused",
            Reason::RolloutResumed => "RolloutResumed",
            Reason::RolloutCompleted => "RolloutCompleted",
            Reason::RolloutAborted => "RolloutAborted",
            Reason::RolloutRetry => "RolloutRetry",
            Reason::SkipSteps => "SkipSteps",
            Reason::ActiveServiceSwitched => "ActiveServiceSwitched",
            Reason::AnalysisRunRunning => "AnalysisRunRunning",
            Reason::AnalysisRunSuccessful => "AnalysisRunSuccessful",
            Reason::AnalysisRunFailed => "AnalysisRunFailed",
            Reason::AnalysisRunError => "AnalysisRunError",
            Reason::AnalysisRunInconclusive => "AnalysisRunInconclusive",
            Reason::ProgressDeadlineExceeded => "ProgressDeadlineExceeded",
            Reason::StateUnreadable => "StateUnreadable",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The four phases (there is no Aborted phase: an aborted rollout is Degraded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutPhase {
    /// Fully rolled out.
    Healthy,
    /// Moving.
    Progressing,
    /// Waiting on a pause.
    Paused,
    /// Aborted, or stuck past its deadline.
    Degraded,
}

impl RolloutPhase {
    /// Its name, as Argo writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutPhase::Healthy => "Healthy",
            RolloutPhase::Progressing => "Progressing",
            RolloutPhase::Paused => "Paused",
            RolloutPhase::Degraded => "Degraded",
        }
    }
}

/// Everything the control loop keeps about one Rollout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The Rollout's name.
    pub name: String,
    /// The stable revision (for blue-green: the one marked stable).
    pub stable: Option<Revision>,
    /// The revision being rolled out (equal to stable when done).
    pub current: Option<Revision>,
    /// Every revision seen, oldest first.
    pub history: Vec<Revision>,
    /// The next revision number.
    pub next_number: u64,
    /// Hash of the steps the current index refers to.
    pub steps_hash: String,
    /// Hash of the template last seen in the configuration.
    pub spec_hash: String,
    /// Set by `undo`: the revision wanted instead of the configured one, until the
    /// configured template changes again.
    pub undo_to: Option<Revision>,
    /// Index of the current step.
    pub current_step_index: Option<usize>,
    /// Aborted (a flag, not a phase).
    pub aborted: bool,
    /// When it was aborted.
    pub aborted_at: Option<Ms>,
    /// When the update was last retried: its canary is judged from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retried_at: Option<Ms>,
    /// Pause conditions.
    pub pause_conditions: Vec<PauseCondition>,
    /// Set when the controller paused; a pause cleared by a user while this is set
    /// completes the pause.
    pub controller_pause: bool,
    /// Paused by the `pause` action (or by weir itself, when its saved state could not
    /// be read: see `note`).
    pub manual_pause: bool,
    /// Why weir paused the rollout itself (its saved state could not be read); shown as
    /// the message while the pause holds, and cleared by `resume` and `promote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Promote everything (`promote --full`).
    pub promote_full: bool,
    /// The canary weight now applied, in hundredths of a percent.
    pub canary_weight_bp: u32,
    /// The step analysis run.
    pub step_run: Option<AnalysisRun>,
    /// The background analysis run.
    pub background_run: Option<AnalysisRun>,
    /// Blue-green pre-promotion run.
    pub pre_run: Option<AnalysisRun>,
    /// Blue-green post-promotion run.
    pub post_run: Option<AnalysisRun>,
    /// Finished runs, newest last.
    pub past_runs: VecDeque<AnalysisRun>,
    /// The background analysis of this update passed: it is not started again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub background_passed: bool,
    /// Blue-green: the pre-promotion analysis of this update passed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pre_promotion_passed: bool,
    /// Blue-green: the revision the active service points at.
    pub active: Option<Revision>,
    /// Blue-green: the previous active revision, reachable for a fast rollback until
    /// this time.
    pub previous_active: Option<(Revision, Ms)>,
    /// Last progress, for the progress deadline.
    pub progress_since: Ms,
    /// The progress deadline passed.
    pub deadline_exceeded: bool,
    /// Phase.
    pub phase: Option<RolloutPhase>,
    /// What it is doing or waiting for.
    pub message: String,
    /// Timeline, newest last.
    pub events: VecDeque<Event>,
    /// When the status last changed.
    pub updated_at: Ms,
    /// Cluster mode: the leader's clock when it last wrote this status. A new leader
    /// measures a pause's elapsed time from it rather than from its own clock (see
    /// `controller::cluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_ms: Option<Ms>,
}

impl RolloutStatus {
    /// When the current update began, or was last retried: the start of what its canary
    /// is judged on. None without an update's revision.
    pub fn canary_since(&self) -> Option<Ms> {
        self.current
            .as_ref()
            .filter(|r| r.created_at > 0)
            .map(|r| r.created_at.max(self.retried_at.unwrap_or(0)))
    }

    /// A status for a Rollout not seen before.
    pub fn new(name: &str) -> Self {
        RolloutStatus {
            name: name.to_owned(),
            next_number: 1,
            ..Default::default()
        }
    }

    /// Adds an event to the timeline, returning it.
    pub fn event(&mut self, time: Ms, reason: Reason, message: String) -> Event {
        let e = Event {
            time,
            reason,
            message,
        };
        self.events.push_back(e.clone());
        while self.events.len() > EVENTS_KEPT {
            self.events.pop_front();
        }
        e
    }

    /// Ends every run in progress (step, background, pre- and post-promotion) into the
    /// history.
    pub fn archive_runs(&mut self, now: Ms) {
        let runs = [
            self.step_run.take(),
            self.background_run.take(),
            self.pre_run.take(),
            self.post_run.take(),
        ];
        for r in runs {
            self.archive(r, now);
        }
    }

    /// Files a finished (or abandoned) run in the history.
    pub fn archive(&mut self, run: Option<AnalysisRun>, now: Ms) {
        if let Some(mut r) = run {
            r.terminate(now);
            self.past_runs.push_back(r);
            while self.past_runs.len() > RUNS_KEPT {
                self.past_runs.pop_front();
            }
        }
    }

    /// Keeps the newest `successful` Successful finished runs and the newest
    /// `unsuccessful` others (Argo's run history limits).
    pub fn trim_runs(&mut self, (successful, unsuccessful): (u32, u32)) {
        let (mut ok, mut bad) = (0u32, 0u32);
        let keep: Vec<bool> = self
            .past_runs
            .iter()
            .rev()
            .map(|r| {
                let n = if r.phase == crate::analysis::Phase::Successful {
                    ok += 1;
                    (ok, successful)
                } else {
                    bad += 1;
                    (bad, unsuccessful)
                };
                n.0 <= n.1
            })
            .collect();
        let mut it = keep.into_iter().rev();
        self.past_runs.retain(|_| it.next().unwrap_or(true));
    }

    /// Whether an update is in progress.
    pub fn updating(&self) -> bool {
        match (&self.current, &self.stable) {
            (Some(c), Some(s)) => c.hash != s.hash,
            _ => false,
        }
    }

    /// The current runs, for measurement scheduling and display.
    pub fn runs_mut(&mut self) -> impl Iterator<Item = &mut AnalysisRun> {
        [
            self.step_run.as_mut(),
            self.background_run.as_mut(),
            self.pre_run.as_mut(),
            self.post_run.as_mut(),
        ]
        .into_iter()
        .flatten()
    }

    /// The current runs.
    pub fn runs(&self) -> impl Iterator<Item = &AnalysisRun> {
        [
            self.step_run.as_ref(),
            self.background_run.as_ref(),
            self.pre_run.as_ref(),
            self.post_run.as_ref(),
        ]
        .into_iter()
        .flatten()
    }
}
