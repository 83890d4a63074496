//! HTTP/2 from clients: hyper's HTTP/2 server speaks the wire format; each request goes
//! through the request core ([`crate::request`]) and upstream over the same raw HTTP/1.1
//! connections as the HTTP/1.1 path, or over HTTP/2 to an endpoint that speaks h2c
//! ([`h2c`]). The response body ([`body::RespBody`]) carries the
//! request's [`Exchange`], which records the outcome when the body ends.

pub(crate) mod body;
mod h2c;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_config::model::UpstreamProtocol;

use crate::codec::head::{Framing, valid_host};
use crate::conn::ConnInfo;
use crate::conn::ServerSettings;
use crate::error::{Kind, ProxyError};
use crate::request::forward::{Outgoing, debug_headers, write_head};
use crate::request::{self, Exchange, LogLine, RequestLine};
use crate::upstream::UpConn;
use crate::upstream::client::{Pace, UpError, read_response_head, retry_head};
use crate::upstream::mirror::{spawn_mirror_copy, tee_extend};
use body::RespBody;

/// Serves HTTP/2 on `io` until the client closes or `stop` asks the connection to
/// finish (then gracefully: GOAWAY, open streams carried to their end).
pub(crate) async fn serve<S>(
    conn: Arc<ConnInfo>,
    io: S,
    settings: ServerSettings,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client = conn.client;
    let service = service_fn(move |req| {
        let conn = conn.clone();
        async move {
            // Busy while the request is being answered (up to its response head): an
            // evicted HTTP/2 connection ends gracefully, its streams carried to the end.
            let _busy = crate::admission::Busy::new(&conn.slot);
            Ok::<_, Infallible>(handle(conn.clone(), req, settings).await)
        }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(settings.max_header_bytes as u32)
        .keep_alive_interval(Some(settings.idle_timeout / 2))
        .keep_alive_timeout(Duration::from_secs(20));
    let served = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(served);
    let result = tokio::select! {
        r = served.as_mut() => r,
        _ = stop.cancelled() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%client, "HTTP/2 connection ended: {e}");
    }
}

/// Handles one HTTP/2 request; never fails (errors become short responses).
async fn handle(
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
    settings: ServerSettings,
) -> Response<RespBody> {
    let start = Instant::now();
    conn.shared
        .counters
        .requests
        .fetch_add(1, Ordering::Relaxed);
    // `:authority` wins over Host, as an absolute-form target does in HTTP/1.1.
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("")
        .to_owned();
    if !host.is_empty() && !valid_host(host.as_bytes()) {
        conn.shared.counters.error(Kind::BadRequest);
        return short_response(Kind::BadRequest);
    }
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let line = RequestLine {
        method: req.method().as_str(),
        host: &host,
        path: req.uri().path(),
        target,
    };
    let (routed, sink) = request::route(&conn, &line, req.headers());
    let log = LogLine::new(sink, &line);
    let routed = match routed {
        Ok(r) if r.endpoint.protocol == UpstreamProtocol::H2c => {
            return h2c::handle(conn, req, &host, r, start, log, settings).await;
        }
        Ok(r) => r,
        Err(refused) => {
            refused.record(&conn, start, log);
            return refused_response(&refused);
        }
    };

    let (parts, body) = req.into_parts();
    let mut head = Vec::with_capacity(512);
    let sized = parts.headers.contains_key(header::CONTENT_LENGTH);
    let has_body = !body.is_end_stream();
    let chunked = has_body && !sized;
    write_head(
        &mut head,
        &conn,
        &Outgoing {
            method: parts.method.as_str().as_bytes(),
            target: parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .as_bytes(),
            host: (!host.is_empty()).then_some(host.as_bytes()),
            chunked,
            upgrade: false,
        },
        parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
        // HTTP/2 has no Connection header (hyper refuses one).
        |_| false,
        routed.edit.as_deref(),
    );
    let is_head = parts.method == http::Method::HEAD;
    // A mirror route's copy: at once without a body; with one, the body is copied as
    // it goes upstream (up to MIRROR_MAX) and the copy sent once it has.
    let mut tee: Option<Vec<u8>> = None;
    if !routed.mirror.is_empty() {
        let mirror = &routed.mirror;
        if has_body {
            tee = Some(Vec::new());
        } else {
            spawn_mirror_copy(
                &conn.shared.tasks,
                head.clone(),
                mirror,
                routed.pool,
                routed.request_timeout(),
                is_head,
            );
        }
    }
    let safe = !has_body && request::retry_safe(parts.method.as_str().as_bytes());
    let mut ex = Exchange::begin(conn, routed, start, log);
    let checked_out = ex.checkout().await;
    let r = &ex.routed;

    // The client's body is paced (`bodyTimeout`, `minBodyRate`), each write upstream
    // has `requestTimeout`, and `requestTimeout` for the response head starts once the
    // request has gone: an upload may take as long as it steadily moves.
    let pace = request::client_body_pace(&settings, r);
    let sent = async {
        let mut up = checked_out.map_err(Sent::Upstream)?;
        match send(&mut up, &head, body, chunked, &mut tee, pace).await {
            Ok(()) => {}
            Err(Sent::Upstream(_)) if safe && !up.fresh => {
                up = retry_head(&r.endpoint, &r.pool, &head, r.request_timeout())
                    .await
                    .map_err(Sent::Upstream)?;
            }
            Err(e) => return Err(e),
        }
        match read_response_head(&mut up, r.request_timeout()).await {
            Ok(h) => Ok((up, h)),
            Err(UpError::Closed) if safe && !up.fresh => {
                let mut fresh = retry_head(&r.endpoint, &r.pool, &head, r.request_timeout())
                    .await
                    .map_err(Sent::Upstream)?;
                let h = read_response_head(&mut fresh, r.request_timeout())
                    .await
                    .map_err(|e| Sent::Upstream(up_error(e)))?;
                Ok((fresh, h))
            }
            Err(e) => Err(Sent::Upstream(up_error(e))),
        }
    }
    .await;
    if let Some(copy) = tee {
        spawn_mirror_copy(
            ex.tasks(),
            copy,
            &r.mirror,
            r.pool,
            r.request_timeout(),
            is_head,
        );
    }
    let (mut up, mut resp_head) = match sent {
        Ok(pair) => pair,
        Err(Sent::Upstream(e)) => {
            tracing::debug!("upstream: {e}");
            ex.fail(e.kind);
            return short_response(e.kind);
        }
        Err(Sent::ClientSlow) => {
            ex.fail(Kind::BodyTimeout);
            return short_response(Kind::BodyTimeout);
        }
        Err(Sent::ClientGone) => {
            ex.client_gone();
            return short_response(Kind::BadRequest);
        }
        Err(Sent::TooLarge) => {
            ex.fail(Kind::BodyTooLarge);
            return short_response(Kind::BodyTooLarge);
        }
    };
    // Interim responses mean nothing to an HTTP/2 client here: skip them.
    while (100..200).contains(&resp_head.status) {
        let len = resp_head.common.len;
        bytes::Buf::advance(&mut up.buf, len);
        resp_head = match read_response_head(&mut up, r.request_timeout()).await {
            Ok(h) => h,
            Err(e) => {
                let kind = up_error(e).kind;
                ex.fail(kind);
                return short_response(kind);
            }
        };
    }

    let framing = resp_head.framing(is_head);
    let keep = resp_head.common.keep_alive()
        && framing != Framing::UntilClose
        && !resp_head.common.both_framings;
    let mut builder = Response::builder().status(resp_head.status);
    {
        let b: &[u8] = &up.buf;
        let edit = r.edit.as_deref();
        for (n, v) in resp_head.common.headers() {
            let name = n.get(b);
            if resp_head.common.is_hop_by_hop(b, name, false)
                || edit.is_some_and(|e| e.drops(true, name))
            {
                continue;
            }
            builder = builder.header(name, v.get(b));
        }
        if let Some(e) = edit {
            e.extra(true, |n, v| {
                builder = std::mem::take(&mut builder).header(n, v);
            });
        }
        if let Some(ticket) = r.ticket {
            debug_headers(r, ticket, |n, v| {
                builder = std::mem::take(&mut builder).header(n, v);
            });
        }
    }
    let len = resp_head.common.len;
    bytes::Buf::advance(&mut up.buf, len);
    up.spans = std::mem::take(&mut resp_head.common.headers);
    ex.status = resp_head.status;
    match builder.body(()) {
        Ok(resp) => {
            let (parts, ()) = resp.into_parts();
            Response::from_parts(parts, RespBody::upstream(up, framing, keep, ex))
        }
        Err(_) => {
            ex.fail(Kind::UpstreamProtocol);
            short_response(Kind::UpstreamProtocol)
        }
    }
}

fn up_error(e: UpError) -> ProxyError {
    match e {
        UpError::Timeout => ProxyError::new(Kind::ResponseTimeout),
        other => ProxyError::with(Kind::UpstreamProtocol, format!("{other:?}")),
    }
}

/// Why a request could not be sent upstream.
enum Sent {
    /// The upstream failed (connect, write, or its answer).
    Upstream(ProxyError),
    /// The client's body stalled or came slower than `minBodyRate`.
    ClientSlow,
    /// The client reset the stream mid-body.
    ClientGone,
    /// The client's body grew past the route's limit.
    TooLarge,
}

/// Writes `data` upstream within `limit`.
async fn write_up(up: &mut UpConn, data: &[u8], limit: Duration) -> Result<(), Sent> {
    match tokio::time::timeout(limit, up.stream.write_all(data)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Sent::Upstream(ProxyError::with(Kind::UpstreamProtocol, e))),
        Err(_) => Err(Sent::Upstream(ProxyError::new(Kind::UpstreamProtocol))),
    }
}

/// Writes the head, then streams the request body (chunk-encoded when unsized), paced
/// by `pace`. `tee`, when given, gets a copy of every byte sent, for a mirror route; it
/// is dropped (None) if the request outgrows the mirror limit or the body fails.
async fn send(
    up: &mut UpConn,
    head: &[u8],
    mut body: Incoming,
    chunked: bool,
    tee: &mut Option<Vec<u8>>,
    pace: Pace,
) -> Result<(), Sent> {
    tee_extend(tee, head);
    let sent = async {
        write_up(up, head, pace.write).await?;
        let began = Instant::now();
        let mut received: u64 = 0;
        loop {
            let until = pace.read_deadline(began, received);
            let frame = match tokio::time::timeout_at(until, body.frame()).await {
                // The route's whole-exchange deadline, not the client's pace.
                Err(_) if pace.past_deadline() => {
                    return Err(Sent::Upstream(ProxyError::new(Kind::ResponseTimeout)));
                }
                Err(_) => return Err(Sent::ClientSlow),
                Ok(None) => break,
                Ok(Some(Err(_))) => return Err(Sent::ClientGone),
                Ok(Some(Ok(f))) => f,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            received += data.len() as u64;
            if received > pace.max_body {
                return Err(Sent::TooLarge);
            }
            if chunked {
                let size = format!("{:x}\r\n", data.len());
                tee_extend(tee, size.as_bytes());
                tee_extend(tee, &data);
                tee_extend(tee, b"\r\n");
                write_up(up, size.as_bytes(), pace.write).await?;
                write_up(up, &data, pace.write).await?;
                write_up(up, b"\r\n", pace.write).await?;
            } else {
                tee_extend(tee, &data);
                write_up(up, &data, pace.write).await?;
            }
        }
        if chunked {
            tee_extend(tee, b"0\r\n\r\n");
            write_up(up, b"0\r\n\r\n", pace.write).await?;
        }
        match tokio::time::timeout(pace.write, up.stream.flush()).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Sent::Upstream(ProxyError::new(Kind::UpstreamProtocol))),
        }
    }
    .await;
    if sent.is_err() {
        *tee = None;
    }
    sent
}

/// The proxy's own answer to a request it did not forward.
fn refused_response(r: &request::Refused) -> Response<RespBody> {
    own_response(r.status(), r.headers(), r.body())
}

/// A short response made by the proxy for `kind`.
fn short_response(kind: Kind) -> Response<RespBody> {
    own_response(kind.status(), &[], kind.body())
}

/// A response of the proxy's own: status, extra headers, a short plain-text body.
fn own_response(
    status: u16,
    headers: &[(&'static str, String)],
    body: &'static str,
) -> Response<RespBody> {
    let mut resp = Response::new(RespBody::full(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let h = resp.headers_mut();
    if !body.is_empty() {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    for (n, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.append(*n, v);
        }
    }
    resp
}
