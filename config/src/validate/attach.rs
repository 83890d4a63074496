//! HTTPRoutes into model routes: each route attaches to the Gateway listeners its
//! `parentRefs` select (by `sectionName` and `port`) that admit it (`allowedRoutes`) and
//! share a hostname with it; each rule becomes a model route on those listeners' model
//! listeners, for the intersected hostnames, with its backends resolved to model Services
//! (or to its Rollout, when the Rollout's Gateway API plugin names the route and the rule
//! goes between the Rollout's stable and canary Services).
//!
//! Routes are emitted in the order the documents were read, then rule order: the
//! Gateway API's tie-break ("the oldest route wins") for a file-configured proxy.
//!
//! A route that cannot attach is reported in its status and as a warning, and has no
//! model route; a rule whose backends do not resolve answers 500.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::decode::Findings;
use crate::decode::gateway as raw;
use crate::model::gateway::{condition as ty, reason};
use crate::model::{
    Condition, Filter, GatewayStatus, Mirror, Proxy, Route, RouteTarget, SectionStatus, Service,
    StatusKind, WeightedService,
};
use crate::read::Document;

use super::canary::Bindings;
use super::ctx::Ctx;
use super::endpoints::{Cluster, Resolved};
use super::filters::ParsedFilter;
use super::gateway::{GatewayListener, Gateways};
use super::hostnames;
use super::httproute::{ParsedParent, ParsedRoute, ParsedRule};
use super::memo::{self, Placed};

/// Where a route goes, shared by the parts that place it.
pub(super) struct Placement<'g, 'c, 's> {
    /// The Gateways.
    pub(super) gateways: &'g Gateways,
    /// The Kubernetes objects.
    pub(super) cluster: &'g mut Cluster<'c>,
    /// The Rollouts that split HTTPRoutes.
    pub(super) bindings: &'g Bindings,
    /// The model's Services, to which Kubernetes backends are added.
    pub(super) services: &'s mut BTreeMap<String, Arc<Service>>,
    /// How each backend resolved, in order, since this was last emptied (see `memo`).
    pub(super) uses: Vec<Resolved>,
}

impl Placement<'_, '_, '_> {
    /// [`Cluster::backend`], noted in [`Placement::uses`].
    fn backend(
        &mut self,
        ctx: &mut Ctx,
        from_ns: &str,
        r: &super::endpoints::BackendRef,
    ) -> Result<String, super::endpoints::Unresolved> {
        let (out, how) = self.cluster.backend_traced(ctx, from_ns, r, self.services);
        self.uses.push(how);
        out
    }
}

/// One listener a route is attached to: the model listener's index and name, the
/// hostnames the route takes there (`None`: every one), and the Gateway listener's own
/// hostname (its scope on the socket).
type Attachment = (usize, String, Option<Vec<String>>, Option<String>);

/// Validates the HTTPRoutes and appends their rules to `proxy.routes`.
pub(super) fn routes(
    ctx: &mut Ctx,
    docs: &[(Document, Arc<raw::HttpRouteDoc>)],
    place: &mut Placement<'_, '_, '_>,
    proxy: &mut Proxy,
    status: &mut Vec<GatewayStatus>,
    memo: &mut super::Memo,
) {
    // The hostnames of the Gateway listeners each model listener serves.
    let mut on_socket: BTreeMap<usize, Vec<Option<String>>> = BTreeMap::new();
    for gw in place.gateways.values() {
        for l in &gw.listeners {
            if let Some((i, _)) = &l.model {
                on_socket.entry(*i).or_default().push(l.hostname.clone());
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut bound: BTreeSet<(String, String, String)> = BTreeSet::new();
    for (doc, r) in docs {
        let Some(route) = memo.route(ctx, doc, r) else {
            continue;
        };
        if !seen.insert((route.namespace.clone(), route.name.clone())) {
            ctx.issue(
                doc,
                "metadata.name",
                format!(
                    "HTTPRoute {}/{} is defined twice",
                    route.namespace, route.name
                ),
            );
            continue;
        }
        if let Some(p) = memo.placed(r)
            && again(ctx, doc, &p, place, proxy, status, &mut bound)
        {
            continue;
        }
        // Attached anew, noting what it does, to be done again while nothing it depends
        // on changes.
        let (issues, notices) = (ctx.findings.issues.len(), ctx.findings.notices.len());
        let addresses = ctx.io.addresses.len();
        let services = place.services.len();
        place.uses.clear();
        let (routes_before, status_before) = (proxy.routes.len(), status.len());
        let mut mine = BTreeSet::new();
        let counted = one(
            ctx, doc, &route, place, &on_socket, proxy, status, &mut mine,
        );
        bound.extend(mine.iter().cloned());
        let built = place.services.len() != services
            || ctx.io.addresses.len() != addresses
            || place.uses.contains(&Resolved::Other);
        if built {
            memo.attached_anew();
        } else {
            memo.keep_placed(
                r,
                Placed {
                    uses: std::mem::take(&mut place.uses),
                    routes: proxy.routes[routes_before..].to_vec(),
                    status: status[status_before..].first().cloned(),
                    counted,
                    bound: mine.into_iter().collect(),
                    found: memo::unshifted(
                        doc,
                        Findings {
                            issues: ctx.findings.issues[issues..].to_vec(),
                            notices: ctx.findings.notices[notices..].to_vec(),
                        },
                    ),
                },
            );
        }
    }
    for ((ns, route), list) in place.bindings {
        for b in list {
            if !bound.contains(&(ns.clone(), route.clone(), b.rollout.clone())) {
                ctx.warn(&b.doc, &b.field, format!("no rule of HTTPRoute {ns}/{route} that weir serves has exactly {} and {} as its backends: Rollout {} splits nothing there", b.stable, b.canary, b.rollout));
            }
        }
    }
}

/// Does again what attaching an HTTPRoute did (`p`), when each backend it resolved
/// resolves the same way with nothing to build; false (and nothing done) otherwise.
fn again(
    ctx: &mut Ctx,
    doc: &Document,
    p: &Placed,
    place: &mut Placement<'_, '_, '_>,
    proxy: &mut Proxy,
    status: &mut Vec<GatewayStatus>,
    bound: &mut BTreeSet<(String, String, String)>,
) -> bool {
    if !p
        .uses
        .iter()
        .all(|u| Cluster::can_repeat(u, place.services))
    {
        return false;
    }
    for u in &p.uses {
        place.cluster.repeat(u);
    }
    for (s, l) in &p.counted {
        if let Some(n) = status[*s].sections[*l].attached_routes.as_mut() {
            *n += 1;
        }
    }
    status.extend(p.status.iter().cloned());
    proxy.routes.extend(p.routes.iter().cloned());
    bound.extend(p.bound.iter().cloned());
    memo::report(ctx, doc, &p.found);
    true
}

/// Attaches one HTTPRoute: its status, and its model routes. Returns the Gateway
/// listeners (status, section) that count it as attached.
#[allow(clippy::too_many_arguments)]
fn one(
    ctx: &mut Ctx,
    doc: &Document,
    route: &ParsedRoute,
    place: &mut Placement<'_, '_, '_>,
    on_socket: &BTreeMap<usize, Vec<Option<String>>>,
    proxy: &mut Proxy,
    status: &mut Vec<GatewayStatus>,
    bound: &mut BTreeSet<(String, String, String)>,
) -> Vec<(usize, usize)> {
    let unsupported: Vec<(String, String)> = route
        .rules
        .iter()
        .flat_map(|r| {
            r.filters
                .iter()
                .chain(r.backends.iter().flat_map(|b| b.filters.iter()))
        })
        .filter_map(|f| match f {
            ParsedFilter::Unsupported { what, field } => Some((what.clone(), field.clone())),
            _ => None,
        })
        .collect();
    for (what, field) in &unsupported {
        ctx.warn(
            doc,
            field,
            format!(
                "weir does not implement {what} filters: HTTPRoute {}/{} is not served",
                route.namespace, route.name
            ),
        );
    }
    let mut sections = Vec::new();
    let mut attached: Vec<Attachment> = Vec::new();
    let mut counted = BTreeSet::new();
    for p in &route.parents {
        let accepted = if let Some((what, _)) = unsupported.first() {
            Err(Some((
                reason::UNSUPPORTED_VALUE,
                format!("the {what} filter is not implemented by weir"),
            )))
        } else {
            attach(p, route, place, on_socket, &mut attached, &mut counted)
        };
        let accepted = match accepted {
            Ok(()) => Condition::yes(ty::ACCEPTED, reason::ACCEPTED, ""),
            Err(None) => continue, // a Gateway of another class: not weir's to report
            Err(Some((rsn, message))) => {
                ctx.warn(
                    doc,
                    &p.field,
                    format!(
                        "HTTPRoute {}/{} is not attached to {}: {message}",
                        route.namespace,
                        route.name,
                        p.label()
                    ),
                );
                Condition::no(ty::ACCEPTED, rsn, message)
            }
        };
        sections.push(SectionStatus {
            name: p.label(),
            attached_routes: None,
            conditions: vec![accepted],
        });
    }
    for (s, l) in &counted {
        if let Some(n) = status[*s].sections[*l].attached_routes.as_mut() {
            *n += 1;
        }
    }
    if !attached.is_empty() {
        let mut problems = Vec::new();
        emit(
            ctx,
            doc,
            route,
            place,
            &attached,
            proxy,
            &mut problems,
            bound,
        );
        let resolved = match problems.first() {
            None => Condition::yes(ty::RESOLVED_REFS, reason::RESOLVED_REFS, ""),
            Some((rsn, _)) => Condition::no(
                ty::RESOLVED_REFS,
                rsn,
                problems
                    .iter()
                    .map(|(_, m)| m.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        };
        for s in sections.iter_mut().filter(|s| s.conditions[0].status) {
            s.conditions.push(resolved.clone());
        }
    }
    // A route whose every parent is another controller's Gateway is not weir's to
    // report.
    if !sections.is_empty() || route.parents.is_empty() {
        status.push(GatewayStatus {
            kind: StatusKind::HttpRoute,
            namespace: route.namespace.clone(),
            name: route.name.clone(),
            conditions: Vec::new(),
            sections,
        });
    }
    counted.into_iter().collect()
}

/// Attaches `route` through parentRef `p`. `Err(None)`: the Gateway is another
/// controller's; `Err(Some(..))`: the reason and message it is not attached.
fn attach(
    p: &ParsedParent,
    route: &ParsedRoute,
    place: &Placement<'_, '_, '_>,
    on_socket: &BTreeMap<usize, Vec<Option<String>>>,
    attached: &mut Vec<Attachment>,
    counted: &mut BTreeSet<(usize, usize)>,
) -> Result<(), Option<(&'static str, String)>> {
    let no = |rsn, m: String| Err(Some((rsn, m)));
    if !p.gateway {
        return no(
            reason::UNSUPPORTED_VALUE,
            "weir attaches HTTPRoutes to Gateways only".to_owned(),
        );
    }
    let Some(gw) = place.gateways.get(&(p.namespace.clone(), p.name.clone())) else {
        return no(
            reason::NO_MATCHING_PARENT,
            format!(
                "there is no Gateway {}/{} in the configuration",
                p.namespace, p.name
            ),
        );
    };
    if !gw.served {
        return Err(None);
    }
    let candidates: Vec<&GatewayListener> = gw
        .listeners
        .iter()
        .filter(|l| {
            p.section.as_ref().is_none_or(|s| *s == l.name) && p.port.is_none_or(|x| x == l.port)
        })
        .collect();
    if candidates.is_empty() {
        let mut what = String::new();
        if let Some(s) = &p.section {
            what.push_str(&format!(" named {s:?}"));
        }
        if let Some(port) = p.port {
            what.push_str(&format!(" on port {port}"));
        }
        return no(
            reason::NO_MATCHING_PARENT,
            format!("Gateway {}/{} has no listener{what}", p.namespace, p.name),
        );
    }
    let allowed: Vec<&GatewayListener> = candidates
        .into_iter()
        .filter(|l| l.http_routes && l.admits(&p.namespace, &route.namespace, place.cluster))
        .collect();
    if allowed.is_empty() {
        return no(
            reason::NOT_ALLOWED_BY_LISTENERS,
            format!(
                "no listener of Gateway {}/{} admits HTTPRoutes of namespace {} (allowedRoutes)",
                p.namespace, p.name, route.namespace
            ),
        );
    }
    let with_hosts: Vec<(&GatewayListener, Vec<String>)> = allowed
        .into_iter()
        .filter_map(|l| {
            hostnames::intersect(l.hostname.as_deref(), &route.hostnames).map(|h| (l, h))
        })
        .collect();
    if with_hosts.is_empty() {
        return no(
            reason::NO_MATCHING_LISTENER_HOSTNAME,
            format!(
                "no hostname of the route ({}) is a hostname of the listeners",
                route.hostnames.join(", ")
            ),
        );
    }
    let mut any = false;
    for (l, hosts) in with_hosts {
        let Some((index, name)) = &l.model else {
            continue;
        };
        any = true;
        counted.insert(l.status);
        if let Some(h) = isolate(l, hosts, on_socket.get(index).map_or(&[][..], |v| v)) {
            attached.push((*index, name.clone(), h, l.hostname.clone()));
        }
    }
    if !any {
        return no(
            reason::NO_MATCHING_PARENT,
            format!(
                "the listeners of Gateway {}/{} the route would attach to are not served (see the Gateway's status)",
                p.namespace, p.name
            ),
        );
    }
    Ok(())
}

/// The hostnames a route attached to `l` takes, less those a more specific listener on
/// the same address claims (the Gateway API's listener isolation); `None` when nothing
/// is left, `Some(None)` for every hostname.
fn isolate(
    l: &GatewayListener,
    hosts: Vec<String>,
    others: &[Option<String>],
) -> Option<Option<Vec<String>>> {
    if hosts.is_empty() {
        return Some(None);
    }
    let mine = hostnames::specificity(l.hostname.as_deref());
    let kept: Vec<String> = hosts
        .into_iter()
        .filter(|h| {
            !others.iter().any(|o| {
                hostnames::specificity(o.as_deref()) > mine && hostnames::covers(o.as_deref(), h)
            })
        })
        .collect();
    (!kept.is_empty()).then_some(Some(kept))
}

/// Appends a model route per rule (and per set of hostnames, when the route takes
/// different hostnames on different model listeners).
#[allow(clippy::too_many_arguments)]
fn emit(
    ctx: &mut Ctx,
    doc: &Document,
    route: &ParsedRoute,
    place: &mut Placement<'_, '_, '_>,
    attached: &[Attachment],
    proxy: &mut Proxy,
    problems: &mut Vec<(&'static str, String)>,
    bound: &mut BTreeSet<(String, String, String)>,
) {
    // Per model listener, the union of the hostnames taken there, and of the Gateway
    // listener hostnames attached through.
    type Taken = (String, Option<Vec<String>>, Vec<Option<String>>);
    let mut per_listener: BTreeMap<usize, Taken> = BTreeMap::new();
    for (i, name, hosts, scope) in attached {
        let entry = per_listener
            .entry(*i)
            .or_insert_with(|| (name.clone(), Some(Vec::new()), Vec::new()));
        if !entry.2.contains(scope) {
            entry.2.push(scope.clone());
        }
        match (hosts, &mut entry.1) {
            (None, slot) => *slot = None,
            (Some(_), None) => {}
            (Some(h), Some(all)) => {
                for x in h {
                    if !all.contains(x) {
                        all.push(x.clone());
                    }
                }
            }
        }
    }
    // Model listeners that take the same hostnames through the same scopes share a
    // model route.
    type Group = (Option<Vec<String>>, Vec<Option<String>>, Vec<String>);
    let sorted = |g: &Option<Vec<String>>| {
        g.as_ref().map(|h| {
            let mut k = h.clone();
            k.sort();
            k
        })
    };
    let mut groups: Vec<Group> = Vec::new();
    for (_, (name, hosts, mut scope)) in per_listener {
        scope.sort();
        let key = sorted(&hosts);
        match groups
            .iter_mut()
            .find(|(h, s, _)| sorted(h) == key && *s == scope)
        {
            Some((_, _, listeners)) => listeners.push(name),
            None => groups.push((hosts, scope, vec![name])),
        }
    }
    for rule in &route.rules {
        let base = format!("{}/{}/{}", route.namespace, route.name, rule.name);
        let (filters, target) = resolve_rule(ctx, doc, route, rule, place, problems, bound);
        for (k, (hosts, scope, listeners)) in groups.iter().enumerate() {
            let name = if k == 0 {
                base.clone()
            } else {
                format!("{base}@{}", listeners[0])
            };
            proxy.routes.push(Arc::new(Route {
                name,
                hosts: hosts
                    .iter()
                    .flatten()
                    .map(|h| hostnames::host_match(h))
                    .collect(),
                matches: rule.matches.clone(),
                listeners: listeners.clone(),
                filters: filters.clone(),
                target: target.clone(),
                timeouts: rule.timeouts,
                max_body: None,
                steer: Vec::new(),
                affinity: rule.affinity.clone(),
                scope: scope
                    .iter()
                    .map(|h| h.as_deref().map(hostnames::host_match))
                    .collect(),
            }));
        }
    }
}

/// A rule's filters and target, its references resolved; what does not resolve is in
/// `problems` (and warned about at its field).
fn resolve_rule(
    ctx: &mut Ctx,
    doc: &Document,
    route: &ParsedRoute,
    rule: &ParsedRule,
    place: &mut Placement<'_, '_, '_>,
    problems: &mut Vec<(&'static str, String)>,
    bound: &mut BTreeSet<(String, String, String)>,
) -> (Vec<Filter>, RouteTarget) {
    let filters = resolve_filters(ctx, doc, &route.namespace, &rule.filters, place, problems);
    if rule.backends.is_empty() {
        let message = "no backendRefs".to_owned();
        return (
            filters,
            RouteTarget::Respond {
                status: 500,
                message,
            },
        );
    }
    // A rule between a Rollout's stable and canary Services is the Rollout's.
    let key = (route.namespace.clone(), route.name.clone());
    for b in place.bindings.get(&key).into_iter().flatten() {
        let names: BTreeSet<&str> = rule.backends.iter().map(|x| x.r.name.as_str()).collect();
        let plain = rule.backends.iter().all(|x| {
            x.r.group.is_empty() && x.r.kind == "Service" && x.r.namespace == route.namespace
        });
        if plain && names == BTreeSet::from([b.stable.as_str(), b.canary.as_str()]) {
            bound.insert((key.0.clone(), key.1.clone(), b.rollout.clone()));
            if rule.backends.iter().any(|x| !x.filters.is_empty()) {
                ctx.notice(doc, &rule.field, format!("backendRefs filters are not applied: Rollout {} splits this rule between its revisions", b.rollout));
            }
            return (filters, RouteTarget::Rollout(b.rollout.clone()));
        }
    }
    let mut legs = Vec::new();
    let mut invalid = Vec::new();
    for b in &rule.backends {
        match place.backend(ctx, &route.namespace, &b.r) {
            Ok(service) => {
                let filters =
                    resolve_filters(ctx, doc, &route.namespace, &b.filters, place, problems);
                legs.push(WeightedService {
                    service,
                    weight: b.weight,
                    filters,
                    invalid: None,
                });
            }
            Err(u) => {
                if b.weight > 0 {
                    ctx.warn(
                        doc,
                        &b.field,
                        format!(
                            "{}: its share of the requests for rule {:?} of HTTPRoute {}/{} answers 500",
                            u.message, rule.name, route.namespace, route.name
                        ),
                    );
                    invalid.push(u.reason);
                    legs.push(WeightedService {
                        service: String::new(),
                        weight: b.weight,
                        filters: Vec::new(),
                        invalid: Some(u.message.clone()),
                    });
                } else {
                    ctx.notice(
                        doc,
                        &b.field,
                        format!("{} (weight 0: it gets no request)", u.message),
                    );
                }
                problems.push((u.reason, u.message));
            }
        }
    }
    let target = if let Some(rsn) = invalid.first()
        && legs.iter().all(|l| l.invalid.is_some() || l.weight == 0)
    {
        // Nothing valid takes a request: the rule answers 500. With valid legs too,
        // only the invalid legs' share does.
        RouteTarget::Respond {
            status: 500,
            message: format!("invalid backend ({rsn})"),
        }
    } else if legs.iter().all(|l| l.weight == 0) {
        RouteTarget::Respond {
            status: 500,
            message: "every backend has weight 0".to_owned(),
        }
    } else {
        RouteTarget::Split(legs)
    };
    (filters, target)
}

fn resolve_filters(
    ctx: &mut Ctx,
    doc: &Document,
    route_ns: &str,
    list: &[ParsedFilter],
    place: &mut Placement<'_, '_, '_>,
    problems: &mut Vec<(&'static str, String)>,
) -> Vec<Filter> {
    let mut out = Vec::new();
    for f in list {
        match f {
            ParsedFilter::Ready(f) => out.push(f.clone()),
            ParsedFilter::Mirror { r, share, field } => match place.backend(ctx, route_ns, r) {
                Ok(service) => out.push(Filter::Mirror(Mirror {
                    service,
                    share: *share,
                })),
                Err(u) => {
                    ctx.warn(doc, field, format!("{}: the mirror is left out", u.message));
                    problems.push((u.reason, u.message));
                }
            },
            ParsedFilter::Unsupported { .. } => {}
        }
    }
    out
}
