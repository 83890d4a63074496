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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
        }
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
