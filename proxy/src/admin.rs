//! The admin listener: `/metrics`, `/healthz`, the stats and routes API, and whatever
//! the binary adds through [`AdminExtension`] (the rollouts API, the dashboard).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Proxy;
use crate::routing::Target;
use crate::stats::WindowSummary;

/// The admin API's response body.
pub type AdminBody = UnsyncBoxBody<Bytes, Infallible>;

/// A request to the admin API, body already read.
#[derive(Debug)]
pub struct AdminRequest {
    /// Method.
    pub method: Method,
    /// Path.
    pub path: String,
    /// Query parameters.
    pub query: HashMap<String, String>,
    /// Request body.
    pub body: Bytes,
}

/// More admin endpoints, from crates the proxy does not know.
pub trait AdminExtension: Send + Sync {
    /// Whether what it runs is healthy; `/healthz` answers 503 with the reason when not.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }

    /// Answers the request, or None when the path is not one of its own.
    fn handle(
        &self,
        req: &AdminRequest,
    ) -> Pin<Box<dyn Future<Output = Option<Response<AdminBody>>> + Send + '_>>;
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<AdminBody> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_else(|e| e.to_string().into_bytes());
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<AdminBody> {
    let mut r = Response::new(Full::new(body.into()).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Admin connections open at once; more are closed at once (each also has
/// `headerTimeout` to send a head, so idle ones do not hold their slot long). The admin
/// listener cannot use up the files the client listeners need.
pub const MAX_ADMIN_CONNECTIONS: usize = 256;

/// The largest admin request body read (actions and their options are small).
const MAX_BODY: usize = 1 << 20;

fn too_large() -> Response<AdminBody> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        "413 Payload Too Large: admin request bodies are limited to 1 MiB\n",
    )
}

/// Asks hyper to close the connection after `r` (an unread body is not drained).
fn closing(mut r: Response<AdminBody>) -> Response<AdminBody> {
    r.headers_mut()
        .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    r
}

/// Whether the admin listener answers to `host` (a Host header, port included): IP
/// literals, `localhost` and its subdomains (RFC 6761: they never leave the machine),
/// and the names configured. A page that rebinds its own DNS name to 127.0.0.1 still
/// sends that name, and is refused.
fn host_allowed(host: &[u8], extra: &[Box<str>]) -> bool {
    let Ok(host) = std::str::from_utf8(host) else {
        return false;
    };
    let host = host.trim();
    if host.starts_with('[') {
        return host
            .find(']')
            .is_some_and(|end| host[1..end].parse::<std::net::Ipv6Addr>().is_ok());
    }
    let name = match host.rsplit_once(':') {
        Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => host,
    };
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || extra.iter().any(|h| **h == *name)
}

/// Whether a request that changes something (any method but GET and HEAD) may: not
/// sent by a browser on behalf of another site (a foreign `Origin`, or `Sec-Fetch-Site`
/// other than `same-origin` or `none`: cross-site request forgery from a page the
/// operator has open); and with `Authorization: Bearer TOKEN` when a token is configured
/// (from any client), else from a loopback client.
fn write_allowed(
    headers: &http::HeaderMap,
    host: Option<&[u8]>,
    peer: std::net::IpAddr,
    token: Option<&weir_config::model::AdminToken>,
) -> Result<(), (StatusCode, &'static str)> {
    const FORGED: (StatusCode, &str) = (
        StatusCode::FORBIDDEN,
        "403 Forbidden: the admin API takes no changes from other sites' pages\n",
    );
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return Err(FORGED);
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let o = origin.as_bytes();
        let authority = o
            .strip_prefix(b"http://")
            .or_else(|| o.strip_prefix(b"https://"));
        let same = match (authority, host) {
            (Some(a), Some(h)) => a.eq_ignore_ascii_case(h.trim_ascii()),
            _ => false,
        };
        if !same {
            return Err(FORGED);
        }
    }
    match token {
        Some(token) => {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
            if presented.is_some_and(|p| token.matches(p.trim_ascii())) {
                Ok(())
            } else {
                Err((
                    StatusCode::UNAUTHORIZED,
                    "401 Unauthorized: changes need Authorization: Bearer TOKEN (spec.admin.tokenFile)\n",
                ))
            }
        }
        None if peer.to_canonical().is_loopback() => Ok(()),
        None => Err((
            StatusCode::FORBIDDEN,
            "403 Forbidden: without spec.admin.tokenFile the admin API takes changes from this machine only (loopback clients)\n",
        )),
    }
}

/// The admin server's state.
pub struct Admin {
    proxy: Arc<Proxy>,
    registry: prometheus::Registry,
    extension: Option<Arc<dyn AdminExtension>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admin")
    }
}

impl Admin {
    /// The admin API over `proxy`, exposing `registry` at `/metrics`.
    pub fn new(
        proxy: Arc<Proxy>,
        registry: prometheus::Registry,
        extension: Option<Arc<dyn AdminExtension>>,
    ) -> Self {
        Admin {
            proxy,
            registry,
            extension,
        }
    }

    /// Serves on `listener` until `shutdown`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        tracing::info!(address = ?listener.local_addr().ok(), "admin listening");
        // Each connection's task; at `shutdown` they finish their request and close, and
        // this returns once they have.
        let connections = tokio_util::task::TaskTracker::new();
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => match a {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!("admin accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::debug!("admin connection closed: {MAX_ADMIN_CONNECTIONS} are open");
                drop(stream);
                continue;
            };
            let admin = self.clone();
            let shutdown = shutdown.clone();
            let header_timeout = self.proxy.shared.table.load().limits.header_timeout;
            connections.spawn(async move {
                let _slot = slot;
                let service = service_fn(move |req| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(admin.route(req, peer.ip()).await) }
                });
                // A head must arrive whole within `headerTimeout`, as on the client
                // listeners.
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => { let _ = r; }
                    _ = shutdown.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            });
        }
        connections.close();
        connections.wait().await;
    }

    /// Answers one admin request from `peer`.
    pub async fn route(
        &self,
        req: Request<Incoming>,
        peer: std::net::IpAddr,
    ) -> Response<AdminBody> {
        let (parts, body) = req.into_parts();
        let host = parts
            .headers
            .get(header::HOST)
            .map(|h| h.as_bytes())
            .or_else(|| parts.uri.authority().map(|a| a.as_str().as_bytes()));
        if let Some(host) = host
            && !host_allowed(host, &self.proxy.shared.table.load().admin_hosts)
        {
            return closing(text(
                StatusCode::FORBIDDEN,
                "403 Forbidden: the admin listener answers to IP addresses, localhost and spec.admin.hosts only\n",
            ));
        }
        if !matches!(parts.method, Method::GET | Method::HEAD)
            && let Err((status, why)) = write_allowed(
                &parts.headers,
                host,
                peer,
                self.proxy.shared.table.load().admin_token.as_ref(),
            )
        {
            let mut r = closing(text(status, why));
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer"),
                );
            }
            return r;
        }
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return closing(too_large());
        }
        let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return closing(too_large()),
            Err(_) => return text(StatusCode::BAD_REQUEST, "cannot read the request body\n"),
        };
        let query = parts
            .uri
            .query()
            .map(|q| {
                q.split('&')
                    .filter_map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        (!k.is_empty()).then(|| (k.to_owned(), v.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let req = AdminRequest {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query,
            body,
        };
        self.answer(&req).await
    }

    /// Answers a request whose body was read.
    pub async fn answer(&self, req: &AdminRequest) -> Response<AdminBody> {
        match (req.method.clone(), req.path.as_str()) {
            (Method::GET, "/healthz") => match self.extension.as_ref().map(|e| e.health()) {
                Some(Err(why)) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("unhealthy: {why}\n"),
                ),
                _ => text(StatusCode::OK, "ok\n"),
            },
            (Method::GET, "/metrics") => self.metrics(),
            (Method::GET, "/api/v1/stats") => self.stats(req),
            (Method::GET, "/api/v1/routes") => self.routes(),
            _ => {
                if let Some(ext) = &self.extension
                    && let Some(r) = ext.handle(req).await
                {
                    return r;
                }
                text(StatusCode::NOT_FOUND, "not found\n")
            }
        }
    }

    fn metrics(&self) -> Response<AdminBody> {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        let enc = prometheus::TextEncoder::new();
        if let Err(e) = enc.encode(&self.registry.gather(), &mut buf) {
            return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
        let mut r = Response::new(Full::new(Bytes::from(buf)).boxed_unsync());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        r
    }

    fn stats(&self, req: &AdminRequest) -> Response<AdminBody> {
        let window = match req.query.get("window") {
            None => 60,
            Some(w) => match weir_config::duration::parse_go(w) {
                Ok(d) if d.as_secs() >= 1 => d.as_secs(),
                _ => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "window must be a duration of at least 1s, e.g. 30s or 5m\n",
                    );
                }
            },
        };
        json(StatusCode::OK, &self.proxy.stats_report(window))
    }

    fn routes(&self) -> Response<AdminBody> {
        let table = self.proxy.shared.table.load();
        let routes: Vec<RouteDump> = table
            .routes()
            .iter()
            .map(|r| match &r.target {
                Target::Split(t) => RouteDump {
                    name: r.name.to_string(),
                    unavailable: None,
                    redirect: None,
                    legs: t
                        .legs
                        .iter()
                        .zip(t.weights.iter())
                        .map(|(b, w)| LegDump {
                            service: b.key.service.to_string(),
                            role: b.key.role.to_string(),
                            revision: b.key.revision.to_string(),
                            weight: w.percent(),
                            endpoints: b.endpoints.iter().map(|e| e.addr.to_string()).collect(),
                        })
                        .collect(),
                },
                Target::Unavailable { reason, .. } => RouteDump {
                    name: r.name.to_string(),
                    unavailable: Some(reason.to_string()),
                    redirect: None,
                    legs: Vec::new(),
                },
                Target::Redirect(rd) => RouteDump {
                    name: r.name.to_string(),
                    unavailable: None,
                    redirect: Some(rd.status),
                    legs: Vec::new(),
                },
            })
            .collect();
        json(
            StatusCode::OK,
            &serde_json::json!({ "generation": table.generation, "routes": routes }),
        )
    }
}

#[derive(Serialize)]
struct RouteDump {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    unavailable: Option<String>,
    /// A redirecting route: its status.
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect: Option<u16>,
    legs: Vec<LegDump>,
}

#[derive(Serialize)]
struct LegDump {
    service: String,
    role: String,
    revision: String,
    weight: f64,
    endpoints: Vec<String>,
}

/// The stats report: per route, each leg's live weight, achieved share and window.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsReport {
    /// Window length in seconds.
    pub window_seconds: u64,
    /// Routes.
    pub routes: Vec<RouteStats>,
}

/// One route in the stats report.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStats {
    /// Route name.
    pub name: String,
    /// Legs.
    pub legs: Vec<LegStats>,
}

/// One leg in the stats report.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LegStats {
    /// Service (or Rollout) name.
    pub service: String,
    /// stable, canary or none.
    pub role: String,
    /// Image, or empty.
    pub revision: String,
    /// Configured share, percent.
    pub weight: f64,
    /// Achieved share of the route's requests in the window, percent.
    pub actual_weight: Option<f64>,
    /// The window.
    pub window: WindowSummary,
}
