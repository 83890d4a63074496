//! Reload latency: weir watching its config, a route flipped between two backends by
//! replacing the file (write a temporary file, rename it over), the time from the rename to
//! the first response from the new backend, and closed-loop load the whole time, none of
//! which may fail.

use std::fmt;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{KeepAlive, WeirOptions, WeirProcess, proxy_yaml, quantile_sorted, service_yaml};
use weir_fixtures::load::{LoadSpec, Mode};
use weir_fixtures::{Behavior, FakeBackend, X_BACKEND};

/// Longest wait for one reload to take effect.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadOptions {
    /// Config changes to make.
    pub reloads: usize,
    /// Connections of the background load.
    pub connections: usize,
    /// Pause after each reload took effect, before the next.
    pub pause: Duration,
    /// The weir to run.
    pub weir: WeirOptions,
}

/// What the scenario saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadResult {
    /// Config changes made.
    pub reloads: usize,
    /// From just before each rename to the first response from the new backend, in ms, in
    /// the order of the reloads.
    pub latencies_ms: Vec<f64>,
    /// Fastest reload.
    pub min_ms: f64,
    /// Median reload.
    pub median_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest reload.
    pub max_ms: f64,
    /// Background load: responses.
    pub requests: u64,
    /// Background load: transport errors.
    pub errors: u64,
    /// Background load: responses with a status outside 200..=299.
    pub non_2xx: u64,
    /// Background load: responses by backend.
    pub by_backend: std::collections::BTreeMap<String, u64>,
    /// Polling requests sent (on their own connection).
    pub polls: u64,
    /// Polling requests that failed or got a status outside 200..=299.
    pub poll_failures: u64,
    /// weir's exit code after SIGTERM.
    pub weir_exit: Option<i32>,
    /// No transport error, no non-2xx anywhere, weir exited 0.
    pub passed: bool,
}

fn config(web: u16, admin: u16, to: &str, v1: &FakeBackend, v2: &FakeBackend) -> String {
    let routes = format!("    - name: app\n      backends: [{{service: {to}}}]\n");
    proxy_yaml(web, admin, &routes)
        + &service_yaml("v1", v1.addr())
        + &service_yaml("v2", v2.addr())
}

/// Runs the scenario.
pub async fn run(opts: &ReloadOptions) -> Result<ReloadResult> {
    if opts.reloads == 0 {
        bail!("--reloads must be at least 1");
    }
    let v1 = FakeBackend::start("v1", Behavior::default()).await?;
    let v2 = FakeBackend::start("v2", Behavior::default()).await?;
    let weir = WeirProcess::start(&opts.weir, true, |web, admin| {
        config(web, admin, "v1", &v1, &v2)
    })
    .await?;
    let (web, admin) = (weir.web().port(), weir.admin().port());

    let stop = CancellationToken::new();
    let load = tokio::spawn(weir_fixtures::run(
        LoadSpec {
            host: "bench".to_owned(),
            connections: opts.connections.max(1),
            mode: Mode::Closed,
            // Until cancelled.
            duration: Duration::from_secs(24 * 3600),
            ..LoadSpec::new(weir.web())
        },
        stop.clone(),
    ));

    let mut poll = KeepAlive::new(weir.web(), "bench");
    let (mut polls, mut poll_failures) = (0u64, 0u64);
    let mut latencies_ms = Vec::with_capacity(opts.reloads);
    let mut outcome = Ok(());
    for i in 0..opts.reloads {
        let to = if i % 2 == 0 { "v2" } else { "v1" };
        let mut renamed = Instant::now();
        if let Err(e) = weir.replace_config(&config(web, admin, to, &v1, &v2), || {
            renamed = Instant::now();
        }) {
            outcome = Err(e);
            break;
        }
        let give_up = renamed + RELOAD_TIMEOUT;
        let seen = loop {
            polls += 1;
            match poll.get("/").await {
                Ok((status, headers)) => {
                    if !status.is_success() {
                        poll_failures += 1;
                    }
                    if headers.get(X_BACKEND).is_some_and(|b| b == to) {
                        break Some(renamed.elapsed());
                    }
                }
                Err(_) => poll_failures += 1,
            }
            if Instant::now() >= give_up {
                break None;
            }
        };
        match seen {
            Some(took) => latencies_ms.push(took.as_secs_f64() * 1000.0),
            None => {
                outcome = Err(anyhow::anyhow!(
                    "reload {} (to {to}) did not take effect within {RELOAD_TIMEOUT:?}; weir's log:\n{}",
                    i + 1,
                    weir.log_tail()
                ));
                break;
            }
        }
        tokio::time::sleep(opts.pause).await;
    }

    stop.cancel();
    let report = load.await?;
    let weir_exit = weir.stop().await?;
    outcome?;

    let mut sorted = latencies_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let non_2xx = report
        .by_status
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let passed = report.errors == 0 && non_2xx == 0 && poll_failures == 0 && weir_exit == Some(0);
    Ok(ReloadResult {
        reloads: latencies_ms.len(),
        min_ms: sorted.first().copied().unwrap_or(0.0),
        median_ms: quantile_sorted(&sorted, 0.5),
        p90_ms: quantile_sorted(&sorted, 0.9),
        p99_ms: quantile_sorted(&sorted, 0.99),
        max_ms: sorted.last().copied().unwrap_or(0.0),
        latencies_ms,
        requests: report.requests,
        errors: report.errors,
        non_2xx,
        by_backend: report.by_backend,
        polls,
        poll_failures,
        weir_exit,
        passed,
    })
}

impl fmt::Display for ReloadResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} reloads, rename -> first response from the new backend (ms): min {:.1}  median {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
            self.reloads, self.min_ms, self.median_ms, self.p90_ms, self.p99_ms, self.max_ms
        )?;
        writeln!(
            f,
            "background load: {} responses ({}), {} transport errors, {} non-2xx",
            self.requests,
            super::pairs(&self.by_backend),
            self.errors,
            self.non_2xx
        )?;
        writeln!(
            f,
            "polling: {} requests, {} failed or non-2xx",
            self.polls, self.poll_failures
        )?;
        super::write_verdict(
            f,
            self.weir_exit,
            self.passed,
            "PASS: no failed request during the reloads",
            "FAIL",
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
        for to in ["v1", "v2"] {
            let yaml = config(18080, 18081, to, &v1, &v2);
            weir_config::load_str(Path::new("/bench/weir.yaml"), &yaml)
                .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        }
    }
}
