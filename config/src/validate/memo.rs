//! What validation may keep from one load to the next, by the decoded document a
//! [`crate::Loader`] shares between loads while the document's text is the same, with
//! what it reported (lines counted from the document's start):
//!
//! - the checks an HTTPRoute makes of itself alone (`httproute::parse`), which depend on
//!   nothing but its document;
//! - what attaching the HTTPRoute did ([`Placed`]: its model routes, status, findings,
//!   the backends it resolved). That depends on its document and on every document of
//!   another kind (Gateways, Services, ReferenceGrants...), and on the Rollouts that
//!   split HTTPRoutes; so it is kept only while all of those are the same documents,
//!   at the same places ([`Memo::begin`], [`Memo::bindings`]), and done again only when
//!   each backend it resolved resolves the same way with nothing to build
//!   ([`super::endpoints::Cluster::can_repeat`]). A route that built a model Service is
//!   not kept: the first route to use a Service builds it on every load, as a fresh
//!   validation does. What the HTTPRoutes do together (names defined twice, the
//!   Rollouts' warnings) runs every time.

use std::collections::HashMap;
use std::sync::Arc;

use crate::decode::gateway::HttpRouteDoc;
use crate::decode::{Documents, Findings};
use crate::model::{GatewayStatus, Route as ModelRoute};
use crate::read::{Document, shift, unshift};

use super::canary::Bindings;
use super::ctx::Ctx;
use super::endpoints::Resolved;
use super::httproute::{self, ParsedRoute};

/// Kept between loads by a [`crate::Loader`]; a fresh one keeps nothing.
#[derive(Debug, Default)]
pub struct Memo {
    /// By the address of the decoded document, which each entry holds (so that the
    /// address is not reused while it is a key).
    routes: HashMap<usize, Route>,
    /// What this validation used: what the next one may reuse.
    next: HashMap<usize, Route>,
    /// HTTPRoutes checked (not reused) by the last validation.
    pub(crate) checked: usize,
    /// HTTPRoutes attached again (not reused) by the last validation.
    pub(crate) attached: usize,
    /// The documents of every kind but HTTPRoute the last validation saw, in order.
    others: Vec<Document>,
    /// The Rollouts that split HTTPRoutes then: (namespace, route, rollout, stable,
    /// canary).
    binds: Vec<[String; 5]>,
    /// Whether what attaching a route did may be done again in this validation.
    same: bool,
}

/// What attaching one HTTPRoute did (`attach::routes`), to do again without the work.
#[derive(Debug, Default)]
pub(super) struct Placed {
    /// How each backend it named resolved, in order.
    pub(super) uses: Vec<Resolved>,
    /// Its model routes.
    pub(super) routes: Vec<Arc<ModelRoute>>,
    /// Its status, when it has one.
    pub(super) status: Option<GatewayStatus>,
    /// The Gateway listeners (status, section) that count it as attached.
    pub(super) counted: Vec<(usize, usize)>,
    /// (namespace, route, Rollout) for each Rollout that splits one of its rules.
    pub(super) bound: Vec<(String, String, String)>,
    /// What it reported, lines counted from the document's start.
    pub(super) found: Findings,
}

#[derive(Debug, Clone)]
struct Route {
    _raw: Arc<HttpRouteDoc>,
    parsed: Option<Arc<ParsedRoute>>,
    /// Lines counted from the document's start.
    found: Arc<Findings>,
    /// What attaching it did, while [`Memo::same`] holds.
    placed: Option<Arc<Placed>>,
}

/// Every document of `docs` but the HTTPRoutes.
fn others(docs: &Documents) -> Vec<Document> {
    fn all<T>(v: &[(Document, T)]) -> impl Iterator<Item = &Document> {
        v.iter().map(|(d, _)| d)
    }
    let d = docs;
    all(&d.proxies)
        .chain(all(&d.services))
        .chain(all(&d.rollouts))
        .chain(d.templates.iter().map(|(doc, _, _)| doc))
        .chain(all(&d.secrets))
        .chain(all(&d.deployments))
        .chain(all(&d.namespaces))
        .chain(all(&d.kube_services))
        .chain(all(&d.endpoint_slices))
        .chain(all(&d.endpoints))
        .chain(all(&d.gateway_classes))
        .chain(all(&d.gateways))
        .chain(all(&d.reference_grants))
        .chain(all(&d.ingresses))
        .chain(all(&d.ingress_classes))
        .cloned()
        .collect()
}

/// The same document at the same place: the tree a [`crate::Loader`] keeps for one text
/// (kept alive by the memo, so that its address is not reused), the same file and line.
fn same_doc(a: &Document, b: &Document) -> bool {
    Arc::ptr_eq(&a.node, &b.node) && a.line_offset == b.line_offset && a.file == b.file
}

impl Memo {
    /// Called before a validation looks at `docs`: what attaching HTTPRoutes did may be
    /// done again only when every other document is the same, at the same place.
    pub(super) fn begin(&mut self, docs: &Documents) {
        self.checked = 0;
        self.attached = 0;
        let others = others(docs);
        self.same = others.len() == self.others.len()
            && others.iter().zip(&self.others).all(|(a, b)| same_doc(a, b));
        self.others = others;
    }

    /// Called with the Rollouts that split HTTPRoutes (which depend on the HTTPRoutes'
    /// names too): they must be the ones of the last validation.
    pub(super) fn bindings(&mut self, bindings: &Bindings) {
        let binds: Vec<[String; 5]> = bindings
            .iter()
            .flat_map(|((ns, route), list)| {
                list.iter().map(|b| {
                    [
                        ns.clone(),
                        route.clone(),
                        b.rollout.clone(),
                        b.stable.clone(),
                        b.canary.clone(),
                    ]
                })
            })
            .collect();
        self.same &= binds == self.binds;
        self.binds = binds;
    }

    /// What attaching the HTTPRoute decoded as `raw` did in the last validation, when
    /// it may be done again (its entry was taken by [`Memo::route`] in this one).
    pub(super) fn placed(&self, raw: &Arc<HttpRouteDoc>) -> Option<Arc<Placed>> {
        let at = Arc::as_ptr(raw) as usize;
        self.next.get(&at).and_then(|r| r.placed.clone())
    }

    /// Keeps what attaching the HTTPRoute decoded as `raw` did, for the next validation.
    pub(super) fn keep_placed(&mut self, raw: &Arc<HttpRouteDoc>, placed: Placed) {
        self.attached += 1;
        let at = Arc::as_ptr(raw) as usize;
        if let Some(r) = self.next.get_mut(&at) {
            r.placed = Some(Arc::new(placed));
        }
    }

    /// Counts an HTTPRoute attached again whose work is not kept (see [`Placed`]).
    pub(super) fn attached_anew(&mut self) {
        self.attached += 1;
    }

    /// `httproute::parse` of `raw`, or what it gave (and reported) before.
    pub(super) fn route(
        &mut self,
        ctx: &mut Ctx,
        doc: &Document,
        raw: &Arc<HttpRouteDoc>,
    ) -> Option<Arc<ParsedRoute>> {
        let at = Arc::as_ptr(raw) as usize;
        let known = self.routes.get(&at).or_else(|| self.next.get(&at)).cloned();
        let route = match known {
            Some(mut r) => {
                if !self.same {
                    r.placed = None;
                }
                r
            }
            None => {
                self.checked += 1;
                let outer = std::mem::take(&mut ctx.findings);
                let parsed = httproute::parse(ctx, doc, raw).map(Arc::new);
                let found = unshifted(doc, std::mem::replace(&mut ctx.findings, outer));
                Route {
                    _raw: raw.clone(),
                    parsed,
                    found: Arc::new(found),
                    placed: None,
                }
            }
        };
        report(ctx, doc, &route.found);
        let parsed = route.parsed.clone();
        self.next.insert(at, route);
        parsed
    }

    /// Called once a validation is done: what it did not use is forgotten.
    pub(super) fn finish(&mut self) {
        self.routes = std::mem::take(&mut self.next);
    }
}

/// Reports `found` (lines counted from `doc`'s start) at `doc`'s place.
pub(super) fn report(ctx: &mut Ctx, doc: &Document, found: &Findings) {
    ctx.findings.issues.extend(found.issues.iter().map(|i| {
        let mut i = i.clone();
        i.file = doc.file.clone();
        i.pos = shift(i.pos, doc.line_offset);
        i
    }));
    ctx.findings.notices.extend(found.notices.iter().map(|n| {
        let mut n = n.clone();
        n.file = doc.file.clone();
        n.pos = shift(n.pos, doc.line_offset);
        n
    }));
}

/// `found` with its lines counted from `doc`'s start (to be kept).
pub(super) fn unshifted(doc: &Document, mut found: Findings) -> Findings {
    for i in &mut found.issues {
        i.pos = unshift(i.pos, doc.line_offset);
    }
    for n in &mut found.notices {
        n.pos = unshift(n.pos, doc.line_offset);
    }
    found
}
