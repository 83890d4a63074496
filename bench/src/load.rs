//! An HTTP/1.1 keep-alive load generator.
//!
//! [`run`] opens [`LoadSpec::connections`] connections to [`LoadSpec::addr`], each sending one
//! request at a time (GET, no body) and reading every response body to its end before the next
//! request. In [`Mode::Closed`] each connection sends its next request as soon as the previous
//! response ends; in [`Mode::Open`] requests follow a fixed schedule (a total rate spread evenly
//! over the connections) and latency is measured from each request's *intended* send time, so a
//! stalled server is charged for the requests it delayed (no coordinated omission).
//!
//! A connection that fails (connect error, reset, malformed response) is counted in
//! [`Report::errors`] and re-opened, with a short backoff while connecting keeps failing.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{CONNECTION, HOST, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::X_BACKEND;

/// The response header in which weir (with `debugHeaders: true`) returns the request's split
/// ticket: consecutive integers in the order its split handed requests out.
pub const X_WEIR_SPLIT_SEQ: HeaderName = HeaderName::from_static("x-weir-split-seq");

/// Longest time requests in flight at the end of the run may take to finish; past it they are
/// abandoned and counted as errors.
const MAX_DRAIN: Duration = Duration::from_secs(5);
/// First and last backoff between failed connection attempts.
const MIN_BACKOFF: Duration = Duration::from_millis(1);
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// What to send, where, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSpec {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The `Host` header (an entry named `host` in `headers` overrides it; empty sends none).
    pub host: String,
    /// Path and query of every request, e.g. `/` or `/api?x=1`.
    pub path: String,
    /// Extra request headers; invalid ones are skipped with a warning.
    pub headers: Vec<(String, String)>,
    /// Concurrent keep-alive connections (at least 1 is used).
    pub connections: usize,
    /// Closed or open loop.
    pub mode: Mode,
    /// How long to send requests; requests in flight at the end may finish afterwards.
    pub duration: Duration,
    /// Whether to keep the `x-backend` of every response in [`Report::sequence`] (and its
    /// `x-weir-split-seq` in [`Report::seqs`]).
    pub record_sequence: bool,
    /// At most this many requests are sent, over all connections (`None`: no limit). The run
    /// then ends once they are answered, or at [`LoadSpec::duration`], whichever comes first.
    pub max_requests: Option<u64>,
}

impl LoadSpec {
    /// A one-connection, one-second closed-loop `GET /` with `Host: <addr>`; adjust the fields
    /// (`LoadSpec { connections: 8, ..LoadSpec::new(addr) }`).
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            host: addr.to_string(),
            path: "/".to_owned(),
            headers: Vec::new(),
            connections: 1,
            mode: Mode::Closed,
            duration: Duration::from_secs(1),
            record_sequence: false,
            max_requests: None,
        }
    }
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Each connection sends its next request as soon as the previous response ends.
    Closed,
    /// A fixed total rate, in requests per second, spread evenly over the connections (a rate
    /// that is not a positive finite number sends nothing). Latency runs from each request's
    /// intended send time: a request waiting for its connection to be free (or re-opened)
    /// is charged for the wait. Timer slack on an idle connection is not charged.
    Open {
        /// Requests per second, over all connections.
        rate: f64,
    },
}

/// What a [`run`] saw.
#[derive(Debug, Clone)]
pub struct Report {
    /// Responses received in full (any status).
    pub requests: u64,
    /// Transport errors: failed connects, failed or truncated exchanges, and requests abandoned
    /// when the drain time after the run ran out.
    pub errors: u64,
    /// Responses by status code.
    pub by_status: BTreeMap<u16, u64>,
    /// Responses by their `x-backend` header (responses without one are not counted here).
    pub by_backend: BTreeMap<String, u64>,
    /// Response latency in microseconds.
    pub latency: Histogram<u64>,
    /// From the start of the run until its last connection finished.
    pub elapsed: Duration,
    /// With [`LoadSpec::record_sequence`], the `x-backend` of every response (empty when absent)
    /// in the order the responses completed, across all connections.
    pub sequence: Vec<String>,
    /// With [`LoadSpec::record_sequence`], each response's `x-weir-split-seq` header (weir's
    /// split ticket; `None` when absent or not an integer), parallel to [`Report::sequence`].
    /// [`split_order`] sorts the sequence by it.
    pub seqs: Vec<Option<u64>>,
}

impl Default for Report {
    fn default() -> Self {
        Self {
            requests: 0,
            errors: 0,
            by_status: BTreeMap::new(),
            by_backend: BTreeMap::new(),
            latency: new_histogram(),
            elapsed: Duration::ZERO,
            sequence: Vec::new(),
            seqs: Vec::new(),
        }
    }
}

impl Report {
    /// Responses per second over [`Report::elapsed`] (0 for an empty run).
    pub fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }

    /// The latency at quantile `q` (0..=1) in milliseconds (0 when nothing was measured).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latency.is_empty() {
            return 0.0;
        }
        self.latency.value_at_quantile(q.clamp(0.0, 1.0)) as f64 / 1000.0
    }

    /// The share of attempts (responses plus transport errors) that got a non-5xx response;
    /// 0 when nothing was attempted.
    pub fn success_rate(&self) -> f64 {
        let attempts = self.requests + self.errors;
        if attempts == 0 {
            return 0.0;
        }
        let server_errors: u64 = self.by_status.range(500..600).map(|(_, n)| n).sum();
        (self.requests - server_errors.min(self.requests)) as f64 / attempts as f64
    }

    /// The figures worth printing, ready to serialise (camelCase JSON).
    pub fn summary(&self) -> Summary {
        Summary {
            requests: self.requests,
            errors: self.errors,
            elapsed_ms: self.elapsed.as_secs_f64() * 1000.0,
            rps: self.rps(),
            success_rate: self.success_rate(),
            p50_ms: self.quantile_ms(0.5),
            p90_ms: self.quantile_ms(0.9),
            p99_ms: self.quantile_ms(0.99),
            p999_ms: self.quantile_ms(0.999),
            max_ms: self.latency.max() as f64 / 1000.0,
            by_status: self.by_status.clone(),
            by_backend: self.by_backend.clone(),
        }
    }

    fn merge(&mut self, conn: ConnStats) {
        self.requests += conn.requests;
        self.errors += conn.errors;
        for (status, n) in conn.by_status {
            *self.by_status.entry(status).or_default() += n;
        }
        for (backend, n) in conn.by_backend {
            let name = String::from_utf8_lossy(backend.as_bytes()).into_owned();
            *self.by_backend.entry(name).or_default() += n;
        }
        let _ = self.latency.add(&conn.latency);
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.summary();
        writeln!(
            f,
            "{} requests in {:.2}s ({:.1} req/s), {} transport errors, {:.2}% non-5xx",
            s.requests,
            s.elapsed_ms / 1000.0,
            s.rps,
            s.errors,
            s.success_rate * 100.0
        )?;
        writeln!(
            f,
            "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms
        )?;
        let statuses: Vec<String> = s
            .by_status
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        writeln!(f, "status: {}", none_if_empty(statuses.join(" ")))?;
        let backends: Vec<String> = s
            .by_backend
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        write!(f, "backends: {}", none_if_empty(backends.join(" ")))
    }
}

fn none_if_empty(s: String) -> String {
    if s.is_empty() { "-".to_owned() } else { s }
}

/// A [`Report`]'s headline figures, serialisable (camelCase).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// See [`Report::requests`].
    pub requests: u64,
    /// See [`Report::errors`].
    pub errors: u64,
    /// See [`Report::elapsed`].
    pub elapsed_ms: f64,
    /// See [`Report::rps`].
    pub rps: f64,
    /// See [`Report::success_rate`].
    pub success_rate: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 90th percentile latency.
    pub p90_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// 99.9th percentile latency.
    pub p999_ms: f64,
    /// Highest latency.
    pub max_ms: f64,
    /// See [`Report::by_status`].
    pub by_status: BTreeMap<u16, u64>,
    /// See [`Report::by_backend`].
    pub by_backend: BTreeMap<String, u64>,
}

/// The worst `|count - share * n|` over every window of `n` consecutive entries of `sequence`,
/// where `count` is how many entries of the window equal `backend`: how far an exact split of
/// `share` strays over any `n` consecutive responses. 0 when `n` is 0 or longer than the
/// sequence.
pub fn worst_window_deviation(sequence: &[String], backend: &str, share: f64, n: usize) -> f64 {
    if n == 0 || sequence.len() < n {
        return 0.0;
    }
    let expected = share * n as f64;
    let mut count = sequence[..n].iter().filter(|s| *s == backend).count();
    let mut worst = (count as f64 - expected).abs();
    for i in n..sequence.len() {
        count += usize::from(sequence[i] == backend);
        count -= usize::from(sequence[i - n] == backend);
        worst = worst.max((count as f64 - expected).abs());
    }
    worst
}

/// A recorded run put back into the order weir's split handed the requests out: see
/// [`split_order`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitOrder {
    /// The backends of the responses that carried a split ticket, sorted by ticket.
    pub sequence: Vec<String>,
    /// The lowest ticket seen.
    pub first: Option<u64>,
    /// The highest ticket seen.
    pub last: Option<u64>,
    /// Responses without a (parseable) ticket; left out of [`SplitOrder::sequence`].
    pub unsequenced: usize,
    /// Responses whose ticket another response already carried.
    pub duplicates: u64,
    /// Tickets between [`SplitOrder::first`] and [`SplitOrder::last`] that no response carried.
    pub gaps: u64,
}

impl SplitOrder {
    /// Whether every response carried a ticket and the tickets are consecutive integers,
    /// each seen once: then [`SplitOrder::sequence`] is exactly what the split decided.
    pub fn is_consecutive(&self) -> bool {
        self.unsequenced == 0 && self.duplicates == 0 && self.gaps == 0
    }
}

/// Sorts `sequence` (backends, as in [`Report::sequence`]) by the parallel split tickets `seqs`
/// (as in [`Report::seqs`]) and checks that the tickets are consecutive. Entries past the end
/// of the shorter slice are ignored.
pub fn split_order(sequence: &[String], seqs: &[Option<u64>]) -> SplitOrder {
    let mut pairs: Vec<(u64, &str)> = Vec::with_capacity(sequence.len().min(seqs.len()));
    let mut unsequenced = 0;
    for (backend, seq) in sequence.iter().zip(seqs) {
        match seq {
            Some(seq) => pairs.push((*seq, backend.as_str())),
            None => unsequenced += 1,
        }
    }
    pairs.sort_by_key(|(seq, _)| *seq);
    let (mut duplicates, mut gaps) = (0, 0);
    for w in pairs.windows(2) {
        match w[1].0 - w[0].0 {
            0 => duplicates += 1,
            d => gaps += d - 1,
        }
    }
    SplitOrder {
        first: pairs.first().map(|p| p.0),
        last: pairs.last().map(|p| p.0),
        sequence: pairs.iter().map(|(_, b)| (*b).to_owned()).collect(),
        unsequenced,
        duplicates,
        gaps,
    }
}

/// Runs `spec` until its duration is over or `stop` is cancelled, and reports what it saw.
///
/// At the end of the duration no new request is sent, and requests in flight get up to 5 s more
/// to finish. Cancelling `stop` abandons them at once (they are
/// counted nowhere). Never panics; failures are counted in [`Report::errors`].
pub async fn run(spec: LoadSpec, stop: CancellationToken) -> Report {
    let start = Instant::now();
    let deadline = start + spec.duration;
    let connections = spec.connections.max(1);
    let schedule = match spec.mode {
        Mode::Closed => None,
        Mode::Open { rate } => Some(if rate.is_finite() && rate > 0.0 {
            Schedule {
                interval_secs: connections as f64 / rate,
                stagger_secs: 1.0 / rate,
            }
        } else {
            Schedule {
                interval_secs: f64::INFINITY,
                stagger_secs: f64::INFINITY,
            }
        }),
    };
    let ctx = Arc::new(Ctx {
        addr: spec.addr,
        template: Template::new(&spec),
        start,
        deadline,
        drain_deadline: deadline + MAX_DRAIN,
        schedule,
        stop,
        sequence: spec
            .record_sequence
            .then(|| Mutex::new(Recorded::default())),
        budget: spec.max_requests.map(AtomicU64::new),
    });

    let mut tasks = JoinSet::new();
    for index in 0..connections {
        tasks.spawn(connection(index, Arc::clone(&ctx)));
    }
    let mut report = Report::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(stats) => report.merge(stats),
            Err(e) => {
                tracing::warn!(error = %e, "load connection task failed");
                report.errors += 1;
            }
        }
    }
    report.elapsed = start.elapsed();
    if let Some(sequence) = &ctx.sequence {
        let recorded = std::mem::take(&mut *sequence.lock().unwrap_or_else(|e| e.into_inner()));
        report.sequence = recorded.backends;
        report.seqs = recorded.seqs;
    }
    report
}

/// An open-loop schedule: connection `i` sends its `k`-th request at
/// `start + i * stagger + k * interval`.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    interval_secs: f64,
    stagger_secs: f64,
}

impl Schedule {
    /// The intended send time, or `None` when it is at or past `deadline`.
    fn at(&self, ctx: &Ctx, index: usize, k: u64) -> Option<Instant> {
        let offset = index as f64 * self.stagger_secs + k as f64 * self.interval_secs;
        let offset = Duration::try_from_secs_f64(offset).ok()?;
        let at = ctx.start.checked_add(offset)?;
        (at < ctx.deadline).then_some(at)
    }
}

struct Ctx {
    addr: SocketAddr,
    template: Template,
    start: Instant,
    deadline: Instant,
    drain_deadline: Instant,
    schedule: Option<Schedule>,
    stop: CancellationToken,
    sequence: Option<Mutex<Recorded>>,
    /// Requests still to send, with [`LoadSpec::max_requests`].
    budget: Option<AtomicU64>,
}

/// What [`LoadSpec::record_sequence`] keeps, in completion order.
#[derive(Default)]
struct Recorded {
    backends: Vec<String>,
    seqs: Vec<Option<u64>>,
}

impl Ctx {
    /// Takes one request from the budget; false when it is spent.
    fn take_budget(&self) -> bool {
        match &self.budget {
            None => true,
            Some(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

impl Ctx {
    /// Runs `f` until `limit` or until `stop` is cancelled, whichever comes first.
    async fn until<F: Future>(&self, limit: Instant, f: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            () = self.stop.cancelled() => None,
            out = f => Some(out),
            () = tokio::time::sleep_until(limit) => None,
        }
    }
}

/// The request every connection sends, built once.
struct Template {
    uri: Uri,
    headers: HeaderMap,
}

impl Template {
    fn new(spec: &LoadSpec) -> Self {
        let path = if spec.path.is_empty() {
            "/"
        } else {
            &spec.path
        };
        let uri = path.parse::<Uri>().unwrap_or_else(|e| {
            tracing::warn!(path, error = %e, "invalid request path; sending / instead");
            Uri::from_static("/")
        });
        let mut headers = HeaderMap::new();
        if !spec.host.is_empty() {
            match HeaderValue::from_str(&spec.host) {
                Ok(host) => {
                    headers.insert(HOST, host);
                }
                Err(e) => tracing::warn!(host = spec.host, error = %e, "invalid Host; not sent"),
            }
        }
        for (name, value) in &spec.headers {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                (Ok(name), Ok(value)) if name == HOST => {
                    headers.insert(name, value);
                }
                (Ok(name), Ok(value)) => {
                    headers.append(name, value);
                }
                _ => tracing::warn!(name, value, "invalid request header; skipped"),
            }
        }
        Self { uri, headers }
    }

    fn request(&self) -> Request<Empty<Bytes>> {
        let mut request = Request::new(Empty::new());
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// One connection's counts, merged into the [`Report`] at the end.
struct ConnStats {
    requests: u64,
    errors: u64,
    by_status: BTreeMap<u16, u64>,
    /// Few distinct values, so a vector searched linearly; no allocation per response.
    by_backend: Vec<(HeaderValue, u64)>,
    latency: Histogram<u64>,
}

impl ConnStats {
    fn record(&mut self, status: u16, backend: Option<&HeaderValue>, latency: Duration) {
        self.requests += 1;
        *self.by_status.entry(status).or_default() += 1;
        if let Some(backend) = backend {
            match self.by_backend.iter_mut().find(|(b, _)| b == backend) {
                Some((_, n)) => *n += 1,
                None => self.by_backend.push((backend.clone(), 1)),
            }
        }
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let _ = self.latency.record(micros);
    }
}

fn new_histogram() -> Histogram<u64> {
    // Auto-resizing, so any latency fits; 3 significant figures is always a valid precision.
    Histogram::new(3).expect("3 significant figures is a valid histogram precision")
}

/// An open HTTP/1.1 connection; dropping it stops its driver task.
struct Conn {
    sender: http1::SendRequest<Empty<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

async fn connect(addr: SocketAddr) -> Result<Conn, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn { sender, driver })
}

/// How one exchange ended.
enum Exchange {
    Done {
        status: u16,
        backend: Option<HeaderValue>,
        seq: Option<u64>,
        close: bool,
    },
    Failed,
}

async fn exchange(sender: &mut http1::SendRequest<Empty<Bytes>>, ctx: &Ctx) -> Exchange {
    let response = match sender.send_request(ctx.template.request()).await {
        Ok(response) => response,
        Err(_) => return Exchange::Failed,
    };
    let status = response.status().as_u16();
    let backend = response.headers().get(X_BACKEND).cloned();
    let seq = if ctx.sequence.is_some() {
        response
            .headers()
            .get(X_WEIR_SPLIT_SEQ)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    } else {
        None
    };
    let close = response
        .headers()
        .get_all(CONNECTION)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            return Exchange::Failed;
        }
    }
    Exchange::Done {
        status,
        backend,
        seq,
        close,
    }
}

async fn connection(index: usize, ctx: Arc<Ctx>) -> ConnStats {
    let mut stats = ConnStats {
        requests: 0,
        errors: 0,
        by_status: BTreeMap::new(),
        by_backend: Vec::new(),
        latency: new_histogram(),
    };
    let mut conn: Option<Conn> = None;
    let mut backoff = MIN_BACKOFF;
    let mut k: u64 = 0;
    'requests: loop {
        // When this request should go out, in open-loop mode.
        let intended = match &ctx.schedule {
            Some(schedule) => match schedule.at(&ctx, index, k) {
                Some(at) => Some(at),
                None => break,
            },
            None if Instant::now() >= ctx.deadline => break,
            None => None,
        };
        k += 1;
        // Whether the connection was free before the intended time: then the request is late
        // only by timer slack, which is the generator's doing, not the server's.
        let mut idle_before = false;
        if let Some(at) = intended
            && Instant::now() < at
        {
            idle_before = true;
            if ctx
                .until(ctx.deadline, tokio::time::sleep_until(at))
                .await
                .is_none()
            {
                break;
            }
        }

        // A usable connection, opened (again) if needed.
        let sender = loop {
            if let Some(c) = &mut conn {
                if c.sender.is_ready() {
                    break &mut c.sender;
                }
                if !c.sender.is_closed() {
                    match ctx.until(ctx.deadline, c.sender.ready()).await {
                        None => break 'requests,
                        Some(Ok(())) => break &mut c.sender,
                        // Closed by the server while idle: nothing was sent, no error.
                        Some(Err(_)) => {}
                    }
                }
                conn = None;
            }
            match ctx.until(ctx.deadline, connect(ctx.addr)).await {
                None => break 'requests,
                Some(Ok(c)) => {
                    backoff = MIN_BACKOFF;
                    conn = Some(c);
                }
                Some(Err(_)) => {
                    stats.errors += 1;
                    idle_before = false;
                    if ctx
                        .until(ctx.deadline, tokio::time::sleep(backoff))
                        .await
                        .is_none()
                    {
                        break 'requests;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };

        if !ctx.take_budget() {
            break;
        }
        let sent = Instant::now();
        let Some(outcome) = ctx.until(ctx.drain_deadline, exchange(sender, &ctx)).await else {
            if !ctx.stop.is_cancelled() {
                // Still unanswered when the drain time ran out.
                stats.errors += 1;
            }
            break;
        };
        match outcome {
            Exchange::Done {
                status,
                backend,
                seq,
                close,
            } => {
                let from = match intended {
                    Some(at) if !idle_before => at,
                    _ => sent,
                };
                stats.record(status, backend.as_ref(), from.elapsed());
                if let Some(sequence) = &ctx.sequence {
                    let name = backend
                        .as_ref()
                        .map(|b| String::from_utf8_lossy(b.as_bytes()).into_owned())
                        .unwrap_or_default();
                    let mut recorded = sequence.lock().unwrap_or_else(|e| e.into_inner());
                    recorded.backends.push(name);
                    recorded.seqs.push(seq);
                }
                if close {
                    conn = None;
                }
            }
            Exchange::Failed => {
                stats.errors += 1;
                conn = None;
            }
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(s: &str) -> Vec<String> {
        s.chars().map(|c| c.to_string()).collect()
    }

    #[test]
    fn window_deviation_of_a_perfect_alternation() {
        let s = seq("abababab");
        assert_eq!(worst_window_deviation(&s, "a", 0.5, 2), 0.0);
        assert_eq!(worst_window_deviation(&s, "a", 0.5, 4), 0.0);
        // Odd windows hold one more of either.
        assert_eq!(worst_window_deviation(&s, "a", 0.5, 3), 0.5);
        assert_eq!(worst_window_deviation(&s, "b", 0.5, 3), 0.5);
    }

    #[test]
    fn window_deviation_finds_the_worst_window() {
        let s = seq("aaaabbbb");
        assert_eq!(worst_window_deviation(&s, "a", 0.5, 4), 2.0);
        assert_eq!(worst_window_deviation(&s, "a", 0.5, 8), 0.0);
        let s = seq("abbbbbbbbbabbbbbbbbbaabbbbbbbbb");
        // A 10% share: windows of 10 hold 1 a, except those that catch both adjacent a's.
        assert_eq!(worst_window_deviation(&s, "a", 0.1, 10), 1.0);
        assert!((worst_window_deviation(&s, "b", 0.9, 10) - 1.0).abs() < 1e-9);
        assert_eq!(worst_window_deviation(&s, "c", 0.0, 5), 0.0);
    }

    #[test]
    fn window_deviation_of_degenerate_inputs_is_zero() {
        assert_eq!(worst_window_deviation(&[], "a", 0.5, 3), 0.0);
        assert_eq!(worst_window_deviation(&seq("aa"), "a", 0.5, 3), 0.0);
        assert_eq!(worst_window_deviation(&seq("aa"), "a", 0.5, 0), 0.0);
    }

    #[test]
    fn split_order_sorts_by_ticket_and_finds_gaps() {
        // Responses completed out of split order: tickets 10..=19, the canary (c) on 14 and 19.
        let backends = seq("sscssssscs");
        let seqs = [11, 10, 19, 12, 13, 15, 16, 17, 14, 18].map(Some);
        let order = split_order(&backends, &seqs);
        assert_eq!(order.sequence.concat(), "sssscssssc");
        assert_eq!((order.first, order.last), (Some(10), Some(19)));
        assert!(order.is_consecutive());
        // In split order every window of 5 holds exactly one c; in arrival order not.
        assert_eq!(worst_window_deviation(&order.sequence, "c", 0.2, 5), 0.0);
        assert_eq!(worst_window_deviation(&backends, "c", 0.2, 5), 1.0);

        let order = split_order(&seq("abcde"), &[Some(3), None, Some(1), Some(3), Some(7)]);
        assert_eq!(order.sequence.concat(), "cade");
        assert_eq!(order.unsequenced, 1);
        assert_eq!(order.duplicates, 1);
        // 2, 4, 5 and 6 are missing.
        assert_eq!(order.gaps, 4);
        assert!(!order.is_consecutive());
        assert_eq!(split_order(&[], &[]), SplitOrder::default());
        assert!(SplitOrder::default().is_consecutive());
    }

    #[test]
    fn report_helpers() {
        let mut r = Report {
            requests: 8,
            errors: 2,
            elapsed: Duration::from_secs(2),
            ..Report::default()
        };
        r.by_status.insert(200, 6);
        r.by_status.insert(503, 2);
        r.by_backend.insert("v1".into(), 8);
        for us in [1000, 2000, 3000, 4000] {
            r.latency.record(us).unwrap();
        }
        assert_eq!(r.rps(), 4.0);
        assert!((r.success_rate() - 0.6).abs() < 1e-9);
        assert!((r.quantile_ms(0.5) - 2.0).abs() < 0.01);
        assert!((r.quantile_ms(1.0) - 4.0).abs() < 0.01);
        let text = r.to_string();
        assert!(text.contains("8 requests"), "{text}");
        assert!(text.contains("200=6 503=2"), "{text}");
        assert!(text.contains("v1=8"), "{text}");
        let json = serde_json::to_value(r.summary()).unwrap();
        assert_eq!(json["byStatus"]["503"], 2);
        assert_eq!(json["byBackend"]["v1"], 8);
        assert!(json["p99Ms"].is_number());
        assert_eq!(Report::default().success_rate(), 0.0);
        assert_eq!(Report::default().quantile_ms(0.5), 0.0);
    }

    #[test]
    fn template_applies_host_and_headers() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let spec = LoadSpec {
            host: "example.test".into(),
            path: "/x?y=1".into(),
            headers: vec![
                ("x-a".into(), "1".into()),
                ("Host".into(), "override.test".into()),
                ("bad header".into(), "v".into()),
            ],
            ..LoadSpec::new(addr)
        };
        let req = Template::new(&spec).request();
        assert_eq!(req.uri(), "/x?y=1");
        assert_eq!(req.headers()[HOST], "override.test");
        assert_eq!(req.headers().get_all(HOST).iter().count(), 1);
        assert_eq!(req.headers()["x-a"], "1");
        assert_eq!(req.headers().len(), 2);
    }
}
