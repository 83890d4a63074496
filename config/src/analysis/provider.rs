//! A metric's provider, from its serde mirror to a [`Provider`]: weir's own
//! measurements, Prometheus, web and job (run as a local command).

use std::time::Duration;

use crate::decode::metric::{HeaderDoc, JobDoc, PrometheusDoc, ProviderDoc, WebDoc, WeirDoc};
use crate::decode::scalar::{Int, IntOrString, List, Number, OrDefault, Str, Text};
use crate::defaults;
use crate::duration::parse_go;

use super::{
    JobProvider, JudgeSpec, MetricIssues, PrometheusProvider, Provider, WebProvider, WeirMetric,
    WeirProvider,
};

/// The environment variable Argo takes the Prometheus address from when a metric gives
/// none.
const PROMETHEUS_ADDRESS_VAR: &str = "ARGO_ROLLOUTS_PROMETHEUS_ADDRESS";

/// What a metric may take from the environment rather than from its template.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricEnv {
    /// `ARGO_ROLLOUTS_PROMETHEUS_ADDRESS`: the Prometheus address when a metric gives
    /// none.
    pub prometheus_address: Option<String>,
}

impl MetricEnv {
    /// This process's environment.
    pub fn from_process() -> MetricEnv {
        MetricEnv {
            prometheus_address: std::env::var(PROMETHEUS_ADDRESS_VAR).ok(),
        }
    }
}

/// A string field of a provider: a number or a bool is taken as its text.
fn text(
    v: &Option<Text>,
    base: &str,
    field: &str,
    issues: &mut MetricIssues,
    required: bool,
) -> Option<String> {
    match v {
        Some(Text::Text(s)) => Some(s.clone()),
        Some(Text::Other(other)) => {
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
    list: &List<OrDefault<HeaderDoc>>,
    base: &str,
    issues: &mut MetricIssues,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, OrDefault(h)) in list.0.iter().enumerate() {
        match (h.key.as_ref().and_then(Str::as_str), &h.value) {
            (Some(k), Some(v)) => out.push((k.to_owned(), v.0.clone())),
            _ => issues.push((
                format!("{base}.headers[{i}]"),
                "a header needs key and value".into(),
            )),
        }
    }
    out
}

/// A number of seconds (more than 0; 0 is the default).
fn secs(
    v: &Option<IntOrString>,
    base: &str,
    field: &str,
    default: Duration,
    deferred: bool,
    issues: &mut MetricIssues,
) -> Duration {
    let Some(v) = v else {
        return default;
    };
    if deferred && v.as_str().is_some_and(|s| s.contains("{{")) {
        return default;
    }
    match v.parse_i64() {
        Some(n) if n > 0 => match crate::duration::whole_seconds(n as u64) {
            Ok(d) => d,
            Err(e) => {
                issues.push((format!("{base}.{field}"), e.to_string()));
                default
            }
        },
        Some(0) => default,
        _ => {
            issues.push((
                format!("{base}.{field}"),
                format!("{v} is not a whole number of seconds (more than 0)"),
            ));
            default
        }
    }
}

/// One provider of a metric, `kind` with its `body`.
pub(super) fn decode_provider(
    kind: &str,
    body: &ProviderDoc,
    deferred: bool,
    env: &MetricEnv,
    issues: &mut MetricIssues,
) -> Option<Provider> {
    let base = format!("provider.{kind}");
    match body {
        ProviderDoc::Weir(w) => Some(Provider::Weir(weir(w, &base, issues))),
        ProviderDoc::Prometheus(p) => Some(Provider::Prometheus(prometheus(
            p, &base, deferred, env, issues,
        ))),
        ProviderDoc::Web(w) => Some(Provider::Web(web(w, &base, deferred, issues))),
        ProviderDoc::Job(j) => job(j, &base, issues).map(Provider::Job),
        ProviderDoc::Unsupported => {
            issues.push((
                base,
                format!("the {kind} provider is not supported: weir measures with weir, prometheus, web and job"),
            ));
            None
        }
    }
}

fn weir(w: &WeirDoc, base: &str, issues: &mut MetricIssues) -> WeirProvider {
    let metric = match w.metric.as_ref().and_then(Str::as_str) {
        Some("success-rate") => WeirMetric::SuccessRate,
        Some("error-rate") => WeirMetric::ErrorRate,
        Some("latency") => WeirMetric::Latency,
        Some("request-rate") => WeirMetric::RequestRate,
        Some("requests") => WeirMetric::Requests,
        Some("canary-vs-stable") => WeirMetric::CanaryVsStable,
        other => {
            issues.push((
                format!("{base}.metric"),
                format!(
                    "{} is not a weir metric: use success-rate, error-rate, latency, request-rate, requests or canary-vs-stable",
                    other.map_or("nothing".to_owned(), |s| format!("{s:?}"))
                ),
            ));
            WeirMetric::SuccessRate
        }
    };
    let quantile = match &w.quantile {
        None => defaults::WEIR_QUANTILE,
        Some(v) => match v.parse_f64() {
            Some(q) if (0.0..=1.0).contains(&q) => q,
            _ => {
                issues.push((
                    format!("{base}.quantile"),
                    format!("{v} is not a quantile between 0 and 1"),
                ));
                defaults::WEIR_QUANTILE
            }
        },
    };
    let canary = match w.role.as_ref().and_then(Str::as_str) {
        None => defaults::WEIR_ROLE_CANARY,
        Some("canary") => true,
        Some("stable") => false,
        Some(other) => {
            issues.push((
                format!("{base}.role"),
                format!("{other:?} is not a role: use canary or stable"),
            ));
            defaults::WEIR_ROLE_CANARY
        }
    };
    let window = match w.window.as_ref().and_then(Str::as_str) {
        None => defaults::WEIR_WINDOW,
        Some(s) => match parse_go(s) {
            Ok(d) if d >= defaults::WEIR_MIN_WINDOW && d <= defaults::WEIR_MAX_WINDOW => d,
            Ok(d) if d > defaults::WEIR_MAX_WINDOW => {
                issues.push((
                    format!("{base}.window"),
                    format!(
                        "{s} is longer than the {}m of history weir keeps; use 10m or less",
                        defaults::WEIR_MAX_WINDOW.as_secs() / 60
                    ),
                ));
                defaults::WEIR_WINDOW
            }
            Ok(_) => {
                issues.push((format!("{base}.window"), "the window is at least 1s".into()));
                defaults::WEIR_WINDOW
            }
            Err(e) => {
                issues.push((format!("{base}.window"), e.to_string()));
                defaults::WEIR_WINDOW
            }
        },
    };
    let min_requests = match &w.min_requests {
        None => defaults::WEIR_MIN_REQUESTS,
        Some(v) => match v {
            Int::Int(n) if *n >= 0 => *n as u64,
            _ => {
                issues.push((
                    format!("{base}.minRequests"),
                    format!("{v} is not a whole number"),
                ));
                defaults::WEIR_MIN_REQUESTS
            }
        },
    };
    let judge = judge(w, base, metric == WeirMetric::CanaryVsStable, issues);
    WeirProvider {
        metric,
        quantile,
        canary,
        window,
        min_requests,
        judge,
    }
}

/// The judge's fields of `provider.weir`; given for another metric, each is an issue
/// (it would do nothing).
fn judge(w: &WeirDoc, base: &str, is_judge: bool, issues: &mut MetricIssues) -> JudgeSpec {
    let mut given = Vec::new();
    let mut number = |field: &str,
                      v: &Option<Number>,
                      default: f64,
                      ok: fn(f64) -> bool,
                      allowed: &str,
                      issues: &mut MetricIssues| {
        let Some(v) = v else { return default };
        given.push(field.to_owned());
        match v.parse_f64() {
            Some(x) if ok(x) => x,
            _ => {
                issues.push((format!("{base}.{field}"), format!("{v} is not {allowed}")));
                default
            }
        }
    };
    let probability = |x: f64| x > 0.0 && x < 1.0;
    let alpha_fail = number(
        "alphaFail",
        &w.alpha_fail,
        defaults::JUDGE_ALPHA_FAIL,
        probability,
        "a probability between 0 and 1 (e.g. 0.001)",
        issues,
    );
    let alpha_pass = number(
        "alphaPass",
        &w.alpha_pass,
        defaults::JUDGE_ALPHA_PASS,
        probability,
        "a probability between 0 and 1 (e.g. 0.05)",
        issues,
    );
    let fail_tolerance = number(
        "failTolerance",
        &w.fail_tolerance,
        defaults::JUDGE_FAIL_TOLERANCE,
        |x| x >= 1.0 && x.is_finite(),
        "a ratio of 1 or more (e.g. 1.2: up to 20% more failures is not worse)",
        issues,
    );
    let error_margin = number(
        "errorMargin",
        &w.error_margin,
        defaults::JUDGE_ERROR_MARGIN,
        |x| x > 1.0 && x.is_finite(),
        "a ratio above 1 (e.g. 2: pass when the canary fails less than twice as often)",
        issues,
    );
    let error_budget = number(
        "errorBudget",
        &w.error_budget,
        defaults::JUDGE_ERROR_BUDGET,
        probability,
        "a rate between 0 and 1 (e.g. 0.001)",
        issues,
    );
    let latency_margin = number(
        "latencyMargin",
        &w.latency_margin,
        defaults::JUDGE_LATENCY_MARGIN,
        |x| x > 1.0 && x.is_finite(),
        "a ratio above 1 (e.g. 2)",
        issues,
    );
    let latency = match &w.latency {
        None => defaults::JUDGE_LATENCY,
        Some(v) => {
            given.push("latency".into());
            v.as_bool().unwrap_or_else(|| {
                issues.push((
                    format!("{base}.latency"),
                    format!("{v} is not true or false"),
                ));
                defaults::JUDGE_LATENCY
            })
        }
    };
    let mut duration =
        |field: &str, v: &Option<Str>, default: Duration, issues: &mut MetricIssues| {
            let Some(v) = v else { return default };
            given.push(field.to_owned());
            match v.as_str().map(parse_go) {
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    issues.push((format!("{base}.{field}"), e.to_string()));
                    default
                }
                None => {
                    issues.push((
                        format!("{base}.{field}"),
                        format!("{v} is not a duration: write one with a unit, e.g. \"30s\""),
                    ));
                    default
                }
            }
        };
    let latency_warmup = duration(
        "latencyWarmup",
        &w.latency_warmup,
        defaults::JUDGE_LATENCY_WARMUP,
        issues,
    );
    let min_duration = duration(
        "minDuration",
        &w.min_duration,
        defaults::JUDGE_MIN_DURATION,
        issues,
    );
    let max_wait = duration("maxWait", &w.max_wait, defaults::JUDGE_MAX_WAIT, issues);
    let min_canary_requests = match &w.min_canary_requests {
        None => defaults::JUDGE_MIN_CANARY_REQUESTS,
        Some(v) => {
            given.push("minCanaryRequests".into());
            match v {
                Int::Int(n) if *n >= 0 => *n as u64,
                _ => {
                    issues.push((
                        format!("{base}.minCanaryRequests"),
                        format!("{v} is not a whole number"),
                    ));
                    defaults::JUDGE_MIN_CANARY_REQUESTS
                }
            }
        }
    };
    if is_judge && max_wait.is_zero() {
        issues.push((
            format!("{base}.maxWait"),
            "maxWait is more than 0: the judge needs time to gather evidence".into(),
        ));
    }
    if !is_judge {
        for field in given {
            issues.push((
                format!("{base}.{field}"),
                format!("{field} is read only by metric: canary-vs-stable"),
            ));
        }
    }
    JudgeSpec {
        alpha_fail,
        alpha_pass,
        fail_tolerance,
        error_margin,
        error_budget,
        latency,
        latency_margin,
        latency_warmup,
        min_canary_requests,
        min_duration,
        max_wait,
    }
}

fn prometheus(
    p: &PrometheusDoc,
    base: &str,
    deferred: bool,
    env: &MetricEnv,
    issues: &mut MetricIssues,
) -> PrometheusProvider {
    let address = text(&p.address, base, "address", issues, false)
        .or_else(|| env.prometheus_address.clone())
        .unwrap_or_default();
    if address.is_empty() {
        issues.push((
            format!("{base}.address"),
            format!("address is required (or set {PROMETHEUS_ADDRESS_VAR})"),
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
    let query = text(&p.query, base, "query", issues, true).unwrap_or_default();
    let timeout = secs(
        &p.timeout,
        base,
        "timeout",
        defaults::PROMETHEUS_TIMEOUT,
        deferred,
        issues,
    );
    let range = p.range_query.as_ref().map(|r| {
        let str_or = |v: &Option<Str>, default: &str| {
            v.as_ref()
                .and_then(Str::as_str)
                .unwrap_or(default)
                .to_owned()
        };
        let start = str_or(&r.start, defaults::PROMETHEUS_RANGE_START);
        let end = str_or(&r.end, defaults::PROMETHEUS_RANGE_END);
        let step = match r.step.as_ref().and_then(Str::as_str) {
            Some(s) => parse_go(s).unwrap_or_else(|e| {
                issues.push((format!("{base}.rangeQuery.step"), e.to_string()));
                defaults::PROMETHEUS_RANGE_STEP
            }),
            None => defaults::PROMETHEUS_RANGE_STEP,
        };
        (start, end, step)
    });
    let basic_auth = p
        .authentication
        .as_ref()
        .and_then(|a| a.basic_auth.as_ref())
        .map(|OrDefault(b)| {
            let s = |v: &Option<Str>| v.as_ref().and_then(Str::as_str).unwrap_or("").to_owned();
            (s(&b.username), s(&b.password))
        });
    PrometheusProvider {
        address,
        query,
        timeout,
        insecure: p.insecure.0.unwrap_or(defaults::PROVIDER_INSECURE),
        headers: headers(&p.headers, base, issues),
        range,
        basic_auth,
    }
}

fn web(w: &WebDoc, base: &str, deferred: bool, issues: &mut MetricIssues) -> WebProvider {
    let url = text(&w.url, base, "url", issues, true).unwrap_or_default();
    let method = text(&w.method, base, "method", issues, false)
        .unwrap_or_else(|| defaults::WEB_METHOD.into())
        .to_ascii_uppercase();
    if !matches!(method.as_str(), "GET" | "POST" | "PUT") {
        issues.push((
            format!("{base}.method"),
            format!("{method} is not allowed: use GET, POST or PUT"),
        ));
    }
    let body = text(&w.body, base, "body", issues, false);
    let json_body = w.json_body.clone();
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
    let timeout = secs(
        &w.timeout_seconds,
        base,
        "timeoutSeconds",
        defaults::WEB_TIMEOUT,
        deferred,
        issues,
    );
    let headers = headers(&w.headers, base, issues);
    WebProvider {
        url,
        method,
        headers,
        body,
        json_body,
        timeout,
        json_path: text(&w.json_path, base, "jsonPath", issues, false),
        insecure: w.insecure.0.unwrap_or(defaults::PROVIDER_INSECURE),
    }
}

fn job(j: &JobDoc, base: &str, issues: &mut MetricIssues) -> Option<JobProvider> {
    let spec = j.spec.as_ref();
    let container = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.0.first());
    let Some(OrDefault(container)) = container else {
        issues.push((
            format!("{base}.spec.template.spec.containers"),
            "a job needs a container with a command".into(),
        ));
        return None;
    };
    let argv: Vec<String> = container
        .command
        .0
        .iter()
        .chain(&container.args.0)
        .map(|a| a.0.clone())
        .collect();
    if argv.is_empty() {
        issues.push((
            format!("{base}.spec.template.spec.containers[0].command"),
            "outside Kubernetes the container's command is what runs: give command (and args)"
                .into(),
        ));
    }
    let env = container
        .env
        .0
        .iter()
        .filter_map(|OrDefault(e)| {
            Some((
                e.name.as_ref()?.as_str()?.to_owned(),
                e.value
                    .as_ref()
                    .and_then(Str::as_str)
                    .unwrap_or("")
                    .to_owned(),
            ))
        })
        .collect();
    let backoff_limit = match spec.and_then(|s| s.backoff_limit.as_ref()) {
        Some(Int::Int(n)) if *n >= 0 => *n as u32,
        _ => defaults::JOB_BACKOFF_LIMIT,
    };
    Some(JobProvider {
        image: container
            .image
            .as_ref()
            .and_then(Str::as_str)
            .unwrap_or("")
            .to_owned(),
        argv,
        env,
        backoff_limit,
    })
}
