//! Issue 10, item 8: durations too long to add to a time. Whatever the configuration
//! lets through, the engine's time arithmetic saturates: a pause of 18446744073709551 s,
//! such a progress deadline or such an auto-promotion delay never ends at once, and the
//! control loop does not stop on them.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{canary, load, start};
use weir_config::Model;
use weir_config::rollout::{Rollout, Step, Strategy};
use weir_control::engine::{World, reconcile, traffic};
use weir_control::state::{RolloutPhase, RolloutStatus};

/// The duration of issue 10: `pause: {duration: 18446744073709551}`.
const LONG: Duration = Duration::from_secs(18_446_744_073_709_551);
const DAY: u64 = 86_400_000;

/// `m` with its Rollout `app` changed by `f`.
fn edited(m: Arc<Model>, f: impl FnOnce(&mut Rollout)) -> Arc<Model> {
    let mut m = (*m).clone();
    f(Arc::make_mut(m.argo.rollouts.get_mut("app").unwrap()));
    Arc::new(m)
}

fn long_pause(m: Arc<Model>, d: Duration) -> Arc<Model> {
    edited(m, |r| {
        let Strategy::Canary(c) = &mut r.strategy else {
            panic!("canary")
        };
        c.steps[1] = Step::Pause(Some(d));
    })
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
            now: 1_700_000_000_000,
            endpoints: true,
        }
    }
    fn tick(&mut self, m: &Model) {
        let has = self.endpoints;
        let f = move |_: &str| has;
        let w = World {
            now: self.now,
            argo: &m.argo,
            has_endpoints: &f,
        };
        reconcile(&mut self.st, &m.argo.rollouts["app"], &w);
    }
    fn weight(&self, m: &Model) -> f64 {
        let f = |_: &str| true;
        traffic(&self.st, &m.argo.rollouts["app"], &f).map_or(0.0, |p| p.canary_weight.percent())
    }
}

const STEPS: &str = "[{setWeight: 10}, {pause: {duration: 60}}, {setWeight: 50}, {pause: {}}]";

#[test]
fn a_very_long_pause_does_not_end_at_once() {
    for d in [LONG, Duration::MAX] {
        let mut t = T::new();
        t.tick(&long_pause(canary("v1", STEPS, ""), d));
        let m = long_pause(canary("v2", STEPS, ""), d);
        t.tick(&m);
        assert_eq!(t.st.current_step_index, Some(1), "in the pause");
        t.now += DAY;
        t.tick(&m);
        assert_eq!(
            t.st.current_step_index,
            Some(1),
            "{d:?}: still in the pause"
        );
        assert_eq!(t.st.phase, Some(RolloutPhase::Paused));
        assert_eq!(t.weight(&m), 10.0);
    }
}

#[test]
fn a_very_long_progress_deadline_never_passes() {
    let m = |image: &str| {
        edited(canary(image, STEPS, ""), |r| {
            r.progress_deadline = LONG;
            r.progress_deadline_abort = true;
        })
    };
    let mut t = T::new();
    t.tick(&m("v1"));
    // No endpoints for the canary: no progress at all.
    t.endpoints = false;
    let v2 = m("v2");
    t.tick(&v2);
    t.now += 365 * DAY;
    t.tick(&v2);
    assert!(!t.st.aborted, "{}", t.st.message);
    assert!(!t.st.deadline_exceeded);
    assert_eq!(t.st.phase, Some(RolloutPhase::Progressing));
}

fn blue_green(image: &str) -> Arc<Model> {
    let yaml = format!(
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
      autoPromotionSeconds: 30
"#
    );
    edited(load(&yaml), |r| {
        let Strategy::BlueGreen(b) = &mut r.strategy else {
            panic!("blue-green")
        };
        b.auto_promotion_seconds = Some(LONG);
        b.scale_down_delay = LONG;
    })
}

#[test]
fn a_very_long_auto_promotion_does_not_switch_at_once() {
    let mut t = T::new();
    t.tick(&blue_green("v1"));
    let m = blue_green("v2");
    t.tick(&m);
    t.now += DAY;
    t.tick(&m);
    assert_eq!(
        t.st.active.as_ref().unwrap().image,
        "app:v1",
        "not switched"
    );
    assert_eq!(t.st.phase, Some(RolloutPhase::Paused));
}

#[tokio::test(start_paused = true)]
async fn a_very_long_pause_keeps_the_loop_running() {
    let h = start(long_pause(canary("v1", STEPS, ""), LONG), None);
    h.until(Duration::from_secs(10), |v| {
        v.phase == Some(RolloutPhase::Healthy)
    })
    .await;
    h.tx.send(long_pause(canary("v2", STEPS, ""), LONG))
        .unwrap();
    h.until(Duration::from_secs(10), |v| v.current_step_index == Some(1))
        .await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let v = h.app().await;
    assert_eq!(v.current_step_index, Some(1), "{}", v.message);
    assert_eq!(v.phase, Some(RolloutPhase::Paused));
    assert_eq!(v.canary_weight, 10.0);
    h.stop().await;
}
