//! One metric, from its serde mirror ([`crate::decode::metric`]) to a [`MetricSpec`]:
//! Argo's defaults and rules; the provider is read in `provider`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::decode::metric::MetricDoc;
use crate::decode::scalar::{IntOrString, Str};
use crate::defaults;
use crate::duration::parse_go;

use super::provider::{MetricEnv, decode_provider};
use super::{MetricIssues, MetricSpec};

/// Decodes a metric, taking what it may from this process's environment. With
/// `deferred`, string fields that still hold a `{{...}}` placeholder are accepted
/// unchecked (for `weir check`), and placeholders are not resolved.
///
/// # Errors
/// Every problem, with its field.
pub fn decode_metric(raw: &Value, deferred: bool) -> Result<MetricSpec, MetricIssues> {
    decode_metric_in(raw, deferred, &MetricEnv::from_process())
}

/// [`decode_metric`] with the environment given.
///
/// # Errors
/// Every problem, with its field.
pub fn decode_metric_in(
    raw: &Value,
    deferred: bool,
    env: &MetricEnv,
) -> Result<MetricSpec, MetricIssues> {
    if !raw.is_object() {
        return Err(vec![(String::new(), "a metric is a mapping".into())]);
    }
    // Every field of the mirror is lenient: only a mapping is needed.
    let m = MetricDoc::deserialize(raw)
        .map_err(|e| vec![(String::new(), format!("a metric is a mapping: {e}"))])?;
    let mut issues = Vec::new();
    let held = |s: &str| deferred && s.contains("{{");
    let name = match m.name.as_ref().and_then(Str::as_str) {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => {
            issues.push(("name".into(), "a metric needs a name".into()));
            String::new()
        }
    };
    let mut duration = |field: &str, v: &Option<Str>| -> Option<Duration> {
        match v.as_ref()? {
            Str::Str(s) if held(s) => None,
            Str::Str(s) => match parse_go(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    issues.push((field.into(), e.to_string()));
                    None
                }
            },
            Str::Other(v) => {
                issues.push((
                    field.into(),
                    format!("{v} is not a duration: write one with a unit, e.g. \"30s\" (a bare number is not accepted, as in Argo)"),
                ));
                None
            }
        }
    };
    let interval = duration("interval", &m.interval);
    let initial_delay = duration("initialDelay", &m.initial_delay);
    let placeholder = |v: &IntOrString| v.as_str().is_some_and(held);
    let mut int = |field: &str, v: &Option<IntOrString>, default: i64, min: i64| -> i64 {
        let Some(v) = v else {
            return default;
        };
        if placeholder(v) {
            return default;
        }
        match v.parse_i64() {
            Some(n) if n >= min => n,
            Some(n) => {
                issues.push((
                    field.into(),
                    format!("{n} is below the least allowed, {min}"),
                ));
                default
            }
            None => {
                issues.push((field.into(), format!("{v} is not a whole number")));
                default
            }
        }
    };
    let count = m
        .count
        .as_ref()
        .filter(|v| !placeholder(v))
        .map(|_| int("count", &m.count, 0, 0) as u32);
    let failure_limit = int(
        "failureLimit",
        &m.failure_limit,
        defaults::FAILURE_LIMIT,
        -1,
    );
    let inconclusive_limit = int(
        "inconclusiveLimit",
        &m.inconclusive_limit,
        i64::from(defaults::INCONCLUSIVE_LIMIT),
        0,
    ) as u32;
    let consecutive_error_limit = int(
        "consecutiveErrorLimit",
        &m.consecutive_error_limit,
        i64::from(defaults::CONSECUTIVE_ERROR_LIMIT),
        0,
    ) as u32;
    let consecutive_success_limit = int(
        "consecutiveSuccessLimit",
        &m.consecutive_success_limit,
        i64::from(defaults::CONSECUTIVE_SUCCESS_LIMIT),
        0,
    ) as u32;
    let condition = |field: &str, v: &Option<Str>, issues: &mut MetricIssues| -> Option<String> {
        let s = v.as_ref()?.as_str().unwrap_or("").to_owned();
        if s.trim().is_empty() {
            return None;
        }
        if !held(&s)
            && let Err(e) = super::compile_expression(&s)
        {
            let why = match e {
                super::ExpressionError::TooDeep | super::ExpressionError::TooComplex => {
                    format!("the expression is refused: {e}")
                }
                other => other.to_string(),
            };
            issues.push((field.into(), why));
        }
        Some(s)
    };
    let success_condition = condition("successCondition", &m.success_condition, &mut issues);
    let failure_condition = condition("failureCondition", &m.failure_condition, &mut issues);

    let provider = match &m.provider {
        None => {
            issues.push(("provider".into(), "a metric needs a provider".into()));
            None
        }
        Some(p) => match &p.0[..] {
            [(kind, body)] => decode_provider(kind, body, deferred, env, &mut issues),
            given => {
                issues.push((
                    "provider".into(),
                    format!(
                        "a metric has exactly one provider; this one has {}",
                        if given.is_empty() {
                            "none".to_owned()
                        } else {
                            given
                                .iter()
                                .map(|(k, _)| k.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                ));
                None
            }
        },
    };

    // The judge's verdict is a word: without conditions, "pass" is Successful, "fail"
    // Failed and "inconclusive" neither (Argo's table then makes it Inconclusive).
    let (success_condition, failure_condition) = match &provider {
        Some(super::Provider::Weir(w)) if w.metric == super::WeirMetric::CanaryVsStable => (
            success_condition.or_else(|| Some(defaults::JUDGE_SUCCESS_CONDITION.to_owned())),
            failure_condition.or_else(|| Some(defaults::JUDGE_FAILURE_CONDITION.to_owned())),
        ),
        _ => (success_condition, failure_condition),
    };

    // Argo's metric validation.
    let interval_held = matches!(&m.interval, Some(Str::Str(s)) if held(s));
    if let Some(c) = count
        && c > 1
        && interval.is_none()
        && !interval_held
    {
        issues.push((
            "count".into(),
            "interval must be given when count is more than 1".into(),
        ));
    }
    if failure_limit == -1 && consecutive_success_limit == 0 {
        issues.push((
            "failureLimit".into(),
            "-1 (no failure limit) needs consecutiveSuccessLimit".into(),
        ));
    }
    if let Some(c) = count
        && c > 0
    {
        let c = i64::from(c);
        if failure_limit >= 0 && c < failure_limit + i64::from(consecutive_success_limit) {
            issues.push((
                "count".into(),
                format!(
                    "count ({c}) must be at least failureLimit + consecutiveSuccessLimit ({})",
                    failure_limit + i64::from(consecutive_success_limit)
                ),
            ));
        }
        if c < i64::from(inconclusive_limit) {
            issues.push((
                "count".into(),
                format!("count ({c}) must be at least inconclusiveLimit ({inconclusive_limit})"),
            ));
        }
    }

    match (issues.is_empty(), provider) {
        (true, Some(provider)) => Ok(MetricSpec {
            name,
            interval,
            initial_delay,
            count,
            success_condition,
            failure_condition,
            failure_limit,
            inconclusive_limit,
            consecutive_error_limit,
            consecutive_success_limit,
            provider,
        }),
        _ => Err(issues),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Provider;
    use serde_json::json;

    #[test]
    fn counts_and_defaults() {
        let m = decode_metric(
            &json!({"name": "m", "provider": {"weir": {"metric": "success-rate"}}}),
            false,
        )
        .unwrap();
        assert_eq!(m.effective_count(), Some(1));
        assert_eq!(m.failure_limit, 0);
        assert_eq!(m.consecutive_error_limit, 4);
        let m = decode_metric(
            &json!({"name": "m", "interval": "1m", "provider": {"weir": {"metric": "latency"}}}),
            false,
        )
        .unwrap();
        assert_eq!(
            m.effective_count(),
            None,
            "interval without count runs until stopped"
        );
        let m = decode_metric(&json!({"name": "m", "count": "3", "interval": "5s", "failureLimit": "1", "provider": {"weir": {"metric": "latency"}}}), false).unwrap();
        assert_eq!((m.effective_count(), m.failure_limit), (Some(3), 1));
    }

    #[test]
    fn argo_metric_rules() {
        let bad = [
            json!({"name": "m", "count": 2, "provider": {"weir": {"metric": "latency"}}}),
            json!({"name": "m", "count": 1, "interval": "5s", "failureLimit": 3, "provider": {"weir": {"metric": "latency"}}}),
            json!({"name": "m", "interval": "30", "provider": {"weir": {"metric": "latency"}}}),
            json!({"name": "m", "failureLimit": -1, "provider": {"weir": {"metric": "latency"}}}),
            json!({"name": "m", "provider": {"weir": {}, "web": {"url": "x"}}}),
            json!({"name": "m", "provider": {"datadog": {"query": "x"}}}),
            json!({"name": "m", "successCondition": "result[0] >=", "provider": {"weir": {"metric": "latency"}}}),
            json!({"name": "m", "provider": {"web": {"url": "http://x", "body": "b"}}}),
            json!(["not", "a", "mapping"]),
        ];
        for b in bad {
            assert!(decode_metric(&b, false).is_err(), "{b}");
        }
    }

    #[test]
    fn a_null_field_is_written_not_absent() {
        let e = decode_metric(
            &json!({"name": "m", "count": null, "provider": {"weir": {"metric": "latency"}}}),
            false,
        )
        .unwrap_err();
        assert_eq!(
            e,
            vec![("count".into(), "null is not a whole number".into())]
        );
    }

    #[test]
    fn the_prometheus_address_may_come_from_the_environment() {
        let m = json!({"name": "m", "provider": {"prometheus": {"query": "up"}}});
        let env = MetricEnv {
            prometheus_address: Some("http://prom:9090".into()),
        };
        match decode_metric_in(&m, false, &env).unwrap().provider {
            Provider::Prometheus(p) => assert_eq!(p.address, "http://prom:9090"),
            other => panic!("{other:?}"),
        }
        assert!(decode_metric_in(&m, false, &MetricEnv::default()).is_err());
    }
}
