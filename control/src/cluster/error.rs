//! The one error type of cluster mode.
//!
//! Callers mostly need to tell three things apart: etcd did not answer in time (the outcome
//! of a write is then unknown: read before deciding again), the session's lease is gone (a
//! new session is needed: this replica's keys and candidacy are gone with it), and
//! everything else, which is worth a log line and a retry on the next tick. Losing a race
//! for a status write or being deposed are not errors: they are
//! [`WriteOutcome`](super::WriteOutcome)s.

use std::time::Duration;

/// What went wrong talking to etcd, or with what was found there.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// etcd did not answer within the call deadline. For a write, whether it was applied is
    /// unknown.
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    /// The request failed: no member reachable, no raft leader (`etcdserver: no leader`), a
    /// broken stream, or etcd refused it.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// The session's lease no longer exists in etcd (it expired or was revoked), or the
    /// session was closed: its keys are gone and a new session is needed.
    #[error("session lease {0:x} is gone")]
    LeaseLost(i64),
    /// A name used in a key (prefix, node, namespace, rollout) that etcd keys here cannot
    /// carry.
    #[error("invalid {what} {value:?}: {hint}")]
    InvalidName {
        /// What the name is for (`prefix`, `node`, ...).
        what: &'static str,
        /// The name as given.
        value: String,
        /// What is allowed.
        hint: &'static str,
    },
    /// An option out of its allowed range.
    #[error("invalid option {what}: {hint}")]
    InvalidOption {
        /// The option.
        what: &'static str,
        /// What is allowed.
        hint: String,
    },
    /// A member key that another live session holds (another replica runs with the same
    /// node name, or this node's previous process's lease has not expired yet).
    #[error("node {node:?} is registered by another session (lease {lease:x})")]
    NodeTaken {
        /// The node name.
        node: String,
        /// The lease of the session that holds it.
        lease: i64,
    },
    /// A value that is not the JSON it should be.
    #[error("{key}: {source}")]
    Decode {
        /// The key the value was read from.
        key: String,
        /// What serde_json said.
        source: serde_json::Error,
    },
    /// etcd answered with something that the protocol rules out (a response without its
    /// header, a transaction branch without its results).
    #[error("unexpected answer from etcd: {0}")]
    Protocol(&'static str),
}

impl ClusterError {
    /// Whether etcd said the lease does not exist (it expired or was revoked).
    pub fn is_lease_not_found(&self) -> bool {
        match self {
            ClusterError::LeaseLost(_) => true,
            ClusterError::Etcd(etcd_client::Error::GRpcStatus(status)) => {
                status.message().contains("lease not found")
            }
            ClusterError::Etcd(etcd_client::Error::LeaseKeepAliveError(message)) => {
                message.contains("lease not found")
            }
            _ => false,
        }
    }
}

/// The result type of cluster mode.
pub type Result<T, E = ClusterError> = std::result::Result<T, E>;
