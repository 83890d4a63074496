//! Split precision: weir with a `100-c / c` split between two fake backends, closed-loop load
//! over many connections, and the worst deviation from an exact split over every window of
//! n consecutive requests, in weir's split order (by `x-weir-split-seq`) and, for contrast,
//! in the order the responses arrived.

use std::fmt;

use anyhow::{Result, bail};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{WeirOptions, WeirProcess, proxy_yaml, service_yaml};
use weir_fixtures::{Behavior, FakeBackend};
use weir_fixtures::{LoadSpec, split_order, worst_window_deviation};

/// The window lengths reported.
pub const WINDOWS: [usize; 3] = [10, 100, 1000];

/// Largest deviation a window may show in split order (the split is exact within one).
const TOLERANCE: f64 = 1.0 + 1e-9;

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitOptions {
    /// Concurrent keep-alive client connections.
    pub connections: usize,
    /// Responses to collect.
    pub requests: u64,
    /// The canary's weight in percent (0..=100, steps of 0.01); the stable gets the rest.
    pub canary_percent: f64,
    /// The weir to run.
    pub weir: WeirOptions,
}

/// One window length's worst deviations.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowRow {
    /// Window length, in requests.
    pub n: usize,
    /// Worst `|canaries - share*n|` over every window of n requests in split order.
    pub split_order: f64,
    /// The same in the order the responses arrived.
    pub arrival_order: f64,
}

/// What the scenario saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SplitResult {
    /// The canary's weight in percent.
    pub canary_percent: f64,
    /// Client connections.
    pub connections: usize,
    /// Responses received.
    pub requests: u64,
    /// Transport errors.
    pub errors: u64,
    /// Responses with a status outside 200..=299.
    pub non_2xx: u64,
    /// Responses per second.
    pub rps: f64,
    /// Responses answered by the canary backend.
    pub canary: u64,
    /// `round(share * responses)`: what an exact split gives.
    pub expected_canary: u64,
    /// The lowest and highest split ticket seen.
    pub first_seq: Option<u64>,
    /// See `first_seq`.
    pub last_seq: Option<u64>,
    /// Responses without an `x-weir-split-seq` header.
    pub unsequenced: usize,
    /// Tickets seen twice.
    pub duplicates: u64,
    /// Tickets missing between the first and the last.
    pub gaps: u64,
    /// No missing, duplicate or absent tickets.
    pub consecutive: bool,
    /// Worst deviations by window length.
    pub windows: Vec<WindowRow>,
    /// weir's exit code after SIGTERM.
    pub weir_exit: Option<i32>,
    /// Every split-order window within 1, tickets consecutive, no errors, weir exited 0.
    pub passed: bool,
}

/// `percent` in hundredths of a percent, if it is a valid weight (0..=100 in steps of 0.01).
fn hundredths(percent: f64) -> Option<u32> {
    let h = (percent * 100.0).round();
    ((0.0..=10_000.0).contains(&h) && (percent * 100.0 - h).abs() < 1e-6).then_some(h as u32)
}

fn weight(h: u32) -> String {
    format!("{}.{:02}", h / 100, h % 100)
}

/// The config: a route splitting between `stable` and `canary`.
fn config(
    web: u16,
    admin: u16,
    canary_h: u32,
    stable: &FakeBackend,
    canary: &FakeBackend,
) -> String {
    let routes = format!(
        "    - name: app\n      backends:\n        - {{service: stable, weight: {}}}\n        - {{service: canary, weight: {}}}\n",
        weight(10_000 - canary_h),
        weight(canary_h)
    );
    proxy_yaml(web, admin, &routes)
        + &service_yaml("stable", stable.addr())
        + &service_yaml("canary", canary.addr())
}

/// Runs the scenario.
pub async fn run(opts: &SplitOptions) -> Result<SplitResult> {
    let Some(canary_h) = hundredths(opts.canary_percent) else {
        bail!(
            "--canary {} must be a percentage in 0..=100 in steps of 0.01",
            opts.canary_percent
        );
    };
    if opts.requests == 0 {
        bail!("--requests must be at least 1");
    }
    let share = f64::from(canary_h) / 10_000.0;
    let stable = FakeBackend::start("stable", Behavior::default()).await?;
    let canary = FakeBackend::start("canary", Behavior::default()).await?;
    let weir = WeirProcess::start(&opts.weir, false, |web, admin| {
        config(web, admin, canary_h, &stable, &canary)
    })
    .await?;

    let spec = LoadSpec {
        host: "bench".to_owned(),
        connections: opts.connections.max(1),
        // A safety net only: the run ends after `requests` responses.
        duration: std::time::Duration::from_secs(3600),
        record_sequence: true,
        max_requests: Some(opts.requests),
        ..LoadSpec::new(weir.web())
    };
    let report = weir_fixtures::run(spec, CancellationToken::new()).await;
    let weir_exit = weir.stop().await?;

    let order = split_order(&report.sequence, &report.seqs);
    let windows: Vec<WindowRow> = WINDOWS
        .iter()
        .map(|&n| WindowRow {
            n,
            split_order: worst_window_deviation(&order.sequence, "canary", share, n),
            arrival_order: worst_window_deviation(&report.sequence, "canary", share, n),
        })
        .collect();
    let non_2xx = report
        .by_status
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let canary_count = report.by_backend.get("canary").copied().unwrap_or(0);
    let passed = windows.iter().all(|w| w.split_order <= TOLERANCE)
        && order.is_consecutive()
        && !order.sequence.is_empty()
        && report.errors == 0
        && non_2xx == 0
        && weir_exit == Some(0);
    Ok(SplitResult {
        canary_percent: f64::from(canary_h) / 100.0,
        connections: opts.connections.max(1),
        requests: report.requests,
        errors: report.errors,
        non_2xx,
        rps: report.rps(),
        canary: canary_count,
        expected_canary: (share * report.requests as f64).round() as u64,
        first_seq: order.first,
        last_seq: order.last,
        unsequenced: order.unsequenced,
        duplicates: order.duplicates,
        gaps: order.gaps,
        consecutive: order.is_consecutive(),
        windows,
        weir_exit,
        passed,
    })
}

impl fmt::Display for SplitResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "split {:.2}/{:.2}: {} responses over {} connections ({:.0} req/s), {} transport errors, {} non-2xx",
            100.0 - self.canary_percent,
            self.canary_percent,
            self.requests,
            self.connections,
            self.rps,
            self.errors,
            self.non_2xx
        )?;
        let seqs = match (self.first_seq, self.last_seq) {
            (Some(a), Some(b)) => format!("{a}..={b}"),
            _ => "none".to_owned(),
        };
        if self.consecutive {
            writeln!(
                f,
                "x-weir-split-seq: {seqs}, consecutive (no gaps, no duplicates)"
            )?;
        } else {
            writeln!(
                f,
                "x-weir-split-seq: {seqs}, NOT consecutive: {} missing, {} duplicated, {} responses without one",
                self.gaps, self.duplicates, self.unsequenced
            )?;
        }
        writeln!(
            f,
            "canary total: {} (round(share*N) = {})",
            self.canary, self.expected_canary
        )?;
        writeln!(
            f,
            "worst |canaries - share*n| over every window of n consecutive requests:"
        )?;
        writeln!(
            f,
            "  {:>6} {:>12} {:>14}",
            "n", "split order", "arrival order"
        )?;
        for w in &self.windows {
            writeln!(
                f,
                "  {:>6} {:>12.2} {:>14.2}",
                w.n, w.split_order, w.arrival_order
            )?;
        }
        super::write_verdict(
            f,
            self.weir_exit,
            self.passed,
            "PASS: every split-order window within 1",
            "FAIL",
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn weights_are_hundredths_of_a_percent() {
        assert_eq!(hundredths(5.0), Some(500));
        assert_eq!(hundredths(0.01), Some(1));
        assert_eq!(hundredths(100.0), Some(10_000));
        assert_eq!(hundredths(0.0), Some(0));
        assert_eq!(hundredths(0.001), None);
        assert_eq!(hundredths(101.0), None);
        assert_eq!(hundredths(-1.0), None);
        assert_eq!(weight(9501), "95.01");
        assert_eq!(weight(500), "5.00");
    }

    #[tokio::test]
    async fn the_config_validates() {
        let a = FakeBackend::start("stable", Behavior::default())
            .await
            .unwrap();
        let b = FakeBackend::start("canary", Behavior::default())
            .await
            .unwrap();
        let yaml = config(18080, 18081, 499, &a, &b);
        let model = weir_config::load_str(Path::new("/bench/weir.yaml"), &yaml)
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(model.proxy.routes.len(), 1);
    }
}
