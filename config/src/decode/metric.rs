//! Serde mirror of one metric of an `AnalysisTemplate` (`spec.metrics[]`).
//!
//! A template keeps its metrics as JSON, because `{{args.x}}` placeholders may stand in
//! any string field and are resolved when a run starts; `analysis::decode_metric` reads
//! the metric into these types then (and once at load time, placeholders left in place,
//! for the checks that can be made early). Argo reads metrics leniently, and so does
//! weir: every field here accepts anything, keeping what was written for the message, and
//! a list or a mapping that is something else reads as empty.

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};
use serde_json::Value;

use super::scalar::{AsText, Flag, Int, IntOrString, List, Number, OrDefault, Str, Text};
use super::scalar::{mapping, present};

/// One metric.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricDoc {
    /// Unique in a run.
    pub name: Option<Str>,
    /// Gap between measurements (a Go duration).
    #[serde(default, deserialize_with = "present")]
    pub interval: Option<Str>,
    /// Delay before the first measurement.
    #[serde(default, deserialize_with = "present")]
    pub initial_delay: Option<Str>,
    /// Measurements wanted (an integer, or a string holding one).
    #[serde(default, deserialize_with = "present")]
    pub count: Option<IntOrString>,
    /// Failures tolerated (-1: no limit).
    #[serde(default, deserialize_with = "present")]
    pub failure_limit: Option<IntOrString>,
    /// Inconclusive results tolerated.
    #[serde(default, deserialize_with = "present")]
    pub inconclusive_limit: Option<IntOrString>,
    /// Errors in a row tolerated.
    #[serde(default, deserialize_with = "present")]
    pub consecutive_error_limit: Option<IntOrString>,
    /// Successes in a row that end the metric.
    #[serde(default, deserialize_with = "present")]
    pub consecutive_success_limit: Option<IntOrString>,
    /// An expr expression over `result`.
    pub success_condition: Option<Str>,
    /// An expr expression over `result`.
    pub failure_condition: Option<Str>,
    /// Where the value comes from: a mapping with one provider.
    #[serde(default, deserialize_with = "mapping")]
    pub provider: Option<Providers>,
}

/// A metric's `provider` mapping: each key with its body, in the mapping's order (Argo
/// wants exactly one).
#[derive(Clone, Debug, Default)]
pub struct Providers(pub Vec<(String, ProviderDoc)>);

impl<'de> Deserialize<'de> for Providers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Value::Object(map) = Value::deserialize(d)? else {
            return Ok(Providers::default());
        };
        map.into_iter()
            .map(|(kind, body)| {
                let doc = ProviderDoc::read(&kind, body).map_err(D::Error::custom)?;
                Ok((kind, doc))
            })
            .collect::<Result<_, _>>()
            .map(Providers)
    }
}

/// One provider's body. A body that is not a mapping reads as an empty one.
#[derive(Clone, Debug)]
pub enum ProviderDoc {
    /// weir's own measurements.
    Weir(Box<WeirDoc>),
    /// A Prometheus query.
    Prometheus(PrometheusDoc),
    /// An HTTP request.
    Web(WebDoc),
    /// A Kubernetes Job, run as a local command.
    Job(JobDoc),
    /// A provider weir does not have.
    Unsupported,
}

impl ProviderDoc {
    fn read(kind: &str, body: Value) -> Result<ProviderDoc, serde_json::Error> {
        fn body_of<T: serde::de::DeserializeOwned + Default>(
            v: Value,
        ) -> Result<T, serde_json::Error> {
            OrDefault::<T>::deserialize(v).map(|b| b.0)
        }
        Ok(match kind {
            "weir" => ProviderDoc::Weir(Box::new(body_of(body)?)),
            "prometheus" => ProviderDoc::Prometheus(body_of(body)?),
            "web" => ProviderDoc::Web(body_of(body)?),
            "job" => ProviderDoc::Job(body_of(body)?),
            _ => ProviderDoc::Unsupported,
        })
    }
}

/// `provider.weir`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeirDoc {
    /// `success-rate`, `error-rate`, `latency`, `request-rate` or `requests`.
    pub metric: Option<Str>,
    /// The latency quantile (a number, or a string holding one).
    #[serde(default, deserialize_with = "present")]
    pub quantile: Option<Number>,
    /// `canary` or `stable`.
    pub role: Option<Str>,
    /// Look-back (a Go duration).
    pub window: Option<Str>,
    /// Requests needed for a verdict.
    #[serde(default, deserialize_with = "present")]
    pub min_requests: Option<Int>,
    /// Judge: bound on failing a healthy canary.
    #[serde(default, deserialize_with = "present")]
    pub alpha_fail: Option<Number>,
    /// Judge: bound on passing a bad canary.
    #[serde(default, deserialize_with = "present")]
    pub alpha_pass: Option<Number>,
    /// Judge: the ratio that is not worse.
    #[serde(default, deserialize_with = "present")]
    pub fail_tolerance: Option<Number>,
    /// Judge: the failure ratio a pass must rule out.
    #[serde(default, deserialize_with = "present")]
    pub error_margin: Option<Number>,
    /// Judge: the failure rate a pass may show instead.
    #[serde(default, deserialize_with = "present")]
    pub error_budget: Option<Number>,
    /// Judge: whether slow requests are judged.
    #[serde(default, deserialize_with = "present")]
    pub latency: Option<Value>,
    /// Judge: the slow-request ratio a pass must rule out.
    #[serde(default, deserialize_with = "present")]
    pub latency_margin: Option<Number>,
    /// Judge: slow requests count after this (a Go duration).
    pub latency_warmup: Option<Str>,
    /// Judge: canary requests before a pass.
    #[serde(default, deserialize_with = "present")]
    pub min_canary_requests: Option<Int>,
    /// Judge: time before a pass (a Go duration).
    pub min_duration: Option<Str>,
    /// Judge: time without a verdict before Inconclusive (a Go duration).
    pub max_wait: Option<Str>,
}

/// `provider.prometheus`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusDoc {
    /// Server URL.
    #[serde(default, deserialize_with = "present")]
    pub address: Option<Text>,
    /// PromQL.
    #[serde(default, deserialize_with = "present")]
    pub query: Option<Text>,
    /// Seconds.
    #[serde(default, deserialize_with = "present")]
    pub timeout: Option<IntOrString>,
    /// Skip TLS verification.
    #[serde(default)]
    pub insecure: Flag,
    /// Extra headers.
    #[serde(default)]
    pub headers: List<OrDefault<HeaderDoc>>,
    /// A range query.
    #[serde(default, deserialize_with = "mapping")]
    pub range_query: Option<RangeQueryDoc>,
    /// `authentication` (only `basicAuth` is read).
    #[serde(default, deserialize_with = "mapping")]
    pub authentication: Option<AuthenticationDoc>,
}

/// `rangeQuery`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeQueryDoc {
    /// An expr expression for the start.
    pub start: Option<Str>,
    /// An expr expression for the end.
    pub end: Option<Str>,
    /// The step (a Go duration).
    pub step: Option<Str>,
}

/// `authentication`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationDoc {
    /// Basic auth; given at all (even empty), it is used.
    #[serde(default, deserialize_with = "present")]
    pub basic_auth: Option<OrDefault<BasicAuthDoc>>,
}

/// `basicAuth`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuthDoc {
    /// User.
    pub username: Option<Str>,
    /// Password.
    pub password: Option<Str>,
}

/// A header of the Prometheus and web providers.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderDoc {
    /// Name.
    pub key: Option<Str>,
    /// Value (anything, taken as text).
    #[serde(default, deserialize_with = "present")]
    pub value: Option<AsText>,
}

/// `provider.web`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebDoc {
    /// URL.
    #[serde(default, deserialize_with = "present")]
    pub url: Option<Text>,
    /// GET, POST or PUT.
    #[serde(default, deserialize_with = "present")]
    pub method: Option<Text>,
    /// Headers.
    #[serde(default)]
    pub headers: List<OrDefault<HeaderDoc>>,
    /// Body.
    #[serde(default, deserialize_with = "present")]
    pub body: Option<Text>,
    /// A JSON body: any JSON, sent as it is.
    #[serde(default, deserialize_with = "present")]
    pub json_body: Option<Value>,
    /// Seconds.
    #[serde(default, deserialize_with = "present")]
    pub timeout_seconds: Option<IntOrString>,
    /// k8s JSONPath.
    #[serde(default, deserialize_with = "present")]
    pub json_path: Option<Text>,
    /// Skip TLS verification.
    #[serde(default)]
    pub insecure: Flag,
}

/// `provider.job`: a Kubernetes Job; its first container's command is what runs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDoc {
    /// The Job's spec.
    #[serde(default, deserialize_with = "mapping")]
    pub spec: Option<JobSpecDoc>,
}

/// A Job's spec.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSpecDoc {
    /// The pod template.
    #[serde(default, deserialize_with = "mapping")]
    pub template: Option<PodTemplateDoc>,
    /// Retries.
    pub backoff_limit: Option<Int>,
}

/// A pod template.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateDoc {
    /// The pod spec.
    #[serde(default, deserialize_with = "mapping")]
    pub spec: Option<PodSpecDoc>,
}

/// A pod spec.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpecDoc {
    /// Containers (the first one runs).
    #[serde(default)]
    pub containers: List<OrDefault<ContainerDoc>>,
}

/// A container.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDoc {
    /// Image (shown in messages).
    pub image: Option<Str>,
    /// Command.
    #[serde(default)]
    pub command: List<AsText>,
    /// Args after the command.
    #[serde(default)]
    pub args: List<AsText>,
    /// Environment.
    #[serde(default)]
    pub env: List<OrDefault<EnvDoc>>,
}

/// An environment variable.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvDoc {
    /// Name.
    pub name: Option<Str>,
    /// Value.
    pub value: Option<Str>,
}
