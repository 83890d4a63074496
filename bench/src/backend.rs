//! A fake HTTP backend whose behaviour can be switched while it runs.
//!
//! [`FakeBackend`] speaks HTTP/1.1 with keep-alive and HTTP/2 with prior knowledge (h2c), answers
//! every request according to its current [`Behavior`] (status, error rate, latency, body size)
//! and tags every response with `x-backend: <name>`, so a load generator in front of a proxy can
//! tell which backend answered. It is cheap per request: the body is a cached [`Bytes`], the
//! behaviour is read through an [`ArcSwap`] without locking, random draws use a per-connection
//! generator, and nothing is logged per request.
//!
//! Besides plain requests it serves:
//! - [`CONTROL_PATH`] (`/__weir_bench/behavior`): `GET` returns the current [`Behavior`] as JSON,
//!   `PUT`/`POST` with a JSON body replaces it (partial objects take defaults for the fields they
//!   omit), so a script can flip a running backend.
//! - upgrades: a request carrying `Connection: upgrade` and `Upgrade: <x>` is answered
//!   `101 Switching Protocols` with the same `Upgrade` header, and every byte then sent on the
//!   connection is echoed back, so tests can check that a proxy passes upgrades through.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::future::Either;
use http::header::{ALLOW, CONNECTION, CONTENT_TYPE, HeaderName, HeaderValue, UPGRADE};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::rng::{SplitMix64, mix};

/// The path of the control endpoint: `GET` returns the [`Behavior`] as JSON, `PUT`/`POST`
/// replaces it with the JSON body.
pub const CONTROL_PATH: &str = "/__weir_bench/behavior";

/// The prefix reserved for the backend's own endpoints; other paths under it answer 404.
const CONTROL_PREFIX: &str = "/__weir_bench/";

/// The response header naming the backend that answered.
pub const X_BACKEND: HeaderName = HeaderName::from_static("x-backend");

/// Largest control request body accepted.
const MAX_CONTROL_BODY: usize = 1 << 20;

/// Latencies are capped at one hour, so no sample can overflow a [`Duration`].
const MAX_LATENCY_MS: f64 = 3_600_000.0;

/// The standard normal quantile at 0.99, to turn a log-normal's p99 into its sigma.
const Z_99: f64 = 2.326_347_874_040_841;

/// How a [`FakeBackend`] answers. Serialised in camelCase; every field is optional when
/// deserialising (missing ones take their default) and unknown fields are rejected.
///
/// ```json
/// {"status":200,"errorRate":0.1,"errorStatus":503,"latency":{"kind":"fixed","ms":5},"bodySize":2}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Behavior {
    /// Status of a normal answer. Default 200.
    pub status: u16,
    /// Share of requests, in `0..=1`, answered with `error_status` instead. Default 0.
    pub error_rate: f64,
    /// Status of an error answer. Default 500.
    pub error_status: u16,
    /// Delay before each answer. Default none.
    pub latency: Latency,
    /// Body length in bytes (the body is that many `a`). Default 2.
    pub body_size: usize,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            status: 200,
            error_rate: 0.0,
            error_status: 500,
            latency: Latency::None,
            body_size: 2,
        }
    }
}

impl Behavior {
    /// The default behaviour with another status for normal answers.
    pub fn with_status(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }

    /// Checks that the statuses are valid final statuses (200..=599), that the error rate is in
    /// `0..=1` and that the latency parameters are finite and non-negative.
    pub fn validate(&self) -> Result<(), String> {
        for (field, status) in [("status", self.status), ("errorStatus", self.error_status)] {
            if !(200..=599).contains(&status) {
                return Err(format!("{field} {status} is not in 200..=599"));
            }
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!("errorRate {} is not in 0..=1", self.error_rate));
        }
        self.latency.validate()
    }
}

/// A latency distribution, tagged by `kind` (camelCase), all values in milliseconds:
/// `{"kind":"none"}`, `{"kind":"fixed","ms":5}`, `{"kind":"uniform","minMs":1,"maxMs":9}`,
/// `{"kind":"normal","meanMs":5,"stddevMs":1}` or `{"kind":"logNormal","medianMs":5,"p99Ms":80}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum Latency {
    /// Answer at once.
    #[default]
    None,
    /// Always the same delay.
    Fixed {
        /// The delay.
        ms: f64,
    },
    /// Uniform between two bounds.
    Uniform {
        /// Lower bound.
        min_ms: f64,
        /// Upper bound.
        max_ms: f64,
    },
    /// Normal, clamped at 0.
    Normal {
        /// Mean.
        mean_ms: f64,
        /// Standard deviation.
        stddev_ms: f64,
    },
    /// Log-normal (a long tail), given by its median and its 99th percentile.
    #[serde(alias = "lognormal")]
    LogNormal {
        /// Median.
        median_ms: f64,
        /// 99th percentile; at or below the median the delay is always the median.
        p99_ms: f64,
    },
}

impl Latency {
    /// A fixed delay of `ms` milliseconds (`None` for 0).
    pub fn fixed_ms(ms: f64) -> Self {
        if ms > 0.0 {
            Self::Fixed { ms }
        } else {
            Self::None
        }
    }

    /// Checks that every parameter is finite and non-negative.
    pub fn validate(&self) -> Result<(), String> {
        let params: &[f64] = match self {
            Self::None => &[],
            Self::Fixed { ms } => &[*ms],
            Self::Uniform { min_ms, max_ms } => &[*min_ms, *max_ms],
            Self::Normal { mean_ms, stddev_ms } => &[*mean_ms, *stddev_ms],
            Self::LogNormal { median_ms, p99_ms } => &[*median_ms, *p99_ms],
        };
        match params.iter().find(|p| !p.is_finite() || **p < 0.0) {
            Some(p) => Err(format!(
                "latency parameter {p} is not a finite non-negative number"
            )),
            None => Ok(()),
        }
    }

    /// Draws one delay in milliseconds, in `0..=3_600_000`.
    pub(crate) fn sample_ms(&self, rng: &mut SplitMix64) -> f64 {
        let ms = match *self {
            Self::None => 0.0,
            Self::Fixed { ms } => ms,
            Self::Uniform { min_ms, max_ms } => {
                let (lo, hi) = if min_ms <= max_ms {
                    (min_ms, max_ms)
                } else {
                    (max_ms, min_ms)
                };
                lo + rng.next_f64() * (hi - lo)
            }
            Self::Normal { mean_ms, stddev_ms } => mean_ms + stddev_ms.abs() * rng.next_normal(),
            Self::LogNormal { median_ms, p99_ms } => {
                if median_ms <= 0.0 {
                    0.0
                } else if p99_ms <= median_ms {
                    median_ms
                } else {
                    let sigma = (p99_ms / median_ms).ln() / Z_99;
                    median_ms * (sigma * rng.next_normal()).exp()
                }
            }
        };
        if ms.is_finite() {
            ms.clamp(0.0, MAX_LATENCY_MS)
        } else {
            0.0
        }
    }
}

/// A [`Behavior`] with everything the hot path needs precomputed.
struct Compiled {
    behavior: Behavior,
    status: StatusCode,
    error_status: StatusCode,
    body: Bytes,
    delays: bool,
}

impl Compiled {
    fn new(behavior: Behavior) -> Self {
        let status_or_500 =
            |s: u16| StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = Bytes::from(vec![b'a'; behavior.body_size]);
        // Promote the buffer to its shared form now, so the per-request clones are plain
        // reference-count increments.
        let _ = body.clone();
        Self {
            status: status_or_500(behavior.status),
            error_status: status_or_500(behavior.error_status),
            delays: behavior.latency != Latency::None,
            body,
            behavior,
        }
    }
}

/// State shared by a backend's handle, its accept loop and its connections.
struct Shared {
    name: String,
    name_value: HeaderValue,
    behavior: ArcSwap<Compiled>,
    hits: AtomicU64,
    /// Connections accepted.
    connections: AtomicU64,
    /// Answers by status code, indexed by the code (0..1000).
    by_status: Box<[AtomicU64]>,
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shared {
    fn count(&self, status: StatusCode) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.by_status.get(usize::from(status.as_u16())) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn stamp(&self, response: &mut Response<Full<Bytes>>, content_type: &'static str) {
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(X_BACKEND, self.name_value.clone());
    }
}

/// A running fake backend. Dropping it (or calling [`FakeBackend::shutdown`]) stops it.
pub struct FakeBackend {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl std::fmt::Debug for FakeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeBackend")
            .field("name", &self.shared.name)
            .field("addr", &self.addr)
            .field("hits", &self.hits())
            .finish()
    }
}

impl FakeBackend {
    /// Starts a backend named `name` on `127.0.0.1:0` (a free port; see [`FakeBackend::addr`]).
    /// Must be called inside a Tokio runtime, which then runs the backend.
    pub async fn start(name: &str, behavior: Behavior) -> std::io::Result<FakeBackend> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        Ok(Self::serve(name, listener, behavior).await)
    }

    /// Starts a backend named `name` on a listener the caller bound. Must be called inside a
    /// Tokio runtime, which then runs the backend.
    pub async fn serve(name: &str, listener: TcpListener, behavior: Behavior) -> FakeBackend {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            name_value: header_value_lossy(name),
            behavior: ArcSwap::from_pointee(Compiled::new(behavior)),
            hits: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            by_status: (0..1000).map(|_| AtomicU64::new(0)).collect(),
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        shared
            .tracker
            .spawn(accept_loop(Arc::clone(&shared), listener));
        FakeBackend { shared, addr }
    }

    /// The address the backend listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The backend's name, sent in every response's `x-backend` header.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Replaces the behaviour; requests that arrive afterwards see the new one. A status outside
    /// 100..=999 is answered as 500 (see [`Behavior::validate`] to reject such values first).
    pub fn set(&self, behavior: Behavior) {
        self.shared
            .behavior
            .store(Arc::new(Compiled::new(behavior)));
    }

    /// The current behaviour.
    pub fn behavior(&self) -> Behavior {
        self.shared.behavior.load().behavior.clone()
    }

    /// Requests answered so far (upgrades included, control requests not), counted when the
    /// response is handed to the connection, after any latency.
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::Relaxed)
    }

    /// Connections accepted so far (not reset by [`FakeBackend::reset_hits`]); with keep-alive
    /// this stays far below [`FakeBackend::hits`].
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// [`FakeBackend::hits`] split by the status answered (101 for upgrades).
    pub fn hits_by_status(&self) -> BTreeMap<u16, u64> {
        self.shared
            .by_status
            .iter()
            .enumerate()
            .filter_map(|(status, c)| {
                let n = c.load(Ordering::Relaxed);
                (n > 0).then_some((status as u16, n))
            })
            .collect()
    }

    /// Sets every hit counter back to 0.
    pub fn reset_hits(&self) {
        self.shared.hits.store(0, Ordering::Relaxed);
        for c in self.shared.by_status.iter() {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// Stops accepting, and closes every connection (upgraded ones included). Returns at once;
    /// [`FakeBackend::closed`] waits until it is done. Idempotent; also done on drop.
    pub fn shutdown(&self) {
        self.shared.token.cancel();
        self.shared.tracker.close();
    }

    /// Resolves once [`FakeBackend::shutdown`] was called and the listener and every connection
    /// are closed. Never resolves while the backend runs.
    pub async fn closed(&self) {
        self.shared.tracker.wait().await;
    }
}

impl Drop for FakeBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A header value for the name; bytes a header value cannot hold become `_`.
fn header_value_lossy(name: &str) -> HeaderValue {
    HeaderValue::from_str(name).unwrap_or_else(|_| {
        let clean: String = name
            .chars()
            .map(|c| {
                if c == ' ' || c.is_ascii_graphic() {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        HeaderValue::from_str(&clean).unwrap_or(HeaderValue::from_static("_"))
    })
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let seed = SplitMix64::entropy_seed();
    let mut connections: u64 = 0;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shared.token.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors and the like: back off briefly instead of spinning.
                tracing::debug!(backend = %shared.name, error = %e, "accept failed");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(10)) => continue,
                    () = shared.token.cancelled() => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        connections += 1;
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let service = ConnService {
            shared: Arc::clone(&shared),
            rng: AtomicU64::new(mix(seed ^ connections.wrapping_mul(0xA076_1D64_78BD_642F))),
        };
        let builder = Arc::clone(&builder);
        let token = shared.token.clone();
        shared.tracker.spawn(async move {
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                () = token.cancelled() => {}
            }
        });
    }
    // Dropping the listener here closes the port.
}

type Resp = Response<Full<Bytes>>;
type BoxedAnswer = Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send>>;

/// One connection's service: the shared state plus the connection's own random generator.
struct ConnService {
    shared: Arc<Shared>,
    /// SplitMix64 state. Only this connection draws from it, so a relaxed load and store is
    /// enough (and uncontended).
    rng: AtomicU64,
}

impl ConnService {
    fn with_rng<T>(&self, f: impl FnOnce(&mut SplitMix64) -> T) -> T {
        let mut rng = SplitMix64::new(self.rng.load(Ordering::Relaxed));
        let out = f(&mut rng);
        self.rng.store(rng.next_u64(), Ordering::Relaxed);
        out
    }

    fn upgrade(&self, req: Request<Incoming>) -> Resp {
        let protocol = req.headers().get(UPGRADE).cloned();
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        self.shared.stamp(&mut response, "text/plain");
        let headers = response.headers_mut();
        if let Some(protocol) = protocol {
            headers.insert(UPGRADE, protocol);
        }
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        let token = self.shared.token.clone();
        self.shared.tracker.spawn(async move {
            let echo = async {
                if let Ok(upgraded) = hyper::upgrade::on(req).await {
                    let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
                    let _ = tokio::io::copy(&mut reader, &mut writer).await;
                    let _ = writer.shutdown().await;
                }
            };
            tokio::select! {
                () = echo => {}
                () = token.cancelled() => {}
            }
        });
        self.shared.count(StatusCode::SWITCHING_PROTOCOLS);
        response
    }
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Resp;
    type Error = Infallible;
    type Future = Either<Ready<Result<Resp, Infallible>>, BoxedAnswer>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        if req.uri().path().starts_with(CONTROL_PREFIX) {
            return Either::Right(Box::pin(control(Arc::clone(&self.shared), req)));
        }
        if is_upgrade(&req) {
            return Either::Left(ready(Ok(self.upgrade(req))));
        }
        let current = self.shared.behavior.load();
        let error_rate = current.behavior.error_rate;
        let (status, delay_ms) = if error_rate > 0.0 || current.delays {
            self.with_rng(|rng| {
                let failed = error_rate > 0.0 && rng.next_f64() < error_rate;
                let status = if failed {
                    current.error_status
                } else {
                    current.status
                };
                (status, current.behavior.latency.sample_ms(rng))
            })
        } else {
            (current.status, 0.0)
        };
        let mut response = Response::new(Full::new(current.body.clone()));
        *response.status_mut() = status;
        self.shared.stamp(&mut response, "text/plain");
        drop(current);

        let has_body = !req.body().is_end_stream();
        if delay_ms <= 0.0 && !has_body {
            self.shared.count(status);
            return Either::Left(ready(Ok(response)));
        }
        let shared = Arc::clone(&self.shared);
        Either::Right(Box::pin(async move {
            if has_body {
                // Read the request body so the connection stays reusable.
                let mut body = req.into_body();
                while let Some(frame) = body.frame().await {
                    if frame.is_err() {
                        break;
                    }
                }
            }
            if delay_ms > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(delay_ms / 1000.0)).await;
            }
            shared.count(status);
            Ok(response)
        }))
    }
}

/// Whether the request asks for a protocol upgrade (`Connection: upgrade` plus `Upgrade`).
fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(UPGRADE)
        && req.headers().get_all(CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

async fn control(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let reply = |status: StatusCode, body: Bytes, content_type: &'static str| {
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        shared.stamp(&mut response, content_type);
        response
    };
    let behavior_json = |shared: &Shared| {
        let json = serde_json::to_vec(&shared.behavior.load().behavior).unwrap_or_default();
        Bytes::from(json)
    };
    if req.uri().path() != CONTROL_PATH {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            Bytes::from_static(b"unknown weir-bench endpoint\n"),
            "text/plain",
        ));
    }
    match *req.method() {
        Method::GET | Method::HEAD => Ok(reply(
            StatusCode::OK,
            behavior_json(&shared),
            "application/json",
        )),
        Method::PUT | Method::POST => {
            let body = match Limited::new(req.into_body(), MAX_CONTROL_BODY)
                .collect()
                .await
            {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    return Ok(reply(
                        StatusCode::BAD_REQUEST,
                        Bytes::from(format!("cannot read body: {e}\n")),
                        "text/plain",
                    ));
                }
            };
            let parsed = serde_json::from_slice::<Behavior>(&body)
                .map_err(|e| e.to_string())
                .and_then(|b| b.validate().map(|()| b));
            match parsed {
                Ok(behavior) => {
                    shared.behavior.store(Arc::new(Compiled::new(behavior)));
                    Ok(reply(
                        StatusCode::OK,
                        behavior_json(&shared),
                        "application/json",
                    ))
                }
                Err(e) => Ok(reply(
                    StatusCode::BAD_REQUEST,
                    Bytes::from(format!("invalid behavior: {e}\n")),
                    "text/plain",
                )),
            }
        }
        _ => {
            let mut response = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                Bytes::from_static(b"use GET, PUT or POST\n"),
                "text/plain",
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD, PUT, POST"));
            Ok(response)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quantile(mut xs: Vec<f64>, q: f64) -> f64 {
        xs.sort_by(f64::total_cmp);
        xs[((xs.len() - 1) as f64 * q).round() as usize]
    }

    fn samples(latency: &Latency, n: usize) -> Vec<f64> {
        let mut rng = SplitMix64::new(42);
        (0..n).map(|_| latency.sample_ms(&mut rng)).collect()
    }

    #[test]
    fn behavior_json_round_trips_in_camel_case() {
        let b = Behavior {
            status: 201,
            error_rate: 0.25,
            error_status: 503,
            latency: Latency::LogNormal {
                median_ms: 5.0,
                p99_ms: 80.0,
            },
            body_size: 10,
        };
        let json = serde_json::to_string(&b).unwrap();
        assert!(json.contains("\"errorRate\":0.25"), "{json}");
        assert!(json.contains("\"kind\":\"logNormal\""), "{json}");
        assert!(json.contains("\"p99Ms\":80.0"), "{json}");
        assert_eq!(serde_json::from_str::<Behavior>(&json).unwrap(), b);

        let partial: Behavior =
            serde_json::from_str(r#"{"latency":{"kind":"fixed","ms":5}}"#).unwrap();
        assert_eq!(partial.status, 200);
        assert_eq!(partial.latency, Latency::Fixed { ms: 5.0 });
        assert_eq!(
            serde_json::from_str::<Behavior>("{}").unwrap(),
            Behavior::default()
        );
        assert!(serde_json::from_str::<Behavior>(r#"{"error_rate":0.5}"#).is_err());
        assert!(
            serde_json::from_str::<Latency>(r#"{"kind":"uniform","minMs":1,"maxMs":2}"#).is_ok()
        );
    }

    #[test]
    fn validate_rejects_nonsense() {
        assert!(Behavior::default().validate().is_ok());
        assert!(Behavior::with_status(99).validate().is_err());
        assert!(Behavior::with_status(600).validate().is_err());
        let b = Behavior {
            error_rate: 1.5,
            ..Behavior::default()
        };
        assert!(b.validate().is_err());
        let b = Behavior {
            latency: Latency::Fixed { ms: f64::NAN },
            ..Behavior::default()
        };
        assert!(b.validate().is_err());
    }

    #[test]
    fn latency_distributions_have_their_shape() {
        assert!(samples(&Latency::None, 10).iter().all(|&x| x == 0.0));
        assert!(
            samples(&Latency::Fixed { ms: 3.0 }, 10)
                .iter()
                .all(|&x| x == 3.0)
        );

        let u = samples(
            &Latency::Uniform {
                min_ms: 2.0,
                max_ms: 4.0,
            },
            10_000,
        );
        assert!(u.iter().all(|&x| (2.0..=4.0).contains(&x)));
        assert!((quantile(u, 0.5) - 3.0).abs() < 0.1);

        let n = samples(
            &Latency::Normal {
                mean_ms: 1.0,
                stddev_ms: 1.0,
            },
            10_000,
        );
        assert!(n.iter().all(|&x| x >= 0.0), "clamped at 0");
        assert!(n.contains(&0.0));
        assert!((quantile(n, 0.5) - 1.0).abs() < 0.1);

        let ln = samples(
            &Latency::LogNormal {
                median_ms: 10.0,
                p99_ms: 100.0,
            },
            50_000,
        );
        let (p50, p99) = (quantile(ln.clone(), 0.5), quantile(ln, 0.99));
        assert!((p50 - 10.0).abs() < 0.5, "p50 {p50}");
        assert!((p99 - 100.0).abs() < 10.0, "p99 {p99}");
    }

    #[test]
    fn header_names_are_made_valid() {
        assert_eq!(header_value_lossy("v1"), "v1");
        assert_eq!(header_value_lossy("a\nb"), "a_b");
    }
}
