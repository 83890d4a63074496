//! Fenced writes: the leader's status writes, which a deposed leader cannot make.
//!
//! A leader can lose its leadership without knowing it: frozen by a GC pause or `SIGSTOP`
//! past its TTL, or cut off from etcd while its successor takes over. Its next write must
//! fail however late it wakes up (Kleppmann's condition for a safe lock: the store checks the
//! token in the same step as the write). Every status write here is one transaction:
//!
//! ```text
//! If   create_revision(my leader key) == my leader rev      -- I still lead
//! AND  mod_revision(status key) == the revision I last read  -- nobody wrote since
//! Then put status (and delete what it consumed)
//! Else get my leader key, get status
//! ```
//!
//! and its outcome says which compare failed ([`WriteOutcome`]): `Fenced` (the leader key is
//! gone or is another one: stop acting as leader) or `Raced` (the status changed under it:
//! re-read it, which the else branch already did, and decide again). In the lab a leader
//! frozen past its TTL got `Fenced` 4 ms after it woke (cluster-notes §0.2).
//!
//! A write that times out may or may not have been applied: read the key before deciding
//! again (the next fenced write would be `Raced` anyway if it was applied).

use etcd_client::{Compare, CompareOp, DeleteOptions, PutOptions, Txn, TxnOp, TxnOpResponse};

use super::election::Leadership;
use super::error::{ClusterError, Result};
use super::etcd::{Etcd, Kv, revision_of};

/// What became of a fenced write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written, at this revision (the key's new mod revision).
    Written {
        /// The write's revision.
        revision: i64,
    },
    /// Not written: the writer no longer leads (its leader key is gone or was written anew).
    /// Whatever the status key holds was not checked.
    Fenced,
    /// Not written: the writer still leads, but the key changed since the revision it
    /// expected. `current` is the key now (`None`: it does not exist).
    Raced {
        /// The key as it is now.
        current: Option<Kv>,
    },
}

/// One fenced write (see the [module docs](self)): a value for a key, valid only while the
/// writer leads and the key is still at the expected revision.
#[derive(Clone, Debug)]
pub struct FencedWrite {
    fence: Leadership,
    key: String,
    expected: i64,
    value: Vec<u8>,
    lease: Option<i64>,
    deletes: Vec<String>,
}

impl FencedWrite {
    /// Writes `value` at `key` if `leadership` still holds and the key's mod revision is
    /// `expected` (0: the key must not exist).
    pub fn new(
        leadership: &Leadership,
        key: impl Into<String>,
        expected: i64,
        value: impl Into<Vec<u8>>,
    ) -> FencedWrite {
        FencedWrite {
            fence: leadership.clone(),
            key: key.into(),
            expected,
            value: value.into(),
            lease: None,
            deletes: Vec::new(),
        }
    }

    /// Attaches the written key to a lease (the status itself has none; a leader's own
    /// records may).
    pub fn with_lease(mut self, lease: i64) -> FencedWrite {
        self.lease = Some(lease);
        self
    }

    /// Also deletes `key` in the same transaction (a consumed request). It must not be the
    /// written key: etcd refuses a transaction that writes one key twice.
    pub fn also_delete(mut self, key: impl Into<String>) -> FencedWrite {
        self.deletes.push(key.into());
        self
    }

    /// Sends the transaction.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidOption`] when a key to delete is the written key;
    /// [`ClusterError::Timeout`] (the write may or may not have been applied) or
    /// [`ClusterError::Etcd`].
    pub async fn send(self, etcd: &Etcd) -> Result<WriteOutcome> {
        if self.deletes.contains(&self.key) {
            return Err(ClusterError::InvalidOption {
                what: "also_delete",
                hint: format!("{} is the written key", self.key),
            });
        }
        let put_options = self.lease.map(|id| PutOptions::new().with_lease(id));
        let mut then = vec![TxnOp::put(self.key.clone(), self.value, put_options)];
        then.extend(
            self.deletes
                .into_iter()
                .map(|key| TxnOp::delete(key, None::<DeleteOptions>)),
        );
        let txn = Txn::new()
            .when([
                Compare::create_revision(self.fence.key.clone(), CompareOp::Equal, self.fence.rev),
                Compare::mod_revision(self.key.clone(), CompareOp::Equal, self.expected),
            ])
            .and_then(then)
            .or_else([
                TxnOp::get(self.fence.key.clone(), None),
                TxnOp::get(self.key.clone(), None),
            ]);
        let response = etcd.txn(txn).await?;
        if response.succeeded() {
            return Ok(WriteOutcome::Written {
                revision: revision_of(response.header())?,
            });
        }
        let mut reads = response.op_responses().into_iter().filter_map(|r| match r {
            TxnOpResponse::Get(get) => Some(get.kvs().first().map(Kv::from)),
            _ => None,
        });
        let (Some(leader), Some(current)) = (reads.next(), reads.next()) else {
            return Err(ClusterError::Protocol(
                "a failed write without its two reads",
            ));
        };
        if leader.is_none_or(|kv| kv.create_revision != self.fence.rev) {
            return Ok(WriteOutcome::Fenced);
        }
        Ok(WriteOutcome::Raced { current })
    }
}
