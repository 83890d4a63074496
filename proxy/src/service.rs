//! The per-request path: one snapshot load, route lookup, split pick, endpoint pick,
//! forward, and the outcome recorded when the response body ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::access_log::{AccessLogSink, Entry};
use crate::body::{ReqBody, RespBody};
use crate::error::{Kind, ProxyError};
use crate::routing::{Backend, RouteTable, Target, normalize_host};
use crate::stats::{Cell, Outcome};
use crate::upstream::{EndpointPool, PoolSettings, Sender};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Counters of the proxy as a whole (not of one backend).
#[derive(Debug, Default)]
pub struct ProxyCounters {
    /// Errors made by the proxy, by [`Kind`] (indexed by position in `Kind::ALL`).
    pub errors: [AtomicU64; Kind::ALL.len()],
    /// Client connections accepted.
    pub connections_accepted: AtomicU64,
    /// Client connections closed at once because `maxConnections` was reached.
    pub connections_rejected: AtomicU64,
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
}

/// Handles one request; never fails (errors become short responses).
pub async fn handle(conn: Arc<ConnInfo>, mut req: Request<Incoming>) -> Response<RespBody> {
    let start = Instant::now();
    let shared = &conn.shared;
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);

    // One snapshot load; everything needed is taken out before the first await.
    let (backend, endpoint, settings, route_name, log, debug) = {
        let table = shared.table.load();
        let host_raw = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("");
        let mut buf = [0u8; 256];
        let host = normalize_host(host_raw, &mut buf);
        let log = table.access_log;
        let Some(route) = table.lookup(conn.listener_index, host, req.uri().path(), req.headers())
        else {
            drop(table);
            return error_response(&conn, &req, start, Kind::NoRoute, None, None, None, log);
        };
        let target = match &route.target {
            Target::Split(t) => t,
            Target::Unavailable { reason, .. } => {
                tracing::debug!(route = %route.name, "{reason}");
                let name = route.name.clone();
                drop(table);
                return error_response(
                    &conn,
                    &req,
                    start,
                    Kind::Unavailable,
                    Some(&name),
                    None,
                    None,
                    log,
                );
            }
        };
        let (backend, ticket) = target.pick(req.headers());
        let backend = backend.clone();
        let debug = table.debug_headers.then_some(ticket);
        let route_name = route.name.clone();
        let settings = PoolSettings {
            connect_timeout: table.upstream.connect_timeout,
            idle_timeout: table.upstream.idle_timeout,
            max_idle: table.upstream.max_idle_per_endpoint as usize,
        };
        let request_timeout = table.upstream.request_timeout;
        drop(table);
        let Some(endpoint) = backend.pick_endpoint().cloned() else {
            return error_response(
                &conn,
                &req,
                start,
                Kind::NoEndpoints,
                Some(&route_name),
                Some(&backend),
                None,
                log,
            );
        };
        (
            backend,
            endpoint,
            (settings, request_timeout),
            route_name,
            log,
            debug,
        )
    };
    let (pool_settings, request_timeout) = settings;

    // The access log needs the request line; take it only when the log is on.
    let log_info = log.then(|| LogInfo::of(&req, route_name.clone()));

    let upgrade = is_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    prepare_request_head(&conn, &mut parts, upgrade);
    let up_req = Request::from_parts(parts, ReqBody::Incoming { body });

    endpoint.begin();
    let finish = Finish {
        start,
        status: 0,
        proxy_error: false,
        cell: backend.stats.clone(),
        endpoint: endpoint.clone(),
        sender: None,
        max_idle: pool_settings.max_idle,
        conn: conn.clone(),
        backend: log.then(|| backend.clone()),
        log: log_info.map(Box::new),
    };

    let sent = tokio::time::timeout(
        request_timeout,
        send(&endpoint, &pool_settings, up_req, upgrade),
    )
    .await;
    let (mut resp, sender) = match sent {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return finish.fail(e),
        Err(_) => return finish.fail(ProxyError::new(Kind::ResponseTimeout)),
    };

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS && upgrade {
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        let (mut parts, _body) = resp.into_parts();
        if let Some(client_upgrade) = client_upgrade {
            tokio::spawn(tunnel(conn.clone(), client_upgrade, upstream_upgrade));
        }
        strip_hop_by_hop(&mut parts.headers, true);
        let mut finish = finish;
        finish.status = 101;
        drop(sender);
        return Response::from_parts(parts, RespBody::full(bytes::Bytes::new(), Some(finish)));
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    if let Some(ticket) = debug {
        add_debug_headers(&mut parts.headers, &route_name, &backend, &endpoint, ticket);
    }
    parts.version = Version::HTTP_11;
    let mut finish = finish;
    finish.status = parts.status.as_u16();
    finish.sender = (!upgrade).then_some(sender);
    Response::from_parts(parts, RespBody::upstream(body, Some(finish)))
}

/// Sends on a pooled connection; if that connection turns out closed before the request
/// went out, once more on a fresh one.
async fn send(
    endpoint: &EndpointPool,
    settings: &PoolSettings,
    req: Request<ReqBody>,
    upgrade: bool,
) -> Result<(Response<Incoming>, Sender), ProxyError> {
    let mut sender = endpoint.checkout(settings, upgrade).await?;
    match sender.try_send_request(req).await {
        Ok(resp) => Ok((resp, sender)),
        Err(mut e) => match e.take_message() {
            Some(req) => {
                let mut fresh = endpoint.connect(settings, upgrade).await?;
                match fresh.send_request(req).await {
                    Ok(resp) => Ok((resp, fresh)),
                    Err(e) => Err(ProxyError::with(Kind::UpstreamProtocol, e)),
                }
            }
            None => Err(ProxyError::with(Kind::UpstreamProtocol, e.into_error())),
        },
    }
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Makes the client's request head fit to send upstream over HTTP/1.1.
fn prepare_request_head(conn: &ConnInfo, parts: &mut http::request::Parts, upgrade: bool) {
    // HTTP/2 requests carry the host in the URI; HTTP/1.1 wants a Host header.
    if !parts.headers.contains_key(header::HOST)
        && let Some(a) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        parts.headers.insert(header::HOST, v);
    }
    // Origin form: path and query only.
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        parts.uri = Uri::from(pq);
    }
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers, upgrade);

    let headers = &mut parts.headers;
    match headers.get(&X_FORWARDED_FOR) {
        None => {
            headers.insert(X_FORWARDED_FOR.clone(), conn.client_ip.clone());
        }
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + conn.client_ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(conn.client_ip.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                headers.insert(X_FORWARDED_FOR.clone(), v);
            }
        }
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if conn.tls { "https" } else { "http" }),
    );
    if let Some(h) = headers.get(header::HOST).cloned() {
        headers.insert(X_FORWARDED_HOST.clone(), h);
    }
}

/// The `x-weir-*` headers saying what served a response.
fn add_debug_headers(
    h: &mut HeaderMap,
    route: &str,
    backend: &Backend,
    endpoint: &EndpointPool,
    ticket: Option<u64>,
) {
    let mut put = |name: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    put("x-weir-route", route);
    put("x-weir-service", &backend.key.service);
    put("x-weir-role", &backend.key.role.to_string());
    put("x-weir-revision", &backend.key.revision);
    put("x-weir-upstream", &endpoint.addr.to_string());
    if let Some(t) = ticket {
        put("x-weir-split-seq", &t.to_string());
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), keeping `Upgrade` and
/// `Connection: upgrade` for an upgrade.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if let Some(conn) = headers.get(header::CONNECTION) {
        // Headers named in Connection are hop-by-hop too.
        let named: Vec<HeaderName> = conn
            .to_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|t| {
                let t = t.trim();
                (!t.is_empty()
                    && !t.eq_ignore_ascii_case("upgrade")
                    && !t.eq_ignore_ascii_case("close")
                    && !t.eq_ignore_ascii_case("keep-alive"))
                .then(|| HeaderName::from_bytes(t.as_bytes()).ok())
                .flatten()
            })
            .collect();
        for n in named {
            headers.remove(n);
        }
        if upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        } else {
            headers.remove(header::CONNECTION);
        }
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::TE);
    headers.remove(header::TRAILER);
    headers.remove(header::TRANSFER_ENCODING);
    if !upgrade {
        headers.remove(header::UPGRADE);
    }
}

/// Copies bytes both ways between an upgraded client and upstream connection.
async fn tunnel(
    conn: Arc<ConnInfo>,
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
) {
    let counters = &conn.shared.counters;
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!("upgrade failed: {e}");
            return;
        }
    };
    counters.upgrades_open.fetch_add(1, Ordering::Relaxed);
    let mut client = hyper_util::rt::TokioIo::new(client);
    let mut upstream = hyper_util::rt::TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!("upgraded connection ended: {e}");
    }
    counters.upgrades_open.fetch_sub(1, Ordering::Relaxed);
}

/// Request line details kept for the access log.
#[derive(Debug)]
struct LogInfo {
    time: std::time::SystemTime,
    host: String,
    method: String,
    path: String,
    route: Arc<str>,
}

impl LogInfo {
    fn of<B>(req: &Request<B>, route: Arc<str>) -> LogInfo {
        LogInfo {
            time: std::time::SystemTime::now(),
            host: req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| req.uri().authority().map(|a| a.as_str()))
                .unwrap_or("")
                .to_owned(),
            method: req.method().as_str().to_owned(),
            path: req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned(),
            route,
        }
    }
}

/// The end of one proxied request: records the outcome once, returns the upstream
/// connection to its pool when the response was read to its end.
#[derive(Debug)]
pub struct Finish {
    start: Instant,
    status: u16,
    proxy_error: bool,
    cell: Arc<Cell>,
    endpoint: Arc<EndpointPool>,
    sender: Option<Sender>,
    max_idle: usize,
    conn: Arc<ConnInfo>,
    backend: Option<Arc<Backend>>,
    log: Option<Box<LogInfo>>,
}

impl Finish {
    /// The response body was sent to its end.
    pub(crate) fn complete(mut self) {
        if let Some(s) = self.sender.take() {
            self.endpoint.checkin(s, self.max_idle);
        }
        self.record(None);
    }

    /// The upstream's body broke off: a failure of the upstream.
    pub(crate) fn broken(mut self) {
        self.sender = None;
        self.proxy_error = true;
        self.conn.shared.counters.error(Kind::UpstreamProtocol);
        self.record(Some(Kind::UpstreamProtocol));
    }

    /// The client went away before the end: the connection cannot be reused, and the
    /// outcome is what the upstream said.
    pub(crate) fn abandoned(mut self) {
        self.sender = None;
        self.record(None);
    }

    fn fail(mut self, e: ProxyError) -> Response<RespBody> {
        let kind = e.kind;
        log_error(&self.conn, &e);
        self.conn.shared.counters.error(kind);
        self.status = kind.status();
        self.proxy_error = true;
        self.sender = None;
        let mut resp = Response::new(RespBody::full(kind.body(), Some(self)));
        *resp.status_mut() = StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::BAD_GATEWAY);
        set_text(&mut resp);
        resp
    }

    fn record(&mut self, error: Option<Kind>) {
        self.endpoint.end();
        let latency_us = self.start.elapsed().as_micros() as u64;
        self.cell.record(Outcome {
            status: self.status,
            proxy_error: self.proxy_error,
            latency_us,
        });
        if let Some(info) = self.log.take()
            && let Some(sink) = self.conn.shared.access_log.load().as_ref()
        {
            let b = self.backend.as_ref();
            sink.write(&Entry {
                time: crate::access_log::rfc3339(info.time),
                client: self.conn.client.to_string(),
                host: &info.host,
                method: &info.method,
                path: &info.path,
                status: self.status,
                route: Some(&info.route),
                role: b.map(|b| b.key.role.label()).filter(|r| !r.is_empty()),
                revision: b.map(|b| &*b.key.revision).filter(|r| !r.is_empty()),
                upstream: Some(self.endpoint.addr.to_string()),
                duration: latency_us as f64 / 1e6,
                error: error
                    .map(Kind::label)
                    .or(self.proxy_error.then_some("proxy")),
            });
        }
    }
}

fn log_error(conn: &ConnInfo, e: &ProxyError) {
    tracing::debug!(client = %conn.client, listener = %conn.listener, "proxy error: {e}");
}

fn set_text(resp: &mut Response<RespBody>) {
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
}

/// A response the proxy makes itself, recorded against `backend` when there is one.
#[allow(clippy::too_many_arguments)]
fn error_response(
    conn: &Arc<ConnInfo>,
    req: &Request<Incoming>,
    start: Instant,
    kind: Kind,
    route: Option<&Arc<str>>,
    backend: Option<&Arc<Backend>>,
    _endpoint: Option<&EndpointPool>,
    log: bool,
) -> Response<RespBody> {
    conn.shared.counters.error(kind);
    let status = kind.status();
    if let Some(b) = backend {
        b.stats.record(Outcome {
            status,
            proxy_error: true,
            latency_us: start.elapsed().as_micros() as u64,
        });
    }
    if log && let Some(sink) = conn.shared.access_log.load().as_ref() {
        let info = LogInfo::of(req, route.cloned().unwrap_or_else(|| Arc::from("")));
        sink.write(&Entry {
            time: crate::access_log::rfc3339(info.time),
            client: conn.client.to_string(),
            host: &info.host,
            method: &info.method,
            path: &info.path,
            status,
            route: route.map(|r| &**r),
            role: backend
                .map(|b| b.key.role.label())
                .filter(|r| !r.is_empty()),
            revision: backend.map(|b| &*b.key.revision).filter(|r| !r.is_empty()),
            upstream: None,
            duration: start.elapsed().as_secs_f64(),
            error: Some(kind.label()),
        });
    }
    let mut resp = Response::new(RespBody::full(kind.body(), None));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    set_text(&mut resp);
    resp
}
