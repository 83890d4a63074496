//! False rollbacks: how often weir's own analysis aborts an update whose new version is as
//! healthy as the old one. Both images answer 1% of requests (by default) with 500; the
//! Rollout goes `setWeight: 20`, 2 s pause, `setWeight: 50`, 2 s pause under the same
//! background guard as [`super::blast`] (success rate ≥ 0.8 over 10 s, every second, from
//! 10 canary requests). Each run switches the image to the other one (v1 → v2, v2 → v1, ...)
//! and waits until the update is promoted (Healthy with the new stable revision) or aborted
//! (Degraded): every abort is a false rollback. Open-loop load runs across all runs.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::canary::{Admin, Guard, Spread, guarded_rollout_config};
use super::{WeirOptions, WeirProcess, pairs};
use weir_fixtures::load::{LoadSpec, Mode};
use weir_fixtures::{Behavior, FakeBackend};

/// The Rollout's steps: a run takes about 5 s.
const STEPS: [&str; 4] = [
    "{setWeight: 20}",
    "{pause: {duration: 2}}",
    "{setWeight: 50}",
    "{pause: {duration: 2}}",
];
const IMAGES: [&str; 2] = ["app:v1", "app:v2"];
/// Longest wait for one update to end, either way.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for Healthy (at start and after restoring the stable image).
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);
/// Admin API polling period.
const POLL: Duration = Duration::from_millis(20);
/// Connections of the open-loop load.
const CONNECTIONS: usize = 16;

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct FalseRollbacksOptions {
    /// Updates to make.
    pub runs: usize,
    /// Open-loop load, requests per second.
    pub rate: f64,
    /// Share of requests (0..=1) both images answer with 500.
    pub error_rate: f64,
    /// The analysis guarding the update.
    pub guard: Guard,
    /// The weir to run.
    pub weir: WeirOptions,
}

/// How an update ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Ending {
    /// Healthy with the new image as the stable revision.
    Promoted,
    /// Degraded and aborted: a false rollback.
    RolledBack,
    /// Neither within 60 s.
    TimedOut,
}

/// One update.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FalseRollbackRun {
    /// The stable image before.
    pub from: String,
    /// The image switched to.
    pub to: String,
    /// How it ended.
    pub ending: Ending,
    /// From the config switch to the end.
    pub seconds: f64,
    /// Why, for updates that were not promoted: the rollout's message and the failed
    /// analysis' message.
    pub why: Option<String>,
}

/// What the scenario saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FalseRollbacksResult {
    /// Open-loop load, requests per second.
    pub rate: f64,
    /// Share of requests both images fail.
    pub error_rate: f64,
    /// The background analysis.
    pub guard: Guard,
    /// Every update, in order.
    pub runs: Vec<FalseRollbackRun>,
    /// Updates promoted.
    pub promoted: usize,
    /// Updates aborted.
    pub false_rollbacks: usize,
    /// Updates that neither ended nor were aborted in time.
    pub timed_out: usize,
    /// Seconds from switch to promotion, over the promoted updates.
    pub promote_s: Spread,
    /// Load: responses.
    pub requests: u64,
    /// Load: transport errors.
    pub transport_errors: u64,
    /// Load: responses by status.
    pub by_status: std::collections::BTreeMap<u16, u64>,
    /// Load: responses by backend.
    pub by_backend: std::collections::BTreeMap<String, u64>,
    /// weir's exit code after SIGTERM.
    pub weir_exit: Option<i32>,
    /// No false rollback and no timeout.
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
        &[(v1.addr(), IMAGES[0]), (v2.addr(), IMAGES[1])],
    )
}

/// Runs the scenario.
pub async fn run(opts: &FalseRollbacksOptions) -> Result<FalseRollbacksResult> {
    if opts.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if !(opts.rate.is_finite() && opts.rate > 0.0) {
        bail!("--rate {} must be a positive number", opts.rate);
    }
    if !(0.0..=1.0).contains(&opts.error_rate) {
        bail!("--error-rate {} must be in 0..=1", opts.error_rate);
    }
    let noisy = Behavior {
        error_rate: opts.error_rate,
        ..Behavior::default()
    };
    let v1 = FakeBackend::start("v1", noisy.clone()).await?;
    let v2 = FakeBackend::start("v2", noisy).await?;
    let weir = WeirProcess::start(&opts.weir, true, |web, admin| {
        config(web, admin, IMAGES[0], &opts.guard, &v1, &v2)
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

    let stop = CancellationToken::new();
    let mut load = None;
    let mut runs = Vec::with_capacity(opts.runs);
    let outcome: Result<()> = async {
        let mut stable = IMAGES[0];
        wait_healthy(&mut admin, &weir, stable).await?;
        load = Some(tokio::spawn(weir_fixtures::run(
            LoadSpec {
                host: "app".to_owned(),
                connections: CONNECTIONS,
                mode: Mode::Open { rate: opts.rate },
                // Until cancelled.
                duration: Duration::from_secs(24 * 3600),
                ..LoadSpec::new(weir.web())
            },
            stop.clone(),
        )));
        // Let the stable image gather some measurements first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for _ in 0..opts.runs {
            let from = stable;
            let to = if from == IMAGES[0] {
                IMAGES[1]
            } else {
                IMAGES[0]
            };
            let mut switched = Instant::now();
            let switched_ms = super::canary::epoch_ms(std::time::SystemTime::now()) as u64;
            weir.replace_config(&config(to), || switched = Instant::now())?;
            let ended = admin
                .wait_rollout("app", RUN_TIMEOUT, POLL, |v| {
                    v.is_healthy_on(to) || v.is_aborted()
                })
                .await;
            let seconds = switched.elapsed().as_secs_f64();
            let (ending, why) = match ended {
                Some(v) if v.is_healthy_on(to) => (Ending::Promoted, None),
                ended => {
                    let view = match ended {
                        Some(v) => v,
                        None => admin.rollout("app").await?,
                    };
                    let analysis = view
                        .event_since("AnalysisRunFailed", switched_ms)
                        .map_or("-", |e| e.message.as_str());
                    let why = format!(
                        "phase {}: {}; analysis: {analysis}",
                        view.phase,
                        view.message_or_dash()
                    );
                    let ending = if view.is_aborted() {
                        Ending::RolledBack
                    } else {
                        Ending::TimedOut
                    };
                    (ending, Some(why))
                }
            };
            if ending == Ending::Promoted {
                stable = to;
            } else {
                // Back to the stable image, which clears the abort.
                weir.replace_config(&config(stable), || {})?;
                wait_healthy(&mut admin, &weir, stable).await?;
            }
            runs.push(FalseRollbackRun {
                from: from.to_owned(),
                to: to.to_owned(),
                ending,
                seconds,
                why,
            });
        }
        Ok(())
    }
    .await;
    stop.cancel();
    let report = match load {
        Some(load) => Some(load.await.context("the load task failed")?),
        None => None,
    };
    let weir_exit = weir.stop().await?;
    outcome?;
    let report = report.unwrap_or_default();

    let count = |e: Ending| runs.iter().filter(|r| r.ending == e).count();
    let (promoted, false_rollbacks, timed_out) = (
        count(Ending::Promoted),
        count(Ending::RolledBack),
        count(Ending::TimedOut),
    );
    Ok(FalseRollbacksResult {
        rate: opts.rate,
        error_rate: opts.error_rate,
        guard: opts.guard,
        promote_s: Spread::of(
            runs.iter()
                .filter(|r| r.ending == Ending::Promoted)
                .map(|r| r.seconds),
        ),
        promoted,
        false_rollbacks,
        timed_out,
        runs,
        requests: report.requests,
        transport_errors: report.errors,
        by_status: report.by_status,
        by_backend: report.by_backend,
        weir_exit,
        passed: false_rollbacks == 0 && timed_out == 0,
    })
}

async fn wait_healthy(admin: &mut Admin, weir: &WeirProcess, image: &str) -> Result<()> {
    if admin
        .wait_rollout("app", HEALTHY_TIMEOUT, POLL, |v| v.is_healthy_on(image))
        .await
        .is_none()
    {
        bail!(
            "the rollout was not Healthy on {image} within {HEALTHY_TIMEOUT:?}: {:?}\nweir's log:\n{}",
            admin.rollout("app").await.ok(),
            weir.log_tail()
        );
    }
    Ok(())
}

impl fmt::Display for FalseRollbacksResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "false rollbacks: both images fail {}% of requests, open-loop load {} req/s, steps 20% 2s 50% 2s, guard: success rate >= {} over {}s every {}s, minRequests {}",
            self.error_rate * 100.0,
            self.rate,
            self.guard.success_at_least,
            self.guard.window_secs,
            self.guard.interval_secs,
            self.guard.min_requests
        )?;
        writeln!(
            f,
            "{} updates: {} promoted, {} false rollbacks, {} timed out",
            self.runs.len(),
            self.promoted,
            self.false_rollbacks,
            self.timed_out
        )?;
        writeln!(f, "switch -> promoted s: {}", self.promote_s.show(2))?;
        for (i, r) in self.runs.iter().enumerate() {
            if r.ending != Ending::Promoted {
                writeln!(
                    f,
                    "  run {} ({} -> {}) {:?} after {:.2}s: {}",
                    i + 1,
                    r.from,
                    r.to,
                    r.ending,
                    r.seconds,
                    r.why.as_deref().unwrap_or("-")
                )?;
            }
        }
        writeln!(
            f,
            "load: {} responses ({}), by backend: {}, {} transport errors",
            self.requests,
            pairs(&self.by_status),
            pairs(&self.by_backend),
            self.transport_errors
        )?;
        super::write_verdict(
            f,
            self.weir_exit,
            self.passed,
            "PASS: 0 false rollbacks",
            "FAIL: healthy updates were rolled back (or timed out)",
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[tokio::test]
    async fn both_configs_validate() {
        let v1 = FakeBackend::start("v1", Behavior::default()).await.unwrap();
        let v2 = FakeBackend::start("v2", Behavior::default()).await.unwrap();
        for image in IMAGES {
            let yaml = config(18080, 18081, image, &Guard::default(), &v1, &v2);
            weir_config::load_str(Path::new("/bench/weir.yaml"), &yaml)
                .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        }
    }
}
