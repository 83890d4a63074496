//! The `weir` provider's `canary-vs-stable` metric: reads the canary's and the stable
//! revision's requests since the last measurement from the data plane, feeds them to the
//! run's [`Judge`] (the statistics, in `crate::judge`) and says what it concludes.
//!
//! State: one [`JudgeRun`] per (rollout, analysis run, metric), kept by [`Judges`] from
//! the run's first measurement until the run ends, so that a measurement every 100 ms
//! adds the requests of those 100 ms to evidence carried since the run began. A new
//! AnalysisRun starts afresh.
//!
//! What is counted. The judge's guarantee assumes that, within a tick, the canary's
//! requests are like the stable's, which the weighted split alone gives. So the canary's
//! requests are read as [`Served::AsCanaryBySplit`]: those the split (or a user's sticky
//! bucket) sent, not those a `setHeaderRoute` match, an ingress canary rule, the canary
//! host or a `setMirrorRoute` copy sent, which the data plane counts apart. The stable
//! revision's are all it served as stable.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::json;
use weir_config::analysis::{JudgeSpec, WeirProvider};

use crate::analysis::{Ms, Outcome};
use crate::judge::{Arm, Decision, Judge, Params, Tick, Which};
use crate::ports::{MetricsSource, Served, Tally};

use super::Subject;

/// Seconds of stable requests the slow threshold is taken from.
pub const THRESHOLD_WINDOW_SECONDS: u64 = 60;
/// Stable requests needed in that window before latency is judged.
pub const THRESHOLD_MIN_SAMPLES: u64 = 1000;
/// How often the threshold is taken again, in milliseconds.
pub const THRESHOLD_REFRESH_MS: Ms = 10_000;
/// How often it is tried while there is none yet (too few stable requests), in ms.
pub const THRESHOLD_RETRY_MS: Ms = 1_000;
/// Seconds behind the current one whose counts are kept to tell what is new: the data
/// plane closes a second within a moment of its end, so older seconds no longer change.
const OPEN_SECONDS: u64 = 2;

/// Which run a measurement belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunRef {
    /// The Rollout.
    pub rollout: String,
    /// The AnalysisRun's name.
    pub run: String,
    /// The metric's index in the run.
    pub metric: usize,
    /// When the run began (ms): the judge's evidence starts with that second.
    pub started_at: Ms,
}

/// A judge's key: (rollout, run, metric index).
type JudgeKey = (String, String, usize);

/// The judges of the runs in progress.
#[derive(Clone, Debug, Default)]
pub struct Judges(Arc<Mutex<HashMap<JudgeKey, JudgeRun>>>);

impl Judges {
    /// Keeps the judges of the runs `live(rollout, run)` says are in progress.
    pub fn retain(&self, live: impl Fn(&str, &str) -> bool) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|(r, n, _), _| live(r, n));
    }

    /// How many runs' judges are kept (for tests).
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What one arm's reads have consumed: per open second, the counts already taken.
#[derive(Clone, Debug, Default)]
struct Consumed(BTreeMap<u64, Tally>);

/// One run's judge and what it has read.
#[derive(Debug)]
pub struct JudgeRun {
    judge: Judge,
    started_at: Ms,
    /// The first second still read.
    from: u64,
    canary: Consumed,
    stable: Consumed,
    /// The slow threshold in µs, and when it was taken.
    threshold: Option<u64>,
    threshold_at: Option<Ms>,
    /// A verdict once reached: a failure stays a failure.
    failed: Option<Which>,
    passed_at: Option<Ms>,
}

/// The judge's knobs from the metric's fields.
pub fn params(j: &JudgeSpec) -> Params {
    Params {
        alpha_fail: j.alpha_fail,
        alpha_pass: j.alpha_pass,
        fail_tolerance: j.fail_tolerance,
        error_margin: j.error_margin,
        error_budget: j.error_budget,
        latency_margin: j.latency_margin,
        latency: j.latency,
        min_canary_requests: j.min_canary_requests,
        min_duration_ms: j.min_duration.as_millis() as u64,
        max_wait_ms: j.max_wait.as_millis() as u64,
    }
}

/// Takes one measurement of `run`'s judge.
pub fn measure(
    metrics: &dyn MetricsSource,
    judges: &Judges,
    w: &WeirProvider,
    s: &Subject,
    run: &RunRef,
) -> Outcome {
    if s.blue_green {
        return Outcome::Error(
            "canary-vs-stable compares a canary with the stable revision serving beside it: it needs the canary strategy, not blue-green".into(),
        );
    }
    if s.canary.is_empty() || s.stable.is_empty() {
        return Outcome::Error(
            "canary-vs-stable needs a canary and a stable revision: this rollout has no update in progress".into(),
        );
    }
    let mut map = judges.0.lock().unwrap_or_else(|e| e.into_inner());
    let jr = map
        .entry((run.rollout.clone(), run.run.clone(), run.metric))
        .or_insert_with(|| JudgeRun {
            judge: Judge::new(params(&w.judge)),
            started_at: run.started_at,
            from: run.started_at / 1000,
            canary: Consumed::default(),
            stable: Consumed::default(),
            threshold: None,
            threshold_at: None,
            failed: None,
            passed_at: None,
        });
    match jr.step(metrics, w, s) {
        Ok(()) => jr.outcome(s.now),
        Err(e) => Outcome::Error(e),
    }
}

impl JudgeRun {
    /// Reads what both arms served since the last read and feeds it to the judge.
    fn step(
        &mut self,
        metrics: &dyn MetricsSource,
        w: &WeirProvider,
        s: &Subject,
    ) -> Result<(), String> {
        let read = |threshold: Option<u64>, from: u64| {
            let canary = metrics.tallies(
                &s.service,
                &s.canary,
                Served::AsCanaryBySplit,
                s.canary_since,
                from,
                threshold,
            );
            let stable = metrics.tallies(
                &s.service,
                &s.stable,
                Served::AsStable,
                None,
                from,
                threshold,
            );
            match (canary, stable) {
                (Some(c), Some(st)) => Ok((c, st)),
                _ => Err("the metrics source does not count second by second: canary-vs-stable cannot run on it".to_owned()),
            }
        };
        let (canary, stable) = read(self.threshold, self.from)?;
        let latency =
            self.threshold.is_some() && s.now >= self.started_at.saturating_add(warmup_ms(w));
        let cticks = self.canary.take(&canary);
        let sticks = self.stable.take(&stable);
        for (c, st) in pair(cticks, sticks) {
            self.judge.observe(&Tick {
                canary: c,
                stable: st,
                latency,
            });
        }
        let last = canary
            .last()
            .map_or(self.from, |(sec, _)| *sec)
            .max(stable.last().map_or(self.from, |(sec, _)| *sec));
        self.from = self.from.max(last.saturating_sub(OPEN_SECONDS));
        self.canary.forget_before(self.from);
        self.stable.forget_before(self.from);
        // The slow threshold: the stable revision's quantile over the last minute, taken
        // now and used only for requests from now on.
        let every = if self.threshold.is_some() {
            THRESHOLD_REFRESH_MS
        } else {
            THRESHOLD_RETRY_MS
        };
        if w.judge.latency
            && self
                .threshold_at
                .is_none_or(|at| s.now >= at.saturating_add(every))
        {
            let sample = metrics.sample(
                &s.service,
                &s.stable,
                Served::AsStable,
                std::time::Duration::from_secs(THRESHOLD_WINDOW_SECONDS),
                None,
                w.quantile,
            );
            let new = match sample.latency {
                Some(l) if sample.requests >= THRESHOLD_MIN_SAMPLES => {
                    Some((l * 1e6).round() as u64)
                }
                _ => None,
            };
            // Taken again in 10 s; tried again in 1 s while there are too few samples.
            self.threshold_at = Some(s.now);
            if new.is_some() && new != self.threshold {
                self.threshold = new;
                // What has been read counts again under the new threshold: read it
                // afresh, without feeding the judge.
                let (c, st) = read(self.threshold, self.from)?;
                self.canary = Consumed(c.into_iter().collect());
                self.stable = Consumed(st.into_iter().collect());
            }
        }
        Ok(())
    }

    /// What the judge concludes now, as a measurement.
    fn outcome(&mut self, now: Ms) -> Outcome {
        let elapsed = now.saturating_sub(self.started_at);
        let decision = match self.judge.decide(elapsed) {
            Decision::Fail(w) => {
                self.failed.get_or_insert(w);
                Decision::Fail(w)
            }
            _ if self.failed.is_some() => Decision::Fail(self.failed.unwrap_or(Which::Failures)),
            Decision::Pass => {
                self.passed_at.get_or_insert(now);
                Decision::Pass
            }
            // Once passed, a pass stands unless the canary is later shown worse.
            _ if self.passed_at.is_some() => Decision::Pass,
            d => d,
        };
        let summary = self.summary(elapsed);
        match decision {
            Decision::Wait => Outcome::Wait(format!("no verdict yet: {summary}")),
            Decision::Fail(w) => Outcome::Described(
                json!("fail"),
                format!("the canary is worse ({}): {summary}", w.as_str()),
            ),
            Decision::Pass => {
                Outcome::Described(json!("pass"), format!("the canary is no worse: {summary}"))
            }
            Decision::Inconclusive => Outcome::Described(
                json!("inconclusive"),
                format!("no verdict within maxWait: {summary}"),
            ),
        }
    }

    /// The evidence in a line.
    fn summary(&self, elapsed: Ms) -> String {
        let j = &self.judge;
        let p = j.params();
        let f = &j.failures;
        let (fail, _) = j.fail_evidence();
        let mut s = format!(
            "after {:.1}s, canary {} requests, {} failed; stable {} requests, {} failed; fail evidence {} of {}, pass evidence {} of {}",
            elapsed as f64 / 1000.0,
            j.canary_requests,
            f.canary_events,
            f.stable_requests,
            f.stable_events,
            shown(fail),
            shown(1.0 / p.alpha_fail),
            shown(j.failures_pass_evidence()),
            shown(2.0 / p.alpha_pass),
        );
        if let Some(slow) = &j.slow {
            match self.threshold {
                Some(t) => s.push_str(&format!(
                    "; slow (over {:.1} ms): canary {}, stable {}, pass evidence {} of {}",
                    t as f64 / 1000.0,
                    slow.canary_events,
                    slow.stable_events,
                    shown(slow.pass.e()),
                    shown(1.0 / p.alpha_pass),
                )),
                None => s.push_str(&format!(
                    "; latency waits for {THRESHOLD_MIN_SAMPLES} stable requests in {THRESHOLD_WINDOW_SECONDS}s"
                )),
            }
        }
        s
    }
}

/// An e-value as shown: three significant digits, "1e+12" style when huge.
fn shown(e: f64) -> String {
    if !e.is_finite() || e >= 1e6 {
        format!("{e:.1e}")
    } else if e >= 100.0 {
        format!("{e:.0}")
    } else {
        format!("{e:.2}")
    }
}

fn warmup_ms(w: &WeirProvider) -> Ms {
    w.judge.latency_warmup.as_millis() as Ms
}

/// What is new in one arm's read.
struct Taken {
    /// Per second, what each second gained.
    per_second: Vec<(u64, Tally)>,
    /// All of it together.
    lump: Tally,
    /// Whether counts moved between seconds (the data plane closed a second late, or a
    /// second read before is no longer in the read): then only the lump is right.
    moved: bool,
}

impl Consumed {
    /// What is new in `read` since the last take; remembers `read`.
    fn take(&mut self, read: &[(u64, Tally)]) -> Taken {
        let mut per_second = Vec::new();
        let mut moved = false;
        for (sec, t) in read {
            let old = self.0.get(sec).copied().unwrap_or_default();
            if t.requests < old.requests || t.failures < old.failures || t.slow < old.slow {
                moved = true;
            }
            per_second.push((*sec, sub(*t, old)));
        }
        let first = read.first().map_or(u64::MAX, |(s, _)| *s);
        if self.0.range(..first).any(|(_, t)| t.requests > 0) {
            moved = true;
        }
        let now = read.iter().fold(Tally::default(), |a, (_, t)| add(a, *t));
        let before = self.0.values().fold(Tally::default(), |a, t| add(a, *t));
        self.0 = read.iter().copied().collect();
        Taken {
            per_second,
            lump: sub(now, before),
            moved,
        }
    }

    fn forget_before(&mut self, second: u64) {
        self.0 = self.0.split_off(&second);
    }
}

fn add(a: Tally, b: Tally) -> Tally {
    Tally {
        requests: a.requests + b.requests,
        failures: a.failures + b.failures,
        slow: a.slow + b.slow,
    }
}

fn sub(a: Tally, b: Tally) -> Tally {
    Tally {
        requests: a.requests.saturating_sub(b.requests),
        failures: a.failures.saturating_sub(b.failures),
        slow: a.slow.saturating_sub(b.slow),
    }
}

fn arm(t: Tally) -> Arm {
    Arm {
        requests: t.requests,
        failures: t.failures,
        slow: t.slow,
    }
}

/// The two arms' new counts as ticks: one per second (the finest the data plane gives,
/// so that the canary's share is that second's), or one for all when either arm's
/// counts moved between seconds.
fn pair(canary: Taken, stable: Taken) -> Vec<(Arm, Arm)> {
    if canary.moved || stable.moved {
        return vec![(arm(canary.lump), arm(stable.lump))];
    }
    let mut by_second: BTreeMap<u64, (Arm, Arm)> = BTreeMap::new();
    for (sec, t) in canary.per_second {
        by_second.entry(sec).or_default().0 = arm(t);
    }
    for (sec, t) in stable.per_second {
        by_second.entry(sec).or_default().1 = arm(t);
    }
    by_second
        .into_values()
        .filter(|(c, s)| c.requests + s.requests > 0)
        .collect()
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
