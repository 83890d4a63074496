//! A simulated data plane, for the canary-vs-stable judge's tests and the bench: one
//! service whose requests arrive at a steady rate, are split exactly as the proxy splits
//! them (request i goes to the canary when ⌊(i+1)·w⌋ > ⌊i·w⌋), and fail or take as long
//! as a script says. It is both ports at once ([`MetricsSource`] and [`TrafficRouter`]),
//! so the controller's weight changes take effect at once, and it counts what the canary
//! served (the blast radius). Time is tokio's, so tests and the bench run it paused.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::engine::TrafficPlan;
use crate::ports::{MetricsSource, Sample, Served, Tally, TrafficRouter};

/// splitmix64: a small seeded generator.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// Binomial(n, p), by geometric skips (cost grows with the number of successes).
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if p <= 0.0 || n == 0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        let log_q = (-p).ln_1p();
        let (mut i, mut k) = (0u64, 0u64);
        loop {
            let skip = (self.unit().ln() / log_q).floor();
            if skip >= (n - i) as f64 {
                return k;
            }
            i += skip as u64 + 1;
            k += 1;
            if i >= n {
                return k;
            }
        }
    }
}

/// Which revision a request went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arm {
    /// The canary.
    Canary,
    /// The stable revision.
    Stable,
}

/// What happens to requests: given the arm and the seconds since the simulation began,
/// the chance that a request fails and its latency in microseconds.
pub trait Script: Send + 'static {
    /// The chance a request to `arm` at `t` seconds fails.
    fn failure(&self, arm: Arm, t: f64) -> f64;
    /// A request's latency in µs.
    fn latency_us(&self, arm: Arm, t: f64, rng: &mut Rng) -> u32;
}

/// Lognormal latencies with the given median and p99 (in ms), plus `canary_extra_ms`
/// on the canary; constant failure rates, with an `incident` (start s, end s, rate)
/// on both arms.
#[derive(Clone, Debug)]
pub struct Steady {
    /// The stable revision's failure rate.
    pub stable_failure: f64,
    /// The canary's failure rate.
    pub canary_failure: f64,
    /// (from, to, rate): both arms fail at `rate` between those seconds.
    pub incident: Option<(f64, f64, f64)>,
    /// Median latency, ms.
    pub median_ms: f64,
    /// p99 latency, ms.
    pub p99_ms: f64,
    /// Added to every canary request, ms.
    pub canary_extra_ms: f64,
}

impl Steady {
    /// Both arms fail at `rate`; latencies with median 20 ms and p99 100 ms.
    pub fn healthy(rate: f64) -> Steady {
        Steady {
            stable_failure: rate,
            canary_failure: rate,
            incident: None,
            median_ms: 20.0,
            p99_ms: 100.0,
            canary_extra_ms: 0.0,
        }
    }
}

impl Script for Steady {
    fn failure(&self, arm: Arm, t: f64) -> f64 {
        if let Some((from, to, rate)) = self.incident
            && (from..to).contains(&t)
        {
            return rate;
        }
        match arm {
            Arm::Canary => self.canary_failure,
            Arm::Stable => self.stable_failure,
        }
    }

    fn latency_us(&self, arm: Arm, _: f64, rng: &mut Rng) -> u32 {
        // p99 of a lognormal is median·e^(2.326σ).
        let sigma = (self.p99_ms / self.median_ms).ln() / 2.326;
        let mut ms = self.median_ms * (sigma * rng.normal()).exp();
        if arm == Arm::Canary {
            ms += self.canary_extra_ms;
        }
        (ms * 1000.0).round().clamp(1.0, 3.6e9) as u32
    }
}

#[derive(Debug, Default)]
struct Second {
    requests: u64,
    failures: u64,
    latencies: Vec<u32>,
}

struct Inner {
    script: Box<dyn Script>,
    rng: Rng,
    /// Requests generated so far (request k arrives at k / rate seconds).
    generated: u64,
    /// The split's request counter.
    split: u64,
    /// The canary's share, in basis points.
    weight_bp: u64,
    /// Per epoch second: (canary, stable).
    seconds: BTreeMap<u64, (Second, Second)>,
    canary_requests: u64,
    canary_failures: u64,
    /// (ms since the start, canary share in %) at each change.
    weights: Vec<(u64, f64)>,
}

/// The simulated data plane.
pub struct SimPlane {
    rate: f64,
    base_ms: u64,
    base: Instant,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for SimPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPlane")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

/// Seconds of history kept (as the proxy keeps).
const HISTORY: u64 = 600;

impl SimPlane {
    /// `rate` requests per second from now on, treated as `script` says.
    pub fn new(rate: f64, script: impl Script, seed: u64) -> Arc<SimPlane> {
        let base_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Arc::new(SimPlane {
            rate,
            base_ms,
            base: Instant::now(),
            inner: Mutex::new(Inner {
                script: Box::new(script),
                rng: Rng::new(seed),
                generated: 0,
                split: 0,
                weight_bp: 0,
                seconds: BTreeMap::new(),
                canary_requests: 0,
                canary_failures: 0,
                weights: Vec::new(),
            }),
        })
    }

    fn elapsed_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// Generates the requests that arrived up to now, at the weight in force.
    fn advance(&self, inner: &mut Inner) {
        let now = self.base.elapsed().as_secs_f64();
        let due = (now * self.rate).floor() as u64;
        while inner.generated < due {
            let k = inner.generated;
            inner.generated += 1;
            let t = k as f64 / self.rate;
            let i = inner.split;
            inner.split += 1;
            let bp = inner.weight_bp;
            let arm = if (i + 1) * bp / 10_000 > i * bp / 10_000 {
                Arm::Canary
            } else {
                Arm::Stable
            };
            let p = inner.script.failure(arm, t);
            let failed = inner.rng.unit() <= p && p > 0.0;
            let latency = inner.script.latency_us(arm, t, &mut inner.rng);
            let second = (self.base_ms + (t * 1000.0) as u64) / 1000;
            let slot = inner.seconds.entry(second).or_default();
            let s = match arm {
                Arm::Canary => &mut slot.0,
                Arm::Stable => &mut slot.1,
            };
            s.requests += 1;
            s.failures += u64::from(failed);
            s.latencies.push(latency);
            if arm == Arm::Canary {
                inner.canary_requests += 1;
                inner.canary_failures += u64::from(failed);
            }
        }
        let now_second = (self.base_ms + self.elapsed_ms()) / 1000;
        let keep = now_second.saturating_sub(HISTORY);
        inner.seconds = inner.seconds.split_off(&keep);
    }

    /// Requests the canary served so far, and how many of them failed.
    pub fn canary_served(&self) -> (u64, u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.advance(&mut inner);
        (inner.canary_requests, inner.canary_failures)
    }

    /// Every weight change: (ms since the simulation began, canary share in %).
    pub fn weights(&self) -> Vec<(u64, f64)> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .weights
            .clone()
    }
}

impl MetricsSource for SimPlane {
    fn sample(
        &self,
        _: &str,
        _: &str,
        served: Served,
        window: Duration,
        _: Option<u64>,
        quantile: f64,
    ) -> Sample {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.advance(&mut inner);
        let now_second = (self.base_ms + self.elapsed_ms()) / 1000;
        let first = (now_second + 1).saturating_sub(window.as_secs().max(1));
        let (mut requests, mut failures, mut lat) = (0, 0, Vec::new());
        for (_, (c, s)) in inner.seconds.range(first..=now_second) {
            let arm = if served == Served::AsStable { s } else { c };
            requests += arm.requests;
            failures += arm.failures;
            lat.extend_from_slice(&arm.latencies);
        }
        lat.sort_unstable();
        let latency = (!lat.is_empty()).then(|| {
            let i = ((quantile * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
            f64::from(lat[i]) / 1e6
        });
        Sample {
            requests,
            failures,
            latency,
            seconds: window.as_secs_f64(),
        }
    }

    fn tallies(
        &self,
        _: &str,
        _: &str,
        served: Served,
        _: Option<u64>,
        from_second: u64,
        slow_above_us: Option<u64>,
    ) -> Option<Vec<(u64, Tally)>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.advance(&mut inner);
        let now_second = (self.base_ms + self.elapsed_ms()) / 1000;
        let out = (from_second.min(now_second)..=now_second)
            .map(|sec| {
                let t = inner
                    .seconds
                    .get(&sec)
                    .map_or_else(Tally::default, |(c, s)| {
                        let arm = if served == Served::AsStable { s } else { c };
                        Tally {
                            requests: arm.requests,
                            failures: arm.failures,
                            slow: slow_above_us.map_or(0, |l| {
                                arm.latencies.iter().filter(|v| u64::from(**v) > l).count() as u64
                            }),
                        }
                    });
                (sec, t)
            })
            .collect();
        Some(out)
    }
}

impl TrafficRouter for SimPlane {
    fn send(&self, _: &str, _: &str, plan: Option<TrafficPlan>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // What arrived before the change went by the old weight.
        self.advance(&mut inner);
        let bp = plan
            .as_ref()
            .filter(|p| p.canary.is_some())
            .map_or(0, |p| (p.canary_weight.percent() * 100.0).round() as u64);
        if bp != inner.weight_bp {
            inner.weight_bp = bp;
            let at = self.elapsed_ms();
            inner.weights.push((at, bp as f64 / 100.0));
        }
    }

    fn flush<'a>(&'a self) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async {})
    }
}
