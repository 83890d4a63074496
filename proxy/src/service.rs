//! The HTTP/2 request path: requests come from hyper's HTTP/2 server and go upstream over
//! the same raw HTTP/1.1 connections as the fast path ([`crate::h1`]): one snapshot load,
//! route lookup, split pick, endpoint pick, the head written, the body streamed, and the
//! outcome recorded when the response body ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::access_log::{AccessLogSink, Entry};
use crate::body::RespBody;
use crate::error::{Kind, ProxyError};
use crate::h1::head::Framing;
use crate::h1::head::valid_host;
use crate::h1::{
    Pace, UpError, put_header, read_response_head, spawn_mirror_copy, tee_extend, write_keep,
};
use crate::routing::{Backend, RouteTable, Target, normalize_host};
use crate::server::ServerSettings;
use crate::stats::Outcome;
use crate::upstream::{EndpointPool, PoolSettings, UpConn};

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
    /// The routing snapshot.
    pub table: Arc<ArcSwap<RouteTable>>,
    /// Proxy-wide counters.
    pub counters: Arc<ProxyCounters>,
    /// The access log, when on.
    pub access_log: arc_swap::ArcSwapOption<AccessLogSink>,
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

/// Request line details kept for the access log.
#[derive(Debug)]
struct LogInfo {
    time: std::time::SystemTime,
    host: String,
    method: String,
    path: String,
}

struct Routed {
    mirror: Option<(Arc<Backend>, Arc<EndpointPool>)>,
    route: Arc<str>,
    backend: Arc<Backend>,
    endpoint: Arc<EndpointPool>,
    ticket: Option<Option<u64>>,
    pool: PoolSettings,
    request_timeout: std::time::Duration,
}

/// Handles one HTTP/2 request; never fails (errors become short responses).
pub async fn handle(
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
    settings: ServerSettings,
) -> Response<RespBody> {
    let start = Instant::now();
    let shared = &conn.shared;
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    // `:authority` wins over Host, as an absolute-form target does in HTTP/1.1.
    let host_raw = req
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
    if !host_raw.is_empty() && !valid_host(host_raw.as_bytes()) {
        shared.counters.error(Kind::BadRequest);
        return short_response(Kind::BadRequest, None);
    }

    let (routed, log) = {
        let table = shared.table.load();
        let mut buf = [0u8; 256];
        let host = normalize_host(&host_raw, &mut buf);
        let log = table.access_log;
        let routed = match table.lookup(conn.listener_index, host, req.uri().path(), req.headers())
        {
            None => Err((Kind::NoRoute, None, None)),
            Some(route) => match &route.target {
                Target::Unavailable { reason, .. } => {
                    tracing::debug!(route = %route.name, "{reason}");
                    Err((Kind::Unavailable, Some(route.name.clone()), None))
                }
                Target::Split(t) => {
                    let (backend, ticket) = t.pick(req.headers());
                    let backend = backend.clone();
                    let mirror = t
                        .mirror(req.method().as_str(), req.uri().path(), req.headers())
                        .and_then(|b| b.pick_endpoint().cloned().map(|e| (b.clone(), e)));
                    match backend.pick_endpoint().cloned() {
                        None => Err((Kind::NoEndpoints, Some(route.name.clone()), Some(backend))),
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
                            mirror,
                        }),
                    }
                }
            },
        };
        (routed, log)
    };
    let info = log.then(|| LogInfo {
        time: std::time::SystemTime::now(),
        host: host_raw.clone(),
        method: req.method().as_str().to_owned(),
        path: req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned(),
    });
    let r = match routed {
        Ok(r) => r,
        Err((kind, route, backend)) => {
            shared.counters.error(kind);
            if let Some(b) = &backend {
                b.stats.record(Outcome {
                    status: kind.status(),
                    proxy_error: true,
                    latency_us: start.elapsed().as_micros() as u64,
                });
            }
            if let Some(info) = &info {
                write_log(
                    &conn,
                    info,
                    kind.status(),
                    route.as_deref(),
                    backend.as_deref(),
                    None,
                    start,
                    Some(kind.label()),
                );
            }
            return short_response(kind, None);
        }
    };

    r.endpoint.begin();
    let finish = Finish {
        start,
        status: 0,
        proxy_error: false,
        conn: conn.clone(),
        backend: r.backend.clone(),
        endpoint: r.endpoint.clone(),
        route: r.route.clone(),
        max_idle: r.pool.max_idle,
        log: info.map(Box::new),
        settled: false,
    };

    let (parts, body) = req.into_parts();
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(
        parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes(),
    );
    head.extend_from_slice(b" HTTP/1.1\r\n");
    let mut xff: Option<&HeaderValue> = None;
    for (name, value) in &parts.headers {
        match name.as_str() {
            // Hop-by-hop, set by weir (Host from the authority, X-Forwarded-*), or
            // answered by weir (`Expect: 100-continue`: hyper sends the 100).
            "connection" | "keep-alive" | "proxy-connection" | "te" | "trailer"
            | "transfer-encoding" | "upgrade" | "x-forwarded-proto" | "x-forwarded-host"
            | "host" | "expect" => {}
            "x-forwarded-for" => xff = Some(value),
            n => put_header(&mut head, n.as_bytes(), value.as_bytes()),
        }
    }
    if !host_raw.is_empty() {
        put_header(&mut head, b"host", host_raw.as_bytes());
    }
    let sized = parts.headers.contains_key(header::CONTENT_LENGTH);
    let has_body = !body.is_end_stream();
    let chunked = has_body && !sized;
    if chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    head.extend_from_slice(b"x-forwarded-for: ");
    if let Some(prev) = xff {
        head.extend_from_slice(prev.as_bytes());
        head.extend_from_slice(b", ");
    }
    head.extend_from_slice(conn.client_ip.as_bytes());
    head.extend_from_slice(if conn.tls {
        b"\r\nx-forwarded-proto: https\r\n"
    } else {
        b"\r\nx-forwarded-proto: http\r\n"
    });
    if !host_raw.is_empty() {
        put_header(&mut head, b"x-forwarded-host", host_raw.as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let is_head = parts.method == http::Method::HEAD;
    // A mirror route's copy: at once without a body; with one, the body is copied as
    // it goes upstream (up to MIRROR_MAX) and the copy sent once it has.
    let mut tee: Option<Vec<u8>> = None;
    if let Some(mirror) = &r.mirror {
        if has_body {
            tee = Some(Vec::new());
        } else {
            spawn_mirror_copy(head.clone(), mirror, r.pool, r.request_timeout, is_head);
        }
    }
    let safe = !has_body
        && matches!(
            parts.method.as_str(),
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        );

    // The client's body is paced (`bodyTimeout`, `minBodyRate`), each write upstream
    // has `requestTimeout`, and `requestTimeout` for the response head starts once the
    // request has gone: an upload may take as long as it steadily moves.
    let pace = Pace {
        read_idle: settings.body_timeout,
        min_rate: settings.min_body_rate,
        grace: settings.body_timeout,
        write: r.request_timeout,
    };
    let sent = async {
        let mut up = r
            .endpoint
            .checkout_raw(&r.pool)
            .await
            .map_err(Sent::Upstream)?;
        match send(&mut up, &head, body, chunked, &mut tee, pace).await {
            Ok(()) => {}
            Err(Sent::Upstream(_)) if safe && !up.fresh => {
                up = reconnect(&r, &head).await.map_err(Sent::Upstream)?;
            }
            Err(e) => return Err(e),
        }
        match read_response_head(&mut up, r.request_timeout).await {
            Ok(h) => Ok((up, h)),
            Err(UpError::Closed) if safe && !up.fresh => {
                let mut fresh = reconnect(&r, &head).await.map_err(Sent::Upstream)?;
                let h = read_response_head(&mut fresh, r.request_timeout)
                    .await
                    .map_err(|e| Sent::Upstream(up_error(e)))?;
                Ok((fresh, h))
            }
            Err(e) => Err(Sent::Upstream(up_error(e))),
        }
    }
    .await;
    if let (Some(copy), Some(mirror)) = (tee, &r.mirror) {
        spawn_mirror_copy(copy, mirror, r.pool, r.request_timeout, is_head);
    }
    let (mut up, mut resp_head) = match sent {
        Ok(pair) => pair,
        Err(Sent::Upstream(e)) => return finish.fail(e),
        Err(Sent::ClientSlow) => return finish.refuse(Kind::BodyTimeout),
        Err(Sent::ClientGone) => return finish.refuse(Kind::BadRequest),
    };
    // Interim responses mean nothing to an HTTP/2 client here: skip them.
    while (100..200).contains(&resp_head.status) {
        let len = resp_head.common.len;
        bytes::Buf::advance(&mut up.buf, len);
        resp_head = match read_response_head(&mut up, r.request_timeout).await {
            Ok(h) => h,
            Err(e) => return finish.fail(up_error(e)),
        };
    }

    let framing = resp_head.framing(is_head);
    let keep = resp_head.common.keep_alive()
        && framing != Framing::UntilClose
        && !resp_head.common.both_framings;
    let mut builder = Response::builder().status(resp_head.status);
    {
        let b: &[u8] = &up.buf;
        for (n, v) in resp_head.common.headers() {
            let name = n.get(b);
            if resp_head.common.is_hop_by_hop(b, name, false) {
                continue;
            }
            builder = builder.header(name, v.get(b));
        }
        if let Some(ticket) = r.ticket {
            builder = builder
                .header("x-weir-route", &*r.route)
                .header("x-weir-service", &*r.backend.key.service)
                .header("x-weir-role", r.backend.key.role.to_string())
                .header("x-weir-revision", &*r.backend.key.revision)
                .header("x-weir-upstream", r.endpoint.addr.to_string());
            if let Some(t) = ticket {
                builder = builder.header("x-weir-split-seq", t.to_string());
            }
        }
    }
    let len = resp_head.common.len;
    bytes::Buf::advance(&mut up.buf, len);
    up.spans = std::mem::take(&mut resp_head.common.headers);
    let mut finish = finish;
    finish.status = resp_head.status;
    match builder.body(()) {
        Ok(resp) => {
            let (parts, ()) = resp.into_parts();
            Response::from_parts(parts, RespBody::upstream(up, framing, keep, finish))
        }
        Err(_) => finish.fail(ProxyError::new(Kind::UpstreamProtocol)),
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
}

/// Sends `head` on a fresh connection to the routed endpoint.
async fn reconnect(r: &Routed, head: &[u8]) -> Result<UpConn, ProxyError> {
    let mut up = r.endpoint.connect_raw(&r.pool).await?;
    match tokio::time::timeout(r.request_timeout, write_keep(&mut up.stream, head)).await {
        Ok(Ok(())) => Ok(up),
        Ok(Err(e)) => Err(ProxyError::with(Kind::UpstreamProtocol, e)),
        Err(_) => Err(ProxyError::new(Kind::UpstreamProtocol)),
    }
}

/// Writes `data` upstream within `limit`.
async fn write_up(up: &mut UpConn, data: &[u8], limit: std::time::Duration) -> Result<(), Sent> {
    match tokio::time::timeout(limit, up.stream.write_all(data)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Sent::Upstream(ProxyError::with(Kind::UpstreamProtocol, e))),
        Err(_) => Err(Sent::Upstream(ProxyError::new(Kind::UpstreamProtocol))),
    }
}

/// Writes the head, then streams the request body (chunk-encoded when unsized), paced
/// by `pace`. `tee`, when given, gets a copy of every byte sent, for a mirror route; it
/// is dropped (None) if the request outgrows [`crate::h1::MIRROR_MAX`] or the body fails.
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

fn short_response(kind: Kind, finish: Option<Finish>) -> Response<RespBody> {
    let mut resp = Response::new(RespBody::full(
        Bytes::from_static(kind.body().as_bytes()),
        finish,
    ));
    *resp.status_mut() = StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The end of one proxied HTTP/2 request: records the outcome once, returns the upstream
/// connection to its pool when the response was read to its end.
#[derive(Debug)]
pub struct Finish {
    start: Instant,
    status: u16,
    proxy_error: bool,
    conn: Arc<ConnInfo>,
    backend: Arc<Backend>,
    endpoint: Arc<EndpointPool>,
    route: Arc<str>,
    max_idle: usize,
    log: Option<Box<LogInfo>>,
    settled: bool,
}

impl Finish {
    /// The response body was sent to its end; `conn` goes back to the pool.
    pub(crate) fn complete(mut self, conn: Option<UpConn>) {
        if let Some(c) = conn {
            self.endpoint.checkin_raw(c, self.max_idle);
        }
        self.record(None);
    }

    /// The upstream's body broke off: a failure of the upstream.
    pub(crate) fn broken(mut self) {
        self.proxy_error = true;
        self.conn.shared.counters.error(Kind::UpstreamProtocol);
        self.record(Some(Kind::UpstreamProtocol));
    }

    /// The client went away before the end: the outcome is what the upstream said.
    pub(crate) fn abandoned(mut self) {
        self.record(None);
    }

    /// The client's own fault mid-request: answered with `kind`, recorded as the
    /// client's (not the upstream's).
    fn refuse(mut self, kind: Kind) -> Response<RespBody> {
        self.conn.shared.counters.error(kind);
        self.status = kind.status();
        self.record(Some(kind));
        short_response(kind, None)
    }

    fn fail(mut self, e: ProxyError) -> Response<RespBody> {
        let kind = e.kind;
        tracing::debug!(client = %self.conn.client, "proxy error: {e}");
        self.conn.shared.counters.error(kind);
        self.status = kind.status();
        self.proxy_error = true;
        self.record(Some(kind));
        short_response(kind, None)
    }

    fn record(&mut self, error: Option<Kind>) {
        if self.settled {
            return;
        }
        self.settled = true;
        self.endpoint.end();
        let latency_us = self.start.elapsed().as_micros() as u64;
        self.backend.stats.record(Outcome {
            status: self.status,
            proxy_error: self.proxy_error,
            latency_us,
        });
        if let Some(info) = self.log.take() {
            write_log(
                &self.conn,
                &info,
                self.status,
                Some(&self.route),
                Some(&self.backend),
                Some(&self.endpoint),
                self.start,
                error
                    .map(Kind::label)
                    .or(self.proxy_error.then_some("proxy")),
            );
        }
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if self.status == 0 {
            self.status = 499;
        }
        self.record(None);
    }
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
