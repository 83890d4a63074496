//! An analysis run as Argo runs it (argo-reference §3.4–§3.8), as a pure state machine:
//! which metrics are due, what a measurement does to a metric, a metric's phase, the
//! run's phase. The shell takes the measurements; time is always a parameter.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use weir_config::analysis::{MetricSpec, decode_metric};

use crate::eval::{Verdict, to_expr, verdict};

/// Milliseconds since the Unix epoch.
pub type Ms = u64;

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
    /// A verdict decided by the provider itself (the job provider's exit code).
    Decided(Verdict, Option<String>),
    /// The provider failed (query error, HTTP error, no data where data was needed).
    Error(String),
    /// Not enough data yet: no verdict, try again later; the message says what it waits for.
    Wait(String),
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
        if m.phase.is_done() || m.in_flight || self.terminating || self.is_done() {
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
            None => Some(self.started_at + spec.initial_delay.map_or(0, |d| d.as_millis() as Ms)),
            Some(last) => {
                if m.last_was_error {
                    Some(last + ERROR_RETRY_MS)
                } else {
                    spec.interval.map(|d| last + d.as_millis() as Ms)
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
            value => value,
        };
        let secrets = &self.secrets;
        let (phase, value, message) = match outcome {
            Outcome::Wait(why) => {
                m.waiting = Some(why);
                let retry = spec.interval.map_or(WAIT_RETRY_MS, |d| {
                    (d.as_millis() as Ms).min(WAIT_RETRY_MS * 5)
                });
                m.retry_at = Some(now + retry);
                self.update(now);
                return;
            }
            Outcome::Error(e) => (Phase::Error, None, Some(e)),
            Outcome::Decided(v, msg) => (verdict_phase(v), None, msg),
            Outcome::Value(v) => {
                let shown = mask(secrets, render_value(&v));
                match verdict(
                    spec.success_condition.as_deref(),
                    spec.failure_condition.as_deref(),
                    &to_expr(&v),
                ) {
                    Ok(verdict) => (verdict_phase(verdict), Some(shown), None),
                    Err(e) => (Phase::Error, Some(shown), Some(e)),
                }
            }
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
            value,
            message,
            started_at: started,
            finished_at: now,
        });
        while m.measurements.len() > m.retention {
            m.measurements.pop_front();
        }
        self.update(now);
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
        // Short-circuit: a non-dry-run metric that ended badly ends the run.
        let bad = self
            .metrics
            .iter()
            .filter(|m| !m.dry_run)
            .any(|m| matches!(m.phase, Phase::Failed | Phase::Error | Phase::Inconclusive));
        if bad && !self.terminating {
            self.terminating = true;
            for m in &mut self.metrics {
                if !m.phase.is_done() {
                    m.phase = Phase::Successful;
                }
            }
        }
        let counted: Vec<&MetricRun> = self.metrics.iter().filter(|m| !m.dry_run).collect();
        let all_done = counted.iter().all(|m| m.phase.is_done());
        if all_done {
            let worst = counted
                .iter()
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

/// Argo's rules, in order (argo-reference §3.6). None: unchanged (still running).
fn metric_phase(
    m: &MetricRun,
    spec: &MetricSpec,
    terminating: bool,
) -> Option<(Phase, Option<String>)> {
    if m.measurements.is_empty() && m.count == 0 && m.error == 0 {
        return Some(if terminating {
            (Phase::Successful, None)
        } else {
            (
                if m.in_flight || m.waiting.is_some() {
                    Phase::Running
                } else {
                    Phase::Pending
                },
                None,
            )
        });
    }
    if m.in_flight {
        return Some((Phase::Running, None));
    }
    // Limit checks; later ones win.
    let mut hit = None;
    if spec.failure_limit >= 0 && i64::from(m.failed) > spec.failure_limit {
        hit = Some((
            Phase::Failed,
            format!(
                "failed ({}) > failureLimit ({})",
                m.failed, spec.failure_limit
            ),
        ));
    }
    if m.inconclusive > spec.inconclusive_limit {
        hit = Some((
            Phase::Inconclusive,
            format!(
                "inconclusive ({}) > inconclusiveLimit ({})",
                m.inconclusive, spec.inconclusive_limit
            ),
        ));
    }
    if m.consecutive_error > spec.consecutive_error_limit {
        hit = Some((
            Phase::Error,
            format!(
                "consecutiveErrors ({}) > consecutiveErrorLimit ({}){}",
                m.consecutive_error,
                spec.consecutive_error_limit,
                m.measurements
                    .back()
                    .and_then(|x| x.message.as_ref())
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
        ));
    }
    if let Some((p, msg)) = hit {
        return Some((p, Some(msg)));
    }
    if spec.consecutive_success_limit > 0 && m.consecutive_success >= spec.consecutive_success_limit
    {
        return Some((Phase::Successful, None));
    }
    if let Some(c) = spec.effective_count()
        && m.count >= c
    {
        let failure_applies = spec.failure_limit >= 0;
        let streak_applies = spec.consecutive_success_limit > 0;
        return Some(match (failure_applies, streak_applies) {
            (true, true) => (
                Phase::Inconclusive,
                Some("count reached without breaking failureLimit or reaching consecutiveSuccessLimit".into()),
            ),
            (false, true) => (
                Phase::Failed,
                Some(format!(
                    "count reached without {} successes in a row",
                    spec.consecutive_success_limit
                )),
            ),
            _ => (Phase::Successful, None),
        });
    }
    Some(if terminating {
        (Phase::Successful, None)
    } else {
        (Phase::Running, None)
    })
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
mod tests {
    use super::*;
    use serde_json::json;

    fn run(metric: Value) -> AnalysisRun {
        let spec = decode_metric(&metric, false).expect("valid metric");
        AnalysisRun::new("r".into(), vec![(metric, spec)], &[], &[], 0)
    }

    fn measure(r: &mut AnalysisRun, at: Ms, v: Value) {
        let due = r.due(at);
        assert_eq!(due, vec![0], "due at {at}");
        r.begin(0);
        r.record(0, Outcome::Value(v), at, at);
    }

    /// §9.1: failureLimit is the number of failures tolerated.
    #[test]
    fn failure_limit_tolerates_that_many() {
        let mut r = run(
            json!({"name": "m", "interval": "1s", "count": 10, "failureLimit": 3,
            "successCondition": "result[0] >= 0.95", "provider": {"weir": {"metric": "success-rate"}}}),
        );
        for k in 0..3 {
            measure(&mut r, k * 1000, json!([0.5]));
            assert_eq!(r.phase, Phase::Running, "failure {} tolerated", k + 1);
        }
        measure(&mut r, 3000, json!([0.5]));
        assert_eq!(r.phase, Phase::Failed, "the 4th failure fails");
        assert!(
            r.message.contains("failed (4) > failureLimit (3)"),
            "{}",
            r.message
        );
    }

    /// §9.2: errors are retried every 10 s, do not use up count, and fail the metric only
    /// after 5 in a row.
    #[test]
    fn errors_are_not_failures() {
        let mut r = run(json!({"name": "m", "interval": "1m", "count": 3,
            "successCondition": "result[0] >= 0.95", "provider": {"weir": {"metric": "success-rate"}}}));
        let mut t = 0;
        for k in 0..4 {
            assert_eq!(r.due(t), vec![0]);
            r.begin(0);
            r.record(0, Outcome::Error("no data".into()), t, t);
            assert_eq!(r.phase, Phase::Running, "error {} tolerated", k + 1);
            assert_eq!(
                r.next_wakeup(),
                Some(t + ERROR_RETRY_MS),
                "retried after 10 s, not the interval"
            );
            t += ERROR_RETRY_MS;
        }
        assert_eq!(r.metrics[0].count, 0, "errors do not count");
        r.begin(0);
        r.record(0, Outcome::Error("no data".into()), t, t);
        assert_eq!(r.phase, Phase::Error, "the 5th error in a row");
    }

    #[test]
    fn successes_reset_the_error_streak_and_count_completes() {
        let mut r = run(json!({"name": "m", "interval": "1s", "count": 3,
            "successCondition": "result[0] >= 0.95", "provider": {"weir": {"metric": "success-rate"}}}));
        measure(&mut r, 0, json!([0.99]));
        r.begin(0);
        r.record(0, Outcome::Error("x".into()), 1000, 1000);
        measure(&mut r, 11_000, json!([0.99]));
        assert_eq!(r.metrics[0].consecutive_error, 0);
        measure(&mut r, 12_000, json!([0.99]));
        assert_eq!(r.phase, Phase::Successful);
        assert!(r.due(100_000).is_empty());
    }

    /// §9.4: no count and no interval is one measurement.
    #[test]
    fn single_measurement() {
        let mut r = run(
            json!({"name": "m", "successCondition": "result[0] < 0.5", "provider": {"weir": {"metric": "latency"}}}),
        );
        measure(&mut r, 0, json!([0.1]));
        assert_eq!(r.phase, Phase::Successful);
    }

    #[test]
    fn initial_delay_and_interval_schedule() {
        let r = run(
            json!({"name": "m", "interval": "30s", "initialDelay": "1m", "count": 2, "provider": {"weir": {"metric": "latency"}}}),
        );
        assert!(r.due(59_999).is_empty());
        assert_eq!(r.due(60_000), vec![0]);
    }

    /// §3.6 step 6: count reached with both failureLimit and consecutiveSuccessLimit in
    /// force is Inconclusive; with only the streak, Failed.
    #[test]
    fn count_reached_with_streak_limits() {
        let mut r = run(
            json!({"name": "m", "interval": "1s", "count": 5, "failureLimit": 2, "consecutiveSuccessLimit": 3,
            "successCondition": "result[0] >= 0.95", "provider": {"weir": {"metric": "success-rate"}}}),
        );
        for (t, v) in [0.99, 0.1, 0.99, 0.1, 0.99].iter().enumerate() {
            measure(&mut r, t as Ms * 1000, json!([v]));
        }
        assert_eq!(r.phase, Phase::Inconclusive);
        let mut r = run(
            json!({"name": "m", "interval": "1s", "count": 2, "failureLimit": -1, "consecutiveSuccessLimit": 2,
            "successCondition": "result[0] >= 0.95", "provider": {"weir": {"metric": "success-rate"}}}),
        );
        measure(&mut r, 0, json!([0.99]));
        measure(&mut r, 1000, json!([0.1]));
        assert_eq!(r.phase, Phase::Failed);
        let mut r = run(
            json!({"name": "m", "interval": "1s", "count": 5, "consecutiveSuccessLimit": 2,
            "successCondition": "result[0] >= 0.95", "provider": {"weir": {"metric": "success-rate"}}}),
        );
        measure(&mut r, 0, json!([0.99]));
        measure(&mut r, 1000, json!([0.99]));
        assert_eq!(r.phase, Phase::Successful, "the streak ends it early");
    }

    /// §3.7: the run waits for every metric, takes the worst phase, short-circuits on a
    /// bad one, and dry-run metrics never count.
    #[test]
    fn run_phase_worst_short_circuit_and_dry_run() {
        let a = json!({"name": "a", "interval": "1s", "count": 3, "successCondition": "result[0] > 0", "provider": {"weir": {"metric": "latency"}}});
        let b = json!({"name": "b", "successCondition": "result[0] > 0", "provider": {"weir": {"metric": "latency"}}});
        let specs = |vals: &[&Value]| {
            vals.iter()
                .map(|v| ((*v).clone(), decode_metric(v, false).unwrap()))
                .collect::<Vec<_>>()
        };
        let mut r = AnalysisRun::new("r".into(), specs(&[&a, &b]), &[], &[], 0);
        assert_eq!(r.due(0), vec![0, 1]);
        r.begin(1);
        r.record(1, Outcome::Value(json!([1])), 0, 0);
        assert_eq!(r.phase, Phase::Running, "a is not done");
        r.begin(0);
        r.record(0, Outcome::Value(json!([0])), 0, 0);
        assert_eq!(r.phase, Phase::Failed, "a failed: the run ends at once");
        assert!(
            r.due(10_000).is_empty(),
            "no measurement after the short-circuit"
        );

        let dry = [regex::Regex::new("^a$").unwrap()];
        let mut r = AnalysisRun::new("r".into(), specs(&[&a, &b]), &dry, &[], 0);
        r.begin(0);
        r.record(0, Outcome::Value(json!([0])), 0, 0);
        assert_eq!(r.metrics[0].phase, Phase::Failed);
        assert_eq!(
            r.phase,
            Phase::Running,
            "a dry-run failure does not end the run"
        );
        r.begin(1);
        r.record(1, Outcome::Value(json!([1])), 0, 0);
        assert_eq!(r.phase, Phase::Successful, "only dry-run metrics failed");
    }

    /// §9.5: terminate ends unbounded and unstarted metrics Successful.
    #[test]
    fn terminate_ends_successful_unless_a_limit_broke() {
        let mut r = run(
            json!({"name": "m", "interval": "1s", "successCondition": "result[0] > 0", "provider": {"weir": {"metric": "latency"}}}),
        );
        measure(&mut r, 0, json!([1]));
        measure(&mut r, 1000, json!([1]));
        assert_eq!(r.phase, Phase::Running, "unbounded");
        r.terminate(2000);
        assert_eq!(r.phase, Phase::Successful);
    }

    #[test]
    fn waiting_for_data_is_not_a_measurement() {
        let mut r = run(
            json!({"name": "m", "interval": "10s", "count": 1, "successCondition": "result[0] > 0.9", "provider": {"weir": {"metric": "success-rate"}}}),
        );
        r.begin(0);
        r.record(0, Outcome::Wait("7 of 20 requests".into()), 0, 0);
        assert_eq!(r.metrics[0].count, 0);
        assert_eq!(r.phase, Phase::Running);
        assert_eq!(r.waiting().as_deref(), Some("m: 7 of 20 requests"));
        assert_eq!(r.due(4_999), Vec::<usize>::new());
        assert_eq!(
            r.due(5_000),
            vec![0],
            "tries again after min(interval, 5 s)"
        );
        r.begin(0);
        r.record(0, Outcome::Value(json!([0.99])), 5000, 5000);
        assert_eq!(r.phase, Phase::Successful);
        assert!(r.waiting().is_none());
    }

    #[test]
    fn retention_keeps_the_newest() {
        let m = json!({"name": "m", "interval": "1s", "count": 5, "provider": {"weir": {"metric": "latency"}}});
        let spec = decode_metric(&m, false).unwrap();
        let keep = [(regex::Regex::new("m").unwrap(), 2)];
        let mut r = AnalysisRun::new("r".into(), vec![(m, spec)], &[], &keep, 0);
        for t in 0..5 {
            measure(&mut r, t * 1000, json!([t]));
        }
        assert_eq!(r.metrics[0].measurements.len(), 2);
        assert_eq!(r.metrics[0].measurements[1].value.as_deref(), Some("[4]"));
    }
}
