//! A metric's phase after each measurement, by Argo's rules (argo-reference §3.6).

use weir_config::analysis::MetricSpec;

use super::{MetricRun, Phase};

/// Argo's rules, in order (argo-reference §3.6). None: unchanged (still running).
pub(super) fn metric_phase(
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
