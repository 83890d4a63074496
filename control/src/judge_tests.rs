//! Tests of the judge's statistics (research §7.7).

use super::*;
use crate::sim::Rng;

/// The defaults of research §7.4 (`weir_config::defaults` holds the same numbers).
pub(crate) fn params() -> Params {
    Params {
        alpha_fail: 0.001,
        alpha_pass: 0.05,
        fail_tolerance: 1.0,
        error_margin: 2.0,
        error_budget: 0.001,
        latency_margin: 2.0,
        latency: true,
        min_canary_requests: 200,
        min_duration_ms: 30_000,
        max_wait_ms: 600_000,
    }
}

#[test]
fn no_events_no_evidence() {
    let mut j = Judge::new(params());
    assert_eq!(j.failures.fail.e(), 1.0);
    assert_eq!(j.failures.pass.e(), 1.0);
    assert_eq!(j.failures.budget.as_ref().unwrap().e(), 1.0);
    assert_eq!(j.fail_evidence().0, 1.0);
    // Requests without a single failure or slow request: no ratio evidence.
    for _ in 0..100 {
        j.observe(&Tick {
            canary: Arm {
                requests: 10,
                ..Arm::default()
            },
            stable: Arm {
                requests: 190,
                ..Arm::default()
            },
            latency: true,
        });
    }
    assert_eq!(j.failures.fail.e(), 1.0);
    assert_eq!(j.failures.pass.e(), 1.0);
    assert_eq!(j.slow.as_ref().unwrap().fail.e(), 1.0);
    // A tick without canary requests changes nothing, whatever the stable did.
    let before = j.clone();
    j.observe(&Tick {
        canary: Arm::default(),
        stable: Arm {
            requests: 200,
            failures: 50,
            slow: 9,
        },
        latency: true,
    });
    assert_eq!(j.failures.fail, before.failures.fail);
    assert_eq!(j.failures.pass, before.failures.pass);
    assert_eq!(
        j.slow.as_ref().unwrap().fail,
        before.slow.as_ref().unwrap().fail
    );
}

#[test]
fn constant_share_closed_form_equals_the_per_tick_sum() {
    let rho: f64 = 0.05;
    let ticks = [(1u64, 7u64), (0, 3), (2, 2), (0, 0), (1, 40), (3, 9)];
    let mut p = RatioProcess::fail(1.0);
    for (x, f) in ticks {
        p.observe(x, f, rho);
    }
    let (x, f) = ticks
        .iter()
        .fold((0u64, 0u64), |(a, b), (x, f)| (a + x, b + f));
    let (x, f) = (x as f64, f as f64);
    for (k, got) in (1..=FAIL_GRID).zip(&p.log_lr) {
        let r = 2f64.powf(f64::from(k) / 2.0);
        let closed = x * r.ln() - f * (1.0 + rho * (r - 1.0)).ln();
        assert!((got - closed).abs() < 1e-9, "k {k}: {got} vs {closed}");
    }
}

#[test]
fn grid_mixture_matches_brute_force() {
    // Ticks with varying shares; the brute force multiplies per-tick binomial
    // likelihood ratios of θ_r = ρr/(1 − ρ + ρr) against θ_r0, then averages.
    let ticks = [
        (1u64, 4u64, 0.05),
        (0, 6, 0.2),
        (2, 3, 0.5),
        (1, 1, 0.01),
        (0, 11, 0.1),
    ];
    for (r0, fail) in [(1.0, true), (1.5, true), (2.0, false)] {
        let mut p = if fail {
            RatioProcess::fail(r0)
        } else {
            RatioProcess::pass(r0)
        };
        for (x, f, rho) in ticks {
            p.observe(x, f, rho);
        }
        let grid: Vec<f64> = if fail {
            (1..=FAIL_GRID)
                .map(|k| r0 * 2f64.powf(f64::from(k) / 2.0))
                .collect()
        } else {
            (1..=PASS_GRID)
                .map(|k| r0 * 2f64.powf(-f64::from(k) / 2.0))
                .collect()
        };
        let theta = |r: f64, rho: f64| rho * r / (1.0 - rho + rho * r);
        let brute: f64 = grid
            .iter()
            .map(|&r| {
                ticks
                    .iter()
                    .map(|&(x, f, rho)| {
                        let (t, t0) = (theta(r, rho), theta(r0, rho));
                        (t / t0).powi(x as i32) * ((1.0 - t) / (1.0 - t0)).powi((f - x) as i32)
                    })
                    .product::<f64>()
            })
            .sum::<f64>()
            / grid.len() as f64;
        let got = p.e();
        assert!(
            ((got - brute) / brute).abs() < 1e-9,
            "r0 {r0}: {got} vs {brute}"
        );
    }
    // The absolute pass test against its own brute force.
    let mut b = RateProcess::new(0.01);
    b.observe(1, 300);
    b.observe(0, 200);
    let brute: f64 = (1..=PASS_GRID)
        .map(|k| {
            let p = 0.01 * 2f64.powf(-f64::from(k) / 2.0);
            (p / 0.01).powi(1) * ((1.0 - p) / 0.99).powi(499)
        })
        .sum::<f64>()
        / f64::from(PASS_GRID);
    assert!(((b.e() - brute) / brute).abs() < 1e-9);
}

#[test]
fn log_space_does_not_overflow() {
    // 10,000 canary failures and none on the stable revision: e-values far beyond f64.
    let mut p = RatioProcess::fail(1.0);
    for _ in 0..1000 {
        p.observe(10, 10, 0.05);
    }
    assert!(p.log_e().is_finite() && p.log_e() > 1000.0);
    assert_eq!(p.e(), f64::INFINITY);
}

/// One healthy (H0) run of `seconds` one-second ticks: both arms share one failure rate
/// and one slow rate each tick, with the canary's share, the traffic and the failure
/// rate all changing at random (incidents, bursts). `ratio` multiplies the canary's
/// failure rate (1: H0). Returns the tick at which the judge failed, if it did.
fn simulated_run(rng: &mut Rng, seconds: u32, ratio: f64, alpha_fail: f64) -> Option<u32> {
    let mut judge = Judge::new(Params {
        alpha_fail,
        ..params()
    });
    let shares = [0.01, 0.05, 0.1, 0.25, 0.5];
    let mut rho = shares[(rng.unit() * 4.99) as usize];
    let base_rate = 20.0 + rng.unit() * 980.0;
    let mut burst = 0u32;
    let mut incident = 0u32;
    for t in 0..seconds {
        if rng.unit() < 0.03 {
            rho = shares[(rng.unit() * 4.99) as usize];
        }
        if burst == 0 && rng.unit() < 0.02 {
            burst = 5 + (rng.unit() * 20.0) as u32;
        }
        if incident == 0 && rng.unit() < 0.01 {
            incident = 5 + (rng.unit() * 30.0) as u32;
        }
        let rate = base_rate * if burst > 0 { 5.0 } else { 1.0 };
        let p_fail = if incident > 0 { 0.2 } else { 0.01 };
        burst = burst.saturating_sub(1);
        incident = incident.saturating_sub(1);
        let n = rate.round() as u64;
        let nc = (rho * n as f64).round() as u64;
        let ns = n - nc;
        let tick = Tick {
            canary: Arm {
                requests: nc,
                failures: rng.binomial(nc, (p_fail * ratio).min(1.0)),
                slow: rng.binomial(nc, 0.01),
            },
            stable: Arm {
                requests: ns,
                failures: rng.binomial(ns, p_fail),
                slow: rng.binomial(ns, 0.01),
            },
            latency: t >= 15,
        };
        judge.observe(&tick);
        if matches!(judge.decide(0), Decision::Fail(_)) {
            return Some(t);
        }
    }
    None
}

/// Upper end of a binomial's 3-sigma band (with a floor of 3 for tiny means).
fn binomial_upper(n: u32, p: f64) -> f64 {
    let mean = f64::from(n) * p;
    mean + 3.0 * (mean * (1.0 - p)).sqrt().max(1.0)
}

#[test]
fn healthy_canaries_fail_at_most_alpha_of_the_time() {
    // Under H0, with the share, the traffic and the error rate changing under it, the
    // judge looks after every tick; it may fail a healthy canary in at most α_fail of
    // runs. A generous α (0.05) makes the bound testable with a few thousand runs;
    // the default (0.001) is checked too.
    let mut rng = Rng::new(0x5eed_0001);
    let runs = 1500;
    for alpha in [0.05, 0.001] {
        let fails = (0..runs)
            .filter(|_| simulated_run(&mut rng, 300, 1.0, alpha).is_some())
            .count();
        let bound = binomial_upper(runs, alpha);
        assert!(
            (fails as f64) <= bound,
            "α {alpha}: {fails} of {runs} healthy runs failed (bound {bound:.1})"
        );
    }
    // Not vacuous: the same runs with a canary failing 3× as often are caught.
    let caught = (0..200)
        .filter(|_| simulated_run(&mut rng, 300, 3.0, 0.001).is_some())
        .count();
    assert!(caught >= 190, "only {caught} of 200 bad canaries caught");
}

/// A tick of 100 ms at 200 requests per second, 5% to the canary: 1 canary and 19
/// stable requests.
fn tick_100ms(canary_failures: u64, stable_failures: u64) -> Tick {
    Tick {
        canary: Arm {
            requests: 1,
            failures: canary_failures,
            slow: 0,
        },
        stable: Arm {
            requests: 19,
            failures: stable_failures,
            slow: 0,
        },
        latency: false,
    }
}

#[test]
fn a_broken_canary_fails_after_three_failures() {
    // Research §7.5: at a 5% share each canary failure with a clean stable revision adds
    // ln 20 ≈ 3 nats; three reach the bar of 1/α = 1000 (K = 2 metrics: 2000).
    let mut j = Judge::new(params());
    let mut ticks = 0;
    while j.decide(ticks * 100) == Decision::Wait {
        j.observe(&tick_100ms(1, 0));
        ticks += 1;
        assert!(ticks < 10, "no verdict after {ticks} ticks");
    }
    assert_eq!(j.decide(ticks * 100), Decision::Fail(Which::Failures));
    assert_eq!(ticks, 3);
    // With the latency metric off (K = 1) the bar is 1000: three still.
    let mut j = Judge::new(Params {
        latency: false,
        ..params()
    });
    for _ in 0..2 {
        j.observe(&tick_100ms(1, 0));
    }
    assert_eq!(j.decide(200), Decision::Wait);
    j.observe(&tick_100ms(1, 0));
    assert_eq!(j.decide(300), Decision::Fail(Which::Failures));
}

#[test]
fn a_healthy_canary_passes_after_its_minimums() {
    // Both arms at 1% errors, 5% of 1,000 rps, for 3 minutes: the judge passes, no
    // sooner than minDuration, never fails.
    let mut rng = Rng::new(7);
    let mut j = Judge::new(params());
    let mut passed = None;
    for s in 1..=180u64 {
        let tick = Tick {
            canary: Arm {
                requests: 50,
                failures: rng.binomial(50, 0.01),
                slow: rng.binomial(50, 0.01),
            },
            stable: Arm {
                requests: 950,
                failures: rng.binomial(950, 0.01),
                slow: rng.binomial(950, 0.01),
            },
            latency: s > 15,
        };
        j.observe(&tick);
        match j.decide(s * 1000) {
            Decision::Wait => {}
            Decision::Pass => {
                passed = Some(s);
                break;
            }
            other => panic!("at {s}s: {other:?}"),
        }
    }
    let at = passed.expect("passed within 3 minutes");
    assert!(at >= 30, "passed at {at}s, before minDuration");
}

#[test]
fn a_canary_without_errors_passes_on_the_budget() {
    // No failures anywhere: the relative test has no events, the absolute one shows the
    // canary's rate is below 0.1%.
    let mut j = Judge::new(Params {
        latency: false,
        ..params()
    });
    let mut s = 0;
    while j.decide(s * 1000) == Decision::Wait {
        s += 1;
        j.observe(&Tick {
            canary: Arm {
                requests: 50,
                ..Arm::default()
            },
            stable: Arm {
                requests: 950,
                ..Arm::default()
            },
            latency: false,
        });
        assert!(s < 600);
    }
    assert_eq!(j.decide(s * 1000), Decision::Pass);
    // The mixture reaches 2/α_pass = 40 after about 4,200 canary requests (84 s).
    assert!((60..=120).contains(&s), "passed at {s}s");
}

#[test]
fn without_a_verdict_the_judge_gives_up_at_max_wait() {
    let j = Judge::new(params());
    assert_eq!(j.decide(599_999), Decision::Wait);
    assert_eq!(j.decide(600_000), Decision::Inconclusive);
}

#[test]
fn an_incident_on_both_arms_is_not_the_canarys() {
    // 20% errors on both arms for 10 s at 5% of 200 rps, after a healthy minute.
    let mut rng = Rng::new(11);
    let mut worst: f64 = 0.0;
    for run in 0..200 {
        let mut j = Judge::new(params());
        for s in 0..120u64 {
            let p = if (60..70).contains(&s) { 0.2 } else { 0.01 };
            j.observe(&Tick {
                canary: Arm {
                    requests: 10,
                    failures: rng.binomial(10, p),
                    slow: 0,
                },
                stable: Arm {
                    requests: 190,
                    failures: rng.binomial(190, p),
                    slow: 0,
                },
                latency: false,
            });
            worst = worst.max(j.fail_evidence().0);
            assert!(
                !matches!(j.decide(s * 1000), Decision::Fail(_)),
                "run {run} failed at {s}s"
            );
        }
    }
    assert!(worst < 1000.0);
}
