//! Unit tests of [`super`]: one run at a time, time passed in.

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

/// Issue 16: a bad result waits for the measurements of its round; after a restart,
/// those in flight are forgotten (taken again) and the run can end.
#[test]
fn a_bad_result_waits_for_its_round_and_a_restart_forgets_it() {
    let soft = json!({"name": "soft", "successCondition": "result[0] >= 0.99", "failureCondition": "result[0] < 0.5", "provider": {"weir": {"metric": "latency"}}});
    let hard = json!({"name": "hard", "successCondition": "result[0] >= 0.95", "provider": {"weir": {"metric": "latency"}}});
    let specs = [soft, hard]
        .into_iter()
        .map(|v| {
            let s = decode_metric(&v, false).unwrap();
            (v, s)
        })
        .collect::<Vec<_>>();
    let mut r = AnalysisRun::new("r".into(), specs, &[], &[], 0);
    r.begin(0);
    r.begin(1);
    r.record(0, Outcome::Value(json!([0.9])), 0, 0);
    assert_eq!(r.phase, Phase::Running, "hard is in flight");
    let mut restarted = r.clone();
    r.record(1, Outcome::Value(json!([0.9])), 0, 1);
    assert_eq!(r.phase, Phase::Failed, "the worst of the round");
    restarted.forget_in_flight(5);
    assert_eq!(
        restarted.phase,
        Phase::Inconclusive,
        "nothing left to wait for"
    );
    assert_eq!(restarted.completed_at, Some(5));
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

/// Issue 10, item 8: a duration too long to add saturates instead of wrapping.
#[test]
fn long_durations_saturate() {
    use std::time::Duration;
    assert_eq!(after(5, Duration::from_secs(1)), 1005);
    assert_eq!(
        after(
            1_700_000_000_000,
            Duration::from_secs(18_446_744_073_709_551)
        ),
        Ms::MAX
    );
    assert_eq!(after(1, Duration::MAX), Ms::MAX);
}
