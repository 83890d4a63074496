//! The handle the admin API and the binary talk to the control loop through.

use super::*;

/// Why a user action was not applied.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ActionError {
    /// No rollout has that name (404).
    #[error("no rollout named {0:?}")]
    NoRollout(String),
    /// The action does not apply to the rollout as it stands (409).
    #[error(transparent)]
    Refused(#[from] engine::Refusal),
    /// The control loop is shutting down (503).
    #[error("the controller has stopped")]
    Stopped,
    /// Cluster mode: the action was handed to the leader, which has not applied it (503).
    #[error("not applied yet: {0}")]
    NotApplied(String),
    /// The action was applied, in memory and to traffic, but the rollout's state could
    /// not be saved: a restart now would lose it (500). Saving is retried on every turn.
    #[error("applied in memory only: the rollout's state could not be saved ({reason})")]
    NotDurable {
        /// The rollout's state, with the action applied.
        view: Box<RolloutView>,
        /// Why the state could not be saved.
        reason: String,
    },
}

/// Talks to a running controller. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ControllerHandle {
    pub(super) tx: mpsc::Sender<Request>,
    pub(super) events: Events,
    /// Loop statistics.
    pub stats: Arc<LoopStats>,
}

impl ControllerHandle {
    /// Applies a user action; the rollout's new state, or why it did not apply.
    pub async fn act(&self, rollout: &str, action: Action) -> Result<RolloutView, ActionError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Act {
                rollout: rollout.to_owned(),
                action,
                reply,
            })
            .await
            .map_err(|_| ActionError::Stopped)?;
        rx.await.map_err(|_| ActionError::Stopped)?
    }

    /// One rollout's state.
    pub async fn get(&self, rollout: &str) -> Option<RolloutView> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Get {
                rollout: rollout.to_owned(),
                reply,
            })
            .await
            .ok()?;
        rx.await.ok().flatten()
    }

    /// Success rate, p99 and requests per second of the rollout's stable and canary
    /// revisions as `points` windows of `step`, oldest first (the dashboard's charts).
    pub async fn history(
        &self,
        rollout: &str,
        points: usize,
        step: Duration,
    ) -> Option<HistoryView> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::History {
                rollout: rollout.to_owned(),
                points,
                step,
                reply,
            })
            .await
            .ok()?;
        rx.await.ok().flatten()
    }

    /// Every rollout's state.
    pub async fn list(&self) -> Vec<RolloutView> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Request::List { reply }).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Every event from now on, with its rollout's name.
    pub fn subscribe(&self) -> EventStream {
        self.events.subscribe()
    }
}
