//! A Rollout's strategy: canary (steps, traffic routing, background analysis) or
//! blue-green (services, promotion, pre- and post-promotion analysis).

use std::collections::BTreeSet;

use crate::decode::argo as raw;
use crate::defaults;
use crate::read::Document;
use crate::rollout::{Argo, BlueGreen, Canary};

use super::analysis::{AnalysisPlace, analysis_ref};
use super::ctx::{Ctx, int_field, secs_field};
use super::steps;

/// `strategy.canary`; `None` when it has an issue.
pub(super) fn canary(
    ctx: &mut Ctx,
    doc: &Document,
    c: &raw::Canary,
    argo: &Argo,
    not_applicable: &mut Vec<String>,
) -> Option<Canary> {
    let before = ctx.issue_count();
    for (f, present) in [
        ("maxSurge", c.max_surge.is_some()),
        ("maxUnavailable", c.max_unavailable.is_some()),
        (
            "scaleDownDelayRevisionLimit",
            c.scale_down_delay_revision_limit.is_some(),
        ),
        ("dynamicStableScale", c.dynamic_stable_scale.is_some()),
        ("minPodsPerReplicaSet", c.min_pods_per_replica_set.is_some()),
        (
            "replicaProgressThreshold",
            c.replica_progress_threshold.is_some(),
        ),
        (
            "scaleDownDelaySeconds",
            c.scale_down_delay_seconds.is_some(),
        ),
        (
            "abortScaleDownDelaySeconds",
            c.abort_scale_down_delay_seconds.is_some(),
        ),
        ("canaryMetadata", c.canary_metadata.is_some()),
        ("stableMetadata", c.stable_metadata.is_some()),
        ("antiAffinity", c.anti_affinity.is_some()),
        ("pingPong", c.ping_pong.is_some()),
    ] {
        if present {
            not_applicable.push(f.to_owned());
        }
    }
    if let (Some(a), Some(b)) = (&c.canary_service, &c.stable_service)
        && a == b
    {
        ctx.issue(
            doc,
            "spec.strategy.canary.stableService",
            "canaryService and stableService must differ",
        );
    }
    let mut max_traffic_weight = defaults::MAX_TRAFFIC_WEIGHT;
    let mut managed = None;
    if let Some(tr) = &c.traffic_routing {
        if let Some(m) = &tr.max_traffic_weight {
            match m.as_i64() {
                Some(n) if n > 0 => max_traffic_weight = n as u32,
                _ => ctx.issue(
                    doc,
                    "spec.strategy.canary.trafficRouting.maxTrafficWeight",
                    format!("{m} is not a whole number above 0"),
                ),
            }
        }
        if let Some(routes) = &tr.managed_routes {
            let mut set = BTreeSet::new();
            for (i, r) in routes.iter().enumerate() {
                match &r.name {
                    Some(n) => {
                        set.insert(n.clone());
                    }
                    None => ctx.issue(
                        doc,
                        &format!("spec.strategy.canary.trafficRouting.managedRoutes[{i}]"),
                        "a managed route needs a name",
                    ),
                }
            }
            managed = Some(set);
        }
        // trafficRouting.nginx names the Ingresses weir splits: validated with them
        // (validate::canary); the other routers are not needed.
        for router in tr.routers.keys() {
            ctx.notice(
                doc,
                &format!("spec.strategy.canary.trafficRouting.{router}"),
                format!("trafficRouting.{router} is not needed: weir routes this Rollout's traffic itself"),
            );
        }
        // The Gateway API plugin names the HTTPRoutes weir splits: validated with them
        // (validate::canary); any other plugin is not needed.
        for plugin in tr.plugins.iter().flat_map(|p| p.keys()) {
            if plugin != super::canary::GATEWAY_API_PLUGIN {
                ctx.notice(
                    doc,
                    &format!("spec.strategy.canary.trafficRouting.plugins[\"{plugin}\"]"),
                    format!("trafficRouting.plugins.{plugin} is not needed: weir routes this Rollout's traffic itself"),
                );
            }
        }
    }
    let steps = steps::steps(
        ctx,
        doc,
        c.steps.as_deref().unwrap_or(&[]),
        max_traffic_weight,
        managed.as_ref(),
        argo,
        not_applicable,
    );
    let background = match &c.analysis {
        None => None,
        Some(a) => {
            let starting = match &a.starting_step {
                None => defaults::STARTING_STEP,
                Some(v) => match v.as_i64() {
                    Some(n) if n >= 0 && (n as usize) <= steps.len() => n as usize,
                    _ => {
                        ctx.issue(
                            doc,
                            "spec.strategy.canary.analysis.startingStep",
                            format!("{v} is not a step index from 0 to {}", steps.len()),
                        );
                        defaults::STARTING_STEP
                    }
                },
            };
            Some((
                analysis_ref(
                    ctx,
                    doc,
                    "spec.strategy.canary.analysis",
                    a,
                    AnalysisPlace::Background,
                    argo,
                ),
                starting,
            ))
        }
    };
    let scale_down_delay = secs_field(
        ctx,
        doc,
        "spec.strategy.canary.scaleDownDelaySeconds",
        c.scale_down_delay_seconds.as_ref(),
        defaults::SCALE_DOWN_DELAY,
    );
    let abort_scale_down_delay = secs_field(
        ctx,
        doc,
        "spec.strategy.canary.abortScaleDownDelaySeconds",
        c.abort_scale_down_delay_seconds.as_ref(),
        defaults::SCALE_DOWN_DELAY,
    );
    (ctx.issue_count() == before).then(|| Canary {
        steps,
        canary_service: c.canary_service.clone(),
        stable_service: c.stable_service.clone(),
        background,
        max_traffic_weight,
        managed_routes: managed.map(|m| m.into_iter().collect()).unwrap_or_default(),
        scale_down_delay,
        abort_scale_down_delay,
    })
}

/// `strategy.blueGreen`; `None` when it has an issue.
pub(super) fn blue_green(
    ctx: &mut Ctx,
    doc: &Document,
    b: &raw::BlueGreen,
    argo: &Argo,
    not_applicable: &mut Vec<String>,
) -> Option<BlueGreen> {
    let before = ctx.issue_count();
    for (f, present) in [
        ("previewReplicaCount", b.preview_replica_count.is_some()),
        (
            "scaleDownDelayRevisionLimit",
            b.scale_down_delay_revision_limit.is_some(),
        ),
        (
            "abortScaleDownDelaySeconds",
            b.abort_scale_down_delay_seconds.is_some(),
        ),
        ("previewMetadata", b.preview_metadata.is_some()),
        ("activeMetadata", b.active_metadata.is_some()),
        ("antiAffinity", b.anti_affinity.is_some()),
        ("maxUnavailable", b.max_unavailable.is_some()),
    ] {
        if present {
            not_applicable.push(f.to_owned());
        }
    }
    let active = match &b.active_service {
        Some(a) if !a.is_empty() => a.clone(),
        _ => {
            ctx.issue(
                doc,
                "spec.strategy.blueGreen.activeService",
                "blueGreen needs activeService",
            );
            String::new()
        }
    };
    if b.preview_service.as_deref() == Some(active.as_str()) {
        ctx.issue(
            doc,
            "spec.strategy.blueGreen.previewService",
            "activeService and previewService must differ",
        );
    }
    let auto_promotion_seconds = match int_field(
        ctx,
        doc,
        "spec.strategy.blueGreen.autoPromotionSeconds",
        b.auto_promotion_seconds.as_ref(),
    ) {
        Some(n) if n > 0 => match crate::duration::whole_seconds(n as u64) {
            Ok(d) => Some(d),
            Err(e) => {
                ctx.issue(
                    doc,
                    "spec.strategy.blueGreen.autoPromotionSeconds",
                    e.to_string(),
                );
                None
            }
        },
        Some(n) if n < 0 => {
            ctx.issue(
                doc,
                "spec.strategy.blueGreen.autoPromotionSeconds",
                "must be 0 or more",
            );
            None
        }
        _ => None,
    };
    let pre = b.pre_promotion_analysis.as_ref().map(|a| {
        analysis_ref(
            ctx,
            doc,
            "spec.strategy.blueGreen.prePromotionAnalysis",
            a,
            AnalysisPlace::PrePromotion,
            argo,
        )
    });
    let post = b.post_promotion_analysis.as_ref().map(|a| {
        analysis_ref(
            ctx,
            doc,
            "spec.strategy.blueGreen.postPromotionAnalysis",
            a,
            AnalysisPlace::PostPromotion,
            argo,
        )
    });
    let scale_down_delay = secs_field(
        ctx,
        doc,
        "spec.strategy.blueGreen.scaleDownDelaySeconds",
        b.scale_down_delay_seconds.as_ref(),
        defaults::SCALE_DOWN_DELAY,
    );
    let abort_scale_down_delay = secs_field(
        ctx,
        doc,
        "spec.strategy.blueGreen.abortScaleDownDelaySeconds",
        b.abort_scale_down_delay_seconds.as_ref(),
        defaults::SCALE_DOWN_DELAY,
    );
    (ctx.issue_count() == before).then(|| BlueGreen {
        active_service: active,
        preview_service: b.preview_service.clone(),
        auto_promotion_enabled: b
            .auto_promotion_enabled
            .unwrap_or(defaults::AUTO_PROMOTION_ENABLED),
        auto_promotion_seconds,
        scale_down_delay,
        abort_scale_down_delay,
        pre_promotion: pre,
        post_promotion: post,
    })
}
