//! Analysis metrics: the typed form of one metric of an analysis template, decoded from
//! its JSON after `{{args.x}}` placeholders are resolved (Argo resolves them in any
//! string field, so typing has to wait for that): [`resolve_placeholders`], then
//! [`decode_metric`] (in `metric`), which reads the metric's serde mirror
//! (`decode::metric`) and applies Argo's rules and the [`crate::defaults`]. `weir check`
//! decodes the templates as written, letting fields that still hold a placeholder pass.

mod depth;
mod metric;
mod provider;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

pub use depth::{
    EXPRESSION_STACK, ExpressionError, MAX_EXPRESSION_COMPLEXITY, MAX_EXPRESSION_NESTING,
    check_expression_depth, compile_expression,
};
pub use metric::{decode_metric, decode_metric_in};
pub use provider::MetricEnv;

pub use crate::defaults::{
    CONSECUTIVE_ERROR_LIMIT, JOB_BACKOFF_LIMIT, PROMETHEUS_TIMEOUT, WEB_TIMEOUT, WEIR_MAX_WINDOW,
    WEIR_MIN_REQUESTS as MIN_REQUESTS, WEIR_WINDOW,
};

/// One metric, typed.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricSpec {
    /// Name, unique in a run.
    pub name: String,
    /// Gap between measurements.
    pub interval: Option<Duration>,
    /// Delay before the first measurement.
    pub initial_delay: Option<Duration>,
    /// Target number of measurements as written (`None`: unset).
    pub count: Option<u32>,
    /// Success condition (expr).
    pub success_condition: Option<String>,
    /// Failure condition (expr).
    pub failure_condition: Option<String>,
    /// Failures tolerated; -1 disables.
    pub failure_limit: i64,
    /// Inconclusive results tolerated.
    pub inconclusive_limit: u32,
    /// Errors in a row tolerated.
    pub consecutive_error_limit: u32,
    /// Successes in a row that end the metric (0: off).
    pub consecutive_success_limit: u32,
    /// Where the value comes from.
    pub provider: Provider,
}

impl MetricSpec {
    /// Argo's `EffectiveCount`: `Some(n)` measurements, or `None` for unbounded.
    pub fn effective_count(&self) -> Option<u32> {
        match (self.count, self.interval) {
            (None | Some(0), None) => Some(1),
            (None | Some(0), Some(_)) => None,
            (Some(n), _) => Some(n),
        }
    }
}

/// A metric's provider.
#[derive(Clone, Debug, PartialEq)]
pub enum Provider {
    /// weir's own measurements.
    Weir(WeirProvider),
    /// A Prometheus query.
    Prometheus(PrometheusProvider),
    /// An HTTP request.
    Web(WebProvider),
    /// A local command (Argo's Job).
    Job(JobProvider),
}

impl Provider {
    /// The provider's name.
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Weir(_) => "weir",
            Provider::Prometheus(_) => "prometheus",
            Provider::Web(_) => "web",
            Provider::Job(_) => "job",
        }
    }
}

/// What the built-in provider measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeirMetric {
    /// Successful share of requests.
    SuccessRate,
    /// Failed share of requests.
    ErrorRate,
    /// A latency quantile, seconds.
    Latency,
    /// Requests per second.
    RequestRate,
    /// Requests in the window.
    Requests,
    /// The canary-vs-stable judge: anytime-valid evidence that the canary fails (or is
    /// slow) more often than the stable revision, or not (`docs/judge.md`).
    CanaryVsStable,
}

/// The canary-vs-stable judge's settings (`metric: canary-vs-stable`; defaults in
/// [`crate::defaults`], meaning in `docs/judge.md`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JudgeSpec {
    /// `alphaFail`: bound on ever failing a canary no worse than `failTolerance`.
    pub alpha_fail: f64,
    /// `alphaPass`: bound on passing a canary worse than the margins.
    pub alpha_pass: f64,
    /// `failTolerance`: the ratio (canary over stable) that does not count as worse.
    pub fail_tolerance: f64,
    /// `errorMargin`: pass needs the failure ratio shown below this...
    pub error_margin: f64,
    /// `errorBudget`: ...or the canary's failure rate shown below this.
    pub error_budget: f64,
    /// `latency`: whether slow requests are judged too.
    pub latency: bool,
    /// `latencyMargin`: pass needs the slow-request ratio shown below this.
    pub latency_margin: f64,
    /// `latencyWarmup`: slow requests are not counted this long after the run starts.
    pub latency_warmup: Duration,
    /// `minCanaryRequests`: canary requests needed before a pass.
    pub min_canary_requests: u64,
    /// `minDuration`: time needed before a pass.
    pub min_duration: Duration,
    /// `maxWait`: without a verdict by then, the measurement is Inconclusive.
    pub max_wait: Duration,
}

/// The built-in provider.
#[derive(Clone, Debug, PartialEq)]
pub struct WeirProvider {
    /// What.
    pub metric: WeirMetric,
    /// For latency.
    pub quantile: f64,
    /// Canary (default) or stable.
    pub canary: bool,
    /// Look-back.
    pub window: Duration,
    /// Requests needed for a verdict.
    pub min_requests: u64,
    /// The judge's settings (read only by `canary-vs-stable`).
    pub judge: JudgeSpec,
}

/// The Prometheus provider.
#[derive(Clone, Debug, PartialEq)]
pub struct PrometheusProvider {
    /// Server URL.
    pub address: String,
    /// PromQL.
    pub query: String,
    /// Request timeout.
    pub timeout: Duration,
    /// Skip TLS verification.
    pub insecure: bool,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Range query, when given: (start expr, end expr, step).
    pub range: Option<(String, String, Duration)>,
    /// Basic auth (user, password).
    pub basic_auth: Option<(String, String)>,
}

/// The web provider.
#[derive(Clone, Debug, PartialEq)]
pub struct WebProvider {
    /// URL.
    pub url: String,
    /// GET, POST or PUT.
    pub method: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body (POST/PUT).
    pub body: Option<String>,
    /// JSON body (POST/PUT); sets the content type.
    pub json_body: Option<Value>,
    /// Timeout.
    pub timeout: Duration,
    /// k8s JSONPath, e.g. `{$.data.ok}`.
    pub json_path: Option<String>,
    /// Skip TLS verification.
    pub insecure: bool,
}

/// The job provider: the first container's command, run as a local process.
#[derive(Clone, Debug, PartialEq)]
pub struct JobProvider {
    /// The container's image (shown in messages; not pulled).
    pub image: String,
    /// `command` then `args`.
    pub argv: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Retries after a failure before the job counts as failed.
    pub backoff_limit: u32,
}

/// Problems found decoding a metric: (field path relative to the metric, message).
pub type MetricIssues = Vec<(String, String)>;

/// Replaces every `{{ args.NAME }}` in the string fields of `raw` with its value.
/// Values are put in as written (Argo JSON-escapes them into the serialized metric,
/// which comes to the same thing for string fields).
///
/// # Errors
/// The first placeholder that is not a known arg.
pub fn resolve_placeholders(
    raw: &Value,
    args: &BTreeMap<String, String>,
) -> Result<Value, PlaceholderError> {
    match raw {
        Value::String(s) => Ok(Value::String(resolve_str(s, args)?)),
        Value::Array(a) => a
            .iter()
            .map(|v| resolve_placeholders(v, args))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| Ok((k.clone(), resolve_placeholders(v, args)?)))
            .collect::<Result<serde_json::Map<_, _>, PlaceholderError>>()
            .map(Value::Object),
        other => Ok(other.clone()),
    }
}

/// A `{{ ... }}` placeholder that cannot be resolved (Argo's wording).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlaceholderError {
    /// `{{` without `}}`.
    #[error("failed to resolve {{{{{0}: no closing braces")]
    Unclosed(String),
    /// Not `args.NAME` of a known arg.
    #[error("failed to resolve {{{{{0}}}}}")]
    Unknown(String),
}

fn resolve_str(s: &str, args: &BTreeMap<String, String>) -> Result<String, PlaceholderError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(PlaceholderError::Unclosed(after.to_owned()));
        };
        let tag = after[..end].trim();
        match tag.strip_prefix("args.").and_then(|n| args.get(n)) {
            Some(v) => out.push_str(v),
            None => return Err(PlaceholderError::Unknown(tag.to_owned())),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_judge_has_default_conditions_and_checks_its_fields() {
        let m = decode_metric(
            &json!({"name": "j", "interval": "100ms", "count": 1, "provider": {"weir": {"metric": "canary-vs-stable", "alphaFail": 0.01, "maxWait": "5m", "latency": false}}}),
            false,
        )
        .unwrap();
        assert_eq!(m.interval, Some(std::time::Duration::from_millis(100)));
        assert_eq!(m.success_condition.as_deref(), Some("result == \"pass\""));
        assert_eq!(m.failure_condition.as_deref(), Some("result == \"fail\""));
        let Provider::Weir(w) = m.provider else {
            panic!("weir")
        };
        assert_eq!(w.metric, WeirMetric::CanaryVsStable);
        assert_eq!(w.judge.alpha_fail, 0.01);
        assert_eq!(w.judge.max_wait, std::time::Duration::from_secs(300));
        assert!(!w.judge.latency);
        assert_eq!(w.judge.min_canary_requests, 200);
        // A written condition is kept; the other one gets its default.
        let m = decode_metric(
            &json!({"name": "j", "successCondition": "result != \"fail\"", "provider": {"weir": {"metric": "canary-vs-stable"}}}),
            false,
        )
        .unwrap();
        assert_eq!(m.success_condition.as_deref(), Some("result != \"fail\""));
        assert_eq!(m.failure_condition.as_deref(), Some("result == \"fail\""));
        // Out-of-range values, and judge fields on another metric, are issues.
        let issues = decode_metric(
            &json!({"name": "j", "provider": {"weir": {"metric": "canary-vs-stable", "alphaFail": 2, "errorMargin": 1}}}),
            false,
        )
        .unwrap_err();
        let fields: Vec<&str> = issues.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            ["provider.weir.alphaFail", "provider.weir.errorMargin"]
        );
        let issues = decode_metric(
            &json!({"name": "s", "provider": {"weir": {"metric": "success-rate", "alphaFail": 0.01}}}),
            false,
        )
        .unwrap_err();
        assert_eq!(
            issues,
            vec![(
                "provider.weir.alphaFail".to_owned(),
                "alphaFail is read only by metric: canary-vs-stable".to_owned()
            )]
        );
    }

    #[test]
    fn placeholders() {
        let raw = json!({"q": "rate(x{service=\"{{args.service-name}}\"}[5m])", "n": 3, "l": ["{{ args.a }}"]});
        let args: BTreeMap<String, String> = [
            ("service-name".to_owned(), "api".to_owned()),
            ("a".to_owned(), "1".to_owned()),
        ]
        .into();
        let v = resolve_placeholders(&raw, &args).unwrap();
        assert_eq!(
            v,
            json!({"q": "rate(x{service=\"api\"}[5m])", "n": 3, "l": ["1"]})
        );
        assert_eq!(
            resolve_placeholders(&json!("{{args.missing}}"), &args)
                .unwrap_err()
                .to_string(),
            "failed to resolve {{args.missing}}"
        );
        assert!(resolve_placeholders(&json!("{{ templates.x }}"), &args).is_err());
        // Deferred decoding lets placeholders through.
        assert!(decode_metric(&json!({"name": "m", "count": "{{args.n}}", "interval": "{{args.i}}", "provider": {"prometheus": {"address": "{{args.a}}", "query": "q"}}}), true).is_ok());
    }
}
