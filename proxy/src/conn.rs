//! What connections share and what each knows of itself: the routing snapshot, the
//! proxy-wide counters, and per connection its listener, client and admission slot.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;

use crate::error::Kind;
use crate::routing::RouteTable;

/// Settings of the client side that are fixed at start.
#[derive(Clone, Copy, Debug)]
pub struct ServerSettings {
    /// Bytes of request head allowed (HTTP/1.1), and of header list (HTTP/2).
    pub max_header_bytes: usize,
    /// Time to receive a whole request head, and to finish a TLS handshake.
    pub header_timeout: Duration,
    /// Idle keep-alive lifetime.
    pub idle_timeout: Duration,
    /// Longest wait for a request body's next bytes, and the grace before
    /// `min_body_rate` applies.
    pub body_timeout: Duration,
    /// Slowest average request body rate after the grace, bytes per second (0: none).
    pub min_body_rate: u64,
    /// Longest time a write to the client may make no progress.
    pub send_timeout: Duration,
}

/// Counters of the proxy as a whole (not of one backend).
#[derive(Debug, Default)]
pub struct ProxyCounters {
    /// Errors made by the proxy, by [`Kind`] (indexed by position in `Kind::ALL`).
    pub errors: [AtomicU64; Kind::ALL.len()],
    /// Client connections accepted.
    pub connections_accepted: AtomicU64,
    /// Client connections closed at once because `maxConnections` was reached.
    pub connections_rejected: AtomicU64,
    /// Waiting client connections closed at `maxConnections` to make room for new ones.
    pub connections_evicted: AtomicU64,
    /// Client connections open now.
    pub connections_open: AtomicU64,
    /// TLS handshakes that failed.
    pub tls_handshake_errors: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Upgraded connections (WebSocket and others) open now.
    pub upgrades_open: AtomicU64,
}

impl ProxyCounters {
    pub(crate) fn error(&self, kind: Kind) {
        if let Some(i) = Kind::ALL.iter().position(|k| *k == kind) {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What every request needs, shared by all connections.
#[derive(Debug)]
pub struct Shared {
    /// The routing snapshot (the access log sink included).
    pub table: Arc<ArcSwap<RouteTable>>,
    /// Proxy-wide counters.
    pub counters: Arc<ProxyCounters>,
    /// Work a request leaves behind (mirrored copies): shutdown waits for it.
    pub tasks: tokio_util::task::TaskTracker,
}

/// What a connection knows about itself; one per client connection.
#[derive(Debug)]
pub struct ConnInfo {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// The listener's name.
    pub listener: Arc<str>,
    /// The listener's index in route masks.
    pub listener_index: u32,
    /// The listener's port (a redirect keeps it when it changes nothing else).
    pub port: u16,
    /// The client.
    pub client: SocketAddr,
    /// The client's IP as a header value, made once.
    pub client_ip: HeaderValue,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Its admission state: the token that asks it to finish (shutdown or eviction),
    /// and whether a request is in flight.
    pub slot: Arc<crate::admission::Slot>,
}

#[cfg(test)]
impl ServerSettings {
    /// Settings for unit tests.
    pub(crate) fn for_tests() -> Self {
        ServerSettings {
            max_header_bytes: 1000,
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
            min_body_rate: 0,
            send_timeout: Duration::from_secs(1),
        }
    }
}

#[cfg(test)]
impl ConnInfo {
    /// A connection over an empty routing snapshot, for unit tests.
    pub(crate) fn for_tests() -> Arc<Self> {
        let table = crate::routing::build(
            &weir_config::load_str(std::path::Path::new("/x.yaml"), "").unwrap(),
            &Default::default(),
            &mut crate::routing::BuildContext::new(
                Arc::new(crate::stats::Stats::new(1, true)),
                Arc::new(crate::upstream::Upstreams::default()),
            ),
        )
        .unwrap();
        let shared = Arc::new(Shared {
            table: Arc::new(ArcSwap::from_pointee(table)),
            counters: Default::default(),
            tasks: Default::default(),
        });
        Arc::new(ConnInfo {
            shared,
            listener: "x".into(),
            listener_index: 0,
            port: 80,
            client: "127.0.0.1:1".parse().unwrap(),
            client_ip: HeaderValue::from_static("127.0.0.1"),
            tls: false,
            slot: Default::default(),
        })
    }
}
