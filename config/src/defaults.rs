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
/// A client has 10 s to send its whole request head (HAProxy's advice for
/// `timeout http-request`); the timer covers the head, not each read.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A request body may go 30 s without a byte, and this is also its grace before
/// [`MIN_BODY_RATE`] applies.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// After [`BODY_TIMEOUT`], a request body must have arrived at 1 KiB/s on average
/// (Apache's `mod_reqtimeout` keeps a floor the same way): a body dripped a byte at a
/// time cannot hold a connection for ever.
pub const MIN_BODY_RATE: u64 = 1024;
/// A write to a client may make no progress for 30 s (nginx's `send_timeout` is 60 s).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// An idle keep-alive client connection is closed after 75 s (nginx's `keepalive_timeout`).
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// The admin listener's address when the Proxy names none.
pub const ADMIN_ADDRESS: &str = "127.0.0.1:9901";
/// The path matched when a route gives none.
pub const PATH_PREFIX: &str = "/";
