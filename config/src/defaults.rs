//! Every default in one place, with its unit. Applied only by `validate`.

use std::time::Duration;

/// Upstream connect timeout (TCP connect), 5 s. As Envoy's default.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time from sending a request upstream to its response headers, 60 s (nginx's
/// `proxy_read_timeout`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// An idle pooled upstream connection is closed after 90 s.
pub const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle upstream connections kept per endpoint: 256.
pub const MAX_IDLE_PER_ENDPOINT: u32 = 256;
/// Client connections open at once over all listeners: 50,000. Beyond it new
/// connections are closed at once and counted.
pub const MAX_CONNECTIONS: u32 = 50_000;
/// Request line plus headers: 64 KiB less one byte, which is also the most allowed; more
/// gets 431.
pub const MAX_HEADER_BYTES: u32 = 65_535;
/// Smallest header limit hyper accepts, 8 KiB.
pub const MIN_HEADER_BYTES: u32 = 8 * 1024;
/// A client has 30 s to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// An idle keep-alive client connection is closed after 75 s (nginx's `keepalive_timeout`).
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// The admin listener's address when the Proxy names none.
pub const ADMIN_ADDRESS: &str = "127.0.0.1:9901";
/// The path matched when a route gives none.
pub const PATH_PREFIX: &str = "/";
