//! The control loop at scale: N Rollouts (`app-0` .. `app-N-1`, each with its own Service
//! listing one endpoint per image, all on the same two fake backends; steps
//! `setWeight: 10`, then an indefinite pause; no analysis), and no traffic. Measures weir's
//! CPU (utime + stime from `/proc/PID/stat`, as % of one core), RSS and control-loop turns
//! (`weir_control_turns_total`, `weir_control_turn_seconds_sum`) while every Rollout is
//! idle, then starts an update on all N at once (one rewrite of the config), times until
//! every one reports `canaryWeight` 10, and measures the same again while all N sit in
//! their pause.

use std::fmt;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;
use tokio::time::Instant;

use super::canary::{Admin, RolloutView, cpu_seconds, image_service_yaml, rollout_yaml};
use super::{WeirOptions, WeirProcess, proxy_yaml, rss_kb};
use weir_fixtures::{Behavior, FakeBackend};

const STEPS: [&str; 2] = ["{setWeight: 10}", "{pause: {}}"];
const STABLE: &str = "app:v1";
const CANARY: &str = "app:v2";
/// Longest wait for all Rollouts to be Healthy at start, or all at weight 10 after the
/// rewrite.
const ALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the rollout list is polled while waiting (each poll lists all N).
const POLL: Duration = Duration::from_millis(100);
/// Quiet time between the end of polling and a measured phase.
const SETTLE: Duration = Duration::from_secs(1);

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlLoopOptions {
    /// Rollouts in the config.
    pub rollouts: usize,
    /// Length of each measured phase.
    pub seconds: Duration,
    /// The weir to run.
    pub weir: WeirOptions,
}

/// weir over one measured phase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoopPhase {
    /// Wall-clock length.
    pub seconds: f64,
    /// CPU time (user + system, all threads) over the phase, in % of one core.
    pub cpu_percent: f64,
    /// VmRSS at the end of the phase, in kB.
    pub rss_kb: u64,
    /// Control-loop turns in the phase.
    pub turns: u64,
    /// Turns per second.
    pub turns_per_second: f64,
    /// Mean time per turn, in ms (none without turns).
    pub ms_per_turn: Option<f64>,
}

/// What the scenario saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlLoopResult {
    /// Rollouts in the config.
    pub rollouts: usize,
    /// Size of the config file, in bytes.
    pub config_bytes: usize,
    /// From starting weir until the admin API listed every Rollout Healthy.
    pub start_to_all_healthy_s: f64,
    /// Every Rollout idle (Healthy).
    pub idle: LoopPhase,
    /// From just before the rename of the rewritten config until the admin API listed every
    /// Rollout at canaryWeight 10 (polled every 100 ms).
    pub rewrite_to_all_at_weight_s: f64,
    /// Rollouts in phase Paused at the end of the paused phase.
    pub paused_count: usize,
    /// Every Rollout paused at weight 10.
    pub paused: LoopPhase,
    /// weir's exit code after SIGTERM.
    pub weir_exit: Option<i32>,
}

fn config(
    web: u16,
    admin: u16,
    rollouts: usize,
    image: &str,
    v1: &FakeBackend,
    v2: &FakeBackend,
) -> String {
    let mut yaml = proxy_yaml(web, admin, "    - {name: app, rollout: app-0}\n");
    for i in 0..rollouts {
        let name = format!("app-{i}");
        yaml += &image_service_yaml(&name, &[(v1.addr(), STABLE), (v2.addr(), CANARY)]);
        yaml += &rollout_yaml(&name, image, &STEPS, None);
    }
    yaml
}

/// Runs the scenario.
pub async fn run(opts: &ControlLoopOptions) -> Result<ControlLoopResult> {
    if opts.rollouts == 0 {
        bail!("--rollouts must be at least 1");
    }
    if opts.seconds.is_zero() {
        bail!("--seconds must be at least 1");
    }
    let v1 = FakeBackend::start("v1", Behavior::default()).await?;
    let v2 = FakeBackend::start("v2", Behavior::default()).await?;
    let n = opts.rollouts;
    let started = Instant::now();
    let mut config_bytes = 0;
    let weir = WeirProcess::start(&opts.weir, true, |web, admin| {
        let yaml = config(web, admin, n, STABLE, &v1, &v2);
        config_bytes = yaml.len();
        yaml
    })
    .await?;
    let pid = weir.pid();
    let mut admin = Admin::new(weir.admin());

    let outcome: Result<_> = async {
        let all_healthy =
            |list: &[RolloutView]| list.len() == n && list.iter().all(|v| v.is_healthy_on(STABLE));
        wait_all(&mut admin, &weir, "Healthy", all_healthy).await?;
        let start_to_all_healthy_s = started.elapsed().as_secs_f64();
        tokio::time::sleep(SETTLE).await;
        let idle = measure(&mut admin, pid, opts.seconds).await?;

        let yaml = config(weir.web().port(), weir.admin().port(), n, CANARY, &v1, &v2);
        let mut renamed = Instant::now();
        weir.replace_config(&yaml, || renamed = Instant::now())?;
        let all_at_weight = |list: &[RolloutView]| {
            list.len() == n && list.iter().all(|v| (v.canary_weight - 10.0).abs() < 1e-9)
        };
        wait_all(&mut admin, &weir, "at canaryWeight 10", all_at_weight).await?;
        let rewrite_to_all_at_weight_s = renamed.elapsed().as_secs_f64();
        tokio::time::sleep(SETTLE).await;
        let paused = measure(&mut admin, pid, opts.seconds).await?;
        let paused_count = admin
            .rollouts()
            .await?
            .iter()
            .filter(|v| v.phase == "Paused")
            .count();
        Ok((
            start_to_all_healthy_s,
            idle,
            rewrite_to_all_at_weight_s,
            paused,
            paused_count,
        ))
    }
    .await;
    let weir_exit = weir.stop().await?;
    let (start_to_all_healthy_s, idle, rewrite_to_all_at_weight_s, paused, paused_count) = outcome?;
    Ok(ControlLoopResult {
        rollouts: n,
        config_bytes,
        start_to_all_healthy_s,
        idle,
        rewrite_to_all_at_weight_s,
        paused_count,
        paused,
        weir_exit,
    })
}

/// Polls the rollout list until `done` holds for it.
async fn wait_all(
    admin: &mut Admin,
    weir: &WeirProcess,
    what: &str,
    done: impl Fn(&[RolloutView]) -> bool,
) -> Result<()> {
    let give_up = Instant::now() + ALL_TIMEOUT;
    let mut last;
    loop {
        match admin.rollouts().await {
            Ok(list) if done(&list) => return Ok(()),
            Ok(list) => {
                let mut phases = std::collections::BTreeMap::<String, usize>::new();
                for v in &list {
                    *phases
                        .entry(format!("{} at {}%", v.phase, v.canary_weight))
                        .or_default() += 1;
                }
                last = format!("{} rollouts: {phases:?}", list.len());
            }
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() >= give_up {
            bail!(
                "not every rollout was {what} within {ALL_TIMEOUT:?} (last: {last})\nweir's log:\n{}",
                weir.log_tail()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// weir's CPU, RSS and turns over `seconds` (the metrics are read outside the CPU window).
async fn measure(admin: &mut Admin, pid: u32, seconds: Duration) -> Result<LoopPhase> {
    let m0 = admin.control_metrics().await?;
    let (c0, t0) = (cpu_seconds(pid)?, Instant::now());
    tokio::time::sleep(seconds).await;
    let (c1, wall) = (cpu_seconds(pid)?, t0.elapsed().as_secs_f64());
    let rss_kb = rss_kb(pid)?;
    let m1 = admin.control_metrics().await?;
    let turns = (m1.turns - m0.turns).max(0.0);
    Ok(LoopPhase {
        seconds: wall,
        cpu_percent: (c1 - c0) / wall * 100.0,
        rss_kb,
        turns: turns as u64,
        turns_per_second: turns / wall,
        ms_per_turn: (turns > 0.0)
            .then(|| (m1.turn_seconds_sum - m0.turn_seconds_sum) * 1000.0 / turns),
    })
}

impl fmt::Display for LoopPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CPU {:.2}% of a core, RSS {:.1} MB, {} turns ({:.1}/s), {} ms/turn",
            self.cpu_percent,
            self.rss_kb as f64 / 1024.0,
            self.turns,
            self.turns_per_second,
            self.ms_per_turn
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.3}"))
        )
    }
}

impl fmt::Display for ControlLoopResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "control loop with {} rollouts (config {:.0} KB, no traffic); all Healthy {:.2}s after starting weir; CPU = utime+stime from /proc/PID/stat (1 tick = {} ms)",
            self.rollouts,
            self.config_bytes as f64 / 1024.0,
            self.start_to_all_healthy_s,
            1000 / rustix::param::clock_ticks_per_second().max(1)
        )?;
        writeln!(f, "idle   {:.1}s: {}", self.idle.seconds, self.idle)?;
        writeln!(
            f,
            "rewrite -> all {} at canaryWeight 10: {:.3}s (list polled every {} ms)",
            self.rollouts,
            self.rewrite_to_all_at_weight_s,
            POLL.as_millis()
        )?;
        writeln!(
            f,
            "paused {:.1}s: {}  ({} of {} in phase Paused)",
            self.paused.seconds, self.paused, self.paused_count, self.rollouts
        )?;
        let exit = self
            .weir_exit
            .map_or_else(|| "killed by a signal".to_owned(), |c| c.to_string());
        write!(f, "weir exit: {exit}")
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
        for image in [STABLE, CANARY] {
            let yaml = config(18080, 18081, 3, image, &v1, &v2);
            let model = weir_config::load_str(Path::new("/bench/weir.yaml"), &yaml)
                .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
            assert_eq!(model.argo.rollouts.len(), 3);
        }
    }
}
