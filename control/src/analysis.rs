//! An analysis run as Argo runs it (argo-reference §3.4–§3.8), as a pure state machine:
//! which metrics are due, what a measurement does to a metric, a metric's phase, the
//! run's phase. The shell takes the measurements; time is always a parameter.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use weir_config::analysis::{MetricSpec, Provider, decode_metric};

pub use crate::eval::Verdict;
use crate::eval::{to_expr, verdict};

#[path = "analysis_phase.rs"]
mod phase;
use phase::metric_phase;

/// Milliseconds since the Unix epoch.
pub type Ms = u64;

/// `start` plus `d`, saturating: a duration too long to add (the configuration may give
/// 18446744073709551 seconds) is the end of time, never a time that wrapped around into
/// the past.
pub fn after(start: Ms, d: std::time::Duration) -> Ms {
    start.saturating_add(Ms::try_from(d.as_millis()).unwrap_or(Ms::MAX))
}

/// After an Error, the next attempt comes this much later, whatever the interval.
pub const ERROR_RETRY_MS: Ms = 10_000;
/// Measurements kept per metric unless measurementRetention says otherwise.
pub const DEFAULT_RETENTION: usize = 10;
/// A measurement that waits for enough data tries again this often at most.
pub const WAIT_RETRY_MS: Ms = 1_000;

/// Phases of metrics, measurements and runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Not started.
    Pending,
    /// Measuring.
    Running,
    /// Passed.
    Successful,
    /// Failed.
    Failed,
    /// Could not be measured.
    Error,
    /// Neither passed nor failed.
    Inconclusive,
}

impl Phase {
    /// Its name, as Argo writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Successful => "Successful",
            Phase::Failed => "Failed",
            Phase::Error => "Error",
            Phase::Inconclusive => "Inconclusive",
        }
    }

    /// Argo's severity order: Successful < Running < Pending < Inconclusive < Error < Failed.
    fn severity(self) -> u8 {
        match self {
            Phase::Successful => 0,
            Phase::Running => 1,
            Phase::Pending => 2,
            Phase::Inconclusive => 3,
            Phase::Error => 4,
            Phase::Failed => 5,
        }
    }

    /// Whether it is final.
    pub fn is_done(self) -> bool {
        matches!(
            self,
            Phase::Successful | Phase::Failed | Phase::Error | Phase::Inconclusive
        )
    }
}

/// One measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    /// Its outcome.
    pub phase: Phase,
    /// The value, as Argo records it (`[0.99]`, `0.99`, `"text"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Why it is an Error, or what the provider said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it started.
    pub started_at: Ms,
    /// When it finished.
    pub finished_at: Ms,
}

/// What a provider gave back.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A value to evaluate the conditions on.
    Value(Value),
    /// A value to evaluate the conditions on, and the text to record for it: the web
    /// provider records what its JSONPath picked as JSON (a string keeps its quotes).
    Shown(Value, String),
    /// A value to evaluate the conditions on, and a message the measurement records
    /// with it (the canary-vs-stable judge's evidence).
    Described(Value, String),
    /// Numbers (Prometheus's), NaN and ±Inf included: conditions get them as numbers,
    /// as Argo's get float64s, so that `isNaN(result[0])` works.
    Numbers(Numbers),
    /// A verdict decided by the provider itself (the job provider's exit code).
    Decided(Verdict, Option<String>),
    /// The provider failed (query error, HTTP error, no data where data was needed).
    Error(String),
    /// Not enough data yet: no verdict, try again later; the message says what it waits for.
    Wait(String),
}

/// The longest value or message a measurement records, in bytes: a provider may give
/// much more (a web body of megabytes), which conditions see whole but the state file
/// and the API do not.
pub const MAX_RECORDED: usize = 4096;

/// `s`, cut to [`MAX_RECORDED`] bytes (at a character boundary) with a marker saying so.
fn bounded(s: String) -> String {
    if s.len() <= MAX_RECORDED {
        return s;
    }
    let mut cut = MAX_RECORDED;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}... [truncated: {} bytes in all]", &s[..cut], s.len())
}

/// A provider's numbers: one (a Prometheus scalar) or a list (a vector, or every
/// sample of a range matrix).
#[derive(Clone, Debug, PartialEq)]
pub enum Numbers {
    /// One number; `result` is that number.
    Scalar(f64),
    /// A list; `result` is the list.
    List(Vec<f64>),
}

impl Numbers {
    /// The value conditions see.
    fn to_expr(&self) -> expr::Value {
        match self {
            Numbers::Scalar(f) => expr::Value::Float(*f),
            Numbers::List(l) => {
                expr::Value::Array(l.iter().map(|f| expr::Value::Float(*f)).collect())
            }
        }
    }

    /// As Argo records it: `0.99`, `NaN`, `+Inf`, `[0.99,-Inf]`.
    pub fn render(&self) -> String {
        fn one(f: f64) -> String {
            if f.is_nan() {
                "NaN".into()
            } else if f.is_infinite() {
                if f > 0.0 { "+Inf" } else { "-Inf" }.into()
            } else {
                serde_json::Number::from_f64(f).map_or_else(|| f.to_string(), |n| n.to_string())
            }
        }
        match self {
            Numbers::Scalar(f) => one(*f),
            Numbers::List(l) => format!(
                "[{}]",
                l.iter().map(|f| one(*f)).collect::<Vec<_>>().join(",")
            ),
        }
    }
}

/// One metric in a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricRun {
    /// Name.
    pub name: String,
    /// The metric as resolved (placeholders replaced).
    pub spec: Value,
    /// Phase.
    pub phase: Phase,
    /// Dry run: never affects the run's phase.
    pub dry_run: bool,
    /// Measurements kept.
    pub retention: usize,
    /// Recent measurements, oldest first.
    pub measurements: VecDeque<Measurement>,
    /// Non-error measurements.
    pub count: u32,
    /// Successful measurements.
    pub successful: u32,
    /// Failed measurements.
    pub failed: u32,
    /// Inconclusive measurements.
    pub inconclusive: u32,
    /// Error measurements.
    pub error: u32,
    /// Errors in a row.
    pub consecutive_error: u32,
    /// Successes in a row.
    pub consecutive_success: u32,
    /// A measurement is being taken.
    pub in_flight: bool,
    /// When the last measurement ended.
    pub last_finished: Option<Ms>,
    /// Whether the last attempt was an Error.
    pub last_was_error: bool,
    /// When the measurement last waited for data, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// Next attempt after a wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Ms>,
    /// Why the metric ended as it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl MetricRun {
    /// The typed metric (the spec was checked when the run was made).
    pub fn metric(&self) -> Option<MetricSpec> {
        decode_metric(&self.spec, false).ok()
    }
}

/// `text` with each of `secrets` masked.
fn mask(secrets: &[String], text: String) -> String {
    let mut text = text;
    for secret in secrets {
        if !secret.is_empty() && text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), MASK);
        }
    }
    text
}

/// A whole run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRun {
    /// Name, e.g. `my-app-5d8f9c-2-3` (rollout, revision hash, revision, step).
    pub name: String,
    /// Phase.
    pub phase: Phase,
    /// Why it ended as it did.
    pub message: String,
    /// Started.
    pub started_at: Ms,
    /// Ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Ms>,
    /// Told to stop: unfinished metrics end Successful.
    pub terminating: bool,
    /// Metrics.
    pub metrics: Vec<MetricRun>,
    /// Values of `secretKeyRef` args: shown as `*****` in every message and value the
    /// run records (the state file keeps them, readable by its owner only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
}

/// What a secret is shown as, as in Argo.
pub const MASK: &str = "*****";

impl AnalysisRun {
    /// A run of `metrics` (resolved JSON and typed form), marking dry-run metrics and
    /// retention limits by the given (unanchored regex) rules.
    pub fn new(
        name: String,
        metrics: Vec<(Value, MetricSpec)>,
        dry_run: &[regex::Regex],
        retention: &[(regex::Regex, u32)],
        now: Ms,
    ) -> AnalysisRun {
        let metrics = metrics
            .into_iter()
            .map(|(spec, m)| {
                let keep = retention
                    .iter()
                    .find(|(re, _)| re.is_match(&m.name))
                    .map(|(_, n)| *n as usize)
                    .filter(|n| *n > 0)
                    .unwrap_or(DEFAULT_RETENTION);
                MetricRun {
                    dry_run: dry_run.iter().any(|re| re.is_match(&m.name)),
                    name: m.name,
                    spec,
                    phase: Phase::Pending,
                    retention: keep,
                    measurements: VecDeque::new(),
                    count: 0,
                    successful: 0,
                    failed: 0,
                    inconclusive: 0,
                    error: 0,
                    consecutive_error: 0,
                    consecutive_success: 0,
                    in_flight: false,
                    last_finished: None,
                    last_was_error: false,
                    waiting: None,
                    retry_at: None,
                    message: None,
                }
            })
            .collect();
        let mut run = AnalysisRun {
            name,
            phase: Phase::Running,
            message: String::new(),
            started_at: now,
            completed_at: None,
            terminating: false,
            metrics,
            secrets: Vec::new(),
        };
        run.update(now);
        run
    }

    /// Whether the run has ended.
    pub fn is_done(&self) -> bool {
        self.phase.is_done()
    }

    /// When metric `i` may next be measured (None: never again).
    fn due_at(&self, i: usize) -> Option<Ms> {
        let m = &self.metrics[i];
        if m.phase.is_done() || m.in_flight || self.terminating || self.is_done() || self.failing()
        {
            return None;
        }
        let spec = m.metric()?;
        if let Some(c) = spec.effective_count()
            && m.count >= c
        {
            return None;
        }
        if let Some(at) = m.retry_at {
            return Some(at);
        }
        match m.last_finished {
            None => Some(after(
                self.started_at,
                spec.initial_delay.unwrap_or_default(),
            )),
            Some(last) => {
                if m.last_was_error {
                    Some(last.saturating_add(ERROR_RETRY_MS))
                } else {
                    spec.interval.map(|d| after(last, d))
                }
            }
        }
    }

    /// Metrics due for a measurement at `now`.
    pub fn due(&self, now: Ms) -> Vec<usize> {
        (0..self.metrics.len())
            .filter(|i| self.due_at(*i).is_some_and(|at| at <= now))
            .collect()
    }

    /// The earliest time something is due.
    pub fn next_wakeup(&self) -> Option<Ms> {
        (0..self.metrics.len()).filter_map(|i| self.due_at(i)).min()
    }

    /// Marks metric `i` as being measured.
    pub fn begin(&mut self, i: usize) {
        if let Some(m) = self.metrics.get_mut(i) {
            m.in_flight = true;
            m.phase = Phase::Running;
        }
        if self.phase == Phase::Pending {
            self.phase = Phase::Running;
        }
    }

    /// Applies a measurement of metric `i` taken from `started` to `now`.
    pub fn record(&mut self, i: usize, outcome: Outcome, started: Ms, now: Ms) {
        let Some(m) = self.metrics.get_mut(i) else {
            return;
        };
        m.in_flight = false;
        if self.terminating && m.phase.is_done() {
            return;
        }
        let Some(spec) = m.metric() else { return };
        let outcome = match outcome {
            Outcome::Wait(why) => Outcome::Wait(mask(&self.secrets, why)),
            Outcome::Error(e) => Outcome::Error(mask(&self.secrets, e)),
            Outcome::Decided(v, msg) => Outcome::Decided(v, msg.map(|m| mask(&self.secrets, m))),
            Outcome::Described(v, msg) => Outcome::Described(v, mask(&self.secrets, msg)),
            value => value,
        };
        let secrets = &self.secrets;
        let judge = |v: expr::Value, shown: String| {
            let shown = mask(secrets, shown);
            match verdict(
                spec.success_condition.as_deref(),
                spec.failure_condition.as_deref(),
                &v,
            ) {
                Ok(verdict) => (verdict_phase(verdict), Some(shown), None),
                Err(e) => (Phase::Error, Some(shown), Some(e)),
            }
        };
        let (phase, value, message) = match outcome {
            Outcome::Wait(why) => {
                m.waiting = Some(bounded(why));
                let retry = spec
                    .interval
                    .map_or(WAIT_RETRY_MS, |d| after(0, d).min(WAIT_RETRY_MS * 5));
                m.retry_at = Some(now.saturating_add(retry));
                self.update(now);
                return;
            }
            Outcome::Error(e) => (Phase::Error, None, Some(e)),
            Outcome::Decided(v, msg) => (verdict_phase(v), None, msg),
            Outcome::Value(v) => {
                let shown = render_value(&v);
                judge(to_expr(&v), shown)
            }
            Outcome::Shown(v, shown) => judge(to_expr(&v), shown),
            Outcome::Described(v, msg) => {
                let (phase, shown, error) = judge(to_expr(&v), render_value(&v));
                (phase, shown, Some(error.unwrap_or(msg)))
            }
            Outcome::Numbers(n) => judge(n.to_expr(), n.render()),
        };
        m.waiting = None;
        m.retry_at = None;
        m.last_finished = Some(now);
        m.last_was_error = phase == Phase::Error;
        match phase {
            Phase::Error => {
                m.error += 1;
                m.consecutive_error += 1;
            }
            p => {
                m.count += 1;
                m.consecutive_error = 0;
                match p {
                    Phase::Successful => {
                        m.successful += 1;
                        m.consecutive_success += 1;
                    }
                    Phase::Failed => {
                        m.failed += 1;
                        m.consecutive_success = 0;
                    }
                    _ => {
                        m.inconclusive += 1;
                        m.consecutive_success = 0;
                    }
                }
            }
        }
        m.measurements.push_back(Measurement {
            phase,
            value: value.map(bounded),
            message: message.map(bounded),
            started_at: started,
            finished_at: now,
        });
        while m.measurements.len() > m.retention {
            m.measurements.pop_front();
        }
        self.update(now);
    }

    /// After a restart: measurements that were in flight when the controller stopped
    /// never come back, so they are taken again (and a run that waited only for them
    /// can end).
    pub fn forget_in_flight(&mut self, now: Ms) {
        if self.metrics.iter().any(|m| m.in_flight) {
            for m in &mut self.metrics {
                m.in_flight = false;
            }
            self.update(now);
        }
    }

    /// Clears what changes with every attempt of a measurement in progress (in flight,
    /// what it waits for, when it tries again), for comparing runs by what lasts.
    pub fn settle_transient(&mut self) {
        for m in &mut self.metrics {
            m.in_flight = false;
            m.waiting = None;
            m.retry_at = None;
        }
    }

    /// Ends the run (`spec.terminate`): unfinished metrics become Successful, so it ends
    /// Successful unless a limit was already broken.
    pub fn terminate(&mut self, now: Ms) {
        if self.is_done() {
            return;
        }
        self.terminating = true;
        self.update(now);
    }

    /// Recomputes every metric's phase and the run's (argo-reference §3.6, §3.7).
    fn update(&mut self, now: Ms) {
        let terminating = self.terminating;
        for m in &mut self.metrics {
            if m.phase.is_done() {
                continue;
            }
            let Some(spec) = m.metric() else {
                m.phase = Phase::Error;
                m.message = Some("the metric could not be decoded".into());
                continue;
            };
            if let Some((phase, msg)) = metric_phase(m, &spec, terminating) {
                m.phase = phase;
                m.message = msg;
            }
        }
        // Short-circuit: a non-dry-run metric that ended badly ends the run, once the
        // measurements taken with it have come back. Argo takes the measurements due in
        // one reconcile together and judges them together, so the worst phase wins
        // whatever order the answers arrive in. A job is not waited for: Argo ends it.
        if self.failing() && !self.terminating && !self.round_in_flight() {
            self.terminating = true;
            for m in &mut self.metrics {
                if !m.phase.is_done() {
                    m.phase = Phase::Successful;
                }
            }
        }
        // The run ends when every metric has, dry-run ones too (they are measured like
        // the others); its phase is the worst of the metrics that are not dry-run.
        let all_done = self.metrics.iter().all(|m| m.phase.is_done());
        if all_done {
            let worst = self
                .metrics
                .iter()
                .filter(|m| !m.dry_run)
                .max_by_key(|m| m.phase.severity())
                .map(|m| (m.phase, m.name.clone(), m.message.clone()));
            let (phase, msg) = match worst {
                None => (Phase::Successful, String::new()),
                Some((p, name, msg)) => (
                    p,
                    if p == Phase::Successful {
                        String::new()
                    } else {
                        format!(
                            "Metric \"{name}\" assessed {p:?}{}",
                            msg.map(|m| format!(" due to {m}")).unwrap_or_default()
                        )
                    },
                ),
            };
            if !self.is_done() {
                self.phase = phase;
                self.message = msg;
                self.completed_at = Some(now);
            }
        } else if !self.is_done() {
            self.phase = Phase::Running;
        }
    }

    /// A metric that is not dry-run ended Failed, Error or Inconclusive: no new
    /// measurement starts, and the run ends once those in flight are back.
    fn failing(&self) -> bool {
        self.metrics.iter().any(|m| {
            !m.dry_run && matches!(m.phase, Phase::Failed | Phase::Error | Phase::Inconclusive)
        })
    }

    /// A measurement other than a job's is being taken.
    fn round_in_flight(&self) -> bool {
        self.metrics.iter().any(|m| {
            m.in_flight
                && !m
                    .metric()
                    .is_some_and(|s| matches!(s.provider, Provider::Job(_)))
        })
    }

    /// Counts of metric phases for `get rollout`: (successful, failed, inconclusive, error)
    /// measurements over all metrics.
    pub fn tally(&self) -> (u32, u32, u32, u32) {
        self.metrics.iter().fold((0, 0, 0, 0), |(s, f, i, e), m| {
            (
                s + m.successful,
                f + m.failed,
                i + m.inconclusive,
                e + m.error,
            )
        })
    }

    /// What the run waits for, if a metric is waiting for data.
    pub fn waiting(&self) -> Option<String> {
        self.metrics
            .iter()
            .find_map(|m| m.waiting.as_ref().map(|w| format!("{}: {w}", m.name)))
    }
}

fn verdict_phase(v: Verdict) -> Phase {
    match v {
        Verdict::Successful => Phase::Successful,
        Verdict::Failed => Phase::Failed,
        Verdict::Inconclusive => Phase::Inconclusive,
    }
}

/// Argo's recorded value: `[0.99,0.97]`, `0.99`, `"NaN"`, `"+Inf"`, text as is.
pub fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(render_value).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
#[path = "analysis_tests.rs"]
mod tests;
