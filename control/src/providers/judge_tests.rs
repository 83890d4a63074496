//! Tests of the canary-vs-stable provider glue: what counts as new between reads.

use super::*;

fn t(requests: u64, failures: u64, slow: u64) -> Tally {
    Tally {
        requests,
        failures,
        slow,
    }
}

#[test]
fn each_second_that_grew_is_a_tick_of_its_own() {
    let mut c = Consumed::default();
    // First read: seconds 10 (closed) and 11 (in progress).
    let taken = c.take(&[(10, t(20, 1, 0)), (11, t(5, 0, 0))]);
    assert!(!taken.moved);
    assert_eq!(taken.per_second, vec![(10, t(20, 1, 0)), (11, t(5, 0, 0))]);
    // Second 11 grew, 12 began.
    let taken = c.take(&[(10, t(20, 1, 0)), (11, t(18, 2, 1)), (12, t(3, 0, 0))]);
    assert!(!taken.moved);
    assert_eq!(
        taken.per_second,
        vec![(10, t(0, 0, 0)), (11, t(13, 2, 1)), (12, t(3, 0, 0))]
    );
    assert_eq!(taken.lump, t(16, 2, 1));
}

#[test]
fn counts_that_moved_between_seconds_are_taken_once_as_a_lump() {
    // The data plane closed second 11 late: what was read as second 12 is now in 11.
    let mut c = Consumed::default();
    c.take(&[(11, t(10, 0, 0)), (12, t(4, 1, 0))]);
    let taken = c.take(&[(11, t(14, 1, 0)), (12, t(2, 0, 0))]);
    assert!(taken.moved);
    assert_eq!(taken.lump, t(2, 0, 0));
    let ticks = pair(
        taken,
        Taken {
            per_second: vec![(12, t(40, 0, 0))],
            lump: t(40, 0, 0),
            moved: false,
        },
    );
    assert_eq!(
        ticks,
        vec![(
            Arm {
                requests: 2,
                failures: 0,
                slow: 0
            },
            Arm {
                requests: 40,
                failures: 0,
                slow: 0
            }
        )]
    );
}

#[test]
fn seconds_forgotten_stay_forgotten() {
    let mut c = Consumed::default();
    c.take(&[(10, t(10, 0, 0)), (11, t(10, 0, 0)), (12, t(3, 0, 0))]);
    c.forget_before(11);
    // The next read starts at 11: nothing moved, second 12 grew by 2.
    let taken = c.take(&[(11, t(10, 0, 0)), (12, t(5, 0, 0))]);
    assert!(!taken.moved);
    assert_eq!(taken.lump, t(2, 0, 0));
}

#[test]
fn blue_green_is_refused_with_a_reason() {
    let judges = Judges::default();
    let w = match weir_config::analysis::decode_metric(
        &serde_json::json!({"name": "m", "provider": {"weir": {"metric": "canary-vs-stable"}}}),
        false,
    )
    .unwrap()
    .provider
    {
        weir_config::analysis::Provider::Weir(w) => w,
        _ => unreachable!(),
    };
    let subject = Subject {
        service: "app".into(),
        canary: "app:v2".into(),
        stable: "app:v1".into(),
        canary_since: None,
        now: 1_000,
        blue_green: true,
    };
    let run = RunRef {
        rollout: "app".into(),
        run: "app-1".into(),
        metric: 0,
        started_at: 0,
    };
    let sim = crate::sim::SimPlane::new(10.0, crate::sim::Steady::healthy(0.0), 1);
    match measure(sim.as_ref(), &judges, &w, &subject, &run) {
        Outcome::Error(e) => assert!(e.contains("blue-green"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(judges.is_empty());
}
