//! Blast radius of a broken canary: a Rollout routed by weir, whose new image answers every
//! request with 500, guarded by weir's own background analysis (success rate ≥ 0.8 over
//! 10 s, measured every second once there are 10 canary requests). Under open-loop load,
//! the image is switched to the broken one; the scenario counts the requests that failed
//! and times how long the canary got traffic before weir aborted the update.
//!
//! How each run measures:
//!
//! - *failed*: non-2xx responses plus transport errors seen by the open-loop load, which
//!   starts 2 s before the switch and stops 1 s after the admin API shows the abort.
//! - *seconds*: from the broken backend's first answer to the abort, the abort being the later
//!   of the `RolloutAborted` event (weir's wall clock, millisecond precision) and the
//!   backend's last answer. The backend's answers are timed by sampling its answer counter
//!   every millisecond. The last answer alone would understate the time by up to the gap
//!   between two canary requests (100 ms at 5% of 200 req/s); the event alone would miss
//!   failures served after it. Shown beside it: first to last answer, and first answer →
//!   the first admin poll (every 10 ms) that showed the rollout Degraded and aborted.
//! - *decision*: `weir_control_decision_seconds_max` from `/metrics` after the abort (the
//!   largest since weir started), and this run's mean (the increase of
//!   `..._seconds_sum` over that of `weir_control_decisions_total`).
//!
//! Between runs the stable image is restored (which clears the abort), and the next switch
//! waits until the broken backend has been idle for the analysis window plus a second, so
//! that no earlier run's failures are still in the window the next analysis looks at.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::canary::{
    Admin, Guard, HitWatch, RolloutView, Spread, epoch_ms, guarded_rollout_config,
};
use super::{WeirOptions, WeirProcess};
use weir_fixtures::load::{LoadSpec, Mode};
use weir_fixtures::{Behavior, FakeBackend};

/// At most this many failed requests per run.
pub const GOAL_FAILED: u64 = 25;
/// At most this many seconds from the first failure to the abort per run.
pub const GOAL_SECONDS: f64 = 2.0;
/// Decision latency below this many milliseconds (reported, not enforced).
pub const GOAL_DECISION_MS: f64 = 10.0;

/// The Rollout's steps (the quickstart's first half).
const STEPS: [&str; 4] = [
    "{setWeight: 5}",
    "{pause: {duration: 10}}",
    "{setWeight: 50}",
    "{pause: {duration: 10}}",
];
const STABLE: &str = "app:v1";
const BROKEN: &str = "app:v2";
/// Load before the switch.
const WARMUP: Duration = Duration::from_secs(2);
/// Load after the abort was seen, to catch any late failure.
const TAIL: Duration = Duration::from_secs(1);
/// Longest wait for the abort.
const ABORT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for Healthy (at start and after restoring the stable image).
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);
/// Admin API polling period.
const POLL: Duration = Duration::from_millis(10);
/// Connections of the open-loop load.
const CONNECTIONS: usize = 16;

/// How each figure is measured, for the report.
const METHOD: &str = "failed = non-2xx + transport errors of the open-loop load (from 2 s before the switch to 1 s after the abort was seen); seconds = broken backend's first answer -> the later of the RolloutAborted event (weir's clock, ms) and its last answer (answers timed by sampling its counter every 1 ms); decision = weir_control_decision_seconds_max after the abort (max since weir started). Each switch waits until the broken backend was idle for the analysis window + 1 s.";

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct BlastOptions {
    /// Open-loop load, requests per second.
    pub rate: f64,
    /// Broken updates to make.
    pub runs: usize,
    /// The analysis guarding the update.
    pub guard: Guard,
    /// The weir to run.
    pub weir: WeirOptions,
}

/// One broken update.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlastRun {
    /// Load responses (any status).
    pub requests: u64,
    /// Load responses outside 200..=299 plus transport errors.
    pub failed: u64,
    /// Load transport errors (part of `failed`).
    pub transport_errors: u64,
    /// Answers of the broken backend (all 500s).
    pub canary_answers: u64,
    /// Whether weir aborted within 30 s.
    pub aborted: bool,
    /// From the config switch to the broken backend's first answer.
    pub switch_to_first_failure_s: Option<f64>,
    /// From the broken backend's first answer to its last.
    pub failing_s: Option<f64>,
    /// From the broken backend's first answer to the abort: the later of the
    /// `RolloutAborted` event and its last answer.
    pub seconds: Option<f64>,
    /// From the broken backend's first answer to the `RolloutAborted` event.
    pub first_failure_to_abort_event_s: Option<f64>,
    /// From the broken backend's first answer to the first poll that showed the abort.
    pub first_failure_to_abort_seen_s: Option<f64>,
    /// Decisions (traffic changes after a measurement result) during the run.
    pub decisions: u64,
    /// Their mean latency.
    pub decision_mean_ms: Option<f64>,
    /// `weir_control_decision_seconds_max` after the run, in ms (since weir started).
    pub decision_max_ms: f64,
    /// The rollout's message once aborted.
    pub message: String,
    /// Aborted, failed ≤ 25, seconds ≤ 2.
    pub passed: bool,
}

/// What the scenario saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlastResult {
    /// Open-loop load, requests per second.
    pub rate: f64,
    /// The background analysis.
    pub guard: Guard,
    /// How each figure is measured.
    pub method: String,
    /// Every run, in order.
    pub runs: Vec<BlastRun>,
    /// Failed requests per run.
    pub failed: Spread,
    /// First failure to the abort, per run.
    pub seconds: Spread,
    /// `weir_control_decision_seconds_max` after each run, in ms.
    pub decision_max_ms: Spread,
    /// The decision latency stayed below 10 ms (reported only).
    pub decision_goal_met: bool,
    /// weir's exit code after SIGTERM.
    pub weir_exit: Option<i32>,
    /// Every run aborted within the failed-requests and seconds goals.
    pub passed: bool,
}

fn config(
    web: u16,
    admin: u16,
    image: &str,
    guard: &Guard,
    v1: &FakeBackend,
    v2: &FakeBackend,
) -> String {
    guarded_rollout_config(
        web,
        admin,
        image,
        &STEPS,
        guard,
        &[(v1.addr(), STABLE), (v2.addr(), BROKEN)],
    )
}

/// Runs the scenario.
pub async fn run(opts: &BlastOptions) -> Result<BlastResult> {
    if opts.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if !(opts.rate.is_finite() && opts.rate > 0.0) {
        bail!("--rate {} must be a positive number", opts.rate);
    }
    let v1 = Arc::new(FakeBackend::start("v1", Behavior::default()).await?);
    let v2 = Arc::new(FakeBackend::start("v2", Behavior::with_status(500)).await?);
    let weir = WeirProcess::start(&opts.weir, true, |web, admin| {
        config(web, admin, STABLE, &opts.guard, &v1, &v2)
    })
    .await?;
    let config = |image: &str| {
        config(
            weir.web().port(),
            weir.admin().port(),
            image,
            &opts.guard,
            &v1,
            &v2,
        )
    };
    let mut admin = Admin::new(weir.admin());

    let mut runs = Vec::with_capacity(opts.runs);
    let outcome: Result<()> = async {
        if admin
            .wait_rollout("app", HEALTHY_TIMEOUT, POLL, |v| v.is_healthy_on(STABLE))
            .await
            .is_none()
        {
            bail!(
                "the rollout was not Healthy on {STABLE} within {HEALTHY_TIMEOUT:?}: {:?}\nweir's log:\n{}",
                admin.rollout("app").await.ok(),
                weir.log_tail()
            );
        }
        let mut broken_idle_since: Option<Instant> = None;
        for _ in 0..opts.runs {
            let run = one_run(
                opts,
                &weir,
                &mut admin,
                &v2,
                &config,
                &mut broken_idle_since,
            )
            .await?;
            runs.push(run);
        }
        Ok(())
    }
    .await;
    let weir_exit = weir.stop().await?;
    outcome?;

    let decision_max_ms = Spread::of(runs.iter().map(|r| r.decision_max_ms));
    Ok(BlastResult {
        rate: opts.rate,
        guard: opts.guard,
        method: METHOD.to_owned(),
        failed: Spread::of(runs.iter().map(|r| r.failed as f64)),
        seconds: Spread::of(runs.iter().filter_map(|r| r.seconds)),
        decision_goal_met: decision_max_ms.max < GOAL_DECISION_MS,
        decision_max_ms,
        passed: runs.iter().all(|r| r.passed),
        runs,
        weir_exit,
    })
}

async fn one_run(
    opts: &BlastOptions,
    weir: &WeirProcess,
    admin: &mut Admin,
    v2: &Arc<FakeBackend>,
    config: &impl Fn(&str) -> String,
    broken_idle_since: &mut Option<Instant>,
) -> Result<BlastRun> {
    // No failures of an earlier run may be left in the window the analysis looks at.
    if let Some(idle) = *broken_idle_since {
        tokio::time::sleep_until(idle + Guard::default().window() + Duration::from_secs(1)).await;
    }
    let before = admin.control_metrics().await?;
    let stop = CancellationToken::new();
    let load = tokio::spawn(weir_fixtures::run(
        LoadSpec {
            host: "app".to_owned(),
            connections: CONNECTIONS,
            mode: Mode::Open { rate: opts.rate },
            // Until cancelled.
            duration: Duration::from_secs(24 * 3600),
            ..LoadSpec::new(weir.web())
        },
        stop.clone(),
    ));
    tokio::time::sleep(WARMUP).await;

    let watch = HitWatch::start(Arc::clone(v2));
    let (mut switched, mut switched_wall) = (Instant::now(), SystemTime::now());
    weir.replace_config(&config(BROKEN), || {
        (switched, switched_wall) = (Instant::now(), SystemTime::now());
    })?;
    let aborted = admin
        .wait_rollout("app", ABORT_TIMEOUT, POLL, RolloutView::is_aborted)
        .await;
    let seen = Instant::now();
    tokio::time::sleep(TAIL).await;
    stop.cancel();
    let report = load.await.context("the load task failed")?;
    let hits = watch.finish().await?;
    *broken_idle_since = Some(hits.last.unwrap_or(seen));
    let after = admin.control_metrics().await?;
    let view = match &aborted {
        Some(view) => view.clone(),
        None => admin.rollout("app").await?,
    };

    // Back to the stable image, which clears the abort.
    weir.replace_config(&config(STABLE), || {})?;
    if admin
        .wait_rollout("app", HEALTHY_TIMEOUT, POLL, |v| v.is_healthy_on(STABLE))
        .await
        .is_none()
    {
        bail!(
            "the rollout was not Healthy on {STABLE} within {HEALTHY_TIMEOUT:?} of restoring it: {:?}\nweir's log:\n{}",
            admin.rollout("app").await.ok(),
            weir.log_tail()
        );
    }

    let non_2xx: u64 = report
        .by_status
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let failed = non_2xx + report.errors;
    let since = |t: Instant| {
        hits.first
            .map(|first| t.saturating_duration_since(first).as_secs_f64())
    };
    let failing_s = hits
        .first
        .zip(hits.last)
        .map(|(first, last)| (last - first).as_secs_f64());
    let first_failure_to_abort_event_s = hits.first_wall.and_then(|first| {
        view.event_since("RolloutAborted", epoch_ms(switched_wall) as u64)
            .map(|e| (e.time as f64 - epoch_ms(first)) / 1000.0)
    });
    let decisions = (after.decisions - before.decisions).max(0.0) as u64;
    let decision_mean_ms = (decisions > 0).then(|| {
        (after.decision_seconds_sum - before.decision_seconds_sum) * 1000.0 / decisions as f64
    });
    let seconds = match (failing_s, first_failure_to_abort_event_s) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let passed =
        aborted.is_some() && failed <= GOAL_FAILED && seconds.unwrap_or(0.0) <= GOAL_SECONDS;
    Ok(BlastRun {
        requests: report.requests,
        failed,
        transport_errors: report.errors,
        canary_answers: hits.hits,
        aborted: aborted.is_some(),
        switch_to_first_failure_s: hits.first.map(|f| (f - switched).as_secs_f64()),
        failing_s,
        seconds,
        first_failure_to_abort_event_s,
        first_failure_to_abort_seen_s: aborted.as_ref().and(since(seen)),
        decisions,
        decision_mean_ms,
        decision_max_ms: after.decision_seconds_max * 1000.0,
        message: view.message_or_dash().to_owned(),
        passed,
    })
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

impl fmt::Display for BlastResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "blast radius of a canary answering 100% 500, open-loop load {} req/s, guard: success rate >= {} over {}s every {}s, minRequests {}",
            self.rate,
            self.guard.success_at_least,
            self.guard.window_secs,
            self.guard.interval_secs,
            self.guard.min_requests
        )?;
        writeln!(f, "method: {}", self.method)?;
        writeln!(
            f,
            "run  requests  failed  aborted  switch->1st 500 s  1st->last 500 s  1st 500->abort event s  seconds  decision mean/max ms"
        )?;
        for (i, r) in self.runs.iter().enumerate() {
            writeln!(
                f,
                "{:>3}  {:>8}  {:>6}  {:>7}  {:>17}  {:>15}  {:>22}  {:>7}  {:>7} / {:.3}{}",
                i + 1,
                r.requests,
                r.failed,
                if r.aborted { "yes" } else { "NO" },
                opt(r.switch_to_first_failure_s, 3),
                opt(r.failing_s, 3),
                opt(r.first_failure_to_abort_event_s, 3),
                opt(r.seconds, 3),
                opt(r.decision_mean_ms, 3),
                r.decision_max_ms,
                if r.passed { "" } else { "  MISSED" }
            )?;
        }
        if let Some(r) = self.runs.first() {
            writeln!(f, "abort message (run 1): {}", r.message)?;
        }
        writeln!(
            f,
            "failed requests: {}   (goal <= {GOAL_FAILED})",
            self.failed.show(0)
        )?;
        writeln!(
            f,
            "seconds from the first failure to the abort: {}   (goal <= {GOAL_SECONDS})",
            self.seconds.show(3)
        )?;
        writeln!(
            f,
            "decision latency max ms: {}   (goal < {GOAL_DECISION_MS}: {})",
            self.decision_max_ms.show(3),
            if self.decision_goal_met {
                "met"
            } else {
                "MISSED"
            }
        )?;
        super::write_verdict(
            f,
            self.weir_exit,
            self.passed,
            "PASS: every run aborted within the failed-requests and seconds goals",
            "FAIL: a run missed the failed-requests or seconds goal (or did not abort)",
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[tokio::test]
    async fn both_configs_validate_and_differ_only_in_the_template() {
        let v1 = FakeBackend::start("v1", Behavior::default()).await.unwrap();
        let v2 = FakeBackend::start("v2", Behavior::default()).await.unwrap();
        let stable = config(18080, 18081, STABLE, &Guard::default(), &v1, &v2);
        let broken = config(18080, 18081, BROKEN, &Guard::default(), &v1, &v2);
        for yaml in [&stable, &broken] {
            weir_config::load_str(Path::new("/bench/weir.yaml"), yaml)
                .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        }
        let changed: Vec<(&str, &str)> = stable
            .lines()
            .zip(broken.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert!(changed[0].1.contains("containers"), "{changed:?}");
    }
}
