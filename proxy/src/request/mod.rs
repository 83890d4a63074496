//! The request core: what every proxied request goes through, whichever protocol it came
//! in on. [`crate::h1`] and [`crate::h2`] only speak their wire format around it.
//!
//! Per request, in order:
//! 1. [`route`]: one snapshot load gives the route, the split's pick (or a header
//!    route's), the endpoint, the mirror target, the settings and the access log sink.
//!    A request that cannot be routed becomes a [`Refused`], recorded once.
//! 2. Filters (header changes, redirects, rewrites) are applied here as routes gain them.
//! 3. Forward: the protocol writes the upstream head with [`forward::write_head`] (one set
//!    of forwarding rules for both protocols), sends the body and reads the answer over
//!    [`crate::upstream::client`].
//! 4. Record: the [`Exchange`] records the outcome exactly once (the backend's stats, the
//!    endpoint's in-flight count, the access log), however the request ends; a request
//!    dropped unanswered is recorded as 499, as nginx does.
//! 5. Mirror: a copy of the request goes to the mirror target
//!    ([`crate::upstream::mirror`]).

pub(crate) mod filters;
pub(crate) mod forward;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::access_log::{AccessLogSink, Entry};
use crate::conn::ConnInfo;
use crate::error::{Kind, Source};
use crate::routing::{Backend, Headers, Lookup, Target, normalize_host};
use crate::stats::Outcome;
use crate::upstream::client::Pace;
use crate::upstream::{EndpointPool, PoolSettings, UpConn};
use filters::Edit;

/// What routing and the access log need of a request line.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestLine<'a> {
    pub(crate) method: &'a str,
    /// The host it is for, port included, as sent.
    pub(crate) host: &'a str,
    /// The path, without the query.
    pub(crate) path: &'a str,
    /// Path and query as sent, for the access log.
    pub(crate) target: &'a str,
}

/// Where a request goes: everything taken from one snapshot load.
#[derive(Debug)]
pub(crate) struct Routed {
    pub(crate) route: Arc<str>,
    pub(crate) backend: Arc<Backend>,
    pub(crate) endpoint: Arc<EndpointPool>,
    /// With debug headers on: the request's place in its split's sequence (None for a
    /// header route).
    pub(crate) ticket: Option<Option<u64>>,
    pub(crate) pool: PoolSettings,
    /// The route's response timeout (see [`Routed::request_timeout`]).
    timeout: Duration,
    /// How long each write of the request upstream may take (see
    /// [`Routed::send_timeout`]).
    send: Duration,
    /// The route's whole-exchange deadline (an HTTPRoute's `timeouts.request`), from the
    /// moment the request was routed.
    pub(crate) deadline: Option<Instant>,
    /// The largest request body the route takes.
    pub(crate) max_body: Option<u64>,
    /// Where copies go (mirror routes and filters): target and endpoint. Empty, and not
    /// allocated, for most requests.
    pub(crate) mirror: Vec<(Arc<Backend>, Arc<EndpointPool>)>,
    /// What the route's filters do to the request and its response; `None` on a route
    /// without filters.
    pub(crate) edit: Option<Box<Edit>>,
}

impl Routed {
    /// How long the upstream has to answer (each wait for its response head, and between
    /// reads of its body): the route's timeout, cut to what is left before the deadline.
    #[inline]
    pub(crate) fn request_timeout(&self) -> Duration {
        self.until_deadline(self.timeout)
    }

    /// How long each write of the request upstream may take, cut likewise.
    #[inline]
    pub(crate) fn send_timeout(&self) -> Duration {
        self.until_deadline(self.send)
    }

    #[inline]
    fn until_deadline(&self, d: Duration) -> Duration {
        match self.deadline {
            None => d,
            Some(at) => d.min(at.saturating_duration_since(Instant::now())),
        }
    }

    /// Whether the deadline has passed.
    pub(crate) fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|at| Instant::now() >= at)
    }
}

/// A request the proxy answers itself: one that could not be routed (`kind`), or one
/// its route answers (a redirect, a CORS preflight).
#[derive(Debug)]
pub(crate) struct Refused {
    /// The error, when it is one (counted by kind).
    pub(crate) kind: Option<Kind>,
    route: Option<Arc<str>>,
    backend: Option<Arc<Backend>>,
    /// A route's own answer.
    answer: Option<Box<Answer>>,
}

/// A response a route gives without going upstream.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
}

impl Refused {
    fn error(kind: Kind, route: Option<Arc<str>>, backend: Option<Arc<Backend>>) -> Self {
        Refused {
            kind: Some(kind),
            route,
            backend,
            answer: None,
        }
    }

    fn answer(route: Arc<str>, status: u16, headers: Vec<(&'static str, String)>) -> Self {
        Refused {
            kind: None,
            route: Some(route),
            backend: None,
            answer: Some(Box::new(Answer { status, headers })),
        }
    }

    /// The status sent.
    pub(crate) fn status(&self) -> u16 {
        match (&self.kind, &self.answer) {
            (Some(k), _) => k.status(),
            (None, Some(a)) => a.status,
            (None, None) => 500,
        }
    }

    /// The reason phrase of [`Refused::status`].
    pub(crate) fn reason(&self) -> &'static str {
        match self.kind {
            Some(k) => k.reason(),
            None => http::StatusCode::from_u16(self.status())
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or(""),
        }
    }

    /// Headers to send besides the framing ones.
    pub(crate) fn headers(&self) -> &[(&'static str, String)] {
        self.answer.as_ref().map_or(&[], |a| &a.headers)
    }

    /// The short body.
    pub(crate) fn body(&self) -> &'static str {
        self.kind.map_or("", Kind::body)
    }
}

/// A request line kept for the access log, taken only while the log is on.
#[derive(Debug)]
pub(crate) struct LogLine {
    sink: Arc<AccessLogSink>,
    time: std::time::SystemTime,
    method: String,
    host: String,
    target: String,
}

impl LogLine {
    /// The line for `req`, when `sink` is on.
    pub(crate) fn new(
        sink: Option<Arc<AccessLogSink>>,
        req: &RequestLine<'_>,
    ) -> Option<Box<Self>> {
        sink.map(|sink| {
            Box::new(LogLine {
                sink,
                time: std::time::SystemTime::now(),
                method: req.method.to_owned(),
                host: req.host.to_owned(),
                target: req.target.to_owned(),
            })
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        conn: &ConnInfo,
        status: u16,
        route: Option<&str>,
        backend: Option<&Backend>,
        endpoint: Option<&EndpointPool>,
        start: Instant,
        error: Option<&str>,
    ) {
        self.sink.write(&Entry {
            time: crate::access_log::rfc3339(self.time),
            client: conn.client.to_string(),
            host: &self.host,
            method: &self.method,
            path: &self.target,
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

/// Routes a request: route lookup, split pick, endpoint pick, mirror pick and the
/// route's filters, all from one snapshot load, with the access log sink of the same
/// snapshot.
pub(crate) fn route(
    conn: &ConnInfo,
    req: &RequestLine<'_>,
    headers: &impl Headers,
) -> (Result<Routed, Refused>, Option<Arc<AccessLogSink>>) {
    let table = conn.shared.table.load();
    let mut hbuf = [0u8; 256];
    let host = normalize_host(req.host, &mut hbuf);
    let lookup = Lookup {
        listener: conn.listener_index,
        host,
        method: req.method,
        path: req.path,
        query: req.target.split_once('?').map_or("", |(_, q)| q),
    };
    let Some(found) = table.lookup(&lookup, headers) else {
        return (
            Err(Refused::error(Kind::NoRoute, None, None)),
            table.access_log.clone(),
        );
    };
    let route = found.route;
    let routed = match &route.target {
        Target::Unavailable { reason, kind } => {
            tracing::debug!(route = %route.name, "{reason}");
            Err(Refused::error(*kind, Some(route.name.clone()), None))
        }
        Target::Redirect(rd) => {
            let location = filters::location(rd, req, host, conn.tls, conn.port, found.path);
            Err(Refused::answer(
                route.name.clone(),
                rd.status,
                vec![("location", location)],
            ))
        }
        Target::Split(t) => 'split: {
            let mut edit = None;
            if let Some(f) = &route.filters
                && let Some(s) = &f.source
                && !s.admits(conn.client.ip())
            {
                break 'split Err(Refused::error(
                    Kind::Forbidden,
                    Some(route.name.clone()),
                    None,
                ));
            }
            if let Some(max) = route.max_body
                && declared_length(headers).is_some_and(|n| n > max)
            {
                break 'split Err(Refused::error(
                    Kind::BodyTooLarge,
                    Some(route.name.clone()),
                    None,
                ));
            }
            if let Some(f) = &route.filters {
                let mut e = Edit {
                    route: Some(f.clone()),
                    ..Edit::default()
                };
                if let Some(c) = &f.cors
                    && let Some(h) = filters::cors(c, req.method, headers, &mut e)
                {
                    break 'split Err(Refused::answer(route.name.clone(), 200, h));
                }
                if let Some(rw) = &f.rewrite {
                    filters::rewrite(rw, req, found.path, &mut e);
                }
                edit = Some(Box::new(e));
            }
            let (backend, ticket, new_user) = t.pick(headers);
            if let Some(id) = new_user
                && let Some(weir_config::model::Affinity::Cookie { name, max_age }) = &t.affinity
            {
                // A new user: the cookie that keeps them on this leg from now on.
                edit.get_or_insert_with(Default::default)
                    .response_headers
                    .push((
                        "set-cookie",
                        format!(
                            "{name}={id:016x}; Max-Age={}; Path=/; HttpOnly; SameSite=Lax",
                            max_age.as_secs()
                        ),
                    ));
            }
            if backend.invalid {
                break 'split Err(Refused::error(
                    Kind::InvalidBackend,
                    Some(route.name.clone()),
                    None,
                ));
            }
            if let Some(f) = &backend.filters {
                let e = edit.get_or_insert_with(Default::default);
                e.leg = Some(f.clone());
                if let Some(rw) = &f.rewrite {
                    filters::rewrite(rw, req, found.path, e);
                }
            }
            let mirror = if t.mirrors.is_empty() {
                Vec::new()
            } else {
                t.mirrors(req.method, req.path, headers)
                    .filter_map(|b| b.pick_endpoint().cloned().map(|e| (b.clone(), e)))
                    .collect()
            };
            match backend.pick_endpoint().cloned() {
                None => Err(Refused::error(
                    Kind::NoEndpoints,
                    Some(route.name.clone()),
                    Some(backend.clone()),
                )),
                Some(endpoint) => Ok(Routed {
                    route: route.name.clone(),
                    backend: backend.clone(),
                    endpoint,
                    ticket: table.debug_headers.then_some(ticket),
                    pool: PoolSettings {
                        connect_timeout: route.connect_timeout,
                        idle_timeout: table.upstream.idle_timeout,
                        max_idle: table.upstream.max_idle_per_endpoint as usize,
                    },
                    timeout: route.request_timeout,
                    send: route.send_timeout,
                    deadline: route.deadline.map(|d| Instant::now() + d),
                    max_body: route.max_body,
                    mirror,
                    edit,
                }),
            }
        }
    };
    (routed, table.access_log.clone())
}

/// The request's `Content-Length`, when it sends one that reads as a number.
fn declared_length(headers: &impl Headers) -> Option<u64> {
    let v = crate::routing::first_value(headers, "content-length")?;
    std::str::from_utf8(&v).ok()?.trim().parse().ok()
}

impl Refused {
    /// Counts the refusal (an error, by kind), charges it to the chosen backend (if
    /// one was chosen: a backend with no endpoints fails its requests) and writes the
    /// access log line.
    pub(crate) fn record(&self, conn: &ConnInfo, start: Instant, log: Option<Box<LogLine>>) {
        if let Some(kind) = self.kind {
            conn.shared.counters.error(kind);
        }
        let status = self.status();
        if let Some(b) = &self.backend {
            b.stats.record(Outcome {
                status,
                proxy_error: true,
                latency_us: start.elapsed().as_micros() as u64,
            });
        }
        if let Some(log) = log {
            log.write(
                conn,
                status,
                self.route.as_deref(),
                self.backend.as_deref(),
                None,
                start,
                self.kind.map(Kind::label),
            );
        }
    }
}

/// How fast a client's request body must come (`bodyTimeout`, `minBodyRate`), each
/// write upstream within `write` (the route's `requestTimeout`); the same for both
/// protocols.
pub(crate) fn client_body_pace(settings: &crate::conn::ServerSettings, r: &Routed) -> Pace {
    let write = r.send_timeout();
    Pace {
        deadline: r.deadline,
        max_body: r.max_body.unwrap_or(u64::MAX),
        read_idle: settings.body_timeout,
        min_rate: settings.min_body_rate,
        grace: settings.body_timeout,
        write,
    }
}

/// Methods whose request may be sent again on a fresh connection when a pooled one
/// turns out closed before answering (RFC 9110 §9.2.2 idempotent methods), if the
/// request has no body.
pub(crate) fn retry_safe(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}

/// One routed request on its way: records its outcome exactly once, whether it ends
/// answered, failed, refused or dropped.
#[derive(Debug)]
pub(crate) struct Exchange {
    conn: Arc<ConnInfo>,
    /// Where it goes.
    pub(crate) routed: Routed,
    start: Instant,
    /// The status the client got (0 until known).
    pub(crate) status: u16,
    proxy_error: bool,
    log: Option<Box<LogLine>>,
    settled: bool,
}

impl Exchange {
    /// Starts the exchange: the endpoint counts it in flight until it is recorded.
    pub(crate) fn begin(
        conn: Arc<ConnInfo>,
        routed: Routed,
        start: Instant,
        log: Option<Box<LogLine>>,
    ) -> Self {
        routed.endpoint.begin();
        Exchange {
            conn,
            routed,
            start,
            status: 0,
            proxy_error: false,
            log,
            settled: false,
        }
    }

    /// A connection to the request's endpoint, from its pool or new. When connecting
    /// fails, once more on another endpoint of the same leg (never another leg's): the
    /// request has not been sent, so nothing is sent twice.
    pub(crate) async fn checkout(&mut self) -> Result<UpConn, crate::error::ProxyError> {
        let first = self.routed.endpoint.checkout_raw(&self.routed.pool).await;
        match first {
            Err(e) if matches!(e.kind, Kind::ConnectFailed | Kind::ConnectTimeout) => {
                let Some(other) = self.routed.backend.other_endpoint(&self.routed.endpoint) else {
                    return Err(e);
                };
                tracing::debug!(failed = %self.routed.endpoint.addr, retry = %other.addr, "upstream connect: {e}; trying another endpoint");
                let other = other.clone();
                // The failed connect counts against the endpoint that refused it.
                self.routed.endpoint.outcome(true);
                self.routed.endpoint.end();
                other.begin();
                self.routed.endpoint = other;
                self.routed.endpoint.checkout_raw(&self.routed.pool).await
            }
            r => r,
        }
    }

    /// Where work this request leaves behind (a mirrored copy) is tracked.
    pub(crate) fn tasks(&self) -> &tokio_util::task::TaskTracker {
        &self.conn.shared.tasks
    }

    /// Records the outcome (once): the backend's stats, the endpoint's in-flight count,
    /// the access log line.
    pub(crate) fn record(&mut self, error: Option<Kind>) {
        if self.settled {
            return;
        }
        self.settled = true;
        let r = &self.routed;
        r.endpoint.end();
        // Outlier detection: a 5xx or a failed exchange with the upstream counts against
        // the endpoint; a client that left does not.
        if self.status != 499 {
            r.endpoint
                .outcome(self.proxy_error || (500..600).contains(&self.status));
        }
        r.backend.stats.record(Outcome {
            status: self.status,
            proxy_error: self.proxy_error,
            latency_us: self.start.elapsed().as_micros() as u64,
        });
        if let Some(log) = self.log.take() {
            log.write(
                &self.conn,
                self.status,
                Some(&r.route),
                Some(&r.backend),
                Some(&r.endpoint),
                self.start,
                error
                    .map(Kind::label)
                    .or(self.proxy_error.then_some("proxy")),
            );
        }
    }

    /// The proxy answers with `kind`: counted by kind, and charged to the backend as a
    /// failure only when the upstream is at fault ([`Source::Upstream`]); a client's own
    /// fault mid-request (a garbled or stalled body) is recorded as the client's status.
    pub(crate) fn fail(&mut self, kind: Kind) {
        self.conn.shared.counters.error(kind);
        self.status = kind.status();
        if kind.source() == Source::Upstream {
            tracing::debug!(client = %self.conn.client, endpoint = %self.routed.endpoint.addr, "proxy error: {}", kind.label());
            self.proxy_error = true;
        }
        self.record(Some(kind));
    }

    /// The client went away before its request was whole (nginx's 499).
    pub(crate) fn client_gone(&mut self) {
        self.status = 499;
        self.record(None);
    }

    /// The response went out to its end; `up`, when it may carry another request, goes
    /// back to its pool.
    pub(crate) fn complete(&mut self, up: Option<UpConn>) {
        if let Some(c) = up {
            self.routed
                .endpoint
                .checkin_raw(c, self.routed.pool.max_idle);
        }
        self.record(None);
    }

    /// The upstream broke off mid-body: too late to tell the client, counted as the
    /// upstream's failure.
    pub(crate) fn broken(&mut self) {
        self.conn.shared.counters.error(Kind::UpstreamProtocol);
        self.proxy_error = true;
        self.record(Some(Kind::UpstreamProtocol));
    }

    /// The client went away while the response was on its way: the outcome is what the
    /// upstream said.
    pub(crate) fn abandon(&mut self) {
        self.record(None);
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // Ended without an answer (the client left, or shutdown cut it): nginx's 499.
        if self.status == 0 {
            self.status = 499;
        }
        self.record(None);
    }
}
