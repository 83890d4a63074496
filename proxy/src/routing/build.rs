//! Building a [`RouteTable`] from the model and the rollouts' traffic state. Pure apart
//! from the registries it draws long-lived parts from (stats cells, connection pools,
//! split counters, TLS acceptors), so that those survive every rebuild.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use weir_config::Model;
use weir_config::model::{
    Filter, HeaderMatch, HeaderModifier, HostMatch, PathMatch, RouteTarget, RouteTimeouts, Service,
    Tls, Weight,
};

use super::split::{Counter, Split};
use super::{
    Backend, Claim, Group, Index, ListenerEntry, Matcher, RouteEntry, RouteFilters, RouteTable,
    SplitTarget, Target,
};
use crate::access_log::AccessLogSink;
use crate::error::{BuildError, Kind};
use crate::stats::{CellKey, Role, Stats};
use crate::tls::TlsAcceptor;
use crate::upstream::Upstreams;

/// The name a leg that does not resolve is measured under.
const INVALID_BACKEND: &str = "(invalid backend)";

/// What the control loop decides for one Rollout: which revisions get which traffic.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutTraffic {
    /// The Service whose endpoints serve the Rollout (same name as the Rollout).
    pub service: String,
    /// The stable revision (image).
    pub stable: String,
    /// The canary revision, while a rollout is in progress.
    pub canary: Option<String>,
    /// Share of traffic for the canary.
    pub canary_weight: Weight,
    /// Requests matching these go to the canary whatever the weight.
    pub header_routes: Vec<HeaderRoute>,
    /// Copies of matching requests go to the canary.
    pub mirror_routes: Vec<MirrorRoute>,
    /// Hosts that reach one role directly (canaryService, stableService, ...).
    pub role_hosts: Vec<(String, Role)>,
}

/// Argo's setMirrorRoute: a share of the requests matching any block is copied to the
/// canary; the copy's response is discarded but measured.
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorRoute {
    /// The managed route's name.
    pub name: String,
    /// Share of matching requests copied.
    pub percentage: Weight,
    /// OR'd match blocks (method, path and headers within a block AND'd).
    pub matches: Vec<weir_config::rollout::MirrorMatch>,
}

impl MirrorRoute {
    /// Whether a request matches.
    pub fn matches(&self, method: &str, path: &str, headers: &impl super::Headers) -> bool {
        self.matches.iter().any(|m| {
            m.method.as_ref().is_none_or(|x| x.matches(method))
                && m.path.as_ref().is_none_or(|x| x.matches(path))
                && m.headers
                    .iter()
                    .all(|h| headers.any_value(&h.name, |v| h.kind.matches(v)))
        })
    }
}

/// Argo's setHeaderRoute: a request matching any of `matches` goes to the canary.
#[derive(Clone, Debug, PartialEq)]
pub struct HeaderRoute {
    /// The managed route's name.
    pub name: String,
    /// OR'd conditions.
    pub matches: Vec<HeaderMatch>,
}

impl HeaderRoute {
    /// Whether a request with these headers matches.
    pub fn matches(&self, headers: &impl super::Headers) -> bool {
        self.matches
            .iter()
            .any(|h| headers.any_value(&h.name, |v| h.kind.matches(v)))
    }
}

/// The long-lived parts a build draws from.
#[derive(Debug)]
pub struct BuildContext {
    /// Stats cells.
    pub stats: Arc<Stats>,
    /// Connection pools by endpoint.
    pub upstreams: Arc<Upstreams>,
    /// The access log sink every snapshot carries (set by the updater, which opens it).
    pub access_log: Option<Arc<AccessLogSink>>,
    /// Split counters by route, with the generation of the build that last used them.
    pub(super) counters: HashMap<String, (u64, Vec<Counter>)>,
    tls: HashMap<String, (weir_config::model::Tls, TlsAcceptor)>,
    generation: u64,
    /// Within one build: the stats cell and endpoint pools of each (Service, role,
    /// revision) already built, by the address of the model's Service (0: none). Ten
    /// thousand routes over a thousand Services look each up once, not once per leg.
    legs: std::cell::RefCell<HashMap<usize, Vec<Leg>>>,
    /// What [`rebuild`] last built from: its model and the entry of each of its model
    /// routes, for the next rebuild to take the entries of routes that did not change.
    prev: Option<Prev>,
    /// Model routes whose entry the last build took from the one before (for tests).
    pub(crate) reused: usize,
}

/// The last [`rebuild`]'s model, its routes' entries (in the model's order) and its
/// index, with the role hosts it indexed.
#[derive(Debug)]
struct Prev {
    model: Arc<Model>,
    entries: Vec<Arc<RouteEntry>>,
    index: Arc<Index>,
    role_hosts: RoleHosts,
}

/// The Rollouts' role hosts a table indexes (lower-case, in order) and the listeners that
/// serve them (a mask).
type RoleHosts = (Vec<String>, u64);

/// What every backend of one (Service, role, revision) shares.
#[derive(Debug)]
struct Leg {
    key: CellKey,
    cell: Arc<crate::stats::Cell>,
    endpoints: Vec<Arc<crate::upstream::EndpointPool>>,
    lb: weir_config::model::LoadBalancer,
}

impl BuildContext {
    /// A context over these registries.
    pub fn new(stats: Arc<Stats>, upstreams: Arc<Upstreams>) -> Self {
        BuildContext {
            stats,
            upstreams,
            access_log: None,
            counters: HashMap::new(),
            tls: HashMap::new(),
            generation: 0,
            legs: Default::default(),
            prev: None,
            reused: 0,
        }
    }
}

/// Builds the snapshot.
///
/// # Errors
/// [`BuildError::Tls`] when a TLS configuration cannot be built (the caller keeps the
/// old table).
pub fn build(
    model: &Model,
    traffic: &BTreeMap<String, RolloutTraffic>,
    ctx: &mut BuildContext,
) -> Result<RouteTable, BuildError> {
    ctx.generation += 1;
    ctx.legs.get_mut().clear();
    ctx.prev = None;
    let table = build_table(model, traffic, ctx, None);
    // The model's Services may go once the build is done: forget their addresses.
    ctx.legs.get_mut().clear();
    table.map(|(t, _)| t)
}

/// As [`build`], taking from the last `rebuild` the entries of the model routes that
/// did not change: a route equal to the one of its name then, whose target is not a
/// Rollout's (those follow the traffic state), whose Services (backends and mirrors)
/// are equal to what they were, under the same upstream settings. Everything else is
/// built again. The host index is the last build's when every route matches the same
/// requests as then; after a few routes were added, removed or changed, it shares the
/// last one's matcher groups of every host none of them has (see [`patch`]); otherwise
/// it is built again.
///
/// # Errors
/// As [`build`]; the last build is then still the one the next rebuild starts from.
pub fn rebuild(
    model: &Arc<Model>,
    traffic: &BTreeMap<String, RolloutTraffic>,
    ctx: &mut BuildContext,
) -> Result<RouteTable, BuildError> {
    ctx.generation += 1;
    ctx.legs.get_mut().clear();
    let prev = ctx.prev.take();
    let table = build_table(model, traffic, ctx, prev.as_ref());
    ctx.legs.get_mut().clear();
    match table {
        Ok((t, role_hosts)) => {
            ctx.prev = Some(Prev {
                model: model.clone(),
                entries: t.routes[..model.proxy.routes.len()].to_vec(),
                index: t.index.clone(),
                role_hosts,
            });
            Ok(t)
        }
        Err(e) => {
            ctx.prev = prev;
            Err(e)
        }
    }
}

/// The entry the last build made for `r` (the `i`th model route), when it may serve
/// again as it is (see [`rebuild`]).
struct Reuse<'p> {
    prev: &'p Prev,
    /// Model routes of the last build by name, made at the first route not in its place.
    by_name: Option<HashMap<&'p str, usize>>,
    /// Services whose value differs between the two models (or that only one has).
    changed: std::collections::HashSet<&'p str>,
}

impl<'p> Reuse<'p> {
    fn new(prev: &'p Prev, model: &'p Model) -> Option<Self> {
        if prev.model.proxy.upstream != model.proxy.upstream
            || prev.entries.len() != prev.model.proxy.routes.len()
        {
            return None;
        }
        let (old, new) = (&prev.model.services, &model.services);
        let mut changed = std::collections::HashSet::new();
        for (name, s) in new {
            match old.get(name) {
                Some(o) if Arc::ptr_eq(o, s) || o == s => {}
                _ => {
                    changed.insert(name.as_str());
                }
            }
        }
        for name in old.keys().filter(|k| !new.contains_key(*k)) {
            changed.insert(name.as_str());
        }
        Some(Reuse {
            prev,
            by_name: None,
            changed,
        })
    }

    fn entry(&mut self, i: usize, r: &Arc<weir_config::model::Route>) -> Option<Arc<RouteEntry>> {
        let uses_changed = match &r.target {
            RouteTarget::Rollout(_) => return None,
            RouteTarget::Split(legs) => legs
                .iter()
                .any(|l| l.invalid.is_none() && self.changed.contains(l.service.as_str())),
            RouteTarget::Respond { .. } => false,
        };
        let mirrors_changed = r.filters.iter().any(|f| match f {
            Filter::Mirror(m) => self.changed.contains(m.service.as_str()),
            _ => false,
        });
        if uses_changed || mirrors_changed {
            return None;
        }
        let routes = &self.prev.model.proxy.routes;
        let j = match routes.get(i) {
            Some(o) if o.name == r.name => i,
            _ => {
                let by_name = self.by_name.get_or_insert_with(|| {
                    routes
                        .iter()
                        .enumerate()
                        .map(|(j, o)| (o.name.as_str(), j))
                        .collect()
                });
                *by_name.get(r.name.as_str())?
            }
        };
        // A route validation kept from the last load is the same value.
        (Arc::ptr_eq(&routes[j], r) || *routes[j] == **r).then(|| self.prev.entries[j].clone())
    }
}

/// Marks the split counters building `r` again would have marked as used by this build
/// (its split's, and its mirrors'), so that a reused entry keeps drawing on the counters
/// the registry keeps. A redirect's split is built before the redirect replaces it, so
/// its counters are kept too, as a fresh build keeps them.
fn keep_counters(ctx: &mut BuildContext, r: &weir_config::model::Route) {
    let generation = ctx.generation;
    if let Some((used, _)) = ctx.counters.get_mut(r.name.as_str()) {
        *used = generation;
    }
    let mirrors = r
        .filters
        .iter()
        .filter(|f| matches!(f, Filter::Mirror(_)))
        .count();
    for i in 0..mirrors {
        if let Some((used, _)) = ctx.counters.get_mut(&format!("{}#mirror{i}", r.name)) {
            *used = generation;
        }
    }
}

fn build_table(
    model: &Model,
    traffic: &BTreeMap<String, RolloutTraffic>,
    ctx: &mut BuildContext,
    prev: Option<&Prev>,
) -> Result<(RouteTable, RoleHosts), BuildError> {
    let mut reuse = prev.and_then(|p| Reuse::new(p, model));
    ctx.reused = 0;
    let mut listeners = HashMap::new();
    for (i, l) in model.proxy.listeners.iter().enumerate() {
        let tls = match &l.tls {
            Some(spec) => Some(tls_for(ctx, &l.name, spec)?),
            None => None,
        };
        listeners.insert(
            l.name.clone(),
            ListenerEntry {
                index: i as u32,
                tls,
            },
        );
    }

    // Role hosts of each Rollout: Host: my-app-canary reaches the canary directly, on the
    // listeners that serve them (loopback ones unless `roleHosts` says otherwise).
    let role_mask = model
        .proxy
        .listeners
        .iter()
        .filter(|l| l.serves_role_hosts())
        .filter_map(|l| listeners.get(&l.name))
        .fold(0u64, |m, l| m | 1u64 << l.index.min(63));
    let role_hosts: RoleHosts = (
        traffic
            .values()
            .filter(|_| role_mask != 0)
            .flat_map(|t| t.role_hosts.iter().map(|(h, _)| h.to_ascii_lowercase()))
            .collect(),
        role_mask,
    );
    let mut routes: Vec<Arc<RouteEntry>> = Vec::with_capacity(model.proxy.routes.len());
    for (i, r) in model.proxy.routes.iter().enumerate() {
        let kept = reuse.as_mut().and_then(|u| u.entry(i, r));
        match kept {
            Some(entry) => {
                keep_counters(ctx, r);
                ctx.reused += 1;
                routes.push(entry);
            }
            None => routes.push(Arc::new(route_entry(ctx, model, traffic, r))),
        }
    }

    for (rollout, t) in traffic.iter().filter(|_| role_mask != 0) {
        let svc = model.services.get(&t.service);
        for (host, role) in &t.role_hosts {
            let revision = match role {
                Role::Canary => t.canary.as_deref().unwrap_or(&t.stable),
                _ => &t.stable,
            };
            // The canary host is a rule, not the split: counted apart.
            let counted = match role {
                Role::Canary => Role::CanaryPinned,
                r => *r,
            };
            let b = backend(ctx, rollout, counted, revision, svc);
            let route_name = format!("{rollout}/{host}");
            let target = split_target(ctx, &route_name, vec![(b, Weight::SCALE)], Vec::new());
            routes.push(Arc::new(RouteEntry {
                name: Arc::from(route_name.as_str()),
                target,
                filters: None,
                request_timeout: model.proxy.upstream.request_timeout,
                send_timeout: model.proxy.upstream.request_timeout,
                connect_timeout: model.proxy.upstream.connect_timeout,
                max_body: None,
                deadline: None,
            }));
        }
    }
    // Counters of routes this build did not use go.
    let generation = ctx.generation;
    ctx.counters.retain(|_, (used, _)| *used == generation);

    let index = match prev.and_then(|p| patch(p, model, &role_hosts, &listeners)) {
        Some(index) => index,
        None => Arc::new(fresh_index(model, &role_hosts, &listeners)),
    };
    debug_assert_eq!(index.slots.len(), routes.len());
    let mut by_slot = vec![None; index.slot_count as usize];
    for (route, slot) in routes.iter().zip(&index.slots) {
        by_slot[*slot as usize] = Some(route.clone());
    }
    Ok((
        RouteTable {
            generation: ctx.generation,
            routes,
            by_slot,
            index,
            listeners,
            upstream: model.proxy.upstream,
            limits: model.proxy.limits,
            admin_hosts: model
                .proxy
                .admin_hosts
                .iter()
                .map(|h| h.as_str().into())
                .collect(),
            admin_token: model.proxy.admin_token.clone(),
            debug_headers: model.proxy.debug_headers,
            access_log: ctx.access_log.clone(),
        },
        role_hosts,
    ))
}

/// Matchers by host, being gathered.
#[derive(Default)]
struct Groups {
    exact: HashMap<Arc<str>, Vec<Matcher>>,
    suffix: HashMap<Arc<str>, Vec<Matcher>>,
    any: Vec<Matcher>,
}

impl Groups {
    /// Adds a route's matchers to the groups of its hosts (to the hostless group when it
    /// has none).
    fn add(&mut self, hosts: &[HostMatch], mut ms: Vec<Matcher>) {
        let Some((last, rest)) = hosts.split_last() else {
            self.any.append(&mut ms);
            return;
        };
        for h in rest {
            self.group(h).extend(ms.iter().cloned());
        }
        self.group(last).append(&mut ms);
    }

    fn group(&mut self, h: &HostMatch) -> &mut Vec<Matcher> {
        let (map, key) = match h {
            HostMatch::Exact(h) => (&mut self.exact, h),
            HostMatch::Suffix(s) => (&mut self.suffix, s),
        };
        if !map.contains_key(key.as_str()) {
            map.insert(Arc::from(key.as_str()), Vec::new());
        }
        map.get_mut(key.as_str()).unwrap_or_else(|| unreachable!())
    }
}

/// Sorts a group's matchers, most specific first (`pos`: each slot's place in the
/// table).
fn sorted(mut ms: Vec<Matcher>, pos: &[u32]) -> Group {
    ms.sort_by_key(|m| specificity(m, pos));
    ms.into()
}

/// The matchers of model route `r`, under `slot`, with its listener hostnames.
fn matchers_of(
    r: &weir_config::model::Route,
    slot: u32,
    listeners: &HashMap<String, ListenerEntry>,
    scope: &[Claim],
) -> Vec<Matcher> {
    let mut mask = 0u64;
    for name in &r.listeners {
        if let Some(l) = listeners.get(name) {
            mask |= 1u64 << l.index.min(63);
        }
    }
    r.matches
        .iter()
        .enumerate()
        .map(|(nth, m)| Matcher {
            route: slot,
            nth: nth as u32,
            path: m.path.clone(),
            headers: m.headers.clone(),
            query: m.query.clone(),
            method: m.method.as_deref().map(Box::from),
            listener_mask: mask,
            scope: scope.into(),
        })
        .collect()
}

/// The Gateway listener hostnames route `r` is attached through.
fn scope_of(r: &weir_config::model::Route) -> Box<[Claim]> {
    r.scope
        .iter()
        .map(|h| match h {
            Some(HostMatch::Exact(h)) => Claim::Exact(h.to_ascii_lowercase().into()),
            Some(HostMatch::Suffix(s)) => Claim::Suffix(s.to_ascii_lowercase().into()),
            None => Claim::Any,
        })
        .collect()
}

/// How many routes claim each listener hostname, by listener index.
type ClaimCounts = HashMap<u32, HashMap<Claim, u32>>;

/// Counts route `r`'s claims (`scope`) in, or out.
fn count_claims(
    counts: &mut ClaimCounts,
    r: &weir_config::model::Route,
    listeners: &HashMap<String, ListenerEntry>,
    scope: &[Claim],
    add: bool,
) {
    if scope.is_empty() {
        return;
    }
    for name in &r.listeners {
        let Some(l) = listeners.get(name) else {
            continue;
        };
        let on = counts.entry(l.index).or_default();
        for c in scope {
            if add {
                match on.get_mut(c) {
                    Some(n) => *n += 1,
                    None => {
                        on.insert(c.clone(), 1);
                    }
                }
            } else if let Some(n) = on.get_mut(c) {
                *n -= 1;
                if *n == 0 {
                    on.remove(c);
                }
            }
        }
        if on.is_empty() {
            counts.remove(&l.index);
        }
    }
}

/// The listener hostnames on each socket.
fn claims_of(counts: &ClaimCounts) -> HashMap<u32, super::Claims> {
    counts
        .iter()
        .map(|(l, on)| {
            let mut c = super::Claims::default();
            on.keys().for_each(|k| c.add(k));
            (*l, c)
        })
        .collect()
}

/// The matcher of a Rollout's role host: every request to it.
fn role_matcher(slot: u32, mask: u64) -> Matcher {
    Matcher {
        route: slot,
        nth: 0,
        path: PathMatch::Prefix("/".into()),
        headers: Vec::new(),
        query: Vec::new(),
        method: None,
        listener_mask: mask,
        scope: Box::default(),
    }
}

/// The index of the model's routes and the role hosts, each route in the slot of its
/// place.
fn fresh_index(
    model: &Model,
    role_hosts: &RoleHosts,
    listeners: &HashMap<String, ListenerEntry>,
) -> Index {
    let routes = &model.proxy.routes;
    let mut groups = Groups::default();
    let mut counts = ClaimCounts::new();
    for (i, r) in routes.iter().enumerate() {
        let scope = scope_of(r);
        count_claims(&mut counts, r, listeners, &scope, true);
        groups.add(&r.hosts, matchers_of(r, i as u32, listeners, &scope));
    }
    for (k, host) in role_hosts.0.iter().enumerate() {
        let m = role_matcher((routes.len() + k) as u32, role_hosts.1);
        groups.group(&HostMatch::Exact(host.clone())).push(m);
    }
    let slots: Vec<u32> = (0..(routes.len() + role_hosts.0.len()) as u32).collect();
    let finish = |g: HashMap<Arc<str>, Vec<Matcher>>| {
        g.into_iter()
            .map(|(k, ms)| (k, sorted(ms, &slots)))
            .collect()
    };
    Index {
        exact: finish(groups.exact),
        suffix: finish(groups.suffix),
        any: sorted(groups.any, &slots),
        claims: claims_of(&counts),
        slot_count: slots.len() as u32,
        slots,
        free: Vec::new(),
        claim_counts: counts,
    }
}

/// The last index, changed for `model`'s routes: `None` when it cannot be (other
/// listeners or role hosts) or would not be worth it (many routes changed).
///
/// The routes the two models have in common at the start and at the end (each the same
/// value, or one with the same hosts, matches, listeners and scope) keep their slots, and
/// their matchers stay where they are. The ones in between were removed or added (or
/// changed: both): only the groups of their hosts are made again, from the last group
/// without the removed routes' matchers and with the added ones', sorted again. The
/// common routes are in the same order as before, so every other group is still sorted
/// and is shared as it is.
fn patch(
    prev: &Prev,
    model: &Model,
    role_hosts: &RoleHosts,
    listeners: &HashMap<String, ListenerEntry>,
) -> Option<Arc<Index>> {
    let (old_l, new_l) = (&prev.model.proxy.listeners, &model.proxy.listeners);
    if prev.role_hosts != *role_hosts
        || old_l.len() != new_l.len()
        || old_l.iter().zip(new_l).any(|(a, b)| a.name != b.name)
    {
        return None;
    }
    let (old, new) = (&prev.model.proxy.routes, &model.proxy.routes);
    let same = |a: &Arc<weir_config::model::Route>, b: &Arc<weir_config::model::Route>| {
        Arc::ptr_eq(a, b)
            || (a.hosts == b.hosts
                && a.matches == b.matches
                && a.listeners == b.listeners
                && a.scope == b.scope)
    };
    let common = old.len().min(new.len());
    let start = (0..common)
        .find(|&i| !same(&old[i], &new[i]))
        .unwrap_or(common);
    let end = (0..common - start)
        .find(|&k| !same(&old[old.len() - 1 - k], &new[new.len() - 1 - k]))
        .unwrap_or(common - start);
    let (removed, added) = (&old[start..old.len() - end], &new[start..new.len() - end]);
    let ix = &*prev.index;
    if removed.is_empty() && added.is_empty() {
        return Some(prev.index.clone());
    }
    if removed.len() + added.len() > new.len() / 4 + 16
        || ix.slots.len() != old.len() + role_hosts.0.len()
    {
        return None;
    }

    // Slots: the removed routes' are freed, and the added routes take free ones first.
    let mut free = ix.free.clone();
    let mut slot_count = ix.slot_count;
    let mut gone = vec![false; slot_count as usize];
    for &s in &ix.slots[start..old.len() - end] {
        gone[s as usize] = true;
        free.push(s);
    }
    let mut slots = Vec::with_capacity(new.len() + role_hosts.0.len());
    slots.extend_from_slice(&ix.slots[..start]);
    for _ in added {
        slots.push(free.pop().unwrap_or_else(|| {
            slot_count += 1;
            slot_count - 1
        }));
    }
    slots.extend_from_slice(&ix.slots[old.len() - end..]);
    if free.len() > slots.len() {
        return None;
    }
    let mut pos = vec![u32::MAX; slot_count as usize];
    for (i, s) in slots.iter().enumerate() {
        pos[*s as usize] = i as u32;
    }

    let mut counts = ix.claim_counts.clone();
    for r in removed {
        count_claims(&mut counts, r, listeners, &scope_of(r), false);
    }
    let mut more = Groups::default();
    for (r, slot) in added.iter().zip(&slots[start..]) {
        let scope = scope_of(r);
        count_claims(&mut counts, r, listeners, &scope, true);
        more.add(&r.hosts, matchers_of(r, *slot, listeners, &scope));
    }

    // The groups of the removed and added routes' hosts, made again.
    let kept = |g: &Group| -> Vec<Matcher> {
        g.iter()
            .filter(|m| !gone.get(m.route as usize).copied().unwrap_or(false))
            .cloned()
            .collect()
    };
    let redo = |map: &HashMap<Arc<str>, Group>,
                more: &mut HashMap<Arc<str>, Vec<Matcher>>,
                hosts: std::collections::HashSet<&str>| {
        let mut map = map.clone();
        for h in hosts {
            let mut ms = map.get(h).map(kept).unwrap_or_default();
            if let Some(m) = more.remove(h) {
                ms.extend(m);
            }
            if ms.is_empty() {
                map.remove(h);
            } else if let Some(g) = map.get_mut(h) {
                *g = sorted(ms, &pos);
            } else {
                map.insert(Arc::from(h), sorted(ms, &pos));
            }
        }
        map
    };
    let (mut exact, mut suffix) = (
        std::collections::HashSet::new(),
        std::collections::HashSet::new(),
    );
    let mut any = false;
    for r in removed.iter().chain(added) {
        any |= r.hosts.is_empty();
        for h in &r.hosts {
            match h {
                HostMatch::Exact(h) => exact.insert(h.as_str()),
                HostMatch::Suffix(s) => suffix.insert(s.as_str()),
            };
        }
    }
    let any = if any {
        let mut ms = kept(&ix.any);
        ms.append(&mut more.any);
        sorted(ms, &pos)
    } else {
        ix.any.clone()
    };
    Some(Arc::new(Index {
        exact: redo(&ix.exact, &mut more.exact, exact),
        suffix: redo(&ix.suffix, &mut more.suffix, suffix),
        any,
        claims: claims_of(&counts),
        slots,
        slot_count,
        free,
        claim_counts: counts,
    }))
}

/// The entry of model route `r`, built afresh.
fn route_entry(
    ctx: &mut BuildContext,
    model: &Model,
    traffic: &BTreeMap<String, RolloutTraffic>,
    r: &weir_config::model::Route,
) -> RouteEntry {
    let mut filters = compile_filters(&r.filters);
    let mut target = match &r.target {
        RouteTarget::Split(legs) => {
            let backends: Vec<(Arc<Backend>, u32)> = legs
                .iter()
                .map(|leg| {
                    if leg.invalid.is_some() {
                        let mut b = backend(ctx, INVALID_BACKEND, Role::None, "", None);
                        if let Some(b) = Arc::get_mut(&mut b) {
                            b.invalid = true;
                        }
                        return (b, leg.weight);
                    }
                    let svc = model.services.get(&leg.service);
                    let mut b = backend(ctx, &leg.service, Role::None, "", svc);
                    if let Some(f) = compile_filters(&leg.filters)
                        && let Some(b) = Arc::get_mut(&mut b)
                    {
                        b.filters = Some(f);
                    }
                    (b, leg.weight)
                })
                .collect();
            let mirrors = mirror_filters(ctx, model, &r.filters);
            if backends.iter().all(|(_, w)| *w == 0) {
                // The Gateway API: a rule whose weights are all zero answers 500.
                Target::Unavailable {
                    kind: Kind::InvalidBackend,
                    reason: Arc::from("every backend of this route has weight 0"),
                }
            } else {
                // ingress-nginx's canary rules: a main leg and a canary leg.
                let pins = if let [(main, _), (canary, _)] = &backends[..] {
                    steer_pins(&r.steer, main, canary)
                } else {
                    Vec::new()
                };
                split_target_with_mirrors(ctx, &r.name, backends, pins, mirrors)
            }
        }
        RouteTarget::Rollout(name) => {
            let mirrors = mirror_filters(ctx, model, &r.filters);
            rollout_target(
                ctx,
                model,
                name,
                traffic.get(name),
                &r.name,
                (mirrors, &r.steer),
            )
        }
        RouteTarget::Respond { status, message } => Target::Unavailable {
            kind: match status {
                500 => Kind::InvalidBackend,
                404 => Kind::NoRoute,
                403 => Kind::Forbidden,
                _ => Kind::Unavailable,
            },
            reason: Arc::from(message.as_str()),
        },
    };
    if let (Target::Split(t), Some(a)) = (&mut target, &r.affinity) {
        t.affinity = Some(a.clone());
    }
    let target = match r.filters.iter().find_map(|f| match f {
        Filter::Redirect(rd) => Some(rd),
        _ => None,
    }) {
        // A redirect answers instead of forwarding: nothing else applies.
        Some(rd) => {
            filters = None;
            Target::Redirect(rd.clone())
        }
        None => target,
    };
    RouteEntry {
        name: Arc::from(r.name.as_str()),
        target,
        filters,
        request_timeout: request_timeout(model.proxy.upstream.request_timeout, r.timeouts),
        send_timeout: r
            .timeouts
            .send
            .unwrap_or(model.proxy.upstream.request_timeout),
        connect_timeout: r
            .timeouts
            .connect
            .unwrap_or(model.proxy.upstream.connect_timeout),
        max_body: r.max_body,
        deadline: r.timeouts.request.filter(|d| !d.is_zero()),
    }
}

/// The proxy's response timeout, shortened by a route's `timeouts` (the Gateway API's:
/// 0s means none; ingress-nginx's `proxy-read-timeout`, which nginx applies to every
/// read of the response, its head included).
fn request_timeout(proxy: std::time::Duration, route: RouteTimeouts) -> std::time::Duration {
    [route.request, route.backend_request, route.read]
        .into_iter()
        .flatten()
        .filter(|t| !t.is_zero())
        .fold(proxy, std::cmp::min)
}

/// The order of matches within a host group, most specific first, as the Gateway API
/// orders them: an exact path, then the longest path prefix (a regular expression
/// after every prefix), then a method, then the most header conditions, then the most
/// query conditions; ties go to the route written first, then its first match.
fn specificity(
    m: &Matcher,
    pos: &[u32],
) -> (
    u8,
    std::cmp::Reverse<usize>,
    bool,
    std::cmp::Reverse<usize>,
    std::cmp::Reverse<usize>,
    u32,
    u32,
) {
    use std::cmp::Reverse;
    let (kind, len) = match &m.path {
        PathMatch::Exact(p) => (0, p.len()),
        PathMatch::Prefix(p) | PathMatch::Segments(p) => (1, p.len()),
        PathMatch::Regex(_) => (2, 0),
    };
    (
        kind,
        Reverse(len),
        m.method.is_none(),
        Reverse(m.headers.len()),
        Reverse(m.query.len()),
        pos[m.route as usize],
        m.nth,
    )
}

/// ingress-nginx's canary rules as pins: to leg 1 (the canary) or leg 0 (the main one).
fn steer_pins(
    steer: &[weir_config::model::Steer],
    main: &Arc<Backend>,
    canary: &Arc<Backend>,
) -> Vec<(super::Pin, Arc<Backend>)> {
    steer
        .iter()
        .map(|s| {
            let to = if s.to_canary { canary } else { main };
            (super::Pin::Steer(s.when.clone()), to.clone())
        })
        .collect()
}

/// The header changes, rewrite and CORS policy of `filters`, merged in order; `None`
/// when there are none (redirects and mirrors are built apart).
fn compile_filters(filters: &[Filter]) -> Option<Arc<RouteFilters>> {
    let mut out = RouteFilters::default();
    let mut any = false;
    for f in filters {
        match f {
            Filter::RequestHeaders(h) => {
                merge_modifier(out.request.get_or_insert_with(Default::default), h);
                any = true;
            }
            Filter::ResponseHeaders(h) => {
                merge_modifier(out.response.get_or_insert_with(Default::default), h);
                any = true;
            }
            Filter::Rewrite(r) => {
                out.rewrite = Some(r.clone());
                any = true;
            }
            Filter::Cors(c) => {
                out.cors = Some(c.clone());
                any = true;
            }
            Filter::Source(s) => {
                out.source = Some(s.clone());
                any = true;
            }
            Filter::Redirect(_) | Filter::Mirror(_) => {}
        }
    }
    any.then(|| Arc::new(out))
}

/// Appends `b` to `a`: applying the result does what applying both in turn does, for
/// the changes the Gateway API allows (each name at most once per list).
fn merge_modifier(a: &mut HeaderModifier, b: &HeaderModifier) {
    for name in &b.remove {
        a.set.retain(|(n, _)| n != name);
        a.add.retain(|(n, _)| n != name);
        a.remove.push(name.clone());
    }
    for (n, v) in &b.set {
        a.set.retain(|(x, _)| x != n);
        a.add.retain(|(x, _)| x != n);
        a.set.push((n.clone(), v.clone()));
    }
    a.add.extend(b.add.iter().cloned());
}

/// The `RequestMirror`s of a route: a share of every request copied to a Service.
fn mirror_filters(
    ctx: &BuildContext,
    model: &Model,
    filters: &[Filter],
) -> Vec<(Option<MirrorRoute>, Weight, Arc<Backend>)> {
    filters
        .iter()
        .filter_map(|f| match f {
            Filter::Mirror(m) => {
                let svc = model.services.get(&m.service);
                Some((None, m.share, backend(ctx, &m.service, Role::None, "", svc)))
            }
            _ => None,
        })
        .collect()
}

/// The listener's TLS acceptor: the one built before when its settings did not change.
fn tls_for(ctx: &mut BuildContext, listener: &str, spec: &Tls) -> Result<TlsAcceptor, BuildError> {
    if let Some((old, acc)) = ctx.tls.get(listener)
        && old == spec
    {
        return Ok(acc.clone());
    }
    let acc = crate::tls::acceptor(spec).map_err(|source| BuildError::Tls {
        listener: listener.to_owned(),
        source,
    })?;
    ctx.tls
        .insert(listener.to_owned(), (spec.clone(), acc.clone()));
    Ok(acc)
}

/// A backend of `service_name`'s endpoints, restricted to `revision` when not empty.
/// `stats_name` is the name measurements go under (the Rollout's, or the Service's).
fn backend(
    ctx: &BuildContext,
    stats_name: &str,
    role: Role,
    revision: &str,
    svc: Option<&Arc<Service>>,
) -> Arc<Backend> {
    let at = svc.map_or(0, |s| Arc::as_ptr(s) as usize);
    let mut legs = ctx.legs.borrow_mut();
    let known = legs.entry(at).or_default();
    let i = match known.iter().position(|l| {
        l.key.role == role && *l.key.service == *stats_name && *l.key.revision == *revision
    }) {
        Some(i) => i,
        None => {
            let key = CellKey {
                service: Arc::from(stats_name),
                role,
                revision: Arc::from(revision),
            };
            let cell = ctx.stats.cell(key.clone());
            let (endpoints, lb) = match svc {
                Some(s) => (
                    s.endpoints
                        .iter()
                        .filter(|e| revision.is_empty() || e.image.as_deref() == Some(revision))
                        .map(|e| {
                            let p = ctx.upstreams.pool(e.address, &e.authority, s.protocol);
                            p.set_health_check(s.health.as_ref());
                            p
                        })
                        .collect(),
                    s.load_balancer,
                ),
                None => (Vec::new(), Default::default()),
            };
            known.push(Leg {
                key,
                cell,
                endpoints,
                lb,
            });
            known.len() - 1
        }
    };
    let l = &known[i];
    Arc::new(Backend::new(
        l.key.clone(),
        l.cell.clone(),
        l.endpoints.clone(),
        l.lb,
    ))
}

/// A split of `weights` over the counters kept for `key` (created when new), marked as
/// used by this build. A known key is hashed once and not copied.
fn split_for(ctx: &mut BuildContext, key: &str, weights: &[u32]) -> Split {
    let generation = ctx.generation;
    if let Some((used, counters)) = ctx.counters.get_mut(key) {
        *used = generation;
        return Split::new(weights, counters);
    }
    let mut counters = Vec::new();
    let split = Split::new(weights, &mut counters);
    ctx.counters.insert(key.to_owned(), (generation, counters));
    split
}

fn split_target(
    ctx: &mut BuildContext,
    route: &str,
    legs: Vec<(Arc<Backend>, u32)>,
    header_routes: Vec<(super::Pin, Arc<Backend>)>,
) -> Target {
    split_target_with_mirrors(ctx, route, legs, header_routes, Vec::new())
}

fn split_target_with_mirrors(
    ctx: &mut BuildContext,
    route: &str,
    legs: Vec<(Arc<Backend>, u32)>,
    header_routes: Vec<(super::Pin, Arc<Backend>)>,
    mirror_routes: Vec<(Option<MirrorRoute>, Weight, Arc<Backend>)>,
) -> Target {
    let weights: Vec<u32> = legs.iter().map(|(_, w)| *w).collect();
    let split = split_for(ctx, route, &weights);
    let mut mirrors = Vec::new();
    for (i, (m, share, target)) in mirror_routes.into_iter().enumerate() {
        let key = match &m {
            Some(m) => format!("{route}#mirror/{}", m.name),
            None => format!("{route}#mirror{i}"),
        };
        let p = share.basis_points();
        let share = split_for(ctx, &key, &[p, Weight::SCALE - p]);
        mirrors.push(super::Mirror {
            route: m,
            share,
            target,
        });
    }
    // Shares as percentages, for metrics and the API.
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum::<u64>().max(1);
    Target::Split(SplitTarget {
        split,
        weights: weights
            .iter()
            .map(|w| {
                Weight::from_basis_points((u64::from(*w) * u64::from(Weight::SCALE) / total) as u32)
            })
            .collect(),
        legs: legs.into_iter().map(|(b, _)| b).collect(),
        header_routes,
        mirrors,
        affinity: None,
    })
}

/// A mirror of a route: its Argo mirror route (None for a Gateway API mirror), its
/// share, where copies go.
type LegMirror = (Option<MirrorRoute>, Weight, Arc<Backend>);

fn rollout_target(
    ctx: &mut BuildContext,
    model: &Model,
    rollout: &str,
    traffic: Option<&RolloutTraffic>,
    route: &str,
    (rule_mirrors, steer): (Vec<LegMirror>, &[weir_config::model::Steer]),
) -> Target {
    // A Rollout the control loop has not decided on yet (one a reload just added): its
    // first sight makes the template's image stable at once, so that image serves from
    // now on rather than 503 until the loop's next turn.
    let first_sight;
    let t = match traffic {
        Some(t) => t,
        None => match model.argo.rollouts.get(rollout) {
            Some(r) if !r.image.is_empty() => {
                first_sight = RolloutTraffic {
                    service: rollout.to_owned(),
                    stable: r.image.clone(),
                    canary: None,
                    canary_weight: Weight::ZERO,
                    header_routes: Vec::new(),
                    mirror_routes: Vec::new(),
                    role_hosts: Vec::new(),
                };
                &first_sight
            }
            _ => {
                return Target::Unavailable {
                    kind: Kind::Unavailable,
                    reason: Arc::from(format!("rollout {rollout} has no revision yet")),
                };
            }
        },
    };
    let svc = model.services.get(&t.service);
    let stable = backend(ctx, rollout, Role::Stable, &t.stable, svc);
    let mut legs = vec![(stable.clone(), t.canary_weight.complement().basis_points())];
    let mut header_routes = Vec::new();
    // The route's own mirrors (an HTTPRoute rule's RequestMirror filters) first, so that
    // their counters keep their keys whether or not there is a canary.
    let mut mirrors = rule_mirrors;
    if let Some(canary) = &t.canary {
        let c = backend(ctx, rollout, Role::Canary, canary, svc);
        // What rules send to the canary (header routes, canary rules, mirror copies):
        // the same endpoints, counted apart from what the split sends.
        let pinned = backend(ctx, rollout, Role::CanaryPinned, canary, svc);
        mirrors.extend(
            t.mirror_routes
                .iter()
                .map(|m| (Some(m.clone()), m.percentage, pinned.clone())),
        );
        if t.canary_weight > Weight::ZERO || !t.header_routes.is_empty() || !steer.is_empty() {
            legs.push((c, t.canary_weight.basis_points()));
            // Argo's header routes, then the route's own canary rules
            // (`additionalIngressAnnotations`), which apply only while there is a canary.
            header_routes = t
                .header_routes
                .iter()
                .map(|h| (super::Pin::Header(h.clone()), pinned.clone()))
                .chain(steer_pins(steer, &stable, &pinned))
                .collect();
        }
    }
    if legs.len() == 1 {
        legs[0].1 = Weight::SCALE;
    }
    split_target_with_mirrors(ctx, route, legs, header_routes, mirrors)
}
