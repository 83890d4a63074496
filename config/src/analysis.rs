//! Analysis metrics: the typed form of one metric of an analysis template, decoded from
//! its JSON after `{{args.x}}` placeholders are resolved (Argo resolves them in any
//! string field, so typing has to wait for that). `weir check` decodes the templates as
//! written, letting fields that still hold a placeholder pass.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::duration::parse_go;

/// Argo's default `consecutiveErrorLimit`.
pub const CONSECUTIVE_ERROR_LIMIT: u32 = 4;
/// Built-in provider: requests needed in the window before a verdict.
pub const MIN_REQUESTS: u64 = 20;
/// Built-in provider: the longest window (the data plane keeps ten minutes of history).
pub const WEIR_MAX_WINDOW: Duration = Duration::from_secs(600);
/// Built-in provider: default window.
pub const WEIR_WINDOW: Duration = Duration::from_secs(60);
/// Prometheus provider default timeout.
pub const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(30);
/// Web provider default timeout.
pub const WEB_TIMEOUT: Duration = Duration::from_secs(10);
/// Kubernetes' default Job `backoffLimit`.
pub const JOB_BACKOFF_LIMIT: u32 = 6;

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

/// Decodes a metric. With `deferred`, string fields that still hold a `{{...}}`
/// placeholder are accepted unchecked (for `weir check`), and placeholders are not
/// resolved.
///
/// # Errors
/// Every problem, with its field.
pub fn decode_metric(raw: &Value, deferred: bool) -> Result<MetricSpec, MetricIssues> {
    let mut issues = Vec::new();
    let obj = match raw.as_object() {
        Some(o) => o,
        None => return Err(vec![(String::new(), "a metric is a mapping".into())]),
    };
    let placeholder = |v: &Value| deferred && v.as_str().is_some_and(|s| s.contains("{{"));
    let name = match obj.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => {
            issues.push(("name".into(), "a metric needs a name".into()));
            String::new()
        }
    };
    let mut duration = |field: &str| -> Option<Duration> {
        let v = obj.get(field)?;
        if placeholder(v) {
            return None;
        }
        match v.as_str() {
            Some(s) => match parse_go(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    issues.push((field.into(), e.to_string()));
                    None
                }
            },
            None => {
                issues.push((
                    field.into(),
                    format!("{v} is not a duration: write one with a unit, e.g. \"30s\" (a bare number is not accepted, as in Argo)"),
                ));
                None
            }
        }
    };
    let interval = duration("interval");
    let initial_delay = duration("initialDelay");
    let mut int = |field: &str, default: i64, min: i64| -> i64 {
        let Some(v) = obj.get(field) else {
            return default;
        };
        if placeholder(v) {
            return default;
        }
        let parsed = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        match parsed {
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
    let count = obj
        .get("count")
        .filter(|v| !placeholder(v))
        .map(|_| int("count", 0, 0) as u32);
    let failure_limit = int("failureLimit", 0, -1);
    let inconclusive_limit = int("inconclusiveLimit", 0, 0) as u32;
    let consecutive_error_limit = int(
        "consecutiveErrorLimit",
        i64::from(CONSECUTIVE_ERROR_LIMIT),
        0,
    ) as u32;
    let consecutive_success_limit = int("consecutiveSuccessLimit", 0, 0) as u32;
    let condition = |field: &str, issues: &mut MetricIssues| -> Option<String> {
        let v = obj.get(field)?;
        let s = v.as_str().unwrap_or("").to_owned();
        if s.trim().is_empty() {
            return None;
        }
        if !(deferred && s.contains("{{"))
            && let Err(e) = expr::compile(&s)
        {
            issues.push((field.into(), format!("not a valid expression: {e}")));
        }
        Some(s)
    };
    let success_condition = condition("successCondition", &mut issues);
    let failure_condition = condition("failureCondition", &mut issues);

    let provider = match obj.get("provider").and_then(Value::as_object) {
        None => {
            issues.push(("provider".into(), "a metric needs a provider".into()));
            None
        }
        Some(p) => {
            let given: Vec<&String> = p.keys().collect();
            if given.len() != 1 {
                issues.push((
                    "provider".into(),
                    format!(
                        "a metric has exactly one provider; this one has {}",
                        if given.is_empty() {
                            "none".to_owned()
                        } else {
                            given
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                ));
                None
            } else {
                let (kind, body) = p.iter().next().expect("one key");
                decode_provider(kind, body, deferred, &mut issues)
            }
        }
    };

    // Argo's metric validation.
    if let Some(c) = count
        && c > 1
        && interval.is_none()
        && !obj.get("interval").is_some_and(placeholder)
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

fn str_field(
    obj: &serde_json::Map<String, Value>,
    base: &str,
    field: &str,
    issues: &mut MetricIssues,
    required: bool,
) -> Option<String> {
    match obj.get(field) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(other) => {
            issues.push((
                format!("{base}.{field}"),
                format!("{other} is not a string"),
            ));
            None
        }
        None => {
            if required {
                issues.push((format!("{base}.{field}"), format!("{field} is required")));
            }
            None
        }
    }
}

fn headers(
    obj: &serde_json::Map<String, Value>,
    base: &str,
    issues: &mut MetricIssues,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(list) = obj.get("headers").and_then(Value::as_array) {
        for (i, h) in list.iter().enumerate() {
            match (
                h.get("key").and_then(Value::as_str),
                h.get("value").map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                }),
            ) {
                (Some(k), Some(v)) => out.push((k.to_owned(), v)),
                _ => issues.push((
                    format!("{base}.headers[{i}]"),
                    "a header needs key and value".into(),
                )),
            }
        }
    }
    out
}

fn decode_provider(
    kind: &str,
    body: &Value,
    deferred: bool,
    issues: &mut MetricIssues,
) -> Option<Provider> {
    let base = format!("provider.{kind}");
    let empty = serde_json::Map::new();
    let obj = body.as_object().unwrap_or(&empty);
    let has_placeholder = |v: &Value| deferred && v.as_str().is_some_and(|s| s.contains("{{"));
    let secs = |field: &str, default: Duration, issues: &mut MetricIssues| -> Duration {
        match obj.get(field) {
            None => default,
            Some(v) if has_placeholder(v) => default,
            Some(v) => match v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            {
                Some(n) if n > 0 => Duration::from_secs(n as u64),
                Some(0) => default,
                _ => {
                    issues.push((
                        format!("{base}.{field}"),
                        format!("{v} is not a whole number of seconds (more than 0)"),
                    ));
                    default
                }
            },
        }
    };
    match kind {
        "weir" => {
            let metric = match obj.get("metric").and_then(Value::as_str) {
                Some("success-rate") => WeirMetric::SuccessRate,
                Some("error-rate") => WeirMetric::ErrorRate,
                Some("latency") => WeirMetric::Latency,
                Some("request-rate") => WeirMetric::RequestRate,
                Some("requests") => WeirMetric::Requests,
                other => {
                    issues.push((
                        format!("{base}.metric"),
                        format!(
                            "{} is not a weir metric: use success-rate, error-rate, latency, request-rate or requests",
                            other.map_or("nothing".to_owned(), |s| format!("{s:?}"))
                        ),
                    ));
                    WeirMetric::SuccessRate
                }
            };
            let quantile = match obj.get("quantile") {
                None => 0.99,
                Some(v) => match v
                    .as_f64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                {
                    Some(q) if (0.0..=1.0).contains(&q) => q,
                    _ => {
                        issues.push((
                            format!("{base}.quantile"),
                            format!("{v} is not a quantile between 0 and 1"),
                        ));
                        0.99
                    }
                },
            };
            let canary = match obj.get("role").and_then(Value::as_str) {
                None | Some("canary") => true,
                Some("stable") => false,
                Some(other) => {
                    issues.push((
                        format!("{base}.role"),
                        format!("{other:?} is not a role: use canary or stable"),
                    ));
                    true
                }
            };
            let window = match obj.get("window").and_then(Value::as_str) {
                None => WEIR_WINDOW,
                Some(s) => match parse_go(s) {
                    Ok(d) if d >= Duration::from_secs(1) && d <= WEIR_MAX_WINDOW => d,
                    Ok(d) if d > WEIR_MAX_WINDOW => {
                        issues.push((
                            format!("{base}.window"),
                            format!(
                                "{s} is longer than the {}m of history weir keeps; use 10m or less",
                                WEIR_MAX_WINDOW.as_secs() / 60
                            ),
                        ));
                        WEIR_WINDOW
                    }
                    Ok(_) => {
                        issues.push((format!("{base}.window"), "the window is at least 1s".into()));
                        WEIR_WINDOW
                    }
                    Err(e) => {
                        issues.push((format!("{base}.window"), e.to_string()));
                        WEIR_WINDOW
                    }
                },
            };
            let min_requests = match obj.get("minRequests") {
                None => MIN_REQUESTS,
                Some(v) => match v.as_u64() {
                    Some(n) => n,
                    None => {
                        issues.push((
                            format!("{base}.minRequests"),
                            format!("{v} is not a whole number"),
                        ));
                        MIN_REQUESTS
                    }
                },
            };
            Some(Provider::Weir(WeirProvider {
                metric,
                quantile,
                canary,
                window,
                min_requests,
            }))
        }
        "prometheus" => {
            let address = str_field(obj, &base, "address", issues, false)
                .or_else(|| std::env::var("ARGO_ROLLOUTS_PROMETHEUS_ADDRESS").ok())
                .unwrap_or_default();
            if address.is_empty() {
                issues.push((
                    format!("{base}.address"),
                    "address is required (or set ARGO_ROLLOUTS_PROMETHEUS_ADDRESS)".into(),
                ));
            } else if !(address.contains("{{")
                || address.starts_with("http://")
                || address.starts_with("https://"))
            {
                issues.push((
                    format!("{base}.address"),
                    format!("{address:?} needs a scheme and a host, e.g. http://prometheus:9090"),
                ));
            }
            let query = str_field(obj, &base, "query", issues, true).unwrap_or_default();
            let timeout = secs("timeout", PROMETHEUS_TIMEOUT, issues);
            let range = obj.get("rangeQuery").and_then(Value::as_object).map(|r| {
                let start = r
                    .get("start")
                    .and_then(Value::as_str)
                    .unwrap_or("now() - duration(\"5m\")")
                    .to_owned();
                let end = r
                    .get("end")
                    .and_then(Value::as_str)
                    .unwrap_or("now()")
                    .to_owned();
                let step = match r.get("step").and_then(Value::as_str) {
                    Some(s) => parse_go(s).unwrap_or_else(|e| {
                        issues.push((format!("{base}.rangeQuery.step"), e.to_string()));
                        Duration::from_secs(60)
                    }),
                    None => Duration::from_secs(60),
                };
                (start, end, step)
            });
            let basic_auth = obj
                .get("authentication")
                .and_then(|a| a.get("basicAuth"))
                .map(|b| {
                    (
                        b.get("username")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                        b.get("password")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                    )
                });
            Some(Provider::Prometheus(PrometheusProvider {
                address,
                query,
                timeout,
                insecure: obj
                    .get("insecure")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                headers: headers(obj, &base, issues),
                range,
                basic_auth,
            }))
        }
        "web" => {
            let url = str_field(obj, &base, "url", issues, true).unwrap_or_default();
            let method = str_field(obj, &base, "method", issues, false)
                .unwrap_or_else(|| "GET".into())
                .to_ascii_uppercase();
            if !matches!(method.as_str(), "GET" | "POST" | "PUT") {
                issues.push((
                    format!("{base}.method"),
                    format!("{method} is not allowed: use GET, POST or PUT"),
                ));
            }
            let body = str_field(obj, &base, "body", issues, false);
            let json_body = obj.get("jsonBody").cloned();
            if (body.is_some() || json_body.is_some()) && method == "GET" {
                issues.push((
                    format!("{base}.body"),
                    "a GET request has no body: use POST or PUT".into(),
                ));
            }
            if body.is_some() && json_body.is_some() {
                issues.push((
                    format!("{base}.jsonBody"),
                    "give body or jsonBody, not both".into(),
                ));
            }
            let timeout = secs("timeoutSeconds", WEB_TIMEOUT, issues);
            Some(Provider::Web(WebProvider {
                url,
                method,
                headers: headers(obj, &base, issues),
                body,
                json_body,
                timeout,
                json_path: str_field(obj, &base, "jsonPath", issues, false),
                insecure: obj
                    .get("insecure")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            }))
        }
        "job" => {
            let spec = obj.get("spec");
            let container = spec
                .and_then(|s| s.get("template"))
                .and_then(|t| t.get("spec"))
                .and_then(|s| s.get("containers"))
                .and_then(Value::as_array)
                .and_then(|c| c.first());
            let Some(container) = container else {
                issues.push((
                    format!("{base}.spec.template.spec.containers"),
                    "a job needs a container with a command".into(),
                ));
                return None;
            };
            let strings = |v: Option<&Value>| -> Vec<String> {
                v.and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|x| {
                                x.as_str()
                                    .map(str::to_owned)
                                    .unwrap_or_else(|| x.to_string())
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let mut argv = strings(container.get("command"));
            argv.extend(strings(container.get("args")));
            if argv.is_empty() {
                issues.push((
                    format!("{base}.spec.template.spec.containers[0].command"),
                    "outside Kubernetes the container's command is what runs: give command (and args)".into(),
                ));
            }
            let env = container
                .get("env")
                .and_then(Value::as_array)
                .map(|e| {
                    e.iter()
                        .filter_map(|x| {
                            Some((
                                x.get("name")?.as_str()?.to_owned(),
                                x.get("value")
                                    .and_then(Value::as_str)
                                    .unwrap_or("")
                                    .to_owned(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let backoff_limit = spec
                .and_then(|s| s.get("backoffLimit"))
                .and_then(Value::as_u64)
                .map_or(JOB_BACKOFF_LIMIT, |n| n as u32);
            Some(Provider::Job(JobProvider {
                image: container
                    .get("image")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                argv,
                env,
                backoff_limit,
            }))
        }
        other => {
            issues.push((
                base,
                format!("the {other} provider is not supported: weir measures with weir, prometheus, web and job"),
            ));
            None
        }
    }
}

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
        ];
        for b in bad {
            assert!(decode_metric(&b, false).is_err(), "{b}");
        }
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
