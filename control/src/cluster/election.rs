//! Leader election on the session lease, and who leads now.
//!
//! One replica runs the control loop. Candidates queue under `<prefix>/v1/leader/`: each
//! writes `<prefix>/v1/leader/<its lease in hex>` (create-if-absent, attached to its session
//! lease, value = its node name), and the key with the lowest create revision leads. When the
//! leader's session ends (revoked on a clean shutdown, expired after a crash), its key is
//! deleted and the next candidate in line leads. This is etcd's own election
//! (`concurrency.Election`, same key layout), so `etcdctl` and other tools read it as such.
//!
//! **The fencing token** is the leader key's create revision ([`Leadership::rev`]): etcd
//! never hands out the same revision twice, so a leader key deleted and written again has a
//! different one. Status writes compare it in the same transaction as the write
//! ([`FencedWrite`](super::FencedWrite)), so a leader that lost its lease while frozen or cut
//! off cannot write, even if it has not noticed yet.
//!
//! **Why client-side** (a transaction, then a watch on the predecessor's key) rather than
//! etcd's server-side `Campaign` RPC: the server-side call blocks until elected, for as long
//! as it takes, so it cannot carry a deadline, and the lab saw such blocked calls killed by
//! HTTP/2 keepalive enforcement and left hanging on members that lost their leader; its
//! cancellation semantics (the server resigns for the client) also depend on the stream
//! staying up. Here every step is a bounded unary call or a watch on one key, and each wait
//! is re-checked from scratch at least every TTL, so a stuck stream costs at most that. The
//! queue and the token are the same as the server-side election's.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::error::{ClusterError, Result};
use super::etcd::{Etcd, Kv, revision_of};
use super::keys::Keys;
use super::session::{Session, SessionState};
use super::watch::{Change, PrefixWatch, StartAt, WatchHealth, WatchUpdate};

/// Proof of leadership: the leader key and its create revision (the fencing token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    /// The leader key, `<prefix>/v1/leader/<lease in hex>`.
    pub key: String,
    /// The leader key's create revision: the fencing token.
    pub rev: i64,
    /// The session lease the key is attached to.
    pub lease: i64,
}

/// Who leads (or is queued), as read from etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderInfo {
    /// The candidate's key.
    pub key: String,
    /// Its create revision (the fencing token, for the leader).
    pub rev: i64,
    /// Its session lease.
    pub lease: i64,
    /// The value the candidate wrote (weir writes its node name).
    pub value: Vec<u8>,
}

impl LeaderInfo {
    fn from_kv(kv: &Kv) -> LeaderInfo {
        LeaderInfo {
            key: kv.key.clone(),
            rev: kv.create_revision,
            lease: kv.lease,
            value: kv.value.clone(),
        }
    }

    /// Whether this is `leadership`'s key (same key, same token).
    pub fn is(&self, leadership: &Leadership) -> bool {
        self.key == leadership.key && self.rev == leadership.rev
    }
}

/// Joins the queue for leadership with `session`'s lease and waits until this session leads.
/// `value` is what observers see (weir writes its node name).
///
/// Joining again with the same session keeps the place in the queue (the key exists
/// already; its value is updated if it differs). Dropping the returned future does not
/// leave the queue: the key stays until [`resign`] or the session ends.
///
/// # Errors
///
/// [`ClusterError::LeaseLost`] when the session is lost (or its key disappears) before this
/// session leads; [`ClusterError::Timeout`] or [`ClusterError::Etcd`] when a step fails (the
/// caller tries again: the place in the queue is kept).
pub async fn campaign(
    etcd: &Etcd,
    keys: &Keys,
    session: &Session,
    value: &[u8],
) -> Result<Leadership> {
    let lease = session.lease();
    if session.state() == SessionState::Lost {
        return Err(ClusterError::LeaseLost(lease));
    }
    let key = keys.candidate(lease);
    let rev = join(etcd, &key, lease, value).await?;
    let leadership = Leadership { key, rev, lease };
    let mut states = session.subscribe();
    loop {
        // My key and my predecessor (the latest candidate before me), at one revision.
        let check = Txn::new().and_then([
            TxnOp::get(leadership.key.clone(), None),
            TxnOp::get(
                keys.leader(),
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_max_create_revision(rev - 1)
                        .with_sort(SortTarget::Create, SortOrder::Descend)
                        .with_limit(1),
                ),
            ),
        ]);
        let response = etcd.txn(check).await?;
        let header = revision_of(response.header())?;
        let mut gets = response.op_responses().into_iter().filter_map(|r| match r {
            TxnOpResponse::Get(get) => Some(get),
            _ => None,
        });
        let (Some(mine), Some(before)) = (gets.next(), gets.next()) else {
            return Err(ClusterError::Protocol(
                "a transaction without its two reads",
            ));
        };
        match mine.kvs().first() {
            Some(kv) if kv.create_revision() == rev => {}
            _ => return Err(ClusterError::LeaseLost(lease)),
        }
        let Some(predecessor) = before.kvs().first().map(Kv::from) else {
            tracing::info!(key = %leadership.key, rev, "elected leader");
            return Ok(leadership);
        };
        // Wait for the predecessor to go, the session to be lost, or the re-check time.
        let recheck = Instant::now() + session.ttl();
        tokio::select! {
            () = wait_deleted(etcd, &predecessor.key, header + 1, recheck) => {}
            _ = states.wait_for(|s| *s == SessionState::Lost) => {
                return Err(ClusterError::LeaseLost(lease));
            }
        }
    }
}

/// Writes the candidacy key if absent; returns its create revision.
async fn join(etcd: &Etcd, key: &str, lease: i64, value: &[u8]) -> Result<i64> {
    let create = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            value.to_vec(),
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(key, None)]);
    let response = etcd.txn(create).await?;
    if response.succeeded() {
        return revision_of(response.header());
    }
    let existing = response
        .op_responses()
        .into_iter()
        .find_map(|r| match r {
            TxnOpResponse::Get(get) => get.kvs().first().map(Kv::from),
            _ => None,
        })
        .ok_or(ClusterError::Protocol("a failed create without its read"))?;
    if existing.value != value {
        // Same place in the queue, new value (as `Proclaim` does).
        let update = Txn::new()
            .when([Compare::create_revision(
                key,
                CompareOp::Equal,
                existing.create_revision,
            )])
            .and_then([TxnOp::put(
                key,
                value.to_vec(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        etcd.txn(update).await?;
    }
    Ok(existing.create_revision)
}

/// Returns when `key` is deleted at or after `from`, when the watch fails (the caller
/// re-checks), or at `until`.
async fn wait_deleted(etcd: &Etcd, key: &str, from: i64, until: Instant) {
    let options = WatchOptions::new().with_start_revision(from);
    let opened = tokio::select! {
        () = sleep_until(until) => return,
        opened = etcd.watch(key, options) => opened,
    };
    let Ok((mut stream, member)) = opened else {
        // Pause a little so a failing etcd is not asked in a tight loop.
        let pause = Duration::from_millis(100).min(until.saturating_duration_since(Instant::now()));
        tokio::time::sleep(pause).await;
        return;
    };
    loop {
        tokio::select! {
            () = sleep_until(until) => return,
            message = stream.message() => match message {
                Ok(Some(response)) => {
                    if response.compact_revision() > 0 {
                        return;
                    }
                    if response.canceled() {
                        // `no leader` on this member: the next watch goes elsewhere.
                        etcd.demote(member);
                        return;
                    }
                    if response.events().iter().any(|e| e.event_type() == EventType::Delete) {
                        return;
                    }
                }
                _ => {
                    etcd.demote(member);
                    return;
                }
            },
        }
    }
}

/// Leaves the queue (or gives up leadership): deletes the key if it is still this one.
/// Returns whether it was deleted.
///
/// # Errors
///
/// [`ClusterError::Timeout`] or [`ClusterError::Etcd`].
pub async fn resign(etcd: &Etcd, leadership: &Leadership) -> Result<bool> {
    let txn = Txn::new()
        .when([Compare::create_revision(
            leadership.key.clone(),
            CompareOp::Equal,
            leadership.rev,
        )])
        .and_then([TxnOp::delete(leadership.key.clone(), None)]);
    Ok(etcd.txn(txn).await?.succeeded())
}

/// Who leads now (a linearizable read), or `None` when nobody campaigns.
///
/// # Errors
///
/// [`ClusterError::Timeout`] or [`ClusterError::Etcd`].
pub async fn leader(etcd: &Etcd, keys: &Keys) -> Result<Option<LeaderInfo>> {
    let name = keys.leader();
    let response = etcd
        .call(|mut client| {
            let options = GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Create, SortOrder::Ascend)
                .with_limit(1);
            let name = name.clone();
            async move { client.get(name, Some(options)).await }
        })
        .await?;
    Ok(response
        .kvs()
        .first()
        .map(|kv| LeaderInfo::from_kv(&Kv::from(kv))))
}

/// Follows who leads, for followers (and the leader, to notice it was deposed) and for
/// `GET /api/v1/cluster`. Built on a [`PrefixWatch`] of the leader keys, so it resumes and
/// recovers from compactions as that does.
#[derive(Debug)]
pub struct LeaderObserver {
    leader: watch::Receiver<Option<LeaderInfo>>,
    health: watch::Receiver<WatchHealth>,
    _stop: DropGuard,
}

impl LeaderObserver {
    /// Starts following the election under `keys`.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (it spawns its loop).
    pub fn start(etcd: &Etcd, keys: &Keys) -> LeaderObserver {
        let mut watch = PrefixWatch::start(etcd, keys.leader(), StartAt::Snapshot);
        let health = watch.subscribe_health();
        let (tx, leader) = watch::channel(None);
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let mut candidates: BTreeMap<String, Kv> = BTreeMap::new();
            loop {
                let update = tokio::select! {
                    () = stopped.cancelled() => return,
                    update = watch.next() => update,
                };
                let Some(update) = update else { return };
                match update {
                    WatchUpdate::Snapshot { kvs, .. } => {
                        candidates = kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
                    }
                    WatchUpdate::Changes { changes, .. } => {
                        for change in changes {
                            match change {
                                Change::Put(kv) => {
                                    candidates.insert(kv.key.clone(), kv);
                                }
                                Change::Delete { key, .. } => {
                                    candidates.remove(&key);
                                }
                            }
                        }
                    }
                }
                let first = candidates
                    .values()
                    .min_by_key(|kv| kv.create_revision)
                    .map(LeaderInfo::from_kv);
                tx.send_if_modified(|current| {
                    if *current == first {
                        return false;
                    }
                    *current = first;
                    true
                });
            }
        });
        LeaderObserver {
            leader,
            health,
            _stop: stop.drop_guard(),
        }
    }

    /// The leader as last seen (`None` before the first answer, or when nobody campaigns).
    pub fn leader(&self) -> Option<LeaderInfo> {
        self.leader.borrow().clone()
    }

    /// A channel of the leader, to react to changes.
    pub fn subscribe(&self) -> watch::Receiver<Option<LeaderInfo>> {
        self.leader.clone()
    }

    /// How the underlying watch is doing (stale: the leader shown may be old).
    pub fn health(&self) -> WatchHealth {
        *self.health.borrow()
    }
}
