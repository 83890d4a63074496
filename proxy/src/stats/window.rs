//! Slots (one closed second) and window samples (a sum of slots).

use hdrhistogram::Histogram;
use serde::Serialize;

use super::cell::Current;

/// Upper bounds, in seconds, of the `http_request_duration_seconds` buckets.
///
/// From 10 ms to 2.5 s they grow by 2^(1/4) (19%) per bucket, so a p99 that
/// `histogram_quantile` interpolates in that range is off by at most a few percent; below
/// and above, coarser buckets keep the series count down (41 buckets in all).
pub const LATENCY_BUCKETS: [f64; 40] = [
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, //
    0.01, 0.0119, 0.0141, 0.0168, 0.02, 0.0238, 0.0283, 0.0336, //
    0.04, 0.0476, 0.0566, 0.0673, 0.08, 0.0951, 0.1131, 0.1345, //
    0.16, 0.1903, 0.2263, 0.2691, 0.32, 0.3805, 0.4525, 0.5382, //
    0.64, 0.7611, 0.9051, 1.0763, 1.28, 1.5222, 1.8102, 2.1527, //
    5.0, 10.0,
];

/// Index of the bucket `secs` falls in (`LATENCY_BUCKETS.len()` for +Inf).
pub(super) fn bucket_index(secs: f64) -> usize {
    LATENCY_BUCKETS.partition_point(|b| *b < secs)
}

/// Latency histograms count microseconds from 1 µs to one hour with two significant
/// digits (1% precision): enough for any quantile an analysis asks for.
pub(super) fn new_histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid histogram bounds")
}

/// 0: 1xx, 1: 2xx, 2: 3xx, 3: 4xx, 4: 5xx from upstream, 5: made by the proxy.
pub(super) fn status_class(status: u16, proxy_error: bool) -> usize {
    if proxy_error {
        return 5;
    }
    match status {
        0..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// One closed second.
#[derive(Debug, Default)]
pub(super) struct Slot {
    pub(super) requests: u64,
    pub(super) failures: u64,
    pub(super) classes: [u64; 6],
    /// (value in µs, count) for each distinct recorded value: a second's latencies
    /// cluster, so this is far smaller than a full histogram.
    latency: Vec<(u64, u64)>,
}

impl Slot {
    pub(super) fn add_counts(&mut self, c: &Current) {
        self.requests += c.requests;
        self.failures += c.failures;
        for (a, b) in self.classes.iter_mut().zip(c.classes.iter()) {
            *a += b;
        }
    }

    pub(super) fn set_latency(&mut self, h: &Histogram<u32>) {
        self.latency = h
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), u64::from(v.count_at_value())))
            .collect();
        self.latency.shrink_to_fit();
    }

    pub(super) fn merge(&mut self, other: &Slot) {
        self.requests += other.requests;
        self.failures += other.failures;
        for (a, b) in self.classes.iter_mut().zip(other.classes.iter()) {
            *a += b;
        }
        self.latency.extend_from_slice(&other.latency);
    }
}

/// One closed second of a cell, as another replica of a cluster reads it: counts, and
/// each recorded latency (µs, bucketed as recorded) with its count.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SecondCounts {
    /// The second (since the epoch).
    #[serde(rename = "s")]
    pub second: u64,
    /// Requests.
    #[serde(rename = "r")]
    pub requests: u64,
    /// Of which failed.
    #[serde(rename = "f")]
    pub failures: u64,
    /// By class: 1xx, 2xx, 3xx, 4xx, 5xx from upstream, proxy errors.
    #[serde(rename = "c", default)]
    pub classes: [u64; 6],
    /// (latency in µs, count).
    #[serde(rename = "l", default)]
    pub latency: Vec<(u64, u64)>,
}

impl SecondCounts {
    pub(super) fn of(second: u64, s: &Slot) -> SecondCounts {
        SecondCounts {
            second,
            requests: s.requests,
            failures: s.failures,
            classes: s.classes,
            latency: s.latency.clone(),
        }
    }
}

/// One second's counts, whether this replica's ([`Slot`]) or another's
/// ([`SecondCounts`]), as windows and tallies add them.
struct Counts<'a> {
    requests: u64,
    failures: u64,
    classes: &'a [u64; 6],
    latency: &'a [(u64, u64)],
}

impl<'a> From<&'a Slot> for Counts<'a> {
    fn from(s: &'a Slot) -> Self {
        Counts {
            requests: s.requests,
            failures: s.failures,
            classes: &s.classes,
            latency: &s.latency,
        }
    }
}

impl<'a> From<&'a SecondCounts> for Counts<'a> {
    fn from(s: &'a SecondCounts) -> Self {
        Counts {
            requests: s.requests,
            failures: s.failures,
            classes: &s.classes,
            latency: &s.latency,
        }
    }
}

/// One second's counts, for a judge that compares revisions second by second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Requests.
    pub requests: u64,
    /// Of which failed (5xx or proxy error).
    pub failures: u64,
    /// Of which took longer than the threshold asked for (0 without one). Latencies are
    /// compared as recorded (1% buckets), so every revision's requests are rounded alike.
    pub slow: u64,
}

impl Tally {
    /// Adds another replica's second.
    pub fn add_second(&mut self, s: &SecondCounts, slow_above_us: Option<u64>) {
        self.add(Counts::from(s), slow_above_us);
    }

    pub(super) fn add_slot(&mut self, s: &Slot, slow_above_us: Option<u64>) {
        self.add(Counts::from(s), slow_above_us);
    }

    fn add(&mut self, c: Counts<'_>, slow_above_us: Option<u64>) {
        self.requests += c.requests;
        self.failures += c.failures;
        if let Some(l) = slow_above_us {
            self.slow += c
                .latency
                .iter()
                .filter(|(v, _)| *v > l)
                .map(|(_, n)| n)
                .sum::<u64>();
        }
    }

    pub(super) fn add_current(&mut self, c: &Current, slow_above_us: Option<u64>) {
        self.requests += c.requests;
        self.failures += c.failures;
        if let Some(l) = slow_above_us
            && c.requests > 0
        {
            self.slow += c
                .latency
                .iter_recorded()
                .filter(|v| v.value_iterated_to() > l)
                .map(|v| u64::from(v.count_at_value()))
                .sum::<u64>();
        }
    }
}

/// Requests in a window: counts and a latency histogram.
#[derive(Clone, Debug)]
pub struct WindowSample {
    /// Window length asked for, in seconds.
    pub seconds: u64,
    /// Requests finished in the window.
    pub requests: u64,
    /// Of which failed (5xx or proxy error).
    pub failures: u64,
    /// By class: 1xx, 2xx, 3xx, 4xx, 5xx from upstream, proxy errors.
    pub classes: [u64; 6],
    latency: Histogram<u64>,
}

impl WindowSample {
    pub(super) fn new(seconds: u64) -> Self {
        WindowSample {
            seconds,
            requests: 0,
            failures: 0,
            classes: [0; 6],
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 2)
                .expect("valid histogram bounds"),
        }
    }

    pub(super) fn add_current(&mut self, c: &Current) {
        if c.requests == 0 {
            return;
        }
        self.requests += c.requests;
        self.failures += c.failures;
        for (a, b) in self.classes.iter_mut().zip(c.classes.iter()) {
            *a += b;
        }
        for v in c.latency.iter_recorded() {
            self.latency
                .saturating_record_n(v.value_iterated_to(), v.count_at_value().into());
        }
    }

    pub(super) fn add_slot(&mut self, s: &Slot) {
        self.add(Counts::from(s));
    }

    /// An empty window of `seconds`.
    pub fn empty(seconds: u64) -> Self {
        Self::new(seconds)
    }

    /// Adds another replica's second.
    pub fn add_second(&mut self, s: &SecondCounts) {
        self.add(Counts::from(s));
    }

    fn add(&mut self, c: Counts<'_>) {
        self.requests += c.requests;
        self.failures += c.failures;
        for (a, b) in self.classes.iter_mut().zip(c.classes.iter()) {
            *a += b;
        }
        for (v, n) in c.latency {
            self.latency.saturating_record_n(*v, *n);
        }
    }

    /// Adds another sample (another revision of the same role, say).
    pub fn merge(&mut self, other: &WindowSample) {
        self.requests += other.requests;
        self.failures += other.failures;
        for (a, b) in self.classes.iter_mut().zip(other.classes.iter()) {
            *a += b;
        }
        let _ = self.latency.add(&other.latency);
    }

    /// Successful share of requests, or None with no requests.
    pub fn success_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| (self.requests - self.failures) as f64 / self.requests as f64)
    }

    /// Failed share of requests, or None with no requests.
    pub fn error_rate(&self) -> Option<f64> {
        self.success_rate().map(|s| 1.0 - s)
    }

    /// Requests per second over the window.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1) as f64
    }

    /// A latency quantile in seconds, or None with no requests.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        (!self.latency.is_empty())
            .then(|| self.latency.value_at_quantile(q.clamp(0.0, 1.0)) as f64 / 1e6)
    }

    /// A summary for the admin API.
    pub fn summary(&self) -> WindowSummary {
        WindowSummary {
            window_seconds: self.seconds,
            requests: self.requests,
            failures: self.failures,
            success_rate: self.success_rate(),
            rps: self.rate(),
            p50: self.quantile(0.5),
            p90: self.quantile(0.9),
            p99: self.quantile(0.99),
            p999: self.quantile(0.999),
            status: StatusClasses {
                informational: self.classes[0],
                success: self.classes[1],
                redirect: self.classes[2],
                client_error: self.classes[3],
                server_error: self.classes[4],
                proxy_error: self.classes[5],
            },
        }
    }
}

/// A window as the admin API shows it. Latencies are in seconds.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowSummary {
    /// Window length.
    pub window_seconds: u64,
    /// Requests.
    pub requests: u64,
    /// Failed requests.
    pub failures: u64,
    /// Successful share.
    pub success_rate: Option<f64>,
    /// Requests per second.
    pub rps: f64,
    /// Median latency.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// 99.9th percentile.
    pub p999: Option<f64>,
    /// Counts by status class.
    pub status: StatusClasses,
}

/// Counts by status class.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusClasses {
    /// 1xx.
    pub informational: u64,
    /// 2xx.
    pub success: u64,
    /// 3xx.
    pub redirect: u64,
    /// 4xx.
    pub client_error: u64,
    /// 5xx from upstream.
    pub server_error: u64,
    /// 502/503/504 made by the proxy.
    pub proxy_error: u64,
}
