//! Issue 16: the cases where weir differed from what Argo Rollouts' own unit and e2e tests
//! expect, on the pure core (reconcile, actions, analysis runs) with time passed in.
//! The Argo function each case follows is named in the test's comment.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use weir_config::Model;
use weir_control::analysis::{AnalysisRun, Outcome, Phase};
use weir_control::engine::{Action, World, act, reconcile, traffic};
use weir_control::state::{Event, Reason, RolloutStatus};

const TEMPLATES: &str = r#"
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: rate}
spec:
  metrics:
    - name: rate
      interval: 10s
      count: 2
      successCondition: "result[0] >= 0.95"
      provider: {weir: {metric: success-rate}}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: both}
spec:
  metrics:
    - name: both
      successCondition: "result[0] >= 0.99"
      failureCondition: "result[0] < 0.5"
      provider: {weir: {metric: success-rate}}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: shadow}
spec:
  dryRun: [{metricName: ".*"}]
  metrics:
    - name: shadow
      successCondition: "result[0] >= 0.99"
      provider: {weir: {metric: success-rate}}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: pair}
spec:
  metrics:
    - name: soft
      successCondition: "result[0] >= 0.99"
      failureCondition: "result[0] < 0.5"
      provider: {weir: {metric: success-rate}}
    - name: hard
      successCondition: "result[0] >= 0.95"
      provider: {weir: {metric: success-rate}}
"#;

fn load(yaml: &str) -> Arc<Model> {
    Arc::new(
        weir_config::load_str(Path::new("/t/weir.yaml"), &(yaml.to_owned() + TEMPLATES))
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

/// A canary Rollout: `spec` lines go under `spec:`, `canary` lines under `canary:`.
fn canary(image: &str, spec: &str, canary: &str, steps: &str) -> Arc<Model> {
    load(&format!(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {{name: app}}
spec:
  {spec}
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec: {{containers: [{{name: app, image: "app:{image}"}}]}}
  strategy:
    canary:
      {canary}
      steps: {steps}
"#
    ))
}

/// A blue-green Rollout; `bg` lines go under `blueGreen:`.
fn blue_green(image: &str, bg: &str) -> Arc<Model> {
    load(&format!(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {{name: app}}
spec:
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec: {{containers: [{{name: app, image: "app:{image}"}}]}}
  strategy:
    blueGreen:
      activeService: app-active
      previewService: app-preview
      {bg}
"#
    ))
}

struct T {
    st: RolloutStatus,
    now: u64,
}

impl T {
    /// A rollout deployed at v1 (stable at once), then updated to `next`.
    fn updated(v1: &Model, next: &Model) -> T {
        let mut t = T {
            st: RolloutStatus::new("app"),
            now: 1_000_000,
        };
        t.tick(v1);
        t.tick(next);
        t
    }
    fn tick(&mut self, m: &Model) -> Vec<Event> {
        let f = |_: &str| true;
        let w = World {
            now: self.now,
            argo: &m.argo,
            has_endpoints: &f,
        };
        reconcile(&mut self.st, &m.argo.rollouts["app"], &w)
    }
    fn act(&mut self, m: &Model, a: Action) {
        act(&mut self.st, &m.argo.rollouts["app"], &a, self.now).expect("applies");
    }
    fn phase(&self) -> String {
        format!("{:?}", self.st.phase.unwrap())
    }
    fn weight(&self, m: &Model) -> f64 {
        let f = |_: &str| true;
        traffic(&self.st, &m.argo.rollouts["app"], &f).map_or(0.0, |p| p.canary_weight.percent())
    }
    fn active(&self) -> &str {
        &self.st.active.as_ref().unwrap().image
    }
    /// How many analysis runs were started so far.
    fn runs_started(&self) -> usize {
        self.st
            .events
            .iter()
            .filter(|e| e.reason == Reason::AnalysisRunRunning)
            .count()
    }
    /// Every run, past and current, by name, oldest first.
    fn run_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.st.past_runs.iter().map(|r| r.name.clone()).collect();
        names.extend(self.st.runs().map(|r| r.name.clone()));
        names
    }
}

/// Takes every measurement due in `run` at `now`, then records `values[i]` for metric i,
/// in the order `order` gives (the order the answers come back in).
fn measure(run: &mut AnalysisRun, now: u64, values: &[f64], order: &[usize]) {
    let due = run.due(now);
    for &i in &due {
        run.begin(i);
    }
    for &i in order.iter().filter(|i| due.contains(i)) {
        run.record(i, Outcome::Value(json!([values[i]])), now, now);
    }
}

/// Case 1: a run whose metrics are all dry-run measures them and ends when they end; it
/// does not pass the moment it starts. Argo: analysis/analysis.go `assessRunStatus` (a
/// metric without a result, dry-run or not, keeps the run Running; dry-run phases are
/// left out of the worst phase only).
#[test]
fn dry_run_only_run_measures_before_it_ends() {
    let steps = "[{setWeight: 10}, {analysis: {templates: [{templateName: shadow}]}}]";
    let mut t = T::updated(&canary("v1", "", "", steps), &canary("v2", "", "", steps));
    let m = canary("v2", "", "", steps);
    assert_eq!(t.st.current_step_index, Some(1), "at the analysis step");
    let run = t.st.step_run.as_ref().expect("the dry-run analysis runs");
    assert_eq!(run.phase, Phase::Running, "not passed before measuring");
    assert_eq!(t.phase(), "Progressing");
    let now = t.now;
    measure(t.st.step_run.as_mut().unwrap(), now, &[0.1], &[0]);
    t.tick(&m);
    assert_eq!(
        t.phase(),
        "Healthy",
        "the failed dry-run metric does not count"
    );
    let run = t.st.past_runs.back().expect("archived");
    assert_eq!(run.phase, Phase::Successful);
    assert_eq!(run.metrics[0].phase, Phase::Failed);
    assert_eq!(run.metrics[0].measurements.len(), 1, "it was measured");
}

/// Case 2: the metrics measured together are all waited for, and the worst phase wins
/// (Failed over Error over Inconclusive), whatever order the answers come in. Argo:
/// analysis/analysis.go `runMeasurements` (one reconcile takes every due measurement and
/// waits for all of them) then `assessRunStatus` (worst phase, utils/analysis `IsWorse`).
#[test]
fn worst_phase_wins_whatever_the_answer_order() {
    let steps = "[{setWeight: 10}, {analysis: {templates: [{templateName: pair}]}}, {pause: {}}]";
    for order in [[0, 1], [1, 0]] {
        let mut t = T::updated(&canary("v1", "", "", steps), &canary("v2", "", "", steps));
        let m = canary("v2", "", "", steps);
        let now = t.now;
        // 0.9: `soft` is Inconclusive, `hard` is Failed.
        measure(t.st.step_run.as_mut().unwrap(), now, &[0.9, 0.9], &order);
        let run = t.st.step_run.clone().unwrap();
        assert_eq!(run.phase, Phase::Failed, "order {order:?}: {}", run.message);
        assert!(run.message.contains("\"hard\""), "{}", run.message);
        t.tick(&m);
        assert!(t.st.aborted, "order {order:?}: a Failed run aborts");
        assert_eq!(t.phase(), "Degraded");
    }
}

/// Case 2, at the run: while a measurement of the same round is in flight, a bad result
/// does not end the run, and no new measurement starts.
#[test]
fn a_bad_result_waits_for_the_rest_of_its_round() {
    let steps = "[{analysis: {templates: [{templateName: pair}]}}]";
    let mut t = T::updated(&canary("v1", "", "", steps), &canary("v2", "", "", steps));
    let run = t.st.step_run.as_mut().unwrap();
    assert_eq!(run.due(t.now), vec![0, 1]);
    run.begin(0);
    run.begin(1);
    run.record(0, Outcome::Value(json!([0.9])), t.now, t.now);
    assert_eq!(run.phase, Phase::Running, "`hard` is still being measured");
    assert!(run.due(t.now + 60_000).is_empty(), "nothing new starts");
    run.record(1, Outcome::Error("timeout".into()), t.now, t.now + 10);
    // One Error is tolerated (consecutiveErrorLimit 4): `hard` is not done, but the
    // round is over, so the Inconclusive `soft` ends the run.
    assert_eq!(run.phase, Phase::Inconclusive, "{}", run.message);
}

/// Case 3: while an Inconclusive pre-promotion run holds the pause, no new run starts;
/// promoting starts one, named with a collision counter. Argo: rollout/analysis.go
/// `reconcilePrePromotionAnalysisRun` (returns the current run while the
/// InconclusiveAnalysisRun pause exists) and `needsNewAnalysisRun`.
#[test]
fn blue_green_inconclusive_pre_promotion_starts_no_new_run() {
    let bg = "prePromotionAnalysis: {templates: [{templateName: both}]}";
    let mut t = T::updated(&blue_green("v1", bg), &blue_green("v2", bg));
    let m = blue_green("v2", bg);
    assert_eq!(t.runs_started(), 1);
    let now = t.now;
    measure(t.st.pre_run.as_mut().unwrap(), now, &[0.9], &[0]);
    t.tick(&m);
    assert_eq!(t.phase(), "Paused");
    assert_eq!(t.st.message, "InconclusiveAnalysisRun");
    for _ in 0..5 {
        t.now += 1_000;
        t.tick(&m);
    }
    assert_eq!(t.runs_started(), 1, "no new run while the pause holds");
    assert_eq!(t.st.message, "InconclusiveAnalysisRun");
    t.act(&m, Action::Promote);
    t.tick(&m);
    assert_eq!(t.runs_started(), 2, "promote starts a fresh run");
    let names = t.run_names();
    assert!(names[1].ends_with("-pre.1"), "{names:?}");
    assert_eq!(names[1], format!("{}.1", names[0]));
}

/// Case 4: the autoPromotionSeconds clock starts only once the pre-promotion run has
/// passed, and the switch needs that run to pass. Argo: rollout/bluegreen.go
/// `reconcileBlueGreenPause` (no BlueGreenPause before `completedPrePromotionAnalysis`),
/// rollout/service.go `reconcileActiveService` (switch on `CompletedBlueGreenPause() &&
/// completedPrePromotionAnalysis()`).
#[test]
fn blue_green_auto_promotion_waits_for_the_pre_promotion_run() {
    let bg =
        "autoPromotionSeconds: 30\n      prePromotionAnalysis: {templates: [{templateName: rate}]}";
    let mut t = T::updated(&blue_green("v1", bg), &blue_green("v2", bg));
    let m = blue_green("v2", bg);
    assert!(
        t.st.pause_conditions.is_empty(),
        "no pause before the run passes"
    );
    t.now += 31_000;
    t.tick(&m);
    assert_eq!(t.active(), "app:v1", "no switch while the analysis runs");
    let run = t.st.pre_run.as_ref().expect("the run goes on");
    assert_eq!(run.phase, Phase::Running);
    assert_eq!(t.phase(), "Progressing");
    let now = t.now;
    measure(t.st.pre_run.as_mut().unwrap(), now, &[0.99], &[0]);
    t.now += 10_000;
    let now = t.now;
    measure(t.st.pre_run.as_mut().unwrap(), now, &[0.99], &[0]);
    t.tick(&m);
    assert_eq!(t.phase(), "Paused", "the pause starts now");
    assert_eq!(t.st.message, "BlueGreenPause");
    t.now += 29_000;
    t.tick(&m);
    assert_eq!(
        t.active(),
        "app:v1",
        "30 s from the pause, not from the update"
    );
    t.now += 2_000;
    let events = t.tick(&m);
    assert_eq!(t.active(), "app:v2");
    assert_eq!(t.phase(), "Healthy");
    assert!(
        events.iter().any(|e| e.reason == Reason::RolloutResumed),
        "the pause's end is announced: {events:?}"
    );
    let passed =
        t.st.past_runs
            .iter()
            .find(|r| r.name.ends_with("-pre"))
            .unwrap();
    assert_eq!(passed.phase, Phase::Successful);
    assert_eq!(
        passed.metrics[0].measurements.len(),
        2,
        "measured to its count"
    );
}

/// Case 5: `abort` then `promote --full` ends Healthy, with no new analysis run. Argo:
/// test/e2e/functional_test.go `TestCanaryPromoteFull`; rollout/sync.go
/// `syncRolloutStatusCanary` (promoteFull clears pauses and the abort).
#[test]
fn abort_then_promote_full_ends_healthy() {
    let steps = "[{pause: {duration: 24h}}, {analysis: {templates: [{templateName: rate}]}}, {pause: {}}, {analysis: {templates: [{templateName: rate}]}}]";
    let bg = "analysis: {templates: [{templateName: rate}], startingStep: 4}";
    let mut t = T::updated(&canary("v1", "", bg, steps), &canary("v2", "", bg, steps));
    let m = canary("v2", "", bg, steps);
    assert_eq!(t.phase(), "Paused");
    t.act(&m, Action::Promote);
    t.tick(&m);
    assert_eq!(t.st.current_step_index, Some(1));
    assert_eq!(t.runs_started(), 1);
    t.act(&m, Action::Promote);
    t.tick(&m);
    assert_eq!(t.phase(), "Paused", "at pause: {{}}");
    t.act(&m, Action::Abort);
    t.tick(&m);
    assert_eq!(t.phase(), "Degraded");
    t.now += 1_000;
    t.act(&m, Action::PromoteFull);
    t.tick(&m);
    assert_eq!(t.phase(), "Healthy", "{}", t.st.message);
    assert!(!t.st.aborted && !t.st.promote_full);
    assert_eq!(t.st.stable.as_ref().unwrap().image, "app:v2");
    assert_eq!(t.runs_started(), 1, "no new analysis run");
}

/// Case 6: turning progressDeadlineAbort on after the deadline has passed aborts. Argo:
/// rollout/sync.go `calculateRolloutConditions` (an unchanged timed-out condition still
/// aborts when progressDeadlineAbort is set and the update is not aborted).
#[test]
fn progress_deadline_abort_turned_on_late_aborts() {
    let steps = "[{setWeight: 10}, {analysis: {templates: [{templateName: rate}]}}]";
    let mut t = T::updated(&canary("v1", "", "", steps), &canary("v2", "", "", steps));
    let m = canary("v2", "", "", steps);
    t.now += 601_000;
    t.tick(&m);
    assert_eq!(t.phase(), "Degraded");
    assert!(!t.st.aborted);
    let abort_on = canary("v2", "progressDeadlineAbort: true", "", steps);
    t.now += 1_000;
    t.tick(&abort_on);
    assert!(t.st.aborted, "{}", t.st.message);
    assert!(
        t.st.message.starts_with("RolloutAborted"),
        "{}",
        t.st.message
    );
    assert_eq!(t.weight(&abort_on), 0.0);
}

/// Case 7: a timed pause step completes even while an InconclusiveAnalysisRun pause
/// holds, and the rollout stays paused on that reason. Argo: rollout/canary.go
/// `syncRolloutStatusCanary` / `completedCurrentCanaryStep`, rollout/pause.go
/// `CompletedCanaryPauseStep` (only the step's own condition and duration count).
#[test]
fn timed_pause_completes_under_an_inconclusive_pause() {
    let steps = "[{setWeight: 20}, {pause: {duration: 60}}, {setWeight: 40}]";
    let bg = "analysis: {templates: [{templateName: both}]}";
    let mut t = T::updated(&canary("v1", "", bg, steps), &canary("v2", "", bg, steps));
    let m = canary("v2", "", bg, steps);
    assert_eq!(t.st.current_step_index, Some(1));
    let now = t.now;
    measure(t.st.background_run.as_mut().unwrap(), now, &[0.9], &[0]);
    t.tick(&m);
    assert!(
        t.st.message.starts_with("CanaryPauseStep"),
        "{}",
        t.st.message
    );
    t.now += 60_000;
    t.tick(&m);
    assert_eq!(t.st.current_step_index, Some(2), "the timed pause is over");
    assert_eq!(t.phase(), "Paused");
    assert_eq!(t.st.message, "InconclusiveAnalysisRun");
    assert_eq!(t.weight(&m), 20.0, "the next step waits for the pause");
}

/// Case 9: the end of a timed pause raises RolloutResumed after the step's
/// RolloutStepCompleted. Argo: rollout/sync.go `sendStateChangeEvents`; the event order
/// of test/e2e/functional_test.go `TestRolloutAbortRetryPromote`.
#[test]
fn timed_pause_end_raises_rollout_resumed() {
    let steps = "[{setWeight: 10}, {pause: {duration: 30}}, {setWeight: 50}, {pause: {}}]";
    let mut t = T::updated(&canary("v1", "", "", steps), &canary("v2", "", "", steps));
    let m = canary("v2", "", "", steps);
    t.now += 30_000;
    let events = t.tick(&m);
    let reasons: Vec<Reason> = events.iter().map(|e| e.reason).collect();
    let done = reasons
        .iter()
        .position(|r| *r == Reason::RolloutStepCompleted)
        .expect("the pause step completed");
    assert_eq!(
        reasons.get(done + 1),
        Some(&Reason::RolloutResumed),
        "{events:?}"
    );
    // A pause a user ends is announced by the action itself, once.
    t.act(&m, Action::Promote);
    let events = t.tick(&m);
    assert!(
        !events.iter().any(|e| e.reason == Reason::RolloutResumed),
        "{events:?}"
    );
}

/// Case 10: a run started again for the same revision and step gets a collision counter
/// (`NAME.1`, `NAME.2`). Argo: utils/analysis/helpers.go `CreateWithCollisionCounter`,
/// called from rollout/analysis.go `createAnalysisRun`.
#[test]
fn reruns_get_a_collision_counter() {
    let steps = "[{setWeight: 10}, {analysis: {templates: [{templateName: both}]}}]";
    let mut t = T::updated(&canary("v1", "", "", steps), &canary("v2", "", "", steps));
    let m = canary("v2", "", "", steps);
    for _ in 0..2 {
        let now = t.now;
        measure(t.st.step_run.as_mut().unwrap(), now, &[0.1], &[0]);
        t.tick(&m);
        assert!(t.st.aborted);
        t.now += 1_000;
        t.act(&m, Action::Retry);
        t.tick(&m);
    }
    let names = t.run_names();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0].ends_with("-2-1"), "{names:?}");
    assert_eq!(names[1], format!("{}.1", names[0]));
    assert_eq!(names[2], format!("{}.2", names[0]));
}
