//! The HTTP/1.1 fast path: a client connection's requests are read, routed and forwarded
//! to pooled raw upstream connections byte for byte, heads rewritten on the way.
//!
//! Hand-written rather than built on hyper's server and client because the CPU cost per
//! proxied request is weir's headline figure and hyper's general machinery (a task and
//! channels per upstream connection, header maps, timers per request) cost twice what
//! nginx spends in user space. Here a request costs two head parses into byte ranges
//! (httparse), one write of each rewritten head with the body bytes already at hand, and
//! no allocation. HTTP/2 (prior knowledge or ALPN) goes through hyper instead
//! ([`crate::service`]).
//!
//! What it covers: keep-alive and pipelining, Content-Length and chunked bodies streamed
//! both ways (never buffered whole), close-delimited responses, HEAD/204/304, interim 1xx
//! responses and `Expect: 100-continue`, Upgrade (WebSocket) tunnels, HTTP/1.0 clients,
//! request smuggling guards (CL+TE, conflicting lengths, unknown codings refused), a
//! retry on a fresh connection when a pooled one turns out closed before a safe request
//! was answered.

pub(crate) mod chunked;
pub(crate) mod head;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::access_log::Entry;
use crate::error::Kind;
use crate::routing::{Backend, Headers, Target, normalize_host};
use crate::service::ConnInfo;
use crate::stats::Outcome;
use crate::upstream::{EndpointPool, PoolSettings, UpConn};
use chunked::Chunked;
use head::{Common, Framing, RequestHead, parse_request, parse_response};

/// The HTTP/2 connection preface.
pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Client-side settings of the fast path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) max_header_bytes: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) min_body_rate: u64,
    pub(crate) send_timeout: Duration,
}

/// Read buffer of a client connection to start with, and its growth step while a
/// head is incomplete: most request heads fit in it, and an idle connection holds it.
pub(crate) const CLIENT_BUF: usize = 2 * 1024;
/// An idle keep-alive connection frees its buffers after this long.
const SHRINK_AFTER: Duration = Duration::from_secs(2);
/// Bytes read at once while streaming a body.
const BODY_READ: usize = 16 * 1024;
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

/// The largest request a mirror route copies (head and body as sent upstream): a copy is
/// kept in memory until the real request's body has gone upstream.
pub(crate) const MIRROR_MAX: usize = 64 * 1024;

/// Adds `bytes`, sent upstream, to a mirror route's copy; drops the copy (None) once the
/// request outgrows [`MIRROR_MAX`].
pub(crate) fn tee_extend(tee: &mut Option<Vec<u8>>, bytes: &[u8]) {
    if let Some(t) = tee {
        if t.len() + bytes.len() > MIRROR_MAX {
            *tee = None;
        } else {
            t.extend_from_slice(bytes);
        }
    }
}

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
    settings: Settings,
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
    settings: &Settings,
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

/// What the access log needs of a request, taken only when the log is on.
struct LogInfo {
    time: std::time::SystemTime,
    method: String,
    host: String,
    path: String,
}

/// One request and its response.
#[allow(clippy::too_many_arguments)]
async fn exchange<S>(
    conn: &Arc<ConnInfo>,
    io: &mut S,
    rbuf: &mut BytesMut,
    wbuf: &mut Vec<u8>,
    spans: &mut Vec<(head::Span, head::Span)>,
    mut head: RequestHead,
    start: Instant,
    settings: &Settings,
    drain: &CancellationToken,
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
    let idempotent = head.is_idempotent(buf) && !has_body;

    // Origin-form target and the host: an absolute-form target's authority wins over
    // Host (RFC 9112 §3.2.2), else Host.
    let target = head.target.get(buf);
    let (authority, origin) = split_target(target);
    if authority.is_some_and(|a| !head::valid_host(a)) {
        return refuse(conn, io, wbuf, Kind::BadRequest, settings).await;
    }
    let host_raw = match (authority, head.host) {
        (Some(a), _) => a,
        (None, Some(h)) => h.get(buf),
        (None, None) => b"",
    };
    let path_only = match origin.iter().position(|b| *b == b'?') {
        Some(q) => &origin[..q],
        None => origin,
    };
    // httparse lets only visible ASCII through in a target, and valid_host keeps the
    // host ASCII; a failure here is a bug's guard, answered 400 rather than guessed.
    let (Ok(host_str), Ok(path_str)) = (
        std::str::from_utf8(host_raw),
        std::str::from_utf8(path_only),
    ) else {
        return refuse(conn, io, wbuf, Kind::BadRequest, settings).await;
    };

    // One snapshot load; everything needed is taken before the first await.
    let routed = {
        let table = conn.shared.table.load();
        let mut hbuf = [0u8; 256];
        let host = normalize_host(host_str, &mut hbuf);
        let view = HeadHeaders {
            common: &head.common,
            buf,
        };
        match table.lookup(conn.listener_index, host, path_str, &view) {
            None => Err((Kind::NoRoute, None, None, table.access_log)),
            Some(route) => match &route.target {
                Target::Unavailable { reason, .. } => {
                    tracing::debug!(route = %route.name, "{reason}");
                    Err((
                        Kind::Unavailable,
                        Some(route.name.clone()),
                        None,
                        table.access_log,
                    ))
                }
                Target::Split(t) => {
                    let (backend, ticket) = t.pick(&view);
                    let backend = backend.clone();
                    let mirror = t
                        .mirror(
                            std::str::from_utf8(head.method.get(buf)).unwrap_or(""),
                            path_str,
                            &view,
                        )
                        .and_then(|b| b.pick_endpoint().cloned().map(|e| (b.clone(), e)));
                    match backend.pick_endpoint().cloned() {
                        None => Err((
                            Kind::NoEndpoints,
                            Some(route.name.clone()),
                            Some(backend),
                            table.access_log,
                        )),
                        Some(endpoint) => Ok(Routed {
                            route: route.name.clone(),
                            backend,
                            endpoint,
                            ticket: table.debug_headers.then_some(ticket),
                            pool: PoolSettings {
                                connect_timeout: table.upstream.connect_timeout,
                                idle_timeout: table.upstream.idle_timeout,
                                max_idle: table.upstream.max_idle_per_endpoint as usize,
                            },
                            request_timeout: table.upstream.request_timeout,
                            log: table.access_log,
                            mirror,
                        }),
                    }
                }
            },
        }
    };

    let log_info = |buf: &[u8]| LogInfo {
        time: std::time::SystemTime::now(),
        method: String::from_utf8_lossy(head.method.get(buf)).into_owned(),
        host: host_str.to_owned(),
        path: String::from_utf8_lossy(origin).into_owned(),
    };

    let r = match routed {
        Ok(r) => r,
        Err((kind, route, backend, log)) => {
            let info = log.then(|| log_info(buf));
            conn.shared.counters.error(kind);
            let status = kind.status();
            if let Some(b) = &backend {
                b.stats.record(Outcome {
                    status,
                    proxy_error: true,
                    latency_us: start.elapsed().as_micros() as u64,
                });
            }
            // An unread body cannot be skipped safely: close after answering.
            let close = has_body || !client_keep || drain.is_cancelled();
            let len = head.common.len;
            *spans = std::mem::take(&mut head.common.headers);
            rbuf.advance(len);
            let ok = write_simple(io, wbuf, kind, close, settings.send_timeout)
                .await
                .is_ok();
            if let Some(info) = info {
                write_log(
                    conn,
                    &info,
                    status,
                    route.as_deref(),
                    backend.as_deref(),
                    None,
                    start,
                    Some(kind.label()),
                );
            }
            return if close || !ok {
                Next::Close
            } else {
                Next::KeepAlive
            };
        }
    };
    let info = r.log.then(|| log_info(buf));

    // The upstream request head, with the body bytes already read appended below.
    wbuf.clear();
    write_request_head(wbuf, conn, &head, buf, origin, authority, upgrade);
    // `Expect: 100-continue` is answered by weir itself once the request can go
    // upstream (as nginx does), and not passed on: an origin that ignores it would
    // otherwise leave both sides waiting for the other until the response timeout.
    let send_continue = head.expect_continue && has_body && minor == 1;
    rbuf.advance(head.common.len);
    // A copy for a mirror route: at once when the whole request is at hand (no body, or
    // a body already read); otherwise the body is copied as it goes upstream (up to
    // MIRROR_MAX) and the copy sent once it has. A mirror never holds back the request.
    let mut tee: Option<Vec<u8>> = None;
    if let Some(mirror) = &r.mirror {
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
            spawn_mirror_copy(copy, mirror, r.pool, r.request_timeout, is_head);
        }
    }
    *spans = std::mem::take(&mut head.common.headers);

    r.endpoint.begin();
    let mut fin = Fin {
        conn,
        r: &r,
        start,
        status: 0,
        proxy_error: false,
        info,
        recorded: false,
        send_timeout: settings.send_timeout,
    };

    let mut up = match r.endpoint.checkout_raw(&r.pool).await {
        Ok(up) => up,
        Err(e) => {
            tracing::debug!(endpoint = %r.endpoint.addr, "upstream: {e}");
            let close = has_body || !client_keep || drain.is_cancelled();
            return fin.fail(io, wbuf, e.kind, close).await;
        }
    };

    if send_continue && rbuf.is_empty() {
        let mut cont = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
        if send_to(io, &mut cont, settings.send_timeout).await.is_err() {
            fin.abandon();
            return Next::Close;
        }
    }
    // Send the head and the body. The client's body is paced: no more than
    // `bodyTimeout` between reads, and `minBodyRate` on average after that grace.
    let pace = Pace {
        read_idle: settings.body_timeout,
        min_rate: settings.min_body_rate,
        grace: settings.body_timeout,
        write: r.request_timeout,
    };
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
            && let (Some(copy), Some(mirror)) = (tee.take(), &r.mirror)
        {
            spawn_mirror_copy(copy, mirror, r.pool, r.request_timeout, is_head);
        }
        sent
    } else {
        // wbuf keeps the head: it is sent again if this pooled connection was closed.
        write_keep(&mut up.stream, wbuf)
            .await
            .map_err(BodyError::Write)
    };
    if matches!(sent, Err(BodyError::Write(_))) && !has_body && idempotent && !up.fresh {
        // A stale pooled connection: once more on a fresh one.
        match retry_head(&r.endpoint, &r.pool, wbuf).await {
            Ok(fresh) => {
                up = fresh;
                sent = Ok(());
            }
            Err(kind) => return fin.fail(io, wbuf, kind, !client_keep).await,
        }
    }
    if let Err(e) = sent {
        // The upstream connection carries a part of a request: it is dropped, never
        // pooled.
        return match e {
            BodyError::Write(_) => fin.fail(io, wbuf, Kind::UpstreamProtocol, true).await,
            // The client's own body was garbled or too slow: its fault, answered as such.
            BodyError::Chunked => fin.refuse(io, wbuf, Kind::BadRequest).await,
            BodyError::Timeout => fin.refuse(io, wbuf, Kind::BodyTimeout).await,
            // The client went away mid-body.
            BodyError::Read(_) | BodyError::Truncated => {
                fin.status = 499;
                fin.record(None);
                Next::Close
            }
        };
    }
    // While wbuf holds the head and nothing else was sent, a closed pooled
    // connection can be retried.
    let retry = !has_body && idempotent && !up.fresh;
    if !retry {
        wbuf.clear();
    }
    finish_exchange(
        conn,
        io,
        rbuf,
        wbuf,
        up,
        fin,
        ExchangeState {
            is_head,
            client_keep,
            minor,
            upgrade,
            settings,
            drain,
            retry,
        },
    )
    .await
}

struct ExchangeState<'a> {
    is_head: bool,
    client_keep: bool,
    minor: u8,
    upgrade: bool,
    settings: &'a Settings,
    drain: &'a CancellationToken,
    /// `wbuf` still holds the request head, which may be sent again.
    retry: bool,
}

struct Routed {
    mirror: Option<(Arc<Backend>, Arc<EndpointPool>)>,
    route: Arc<str>,
    backend: Arc<Backend>,
    endpoint: Arc<EndpointPool>,
    ticket: Option<Option<u64>>,
    pool: PoolSettings,
    request_timeout: Duration,
    log: bool,
}

/// Sends `head` on a fresh connection.
async fn retry_head(
    endpoint: &EndpointPool,
    pool: &PoolSettings,
    head: &[u8],
) -> Result<UpConn, Kind> {
    let mut up = endpoint.connect_raw(pool).await.map_err(|e| e.kind)?;
    up.stream
        .write_all(head)
        .await
        .map_err(|_| Kind::UpstreamProtocol)?;
    Ok(up)
}

/// Reads the response, relays it, and settles the connection.
async fn finish_exchange<S>(
    conn: &Arc<ConnInfo>,
    io: &mut S,
    rbuf: &mut BytesMut,
    wbuf: &mut Vec<u8>,
    mut up: UpConn,
    mut fin: Fin<'_>,
    mut st: ExchangeState<'_>,
) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let timeout = fin.r.request_timeout;
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
                        if send_to(io, wbuf, st.settings.send_timeout).await.is_err() {
                            fin.abandon();
                            return Next::Close;
                        }
                    }
                    up.buf.advance(len);
                    continue;
                }
                break h;
            }
            Err(UpError::Closed) if st.retry => {
                tracing::debug!(endpoint = %fin.r.endpoint.addr, "pooled connection closed before answering; retrying on a fresh one");
                // The pooled connection was closed under us before any answer.
                st.retry = false;
                match retry_head(&fin.r.endpoint, &fin.r.pool, wbuf).await {
                    Ok(fresh) => {
                        up = fresh;
                        continue;
                    }
                    Err(kind) => return fin.fail(io, wbuf, kind, !st.client_keep).await,
                }
            }
            Err(UpError::Timeout) => return fin.fail(io, wbuf, Kind::ResponseTimeout, true).await,
            Err(e) => {
                tracing::debug!(endpoint = %fin.r.endpoint.addr, retry = st.retry, "upstream response: {e:?}");
                return fin
                    .fail(io, wbuf, Kind::UpstreamProtocol, !st.client_keep)
                    .await;
            }
        }
    };
    fin.status = resp.status;

    // An upgrade the upstream accepted: relay the 101, then tunnel bytes both ways.
    if resp.status == 101 {
        if !st.upgrade {
            return fin.fail(io, wbuf, Kind::UpstreamProtocol, true).await;
        }
        wbuf.clear();
        let len = resp.common.len;
        wbuf.extend_from_slice(&up.buf[..len]);
        up.buf.advance(len);
        wbuf.extend_from_slice(&up.buf);
        up.buf.clear();
        if send_to(io, wbuf, st.settings.send_timeout).await.is_err() {
            fin.abandon();
            return Next::Close;
        }
        fin.record(None);
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
        st.client_keep && !st.drain.is_cancelled() && framing != Framing::UntilClose && !decode;

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
        for (n, v) in resp.common.headers() {
            let name = n.get(b);
            if resp.common.is_hop_by_hop(b, name, false) {
                continue;
            }
            put_header(wbuf, name, v.get(b));
        }
        if framing == Framing::Chunked && !decode {
            wbuf.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        if !client_keep {
            wbuf.extend_from_slice(b"connection: close\r\n");
        } else if st.minor == 0 {
            wbuf.extend_from_slice(b"connection: keep-alive\r\n");
        }
        if let Some(ticket) = fin.r.ticket {
            debug_headers(wbuf, fin.r, ticket);
        }
        wbuf.extend_from_slice(b"\r\n");
    }
    let len = resp.common.len;
    up.buf.advance(len);
    up.spans = std::mem::take(&mut resp.common.headers);

    // The upstream has `requestTimeout` between reads; the client, `sendTimeout` for
    // each write to make progress (a client that stops reading is let go).
    let pace = Pace {
        read_idle: timeout,
        min_rate: 0,
        grace: timeout,
        write: st.settings.send_timeout,
    };
    match forward_body(
        &mut up.buf,
        &mut up.stream,
        io,
        wbuf,
        framing,
        decode,
        pace,
        &mut None,
    )
    .await
    {
        Ok(()) => {}
        Err(BodyError::Write(_)) => {
            fin.abandon();
            return Next::Close;
        }
        Err(_) => {
            // The upstream broke off mid-body: the client cannot be told any more.
            conn.shared.counters.error(Kind::UpstreamProtocol);
            fin.proxy_error = true;
            fin.record(Some(Kind::UpstreamProtocol));
            return Next::Close;
        }
    }
    fin.record(None);
    let endpoint = fin.r.endpoint.clone();
    let max_idle = fin.r.pool.max_idle;
    if upstream_keep {
        endpoint.checkin_raw(up, max_idle);
    }
    if client_keep {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// The end of one exchange: records it once.
struct Fin<'a> {
    conn: &'a Arc<ConnInfo>,
    r: &'a Routed,
    start: Instant,
    status: u16,
    proxy_error: bool,
    info: Option<LogInfo>,
    recorded: bool,
    send_timeout: Duration,
}

impl Drop for Fin<'_> {
    fn drop(&mut self) {
        // Ended without an answer (the client left, or shutdown cut it): nginx's 499.
        if self.status == 0 {
            self.status = 499;
        }
        self.record(None);
    }
}

impl Fin<'_> {
    fn record(&mut self, error: Option<Kind>) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let latency_us = self.start.elapsed().as_micros() as u64;
        self.r.backend.stats.record(Outcome {
            status: self.status,
            proxy_error: self.proxy_error,
            latency_us,
        });
        self.r.endpoint.end();
        if let Some(info) = self.info.take() {
            write_log(
                self.conn,
                &info,
                self.status,
                Some(&*self.r.route),
                Some(&*self.r.backend),
                Some(&*self.r.endpoint),
                self.start,
                error
                    .map(Kind::label)
                    .or(self.proxy_error.then_some("proxy")),
            );
        }
    }

    /// The client went away: the outcome is what the upstream said.
    fn abandon(&mut self) {
        self.record(None);
    }

    /// Answers with the proxy's own error response and records it.
    async fn fail<S: AsyncWrite + Unpin>(
        mut self,
        io: &mut S,
        wbuf: &mut Vec<u8>,
        kind: Kind,
        close: bool,
    ) -> Next {
        self.conn.shared.counters.error(kind);
        self.status = kind.status();
        self.proxy_error = true;
        let ok = write_simple(io, wbuf, kind, close, self.send_timeout)
            .await
            .is_ok();
        self.record(Some(kind));
        if close || !ok {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// The client's own fault mid-request (a garbled or stalled body): answered with
    /// `kind`'s status, recorded as the client's, and the connection closed.
    async fn refuse<S: AsyncWrite + Unpin>(
        mut self,
        io: &mut S,
        wbuf: &mut Vec<u8>,
        kind: Kind,
    ) -> Next {
        self.conn.shared.counters.error(kind);
        self.status = kind.status();
        let _ = write_simple(io, wbuf, kind, true, self.send_timeout).await;
        self.record(Some(kind));
        Next::Close
    }
}

/// Answers a request refused before it was routed (`kind` is a client error) and
/// closes: its body, if any, is not read.
async fn refuse<S: AsyncWrite + Unpin>(
    conn: &ConnInfo,
    io: &mut S,
    wbuf: &mut Vec<u8>,
    kind: Kind,
    settings: &Settings,
) -> Next {
    conn.shared.counters.error(kind);
    let _ = write_simple(io, wbuf, kind, true, settings.send_timeout).await;
    Next::Close
}

#[allow(clippy::too_many_arguments)]
fn write_log(
    conn: &ConnInfo,
    info: &LogInfo,
    status: u16,
    route: Option<&str>,
    backend: Option<&Backend>,
    endpoint: Option<&EndpointPool>,
    start: Instant,
    error: Option<&str>,
) {
    if let Some(sink) = conn.shared.access_log.load().as_ref() {
        sink.write(&Entry {
            time: crate::access_log::rfc3339(info.time),
            client: conn.client.to_string(),
            host: &info.host,
            method: &info.method,
            path: &info.path,
            status,
            route,
            role: backend
                .map(|b| b.key.role.label())
                .filter(|r| !r.is_empty()),
            revision: backend.map(|b| &*b.key.revision).filter(|r| !r.is_empty()),
            upstream: endpoint.map(|e| e.addr.to_string()),
            duration: start.elapsed().as_secs_f64(),
            error,
        });
    }
}

/// Splits a request target into (authority of an absolute form, origin-form part).
fn split_target(target: &[u8]) -> (Option<&[u8]>, &[u8]) {
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

pub(crate) fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes the upstream request head into `out`.
fn write_request_head(
    out: &mut Vec<u8>,
    conn: &ConnInfo,
    head: &RequestHead,
    buf: &[u8],
    origin: &[u8],
    authority: Option<&[u8]>,
    upgrade: bool,
) {
    out.extend_from_slice(head.method.get(buf));
    out.push(b' ');
    out.extend_from_slice(origin);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (n, v) in head.common.headers() {
        let name = n.get(buf);
        if name.eq_ignore_ascii_case(b"te") {
            // The one TE value a proxy passes on: it forwards trailers verbatim.
            if v.get(buf).eq_ignore_ascii_case(b"trailers") {
                put_header(out, name, b"trailers");
            }
            continue;
        }
        if head.common.is_hop_by_hop(buf, name, upgrade)
            || name.eq_ignore_ascii_case(b"x-forwarded-for")
            || name.eq_ignore_ascii_case(b"x-forwarded-proto")
            || name.eq_ignore_ascii_case(b"x-forwarded-host")
            // weir answers `Expect: 100-continue` itself.
            || (head.expect_continue && name.eq_ignore_ascii_case(b"expect"))
            // An absolute-form target's authority replaces Host (RFC 9112 §3.2.2).
            || (authority.is_some() && name.eq_ignore_ascii_case(b"host"))
        {
            continue;
        }
        put_header(out, name, v.get(buf));
    }
    let host = match authority {
        Some(a) => {
            put_header(out, b"host", a);
            Some(a)
        }
        None => head.host.map(|h| h.get(buf)),
    };
    if head.common.chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if let Some(prev) = head.xff {
        let prev = prev.get(buf);
        if !prev.is_empty() {
            out.extend_from_slice(prev);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(conn.client_ip.as_bytes());
    out.extend_from_slice(if conn.tls {
        b"\r\nx-forwarded-proto: https\r\n"
    } else {
        b"\r\nx-forwarded-proto: http\r\n"
    });
    if let Some(h) = host {
        put_header(out, b"x-forwarded-host", h);
    }
    out.extend_from_slice(b"\r\n");
}

fn debug_headers(out: &mut Vec<u8>, r: &Routed, ticket: Option<u64>) {
    put_header(out, b"x-weir-route", r.route.as_bytes());
    put_header(out, b"x-weir-service", r.backend.key.service.as_bytes());
    put_header(
        out,
        b"x-weir-role",
        r.backend.key.role.to_string().as_bytes(),
    );
    put_header(out, b"x-weir-revision", r.backend.key.revision.as_bytes());
    put_header(
        out,
        b"x-weir-upstream",
        r.endpoint.addr.to_string().as_bytes(),
    );
    if let Some(t) = ticket {
        let mut b = itoa::Buffer::new();
        put_header(out, b"x-weir-split-seq", b.format(t).as_bytes());
    }
}

/// Writes a short response made by the proxy for `kind`.
async fn write_simple<S: AsyncWrite + Unpin>(
    io: &mut S,
    wbuf: &mut Vec<u8>,
    kind: Kind,
    close: bool,
    send_timeout: Duration,
) -> std::io::Result<()> {
    wbuf.clear();
    let mut b = itoa::Buffer::new();
    let body = kind.body();
    wbuf.extend_from_slice(b"HTTP/1.1 ");
    wbuf.extend_from_slice(b.format(kind.status()).as_bytes());
    wbuf.push(b' ');
    wbuf.extend_from_slice(kind.reason().as_bytes());
    wbuf.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ");
    wbuf.extend_from_slice(b.format(body.len()).as_bytes());
    if close {
        wbuf.extend_from_slice(b"\r\nconnection: close");
    }
    wbuf.extend_from_slice(b"\r\n\r\n");
    wbuf.extend_from_slice(body.as_bytes());
    send_to(io, wbuf, send_timeout).await
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
enum BodyError {
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
}

impl Pace {
    /// When the next read must have completed, given `received` bytes since `began`.
    pub(crate) fn read_deadline(&self, began: Instant, received: u64) -> Instant {
        let idle = Instant::now() + self.read_idle;
        if self.min_rate == 0 {
            return idle;
        }
        let due =
            began + self.grace + Duration::from_secs_f64(received as f64 / self.min_rate as f64);
        idle.min(due)
    }
}

/// Forwards one message body from `src` to `dst`: first what `src_buf` already holds,
/// then what is read. `out` may hold a head to send first; it goes in the same write as
/// the first body bytes. With `decode`, a chunked body is sent as plain bytes.
#[expect(
    clippy::too_many_arguments,
    reason = "the body pump's buffers, ends and rules, each borrowed from a different owner"
)]
async fn forward_body<R, W>(
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

#[cfg(test)]
mod size_tests {
    use super::*;

    #[test]
    fn future_sizes() {
        let shared = Arc::new(crate::service::Shared {
            table: Arc::new(arc_swap::ArcSwap::from_pointee(
                crate::routing::build(
                    &weir_config::load_str(std::path::Path::new("/x.yaml"), "").unwrap(),
                    &Default::default(),
                    &mut crate::routing::BuildContext::new(
                        Arc::new(crate::stats::Stats::new(1, true)),
                        Arc::new(crate::upstream::Upstreams::default()),
                    ),
                )
                .unwrap(),
            )),
            counters: Default::default(),
            access_log: Default::default(),
        });
        let conn = Arc::new(ConnInfo {
            shared,
            listener: "x".into(),
            listener_index: 0,
            client: "127.0.0.1:1".parse().unwrap(),
            client_ip: http::HeaderValue::from_static("127.0.0.1"),
            tls: false,
            slot: Default::default(),
        });
        let s = Settings {
            max_header_bytes: 1000,
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
            min_body_rate: 0,
            send_timeout: Duration::from_secs(1),
        };
        let (a, _b) = tokio::io::duplex(64);
        let f = serve(
            conn,
            a,
            BytesMut::new(),
            s,
            Instant::now(),
            CancellationToken::new(),
        );
        println!("serve future: {} bytes", std::mem::size_of_val(&f));
        println!("RequestHead: {} bytes", std::mem::size_of::<RequestHead>());
    }
}

/// Sends `copy` (a whole request, as sent upstream) to a mirror route's target in a task
/// of its own.
pub(crate) fn spawn_mirror_copy(
    copy: Vec<u8>,
    mirror: &(Arc<Backend>, Arc<EndpointPool>),
    pool: PoolSettings,
    timeout: Duration,
    head_request: bool,
) {
    tokio::spawn(mirror_copy(
        copy,
        mirror.0.clone(),
        mirror.1.clone(),
        pool,
        timeout,
        head_request,
    ));
}

/// Sends a mirrored copy and reads its response to the end: discarded, but measured in
/// the target's stats like any canary request.
async fn mirror_copy(
    copy: Vec<u8>,
    target: Arc<Backend>,
    endpoint: Arc<EndpointPool>,
    pool: PoolSettings,
    timeout: Duration,
    head_request: bool,
) {
    let start = Instant::now();
    endpoint.begin();
    let result: Result<u16, Kind> = async {
        let mut up = endpoint.checkout_raw(&pool).await.map_err(|e| e.kind)?;
        up.stream
            .write_all(&copy)
            .await
            .map_err(|_| Kind::UpstreamProtocol)?;
        let resp = match read_response_head(&mut up, timeout).await {
            Ok(r) => r,
            Err(UpError::Timeout) => return Err(Kind::ResponseTimeout),
            Err(_) => return Err(Kind::UpstreamProtocol),
        };
        let status = resp.status;
        let framing = resp.framing(head_request);
        let keep = resp.common.keep_alive()
            && framing != Framing::UntilClose
            && !resp.common.both_framings;
        up.buf.advance(resp.common.len);
        let mut out = Vec::new();
        let mut sink = tokio::io::sink();
        let pace = Pace {
            read_idle: timeout,
            min_rate: 0,
            grace: timeout,
            write: timeout,
        };
        forward_body(
            &mut up.buf,
            &mut up.stream,
            &mut sink,
            &mut out,
            framing,
            false,
            pace,
            &mut None,
        )
        .await
        .map_err(|_| Kind::UpstreamProtocol)?;
        if keep {
            endpoint.checkin_raw(up, pool.max_idle);
        }
        Ok(status)
    }
    .await;
    endpoint.end();
    let (status, proxy_error) = match result {
        Ok(s) => (s, false),
        Err(k) => (k.status(), true),
    };
    target.stats.record(Outcome {
        status,
        proxy_error,
        latency_us: start.elapsed().as_micros() as u64,
    });
}
