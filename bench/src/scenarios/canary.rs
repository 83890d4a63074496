//! What the rollout scenarios ([`super::blast`], [`super::false_rollbacks`],
//! [`super::control_loop`]) share: the config documents of a canary Rollout with weir's own
//! analysis, a client for weir's rollouts API and control-loop metrics, the CPU time of a
//! process, a watch on when a fake backend answered, and min/median/max summaries.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::KeepAlive;
use weir_fixtures::FakeBackend;

/// The background analysis the canary scenarios run: one weir-measured `success-rate`
/// metric with no count (so it runs until the update ends) and `failureLimit: 0`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Guard {
    /// Seconds between measurements.
    pub interval_secs: u64,
    /// The lowest canary success rate (0..=1) that passes.
    pub success_at_least: f64,
    /// Seconds of the proxy's measurements each measurement looks back over.
    pub window_secs: u64,
    /// Canary requests in the window below which a measurement waits instead of judging.
    pub min_requests: u64,
}

impl Default for Guard {
    /// 1 s interval, success rate ≥ 0.8 over a 10 s window, at least 10 requests.
    fn default() -> Self {
        Self {
            interval_secs: 1,
            success_at_least: 0.8,
            window_secs: 10,
            min_requests: 10,
        }
    }
}

impl Guard {
    /// The AnalysisTemplate document (with its leading `---`) named `name`.
    pub fn template_yaml(&self, name: &str) -> String {
        format!(
            "---\napiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {{name: {name}}}\nspec:\n  metrics:\n    - name: success-rate\n      interval: {}s\n      successCondition: result[0] >= {}\n      failureLimit: 0\n      provider:\n        weir: {{metric: success-rate, window: {}s, minRequests: {}}}\n",
            self.interval_secs, self.success_at_least, self.window_secs, self.min_requests
        )
    }

    /// The analysis window.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }
}

/// A Service document (with its leading `---`) whose endpoints each run an image:
/// `(address, image)` pairs.
pub fn image_service_yaml(name: &str, endpoints: &[(SocketAddr, &str)]) -> String {
    let mut yaml = format!(
        "---\napiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  endpoints:\n"
    );
    for (address, image) in endpoints {
        yaml += &format!("    - {{address: \"{address}\", image: \"{image}\"}}\n");
    }
    yaml
}

/// A canary Rollout document (with its leading `---`) running `image`, with `steps` (each a
/// YAML flow mapping such as `{setWeight: 5}`) and, when `background` names an
/// AnalysisTemplate, a background analysis from step 0.
/// The whole config of the rollout scenarios: a Proxy routing everything to Rollout
/// `app`, its Service with `endpoints`, the Rollout on `image` with `steps`, and the
/// background analysis `guard`.
pub fn guarded_rollout_config(
    web: u16,
    admin: u16,
    image: &str,
    steps: &[&str],
    guard: &Guard,
    endpoints: &[(SocketAddr, &str)],
) -> String {
    super::proxy_yaml(web, admin, "    - {name: app, rollout: app}\n")
        + &image_service_yaml("app", endpoints)
        + &rollout_yaml("app", image, steps, Some("guard"))
        + &guard.template_yaml("guard")
}

pub fn rollout_yaml(name: &str, image: &str, steps: &[&str], background: Option<&str>) -> String {
    let mut yaml = format!(
        "---\napiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {{name: {name}}}\nspec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: app, image: \"{image}\"}}]}}\n  strategy:\n    canary:\n"
    );
    if let Some(template) = background {
        yaml += &format!("      analysis:\n        templates: [{{templateName: {template}}}]\n");
    }
    yaml += "      steps:\n";
    for step in steps {
        yaml += &format!("        - {step}\n");
    }
    yaml
}

/// One entry of a rollout's timeline, as the admin API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EventView {
    /// Wall-clock milliseconds since the Unix epoch, by weir's clock.
    pub time: u64,
    /// `RolloutUpdated`, `TrafficWeightUpdated`, `RolloutAborted`, ...
    pub reason: String,
    /// What happened.
    pub message: String,
}

/// The fields of `GET /api/v1/rollouts/NAME` the scenarios look at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RolloutView {
    /// The Rollout's name.
    pub name: String,
    /// `Healthy`, `Progressing`, `Paused` or `Degraded`.
    pub phase: String,
    /// Whether the update was aborted.
    pub aborted: bool,
    /// The canary's share of traffic as served, in percent.
    pub canary_weight: f64,
    /// The stable revision's image.
    pub stable_revision: Option<String>,
    /// The canary revision's image, while updating.
    pub canary_revision: Option<String>,
    /// Why the rollout is where it is.
    pub message: Option<String>,
    /// The timeline, oldest first.
    pub events: Vec<EventView>,
}

impl RolloutView {
    /// Done: Healthy, not aborted, with `image` as the stable revision.
    pub fn is_healthy_on(&self, image: &str) -> bool {
        self.phase == "Healthy" && !self.aborted && self.stable_revision.as_deref() == Some(image)
    }

    /// Aborted: Degraded with the aborted flag.
    pub fn is_aborted(&self) -> bool {
        self.phase == "Degraded" && self.aborted
    }

    /// The first event with `reason` at or after `since_ms` (epoch milliseconds).
    pub fn event_since(&self, reason: &str, since_ms: u64) -> Option<&EventView> {
        self.events
            .iter()
            .find(|e| e.reason == reason && e.time >= since_ms)
    }

    /// The message, or `-`.
    pub fn message_or_dash(&self) -> &str {
        self.message
            .as_deref()
            .filter(|m| !m.is_empty())
            .unwrap_or("-")
    }
}

/// The control loop's counters from weir's `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlMetrics {
    /// `weir_control_decisions_total`: traffic changes made right after a measurement result.
    pub decisions: f64,
    /// `weir_control_decision_seconds_sum`.
    pub decision_seconds_sum: f64,
    /// `weir_control_decision_seconds_max`: the longest time from a measurement result to the
    /// data plane serving the traffic it led to, since weir started.
    pub decision_seconds_max: f64,
    /// `weir_control_turns_total`: control-loop turns over every rollout.
    pub turns: f64,
    /// `weir_control_turn_seconds_sum`: time spent in turns.
    pub turn_seconds_sum: f64,
}

impl ControlMetrics {
    /// Reads the five series from Prometheus text; fails naming those missing.
    pub fn parse(text: &str) -> Result<Self> {
        let names = [
            "weir_control_decisions_total",
            "weir_control_decision_seconds_sum",
            "weir_control_decision_seconds_max",
            "weir_control_turns_total",
            "weir_control_turn_seconds_sum",
        ];
        let values: Vec<Option<f64>> = names.iter().map(|n| prometheus_value(text, n)).collect();
        let missing: Vec<&str> = names
            .iter()
            .zip(&values)
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| *n)
            .collect();
        if !missing.is_empty() {
            bail!(
                "weir's /metrics lacks {} (a weir without control-loop metrics?)",
                missing.join(", ")
            );
        }
        let v = |i: usize| values[i].unwrap_or_default();
        Ok(Self {
            decisions: v(0),
            decision_seconds_sum: v(1),
            decision_seconds_max: v(2),
            turns: v(3),
            turn_seconds_sum: v(4),
        })
    }
}

/// The value of the first sample of series `name` (any labels) in Prometheus text format.
pub fn prometheus_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let rest = if let Some(labelled) = rest.strip_prefix('{') {
            labelled.split_once('}')?.1
        } else if rest.starts_with([' ', '\t']) {
            rest
        } else {
            // Another series whose name starts with `name`.
            return None;
        };
        match rest.split_whitespace().next()? {
            "+Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            v => v.parse().ok(),
        }
    })
}

/// A client for weir's admin API.
#[derive(Debug)]
pub struct Admin {
    conn: KeepAlive,
}

impl Admin {
    /// A client for the admin API at `addr` (one keep-alive connection, opened on first use).
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            conn: KeepAlive::new(addr, "127.0.0.1"),
        }
    }

    async fn json<T: DeserializeOwned>(&mut self, path: &str) -> Result<T> {
        let (status, body) = self
            .conn
            .get_body(path)
            .await
            .with_context(|| format!("GET {path} on the admin API"))?;
        if !status.is_success() {
            bail!(
                "GET {path} on the admin API answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        serde_json::from_slice(&body).with_context(|| format!("parsing GET {path}"))
    }

    /// `GET /api/v1/rollouts/NAME`.
    pub async fn rollout(&mut self, name: &str) -> Result<RolloutView> {
        self.json(&format!("/api/v1/rollouts/{name}")).await
    }

    /// `GET /api/v1/rollouts`: every rollout.
    pub async fn rollouts(&mut self) -> Result<Vec<RolloutView>> {
        self.json("/api/v1/rollouts").await
    }

    /// The control loop's counters from `GET /metrics`.
    pub async fn control_metrics(&mut self) -> Result<ControlMetrics> {
        let (status, body) = self
            .conn
            .get_body("/metrics")
            .await
            .context("GET /metrics on the admin API")?;
        if !status.is_success() {
            bail!("GET /metrics on the admin API answered {status}");
        }
        ControlMetrics::parse(&String::from_utf8_lossy(&body))
    }

    /// Polls rollout `name` every `every` until `done` holds, for at most `timeout`. Returns
    /// the view that satisfied `done`, or `None` on timeout (failed polls are retried).
    pub async fn wait_rollout(
        &mut self,
        name: &str,
        timeout: Duration,
        every: Duration,
        done: impl Fn(&RolloutView) -> bool,
    ) -> Option<RolloutView> {
        let give_up = Instant::now() + timeout;
        loop {
            if let Ok(view) = self.rollout(name).await
                && done(&view)
            {
                return Some(view);
            }
            if Instant::now() >= give_up {
                return None;
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// Milliseconds since the Unix epoch (fractional), as weir's event times count them.
pub fn epoch_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// utime + stime in clock ticks from the text of `/proc/PID/stat`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // After the command name in parentheses come fields 3 (state) onwards; utime and stime
    // are fields 14 and 15.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds (user + system, all threads) that process `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_cpu_ticks(&stat).with_context(|| format!("no utime/stime in {path}"))?;
    let per_second = rustix::param::clock_ticks_per_second().max(1);
    Ok(ticks as f64 / per_second as f64)
}

/// The smallest, median and largest of some figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spread {
    /// The smallest.
    pub min: f64,
    /// The median (the mean of the middle two for an even count).
    pub median: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (all 0 when there are none).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut sorted: Vec<f64> = values.into_iter().collect();
        if sorted.is_empty() {
            return Self::default();
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Self {
            min: sorted[0],
            median,
            max: sorted[n - 1],
        }
    }

    /// `min a  median b  max c` with `decimals` decimals.
    pub fn show(&self, decimals: usize) -> String {
        format!(
            "min {:.d$}  median {:.d$}  max {:.d$}",
            self.min,
            self.median,
            self.max,
            d = decimals
        )
    }
}

/// When a backend first and last answered while a [`HitWatch`] ran.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HitTimes {
    /// Answers counted.
    pub hits: u64,
    /// When the answer counter first moved.
    pub first: Option<Instant>,
    /// The wall-clock time of `first`.
    pub first_wall: Option<SystemTime>,
    /// When the answer counter last moved.
    pub last: Option<Instant>,
}

/// Samples a [`FakeBackend`]'s answer counter every millisecond, noting when it first and
/// last moved: when the backend handed out its first and last response, to within the
/// sampling period (a backend counts an answer as it hands it to the connection, which is
/// well under a millisecond before the client reads it through weir).
#[derive(Debug)]
pub struct HitWatch {
    stop: CancellationToken,
    task: JoinHandle<HitTimes>,
}

impl HitWatch {
    /// Starts watching `backend`; answers before this call do not count.
    pub fn start(backend: Arc<FakeBackend>) -> Self {
        let stop = CancellationToken::new();
        let cancelled = stop.clone();
        let task = tokio::spawn(async move {
            let base = backend.hits();
            let mut seen = base;
            let mut times = HitTimes {
                hits: 0,
                first: None,
                first_wall: None,
                last: None,
            };
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
            loop {
                let hits = backend.hits();
                if hits > seen {
                    let now = Instant::now();
                    if times.first.is_none() {
                        times.first = Some(now);
                        times.first_wall = Some(SystemTime::now());
                    }
                    times.last = Some(now);
                    seen = hits;
                }
                if cancelled.is_cancelled() {
                    break;
                }
                tokio::select! {
                    _ = tick.tick() => {}
                    () = cancelled.cancelled() => {}
                }
            }
            times.hits = seen.saturating_sub(base);
            times
        });
        Self { stop, task }
    }

    /// Stops watching and returns what was seen.
    pub async fn finish(self) -> Result<HitTimes> {
        self.stop.cancel();
        self.task.await.context("the backend watch failed")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn prometheus_values_are_found_by_exact_name() {
        let text = "# HELP weir_control_turns_total Turns.\n# TYPE weir_control_turns_total counter\nweir_control_turns_total_extra 9\nweir_control_turns_total 42\nweir_x{a=\"b c\"} 1.5e-3 1700000000\nweir_inf +Inf\n";
        assert_eq!(
            prometheus_value(text, "weir_control_turns_total"),
            Some(42.0)
        );
        assert_eq!(prometheus_value(text, "weir_x"), Some(0.0015));
        assert_eq!(prometheus_value(text, "weir_inf"), Some(f64::INFINITY));
        assert_eq!(prometheus_value(text, "weir_control"), None);
        assert_eq!(prometheus_value(text, "absent"), None);
    }

    #[test]
    fn control_metrics_need_all_five_series() {
        let text = "weir_control_decisions_total 3\nweir_control_decision_seconds_sum 0.003\nweir_control_decision_seconds_max 0.0015\nweir_control_turns_total 100\nweir_control_turn_seconds_sum 0.05\n";
        let m = ControlMetrics::parse(text).unwrap();
        assert_eq!(m.decisions, 3.0);
        assert_eq!(m.decision_seconds_max, 0.0015);
        assert_eq!(m.turns, 100.0);
        let err = ControlMetrics::parse("weir_control_turns_total 1\n").unwrap_err();
        assert!(
            err.to_string().contains("weir_control_decisions_total"),
            "{err}"
        );
    }

    #[test]
    fn cpu_ticks_skip_a_command_name_with_spaces_and_parentheses() {
        let stat =
            "1234 (weir (x) y) S 1 1234 1234 0 -1 4194560 500 0 0 0 17 4 0 0 20 0 3 0 100 1000 200";
        assert_eq!(parse_cpu_ticks(stat), Some(21));
        assert_eq!(parse_cpu_ticks("1 (a) S 1 2"), None);
        assert!(cpu_seconds(std::process::id()).unwrap() >= 0.0);
    }

    #[test]
    fn spreads() {
        let s = Spread::of([3.0, 1.0, 2.0]);
        assert_eq!((s.min, s.median, s.max), (1.0, 2.0, 3.0));
        assert_eq!(Spread::of([4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(Spread::of([]), Spread::default());
        assert_eq!(
            Spread::of([1.0, 2.0]).show(1),
            "min 1.0  median 1.5  max 2.0"
        );
    }

    #[test]
    fn rollout_views_parse_the_admin_json() {
        let json = r#"{"name":"app","phase":"Degraded","aborted":true,"canaryWeight":0.0,
            "stableRevision":"app:v1","canaryRevision":"app:v2","message":null,"steps":["x"],
            "events":[{"time":5,"reason":"RolloutAborted","message":"a"},
                      {"time":9,"reason":"RolloutAborted","message":"b"}]}"#;
        let v: RolloutView = serde_json::from_str(json).unwrap();
        assert!(v.is_aborted());
        assert!(!v.is_healthy_on("app:v1"));
        assert_eq!(v.event_since("RolloutAborted", 6).unwrap().message, "b");
        assert!(v.event_since("RolloutCompleted", 0).is_none());
        assert_eq!(v.message_or_dash(), "-");
        let healthy: RolloutView =
            serde_json::from_str(r#"{"phase":"Healthy","stableRevision":"app:v2"}"#).unwrap();
        assert!(healthy.is_healthy_on("app:v2"));
        assert!(!healthy.is_healthy_on("app:v1"));
    }

    #[test]
    fn documents_make_a_valid_config() {
        let (p1, p2): (SocketAddr, SocketAddr) = (
            "127.0.0.1:9001".parse().unwrap(),
            "127.0.0.1:9002".parse().unwrap(),
        );
        let yaml = super::super::proxy_yaml(18080, 18081, "    - {name: app, rollout: app}\n")
            + &image_service_yaml("app", &[(p1, "app:v1"), (p2, "app:v2")])
            + &rollout_yaml(
                "app",
                "app:v2",
                &["{setWeight: 5}", "{pause: {duration: 10}}", "{pause: {}}"],
                Some("guard"),
            )
            + &Guard::default().template_yaml("guard");
        weir_config::load_str(Path::new("/bench/weir.yaml"), &yaml)
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert!(
            yaml.contains("successCondition: result[0] >= 0.8"),
            "{yaml}"
        );
        assert!(yaml.contains("minRequests: 10}"), "{yaml}");
    }
}
