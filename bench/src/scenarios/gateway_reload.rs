//! Reloading a big Gateway API config under load: weir serves [`super::gateway::config`]
//! (one Gateway, 10,000 HTTPRoutes over 10,000 hostnames by default) to open-loop load
//! spread over many hostnames and the three rules; the config is rewritten (a temporary file
//! renamed over it) N times, each time changing one route: its `web` rule's weights flipped
//! between its two Services (`--change weight`), or a new HTTPRoute with a new hostname
//! (`--change add`). For each reload: the time from the rename to the first response that
//! only the new config gives (polled on its own connection), and, from weir's log, when the
//! new config had been read and validated (`configuration reloaded`) and when the updater,
//! the new table built, logged the route's change (`route target changed` / `route added`,
//! while it compares the old model with the new, before the new table goes live); and
//! weir's resident memory after each. No request may fail.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::gateway::{RouteSet, Spread, TENANT, TENANT_HEADER, config};
use super::{KeepAlive, WeirOptions, WeirProcess, quantile_sorted};
use weir_fixtures::load::{LoadSpec, Mode, Report};
use weir_fixtures::{Behavior, FakeBackend, X_BACKEND};

/// Longest wait for one reload to take effect.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// What weir logs: the watcher's reloads and the updater's changes, nothing per request.
const LOG_FILTER: &str = "warn,weir_config::watch=info,weir_proxy::updater=info";

/// What each reload changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Change {
    /// Flip one route's `web` rule from 1:0 to 0:1 between its two Services (or back).
    Weight,
    /// Add an HTTPRoute with a new hostname.
    Add,
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayReloadOptions {
    /// HTTPRoutes (and hostnames) at the start.
    pub routes: usize,
    /// Wildcard hostnames among them.
    pub wildcards: usize,
    /// Services (each with an EndpointSlice); even, so that a flip changes the backend.
    pub services: usize,
    /// Config rewrites.
    pub reloads: usize,
    /// What each changes.
    pub change: Change,
    /// Open-loop load, requests per second in total.
    pub rate: f64,
    /// Hostnames the load is spread over (one connection each).
    pub hosts: usize,
    /// Load before the first reload.
    pub warmup: Duration,
    /// Pause after each reload took effect.
    pub pause: Duration,
    /// Between polls for the change.
    pub poll_interval: Duration,
    /// The weir to run.
    pub weir: WeirOptions,
}

/// One reload.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadRow {
    /// The route changed (or added).
    pub route: usize,
    /// Rename -> weir logged `configuration reloaded` (file event, 40 ms debounce, read,
    /// decode, validate), ms; `None` when not found in the log.
    pub loaded_ms: Option<f64>,
    /// Rename -> weir logged the route's change (`route target changed` or `route
    /// added`): the updater logs it while comparing the old model with the new, after the
    /// table build and before the new table goes live, ms.
    pub changed_ms: Option<f64>,
    /// Rename -> the first response from the new config, ms.
    pub seen_ms: f64,
    /// weir's resident memory once the change was seen, MB.
    pub rss_mb: f64,
}

/// What the scenario saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayReloadResult {
    /// HTTPRoutes at the start.
    pub routes: usize,
    /// Wildcard hostnames.
    pub wildcards: usize,
    /// Services.
    pub services: usize,
    /// What each reload changed.
    pub change: Change,
    /// Config size at the start, bytes.
    pub config_bytes: usize,
    /// From starting weir to it answering, ms.
    pub startup_ms: f64,
    /// weir's resident memory once ready, and at the end, MB.
    pub rss_mb: (f64, f64),
    /// One row per reload, in order.
    pub rows: Vec<ReloadRow>,
    /// Rename -> first new response, ms.
    pub seen_ms: Spread,
    /// Rename -> `configuration reloaded`, ms (reloads found in the log).
    pub loaded_ms: Option<Spread>,
    /// `configuration reloaded` -> the route's change logged (the table build and part of
    /// the updater's comparison of the models), ms.
    pub to_changed_ms: Option<Spread>,
    /// The route's change logged -> first new response (the rest of the comparison, the
    /// swap, the poll), ms.
    pub after_changed_ms: Option<Spread>,
    /// Background load: offered rate, req/s.
    pub rate: f64,
    /// Background load: hostnames.
    pub hosts: usize,
    /// Background load: responses.
    pub requests: u64,
    /// Background load: transport errors.
    pub errors: u64,
    /// Background load: responses with a status outside 200..=299.
    pub non_2xx: u64,
    /// Background load: latency p50, p99, p99.9 and max, ms (open loop: from each
    /// request's intended send time).
    pub latency_ms: [f64; 4],
    /// Polls sent, and those that failed (transport error, or a status outside 200..=299
    /// other than the 404 of a route not added yet).
    pub polls: u64,
    /// Failed polls.
    pub poll_failures: u64,
    /// `weir_config_reloads_total` at the end: successes and failures.
    pub reloads_metric: (u64, u64),
    /// weir's exit code after SIGTERM.
    pub weir_exit: Option<i32>,
    /// No failed request, every reload a success, weir exited 0.
    pub passed: bool,
}

/// Runs the scenario.
pub async fn run(opts: &GatewayReloadOptions) -> Result<GatewayReloadResult> {
    if opts.reloads == 0 || opts.routes == 0 || opts.hosts == 0 {
        bail!("--reloads, --routes and --hosts must be at least 1");
    }
    if opts.services < 2 || !opts.services.is_multiple_of(2) {
        bail!("--services must be even (a flip then moves a route to the other backend)");
    }
    if opts.wildcards >= opts.routes {
        bail!("--wildcards must be below --routes");
    }
    if !(opts.rate.is_finite() && opts.rate > 0.0) {
        bail!("--rate must be a positive number");
    }
    let blue = FakeBackend::start("blue", Behavior::default()).await?;
    let green = FakeBackend::start("green", Behavior::default()).await?;
    let mut set = RouteSet {
        routes: opts.routes,
        wildcards: opts.wildcards,
        added: 0,
        services: opts.services,
        backends: vec![blue.addr(), green.addr()],
        web_port: 0,
        admin_port: 0,
    };
    let backend_name = |set: &RouteSet, service: usize| {
        if set.service_backend(service) == blue.addr() {
            "blue"
        } else {
            "green"
        }
    };
    let mut flipped = BTreeSet::new();
    let mut config_bytes = 0;
    let started = Instant::now();
    let weir = WeirProcess::start_logging(&opts.weir, true, LOG_FILTER, |web, admin| {
        let set = RouteSet {
            web_port: web,
            admin_port: admin,
            ..set.clone()
        };
        let yaml = config(&set, &flipped);
        config_bytes = yaml.len();
        yaml
    })
    .await?;
    let startup_ms = started.elapsed().as_secs_f64() * 1000.0;
    let rss_start = super::rss_kb(weir.pid()).unwrap_or(0) as f64 / 1024.0;
    set.web_port = weir.web().port();
    set.admin_port = weir.admin().port();

    // Load: one connection per hostname, spread over the routes, and over the three rules.
    let stop = CancellationToken::new();
    let mut loads = Vec::new();
    for k in 0..opts.hosts {
        let route = k * opts.routes / opts.hosts;
        let (path, headers) = match k % 3 {
            0 => ("/", Vec::new()),
            1 => ("/status", Vec::new()),
            _ => (
                "/api/v1/orders",
                vec![(TENANT_HEADER.to_owned(), TENANT.to_owned())],
            ),
        };
        loads.push(tokio::spawn(weir_fixtures::run(
            LoadSpec {
                host: set.request_host(route),
                path: path.to_owned(),
                headers,
                connections: 1,
                mode: Mode::Open {
                    rate: opts.rate / opts.hosts as f64,
                },
                duration: Duration::from_secs(24 * 3600),
                ..LoadSpec::new(weir.web())
            },
            stop.clone(),
        )));
    }
    tokio::time::sleep(opts.warmup).await;

    let (mut polls, mut poll_failures) = (0u64, 0u64);
    let mut renames: Vec<(usize, SystemTime, f64, f64)> = Vec::new();
    let mut outcome = Ok(());
    for i in 0..opts.reloads {
        let (route, want) = match opts.change {
            Change::Weight => {
                // Spread over the exact-host routes.
                let mut r = (i * 7919 + 1) % opts.routes;
                while set.is_wildcard(r) {
                    r = (r + 1) % opts.routes;
                }
                let leg = if flipped.insert(r) {
                    1
                } else {
                    flipped.remove(&r);
                    0
                };
                (r, backend_name(&set, set.web_service(r, leg)))
            }
            Change::Add => {
                set.added += 1;
                let r = set.routes + set.added - 1;
                (r, backend_name(&set, set.web_service(r, 0)))
            }
        };
        let yaml = config(&set, &flipped);
        let mut poll = KeepAlive::new(weir.web(), &set.request_host(route));
        let mut renamed = (Instant::now(), SystemTime::now());
        if let Err(e) = weir.replace_config(&yaml, || {
            renamed = (Instant::now(), SystemTime::now());
        }) {
            outcome = Err(e);
            break;
        }
        let give_up = renamed.0 + RELOAD_TIMEOUT;
        let seen = loop {
            polls += 1;
            match poll.get("/").await {
                Ok((status, headers)) => {
                    let not_yet_added =
                        opts.change == Change::Add && status == http::StatusCode::NOT_FOUND;
                    if !status.is_success() && !not_yet_added {
                        poll_failures += 1;
                    }
                    if status.is_success() && headers.get(X_BACKEND).is_some_and(|b| b == want) {
                        break Some(renamed.0.elapsed());
                    }
                }
                Err(_) => poll_failures += 1,
            }
            if Instant::now() >= give_up {
                break None;
            }
            tokio::time::sleep(opts.poll_interval).await;
        };
        match seen {
            Some(took) => {
                let rss = super::rss_kb(weir.pid()).unwrap_or(0) as f64 / 1024.0;
                renames.push((route, renamed.1, took.as_secs_f64() * 1000.0, rss));
            }
            None => {
                outcome = Err(anyhow::anyhow!(
                    "reload {} (route {route} to {want}) did not take effect within {RELOAD_TIMEOUT:?}; weir's log:\n{}",
                    i + 1,
                    weir.log_tail()
                ));
                break;
            }
        }
        tokio::time::sleep(opts.pause).await;
    }

    stop.cancel();
    let mut report = Report::default();
    for l in loads {
        let r = l.await?;
        report.requests += r.requests;
        report.errors += r.errors;
        for (s, n) in r.by_status {
            *report.by_status.entry(s).or_default() += n;
        }
        report
            .latency
            .add(&r.latency)
            .context("merging latency histograms")?;
    }
    let reloads_metric = reloads_metric(&weir).await.unwrap_or((0, 0));
    let rss_end = super::rss_kb(weir.pid()).unwrap_or(0) as f64 / 1024.0;
    let log = weir.log();
    let weir_exit = weir.stop().await?;
    outcome?;

    let rows: Vec<ReloadRow> = renames
        .iter()
        .map(|(route, at, seen_ms, rss_mb)| {
            let since = |line: &str| {
                log_time(line)
                    .and_then(|t| t.duration_since(*at).ok())
                    .map(|d| d.as_secs_f64() * 1000.0)
            };
            // The first of each line logged after this rename.
            let loaded_ms = log
                .lines()
                .filter(|l| l.contains("configuration reloaded"))
                .find_map(since);
            let name = format!("default/route-{route}/web");
            let changed_ms = log
                .lines()
                .filter(|l| {
                    (l.contains("route target changed") || l.contains("route added"))
                        && l.contains(&name)
                })
                .find_map(since);
            ReloadRow {
                route: *route,
                loaded_ms,
                changed_ms,
                seen_ms: *seen_ms,
                rss_mb: *rss_mb,
            }
        })
        .collect();
    let spread = |v: Vec<f64>| (!v.is_empty()).then(|| Spread::of(v));
    let loaded_ms = spread(rows.iter().filter_map(|r| r.loaded_ms).collect());
    let to_changed_ms = spread(
        rows.iter()
            .filter_map(|r| Some(r.changed_ms? - r.loaded_ms?))
            .collect(),
    );
    let after_changed_ms = spread(
        rows.iter()
            .filter_map(|r| Some(r.seen_ms - r.changed_ms?))
            .collect(),
    );
    let non_2xx = report
        .by_status
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let passed = report.errors == 0
        && non_2xx == 0
        && poll_failures == 0
        && reloads_metric == (rows.len() as u64, 0)
        && weir_exit == Some(0);
    let mut seen: Vec<f64> = rows.iter().map(|r| r.seen_ms).collect();
    seen.sort_by(f64::total_cmp);
    Ok(GatewayReloadResult {
        routes: opts.routes,
        wildcards: opts.wildcards,
        services: opts.services,
        change: opts.change,
        config_bytes,
        startup_ms,
        rss_mb: (rss_start, rss_end),
        seen_ms: Spread::of(rows.iter().map(|r| r.seen_ms).collect()),
        rows,
        loaded_ms,
        to_changed_ms,
        after_changed_ms,
        rate: opts.rate,
        hosts: opts.hosts,
        requests: report.requests,
        errors: report.errors,
        non_2xx,
        latency_ms: [
            report.quantile_ms(0.5),
            report.quantile_ms(0.99),
            report.quantile_ms(0.999),
            report.latency.max() as f64 / 1000.0,
        ],
        polls,
        poll_failures,
        reloads_metric,
        weir_exit,
        passed,
    })
}

/// `weir_config_reloads_total` by result: (success, failure).
async fn reloads_metric(weir: &WeirProcess) -> Result<(u64, u64)> {
    let mut admin = KeepAlive::new(weir.admin(), "127.0.0.1");
    let (status, body) = admin.get_body("/metrics").await?;
    if !status.is_success() {
        bail!("/metrics answered {status}");
    }
    let text = String::from_utf8_lossy(&body);
    let value = |result: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("weir_config_reloads_total")
                    && l.contains(&format!("result=\"{result}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    Ok((value("success"), value("failure")))
}

/// The time at the start of one of weir's text log lines (`2026-12-02T10:11:12.123456Z`).
fn log_time(line: &str) -> Option<SystemTime> {
    let ts = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min, sec) = (
        t.next()?.parse::<u64>().ok()?,
        t.next()?.parse::<u64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    let secs = days * 86_400 + h * 3600 + min * 60;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_secs_f64(sec))
}

fn opt(s: &Option<Spread>) -> String {
    s.as_ref()
        .map_or_else(|| "not in the log".to_owned(), ToString::to_string)
}

impl fmt::Display for GatewayReloadResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} HTTPRoutes ({} wildcard hostnames), {} Services + EndpointSlices, {:.1} MB of YAML; weir ready {:.0} ms after start; RSS {:.1} MB, {:.1} MB at the end",
            self.routes,
            self.wildcards,
            self.services,
            self.config_bytes as f64 / 1e6,
            self.startup_ms,
            self.rss_mb.0,
            self.rss_mb.1
        )?;
        writeln!(
            f,
            "{} reloads ({}), ms from the rename:",
            self.rows.len(),
            match self.change {
                Change::Weight => "one route's weights flipped each",
                Change::Add => "one HTTPRoute added each",
            }
        )?;
        writeln!(f, "  reload  route   loaded  changed     seen   RSS MB")?;
        let ms = |v: Option<f64>| v.map_or_else(|| "       -".to_owned(), |v| format!("{v:8.1}"));
        for (i, r) in self.rows.iter().enumerate() {
            writeln!(
                f,
                "  {:6} {:6} {} {} {:8.1} {:8.1}",
                i + 1,
                r.route,
                ms(r.loaded_ms),
                ms(r.changed_ms),
                r.seen_ms,
                r.rss_mb
            )?;
        }
        let mut sorted = self.seen_ms.all.clone();
        sorted.sort_by(f64::total_cmp);
        writeln!(
            f,
            "rename -> first new response:            {}  p90 {:.1}",
            self.seen_ms,
            quantile_sorted(&sorted, 0.9)
        )?;
        writeln!(
            f,
            "  rename -> read + validated (log):       {}",
            opt(&self.loaded_ms)
        )?;
        writeln!(
            f,
            "  validated -> change logged (log):       {}",
            opt(&self.to_changed_ms)
        )?;
        writeln!(
            f,
            "  change logged -> first new response:    {}",
            opt(&self.after_changed_ms)
        )?;
        writeln!(
            f,
            "background load: {:.0} req/s over {} hostnames: {} responses, {} transport errors, {} non-2xx; latency ms p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
            self.rate,
            self.hosts,
            self.requests,
            self.errors,
            self.non_2xx,
            self.latency_ms[0],
            self.latency_ms[1],
            self.latency_ms[2],
            self.latency_ms[3]
        )?;
        writeln!(
            f,
            "polling: {} requests, {} failed; weir_config_reloads_total: {} success, {} failure",
            self.polls, self.poll_failures, self.reloads_metric.0, self.reloads_metric.1
        )?;
        super::write_verdict(
            f,
            self.weir_exit,
            self.passed,
            "PASS: no failed request during the reloads, every reload applied",
            "FAIL",
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn log_times_parse() {
        let t = log_time("2026-12-02T10:11:12.500000Z  INFO configuration reloaded").unwrap();
        let secs = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // date -u -d 2026-12-02T10:11:12Z +%s
        assert_eq!(secs, 1_796_206_272.5);
        assert!(log_time("no time here").is_none());
    }

    #[test]
    fn flipped_and_added_configs_validate() {
        let mut set = RouteSet {
            routes: 10,
            wildcards: 2,
            added: 0,
            services: 4,
            backends: vec![
                "127.0.0.1:9001".parse().unwrap(),
                "127.0.0.1:9002".parse().unwrap(),
            ],
            web_port: 18080,
            admin_port: 18081,
        };
        let flipped = BTreeSet::from([3]);
        let m = weir_config::load_str(Path::new("/bench/weir.yaml"), &config(&set, &flipped))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.proxy.routes.len(), 30);
        set.added = 2;
        let m = weir_config::load_str(Path::new("/bench/weir.yaml"), &config(&set, &flipped))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.proxy.routes.len(), 36);
        assert_eq!(set.request_host(11), "app-11.bench.example");
    }
}
