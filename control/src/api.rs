//! A rollout's state as the admin API, the CLI and the dashboard show it: one set of view
//! types, serialised by the server and deserialised by the CLI and the tests, so that
//! neither side reads fields back by string.

use serde::{Deserialize, Serialize};
use weir_config::model::Weight;
use weir_config::rollout::{Rollout, Strategy};

use crate::analysis::{AnalysisRun, Measurement, Ms, Phase};
use crate::engine::{TrafficPlan, desired_weight};
use crate::state::{Event, PauseCondition, Revision, RolloutPhase, RolloutStatus};

/// One rollout, as `GET /api/v1/rollouts/NAME` answers (spec.md's fields and more).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutView {
    /// The Rollout's name.
    pub name: String,
    /// `canary` or `blueGreen`.
    pub strategy: String,
    /// Healthy, Progressing, Paused or Degraded (none before the first turn).
    pub phase: Option<RolloutPhase>,
    /// Whether the current update was aborted.
    pub aborted: bool,
    /// Argo's status message (`RolloutAborted: ...`), empty when there is none.
    pub message: String,
    /// The canary step the rollout is at (canary only).
    pub current_step_index: Option<usize>,
    /// How many steps the canary strategy has.
    pub step_count: usize,
    /// Each step, described (`setWeight: 5%`, `pause: 30s`).
    pub steps: Vec<String>,
    /// The stable revision's image.
    pub stable_revision: Option<String>,
    /// The image being rolled out, while updating.
    pub canary_revision: Option<String>,
    /// The stable revision's number.
    pub stable_revision_number: Option<u64>,
    /// The current revision's number.
    pub current_revision_number: Option<u64>,
    /// Blue-green: the revision the active service serves.
    pub active_revision: Option<String>,
    /// Blue-green: the revision the preview service serves.
    pub preview_revision: Option<String>,
    /// The canary's share of traffic now, in percent.
    pub canary_weight: f64,
    /// The weight the current step asks for, in percent.
    pub set_weight: f64,
    /// The weight traffic actually gets, in percent (the same as `canaryWeight`).
    pub actual_weight: f64,
    /// Whether the rollout is paused (by a step, a user, or the spec).
    pub paused: bool,
    /// Why it is paused.
    pub pause_conditions: Vec<PauseCondition>,
    /// Whether the remaining steps are skipped (`promote --full`).
    pub promote_full: bool,
    /// Analysis runs in progress.
    pub analysis_runs: Vec<AnalysisRunView>,
    /// Finished analysis runs, newest first.
    pub past_analysis_runs: Vec<AnalysisRunView>,
    /// Earlier revisions, newest first.
    pub revisions: Vec<RevisionView>,
    /// Header routes set by `setHeaderRoute` steps.
    pub header_routes: Vec<String>,
    /// Mirror routes set by `setMirrorRoute` steps.
    pub mirror_routes: Vec<MirrorRouteView>,
    /// The timeline.
    pub events: Vec<Event>,
    /// When the state last changed (ms since the epoch).
    pub updated_at: Ms,
    /// What each revision is doing now, over the last minute (once the rollout has a
    /// state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<LiveStats>,
}

/// The stable and (while updating) the canary revision's traffic now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveStats {
    /// The stable revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<RevisionStats>,
    /// The canary revision, while updating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<RevisionStats>,
}

/// One revision's traffic over a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionStats {
    /// Its image.
    pub revision: String,
    /// Requests finished in the window.
    pub requests: u64,
    /// Requests per second.
    pub rps: f64,
    /// The share that succeeded (none without requests).
    pub success_rate: Option<f64>,
    /// The 99th percentile latency, in seconds (none without requests).
    pub p99: Option<f64>,
}

/// One point of a chart: a window's traffic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PointView {
    /// Requests finished in the window.
    pub requests: u64,
    /// Requests per second.
    pub rps: f64,
    /// The share that succeeded (none without requests).
    pub success_rate: Option<f64>,
    /// The 99th percentile latency, in seconds (none without requests).
    pub p99: Option<f64>,
}

impl PointView {
    /// The point of a sample.
    pub fn of(s: &crate::ports::Sample) -> PointView {
        PointView {
            requests: s.requests,
            rps: s.requests as f64 / s.seconds.max(1.0),
            success_rate: (s.requests > 0)
                .then(|| (s.requests - s.failures) as f64 / s.requests as f64),
            p99: s.latency,
        }
    }
}

/// A revision's chart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesView {
    /// Its image.
    pub revision: String,
    /// Oldest first, the last ending now.
    pub points: Vec<PointView>,
}

/// `GET /api/v1/rollouts/NAME/history`: the stable and canary revisions' traffic as time
/// series, for the dashboard's charts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryView {
    /// Seconds per point.
    pub step_seconds: f64,
    /// When the last point ends (ms since the epoch).
    pub end: Ms,
    /// The stable revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<SeriesView>,
    /// The canary revision, while updating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<SeriesView>,
}

/// One analysis run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunView {
    /// The run's name (`<rollout>-<hash>-<number>-<step>`).
    pub name: String,
    /// Step, Background, PrePromotion, PostPromotion, or Finished (past runs).
    pub kind: String,
    /// Its phase.
    pub phase: Phase,
    /// Why it ended as it did.
    pub message: String,
    /// When it started.
    pub started_at: Ms,
    /// When it ended.
    pub completed_at: Option<Ms>,
    /// Successful measurements over all metrics.
    pub successful: u32,
    /// Failed measurements.
    pub failed: u32,
    /// Inconclusive measurements.
    pub inconclusive: u32,
    /// Measurements that errored.
    pub error: u32,
    /// What the first waiting metric waits for.
    pub waiting: Option<String>,
    /// Each metric.
    pub metrics: Vec<MetricView>,
    /// The revision it measured.
    pub revision: Option<u64>,
}

/// One metric of an analysis run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricView {
    /// The metric's name.
    pub name: String,
    /// Its phase.
    pub phase: Phase,
    /// Whether its failures count (false) or are only recorded (true).
    pub dry_run: bool,
    /// Measurements taken.
    pub count: u32,
    /// Of which successful.
    pub successful: u32,
    /// Failed.
    pub failed: u32,
    /// Inconclusive.
    pub inconclusive: u32,
    /// Errored.
    pub error: u32,
    /// Errors in a row now.
    pub consecutive_error: u32,
    /// Why it ended as it did.
    pub message: Option<String>,
    /// What it waits for (data, an endpoint).
    pub waiting: Option<String>,
    /// The measurements kept, oldest first.
    pub measurements: Vec<Measurement>,
}

/// An earlier revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionView {
    /// Its number.
    pub number: u64,
    /// Its image.
    pub image: String,
    /// Its pod-template hash.
    pub hash: String,
}

/// A mirror route and the share of traffic it copies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MirrorRouteView {
    /// The route's name.
    pub name: String,
    /// Percent of matching requests copied.
    pub percentage: f64,
}

fn run_view(r: &AnalysisRun, kind: &str) -> AnalysisRunView {
    let (successful, failed, inconclusive, error) = r.tally();
    AnalysisRunView {
        name: r.name.clone(),
        kind: kind.to_owned(),
        phase: r.phase,
        message: r.message.clone(),
        started_at: r.started_at,
        completed_at: r.completed_at,
        successful,
        failed,
        inconclusive,
        error,
        waiting: r.waiting(),
        metrics: r
            .metrics
            .iter()
            .map(|m| MetricView {
                name: m.name.clone(),
                phase: m.phase,
                dry_run: m.dry_run,
                count: m.count,
                successful: m.successful,
                failed: m.failed,
                inconclusive: m.inconclusive,
                error: m.error,
                consecutive_error: m.consecutive_error,
                message: m.message.clone(),
                waiting: m.waiting.clone(),
                measurements: m.measurements.iter().cloned().collect(),
            })
            .collect(),
        revision: None,
    }
}

/// The view of one rollout.
pub fn status_view(st: &RolloutStatus, spec: &Rollout, plan: Option<&TrafficPlan>) -> RolloutView {
    let canary = matches!(spec.strategy, Strategy::Canary(_));
    let steps: Vec<String> = match &spec.strategy {
        Strategy::Canary(c) => c.steps.iter().map(|s| s.describe()).collect(),
        Strategy::BlueGreen(_) => Vec::new(),
    };
    let set_weight = match &spec.strategy {
        Strategy::Canary(c) => desired_weight(st, c),
        Strategy::BlueGreen(_) => Weight::ZERO,
    };
    let canary_weight = plan.map_or(Weight::ZERO, |p| p.canary_weight);
    let updating = st.updating();
    let mut runs: Vec<AnalysisRunView> = [
        (&st.step_run, "Step"),
        (&st.background_run, "Background"),
        (&st.pre_run, "PrePromotion"),
        (&st.post_run, "PostPromotion"),
    ]
    .into_iter()
    .filter_map(|(r, kind)| r.as_ref().map(|r| run_view(r, kind)))
    .collect();
    let mut past: Vec<AnalysisRunView> = st
        .past_runs
        .iter()
        .rev()
        .map(|r| run_view(r, "Finished"))
        .collect();
    // Which revision each run measured (run names start `<rollout>-<hash>-<number>`).
    let revision_of = |name: &str| {
        st.history
            .iter()
            .chain(st.current.iter())
            .find(|h| {
                name.strip_prefix(&format!("{}-{}-{}", st.name, h.hash, h.number))
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
            })
            .map(|h| h.number)
    };
    for r in runs.iter_mut().chain(past.iter_mut()) {
        r.revision = revision_of(&r.name);
    }
    let image = |r: Option<&Revision>| r.map(|r| r.image.clone());
    RolloutView {
        name: st.name.clone(),
        strategy: spec.strategy.name().to_owned(),
        phase: st.phase,
        aborted: st.aborted,
        message: st.message.clone(),
        current_step_index: if canary { st.current_step_index } else { None },
        step_count: steps.len(),
        steps,
        stable_revision: image(st.stable.as_ref()),
        canary_revision: if updating {
            image(st.current.as_ref())
        } else {
            None
        },
        stable_revision_number: st.stable.as_ref().map(|r| r.number),
        current_revision_number: st.current.as_ref().map(|r| r.number),
        active_revision: if canary {
            None
        } else {
            image(st.active.as_ref())
        },
        preview_revision: if canary {
            None
        } else {
            image(st.current.as_ref())
        },
        canary_weight: canary_weight.percent(),
        set_weight: set_weight.percent(),
        actual_weight: canary_weight.percent(),
        paused: st.manual_pause || spec.paused || !st.pause_conditions.is_empty(),
        pause_conditions: st.pause_conditions.clone(),
        promote_full: st.promote_full,
        analysis_runs: runs,
        past_analysis_runs: past,
        revisions: st
            .history
            .iter()
            .rev()
            .map(|r| RevisionView {
                number: r.number,
                image: r.image.clone(),
                hash: r.hash.clone(),
            })
            .collect(),
        header_routes: plan
            .map(|p| p.header_routes.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default(),
        mirror_routes: plan
            .map(|p| {
                p.mirror_routes
                    .iter()
                    .map(|(n, w, _)| MirrorRouteView {
                        name: n.clone(),
                        percentage: w.percent(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        events: st.events.iter().cloned().collect(),
        updated_at: st.updated_at,
        stats: None,
    }
}
