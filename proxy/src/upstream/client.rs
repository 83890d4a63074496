//! The raw HTTP/1.1 upstream client: response heads read into a connection's buffer, the
//! body pump used in both directions (client to upstream, upstream to client) with its
//! pace, the writes with their deadlines, and a request head sent again on a fresh
//! connection when a pooled one turned out closed.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::codec::chunked::Chunked;
use crate::codec::head::{self, Framing, parse_response};
use crate::error::{Kind, ProxyError};
use crate::upstream::mirror::tee_extend;
use crate::upstream::{EndpointPool, PoolSettings, UpConn};

/// Bytes read at once while streaming a body.
const BODY_READ: usize = 16 * 1024;

/// Sends `head` again on a fresh connection, within `limit`: the retry of a request
/// whose pooled connection turned out closed, for both protocols.
pub(crate) async fn retry_head(
    endpoint: &EndpointPool,
    pool: &PoolSettings,
    head: &[u8],
    limit: Duration,
) -> Result<UpConn, ProxyError> {
    let mut up = endpoint.connect_raw(pool).await?;
    match tokio::time::timeout(limit, write_keep(&mut up.stream, head)).await {
        Ok(Ok(())) => Ok(up),
        Ok(Err(e)) => Err(ProxyError::with(Kind::UpstreamProtocol, e)),
        Err(_) => Err(ProxyError::new(Kind::UpstreamProtocol)),
    }
}

/// Writes and flushes `out`, keeping it.
pub(crate) async fn write_keep<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &[u8],
) -> std::io::Result<()> {
    w.write_all(out).await?;
    w.flush().await
}

/// Writes and flushes `out`, then empties it.
async fn write_out<W: AsyncWrite + Unpin>(w: &mut W, out: &mut Vec<u8>) -> std::io::Result<()> {
    w.write_all(out).await?;
    w.flush().await?;
    out.clear();
    Ok(())
}

/// [`write_out`] that fails with `TimedOut` when the peer takes more than `limit` to
/// take the bytes. The timer is only armed if the write cannot finish at once.
pub(crate) async fn send_to<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &mut Vec<u8>,
    limit: Duration,
) -> std::io::Result<()> {
    match tokio::time::timeout(limit, write_out(w, out)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

#[derive(Debug)]
pub(crate) enum UpError {
    /// Closed before a byte of the response.
    Closed,
    Timeout,
    Io,
    Malformed,
}

/// Reads a response head into `up.buf`.
pub(crate) async fn read_response_head(
    up: &mut UpConn,
    timeout: Duration,
) -> Result<head::ResponseHead, UpError> {
    loop {
        if !up.buf.is_empty() {
            match parse_response(&up.buf, &mut up.spans) {
                Ok(Some(h)) => return Ok(h),
                Ok(None) => {
                    if up.buf.len() > 64 * 1024 {
                        return Err(UpError::Malformed);
                    }
                }
                Err(_) => return Err(UpError::Malformed),
            }
        }
        up.buf.reserve(BODY_READ);
        match tokio::time::timeout(timeout, up.stream.read_buf(&mut up.buf)).await {
            Err(_) => return Err(UpError::Timeout),
            Ok(Ok(0)) | Ok(Err(_)) if up.buf.is_empty() => return Err(UpError::Closed),
            Ok(Ok(0)) => return Err(UpError::Malformed),
            Ok(Err(_)) => return Err(UpError::Io),
            Ok(Ok(_)) => {}
        }
    }
}

#[derive(Debug)]
pub(crate) enum BodyError {
    /// Reading the source failed.
    Read(#[allow(dead_code)] std::io::Error),
    /// Writing the destination failed.
    Write(#[allow(dead_code)] std::io::Error),
    /// The source closed early.
    Truncated,
    /// The source went quiet for too long.
    Timeout,
    /// Bad chunked coding.
    Chunked,
    /// The body grew past [`Pace::max_body`]; nothing past it was sent.
    TooLarge,
    /// The exchange's deadline ([`Pace::deadline`]) passed.
    Deadline,
}

/// How fast a body must move through [`forward_body`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pace {
    /// Longest wait for the source's next bytes.
    pub(crate) read_idle: Duration,
    /// Slowest average rate of the source once `grace` has passed, bytes per second
    /// (0: no floor): the body is due by `grace + bytes_so_far / min_rate` from its start.
    pub(crate) min_rate: u64,
    pub(crate) grace: Duration,
    /// Longest time one write to the destination may take.
    pub(crate) write: Duration,
    /// Most body bytes taken (a route's `proxy-body-size`; `u64::MAX`: no limit).
    pub(crate) max_body: u64,
    /// The exchange's deadline (an HTTPRoute's `timeouts.request`): no read waits past it.
    pub(crate) deadline: Option<Instant>,
}

impl Pace {
    /// The pace of a body the proxy relays from an upstream: `read_idle` between reads,
    /// no rate floor, `write` for each write, no size limit, the exchange's `deadline`.
    pub(crate) fn relay(read_idle: Duration, write: Duration, deadline: Option<Instant>) -> Pace {
        Pace {
            read_idle,
            min_rate: 0,
            grace: read_idle,
            write,
            max_body: u64::MAX,
            deadline,
        }
    }

    /// When the next read must have completed, given `received` bytes since `began`.
    pub(crate) fn read_deadline(&self, began: Instant, received: u64) -> Instant {
        let idle = Instant::now() + self.read_idle;
        let idle = self.deadline.map_or(idle, |d| idle.min(d));
        if self.min_rate == 0 {
            return idle;
        }
        let due =
            began + self.grace + Duration::from_secs_f64(received as f64 / self.min_rate as f64);
        idle.min(due)
    }

    /// Whether the exchange's deadline has passed.
    pub(crate) fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// Forwards one message body from `src` to `dst`: first what `src_buf` already holds,
/// then what is read. `out` may hold a head to send first; it goes in the same write as
/// the first body bytes. With `decode`, a chunked body is sent as plain bytes.
#[expect(
    clippy::too_many_arguments,
    reason = "the body pump's buffers, ends and rules, each borrowed from a different owner"
)]
pub(crate) async fn forward_body<R, W>(
    src_buf: &mut BytesMut,
    src: &mut R,
    dst: &mut W,
    out: &mut Vec<u8>,
    framing: Framing,
    decode: bool,
    pace: Pace,
    tee: &mut Option<Vec<u8>>,
) -> Result<(), BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut remaining = match framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    let mut chunked = Chunked::default();
    // The clock for the rate floor starts at the first read that has to wait.
    let mut began: Option<Instant> = None;
    let mut received: u64 = 0;
    // Body bytes (without chunk framing), for the limit.
    let mut body: u64 = 0;
    loop {
        let (take, done) = match framing {
            Framing::None => (0, true),
            Framing::Length(_) => {
                let n = (src_buf.len() as u64).min(remaining) as usize;
                out.extend_from_slice(&src_buf[..n]);
                remaining -= n as u64;
                (n, remaining == 0)
            }
            Framing::Chunked => {
                let n = if decode {
                    chunked
                        .feed(src_buf, Some(out))
                        .map_err(|_| BodyError::Chunked)?
                } else {
                    let n = chunked
                        .feed(src_buf, None)
                        .map_err(|_| BodyError::Chunked)?;
                    out.extend_from_slice(&src_buf[..n]);
                    n
                };
                (n, chunked.done())
            }
            Framing::UntilClose => {
                out.extend_from_slice(src_buf);
                (src_buf.len(), false)
            }
        };
        src_buf.advance(take);
        body = match framing {
            Framing::Chunked => chunked.data(),
            _ => body + take as u64,
        };
        if body > pace.max_body {
            return Err(BodyError::TooLarge);
        }
        if !out.is_empty() {
            tee_extend(tee, out);
            send_to(dst, out, pace.write)
                .await
                .map_err(BodyError::Write)?;
        }
        if done {
            return Ok(());
        }
        src_buf.reserve(BODY_READ);
        let began = *began.get_or_insert_with(Instant::now);
        let until = pace.read_deadline(began, received);
        match tokio::time::timeout_at(until, src.read_buf(src_buf)).await {
            Err(_) if pace.past_deadline() => return Err(BodyError::Deadline),
            Err(_) => return Err(BodyError::Timeout),
            Ok(Ok(0)) => {
                return if framing == Framing::UntilClose {
                    Ok(())
                } else {
                    Err(BodyError::Truncated)
                };
            }
            Ok(Ok(n)) => received += n as u64,
            Ok(Err(e)) => return Err(BodyError::Read(e)),
        }
    }
}
