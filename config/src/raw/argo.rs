//! Serde mirrors of Argo Rollouts' kinds (`argoproj.io/v1alpha1`): `Rollout`,
//! `AnalysisTemplate`, `ClusterAnalysisTemplate`, and the Kubernetes kinds a Rollout may
//! draw on (`Secret` for `secretKeyRef` args, `Deployment` for `workloadRef`).
//!
//! Unknown fields are tolerated: real manifests carry many Kubernetes fields weir has no
//! use for. Fields that may be an integer or a string (Kubernetes' IntOrString) and
//! fields that are templated at run time are kept as JSON values and checked by
//! `validate`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// Kubernetes object metadata.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Name.
    pub name: Option<String>,
    /// Namespace (kept for messages; weir has one namespace).
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations (notification subscriptions live here).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

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
    pub replicas: Option<Value>,
    /// Label selector.
    pub selector: Option<Value>,
    /// The pod template; its first container's image is the revision.
    pub template: Option<Value>,
    /// Borrow the template from a Deployment.
    pub workload_ref: Option<WorkloadRef>,
    /// No meaning without pods.
    pub min_ready_seconds: Option<Value>,
    /// Old revisions remembered (for undo and the rollback window).
    pub revision_history_limit: Option<Value>,
    /// Manual pause.
    pub paused: Option<bool>,
    /// No-progress timeout, seconds.
    pub progress_deadline_seconds: Option<Value>,
    /// Abort when the deadline passes.
    pub progress_deadline_abort: Option<bool>,
    /// Rolling restart: no meaning without pods.
    pub restart_at: Option<Value>,
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
    pub revisions: Option<Value>,
}

/// `spec.analysis`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunHistory {
    /// Successful runs kept.
    pub successful_run_history_limit: Option<Value>,
    /// Unsuccessful runs kept.
    pub unsuccessful_run_history_limit: Option<Value>,
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
    pub steps: Option<Vec<Value>>,
    /// Host that reaches the canary.
    pub canary_service: Option<String>,
    /// Host that reaches the stable revision.
    pub stable_service: Option<String>,
    /// Router configuration: weir routes itself.
    pub traffic_routing: Option<TrafficRouting>,
    /// Background analysis.
    pub analysis: Option<RolloutAnalysis>,
    /// No meaning without pods.
    pub max_surge: Option<Value>,
    /// No meaning without pods.
    pub max_unavailable: Option<Value>,
    /// How long the old stable stays reachable after promotion.
    pub scale_down_delay_seconds: Option<Value>,
    /// No meaning without pods.
    pub scale_down_delay_revision_limit: Option<Value>,
    /// How long an aborted canary stays reachable by its service name.
    pub abort_scale_down_delay_seconds: Option<Value>,
    /// No meaning without pods.
    pub dynamic_stable_scale: Option<bool>,
    /// No meaning without pods.
    pub min_pods_per_replica_set: Option<Value>,
    /// No meaning without pods.
    pub replica_progress_threshold: Option<Value>,
    /// No meaning without pods.
    pub canary_metadata: Option<Value>,
    /// No meaning without pods.
    pub stable_metadata: Option<Value>,
    /// No meaning without pods.
    pub anti_affinity: Option<Value>,
    /// Ping-pong services: weir routes itself.
    pub ping_pong: Option<Value>,
}

/// `trafficRouting`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficRouting {
    /// Routes the rollout may manage (setHeaderRoute / setMirrorRoute names).
    pub managed_routes: Option<Vec<ManagedRoute>>,
    /// The weight denominator.
    pub max_traffic_weight: Option<Value>,
    /// Everything else (istio, nginx, traefik, ...), by router name.
    #[serde(flatten)]
    pub routers: BTreeMap<String, Value>,
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
    pub analysis_run_metadata: Option<Value>,
    /// Background analysis only: the step it starts at.
    pub starting_step: Option<Value>,
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
    pub value: Option<Value>,
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
    pub limit: Option<Value>,
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
    pub preview_replica_count: Option<Value>,
    /// Switch without waiting for promote.
    pub auto_promotion_enabled: Option<bool>,
    /// Switch automatically this long after the pause began.
    pub auto_promotion_seconds: Option<Value>,
    /// How long the old active stays reachable after the switch.
    pub scale_down_delay_seconds: Option<Value>,
    /// No meaning without pods.
    pub scale_down_delay_revision_limit: Option<Value>,
    /// How long an aborted preview stays reachable.
    pub abort_scale_down_delay_seconds: Option<Value>,
    /// Analysis before the switch.
    pub pre_promotion_analysis: Option<RolloutAnalysis>,
    /// Analysis after the switch.
    pub post_promotion_analysis: Option<RolloutAnalysis>,
    /// No meaning without pods.
    pub preview_metadata: Option<Value>,
    /// No meaning without pods.
    pub active_metadata: Option<Value>,
    /// No meaning without pods.
    pub anti_affinity: Option<Value>,
    /// No meaning without pods.
    pub max_unavailable: Option<Value>,
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
    pub percentage: Option<Value>,
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

/// A Kubernetes `Secret` (for `secretKeyRef` args).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretDoc {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Base64 values.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// Plain values.
    #[serde(default)]
    pub string_data: BTreeMap<String, String>,
}

/// A Kubernetes `Deployment` (for `workloadRef`): only its template is used.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentDoc {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: Option<DeploymentSpec>,
}

/// `Deployment.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// The pod template.
    pub template: Option<Value>,
}
