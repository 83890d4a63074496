//! A watch of a key prefix that neither loses nor repeats a change, and knows when it is
//! behind.
//!
//! Replicas apply weights from the committed status as the watch delivers it, so the watch
//! is the data plane's only source of truth in cluster mode. etcd's watch guarantees order
//! and no gaps on one stream, and nothing across streams; the rest is done here
//! (cluster-notes §1.4, §1.5):
//!
//! - **Resuming.** Streams break: a member dies, a member loses its raft leader (with
//!   `require_leader` etcd cancels the stream after three election timeouts), a connection
//!   drops. The loop remembers the revision of the last change it delivered and re-opens
//!   the stream at the next revision, on whichever member answers, so the consumer sees
//!   every change once, in order. Progress answers (below) do not move that revision: in
//!   etcd before the fix of etcd-io/etcd#15220 (3.4.23 included) a requested progress
//!   report is not ordered with the events of a watch that is still catching up, and can
//!   carry a revision whose events have not been sent yet; resuming after it could skip them.
//! - **Compaction.** A watch asked to start at a revision that has been compacted away is
//!   answered `created`, then `canceled` with `compact_revision > 0` (3.4 gives no cancel
//!   reason: the revision is the signal). The history in between is gone and no watch can
//!   replay it; the loop then reads the whole prefix (a linearizable read) and delivers it as
//!   a [`WatchUpdate::Snapshot`], and watches from that read's revision + 1. Missing the
//!   intermediate values is harmless for what cluster mode keeps here (only the latest status
//!   matters).
//! - **Staleness.** A watch on a member cut off from the others (or behind a one-way cut)
//!   gets no error at all for 5–6 s: it is just quiet, and quiet looks like "no change".
//!   Every second the loop asks etcd for a progress report (`request_progress`); etcd answers
//!   with its current revision once the watch has caught up. Nothing heard for 3 s means the
//!   replica may be behind: [`WatchHealth::stale`] turns true (say so, keep serving the last
//!   weights), and the stream is re-opened, perhaps on another member.
//!
//! The loop runs as a Tokio task until the [`PrefixWatch`] is dropped.

use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, sleep_until};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::etcd::{Etcd, Kv, revision_of};

/// How often a progress report is asked for.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Nothing heard from etcd for this long: the watch is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(3);
/// How many updates may wait for the consumer before the loop waits for it.
const BUFFER: usize = 256;
/// The longest pause between attempts to re-open the stream.
const MAX_RETRY: Duration = Duration::from_millis(500);

/// Where a watch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// With a [`WatchUpdate::Snapshot`] of the prefix now, then the changes after it.
    Snapshot,
    /// With the changes after this revision (the last one the consumer has seen). Falls back
    /// to a snapshot if that history has been compacted.
    After(i64),
}

/// One key's change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The key was written; this is its new value.
    Put(Kv),
    /// The key was deleted (or its lease expired) at `revision`.
    Delete {
        /// The key.
        key: String,
        /// The revision of the deletion.
        revision: i64,
    },
}

impl Change {
    /// The key that changed.
    pub fn key(&self) -> &str {
        match self {
            Change::Put(kv) => &kv.key,
            Change::Delete { key, .. } => key,
        }
    }

    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        match self {
            Change::Put(kv) => kv.mod_revision,
            Change::Delete { revision, .. } => *revision,
        }
    }
}

/// What the consumer of a [`PrefixWatch`] receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchUpdate {
    /// Every key under the prefix as of `revision`: replaces whatever the consumer had (at
    /// the start, and after a compaction made the changes since the last update
    /// unreachable).
    Snapshot {
        /// The revision the prefix was read at.
        revision: i64,
        /// The keys, sorted.
        kvs: Vec<Kv>,
    },
    /// Changes in revision order, the first one after the previous update.
    Changes {
        /// The revision of the last change.
        revision: i64,
        /// The changes.
        changes: Vec<Change>,
    },
}

impl WatchUpdate {
    /// The revision the consumer is at after applying this update.
    pub fn revision(&self) -> i64 {
        match self {
            WatchUpdate::Snapshot { revision, .. } | WatchUpdate::Changes { revision, .. } => {
                *revision
            }
        }
    }
}

/// How a watch is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchHealth {
    /// Nothing heard from etcd for [`STALE_AFTER`]: what the consumer has may be old.
    pub stale: bool,
    /// When etcd was last heard from (an event, a progress report, a snapshot).
    pub last_heard: Instant,
    /// The highest revision etcd has reported (a delivered change, a snapshot, a progress
    /// report); 0 before the first. Informative only (see the module docs on progress).
    pub revision: i64,
    /// How many times the stream was re-opened.
    pub reconnects: u64,
    /// How many times the watch fell behind a compaction and re-read the prefix.
    pub compactions: u64,
}

/// A watch of every key under a prefix. See the [module docs](self).
#[derive(Debug)]
pub struct PrefixWatch {
    updates: mpsc::Receiver<WatchUpdate>,
    health: watch::Receiver<WatchHealth>,
    _stop: DropGuard,
}

impl PrefixWatch {
    /// Starts watching `prefix` from `start`. Returns at once; the first update comes when
    /// etcd answers.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (it spawns its loop).
    pub fn start(etcd: &Etcd, prefix: impl Into<String>, start: StartAt) -> PrefixWatch {
        let (updates_tx, updates) = mpsc::channel(BUFFER);
        let (health_tx, health) = watch::channel(WatchHealth {
            stale: false,
            last_heard: Instant::now(),
            revision: 0,
            reconnects: 0,
            compactions: 0,
        });
        let stop = CancellationToken::new();
        let watcher = Watcher {
            etcd: etcd.clone(),
            prefix: prefix.into(),
            next: match start {
                StartAt::Snapshot => None,
                StartAt::After(revision) => Some(revision.saturating_add(1).max(1)),
            },
            updates: updates_tx,
            health: health_tx,
            stop: stop.clone(),
        };
        tokio::spawn(watcher.run());
        PrefixWatch {
            updates,
            health,
            _stop: stop.drop_guard(),
        }
    }

    /// The next update; `None` only if the loop has ended (it ends when this handle is
    /// dropped, so in practice never).
    pub async fn next(&mut self) -> Option<WatchUpdate> {
        self.updates.recv().await
    }

    /// How the watch is doing now.
    pub fn health(&self) -> WatchHealth {
        *self.health.borrow()
    }

    /// A channel of [`WatchHealth`], to react when the watch turns stale or fresh.
    pub fn subscribe_health(&self) -> watch::Receiver<WatchHealth> {
        self.health.clone()
    }
}

/// The loop behind a [`PrefixWatch`].
struct Watcher {
    etcd: Etcd,
    prefix: String,
    /// The revision to watch from; `None`: read a snapshot first.
    next: Option<i64>,
    updates: mpsc::Sender<WatchUpdate>,
    health: watch::Sender<WatchHealth>,
    stop: CancellationToken,
}

/// Why one stream (or snapshot read) ended.
enum Ended {
    /// The handle was dropped.
    Stopped,
    /// Go on at once (a snapshot was read, or one is due after a compaction).
    Next,
    /// Something failed: pause a little, then go on.
    Retry,
}

impl Watcher {
    async fn run(mut self) {
        let mut retry = Duration::from_millis(50);
        loop {
            let ended = match self.next {
                None => self.snapshot().await,
                Some(from) => self.stream(from).await,
            };
            match ended {
                Ended::Stopped => return,
                Ended::Next => continue,
                Ended::Retry => {}
            }
            // A stream that worked until a moment ago is retried quickly; one that keeps
            // failing, less and less often.
            if self.heard_recently() {
                retry = Duration::from_millis(50);
            }
            let until = Instant::now() + retry;
            retry = (retry * 2).min(MAX_RETRY);
            loop {
                self.check_stale();
                let stale_at = self.health.borrow().last_heard + STALE_AFTER;
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    () = sleep_until(until) => break,
                    () = sleep_until(stale_at), if stale_at > Instant::now() => {}
                }
            }
        }
    }

    /// Whether etcd answered within the last second (a stream that worked: retry quickly).
    fn heard_recently(&self) -> bool {
        self.health.borrow().last_heard.elapsed() < PROGRESS_EVERY
    }

    /// Reads the whole prefix and delivers it as a snapshot.
    async fn snapshot(&mut self) -> Ended {
        let listing = tokio::select! {
            () = self.stop.cancelled() => return Ended::Stopped,
            listing = self.etcd.get_prefix(&self.prefix) => listing,
        };
        match listing {
            Ok(listing) => {
                let revision = listing.revision;
                self.heard(revision);
                if !self
                    .deliver(WatchUpdate::Snapshot {
                        revision,
                        kvs: listing.kvs,
                    })
                    .await
                {
                    return Ended::Stopped;
                }
                self.next = Some(revision + 1);
                Ended::Next
            }
            Err(e) => {
                tracing::debug!(prefix = %self.prefix, error = %e, "etcd watch: snapshot read failed");
                Ended::Retry
            }
        }
    }

    /// Watches from `from` until the stream breaks, goes quiet or falls behind a compaction.
    async fn stream(&mut self, from: i64) -> Ended {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from)
            .with_progress_notify();
        let opened = tokio::select! {
            () = self.stop.cancelled() => return Ended::Stopped,
            opened = self.etcd.watch(&self.prefix, options) => opened,
        };
        let (mut stream, member) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                tracing::debug!(prefix = %self.prefix, error = %e, "etcd watch did not open");
                self.reconnected();
                return Ended::Retry;
            }
        };
        let mut progress =
            tokio::time::interval_at(Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
        progress.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let opened_at = Instant::now();
        loop {
            self.check_stale();
            tokio::select! {
                () = self.stop.cancelled() => return Ended::Stopped,
                _ = progress.tick() => {
                    // Quiet for too long (and for at least one full period on this stream):
                    // this member may be cut off; try another.
                    let last = self.health.borrow().last_heard.max(opened_at);
                    if last.elapsed() >= STALE_AFTER {
                        tracing::debug!(prefix = %self.prefix, "etcd watch: no progress report, re-opening");
                        self.lost_member(member);
                        return Ended::Retry;
                    }
                    if stream.request_progress().await.is_err() {
                        self.lost_member(member);
                        return Ended::Retry;
                    }
                }
                message = stream.message() => {
                    let response = match message {
                        Ok(Some(response)) => response,
                        Ok(None) => {
                            self.lost_member(member);
                            return Ended::Retry;
                        }
                        Err(e) => {
                            tracing::debug!(prefix = %self.prefix, error = %e, "etcd watch stream broke");
                            self.lost_member(member);
                            return Ended::Retry;
                        }
                    };
                    if response.compact_revision() > 0 {
                        tracing::info!(
                            prefix = %self.prefix,
                            from = self.next.unwrap_or(0),
                            compacted = response.compact_revision(),
                            "etcd watch fell behind a compaction: re-reading the prefix"
                        );
                        self.health.send_modify(|h| h.compactions += 1);
                        self.next = None;
                        return Ended::Next;
                    }
                    if response.canceled() {
                        tracing::debug!(prefix = %self.prefix, reason = response.cancel_reason(), "etcd watch canceled");
                        self.lost_member(member);
                        return Ended::Retry;
                    }
                    let header = revision_of(response.header()).unwrap_or(0);
                    if !response.events().is_empty() {
                        let mut changes = Vec::with_capacity(response.events().len());
                        for event in response.events() {
                            let Some(kv) = event.kv() else { continue };
                            let kv = Kv::from(kv);
                            changes.push(match event.event_type() {
                                EventType::Put => Change::Put(kv),
                                EventType::Delete => Change::Delete {
                                    revision: kv.mod_revision,
                                    key: kv.key,
                                },
                            });
                        }
                        let Some(revision) = changes.last().map(Change::revision) else {
                            continue;
                        };
                        self.next = Some(revision + 1);
                        self.heard(revision);
                        if !self.deliver(WatchUpdate::Changes { revision, changes }).await {
                            return Ended::Stopped;
                        }
                    } else if response.created() {
                        // The watch exists; events (if any are due) follow. Its header's
                        // revision says nothing about what was delivered.
                        self.heard(0);
                    } else {
                        // A progress report: etcd is there. Its revision is not used to resume
                        // (see the module docs).
                        self.heard(header);
                    }
                }
            }
        }
    }

    /// Hands an update to the consumer; `false` when the consumer is gone or the watch was
    /// stopped.
    async fn deliver(&self, update: WatchUpdate) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => false,
            sent = self.updates.send(update) => sent.is_ok(),
        }
    }

    /// etcd answered: the watch is fresh, and complete up to `revision` (0: unknown).
    fn heard(&self, revision: i64) {
        self.health.send_if_modified(|h| {
            let was_stale = h.stale;
            h.last_heard = Instant::now();
            h.stale = false;
            h.revision = h.revision.max(revision);
            if was_stale {
                tracing::info!(prefix = %self.prefix, "etcd watch is fresh again");
            }
            true
        });
    }

    /// The stream on `member` broke, was cancelled or went quiet: count a reconnect, and
    /// have the next stream opened on another member.
    fn lost_member(&self, member: usize) {
        self.etcd.demote(member);
        self.reconnected();
    }

    fn reconnected(&self) {
        self.health.send_modify(|h| h.reconnects += 1);
    }

    /// Turns the watch stale when nothing was heard for [`STALE_AFTER`].
    fn check_stale(&self) {
        self.health.send_if_modified(|h| {
            if h.stale || h.last_heard.elapsed() < STALE_AFTER {
                return false;
            }
            tracing::warn!(prefix = %self.prefix, since = ?h.last_heard.elapsed(), "etcd watch is stale");
            h.stale = true;
            true
        });
    }
}
