//! The two narrow ports through which the control loop reaches the data plane. The binary
//! implements them over the proxy; tests use in-memory fakes.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::engine::TrafficPlan;

/// What the data plane measured for one revision over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Requests that finished in the window.
    pub requests: u64,
    /// Of which failed (5xx or proxy error).
    pub failures: u64,
    /// The asked-for latency quantile, in seconds, if there were requests.
    pub latency: Option<f64>,
    /// The window's length in seconds.
    pub seconds: f64,
}

/// One second of a revision's requests, for the canary-vs-stable judge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Requests that finished in the second.
    pub requests: u64,
    /// Of which failed (5xx or proxy error).
    pub failures: u64,
    /// Of which took longer than the threshold asked for (none without one).
    pub slow: u64,
}

/// Which of a revision's requests count: those it served as the canary, as the stable
/// revision, or either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    /// Requests routed to it as the canary (by weight, header route or canary host).
    AsCanary,
    /// Requests the weighted split (or a user's sticky bucket) sent to it as the canary:
    /// not those a header route, canary rule, canary host or mirror sent. What the
    /// canary-vs-stable judge compares with the stable revision.
    AsCanaryBySplit,
    /// Requests routed to it as the stable revision.
    AsStable,
    /// Either.
    Any,
}

/// Reads the data plane's measurements.
pub trait MetricsSource: Send + Sync + 'static {
    /// Requests of `service`'s `revision`, served as `served` says, over the last
    /// `window`, with the `quantile` latency. With `since` (the start of an update, in
    /// milliseconds since the epoch, as given to [`MetricsSource::begin`]), only the
    /// requests after that start count.
    fn sample(
        &self,
        service: &str,
        revision: &str,
        served: Served,
        window: Duration,
        since: Option<u64>,
        quantile: f64,
    ) -> Sample;

    /// The requests of `service`'s `revision`, served as `served`, second by second:
    /// `(second, tally)` for every second from `from_second` (seconds since the epoch) to
    /// the current one, which comes last and is still counting. `since` is as for
    /// [`MetricsSource::sample`]; with `slow_above_us`, requests that took longer than
    /// that many microseconds are counted as slow. None: this source cannot tell seconds
    /// apart (the canary-vs-stable judge then cannot run).
    fn tallies(
        &self,
        service: &str,
        revision: &str,
        served: Served,
        since: Option<u64>,
        from_second: u64,
        slow_above_us: Option<u64>,
    ) -> Option<Vec<(u64, Tally)>> {
        let _ = (service, revision, served, since, from_second, slow_above_us);
        None
    }

    /// An update of `service` with `revision` as its canary begins now; `since` names it.
    /// Called before any traffic of the update is routed, so that a source that counts
    /// in coarse slots can still tell the update's requests from earlier ones.
    fn begin(&self, service: &str, revision: &str, since: u64) {
        let _ = (service, revision, since);
    }

    /// The same as a time series for charts: `points` consecutive windows of `step`,
    /// oldest first, the last ending now. Sources without history give none.
    fn series(
        &self,
        service: &str,
        revision: &str,
        points: usize,
        step: Duration,
        quantile: f64,
    ) -> Vec<Sample> {
        let _ = (service, revision, points, step, quantile);
        Vec::new()
    }
}

/// Sets a Rollout's traffic in the data plane.
pub trait TrafficRouter: Send + Sync + 'static {
    /// Queues `plan` for `rollout` (None: the Rollout is gone) without waiting. Plans
    /// queued together may be served by one new routing snapshot.
    fn send(&self, rollout: &str, service: &str, plan: Option<TrafficPlan>);

    /// Resolves once the data plane serves everything sent before.
    fn flush<'a>(&'a self) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

    /// Whether the endpoint at `addr` passes its Service's active health check (or has
    /// none); None when the data plane does not know it yet (no route has used it). A
    /// canary's weight waits for one of its endpoints to be up, as Argo waits for the
    /// canary's pods to be available.
    fn endpoint_up(&self, addr: std::net::SocketAddr) -> Option<bool> {
        let _ = addr;
        None
    }

    /// Sends `plan` and resolves once the data plane serves it.
    fn apply<'a>(
        &'a self,
        rollout: &'a str,
        service: &'a str,
        plan: Option<TrafficPlan>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        self.send(rollout, service, plan);
        self.flush()
    }
}
