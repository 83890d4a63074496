//! A replica's session: one etcd lease, kept alive, with a local deadline.
//!
//! Everything a replica holds in etcd (its member key, its candidacy, its measurements) is
//! attached to one lease, so one keepalive stream keeps it all, and a dead replica
//! disappears everywhere at once when the lease expires. The TTL is the takeover time: 3 s
//! by default (cluster-notes §0.4: a successor was elected 2.97–3.20 s after a leader was
//! killed), renewed every second, so two renewals can be lost before anything happens.
//!
//! Two facts shape the loop:
//!
//! - **The keepalive stream never reconnects by itself.** In the lab a member kill left it
//!   dead and a TTL-3 lease lapsed. The loop here re-opens it, on whichever member answers,
//!   whenever it breaks, when a renewal goes unanswered for a call deadline, and gives up only
//!   when etcd says the lease does not exist ([`SessionState::Lost`]).
//! - **The holder cannot ask etcd whether it still holds the lease** when it most needs to
//!   know (etcd unreachable, or this process frozen for a while). So the session keeps a
//!   local deadline on the monotonic clock: the *send* time of the last answered renewal
//!   plus the TTL it returned. etcd received that renewal after it was sent and expires the
//!   lease at least a TTL after receiving it (etcd only ever extends leases: on a raft
//!   leader change, and when quorum returns), so before the deadline the lease certainly
//!   exists, whatever the clocks' offsets; only a clock-rate difference beyond the margin
//!   (etcd checks expiry every 500 ms) could break this. Past the deadline the holder is
//!   [`SessionState::Suspended`]: a leader must stop acting as one. It is not an abdication:
//!   when a renewal is answered again (etcd back, process thawed, lease not yet expired),
//!   the session is [`SessionState::Live`] again, with the same lease and keys.
//!
//! [`Session::state`] reads the clock itself, so a process that wakes from a freeze sees
//! `Suspended` at once, before its loop has run.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, sleep_until};
use tokio_util::sync::CancellationToken;

use super::error::{ClusterError, Result};
use super::etcd::Etcd;

/// The session lease's TTL by default: the time a dead leader's successor waits.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3);
/// How often the lease is renewed by default.
pub const DEFAULT_KEEPALIVE_EVERY: Duration = Duration::from_secs(1);
/// The longest pause between attempts to re-open a broken keepalive stream.
const MAX_RETRY: Duration = Duration::from_millis(500);

/// What the holder of a session may assume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// The lease certainly exists: the local deadline has not passed.
    Live,
    /// The local deadline has passed without a renewal being answered: the lease may have
    /// expired. Keep serving, but act on nothing that needs the lease (a leader stops
    /// leading). It becomes `Live` again if a renewal is answered.
    Suspended,
    /// etcd said the lease does not exist, or the session was closed: its keys are gone. A
    /// new session is needed.
    Lost,
}

/// The session's timings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    /// The lease's TTL, in whole seconds (3 s by default). etcd raises a TTL below its
    /// minimum (1.5 election timeouts: 2 s with etcd's defaults).
    pub ttl: Duration,
    /// How often the lease is renewed (1 s by default); less than the TTL.
    pub keepalive_every: Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            ttl: DEFAULT_TTL,
            keepalive_every: DEFAULT_KEEPALIVE_EVERY,
        }
    }
}

/// State shared by the handle and the keepalive loop.
#[derive(Debug)]
struct Shared {
    /// The local deadline (see the module docs). Short critical sections, never across an
    /// `.await`.
    deadline: Mutex<Instant>,
    /// Published state: what the loop last computed.
    state: watch::Sender<SessionState>,
}

impl Shared {
    fn deadline(&self) -> Instant {
        *self
            .deadline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Moves the deadline to `sent + ttl` if that is later.
    fn renew(&self, sent: Instant, ttl: Duration) {
        let mut deadline = self
            .deadline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *deadline = (*deadline).max(sent + ttl);
    }

    /// The state now, from the clock (a `Lost` session stays lost).
    fn current(&self) -> SessionState {
        if *self.state.borrow() == SessionState::Lost {
            SessionState::Lost
        } else if Instant::now() < self.deadline() {
            SessionState::Live
        } else {
            SessionState::Suspended
        }
    }

    /// Publishes the state now; tells watchers only when it changed.
    fn publish(&self, lease: i64) {
        let now = self.current();
        self.state.send_if_modified(|state| {
            if *state == now {
                return false;
            }
            tracing::info!(lease = format_args!("{lease:x}"), from = ?*state, to = ?now, "etcd session");
            *state = now;
            true
        });
    }

    fn lose(&self, lease: i64) {
        self.state.send_if_modified(|state| {
            if *state == SessionState::Lost {
                return false;
            }
            tracing::warn!(lease = format_args!("{lease:x}"), "etcd session lost");
            *state = SessionState::Lost;
            true
        });
    }
}

/// A live session lease and its keepalive loop. See the [module docs](self).
///
/// Dropping the session stops renewing it: etcd deletes its keys when the TTL runs out (as
/// when the process dies). [`close`](Self::close) revokes it at once instead.
#[derive(Debug)]
pub struct Session {
    etcd: Etcd,
    lease: i64,
    ttl: Duration,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Session {
    /// Grants a lease and starts keeping it alive.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidOption`] for a TTL that is not whole seconds of at least 1 s or
    /// a renewal interval not below it; [`ClusterError::Timeout`] or [`ClusterError::Etcd`]
    /// when the lease cannot be granted.
    pub async fn start(etcd: &Etcd, options: SessionOptions) -> Result<Session> {
        if options.ttl < Duration::from_secs(1) || options.ttl.subsec_nanos() != 0 {
            return Err(ClusterError::InvalidOption {
                what: "session ttl",
                hint: format!("whole seconds, at least 1 s, not {:?}", options.ttl),
            });
        }
        if options.keepalive_every.is_zero() || options.keepalive_every >= options.ttl {
            return Err(ClusterError::InvalidOption {
                what: "session keepalive_every",
                hint: format!(
                    "more than zero and less than the TTL ({:?}), not {:?}",
                    options.ttl, options.keepalive_every
                ),
            });
        }
        let ttl_secs = i64::try_from(options.ttl.as_secs()).unwrap_or(i64::MAX);
        let sent = Instant::now();
        let (lease, granted) = etcd.lease_grant(ttl_secs).await?;
        let ttl = Duration::from_secs(u64::try_from(granted.max(1)).unwrap_or(1));
        let (state, _) = watch::channel(SessionState::Live);
        let shared = Arc::new(Shared {
            deadline: Mutex::new(sent + ttl),
            state,
        });
        let stop = CancellationToken::new();
        let keeper = Keeper {
            etcd: etcd.clone(),
            lease,
            ttl,
            every: options.keepalive_every,
            shared: shared.clone(),
            stop: stop.clone(),
        };
        tokio::spawn(keeper.run());
        tracing::info!(
            lease = format_args!("{lease:x}"),
            ?ttl,
            "etcd session started"
        );
        Ok(Session {
            etcd: etcd.clone(),
            lease,
            ttl,
            shared,
            stop,
        })
    }

    /// The lease's id: the session's identity, different for every start of a replica.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// The TTL etcd granted.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The state now, read from the clock: `Suspended` as soon as the deadline has passed,
    /// even if the keepalive loop has not run since (a thawed process).
    pub fn state(&self) -> SessionState {
        self.shared.current()
    }

    /// The local deadline: until then the lease certainly exists.
    pub fn deadline(&self) -> Instant {
        self.shared.deadline()
    }

    /// A channel of the state as the keepalive loop sees it, for tasks that must react to
    /// changes (a leader suspending its loop).
    pub fn subscribe(&self) -> watch::Receiver<SessionState> {
        self.shared.state.subscribe()
    }

    /// Waits until the session is lost (or closed).
    pub async fn lost(&self) {
        let mut states = self.subscribe();
        let _ = states.wait_for(|s| *s == SessionState::Lost).await;
    }

    /// Stops renewing and revokes the lease, so that its keys go at once (a clean
    /// shutdown: the next leader takes over without waiting for the TTL).
    ///
    /// # Errors
    ///
    /// When the revocation fails; the lease then expires after its TTL.
    pub async fn close(self) -> Result<()> {
        self.stop.cancel();
        self.shared.lose(self.lease);
        match self.etcd.lease_revoke(self.lease).await {
            Err(e) if !e.is_lease_not_found() => Err(e),
            _ => Ok(()),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The keepalive loop's own state.
struct Keeper {
    etcd: Etcd,
    lease: i64,
    ttl: Duration,
    every: Duration,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

/// Why a keepalive stream ended.
enum Ended {
    /// The session was dropped or closed.
    Stopped,
    /// etcd said the lease is gone.
    Lost,
    /// The stream broke or went silent: open another.
    Broken,
}

impl Keeper {
    async fn run(self) {
        let mut retry = Duration::from_millis(50);
        loop {
            let sent = Instant::now();
            let opened = tokio::select! {
                () = self.stop.cancelled() => break,
                opened = self.etcd.lease_keep_alive(self.lease) => opened,
            };
            let ended = match opened {
                Ok(((keeper, stream), member)) => {
                    // Opening sent a renewal and read its answer (with a positive TTL).
                    self.shared.renew(sent, self.ttl);
                    self.shared.publish(self.lease);
                    retry = Duration::from_millis(50);
                    let ended = self.keep(keeper, stream).await;
                    if matches!(ended, Ended::Broken) {
                        // This member broke the stream or went silent: renew elsewhere.
                        self.etcd.demote(member);
                    }
                    ended
                }
                Err(e) if e.is_lease_not_found() => Ended::Lost,
                Err(e) => {
                    tracing::debug!(lease = format_args!("{:x}", self.lease), error = %e, "etcd keepalive stream did not open");
                    Ended::Broken
                }
            };
            match ended {
                Ended::Stopped => break,
                Ended::Lost => {
                    self.shared.lose(self.lease);
                    return;
                }
                Ended::Broken => {}
            }
            // Wait a little before the next attempt, noticing the deadline meanwhile.
            let until = Instant::now() + retry;
            retry = (retry * 2).min(MAX_RETRY);
            loop {
                self.shared.publish(self.lease);
                let deadline = self.shared.deadline();
                tokio::select! {
                    () = self.stop.cancelled() => {
                        self.shared.lose(self.lease);
                        return;
                    }
                    () = sleep_until(until) => break,
                    () = sleep_until(deadline), if deadline > Instant::now() => {}
                }
            }
        }
        self.shared.lose(self.lease);
    }

    /// Renews every `every` on an open stream until it ends.
    async fn keep(
        &self,
        mut keeper: etcd_client::LeaseKeeper,
        mut stream: etcd_client::LeaseKeepAliveStream,
    ) -> Ended {
        let mut ticks = tokio::time::interval_at(Instant::now() + self.every, self.every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Send times of the renewals not answered yet, oldest first (answers come in order).
        let mut pending: VecDeque<Instant> = VecDeque::new();
        loop {
            self.shared.publish(self.lease);
            let deadline = self.shared.deadline();
            let answer_due = pending.front().map(|sent| *sent + self.etcd.call_timeout());
            tokio::select! {
                () = self.stop.cancelled() => return Ended::Stopped,
                _ = ticks.tick() => {
                    let sent = Instant::now();
                    if keeper.keep_alive().await.is_err() {
                        return Ended::Broken;
                    }
                    pending.push_back(sent);
                }
                answer = stream.message() => match answer {
                    Ok(Some(answer)) => {
                        let sent = pending.pop_front();
                        if answer.ttl() <= 0 {
                            return Ended::Lost;
                        }
                        if let Some(sent) = sent {
                            let ttl = Duration::from_secs(u64::try_from(answer.ttl()).unwrap_or(1));
                            self.shared.renew(sent, ttl);
                        }
                    }
                    Ok(None) => return Ended::Broken,
                    Err(e) => {
                        let e = ClusterError::from(e);
                        if e.is_lease_not_found() {
                            return Ended::Lost;
                        }
                        tracing::debug!(lease = format_args!("{:x}", self.lease), error = %e, "etcd keepalive stream broke");
                        return Ended::Broken;
                    }
                },
                // A renewal unanswered for a call deadline: the stream is stuck (a frozen or
                // cut-off member); open another, perhaps on another member.
                () = sleep_until(answer_due.unwrap_or(deadline)), if answer_due.is_some() => {
                    return Ended::Broken;
                }
                () = sleep_until(deadline), if deadline > Instant::now() => {}
            }
        }
    }
}
