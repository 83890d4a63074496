//! argo-reference §9, item by item, on the pure core: reconcile, traffic and actions,
//! with time passed in.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use weir_config::Model;
use weir_config::rollout::Rollout;
use weir_control::analysis::{Outcome, Phase};
use weir_control::engine::{Action, World, act, reconcile, traffic};
use weir_control::state::RolloutStatus;

const BASE: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: app}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec: {containers: [{name: app, image: "app:IMAGE"}]}
  strategy:
    canary:
      canaryService: app-canary
      stableService: app-stable
      STEPS
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: rate}
spec:
  args: [{name: threshold, value: "0.95"}]
  metrics:
    - name: rate
      interval: 10s
      count: 2
      successCondition: "result[0] >= {{args.threshold}}"
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
"#;

fn model(image: &str, steps: &str) -> Arc<Model> {
    let yaml = BASE.replace("IMAGE", image).replace("STEPS", steps);
    Arc::new(
        weir_config::load_str(Path::new("/t/weir.yaml"), &yaml).unwrap_or_else(|e| panic!("{e}")),
    )
}

struct T {
    st: RolloutStatus,
    now: u64,
    endpoints: bool,
}

impl T {
    fn new() -> T {
        T {
            st: RolloutStatus::new("app"),
            now: 1_000_000,
            endpoints: true,
        }
    }
    fn tick(&mut self, m: &Model) {
        let spec: &Rollout = &m.argo.rollouts["app"];
        let has = self.endpoints;
        let f = move |_: &str| has;
        let w = World {
            now: self.now,
            argo: &m.argo,
            has_endpoints: &f,
        };
        reconcile(&mut self.st, spec, &w);
    }
    fn weight(&self, m: &Model) -> f64 {
        let has = self.endpoints;
        let f = move |_: &str| has;
        traffic(&self.st, &m.argo.rollouts["app"], &f).map_or(0.0, |p| p.canary_weight.percent())
    }
    fn act(&mut self, m: &Model, a: Action) -> Result<(), weir_control::engine::Refusal> {
        act(&mut self.st, &m.argo.rollouts["app"], &a, self.now).map(|_| ())
    }
    fn phase(&self) -> String {
        format!("{:?}", self.st.phase.unwrap())
    }
    /// Feeds the step run's due measurements with `v`.
    fn measure(&mut self, v: f64) {
        let now = self.now;
        if let Some(run) = self.st.step_run.as_mut() {
            for i in run.due(now) {
                run.begin(i);
                run.record(i, Outcome::Value(json!([v])), now, now);
            }
        }
    }
}

const STEPS: &str = "steps: [{setWeight: 10}, {pause: {}}, {setWeight: 30}, {pause: {duration: 60}}, {analysis: {templates: [{templateName: rate}]}}, {setWeight: 60}]";

/// §9.7: the weight is the last setWeight at or before the current step; pause and
/// analysis keep it; no endpoints, no weight; the end goes to stable in one swap.
#[test]
fn weights_follow_the_last_set_weight() {
    let mut t = T::new();
    t.tick(&model("v1", STEPS));
    assert_eq!(t.phase(), "Healthy");
    let m = model("v2", STEPS);
    t.endpoints = false;
    t.tick(&m);
    assert_eq!(t.weight(&m), 0.0, "no canary endpoints: weight 0");
    assert_eq!(
        t.st.current_step_index,
        Some(0),
        "setWeight waits for capacity"
    );
    t.endpoints = true;
    t.tick(&m);
    assert_eq!(t.weight(&m), 10.0);
    assert_eq!(t.phase(), "Paused", "indefinite pause");
    t.act(&m, Action::Promote).unwrap();
    t.tick(&m);
    assert_eq!(t.weight(&m), 30.0);
    assert_eq!(t.phase(), "Paused", "timed pauses show Paused too (§9.11)");
    t.now += 60_000;
    t.tick(&m);
    assert_eq!(t.st.current_step_index, Some(4), "at the analysis");
    assert_eq!(t.weight(&m), 30.0, "analysis keeps the weight");
    t.measure(0.99);
    t.now += 10_000;
    t.measure(0.99);
    t.tick(&m);
    assert_eq!(t.phase(), "Healthy");
    assert_eq!(t.weight(&m), 0.0, "promoted: v2 is stable");
    assert_eq!(t.st.stable.as_ref().unwrap().image, "app:v2");
}

/// §9.8: abort is a flag: weight 0 at once, index 0, Degraded; retry starts from step 0
/// with new runs; only a template change clears it.
#[test]
fn abort_retry_and_template_change() {
    let mut t = T::new();
    t.tick(&model("v1", STEPS));
    let m = model("v2", STEPS);
    t.tick(&m);
    t.act(&m, Action::Promote).unwrap();
    t.tick(&m);
    assert_eq!(t.weight(&m), 30.0);
    t.act(&m, Action::Abort).unwrap();
    t.tick(&m);
    assert_eq!(t.weight(&m), 0.0);
    assert_eq!(t.phase(), "Degraded");
    assert!(t.st.aborted);
    assert_eq!(t.st.current_step_index, Some(0));
    assert!(
        t.st.message
            .starts_with("RolloutAborted: Rollout aborted update to revision 2")
    );
    // Nothing moves while aborted.
    t.now += 3_600_000;
    t.tick(&m);
    assert_eq!(t.phase(), "Degraded");
    t.act(&m, Action::Retry).unwrap();
    t.tick(&m);
    assert!(!t.st.aborted);
    assert_eq!(t.weight(&m), 10.0, "from step 0 again");
    t.act(&m, Action::Abort).unwrap();
    t.tick(&m);
    // A new template clears the abort and starts a new rollout.
    let m3 = model("v3", STEPS);
    t.tick(&m3);
    assert!(!t.st.aborted);
    assert_eq!(t.weight(&m3), 10.0);
    assert_eq!(t.st.current.as_ref().unwrap().image, "app:v3");
}

/// §9.9: promote clears a pause, else skips the current step (a running analysis
/// included); --full skips everything.
#[test]
fn promote_is_context_dependent() {
    let mut t = T::new();
    t.tick(&model("v1", STEPS));
    let m = model("v2", STEPS);
    t.tick(&m);
    t.act(&m, Action::Promote).unwrap(); // clears the indefinite pause
    t.tick(&m);
    t.now += 60_000;
    t.tick(&m);
    assert_eq!(t.st.current_step_index, Some(4));
    assert!(t.st.step_run.is_some(), "the analysis runs");
    t.act(&m, Action::Promote).unwrap(); // nothing paused: skips the analysis
    t.tick(&m);
    assert_eq!(t.phase(), "Healthy", "setWeight 60 then promoted");
    let m3 = model("v3", STEPS);
    t.tick(&m3);
    t.act(&m3, Action::PromoteFull).unwrap();
    t.tick(&m3);
    assert_eq!(t.phase(), "Healthy");
    assert_eq!(t.st.stable.as_ref().unwrap().image, "app:v3");
}

/// §9.9 and §3.5: an Inconclusive step analysis pauses; promote then moves past it.
#[test]
fn inconclusive_pauses_and_promote_moves_on() {
    let steps = "steps: [{setWeight: 20}, {analysis: {templates: [{templateName: both}]}}, {setWeight: 40}, {pause: {}}]";
    let mut t = T::new();
    t.tick(&model("v1", steps));
    let m = model("v2", steps);
    t.tick(&m);
    t.measure(0.9); // neither >= 0.99 nor < 0.5
    t.tick(&m);
    assert_eq!(t.phase(), "Paused");
    assert_eq!(t.st.message, "InconclusiveAnalysisRun");
    t.act(&m, Action::Promote).unwrap();
    t.tick(&m);
    assert_eq!(t.weight(&m), 40.0, "past the analysis");
}

/// §9.10: a template or steps change resets to step 0; back to stable skips the steps.
#[test]
fn changes_reset_the_index_and_stable_skips() {
    let mut t = T::new();
    t.tick(&model("v1", STEPS));
    let m = model("v2", STEPS);
    t.tick(&m);
    t.act(&m, Action::Promote).unwrap();
    t.tick(&m);
    assert_eq!(t.st.current_step_index, Some(3));
    let edited = model(
        "v2",
        "steps: [{setWeight: 15}, {pause: {}}, {setWeight: 30}, {pause: {duration: 60}}]",
    );
    t.tick(&edited);
    assert_eq!(
        t.st.current_step_index,
        Some(1),
        "steps restart: setWeight 15 done, paused"
    );
    assert_eq!(t.weight(&edited), 15.0);
    let back = model("v1", STEPS);
    t.tick(&back);
    assert_eq!(
        t.phase(),
        "Healthy",
        "back to the stable template: no steps"
    );
    assert_eq!(t.weight(&back), 0.0);
    assert!(
        t.st.events
            .iter()
            .any(|e| e.reason == weir_control::state::Reason::SkipSteps)
    );
}

/// §2.8: rollbackWindow fast-tracks a recent revision.
#[test]
fn rollback_window_fast_tracks() {
    let with_window = |image: &str| {
        let yaml = BASE
            .replace("IMAGE", image)
            .replace("STEPS", STEPS)
            .replace(
                "  strategy:",
                "  rollbackWindow: {revisions: 2}\n  strategy:",
            );
        Arc::new(weir_config::load_str(Path::new("/t/w.yaml"), &yaml).unwrap())
    };
    let mut t = T::new();
    t.tick(&with_window("v1"));
    for img in ["v2", "v3"] {
        let m = with_window(img);
        t.tick(&m);
        t.act(&m, Action::PromoteFull).unwrap();
        t.tick(&m);
        assert_eq!(t.st.stable.as_ref().unwrap().image, format!("app:{img}"));
    }
    // v2 is one revision back: inside the window, no steps.
    let m = with_window("v2");
    t.tick(&m);
    assert_eq!(t.phase(), "Healthy");
    assert_eq!(t.st.stable.as_ref().unwrap().image, "app:v2");
}

/// §9.11: a manual pause is not a pause step and does not stop a timed pause's clock.
#[test]
fn manual_pause_and_timed_pause() {
    let mut t = T::new();
    t.tick(&model("v1", STEPS));
    let m = model("v2", STEPS);
    t.tick(&m);
    t.act(&m, Action::Promote).unwrap();
    t.tick(&m);
    assert_eq!(t.st.current_step_index, Some(3), "in the 60 s pause");
    t.act(&m, Action::Pause).unwrap();
    t.tick(&m);
    assert_eq!(t.st.message, "manually paused");
    t.now += 90_000;
    t.tick(&m);
    assert_eq!(
        t.st.current_step_index,
        Some(3),
        "manual pause: no step moves"
    );
    t.act(&m, Action::Resume).unwrap();
    t.tick(&m);
    assert_eq!(
        t.st.current_step_index,
        Some(4),
        "the timed pause had already run out"
    );
}

/// §9.16: header routes send matching requests to the canary whatever the weight; they
/// are removed at promotion and abort, and not applied on the first revision.
#[test]
fn header_routes() {
    let steps = "steps: [{setHeaderRoute: {name: beta, match: [{headerName: x-beta, headerValue: {exact: \"1\"}}]}}, {setWeight: 0}, {pause: {}}]";
    let mut t = T::new();
    let m1 = model("v1", steps);
    t.tick(&m1);
    let f = |_: &str| true;
    assert!(
        traffic(&t.st, &m1.argo.rollouts["app"], &f)
            .unwrap()
            .header_routes
            .is_empty(),
        "not on the first revision"
    );
    let m = model("v2", steps);
    t.tick(&m);
    let plan = traffic(&t.st, &m.argo.rollouts["app"], &f).unwrap();
    assert_eq!(plan.header_routes.len(), 1);
    assert_eq!(plan.canary_weight.percent(), 0.0);
    t.act(&m, Action::Abort).unwrap();
    t.tick(&m);
    assert!(
        traffic(&t.st, &m.argo.rollouts["app"], &f)
            .unwrap()
            .header_routes
            .is_empty(),
        "removed at abort"
    );
}

/// §3.2 and §9.12: Rollout args override template defaults; undeclared ones are ignored;
/// the value reaches the condition.
#[test]
fn args_reach_the_metric() {
    let steps = "steps: [{setWeight: 10}, {analysis: {templates: [{templateName: rate}], args: [{name: threshold, value: \"0.5\"}, {name: unused, value: x}]}}]";
    let mut t = T::new();
    t.tick(&model("v1", steps));
    let m = model("v2", steps);
    t.tick(&m);
    let run = t.st.step_run.as_ref().expect("run started");
    assert_eq!(run.metrics[0].spec["successCondition"], "result[0] >= 0.5");
    t.measure(0.6);
    t.now += 10_000;
    t.measure(0.6);
    t.tick(&m);
    assert_eq!(t.phase(), "Healthy", "0.6 passes a 0.5 threshold");
    assert!(t.st.past_runs.iter().any(|r| r.phase == Phase::Successful));
}

/// `revisionHistoryLimit`: old revisions beyond the limit are forgotten (as Argo deletes
/// old ReplicaSets); the ones in use stay; a template seen before takes a new number.
#[test]
fn revision_history_is_bounded() {
    let limited = |image: &str| {
        let yaml = BASE
            .replace("IMAGE", image)
            .replace("STEPS", "steps: [{setWeight: 10}]")
            .replace(
                "  selector: {matchLabels: {app: app}}",
                "  revisionHistoryLimit: 2\n  selector: {matchLabels: {app: app}}",
            );
        Arc::new(weir_config::load_str(Path::new("/t/weir.yaml"), &yaml).unwrap())
    };
    let mut t = T::new();
    for i in 1..=6 {
        let m = limited(&format!("v{i}"));
        t.tick(&m);
        t.act(&m, Action::PromoteFull).ok();
        t.tick(&m);
    }
    assert_eq!(t.phase(), "Healthy");
    let numbers: Vec<(u64, &str)> =
        t.st.history
            .iter()
            .map(|r| (r.number, r.image.as_str()))
            .collect();
    assert_eq!(
        numbers,
        vec![(4, "app:v4"), (5, "app:v5"), (6, "app:v6")],
        "stable plus two old ones"
    );
    // Back to v5: its entry moves to the end with a new number, nothing duplicated.
    let m = limited("v5");
    t.tick(&m);
    let images: Vec<(u64, &str)> =
        t.st.history
            .iter()
            .map(|r| (r.number, r.image.as_str()))
            .collect();
    assert_eq!(images, vec![(4, "app:v4"), (6, "app:v6"), (7, "app:v5")]);
}

/// `successfulRunHistoryLimit` / `unsuccessfulRunHistoryLimit` bound the finished runs.
#[test]
fn run_history_limits() {
    let steps = "steps: [{setWeight: 10}, {analysis: {templates: [{templateName: both}]}}]";
    let yaml = |image: &str| {
        let y = BASE
            .replace("IMAGE", image)
            .replace("STEPS", steps)
            .replace(
                "  selector: {matchLabels: {app: app}}",
                "  analysis: {successfulRunHistoryLimit: 1, unsuccessfulRunHistoryLimit: 2}\n  selector: {matchLabels: {app: app}}",
            );
        Arc::new(weir_config::load_str(Path::new("/t/weir.yaml"), &y).unwrap())
    };
    let mut t = T::new();
    t.tick(&yaml("v1"));
    // Three failed updates, then two successful ones.
    for (i, v) in [(2, 0.1), (3, 0.1), (4, 0.1), (5, 1.0), (6, 1.0)] {
        let m = yaml(&format!("v{i}"));
        t.tick(&m);
        t.measure(v);
        t.tick(&m);
        t.tick(&m);
    }
    let kept: Vec<String> =
        t.st.past_runs
            .iter()
            .map(|r| format!("{:?}", r.phase))
            .collect();
    assert_eq!(kept, vec!["Failed", "Failed", "Successful"]);
}

/// After the progress deadline passes, progress (a step completing) brings the phase
/// back from Degraded.
#[test]
fn progress_after_the_deadline_clears_degraded() {
    let steps = "steps: [{setWeight: 10}, {analysis: {templates: [{templateName: rate}]}}, {setWeight: 50}, {pause: {}}]";
    let mut t = T::new();
    t.tick(&model("v1", steps));
    let m = model("v2", steps);
    t.tick(&m);
    // The analysis gets no data for longer than the deadline (600 s by default).
    t.now += 601_000;
    t.tick(&m);
    assert_eq!(t.phase(), "Degraded");
    assert!(t.st.message.starts_with("ProgressDeadlineExceeded"));
    // Data arrives: the analysis passes and the next steps complete.
    t.measure(1.0);
    t.now += 10_000;
    t.measure(1.0);
    t.tick(&m);
    assert_eq!(t.weight(&m), 50.0);
    assert_eq!(t.phase(), "Paused", "{}", t.st.message);
}

/// Blue-green `promote --full` skips the pre- and post-promotion analyses (Argo's
/// skip*PromotionAnalysisRun look at promoteFull) and switches at once.
#[test]
fn blue_green_promote_full_skips_the_analyses() {
    let bg = |image: &str| {
        let y = format!(
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
      autoPromotionEnabled: false
      prePromotionAnalysis: {{templates: [{{templateName: rate}}]}}
      postPromotionAnalysis: {{templates: [{{templateName: rate}}]}}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{name: rate}}
spec:
  metrics:
    - name: rate
      interval: 10s
      count: 2
      successCondition: "result[0] >= 0.95"
      provider: {{weir: {{metric: success-rate}}}}
"#
        );
        Arc::new(weir_config::load_str(Path::new("/t/weir.yaml"), &y).unwrap())
    };
    let mut t = T::new();
    t.tick(&bg("v1"));
    let m = bg("v2");
    t.tick(&m);
    assert!(t.st.pre_run.is_some(), "the pre-promotion analysis runs");
    assert_eq!(t.st.active.as_ref().unwrap().image, "app:v1");
    t.act(&m, Action::PromoteFull).unwrap();
    t.tick(&m);
    assert_eq!(t.phase(), "Healthy");
    assert_eq!(t.st.active.as_ref().unwrap().image, "app:v2");
    assert_eq!(t.st.stable.as_ref().unwrap().image, "app:v2");
    assert!(t.st.pre_run.is_none() && t.st.post_run.is_none());
    assert!(
        t.st.past_runs.iter().all(|r| !r.name.ends_with("-post")),
        "no post-promotion run was started"
    );
}
