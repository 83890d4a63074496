//! Rollouts split through an HTTPRoute: the Argo Rollouts Gateway API plugin's
//! `trafficRouting.plugins["argoproj-labs/gatewayAPI"]` (`httpRoute`, or `httpRoutes`, and
//! `namespace`) names HTTPRoutes whose rules go between the Rollout's `stableService` and
//! `canaryService`. Those rules become the Rollout's routes ([`Bindings`]), so that its
//! steps, header routes and mirrors apply to them.

use std::collections::BTreeMap;

use serde::Deserialize;

use std::sync::Arc;

use crate::decode::argo::RolloutDoc;
use crate::decode::gateway::HttpRouteDoc;
use crate::read::Document;
use crate::rollout::Argo;

use super::ctx::Ctx;
use super::endpoints::namespace_of;

/// The plugin's name in `trafficRouting.plugins`.
pub(super) const GATEWAY_API_PLUGIN: &str = "argoproj-labs/gatewayAPI";

/// A Rollout that splits an HTTPRoute's rules.
#[derive(Clone, Debug)]
pub(super) struct Binding {
    /// The Rollout's name.
    pub(super) rollout: String,
    /// Its `stableService`.
    pub(super) stable: String,
    /// Its `canaryService`.
    pub(super) canary: String,
    /// Where the plugin is written (for a warning when no rule qualifies).
    pub(super) field: String,
    /// The Rollout's document.
    pub(super) doc: Document,
}

/// The Rollouts that split each HTTPRoute, by (namespace, name).
pub(super) type Bindings = BTreeMap<(String, String), Vec<Binding>>;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Plugin {
    http_route: Option<String>,
    #[serde(default)]
    http_routes: Vec<NamedRoute>,
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NamedRoute {
    name: Option<String>,
    #[allow(dead_code)]
    use_header_routes: Option<bool>,
}

/// The plugins' bindings, each checked (the HTTPRoute exists; the Rollout names both
/// role Services); and every Rollout role Service (namespace, name) with its Rollout's
/// name.
pub(super) fn bindings(
    ctx: &mut Ctx,
    rollouts: &[(Document, Arc<RolloutDoc>)],
    routes: &[(Document, Arc<HttpRouteDoc>)],
    argo: &Argo,
) -> (Bindings, BTreeMap<(String, String), String>) {
    let mut out = Bindings::new();
    let mut roles = BTreeMap::new();
    for (doc, r) in rollouts {
        let Some(name) = r.metadata.name.clone() else {
            continue;
        };
        let ns = namespace_of(r.metadata.namespace.as_deref());
        let strategy = r.spec.as_ref().and_then(|s| s.strategy.as_ref());
        let canary = strategy.and_then(|s| s.canary.as_ref());
        let blue_green = strategy.and_then(|s| s.blue_green.as_ref());
        let names = [
            canary.and_then(|c| c.stable_service.clone()),
            canary.and_then(|c| c.canary_service.clone()),
            blue_green.and_then(|b| b.active_service.clone()),
            blue_green.and_then(|b| b.preview_service.clone()),
        ];
        for s in names.into_iter().flatten() {
            roles.insert((ns.clone(), s), name.clone());
        }
        let Some(c) = canary else { continue };
        let Some(plugin) = c
            .traffic_routing
            .as_ref()
            .and_then(|t| t.plugins.as_ref())
            .and_then(|p| p.get(GATEWAY_API_PLUGIN))
        else {
            continue;
        };
        let field =
            format!("spec.strategy.canary.trafficRouting.plugins[\"{GATEWAY_API_PLUGIN}\"]");
        let p: Plugin = match serde_json::from_value(plugin.clone()) {
            Ok(p) => p,
            Err(e) => {
                ctx.issue(
                    doc,
                    &field,
                    format!("not the gatewayAPI plugin's configuration: {e}"),
                );
                continue;
            }
        };
        let route_ns = p.namespace.clone().unwrap_or_else(|| ns.clone());
        let mut named: Vec<(String, String)> = Vec::new();
        if let Some(h) = &p.http_route {
            named.push((format!("{field}.httpRoute"), h.clone()));
        }
        for (i, h) in p.http_routes.iter().enumerate() {
            match &h.name {
                Some(n) => named.push((format!("{field}.httpRoutes[{i}].name"), n.clone())),
                None => ctx.issue(
                    doc,
                    &format!("{field}.httpRoutes[{i}]"),
                    "an httpRoutes entry needs a name",
                ),
            }
        }
        if named.is_empty() {
            ctx.warn(doc, &field, "the gatewayAPI plugin names no httpRoute: weir splits HTTPRoutes only, so nothing is split here");
            continue;
        }
        let (Some(stable), Some(canary_svc)) = (c.stable_service.clone(), c.canary_service.clone())
        else {
            ctx.issue(doc, "spec.strategy.canary", "with the gatewayAPI plugin the Rollout needs stableService and canaryService: the HTTPRoute's backends between which weir splits");
            continue;
        };
        for (f, route) in named {
            let exists = routes.iter().any(|(_, h)| {
                h.metadata.name.as_deref() == Some(route.as_str())
                    && namespace_of(h.metadata.namespace.as_deref()) == route_ns
            });
            if !exists {
                ctx.issue(doc, &f, format!("HTTPRoute {route_ns}/{route} is not in the configuration: add it, or fix the name (the plugin's namespace is {route_ns})"));
                continue;
            }
            if argo.rollouts.contains_key(&name) {
                out.entry((route_ns.clone(), route))
                    .or_default()
                    .push(Binding {
                        rollout: name.clone(),
                        stable: stable.clone(),
                        canary: canary_svc.clone(),
                        field: f,
                        doc: doc.clone(),
                    });
            }
        }
    }
    (out, roles)
}

/// A Rollout that splits an Ingress's paths: Argo Rollouts' `trafficRouting.nginx`.
#[derive(Clone, Debug)]
pub(super) struct IngressBinding {
    /// The Rollout's name.
    pub(super) rollout: String,
    /// Its `stableService`: the paths whose backend it is are split.
    pub(super) stable: String,
    /// Its `canaryService`.
    pub(super) canary: String,
    /// The canary rules of `additionalIngressAnnotations` (canary-by-header, ...).
    pub(super) steer: Vec<crate::model::Steer>,
}

/// The Rollouts that split each Ingress, by (namespace, name).
pub(super) type IngressBindings = BTreeMap<(String, String), Vec<IngressBinding>>;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Nginx {
    stable_ingress: Option<String>,
    #[serde(default)]
    stable_ingresses: Vec<String>,
    annotation_prefix: Option<String>,
    #[serde(default)]
    additional_ingress_annotations: BTreeMap<String, String>,
    #[serde(default)]
    canary_ingress_annotations: BTreeMap<String, String>,
}

/// Argo's `trafficRouting.nginx` of every Rollout, checked: the Ingresses it names that
/// are in the configuration are split by the Rollout; when none is, the block is not
/// needed (weir routes the Rollout's own routes) and a notice says so.
pub(super) fn ingress_bindings(
    ctx: &mut Ctx,
    rollouts: &[(Document, std::sync::Arc<RolloutDoc>)],
    ingresses: &[(Document, std::sync::Arc<crate::decode::ingress::IngressDoc>)],
    argo: &Argo,
) -> IngressBindings {
    let mut out = IngressBindings::new();
    for (doc, r) in rollouts {
        let Some(name) = r.metadata.name.clone() else {
            continue;
        };
        let ns = namespace_of(r.metadata.namespace.as_deref());
        let Some(c) = r
            .spec
            .as_ref()
            .and_then(|s| s.strategy.as_ref())
            .and_then(|s| s.canary.as_ref())
        else {
            continue;
        };
        let Some(raw) = c.traffic_routing.as_ref().and_then(|t| t.nginx.as_ref()) else {
            continue;
        };
        let field = "spec.strategy.canary.trafficRouting.nginx";
        let n: Nginx = match serde_json::from_value(raw.clone()) {
            Ok(n) => n,
            Err(e) => {
                ctx.issue(doc, field, format!("not Argo's nginx traffic routing: {e}"));
                continue;
            }
        };
        let mut named: Vec<(String, String)> = Vec::new();
        if let Some(i) = &n.stable_ingress {
            named.push((format!("{field}.stableIngress"), i.clone()));
        }
        for (k, i) in n.stable_ingresses.iter().enumerate() {
            named.push((format!("{field}.stableIngresses[{k}]"), i.clone()));
        }
        if named.is_empty() {
            ctx.issue(doc, field, "trafficRouting.nginx needs stableIngress or stableIngresses, as Argo Rollouts does");
            continue;
        }
        let present: Vec<_> = named
            .iter()
            .filter(|(_, i)| {
                ingresses.iter().any(|(_, g)| {
                    g.metadata.name.as_deref() == Some(i.as_str())
                        && namespace_of(g.metadata.namespace.as_deref()) == ns
                })
            })
            .cloned()
            .collect();
        if present.is_empty() {
            ctx.notice(doc, field, format!(
                "trafficRouting.nginx is not needed: its Ingress {} is not in the configuration, so weir splits this Rollout's own routes itself",
                named.iter().map(|(_, i)| format!("{ns}/{i}")).collect::<Vec<_>>().join(", ")
            ));
            continue;
        }
        for (f, i) in &named {
            if !present.iter().any(|(_, p)| p == i) {
                ctx.warn(
                    doc,
                    f,
                    format!("Ingress {ns}/{i} is not in the configuration: nothing is split there"),
                );
            }
        }
        let (Some(stable), Some(canary_svc)) = (c.stable_service.clone(), c.canary_service.clone())
        else {
            ctx.issue(doc, "spec.strategy.canary", "with trafficRouting.nginx the Rollout needs stableService and canaryService, as Argo Rollouts does");
            continue;
        };
        let prefix = n
            .annotation_prefix
            .clone()
            .unwrap_or_else(|| "nginx.ingress.kubernetes.io".to_owned());
        if prefix != "nginx.ingress.kubernetes.io" {
            ctx.notice(doc, &format!("{field}.annotationPrefix"), format!("annotationPrefix {prefix}: weir reads the canary rules of additionalIngressAnnotations whatever the prefix"));
        }
        let steer = super::annotations::additional(
            ctx,
            doc,
            &format!("{field}.additionalIngressAnnotations"),
            &n.additional_ingress_annotations,
        );
        if !n.canary_ingress_annotations.is_empty() {
            ctx.warn(doc, &format!("{field}.canaryIngressAnnotations"), "canaryIngressAnnotations are not honoured: weir makes no canary Ingress; it splits the stable Ingress's paths itself");
        }
        if !argo.rollouts.contains_key(&name) {
            continue;
        }
        for (_, i) in present {
            out.entry((ns.clone(), i))
                .or_default()
                .push(IngressBinding {
                    rollout: name.clone(),
                    stable: stable.clone(),
                    canary: canary_svc.clone(),
                    steer: steer.clone(),
                });
        }
    }
    out
}
