//! HTTP/1.x from clients, the fast path: a connection's requests are read ([`serve`],
//! [`read_head`]), each one goes through the request core ([`crate::request`]) in
//! [`exchange`], and its bytes to pooled raw upstream connections as they come, heads
//! rewritten on the way.
//!
//! Hand-written rather than built on hyper's server and client because the CPU cost per
//! proxied request is weir's headline figure and hyper's general machinery (a task and
//! channels per upstream connection, header maps, timers per request) cost twice what
//! nginx spends in user space. Here a request costs two head parses into byte ranges
//! (httparse, [`crate::codec`]), one write of each rewritten head with the body bytes
//! already at hand, and no allocation. HTTP/2 (prior knowledge or ALPN) goes through
//! hyper instead ([`crate::h2`]).
//!
//! What it covers: keep-alive and pipelining, Content-Length and chunked bodies streamed
//! both ways (never buffered whole), close-delimited responses, HEAD/204/304, interim 1xx
//! responses and `Expect: 100-continue`, Upgrade (WebSocket) tunnels, HTTP/1.0 clients,
//! request smuggling guards (CL+TE, conflicting lengths, unknown codings refused), a
//! retry on a fresh connection when a pooled one turns out closed before a safe request
//! was answered. An endpoint that speaks h2c is reached through hyper's HTTP/2 client
//! instead ([`h2c`]), from the same request core.

mod exchange;
mod h2c;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::codec::head::{self, RequestHead, parse_request};
use crate::conn::{ConnInfo, ServerSettings};
use crate::error::Kind;
use exchange::{exchange, write_simple};

/// The HTTP/2 connection preface.
pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Read buffer of a client connection to start with, and its growth step while a
/// head is incomplete: most request heads fit in it, and an idle connection holds it.
pub(crate) const CLIENT_BUF: usize = 2 * 1024;
/// An idle keep-alive connection frees its buffers after this long.
const SHRINK_AFTER: Duration = Duration::from_secs(2);
/// Waiting for a connection's next bytes without holding a read buffer, where the stream
/// can tell (plain TCP): an idle keep-alive connection then costs no buffer, as in nginx,
/// which frees a keep-alive connection's buffer while it waits.
pub(crate) trait WaitReadable {
    /// Whether [`WaitReadable::wait_readable`] works for this stream. Not by default, nor
    /// for TLS: bytes may already wait, decrypted, inside the TLS layer while the socket
    /// is quiet.
    fn can_wait_readable(&self) -> bool {
        false
    }
    /// Resolves once the stream may have bytes (or an error or end) to read.
    fn wait_readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}

impl WaitReadable for tokio::net::TcpStream {
    fn can_wait_readable(&self) -> bool {
        true
    }
    fn wait_readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        self.readable()
    }
}

impl<S> WaitReadable for tokio_rustls::server::TlsStream<S> {}

#[cfg(test)]
impl WaitReadable for tokio::io::DuplexStream {}

enum Next {
    KeepAlive,
    Close,
}

/// Serves HTTP/1.x requests on `io` until the client closes, an error ends the
/// connection, or `stop` asks it to finish (shutdown, or eviction at the connection
/// limit). `rbuf` holds bytes already read; the first head is due by `first_deadline`.
pub(crate) async fn serve<S>(
    conn: Arc<ConnInfo>,
    mut io: S,
    mut rbuf: BytesMut,
    settings: ServerSettings,
    first_deadline: Instant,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + WaitReadable + Unpin + Send + Sync,
{
    let mut wbuf: Vec<u8> = Vec::new();
    let mut spans = Vec::new();
    let mut deadline = Some(first_deadline);
    loop {
        let head = match read_head(
            &mut io, &mut rbuf, &mut wbuf, &mut spans, deadline, &settings, &stop,
        )
        .await
        {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(kind) => {
                conn.shared.counters.error(kind);
                let _ = write_simple(&mut io, &mut wbuf, kind, true, settings.send_timeout).await;
                break;
            }
        };
        deadline = None;
        let start = Instant::now();
        conn.shared
            .counters
            .requests
            .fetch_add(1, Ordering::Relaxed);
        let _busy = crate::admission::Busy::new(&conn.slot);
        // Boxed: the exchange's state is large and only needed while a request is in
        // flight; an idle connection's task then holds just its small loop.
        let ex = Box::pin(exchange(
            &conn, &mut io, &mut rbuf, &mut wbuf, &mut spans, head, start, &settings, &stop,
        ));
        match ex.await {
            Next::KeepAlive => {}
            Next::Close => break,
        }
    }
    let _ = tokio::time::timeout(settings.send_timeout, io.shutdown()).await;
}

/// Reads until a whole request head is in `rbuf`. `Ok(None)`: the connection is done
/// (closed, idle too long, or asked to stop). `Err`: answer that and close.
///
/// The whole head is due by one deadline (`deadline`, or `headerTimeout` from its first
/// byte), not per read: a head trickled a byte at a time cannot hold the connection.
async fn read_head<S: AsyncRead + WaitReadable + Unpin + Sync>(
    io: &mut S,
    rbuf: &mut BytesMut,
    wbuf: &mut Vec<u8>,
    spans: &mut Vec<(head::Span, head::Span)>,
    mut deadline: Option<Instant>,
    settings: &ServerSettings,
    stop: &CancellationToken,
) -> Result<Option<RequestHead>, Kind> {
    loop {
        if !rbuf.is_empty() {
            match parse_request(rbuf, spans) {
                Ok(Some(h)) => return Ok(Some(h)),
                Ok(None) => {
                    if rbuf.len() >= settings.max_header_bytes {
                        return Err(head::too_large(rbuf).kind());
                    }
                }
                Err(e) => {
                    tracing::debug!("bad request: {e:?}");
                    return Err(e.kind());
                }
            }
            if deadline.is_none() {
                deadline = Some(Instant::now() + settings.header_timeout);
            }
        }
        let idle = rbuf.is_empty();
        if idle && stop.is_cancelled() {
            return Ok(None);
        }
        let until = deadline.unwrap_or_else(|| Instant::now() + settings.idle_timeout);
        // Plain TCP: wait for the next request with no read buffer, and take one when
        // bytes are there (a 2 KB allocation per request against 2 KB held by every idle
        // connection).
        let waited = idle && io.can_wait_readable();
        if waited {
            *rbuf = BytesMut::new();
            let ready = tokio::select! {
                biased;
                r = tokio::time::timeout_at(until, io.wait_readable()) => r,
                _ = stop.cancelled() => return Ok(None),
            };
            match ready {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Ok(None),
            }
        }
        rbuf.reserve(CLIENT_BUF.min(settings.max_header_bytes.saturating_sub(rbuf.len()).max(1)));
        let read = if idle && !waited {
            // (TLS) A busy connection waits once. One idle past SHRINK_AFTER gives its
            // buffers back, so that thousands of idle keep-alive connections cost little
            // memory.
            let shrink_at = until.min(Instant::now() + SHRINK_AFTER);
            let r = tokio::select! {
                biased;
                r = tokio::time::timeout_at(shrink_at, io.read_buf(rbuf)) => r,
                _ = stop.cancelled() => return Ok(None),
            };
            match r {
                Err(_) if shrink_at < until => {
                    *rbuf = BytesMut::new();
                    *wbuf = Vec::new();
                    let mut one = [0u8; 1];
                    let r = tokio::select! {
                        biased;
                        r = tokio::time::timeout_at(until, io.read(&mut one)) => r,
                        _ = stop.cancelled() => return Ok(None),
                    };
                    if let Ok(Ok(1)) = r {
                        rbuf.reserve(CLIENT_BUF);
                        rbuf.extend_from_slice(&one);
                    }
                    r
                }
                r => r,
            }
        } else {
            // Part of a head is here: a connection asked to stop (evicted at the limit)
            // is cut without waiting for the rest.
            tokio::select! {
                biased;
                r = tokio::time::timeout_at(until, io.read_buf(rbuf)) => r,
                _ = stop.cancelled() => return Ok(None),
            }
        };
        match read {
            Err(_) if idle => return Ok(None),
            Err(_) => return Err(Kind::HeadTimeout),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
            Ok(Ok(_)) => {}
        }
    }
}
