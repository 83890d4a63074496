//! Upstream connections: per endpoint, a keep-alive pool of raw HTTP/1.1 connections, or
//! for an endpoint that speaks h2c, its multiplexed HTTP/2 connections
//! ([`super::h2c`]).
//!
//! The HTTP/1.1 pool is hand-written rather than hyper-util's client because the hot path
//! wants what that client does not give: no task and channel per connection, no
//! per-request URI parsing or pool-key hashing, and the connection driven by the request
//! that uses it, then handed back when its response has been read to the end. HTTP/2 is
//! hyper's client: multiplexing needs a task per connection anyway.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use weir_config::model::UpstreamProtocol;

use crate::error::{Kind, ProxyError};
use crate::upstream::h2c::H2Conns;

/// The pools of every endpoint, by address and protocol. Pools outlive routing snapshots.
#[derive(Debug, Default)]
pub struct Upstreams {
    pools: Mutex<HashMap<(SocketAddr, UpstreamProtocol), Arc<EndpointPool>>>,
}

impl Upstreams {
    /// The pool for `addr` spoken to in `protocol`, created on first use.
    pub fn pool(
        &self,
        addr: SocketAddr,
        authority: &str,
        protocol: UpstreamProtocol,
    ) -> Arc<EndpointPool> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools
            .entry((addr, protocol))
            .or_insert_with(|| Arc::new(EndpointPool::new(addr, authority, protocol)))
            .clone()
    }

    /// Whether the endpoint at `addr` can serve by its active health check: its
    /// [`Health`] is up or unchecked; None when no pool has it yet.
    pub fn endpoint_up(&self, addr: SocketAddr) -> Option<bool> {
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen = None;
        for protocol in [UpstreamProtocol::Http1, UpstreamProtocol::H2c] {
            if let Some(p) = pools.get(&(addr, protocol)) {
                seen = Some(seen.unwrap_or(false) || p.healthy());
            }
        }
        seen
    }

    /// Starts the health checks that are due (each on a task of its own, tracked by
    /// `tasks`). Called by the maintenance task.
    pub fn health_checks(&self, tasks: &tokio_util::task::TaskTracker) {
        let now = Instant::now();
        let due: Vec<(Arc<EndpointPool>, weir_config::model::HealthCheck)> = {
            let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            pools
                .values()
                .filter_map(|p| p.due(now).map(|c| (p.clone(), c)))
                .collect()
        };
        for (p, check) in due {
            tasks.spawn(async move {
                let passed = super::health::probe(&p, &check).await;
                p.health_result(passed);
            });
        }
    }

    /// Closes idle connections older than `idle_timeout`, and forgets pools no
    /// snapshot uses any more. Called by the maintenance task, off the hot path.
    pub fn prune(&self, idle_timeout: Duration) {
        let now = Instant::now();
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.retain(|_, p| {
            p.prune(now, idle_timeout);
            Arc::strong_count(p) > 1 || p.in_flight() > 0
        });
    }

    /// Every pool, for metrics.
    pub fn pools(&self) -> Vec<Arc<EndpointPool>> {
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = pools.values().cloned().collect();
        v.sort_by_key(|p| (p.addr, p.protocol.as_str()));
        v
    }
}

/// A raw HTTP/1.1 upstream connection, for the HTTP/1.1 fast path.
#[derive(Debug)]
pub struct UpConn {
    /// The socket.
    pub stream: tokio::net::TcpStream,
    /// Bytes read from it and not yet used.
    pub buf: bytes::BytesMut,
    /// True until it has carried a request: a fresh connection that fails is not a
    /// stale pooled one, so the request is not sent again.
    pub fresh: bool,
    /// Header positions of the response head being read, reused from response to
    /// response.
    pub(crate) spans: Vec<(crate::codec::head::Span, crate::codec::head::Span)>,
}

/// Read buffer size of an upstream connection.
const UP_BUF: usize = 16 * 1024;

/// One endpoint's idle connections and counters.
pub struct EndpointPool {
    /// Where it connects.
    pub addr: SocketAddr,
    /// The address as written in the config.
    pub authority: Arc<str>,
    /// What weir speaks to it.
    pub protocol: UpstreamProtocol,
    raw_idle: Mutex<Vec<(UpConn, Instant)>>,
    /// The HTTP/2 connections of an h2c endpoint (none for HTTP/1.1).
    pub(crate) h2: H2Conns,
    in_flight: AtomicUsize,
    /// Connections opened.
    pub connects: AtomicU64,
    /// Connections that failed to open.
    pub connect_errors: AtomicU64,
    /// Passive outlier detection, as Envoy's: failures in a row (5xx answers, failed
    /// connects) ...
    failures: AtomicU32,
    /// ... and, once there were [`EJECT_AFTER`] of them, the time (ms on [`clock_ms`]) the
    /// endpoint is left out of picks until (0: never ejected).
    ejected_until: AtomicU64,
    /// Times it was ejected.
    pub ejections: AtomicU64,
    /// Active health ([`Health`] as a `u8`), read by every pick.
    health_state: std::sync::atomic::AtomicU8,
    /// The active check and its runs; checked by the health task, not by requests.
    health: Mutex<Option<Checking>>,
}

/// An endpoint's active health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    /// No check configured: it takes requests.
    Unchecked = 0,
    /// Checked, not passed yet: left out.
    Pending = 1,
    /// Passing: it takes requests.
    Up = 2,
    /// Failing: left out.
    Down = 3,
}

/// The health check of one endpoint and where it stands.
#[derive(Debug)]
struct Checking {
    check: weir_config::model::HealthCheck,
    passes: u32,
    fails: u32,
    next: Instant,
    probing: bool,
}

/// Failures in a row that eject an endpoint (Envoy's `consecutive_5xx` default).
pub const EJECT_AFTER: u32 = 5;
/// How long an ejection lasts, times the number of ejections so far up to
/// [`MAX_EJECTION`] (Envoy's `base_ejection_time`).
pub const BASE_EJECTION: Duration = Duration::from_secs(30);
/// The longest ejection (Envoy's `max_ejection_time`).
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

/// Milliseconds since this process's first call: the clock ejections are kept on (an
/// `AtomicU64` holds it, which an `Instant` cannot be).
pub fn clock_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    // +1 so that a real time is never 0, which means "not ejected". tokio's clock, so that
    // tests in paused time see ejections end.
    let epoch = *EPOCH.get_or_init(Instant::now);
    Instant::now().saturating_duration_since(epoch).as_millis() as u64 + 1
}

impl std::fmt::Debug for EndpointPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointPool")
            .field("addr", &self.addr)
            .field("protocol", &self.protocol)
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

/// Settings a checkout needs.
#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Idle connection lifetime.
    pub idle_timeout: Duration,
    /// Idle connections kept.
    pub max_idle: usize,
}

impl EndpointPool {
    fn new(addr: SocketAddr, authority: &str, protocol: UpstreamProtocol) -> Self {
        EndpointPool {
            addr,
            authority: Arc::from(authority),
            protocol,
            raw_idle: Mutex::new(Vec::new()),
            h2: H2Conns::default(),
            in_flight: AtomicUsize::new(0),
            connects: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            health_state: std::sync::atomic::AtomicU8::new(Health::Unchecked as u8),
            health: Mutex::new(None),
        }
    }

    /// Its active health.
    pub fn health(&self) -> Health {
        match self.health_state.load(Ordering::Relaxed) {
            1 => Health::Pending,
            2 => Health::Up,
            3 => Health::Down,
            _ => Health::Unchecked,
        }
    }

    /// Whether its active check lets it take requests: up, or not checked.
    #[inline]
    pub fn healthy(&self) -> bool {
        matches!(self.health(), Health::Up | Health::Unchecked)
    }

    fn set_state(&self, h: Health) {
        self.health_state.store(h as u8, Ordering::Relaxed);
    }

    /// Sets the active check (from the Service, at each build): a new check starts
    /// [`Health::Pending`]; the same check keeps its standing; none makes it unchecked.
    pub fn set_health_check(&self, check: Option<&weir_config::model::HealthCheck>) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        match (check, h.as_mut()) {
            (None, None) => {}
            (None, Some(_)) => {
                *h = None;
                self.set_state(Health::Unchecked);
            }
            (Some(c), Some(cur)) if cur.check == *c => {}
            (Some(c), cur) => {
                let keep = cur.is_some() && self.health() == Health::Up;
                *h = Some(Checking {
                    check: c.clone(),
                    passes: 0,
                    fails: 0,
                    next: Instant::now(),
                    probing: false,
                });
                if !keep {
                    self.set_state(Health::Pending);
                }
            }
        }
    }

    /// The check due now, if one is (marked as under way).
    fn due(&self, now: Instant) -> Option<weir_config::model::HealthCheck> {
        // Most endpoints have no check: the maintenance tick passes them without a lock.
        if self.health() == Health::Unchecked {
            return None;
        }
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let c = h.as_mut()?;
        if c.probing || c.next > now {
            return None;
        }
        c.probing = true;
        c.next = now + c.check.interval;
        Some(c.check.clone())
    }

    /// Counts a check's result: passes in a row make a pending or down endpoint up
    /// (the first pass a pending one), failures in a row an up one down.
    pub fn health_result(&self, passed: bool) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let Some(c) = h.as_mut() else { return };
        c.probing = false;
        let state = self.health();
        if passed {
            c.passes += 1;
            c.fails = 0;
            let need = if state == Health::Pending {
                1
            } else {
                c.check.healthy
            };
            if state != Health::Up && c.passes >= need {
                self.set_state(Health::Up);
                tracing::info!(endpoint = %self.addr, "health check passes: endpoint in");
            }
        } else {
            c.fails += 1;
            c.passes = 0;
            if state == Health::Up && c.fails >= c.check.unhealthy {
                self.set_state(Health::Down);
                tracing::warn!(endpoint = %self.addr, "health check fails: endpoint out");
            }
        }
    }

    /// Counts a request's outcome for outlier detection, at `now` ([`clock_ms`]): a
    /// failure (a 5xx answer, a failed connect) adds to the run of failures, and the
    /// [`EJECT_AFTER`]th ejects the endpoint; anything else ends the run.
    pub fn outcome_at(&self, failed: bool, now: u64) {
        self.outcome_with(failed, || now);
    }

    /// [`EndpointPool::outcome_at`], the clock read only when it ejects.
    #[inline]
    pub fn outcome(&self, failed: bool) {
        self.outcome_with(failed, clock_ms);
    }

    #[inline]
    fn outcome_with(&self, failed: bool, now: impl FnOnce() -> u64) {
        if !failed {
            if self.failures.load(Ordering::Relaxed) != 0 {
                self.failures.store(0, Ordering::Relaxed);
            }
            return;
        }
        if self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= EJECT_AFTER {
            self.failures.store(0, Ordering::Relaxed);
            let times = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
            let span = (BASE_EJECTION.as_millis() as u64)
                .saturating_mul(times)
                .min(MAX_EJECTION.as_millis() as u64);
            self.ejected_until.store(now() + span, Ordering::Relaxed);
            tracing::info!(endpoint = %self.addr, seconds = span / 1000, "endpoint ejected after {EJECT_AFTER} failures in a row");
        }
    }

    /// Whether outlier detection leaves it out at `now` ([`clock_ms`]).
    #[inline]
    pub fn ejected_at(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until != 0 && now >= until {
            // Back in: picks stop reading the clock for it.
            self.ejected_until.store(0, Ordering::Relaxed);
        }
        until != 0 && now < until
    }

    /// Whether it may be out: ejected, or not healthy (two atomic loads; the clock is
    /// read only then).
    #[inline]
    pub fn maybe_out(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) != 0 || !self.healthy()
    }

    /// Whether it is left out of picks at `now`: ejected by outlier detection, or not
    /// healthy by its active check.
    #[inline]
    pub fn out_at(&self, now: u64) -> bool {
        !self.healthy() || self.ejected_at(now)
    }

    /// Requests in flight to this endpoint.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Idle connections now (HTTP/2 ones without a stream included).
    pub fn idle_count(&self) -> usize {
        self.raw_idle.lock().map(|v| v.len()).unwrap_or(0) + self.h2.idle()
    }

    /// A raw connection: a pooled one that is still open, else a new one.
    ///
    /// # Errors
    /// Connect failures and timeouts, as proxy errors.
    pub(crate) async fn checkout_raw(&self, s: &PoolSettings) -> Result<UpConn, ProxyError> {
        let now = Instant::now();
        loop {
            let next = {
                let mut idle = self.raw_idle.lock().unwrap_or_else(|e| e.into_inner());
                idle.pop()
            };
            let Some((conn, since)) = next else { break };
            if now.duration_since(since) < s.idle_timeout && still_open(&conn.stream) {
                return Ok(conn);
            }
        }
        self.connect_raw(s).await
    }

    /// Opens a new raw connection.
    pub(crate) async fn connect_raw(&self, s: &PoolSettings) -> Result<UpConn, ProxyError> {
        let stream = self.tcp_connect(s).await?;
        self.connects.fetch_add(1, Ordering::Relaxed);
        Ok(UpConn {
            stream,
            buf: bytes::BytesMut::with_capacity(UP_BUF),
            fresh: true,
            spans: Vec::new(),
        })
    }

    /// Gives a raw connection back after a complete exchange.
    pub(crate) fn checkin_raw(&self, mut conn: UpConn, max_idle: usize) {
        if !conn.buf.is_empty() {
            // Bytes beyond the response: the connection is out of step.
            return;
        }
        conn.fresh = false;
        let mut idle = self.raw_idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < max_idle {
            idle.push((conn, Instant::now()));
        }
    }

    pub(super) async fn tcp_connect(
        &self,
        s: &PoolSettings,
    ) -> Result<tokio::net::TcpStream, ProxyError> {
        match tokio::time::timeout(s.connect_timeout, tokio::net::TcpStream::connect(self.addr))
            .await
        {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(stream)
            }
            Ok(Err(e)) => {
                self.connect_errors.fetch_add(1, Ordering::Relaxed);
                Err(ProxyError::with(Kind::ConnectFailed, e))
            }
            Err(_) => {
                self.connect_errors.fetch_add(1, Ordering::Relaxed);
                Err(ProxyError::new(Kind::ConnectTimeout))
            }
        }
    }

    pub(crate) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    fn prune(&self, now: Instant, idle_timeout: Duration) {
        self.h2.prune(now, idle_timeout);
        let mut raw = self.raw_idle.lock().unwrap_or_else(|e| e.into_inner());
        raw.retain(|(c, since)| now.duration_since(*since) < idle_timeout && still_open(&c.stream));
    }
}

/// Whether an idle connection is still open, without a system call in the usual case:
/// the reactor marks an idle socket readable only when the peer closed it (or sent
/// bytes nobody asked for, which makes it unusable too). Only then is it read to tell.
fn still_open(stream: &tokio::net::TcpStream) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        std::task::Poll::Pending => true,
        std::task::Poll::Ready(Err(_)) => false,
        std::task::Poll::Ready(Ok(())) => {
            let mut b = [0u8; 1];
            matches!(stream.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
    }
}

#[cfg(test)]
mod outlier_tests {
    use super::*;

    fn pool() -> EndpointPool {
        EndpointPool::new(
            "127.0.0.1:9".parse().unwrap(),
            "127.0.0.1:9",
            UpstreamProtocol::Http1,
        )
    }

    #[test]
    fn five_failures_in_a_row_eject_and_a_success_ends_the_run() {
        let p = pool();
        let base = BASE_EJECTION.as_millis() as u64;
        for _ in 0..4 {
            p.outcome_at(true, 1000);
        }
        p.outcome_at(false, 1000);
        for _ in 0..4 {
            p.outcome_at(true, 1000);
        }
        assert!(!p.ejected_at(1000), "runs of four do not eject");
        p.outcome_at(true, 1000);
        assert!(p.ejected_at(1000) && p.ejected_at(1000 + base - 1));
        assert!(!p.ejected_at(1000 + base), "back after the base time");
        assert!(!p.maybe_out(), "and picks stop reading the clock");
        // The second ejection lasts twice as long.
        for _ in 0..5 {
            p.outcome_at(true, 100_000);
        }
        assert!(p.ejected_at(100_000 + 2 * base - 1));
        assert!(!p.ejected_at(100_000 + 2 * base));
        assert_eq!(p.ejections.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn ejections_stop_at_the_longest() {
        let p = pool();
        for round in 0..20u64 {
            for _ in 0..5 {
                p.outcome_at(true, round * 1_000_000);
            }
        }
        let max = MAX_EJECTION.as_millis() as u64;
        assert!(p.ejected_at(19_000_000 + max - 1));
        assert!(!p.ejected_at(19_000_000 + max));
    }
}
