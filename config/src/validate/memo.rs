//! What validation may keep from one load to the next: the checks an HTTPRoute makes of
//! itself alone (`httproute::parse`), which depend on nothing but its document. They are
//! kept by the decoded document a [`crate::Loader`] shares between loads while the
//! document's text is the same, with what they reported, lines counted from the
//! document's start. Everything that looks at more than one document runs every time.

use std::collections::HashMap;
use std::sync::Arc;

use crate::decode::Findings;
use crate::decode::gateway::HttpRouteDoc;
use crate::read::{Document, shift, unshift};

use super::ctx::Ctx;
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
}

#[derive(Debug, Clone)]
struct Route {
    _raw: Arc<HttpRouteDoc>,
    parsed: Option<Arc<ParsedRoute>>,
    /// Lines counted from the document's start.
    found: Arc<Findings>,
}

impl Memo {
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
            Some(r) => r,
            None => {
                self.checked += 1;
                let outer = std::mem::take(&mut ctx.findings);
                let parsed = httproute::parse(ctx, doc, raw).map(Arc::new);
                let mut found = std::mem::replace(&mut ctx.findings, outer);
                for i in &mut found.issues {
                    i.pos = unshift(i.pos, doc.line_offset);
                }
                for n in &mut found.notices {
                    n.pos = unshift(n.pos, doc.line_offset);
                }
                Route {
                    _raw: raw.clone(),
                    parsed,
                    found: Arc::new(found),
                }
            }
        };
        ctx.findings
            .issues
            .extend(route.found.issues.iter().map(|i| {
                let mut i = i.clone();
                i.file = doc.file.clone();
                i.pos = shift(i.pos, doc.line_offset);
                i
            }));
        ctx.findings
            .notices
            .extend(route.found.notices.iter().map(|n| {
                let mut n = n.clone();
                n.file = doc.file.clone();
                n.pos = shift(n.pos, doc.line_offset);
                n
            }));
        let parsed = route.parsed.clone();
        self.next.insert(at, route);
        parsed
    }

    /// Called once a validation is done: what it did not use is forgotten.
    pub(super) fn finish(&mut self) {
        self.routes = std::mem::take(&mut self.next);
    }
}
