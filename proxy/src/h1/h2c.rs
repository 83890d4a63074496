//! An HTTP/1.x request to an endpoint that speaks h2c: the same request core (route,
//! filters, forwarding rules, record, access log, mirrors) as [`super::exchange`], with
//! hyper's HTTP/2 client upstream ([`crate::upstream::h2c`]).
//!
//! The request body is read from the client's connection by this task, as on the
//! HTTP/1.1 path (paced, chunked decoded), and handed to the HTTP/2 stream through a
//! small channel; the response is relayed as soon as it comes, while the body is still
//! read (the client's connection split in its two halves), so an upstream that answers
//! as it reads does not wait on the client. The response goes back chunked to an HTTP/1.1
//! client unless the upstream gave a length and the client did not ask for trailers;
//! trailers (`grpc-status`) are sent only to a client that sent `TE: trailers`, as
//! RFC 9110 §6.5.1 allows a proxy to drop them otherwise. An HTTP/1.0 client gets a
//! length, or the body until close.

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Next;
use super::exchange::{fail, split_target};
use crate::codec::head::{Framing, RequestHead, Span};
use crate::conn::{ConnInfo, ServerSettings};
use crate::error::Kind;
use crate::request::forward::{
    self, H2Headers, Outgoing, debug_headers, forward_headers, put_header, write_head,
};
use crate::request::{self, Exchange, LogLine, Routed};
use crate::upstream::client::{BodyError, forward_body, send_to};
use crate::upstream::h2c::{self, UpBody};
use crate::upstream::mirror::{MirrorTee, spawn_mirror_copy};

/// One request and its response, to an h2c endpoint.
#[allow(clippy::too_many_arguments)]
pub(super) async fn exchange<S>(
    conn: &Arc<ConnInfo>,
    io: &mut S,
    rbuf: &mut BytesMut,
    wbuf: &mut Vec<u8>,
    spans: &mut Vec<(Span, Span)>,
    mut head: RequestHead,
    routed: Routed,
    log: Option<Box<LogLine>>,
    start: Instant,
    settings: &ServerSettings,
    stop: &CancellationToken,
) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let buf: &[u8] = rbuf;
    let req_framing = head.framing();
    let has_body = req_framing != Framing::None;
    let client_keep = head.common.keep_alive();
    let minor = head.common.minor;
    let is_head = head.is_head(buf);
    let method = head.method.get(buf);
    let (authority, origin) = split_target(head.target.get(buf));
    let host = authority.or(head.host.map(|h| h.get(buf)));
    // An Upgrade (WebSocket) has no meaning on an HTTP/2 stream: the request goes as a
    // plain one, without its Upgrade and Connection headers.
    let out = Outgoing {
        method,
        target: origin,
        host,
        chunked: false,
        upgrade: false,
    };
    let edit = routed.edit.as_deref();
    let headers = || {
        head.common
            .headers()
            .iter()
            .map(|(n, v)| (n.get(buf), v.get(buf)))
    };
    let in_connection = |name: &[u8]| head.common.named_in_connection(buf, name);
    let mut h2 = H2Headers::default();
    forward_headers(&mut h2, conn, &out, headers(), in_connection, edit);
    let wants_trailers =
        minor == 1 && headers().any(|(n, v)| n.eq_ignore_ascii_case(b"te") && h2c::te_trailers(v));
    // A mirror route's copy is written as HTTP/1.1, whatever its target speaks.
    let mut tee = None;
    if !routed.mirror.is_empty() {
        let mut copy = Vec::with_capacity(512);
        let chunked = head.common.chunked;
        let copy_out = Outgoing { chunked, ..out };
        write_head(&mut copy, conn, &copy_out, headers(), in_connection, edit);
        if has_body {
            tee = Some(MirrorTee::new(
                copy,
                chunked,
                routed.mirror.clone(),
                conn.shared.tasks.clone(),
                routed.pool,
                routed.request_timeout(),
            ));
        } else {
            spawn_mirror_copy(
                &conn.shared.tasks,
                copy,
                &routed.mirror,
                routed.pool,
                routed.request_timeout(),
                is_head,
            );
        }
    }
    let (writer, body) = if has_body {
        let (w, b) = h2c::pump(tee);
        (Some(w), b)
    } else {
        (None, UpBody::Empty)
    };
    let req = h2c::request(
        method,
        forward::target(&out, edit),
        h2.authority,
        &routed.endpoint,
        h2.map,
        body,
    );
    let send_continue = head.expect_continue && has_body && minor == 1;
    rbuf.advance(head.common.len);
    *spans = std::mem::take(&mut head.common.headers);

    let mut ex = Exchange::begin(conn.clone(), routed, start, log);
    let req = match req {
        Ok(r) => r,
        Err(e) => return fail(&mut ex, io, wbuf, e.kind, true, settings).await,
    };
    let r = &ex.routed;
    let (resp, _slot) = match r.endpoint.h2_send(&r.pool, req).await {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(endpoint = %r.endpoint.addr, "upstream: {e}");
            let close = has_body || !client_keep || stop.is_cancelled();
            return fail(&mut ex, io, wbuf, e.kind, close, settings).await;
        }
    };
    if send_continue && rbuf.is_empty() {
        let mut cont = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
        if send_to(io, &mut cont, settings.send_timeout).await.is_err() {
            ex.client_gone();
            return Next::Close;
        }
    }
    let timeout = r.request_timeout();
    let endpoint = r.endpoint.addr;
    let pace = request::client_body_pace(settings, r);

    // The request body is read from the client while the response comes back: an
    // upstream that answers as it reads (gRPC streaming, an echo) would otherwise wait
    // for window space the client's unread response holds.
    let (mut rd, mut wr) = tokio::io::split(&mut *io);
    let mut pump_buf = Vec::new();
    let pump = async {
        let Some(mut w) = writer else {
            return Ok(());
        };
        let r = forward_body(
            rbuf,
            &mut rd,
            &mut w,
            &mut pump_buf,
            req_framing,
            true,
            pace,
            &mut None,
        )
        .await;
        if r.is_ok() {
            w.finish().await;
        }
        r
    };
    tokio::pin!(pump);
    tokio::pin!(resp);
    let mut pumped: Option<Result<(), BodyError>> = None;
    // The response head: `requestTimeout` once the request body has gone (its own pace
    // bounds it until then).
    let head = loop {
        if pumped.is_some() {
            break tokio::time::timeout(timeout, resp.as_mut()).await;
        }
        tokio::select! {
            p = pump.as_mut() => {
                match p {
                    // The client's own body was garbled or too slow: its fault.
                    Err(BodyError::Chunked) => {
                        return fail(&mut ex, &mut wr, wbuf, Kind::BadRequest, true, settings).await;
                    }
                    Err(BodyError::Timeout) => {
                        return fail(&mut ex, &mut wr, wbuf, Kind::BodyTimeout, true, settings).await;
                    }
                    Err(BodyError::TooLarge) => {
                        return fail(&mut ex, &mut wr, wbuf, Kind::BodyTooLarge, true, settings).await;
                    }
                    Err(BodyError::Deadline) => {
                        return fail(&mut ex, &mut wr, wbuf, Kind::ResponseTimeout, true, settings).await;
                    }
                    Err(BodyError::Read(_) | BodyError::Truncated) => {
                        ex.client_gone();
                        return Next::Close;
                    }
                    // Whole, or the upstream stopped taking it (it answered early, or
                    // broke): its answer, if any, says which.
                    Ok(()) | Err(BodyError::Write(_)) => pumped = Some(p),
                }
            }
            h = resp.as_mut() => break Ok(h),
        }
    };
    let body_whole = matches!(pumped, Some(Ok(())));
    let resp = match head {
        Err(_) => {
            return fail(
                &mut ex,
                &mut wr,
                wbuf,
                Kind::ResponseTimeout,
                true,
                settings,
            )
            .await;
        }
        Ok(Err(e)) => {
            tracing::debug!(%endpoint, "upstream response: {e}");
            let close = !client_keep || !body_whole;
            return fail(
                &mut ex,
                &mut wr,
                wbuf,
                Kind::UpstreamProtocol,
                close,
                settings,
            )
            .await;
        }
        Ok(Ok(resp)) => resp,
    };
    ex.status = resp.status().as_u16();
    // The connection goes on only if the client's body was read whole before the
    // response began.
    let st = Reply {
        is_head,
        minor,
        wants_trailers,
        client_keep: client_keep && body_whole && !stop.is_cancelled(),
        timeout,
        send_timeout: settings.send_timeout,
    };
    let relay = relay(&mut wr, wbuf, resp, &ex.routed, st);
    let (outcome, keep) = if pumped.is_none() {
        let (p, out) = tokio::join!(pump.as_mut(), relay);
        pumped = Some(p);
        out
    } else {
        relay.await
    };
    let client_fault = matches!(
        pumped,
        Some(Err(BodyError::Chunked
            | BodyError::Timeout
            | BodyError::TooLarge
            | BodyError::Read(_)
            | BodyError::Truncated))
    );
    match outcome {
        Relayed::Done if !client_fault => {
            ex.complete(None);
            if keep { Next::KeepAlive } else { Next::Close }
        }
        Relayed::UpstreamBroke if !client_fault => {
            ex.broken();
            Next::Close
        }
        // The client went away, or its body failed, while the response was on its way:
        // the outcome is what the upstream said.
        _ => {
            ex.abandon();
            Next::Close
        }
    }
}

/// What the response side needs to know of the request.
struct Reply {
    is_head: bool,
    minor: u8,
    wants_trailers: bool,
    /// The connection may carry another request, as far as the request goes.
    client_keep: bool,
    /// The upstream's time between frames.
    timeout: std::time::Duration,
    /// The client's time for each write.
    send_timeout: std::time::Duration,
}

/// How a relayed response ended.
enum Relayed {
    Done,
    /// A write to the client failed.
    ClientGone,
    /// The upstream broke off mid-body, or went quiet too long.
    UpstreamBroke,
}

/// Writes the response head (hop-by-hop headers out, the filters' changes and debug
/// headers in, framing for the client), then the body and trailers as they come.
/// Returns how it ended and whether the client's connection may go on.
async fn relay<W: AsyncWrite + Unpin>(
    wr: &mut W,
    wbuf: &mut Vec<u8>,
    resp: http::Response<hyper::body::Incoming>,
    routed: &Routed,
    st: Reply,
) -> (Relayed, bool) {
    let (parts, mut body) = resp.into_parts();
    let status = parts.status.as_u16();
    let no_body = st.is_head || status == 204 || status == 304 || (100..200).contains(&status);
    let length = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = !no_body && st.minor == 1 && (length.is_none() || st.wants_trailers);
    let until_close = !no_body && !chunked && length.is_none();
    let keep = st.client_keep && !until_close;

    wbuf.clear();
    wbuf.extend_from_slice(b"HTTP/1.1 ");
    let mut code = itoa::Buffer::new();
    wbuf.extend_from_slice(code.format(status).as_bytes());
    wbuf.push(b' ');
    wbuf.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    wbuf.extend_from_slice(b"\r\n");
    let edit = routed.edit.as_deref();
    for (n, v) in &parts.headers {
        if h2c::hop_by_hop(n)
            || (chunked && n == http::header::CONTENT_LENGTH)
            || edit.is_some_and(|e| e.drops(true, n.as_str().as_bytes()))
        {
            continue;
        }
        put_header(wbuf, n.as_str().as_bytes(), v.as_bytes());
    }
    if let Some(e) = edit {
        e.extra(true, |n, v| put_header(wbuf, n, v));
    }
    if chunked {
        wbuf.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !keep {
        wbuf.extend_from_slice(b"connection: close\r\n");
    } else if st.minor == 0 {
        wbuf.extend_from_slice(b"connection: keep-alive\r\n");
    }
    if let Some(ticket) = routed.ticket {
        debug_headers(routed, ticket, |n, v| put_header(wbuf, n.as_bytes(), v));
    }
    wbuf.extend_from_slice(b"\r\n");
    // The head goes at once: a streamed response (gRPC server streaming) may be slow to
    // send its first bytes.
    if send_to(wr, wbuf, st.send_timeout).await.is_err() {
        return (Relayed::ClientGone, false);
    }
    if no_body {
        return (Relayed::Done, keep);
    }
    // The upstream has `requestTimeout` between frames, as between reads on the
    // HTTP/1.1 path; the client `sendTimeout` for each write.
    let mut trailers = None;
    loop {
        // Cut to what is left before the route's deadline, when it has one.
        let gap = st.timeout.min(routed.request_timeout());
        let frame = match tokio::time::timeout(gap, body.frame()).await {
            Ok(None) => break,
            Ok(Some(Ok(f))) => f,
            Err(_) | Ok(Some(Err(_))) => return (Relayed::UpstreamBroke, false),
        };
        let data = match frame.into_data() {
            Ok(d) => d,
            Err(f) => {
                if let Ok(t) = f.into_trailers() {
                    trailers = Some(t);
                }
                continue;
            }
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            let mut size = [0u8; 18];
            let n = hex(data.len(), &mut size);
            wbuf.extend_from_slice(&size[..n]);
            wbuf.extend_from_slice(b"\r\n");
            wbuf.extend_from_slice(&data);
            wbuf.extend_from_slice(b"\r\n");
        } else {
            wbuf.extend_from_slice(&data);
        }
        if send_to(wr, wbuf, st.send_timeout).await.is_err() {
            return (Relayed::ClientGone, false);
        }
    }
    if chunked {
        wbuf.extend_from_slice(b"0\r\n");
        if st.wants_trailers
            && let Some(t) = &trailers
        {
            for (n, v) in t {
                if !h2c::hop_by_hop(n) {
                    put_header(wbuf, n.as_str().as_bytes(), v.as_bytes());
                }
            }
        }
        wbuf.extend_from_slice(b"\r\n");
        if send_to(wr, wbuf, st.send_timeout).await.is_err() {
            return (Relayed::ClientGone, false);
        }
    }
    (Relayed::Done, keep)
}

/// Writes `n` in lowercase hexadecimal into `out`; its length.
fn hex(mut n: usize, out: &mut [u8; 18]) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut tmp = [0u8; 18];
    let mut i = 0;
    loop {
        tmp[i] = DIGITS[n & 0xf];
        i += 1;
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    for (j, b) in tmp[..i].iter().rev().enumerate() {
        out[j] = *b;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::hex;

    #[test]
    fn hex_sizes() {
        let mut b = [0u8; 18];
        for (n, s) in [(0, "0"), (10, "a"), (255, "ff"), (16384, "4000")] {
            let len = hex(n, &mut b);
            assert_eq!(&b[..len], s.as_bytes());
        }
    }
}
