//! The control loop's side of cluster mode: what it needs from the store the replicas
//! share, as a port ([`ClusterLink`]), so that the loop does not know etcd (the etcd side
//! lives in `crate::cluster`, and a test can stand in for it).
//!
//! The contract, which keeps N replicas one rollout:
//! - Every replica, the leader included, routes by the *committed* status only: a status
//!   is applied to the data plane once the store has it (the leader after its write
//!   succeeded, the others when their watch brings it). So the cluster-wide split is
//!   exact whatever the L4 balancer in front does.
//! - Only the leader runs the steps and the analysis, and each of its writes is fenced:
//!   it succeeds only while this replica still holds the leadership it was elected with
//!   and nobody wrote the status since the revision it read ([`WriteError::Fenced`],
//!   [`WriteError::Raced`]). A deposed, frozen or partitioned leader cannot overwrite its
//!   successor.
//! - Users' actions taken on any replica reach the leader as requests in the store
//!   ([`ClusterLink::ask`]); the leader applies them and deletes them in the same write as
//!   the status they led to.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::engine::Action;
use crate::state::RolloutStatus;

/// A rollout's status as the store has it, with the store revision that wrote it (what
/// the next write compares with).
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    /// The status.
    pub status: RolloutStatus,
    /// The store's revision of its last write (0: never written).
    pub rev: i64,
}

/// A user's action, asked on some replica, for the leader to apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRequest {
    /// The request's key in the store: the leader deletes it when it has applied it.
    #[serde(skip)]
    pub key: String,
    /// The Rollout.
    pub rollout: String,
    /// What to do.
    pub action: Action,
    /// The replica that asked.
    pub from: String,
}

/// What a replica last heard from the store.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterView {
    /// Whether this replica leads now: it won the election and its session is live by
    /// its own clock. A leader whose session may have lapsed is not one.
    pub leader: bool,
    /// The committed statuses, by rollout.
    pub statuses: BTreeMap<String, Committed>,
    /// Actions asked and not yet applied, oldest first.
    pub requests: Vec<ActionRequest>,
    /// Per rollout, the spec hash of every live member that runs it, by member: the
    /// leader advances a rollout only while they all agree.
    pub specs: BTreeMap<String, BTreeMap<String, String>>,
}

/// Why a status write did not happen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// This replica no longer leads: its leadership ended (another replica may lead).
    #[error("this replica no longer leads the cluster")]
    Fenced,
    /// The status was written by someone else since the revision read.
    #[error("the status changed in the store since it was read")]
    Raced,
    /// The store could not be reached or did not answer in time (no quorum).
    #[error("the cluster's store is unavailable: {0}")]
    Unavailable(String),
}

/// A future the link returns.
pub type LinkFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The store the replicas share, as the control loop uses it.
pub trait ClusterLink: Send + Sync + std::fmt::Debug + 'static {
    /// This replica's name (`--node`).
    fn node(&self) -> &str;
    /// What the replica knows of the store, updated as it changes.
    fn view(&self) -> watch::Receiver<Arc<ClusterView>>;
    /// Writes `status` as `rollout`'s, if this replica still leads and the status's last
    /// write is still `rev`, deleting the `consumed` request keys in the same step. The
    /// new revision on success.
    fn write<'a>(
        &'a self,
        rollout: &'a str,
        status: &'a RolloutStatus,
        rev: i64,
        consumed: &'a [String],
    ) -> LinkFuture<'a, Result<i64, WriteError>>;
    /// Asks the leader to apply `action` to `rollout`; the request's key.
    fn ask<'a>(
        &'a self,
        rollout: &'a str,
        action: &'a Action,
    ) -> LinkFuture<'a, Result<String, WriteError>>;
    /// Publishes the spec hash of each rollout this replica runs (the leader holds a
    /// rollout whose replicas disagree).
    fn publish_specs(&self, specs: BTreeMap<String, String>);
}

pub mod memory;
