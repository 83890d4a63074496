//! The canary-vs-stable judge, measured in-process on a simulated data plane.
//!
//! What is real: weir's control loop (`weir_control::Controller`), its analysis runs,
//! the `weir` provider's `canary-vs-stable` metric measured every 100 ms, the judge's
//! statistics, and the Rollout and AnalysisTemplate as YAML through weir's config loader.
//! What is simulated (`weir_control::sim`): the proxy. Requests arrive at a steady rate,
//! are split exactly as weir splits them, fail with the scripted probability and take a
//! lognormal latency (median 20 ms, p99 100 ms); the simulated plane counts them per
//! second as the proxy's stats do and applies the controller's weights at once. Time is
//! tokio's paused clock, so a 10-minute update takes a fraction of a second and 1,000
//! updates fit in minutes on two cores. Real-socket runs of the same Rollout are the
//! e2e tests (`tests/e2e/judge.rs`) and the `blast` scenario's shape.
//!
//! Cases, each at a 5% canary weight:
//! - `broken`: the canary fails every request, the stable none, 200 rps: time from the
//!   canary's first traffic to its weight back at 0, and failed canary requests.
//! - `doubled`: 1% errors on the stable revision, 2% on the canary, 1,000 rps: time to
//!   abort.
//! - `slower`: +50 ms on every canary request (p99 100 → 150 ms), 1,000 rps: time to abort
//!   with the default 5 s latency warm-up, and (`slower-0`) with `latencyWarmup: 0s`.
//! - `healthy`: both at 1% errors, 1,000 rps: false rollbacks, and time to promote.
//! - `incident`: as `healthy`, with both at 20% errors for 10 s from 5 s in: false
//!   rollbacks.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use weir_control::sim::{SimPlane, Steady};
use weir_control::{Controller, ControllerOptions};

/// Runs of each case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgeOptions {
    /// Broken canaries.
    pub broken: usize,
    /// Canaries with doubled errors.
    pub doubled: usize,
    /// Canaries 50 ms slower.
    pub slower: usize,
    /// Healthy canaries.
    pub healthy: usize,
    /// Healthy canaries through an incident on both revisions.
    pub incident: usize,
    /// Threads running simulations side by side.
    pub threads: usize,
}

/// How one simulated update ended.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ended {
    /// Aborted.
    pub aborted: bool,
    /// Neither: the judge gave no verdict within maxWait (the rollout pauses).
    pub inconclusive: bool,
    /// Seconds from the canary's first traffic to the end (weight back to 0, or promoted).
    pub seconds: f64,
    /// Canary requests served.
    pub canary_requests: u64,
    /// Of which failed.
    pub canary_failures: u64,
}

/// One case's results.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Case {
    /// Its name.
    pub name: &'static str,
    /// Requests per second.
    pub rate: f64,
    /// Updates run.
    pub runs: usize,
    /// Of which aborted.
    pub aborted: usize,
    /// Of which promoted.
    pub promoted: usize,
    /// Of which ended without a verdict (paused after maxWait).
    pub inconclusive: usize,
    /// Seconds to the end, aborted runs: p50, p90, max.
    pub abort_seconds: Option<[f64; 3]>,
    /// Seconds to the end, promoted runs: p50, p90, max.
    pub promote_seconds: Option<[f64; 3]>,
    /// Failed canary requests in aborted runs: p50, max.
    pub abort_failures: Option<[u64; 2]>,
}

/// Every case.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JudgeReport {
    /// The cases run.
    pub cases: Vec<Case>,
    /// Whether the goals held: broken within 0.5 s and 5 failures, no false rollbacks.
    pub passed: bool,
}

/// The Rollout and its template: 5%, then the judge (`count: 1`, every 100 ms), then
/// promotion.
fn model(image: &str, knobs: &str) -> Result<Arc<weir_config::Model>> {
    let yaml = format!(
        r#"
apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {{name: app}}
spec:
  endpoints:
    - {{address: "127.0.0.1:9001", image: "app:v1"}}
    - {{address: "127.0.0.1:9002", image: "app:v2"}}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {{name: app}}
spec:
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec: {{containers: [{{name: app, image: "app:{image}"}}]}}
  strategy:
    canary:
      steps: [{{setWeight: 5}}, {{analysis: {{templates: [{{templateName: judge}}]}}}}]
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{name: judge}}
spec:
  metrics:
    - name: canary-vs-stable
      interval: 100ms
      count: 1
      provider:
        weir: {{metric: canary-vs-stable{knobs}}}
"#
    );
    Ok(Arc::new(
        weir_config::load_str(Path::new("/bench/judge.yaml"), &yaml)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    ))
}

/// One update from v1 to v2 over `plane`, in paused time: how it ended.
async fn update(plane: Arc<SimPlane>, knobs: &str) -> Result<Ended> {
    let (tx, rx) = watch::channel(model("v1", knobs)?);
    let (c, handle) = Controller::new(
        rx,
        plane.clone(),
        plane.clone(),
        ControllerOptions {
            state_dir: None,
            proxy_url: None,
            cluster: None,
        },
    )?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(c.run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(1)).await;
    tx.send(model("v2", knobs)?)?;
    let mut waited = Duration::ZERO;
    let (aborted, inconclusive) = loop {
        let v = handle.get("app").await.context("the rollout")?;
        if v.aborted {
            break (true, false);
        }
        if v.stable_revision.as_deref() == Some("app:v2") {
            break (false, false);
        }
        if v.analysis_runs
            .iter()
            .chain(&v.past_analysis_runs)
            .any(|r| r.phase == weir_control::analysis::Phase::Inconclusive)
        {
            break (false, true);
        }
        anyhow::ensure!(
            waited < Duration::from_secs(3600),
            "no verdict in an hour: {}",
            v.message
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    };
    stop.cancel();
    task.await?;
    let w = plane.weights();
    let on = w.iter().find(|(_, p)| *p > 0.0).map_or(0, |(at, _)| *at);
    // Aborted: the weight back to 0. Promoted: the canary's share ends too (it is the
    // stable revision then).
    let off = w
        .iter()
        .find(|(at, p)| *at >= on && *p == 0.0)
        .map_or(on, |(at, _)| *at);
    let (canary_requests, canary_failures) = plane.canary_served();
    Ok(Ended {
        aborted,
        inconclusive,
        seconds: off.saturating_sub(on) as f64 / 1000.0,
        canary_requests,
        canary_failures,
    })
}

/// `runs` updates, each on its own paused runtime, spread over `threads` threads.
fn simulate(
    runs: usize,
    threads: usize,
    rate: f64,
    script: Steady,
    seed: u64,
    knobs: &'static str,
) -> Result<Vec<Ended>> {
    let threads = threads.clamp(1, runs.max(1));
    let chunks: Vec<Vec<usize>> = (0..threads)
        .map(|t| (t..runs).step_by(threads).collect())
        .collect();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let script = script.clone();
            std::thread::spawn(move || -> Result<Vec<Ended>> {
                let mut out = Vec::new();
                for i in chunk {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .start_paused(true)
                        .build()?;
                    let plane = SimPlane::new(rate, script.clone(), seed ^ (i as u64 + 1));
                    out.push(rt.block_on(update(plane, knobs))?);
                }
                Ok(out)
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(
            h.join()
                .map_err(|_| anyhow::anyhow!("a simulation thread panicked"))??,
        );
    }
    Ok(all)
}

fn quantiles(mut v: Vec<f64>) -> Option<[f64; 3]> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some([q(0.5), q(0.9), v[v.len() - 1]])
}

fn case(name: &'static str, rate: f64, ended: &[Ended]) -> Case {
    let aborted: Vec<&Ended> = ended.iter().filter(|e| e.aborted).collect();
    let promoted: Vec<&Ended> = ended
        .iter()
        .filter(|e| !e.aborted && !e.inconclusive)
        .collect();
    let mut failures: Vec<u64> = aborted.iter().map(|e| e.canary_failures).collect();
    failures.sort_unstable();
    Case {
        name,
        rate,
        runs: ended.len(),
        aborted: aborted.len(),
        promoted: promoted.len(),
        inconclusive: ended.iter().filter(|e| e.inconclusive).count(),
        abort_seconds: quantiles(aborted.iter().map(|e| e.seconds).collect()),
        promote_seconds: quantiles(promoted.iter().map(|e| e.seconds).collect()),
        abort_failures: (!failures.is_empty()).then(|| {
            [
                failures[(failures.len() - 1) / 2],
                failures[failures.len() - 1],
            ]
        }),
    }
}

/// Runs every case.
///
/// # Errors
/// When the configuration does not load or a simulation cannot run.
pub fn run(opts: &JudgeOptions) -> Result<JudgeReport> {
    let mut cases = Vec::new();
    let mut passed = true;
    let t = opts.threads;
    if opts.broken > 0 {
        let script = Steady {
            canary_failure: 1.0,
            ..Steady::healthy(0.0)
        };
        let c = case(
            "broken",
            200.0,
            &simulate(opts.broken, t, 200.0, script, 1, "")?,
        );
        passed &= c.aborted == c.runs
            && c.abort_seconds.is_some_and(|s| s[2] <= 0.5)
            && c.abort_failures.is_some_and(|f| f[1] <= 5);
        cases.push(c);
    }
    if opts.doubled > 0 {
        let script = Steady {
            canary_failure: 0.02,
            ..Steady::healthy(0.01)
        };
        cases.push(case(
            "doubled",
            1000.0,
            &simulate(opts.doubled, t, 1000.0, script, 2, "")?,
        ));
    }
    if opts.slower > 0 {
        let script = Steady {
            canary_extra_ms: 50.0,
            ..Steady::healthy(0.01)
        };
        cases.push(case(
            "slower",
            1000.0,
            &simulate(opts.slower, t, 1000.0, script.clone(), 3, "")?,
        ));
        // The same without the default latency warm-up: how fast the test itself is.
        cases.push(case(
            "slower-0",
            1000.0,
            &simulate(opts.slower, t, 1000.0, script, 3, ", latencyWarmup: 0s")?,
        ));
    }
    if opts.healthy > 0 {
        let c = case(
            "healthy",
            1000.0,
            &simulate(opts.healthy, t, 1000.0, Steady::healthy(0.01), 4, "")?,
        );
        passed &= c.aborted == 0;
        cases.push(c);
    }
    if opts.incident > 0 {
        let script = Steady {
            incident: Some((5.0, 15.0, 0.2)),
            ..Steady::healthy(0.01)
        };
        let c = case(
            "incident",
            1000.0,
            &simulate(opts.incident, t, 1000.0, script, 5, "")?,
        );
        passed &= c.aborted == 0;
        cases.push(c);
    }
    Ok(JudgeReport { cases, passed })
}

impl fmt::Display for JudgeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "canary-vs-stable judge, simulated data plane, real control loop, 5% canary, judged every 100 ms"
        )?;
        for c in &self.cases {
            write!(
                f,
                "{:<9} {:>5} rps  runs {:>5}  aborted {:>5}  promoted {:>5}  inconclusive {:>3}",
                c.name, c.rate, c.runs, c.aborted, c.promoted, c.inconclusive
            )?;
            if let Some([p50, p90, max]) = c.abort_seconds {
                write!(f, "  abort s p50/p90/max {p50:.2}/{p90:.2}/{max:.2}")?;
            }
            if let Some([p50, max]) = c.abort_failures {
                write!(f, "  failed canary requests p50/max {p50}/{max}")?;
            }
            if let Some([p50, p90, max]) = c.promote_seconds {
                write!(f, "  promote s p50/p90/max {p50:.1}/{p90:.1}/{max:.1}")?;
            }
            writeln!(f)?;
        }
        write!(f, "goals {}", if self.passed { "met" } else { "MISSED" })
    }
}
