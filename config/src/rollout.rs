//! The validated model of Argo's kinds: Rollouts and analysis templates.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::model::weir::{HeaderMatch, Weight};

/// A Rollout, ready for the control loop.
#[derive(Clone, Debug, PartialEq)]
pub struct Rollout {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.annotations` (notification subscriptions).
    pub annotations: BTreeMap<String, String>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// The revision: the template's first container's image.
    pub image: String,
    /// A hash of `spec.template`: a new one starts a rollout, as in Argo.
    pub template_hash: String,
    /// The pod template (for `fieldRef` args and undo).
    pub template: Value,
    /// A hash of the steps: a change restarts the steps.
    pub steps_hash: String,
    /// `spec.paused`.
    pub paused: bool,
    /// `spec.progressDeadlineSeconds` (default 600 s).
    pub progress_deadline: Duration,
    /// `spec.progressDeadlineAbort`.
    pub progress_deadline_abort: bool,
    /// `spec.rollbackWindow.revisions`.
    pub rollback_window: Option<u32>,
    /// `spec.revisionHistoryLimit` (default 10).
    pub revision_history_limit: u32,
    /// `spec.analysis.successfulRunHistoryLimit` and `unsuccessfulRunHistoryLimit`
    /// (default 5 each): finished analysis runs kept in the status.
    pub run_history_limits: (u32, u32),
    /// Canary or blue-green.
    pub strategy: Strategy,
}

/// A Rollout's strategy.
#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    /// Canary.
    Canary(Canary),
    /// Blue-green.
    BlueGreen(BlueGreen),
}

impl Strategy {
    /// `canary` or `blueGreen`.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Canary(_) => "canary",
            Strategy::BlueGreen(_) => "blueGreen",
        }
    }
}

/// `strategy.canary`.
#[derive(Clone, Debug, PartialEq)]
pub struct Canary {
    /// Steps (possibly none: then the update goes straight to 100%).
    pub steps: Vec<Step>,
    /// Host that reaches the canary.
    pub canary_service: Option<String>,
    /// Host that reaches the stable revision.
    pub stable_service: Option<String>,
    /// Background analysis and the step it starts at.
    pub background: Option<(AnalysisRef, usize)>,
    /// Weight denominator (`trafficRouting.maxTrafficWeight`, default 100).
    pub max_traffic_weight: u32,
    /// Names of managed routes.
    pub managed_routes: Vec<String>,
    /// How long the previous stable stays reachable by `stableService`... after
    /// promotion (`scaleDownDelaySeconds`, default 30 s).
    pub scale_down_delay: Duration,
    /// How long an aborted canary stays reachable by `canaryService`
    /// (`abortScaleDownDelaySeconds`, default 30 s; zero means forever).
    pub abort_scale_down_delay: Duration,
}

/// One canary step.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// `setWeight`: the canary's share.
    SetWeight(Weight),
    /// `pause`: timed, or until promoted (`None`).
    Pause(Option<Duration>),
    /// `analysis`: a run that must succeed.
    Analysis(AnalysisRef),
    /// `setHeaderRoute`: matching requests go to the canary (no matches: remove).
    SetHeaderRoute {
        /// Managed route name.
        name: String,
        /// OR'd header conditions.
        matches: Vec<HeaderMatch>,
    },
    /// `setMirrorRoute`: copies of matching requests go to the canary (no matches:
    /// remove).
    SetMirrorRoute {
        /// Managed route name.
        name: String,
        /// Share of matching requests copied.
        percentage: Weight,
        /// OR'd match blocks.
        matches: Vec<MirrorMatch>,
    },
    /// `setCanaryScale`: changes pod counts in Argo; nothing to do without pods.
    SetCanaryScale,
}

impl Step {
    /// A short description, as `kubectl argo rollouts get` shows steps.
    pub fn describe(&self) -> String {
        match self {
            Step::SetWeight(w) => format!("setWeight: {w}"),
            Step::Pause(None) => "pause".to_owned(),
            Step::Pause(Some(d)) => format!("pause: {}", crate::duration::format(*d)),
            Step::Analysis(a) => format!(
                "analysis: {}",
                a.templates
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Step::SetHeaderRoute { name, .. } => format!("setHeaderRoute: {name}"),
            Step::SetMirrorRoute { name, .. } => format!("setMirrorRoute: {name}"),
            Step::SetCanaryScale => "setCanaryScale".to_owned(),
        }
    }
}

/// One `setMirrorRoute` match block: method, path and headers, all of which must hold.
#[derive(Clone, Debug)]
pub struct MirrorMatch {
    /// Method condition.
    pub method: Option<StringMatch>,
    /// Path condition.
    pub path: Option<StringMatch>,
    /// Header conditions.
    pub headers: Vec<HeaderMatch>,
}

impl PartialEq for MirrorMatch {
    fn eq(&self, other: &Self) -> bool {
        format!("{self:?}") == format!("{other:?}")
    }
}

/// Exact, prefix or regex.
#[derive(Clone, Debug)]
pub enum StringMatch {
    /// Equal.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Matches (anchored).
    Regex(regex::Regex),
}

impl StringMatch {
    /// Whether `s` passes.
    pub fn matches(&self, s: &str) -> bool {
        match self {
            StringMatch::Exact(e) => s == e,
            StringMatch::Prefix(p) => s.starts_with(p.as_str()),
            StringMatch::Regex(r) => r.is_match(s),
        }
    }
}

/// `strategy.blueGreen`.
#[derive(Clone, Debug, PartialEq)]
pub struct BlueGreen {
    /// Host that reaches the active revision.
    pub active_service: String,
    /// Host that reaches the preview (newest) revision.
    pub preview_service: Option<String>,
    /// Switch without waiting for promote (default true).
    pub auto_promotion_enabled: bool,
    /// With auto-promotion: pause this long first.
    pub auto_promotion_seconds: Option<Duration>,
    /// How long the old active stays reachable after the switch (default 30 s).
    pub scale_down_delay: Duration,
    /// How long an aborted preview stays reachable (default 30 s; zero: forever).
    pub abort_scale_down_delay: Duration,
    /// Analysis before the switch.
    pub pre_promotion: Option<AnalysisRef>,
    /// Analysis after the switch.
    pub post_promotion: Option<AnalysisRef>,
}

/// A reference to templates from a Rollout, with its args and options.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnalysisRef {
    /// Templates.
    pub templates: Vec<TemplateRef>,
    /// Rollout-side args.
    pub args: Vec<ArgSpec>,
    /// Dry-run selectors (unanchored regexes).
    pub dry_run: Vec<String>,
    /// Retention selectors: (regex, limit).
    pub measurement_retention: Vec<(String, u32)>,
}

/// A template reference.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TemplateRef {
    /// Name.
    pub name: String,
    /// A ClusterAnalysisTemplate.
    pub cluster: bool,
}

/// An arg: a value, a value from somewhere, or required (neither).
#[derive(Clone, Debug, PartialEq)]
pub struct ArgSpec {
    /// Name.
    pub name: String,
    /// Literal value.
    pub value: Option<String>,
    /// Where to take the value from.
    pub value_from: Option<ValueFrom>,
}

/// Sources of arg values.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueFrom {
    /// A Secret's key.
    SecretKeyRef {
        /// Secret name.
        name: String,
        /// Key.
        key: String,
    },
    /// A field of the Rollout (`metadata.name`, `metadata.labels['x']`, `spec...`).
    FieldRef(String),
    /// The stable (`true`) or latest revision's hash.
    PodTemplateHash {
        /// Stable rather than latest.
        stable: bool,
    },
}

/// An `AnalysisTemplate` or `ClusterAnalysisTemplate`.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisTemplate {
    /// Name.
    pub name: String,
    /// A ClusterAnalysisTemplate.
    pub cluster: bool,
    /// Metrics as written (placeholders resolved when a run starts).
    pub metrics: Vec<Value>,
    /// Args with defaults.
    pub args: Vec<ArgSpec>,
    /// Dry-run selectors.
    pub dry_run: Vec<String>,
    /// Retention selectors.
    pub measurement_retention: Vec<(String, u32)>,
    /// Included templates.
    pub templates: Vec<TemplateRef>,
}

/// The Argo side of a model: rollouts, templates, and the Kubernetes data they use.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Argo {
    /// Rollouts by name.
    pub rollouts: BTreeMap<String, Arc<Rollout>>,
    /// Templates by (cluster scope, name).
    pub templates: BTreeMap<TemplateRef, Arc<AnalysisTemplate>>,
    /// Secrets by name: key -> value.
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
}
