//! Serde mirrors of Argo Rollouts' kinds (`argoproj.io/v1alpha1`): `Rollout`,
//! `AnalysisTemplate` and `ClusterAnalysisTemplate`.
//!
//! Unknown fields are tolerated: real manifests carry many Kubernetes fields weir has no
//! use for. Scalars are typed ([`super::scalar`]); canary steps are a typed enum
//! ([`StepEntry`], [`CanaryStep`]). Two things stay JSON, on purpose: the pod template,
//! which weir hashes whole (any change starts an update, as in Argo) and which `fieldRef`
//! args read by any path at run time; and an analysis template's metrics, whose
//! `{{args.x}}` placeholders may stand in any field and are resolved when a run starts,
//! before `analysis::decode_metric` types them.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::Deserializer;
use serde_json::Value;

use super::kube::{LabelSelector, ObjectMeta};
use super::scalar::{Ignored, Int, IntOrString, Number, Text, Written};

/// The `apiVersion` of Argo Rollouts' kinds.
pub const ARGO_API: &str = "argoproj.io/v1alpha1";

/// A `Rollout` document.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutDoc {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: Option<RolloutSpec>,
}

/// `Rollout.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Pod count: no meaning without pods.
    pub replicas: Option<Int>,
    /// Label selector.
    pub selector: Option<LabelSelector>,
    /// The pod template; its first container's image is the revision.
    pub template: Option<Value>,
    /// Borrow the template from a Deployment.
    pub workload_ref: Option<WorkloadRef>,
    /// No meaning without pods.
    pub min_ready_seconds: Option<Int>,
    /// Old revisions remembered (for undo and the rollback window).
    pub revision_history_limit: Option<Int>,
    /// Manual pause.
    pub paused: Option<bool>,
    /// No-progress timeout, seconds.
    pub progress_deadline_seconds: Option<Int>,
    /// Abort when the deadline passes.
    pub progress_deadline_abort: Option<bool>,
    /// Rolling restart: no meaning without pods.
    pub restart_at: Option<Ignored>,
    /// Fast-track rollbacks to recent revisions.
    pub rollback_window: Option<RollbackWindow>,
    /// Analysis run history limits.
    pub analysis: Option<RunHistory>,
    /// The strategy.
    pub strategy: Option<Strategy>,
}

/// `spec.workloadRef`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// API version of the referenced object.
    pub api_version: Option<String>,
    /// Kind (Deployment, ReplicaSet, PodTemplate).
    pub kind: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// What happens to the referenced Deployment: no meaning without pods.
    pub scale_down: Option<String>,
}

/// `spec.rollbackWindow`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackWindow {
    /// How many recent revisions.
    pub revisions: Option<Int>,
}

/// `spec.analysis`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunHistory {
    /// Successful runs kept.
    pub successful_run_history_limit: Option<Int>,
    /// Unsuccessful runs kept.
    pub unsuccessful_run_history_limit: Option<Int>,
}

/// `spec.strategy`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    /// Canary.
    pub canary: Option<Canary>,
    /// Blue-green.
    pub blue_green: Option<BlueGreen>,
}

/// `spec.strategy.canary`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    /// Steps.
    pub steps: Option<Vec<StepEntry>>,
    /// Host that reaches the canary.
    pub canary_service: Option<String>,
    /// Host that reaches the stable revision.
    pub stable_service: Option<String>,
    /// Router configuration: weir routes itself.
    pub traffic_routing: Option<TrafficRouting>,
    /// Background analysis.
    pub analysis: Option<RolloutAnalysis>,
    /// No meaning without pods.
    pub max_surge: Option<IntOrString>,
    /// No meaning without pods.
    pub max_unavailable: Option<IntOrString>,
    /// How long the old stable stays reachable after promotion.
    pub scale_down_delay_seconds: Option<Int>,
    /// No meaning without pods.
    pub scale_down_delay_revision_limit: Option<Int>,
    /// How long an aborted canary stays reachable by its service name.
    pub abort_scale_down_delay_seconds: Option<Int>,
    /// No meaning without pods.
    pub dynamic_stable_scale: Option<bool>,
    /// No meaning without pods.
    pub min_pods_per_replica_set: Option<Int>,
    /// No meaning without pods.
    pub replica_progress_threshold: Option<Ignored>,
    /// No meaning without pods.
    pub canary_metadata: Option<Ignored>,
    /// No meaning without pods.
    pub stable_metadata: Option<Ignored>,
    /// No meaning without pods.
    pub anti_affinity: Option<Ignored>,
    /// Ping-pong services: weir routes itself.
    pub ping_pong: Option<Ignored>,
}

/// `trafficRouting`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficRouting {
    /// Routes the rollout may manage (setHeaderRoute / setMirrorRoute names).
    pub managed_routes: Option<Vec<ManagedRoute>>,
    /// The weight denominator.
    pub max_traffic_weight: Option<Int>,
    /// Traffic router plugins by name. `argoproj-labs/gatewayAPI` names the HTTPRoutes
    /// weir splits for this Rollout; the others are not needed. Each stays JSON until
    /// validation reads the one it knows.
    pub plugins: Option<BTreeMap<String, Value>>,
    /// ingress-nginx: `stableIngress` (or `stableIngresses`) names the Ingresses weir
    /// splits for this Rollout. Stays JSON until validation reads it.
    pub nginx: Option<Value>,
    /// Everything else (istio, nginx, traefik, ...), by router name: weir routes itself.
    #[serde(flatten)]
    pub routers: BTreeMap<String, Ignored>,
}

/// One `managedRoutes` entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRoute {
    /// Its name.
    pub name: Option<String>,
}

/// An analysis reference: step, background, pre- or post-promotion.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysis {
    /// Templates whose metrics make up the run.
    #[serde(default)]
    pub templates: Vec<TemplateRef>,
    /// Args for the templates.
    #[serde(default)]
    pub args: Vec<Arg>,
    /// Metrics (regexes) whose results do not count.
    #[serde(default)]
    pub dry_run: Vec<MetricSelector>,
    /// How many measurements to keep for metrics (regexes).
    #[serde(default)]
    pub measurement_retention: Vec<MetricSelector>,
    /// Labels and annotations of the run.
    pub analysis_run_metadata: Option<Ignored>,
    /// Background analysis only: the step it starts at.
    pub starting_step: Option<Int>,
}

/// `templates[]` of an analysis.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRef {
    /// Template name.
    pub template_name: Option<String>,
    /// A ClusterAnalysisTemplate.
    #[serde(default)]
    pub cluster_scope: bool,
}

/// An arg, on a template or a Rollout.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    /// Name.
    pub name: Option<String>,
    /// Value (a scalar; numbers are taken as their text).
    pub value: Option<Text>,
    /// Where the value comes from.
    pub value_from: Option<ArgValueFrom>,
}

/// `valueFrom` of an arg.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgValueFrom {
    /// A key of a Secret.
    pub secret_key_ref: Option<SecretKeyRef>,
    /// A field of the Rollout.
    pub field_ref: Option<FieldRef>,
    /// `Stable` or `Latest`: the revision hash.
    pub pod_template_hash_value: Option<String>,
}

/// `secretKeyRef`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: Option<String>,
    /// The key.
    pub key: Option<String>,
}

/// `fieldRef`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    /// The field path.
    pub field_path: Option<String>,
}

/// `dryRun[]` / `measurementRetention[]` entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricSelector {
    /// Unanchored regex over metric names.
    pub metric_name: Option<String>,
    /// measurementRetention only: how many to keep.
    pub limit: Option<Int>,
}

/// `spec.strategy.blueGreen`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreen {
    /// Host that reaches the active revision.
    pub active_service: Option<String>,
    /// Host that reaches the preview (newest) revision.
    pub preview_service: Option<String>,
    /// No meaning without pods.
    pub preview_replica_count: Option<Int>,
    /// Switch without waiting for promote.
    pub auto_promotion_enabled: Option<bool>,
    /// Switch automatically this long after the pause began.
    pub auto_promotion_seconds: Option<Int>,
    /// How long the old active stays reachable after the switch.
    pub scale_down_delay_seconds: Option<Int>,
    /// No meaning without pods.
    pub scale_down_delay_revision_limit: Option<Int>,
    /// How long an aborted preview stays reachable.
    pub abort_scale_down_delay_seconds: Option<Int>,
    /// Analysis before the switch.
    pub pre_promotion_analysis: Option<RolloutAnalysis>,
    /// Analysis after the switch.
    pub post_promotion_analysis: Option<RolloutAnalysis>,
    /// No meaning without pods.
    pub preview_metadata: Option<Ignored>,
    /// No meaning without pods.
    pub active_metadata: Option<Ignored>,
    /// No meaning without pods.
    pub anti_affinity: Option<Ignored>,
    /// No meaning without pods.
    pub max_unavailable: Option<IntOrString>,
}

/// One entry of `canary.steps` as written: Argo wants a mapping with exactly one step
/// kind, and validation says so when it is not (weir also lets `setCanaryScale` stand
/// beside another kind, as Argo's own examples do).
#[derive(Clone, Debug)]
pub enum StepEntry {
    /// Not a mapping.
    NotAMapping,
    /// A mapping.
    Mapping {
        /// Every key, step kind or not, in the order the mapping holds them.
        keys: Vec<String>,
        /// The step kinds among them, typed, in the same order.
        kinds: Vec<CanaryStep>,
    },
}

/// One canary step kind.
#[derive(Clone, Debug)]
pub enum CanaryStep {
    /// `setWeight`: the canary's share, out of `maxTrafficWeight`.
    SetWeight(Number),
    /// `pause`.
    Pause(Pause),
    /// `analysis`: a run that must succeed (or what is wrong with it).
    Analysis(Checked<RolloutAnalysis>),
    /// `experiment` (not supported).
    Experiment,
    /// `setCanaryScale`: pod counts, nothing to do without pods.
    SetCanaryScale,
    /// `setHeaderRoute` (or what is wrong with it).
    SetHeaderRoute(Checked<SetHeaderRoute>),
    /// `setMirrorRoute` (or what is wrong with it).
    SetMirrorRoute(Checked<SetMirrorRoute>),
    /// `plugin` (not supported).
    Plugin,
}

/// A step's body, or why it does not decode. The step's field is known to validation,
/// which reports the message there and checks the other steps.
pub type Checked<T> = Result<T, String>;

impl CanaryStep {
    /// The key it is written under.
    pub fn key(&self) -> &'static str {
        match self {
            CanaryStep::SetWeight(_) => "setWeight",
            CanaryStep::Pause(_) => "pause",
            CanaryStep::Analysis(_) => "analysis",
            CanaryStep::Experiment => "experiment",
            CanaryStep::SetCanaryScale => "setCanaryScale",
            CanaryStep::SetHeaderRoute(_) => "setHeaderRoute",
            CanaryStep::SetMirrorRoute(_) => "setMirrorRoute",
            CanaryStep::Plugin => "plugin",
        }
    }

    fn from_json(key: &str, v: Value) -> Option<CanaryStep> {
        fn checked<T: serde::de::DeserializeOwned>(v: Value) -> Checked<T> {
            serde_json::from_value(v).map_err(|e| e.to_string())
        }
        Some(match key {
            "setWeight" => CanaryStep::SetWeight(Number::deserialize(v).ok()?),
            "pause" => CanaryStep::Pause(match v {
                Value::Object(_) | Value::Null => Pause::Mapping {
                    duration: v
                        .get("duration")
                        .filter(|d| !d.is_null())
                        .and_then(|d| IntOrString::deserialize(d).ok()),
                },
                other => Pause::NotAMapping(Written::of(&other)),
            }),
            "analysis" => CanaryStep::Analysis(checked(v)),
            "experiment" => CanaryStep::Experiment,
            "setCanaryScale" => CanaryStep::SetCanaryScale,
            "setHeaderRoute" => CanaryStep::SetHeaderRoute(checked(v)),
            "setMirrorRoute" => CanaryStep::SetMirrorRoute(checked(v)),
            "plugin" => CanaryStep::Plugin,
            _ => return None,
        })
    }
}

impl<'de> Deserialize<'de> for StepEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Value::Object(map) = Value::deserialize(d)? else {
            return Ok(StepEntry::NotAMapping);
        };
        let keys = map.keys().cloned().collect();
        let kinds = map
            .into_iter()
            .filter_map(|(k, v)| CanaryStep::from_json(&k, v))
            .collect();
        Ok(StepEntry::Mapping { keys, kinds })
    }
}

/// `pause`.
#[derive(Clone, Debug)]
pub enum Pause {
    /// `pause: {}` (until promoted) or `pause: {duration: ...}`.
    Mapping {
        /// Seconds, or a Go duration.
        duration: Option<IntOrString>,
    },
    /// `pause: 10`: Argo refuses it, and so does weir, saying how to write it.
    NotAMapping(Written),
}

/// `setHeaderRoute`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetHeaderRoute {
    /// Managed route name.
    pub name: Option<String>,
    /// OR'd matches; none removes the route.
    #[serde(rename = "match")]
    pub matches: Option<Vec<HeaderRouteMatch>>,
}

/// One header match of `setHeaderRoute`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderRouteMatch {
    /// Header name.
    pub header_name: Option<String>,
    /// How its value is matched.
    pub header_value: Option<StringMatch>,
}

/// Exactly one of exact, prefix, regex.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StringMatch {
    /// Equal to.
    pub exact: Option<String>,
    /// Starts with.
    pub prefix: Option<String>,
    /// Matches.
    pub regex: Option<String>,
}

/// `setMirrorRoute`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetMirrorRoute {
    /// Managed route name.
    pub name: Option<String>,
    /// Percent of matching requests copied (default 100).
    pub percentage: Option<Number>,
    /// OR'd match blocks; none removes the route.
    #[serde(rename = "match")]
    pub matches: Option<Vec<MirrorMatch>>,
}

/// One match block of `setMirrorRoute` (conditions AND'd).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MirrorMatch {
    /// Method.
    pub method: Option<StringMatch>,
    /// Path.
    pub path: Option<StringMatch>,
    /// Headers by name.
    pub headers: Option<BTreeMap<String, StringMatch>>,
}

/// An `AnalysisTemplate` or `ClusterAnalysisTemplate` document.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateDoc {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: Option<AnalysisTemplateSpec>,
}

/// The spec of an analysis template.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateSpec {
    /// Metrics, kept as JSON: placeholders are resolved when a run starts.
    #[serde(default)]
    pub metrics: Vec<Value>,
    /// Args and their defaults.
    #[serde(default)]
    pub args: Vec<Arg>,
    /// Dry-run selectors.
    #[serde(default)]
    pub dry_run: Vec<MetricSelector>,
    /// Retention selectors.
    #[serde(default)]
    pub measurement_retention: Vec<MetricSelector>,
    /// Other templates to include.
    #[serde(default)]
    pub templates: Vec<TemplateRef>,
}
