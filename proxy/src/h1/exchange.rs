//! One HTTP/1.x request and its response on a client connection: the request core
//! ([`crate::request`]) routes and records it; this module speaks the wire: the head as
//! parsed, the body bytes already read, `100 Continue`, interim responses, the response
//! head rewritten, the body pumped, Upgrade tunnels, and whether the connection goes on.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_config::model::UpstreamProtocol;

use super::Next;
use crate::codec::head::{self, Common, Framing, RequestHead, Span};
use crate::conn::ConnInfo;
use crate::conn::ServerSettings;
use crate::error::Kind;
use crate::request::forward::{Outgoing, debug_headers, put_header, write_head};
use crate::request::{self, Exchange, LogLine, RequestLine};
use crate::routing::Headers;
use crate::upstream::UpConn;
use crate::upstream::client::{
    BodyError, Pace, UpError, forward_body, read_response_head, retry_head, send_to, write_keep,
};
use crate::upstream::mirror::{MIRROR_MAX, spawn_mirror_copy};

/// Header lookup over a parsed head, for route and header-route matching.
struct HeadHeaders<'a> {
    common: &'a Common,
    buf: &'a [u8],
}

impl Headers for HeadHeaders<'_> {
    #[inline]
    fn any_value(&self, lower: &str, pred: impl Fn(Option<&[u8]>) -> bool) -> bool {
        let mut seen = false;
        for (n, v) in self.common.headers() {
            if n.get(self.buf).eq_ignore_ascii_case(lower.as_bytes()) {
                seen = true;
                if pred(Some(v.get(self.buf))) {
                    return true;
                }
            }
        }
        !seen && pred(None)
    }
}

/// One request and its response.
#[allow(clippy::too_many_arguments)]
pub(super) async fn exchange<S>(
    conn: &Arc<ConnInfo>,
    io: &mut S,
    rbuf: &mut BytesMut,
    wbuf: &mut Vec<u8>,
    spans: &mut Vec<(Span, Span)>,
    mut head: RequestHead,
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
    let upgrade = head.is_upgrade();
    let method = head.method.get(buf);
    let safe = request::retry_safe(method) && !has_body;

    // Origin-form target and the host: an absolute-form target's authority wins over
    // Host (RFC 9112 §3.2.2), else Host.
    let (authority, origin) = split_target(head.target.get(buf));
    if authority.is_some_and(|a| !head::valid_host(a)) {
        return refuse(conn, io, wbuf, Kind::BadRequest, settings).await;
    }
    let host = authority.or(head.host.map(|h| h.get(buf)));
    let path = match origin.iter().position(|b| *b == b'?') {
        Some(q) => &origin[..q],
        None => origin,
    };
    // httparse lets only visible ASCII through in a method and a target, and valid_host
    // keeps the host ASCII: a failure here is a bug's guard, answered 400, not guessed.
    let (Ok(method_str), Ok(host_str), Ok(path_str), Ok(target_str)) = (
        std::str::from_utf8(method),
        std::str::from_utf8(host.unwrap_or(b"")),
        std::str::from_utf8(path),
        std::str::from_utf8(origin),
    ) else {
        return refuse(conn, io, wbuf, Kind::BadRequest, settings).await;
    };
    let line = RequestLine {
        method: method_str,
        host: host_str,
        path: path_str,
        target: target_str,
    };
    let view = HeadHeaders {
        common: &head.common,
        buf,
    };
    let (routed, sink) = request::route(conn, &line, &view);
    let log = LogLine::new(sink, &line);
    let routed = match routed {
        Ok(r) if r.endpoint.protocol == UpstreamProtocol::H2c => {
            // Boxed: the HTTP/1.1 path's future stays the size it was.
            return Box::pin(super::h2c::exchange(
                conn, io, rbuf, wbuf, spans, head, r, log, start, settings, stop,
            ))
            .await;
        }
        Ok(r) => r,
        Err(refused) => {
            refused.record(conn, start, log);
            // An unread body cannot be skipped safely: close after answering.
            let close = has_body || !client_keep || stop.is_cancelled();
            let len = head.common.len;
            *spans = std::mem::take(&mut head.common.headers);
            rbuf.advance(len);
            let ok = write_refused(io, wbuf, &refused, close, settings.send_timeout)
                .await
                .is_ok();
            return if close || !ok {
                Next::Close
            } else {
                Next::KeepAlive
            };
        }
    };

    // The upstream request head, with the body bytes already read appended below.
    wbuf.clear();
    write_head(
        wbuf,
        conn,
        &Outgoing {
            method,
            target: origin,
            host,
            chunked: head.common.chunked,
            upgrade,
        },
        head.common
            .headers()
            .iter()
            .map(|(n, v)| (n.get(buf), v.get(buf))),
        |name| head.common.named_in_connection(buf, name),
        routed.edit.as_deref(),
    );
    // `Expect: 100-continue` is answered by weir itself once the request can go
    // upstream (as nginx does), and not passed on: an origin that ignores it would
    // otherwise leave both sides waiting for the other until the response timeout.
    let send_continue = head.expect_continue && has_body && minor == 1;
    rbuf.advance(head.common.len);
    // A copy for a mirror route: at once when the whole request is at hand (no body, or
    // a body already read); otherwise the body is copied as it goes upstream (up to
    // MIRROR_MAX) and the copy sent once it has. A mirror never holds back the request.
    let mut tee: Option<Vec<u8>> = None;
    if !routed.mirror.is_empty() {
        let mirror = &routed.mirror;
        let body_len = match req_framing {
            Framing::None => Some(0),
            Framing::Length(n) if (n as usize) <= rbuf.len() => Some(n as usize),
            _ => None,
        };
        let fits = match req_framing {
            Framing::Length(n) => wbuf.len() as u64 + n <= MIRROR_MAX as u64,
            _ => true,
        };
        if body_len.is_none() && fits {
            tee = Some(Vec::new());
        }
        if let Some(n) = body_len {
            let mut copy = wbuf.clone();
            copy.extend_from_slice(&rbuf[..n]);
            spawn_mirror_copy(
                &conn.shared.tasks,
                copy,
                mirror,
                routed.pool,
                routed.request_timeout(),
                is_head,
            );
        }
    }
    *spans = std::mem::take(&mut head.common.headers);

    let mut ex = Exchange::begin(conn.clone(), routed, start, log);
    let checked_out = ex.checkout().await;
    let r = &ex.routed;
    let mut up = match checked_out {
        Ok(up) => up,
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
    // Send the head and the body. The client's body is paced: no more than
    // `bodyTimeout` between reads, and `minBodyRate` on average after that grace.
    let pace = request::client_body_pace(settings, r);
    let mut sent = if has_body {
        let sent = forward_body(
            rbuf,
            io,
            &mut up.stream,
            wbuf,
            req_framing,
            false,
            pace,
            &mut tee,
        )
        .await;
        if sent.is_ok()
            && let Some(copy) = tee.take()
            && let mirror = &r.mirror
            && !mirror.is_empty()
        {
            spawn_mirror_copy(
                &conn.shared.tasks,
                copy,
                mirror,
                r.pool,
                r.request_timeout(),
                is_head,
            );
        }
        sent
    } else {
        // wbuf keeps the head: it is sent again if this pooled connection was closed.
        write_keep(&mut up.stream, wbuf)
            .await
            .map_err(BodyError::Write)
    };
    if matches!(sent, Err(BodyError::Write(_))) && safe && !up.fresh {
        // A stale pooled connection: once more on a fresh one.
        match retry_head(&r.endpoint, &r.pool, wbuf, r.request_timeout()).await {
            Ok(fresh) => {
                up = fresh;
                sent = Ok(());
            }
            Err(e) => return fail(&mut ex, io, wbuf, e.kind, !client_keep, settings).await,
        }
    }
    if let Err(e) = sent {
        // The upstream connection carries a part of a request: it is dropped, never
        // pooled.
        return match e {
            BodyError::Write(_) => {
                fail(&mut ex, io, wbuf, Kind::UpstreamProtocol, true, settings).await
            }
            // The client's own body was garbled or too slow: its fault, answered as such.
            BodyError::Chunked => fail(&mut ex, io, wbuf, Kind::BadRequest, true, settings).await,
            BodyError::Timeout => fail(&mut ex, io, wbuf, Kind::BodyTimeout, true, settings).await,
            BodyError::TooLarge => {
                fail(&mut ex, io, wbuf, Kind::BodyTooLarge, true, settings).await
            }
            // The route's whole-exchange deadline passed with the upload under way.
            BodyError::Deadline => {
                fail(&mut ex, io, wbuf, Kind::ResponseTimeout, true, settings).await
            }
            // The client went away mid-body.
            BodyError::Read(_) | BodyError::Truncated => {
                ex.client_gone();
                Next::Close
            }
        };
    }
    // While wbuf holds the head and nothing else was sent, a closed pooled connection
    // can be retried.
    let retry = safe && !up.fresh;
    if !retry {
        wbuf.clear();
    }
    respond(
        conn,
        io,
        rbuf,
        wbuf,
        up,
        ex,
        Reply {
            is_head,
            client_keep,
            minor,
            upgrade,
            settings,
            stop,
            retry,
        },
    )
    .await
}

/// What the response side needs to know of the request.
struct Reply<'a> {
    is_head: bool,
    client_keep: bool,
    minor: u8,
    upgrade: bool,
    settings: &'a ServerSettings,
    stop: &'a CancellationToken,
    /// `wbuf` still holds the request head, which may be sent again.
    retry: bool,
}

/// Reads the response, relays it, and settles both connections.
async fn respond<S>(
    conn: &Arc<ConnInfo>,
    io: &mut S,
    rbuf: &mut BytesMut,
    wbuf: &mut Vec<u8>,
    mut up: UpConn,
    mut ex: Exchange,
    mut st: Reply<'_>,
) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let timeout = ex.routed.request_timeout();
    let send_timeout = st.settings.send_timeout;
    // Response head, skipping (and relaying) interim 1xx responses.
    let mut resp = loop {
        match read_response_head(&mut up, timeout).await {
            Ok(mut h) => {
                st.retry = false;
                if (100..200).contains(&h.status) && h.status != 101 {
                    // Interim responses (103 Early Hints, 102) are relayed as they are;
                    // a 100 is not: weir answered `Expect` itself, and the body is sent.
                    let len = h.common.len;
                    up.spans = std::mem::take(&mut h.common.headers);
                    if h.status != 100 {
                        wbuf.clear();
                        wbuf.extend_from_slice(&up.buf[..len]);
                        if send_to(io, wbuf, send_timeout).await.is_err() {
                            ex.abandon();
                            return Next::Close;
                        }
                    }
                    up.buf.advance(len);
                    continue;
                }
                break h;
            }
            Err(UpError::Closed) if st.retry => {
                tracing::debug!(endpoint = %ex.routed.endpoint.addr, "pooled connection closed before answering; retrying on a fresh one");
                st.retry = false;
                let r = &ex.routed;
                match retry_head(&r.endpoint, &r.pool, wbuf, r.request_timeout()).await {
                    Ok(fresh) => {
                        up = fresh;
                        continue;
                    }
                    Err(e) => {
                        return fail(&mut ex, io, wbuf, e.kind, !st.client_keep, st.settings).await;
                    }
                }
            }
            Err(UpError::Timeout) => {
                return fail(&mut ex, io, wbuf, Kind::ResponseTimeout, true, st.settings).await;
            }
            Err(e) => {
                tracing::debug!(endpoint = %ex.routed.endpoint.addr, "upstream response: {e:?}");
                return fail(
                    &mut ex,
                    io,
                    wbuf,
                    Kind::UpstreamProtocol,
                    !st.client_keep,
                    st.settings,
                )
                .await;
            }
        }
    };
    ex.status = resp.status;

    // An upgrade the upstream accepted: relay the 101, then tunnel bytes both ways.
    if resp.status == 101 {
        if !st.upgrade {
            return fail(&mut ex, io, wbuf, Kind::UpstreamProtocol, true, st.settings).await;
        }
        wbuf.clear();
        let len = resp.common.len;
        wbuf.extend_from_slice(&up.buf[..len]);
        up.buf.advance(len);
        wbuf.extend_from_slice(&up.buf);
        up.buf.clear();
        if send_to(io, wbuf, send_timeout).await.is_err() {
            ex.abandon();
            return Next::Close;
        }
        ex.record(None);
        if !rbuf.is_empty() {
            if up.stream.write_all(rbuf).await.is_err() {
                return Next::Close;
            }
            rbuf.clear();
        }
        let counters = &conn.shared.counters;
        counters.upgrades_open.fetch_add(1, Ordering::Relaxed);
        let _ = tokio::io::copy_bidirectional(io, &mut up.stream).await;
        counters.upgrades_open.fetch_sub(1, Ordering::Relaxed);
        return Next::Close;
    }

    let framing = resp.framing(st.is_head);
    let decode = framing == Framing::Chunked && st.minor == 0;
    // A response with both Content-Length and chunked is relayed chunked, but the
    // connection that sent it is not trusted with another request (RFC 9112 §6.3).
    let upstream_keep =
        resp.common.keep_alive() && framing != Framing::UntilClose && !resp.common.both_framings;
    let client_keep =
        st.client_keep && !st.stop.is_cancelled() && framing != Framing::UntilClose && !decode;

    // The client's response head.
    wbuf.clear();
    {
        let b: &[u8] = &up.buf;
        wbuf.extend_from_slice(b"HTTP/1.1 ");
        let mut code = itoa::Buffer::new();
        wbuf.extend_from_slice(code.format(resp.status).as_bytes());
        wbuf.push(b' ');
        wbuf.extend_from_slice(resp.reason.get(b));
        wbuf.extend_from_slice(b"\r\n");
        let edit = ex.routed.edit.as_deref();
        for (n, v) in resp.common.headers() {
            let name = n.get(b);
            if resp.common.is_hop_by_hop(b, name, false)
                || edit.is_some_and(|e| e.drops(true, name))
            {
                continue;
            }
            put_header(wbuf, name, v.get(b));
        }
        if let Some(e) = edit {
            e.extra(true, |n, v| put_header(wbuf, n, v));
        }
        if framing == Framing::Chunked && !decode {
            wbuf.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        if !client_keep {
            wbuf.extend_from_slice(b"connection: close\r\n");
        } else if st.minor == 0 {
            wbuf.extend_from_slice(b"connection: keep-alive\r\n");
        }
        if let Some(ticket) = ex.routed.ticket {
            debug_headers(&ex.routed, ticket, |n, v| put_header(wbuf, n.as_bytes(), v));
        }
        wbuf.extend_from_slice(b"\r\n");
    }
    let len = resp.common.len;
    up.buf.advance(len);
    up.spans = std::mem::take(&mut resp.common.headers);

    // The upstream has `requestTimeout` between reads; the client, `sendTimeout` for
    // each write to make progress (a client that stops reading is let go).
    let pace = Pace::relay(timeout, send_timeout, ex.routed.deadline);
    let relayed = forward_body(
        &mut up.buf,
        &mut up.stream,
        io,
        wbuf,
        framing,
        decode,
        pace,
        &mut None,
    )
    .await;
    match relayed {
        Ok(()) => ex.complete(upstream_keep.then_some(up)),
        Err(BodyError::Write(_)) => {
            ex.abandon();
            return Next::Close;
        }
        Err(_) => {
            // The upstream broke off mid-body: the client cannot be told any more.
            ex.broken();
            return Next::Close;
        }
    }
    if client_keep {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// Answers with the proxy's own error response for `kind` and records it; a client's
/// fault mid-request (a garbled or stalled body) closes the connection (`close`).
pub(super) async fn fail<S: AsyncWrite + Unpin>(
    ex: &mut Exchange,
    io: &mut S,
    wbuf: &mut Vec<u8>,
    kind: Kind,
    close: bool,
    settings: &ServerSettings,
) -> Next {
    ex.fail(kind);
    let ok = write_simple(io, wbuf, kind, close, settings.send_timeout)
        .await
        .is_ok();
    if close || !ok {
        Next::Close
    } else {
        Next::KeepAlive
    }
}

/// Answers a request refused before it was routed (`kind` is a client error) and
/// closes: its body, if any, is not read.
pub(super) async fn refuse<S: AsyncWrite + Unpin>(
    conn: &ConnInfo,
    io: &mut S,
    wbuf: &mut Vec<u8>,
    kind: Kind,
    settings: &ServerSettings,
) -> Next {
    conn.shared.counters.error(kind);
    let _ = write_simple(io, wbuf, kind, true, settings.send_timeout).await;
    Next::Close
}

/// Writes the proxy's own answer to a request it did not forward.
async fn write_refused<S: AsyncWrite + Unpin>(
    io: &mut S,
    wbuf: &mut Vec<u8>,
    r: &request::Refused,
    close: bool,
    send_timeout: std::time::Duration,
) -> std::io::Result<()> {
    let head = (r.status(), r.reason(), r.headers());
    write_short(io, wbuf, head, r.body(), close, send_timeout).await
}

/// Writes a short response made by the proxy for `kind`.
pub(super) async fn write_simple<S: AsyncWrite + Unpin>(
    io: &mut S,
    wbuf: &mut Vec<u8>,
    kind: Kind,
    close: bool,
    send_timeout: std::time::Duration,
) -> std::io::Result<()> {
    let head = (kind.status(), kind.reason(), &[][..]);
    write_short(io, wbuf, head, kind.body(), close, send_timeout).await
}

/// A response of the proxy's own: status, reason and extra headers, then a short
/// plain-text body (when there is one).
async fn write_short<S: AsyncWrite + Unpin>(
    io: &mut S,
    wbuf: &mut Vec<u8>,
    (status, reason, headers): (u16, &str, &[(&'static str, String)]),
    body: &str,
    close: bool,
    send_timeout: std::time::Duration,
) -> std::io::Result<()> {
    wbuf.clear();
    let mut b = itoa::Buffer::new();
    wbuf.extend_from_slice(b"HTTP/1.1 ");
    wbuf.extend_from_slice(b.format(status).as_bytes());
    wbuf.push(b' ');
    wbuf.extend_from_slice(reason.as_bytes());
    wbuf.extend_from_slice(b"\r\n");
    if !body.is_empty() {
        wbuf.extend_from_slice(b"content-type: text/plain; charset=utf-8\r\n");
    }
    for (n, v) in headers {
        put_header(wbuf, n.as_bytes(), v.as_bytes());
    }
    wbuf.extend_from_slice(b"content-length: ");
    wbuf.extend_from_slice(b.format(body.len()).as_bytes());
    if close {
        wbuf.extend_from_slice(b"\r\nconnection: close");
    }
    wbuf.extend_from_slice(b"\r\n\r\n");
    wbuf.extend_from_slice(body.as_bytes());
    send_to(io, wbuf, send_timeout).await
}

/// Splits a request target into (authority of an absolute form, origin-form part).
pub(super) fn split_target(target: &[u8]) -> (Option<&[u8]>, &[u8]) {
    for scheme in [&b"http://"[..], b"https://"] {
        if target.len() > scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &target[scheme.len()..];
            let end = rest
                .iter()
                .position(|b| *b == b'/' || *b == b'?')
                .unwrap_or(rest.len());
            let origin = &rest[end..];
            return (
                Some(&rest[..end]),
                if origin.is_empty() { b"/" } else { origin },
            );
        }
    }
    (None, target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(split_target(b"/a?b"), (None, &b"/a?b"[..]));
        assert_eq!(
            split_target(b"http://h.test:8080/a?b"),
            (Some(&b"h.test:8080"[..]), &b"/a?b"[..])
        );
        assert_eq!(
            split_target(b"http://h.test"),
            (Some(&b"h.test"[..]), &b"/"[..])
        );
        assert_eq!(
            split_target(b"http://h.test?q"),
            (Some(&b"h.test"[..]), &b"?q"[..])
        );
    }
}
