//! An `HTTPRoute` document, checked as the Gateway API's schema checks it: its parents,
//! hostnames and rules (matches, filters in [`super::filters`], backends, timeouts), with
//! every default applied. What it attaches to and what its backends resolve to is
//! [`super::attach`]'s business: this part looks at the document alone.

use crate::decode::gateway::{self as raw, GATEWAY_GROUP};
use crate::decode::scalar::Int;
use crate::defaults;
use crate::duration;
use crate::model::{
    HeaderMatch, HeaderMatchKind, PathMatch, QueryMatch, RouteMatch, RouteTimeouts, ValueMatch,
};
use crate::read::Document;

use super::ctx::{Ctx, check_name};
use super::endpoints::{BackendRef, core, namespace_of, port_field};
use super::filters::{self, ParsedFilter};
use super::hostnames;

/// A checked HTTPRoute.
#[derive(Debug)]
pub(super) struct ParsedRoute {
    /// Its namespace.
    pub(super) namespace: String,
    /// Its name.
    pub(super) name: String,
    /// Its hostnames (empty: the listener's).
    pub(super) hostnames: Vec<String>,
    /// Its parents.
    pub(super) parents: Vec<ParsedParent>,
    /// Its rules.
    pub(super) rules: Vec<ParsedRule>,
}

/// One `parentRefs` entry, defaults applied.
#[derive(Debug)]
pub(super) struct ParsedParent {
    /// A Gateway (`group` and `kind` are the Gateway API's `Gateway`).
    pub(super) gateway: bool,
    /// The namespace.
    pub(super) namespace: String,
    /// The name.
    pub(super) name: String,
    /// `sectionName`.
    pub(super) section: Option<String>,
    /// `port`.
    pub(super) port: Option<u16>,
    /// Its field (`spec.parentRefs[i]`).
    pub(super) field: String,
}

impl ParsedParent {
    /// `NAMESPACE/NAME[/SECTION][:PORT]`, the name of its status section.
    pub(super) fn label(&self) -> String {
        let mut s = format!("{}/{}", self.namespace, self.name);
        if let Some(sec) = &self.section {
            s.push('/');
            s.push_str(sec);
        }
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s
    }
}

/// A checked rule.
#[derive(Debug)]
pub(super) struct ParsedRule {
    /// Its name, or its index.
    pub(super) name: String,
    /// Its field (`spec.rules[i]`).
    pub(super) field: String,
    /// Its matches (never empty).
    pub(super) matches: Vec<RouteMatch>,
    /// Its filters.
    pub(super) filters: Vec<ParsedFilter>,
    /// Its backends.
    pub(super) backends: Vec<ParsedBackend>,
    /// Its timeouts.
    pub(super) timeouts: RouteTimeouts,
    /// Its `sessionPersistence`.
    pub(super) affinity: Option<crate::model::Affinity>,
}

/// A checked backendRef.
#[derive(Debug)]
pub(super) struct ParsedBackend {
    /// What it refers to.
    pub(super) r: BackendRef,
    /// Its weight.
    pub(super) weight: u32,
    /// Its own filters.
    pub(super) filters: Vec<ParsedFilter>,
    /// Its field.
    pub(super) field: String,
}

/// Checks one HTTPRoute; `None` when it has an issue.
pub(super) fn parse(ctx: &mut Ctx, doc: &Document, r: &raw::HttpRouteDoc) -> Option<ParsedRoute> {
    let before = ctx.issue_count();
    let name = check_name(ctx, doc, r.metadata.name.as_deref());
    let namespace = namespace_of(r.metadata.namespace.as_deref());
    let Some(spec) = &r.spec else {
        ctx.issue(
            doc,
            "spec",
            "an HTTPRoute needs a spec with parentRefs and rules",
        );
        return None;
    };
    let mut parents = Vec::new();
    for (i, p) in spec.parent_refs.iter().enumerate() {
        let field = format!("spec.parentRefs[{i}]");
        let Some(pname) = p.name.clone().filter(|n| !n.is_empty()) else {
            ctx.issue(doc, &field, "a parentRef needs a name");
            continue;
        };
        let group = p.group.clone().unwrap_or_else(|| GATEWAY_GROUP.to_owned());
        let kind = p.kind.clone().unwrap_or_else(|| "Gateway".to_owned());
        let port = p
            .port
            .as_ref()
            .and_then(|v| port_field(ctx, doc, &format!("{field}.port"), v));
        parents.push(ParsedParent {
            gateway: group == GATEWAY_GROUP && kind == "Gateway",
            namespace: namespace_of(p.namespace.as_deref().or(Some(&namespace))),
            name: pname,
            section: p.section_name.clone(),
            port,
            field,
        });
    }
    if spec.parent_refs.is_empty() {
        ctx.warn(
            doc,
            "spec",
            "an HTTPRoute without parentRefs attaches to no Gateway: it is not served",
        );
    }
    let mut hosts = Vec::new();
    for (i, h) in spec.hostnames.iter().enumerate() {
        match hostnames::check(h) {
            Ok(()) => hosts.push(h.clone()),
            Err(e) => ctx.issue(doc, &format!("spec.hostnames[{i}]"), e),
        }
    }
    let mut rules = Vec::new();
    let default_rules = [raw::HttpRouteRule::default()];
    let raw_rules = spec.rules.as_deref().unwrap_or(&default_rules);
    for (i, rule) in raw_rules.iter().enumerate() {
        match parse_rule(ctx, doc, i, rule, &namespace) {
            Some(r) if rules.iter().any(|o: &ParsedRule| o.name == r.name) => ctx.issue(
                doc,
                &format!("spec.rules[{i}].name"),
                format!("rule name {:?} is used twice", r.name),
            ),
            Some(r) => rules.push(r),
            None => {}
        }
    }
    if ctx.issue_count() > before {
        return None;
    }
    Some(ParsedRoute {
        namespace,
        name: name?,
        hostnames: hosts,
        parents,
        rules,
    })
}

fn parse_rule(
    ctx: &mut Ctx,
    doc: &Document,
    i: usize,
    rule: &raw::HttpRouteRule,
    route_ns: &str,
) -> Option<ParsedRule> {
    let field = format!("spec.rules[{i}]");
    let before = ctx.issue_count();
    let name = match &rule.name {
        Some(n) if is_label(n) => n.clone(),
        Some(n) => {
            ctx.issue(
                doc,
                &format!("{field}.name"),
                format!("{n:?} is not a rule name: use lower-case letters, digits and '-'"),
            );
            String::new()
        }
        None => i.to_string(),
    };
    let mut matches = Vec::new();
    match &rule.matches {
        None => matches.push(RouteMatch {
            path: PathMatch::Segments(defaults::GATEWAY_PATH_PREFIX.to_owned()),
            headers: Vec::new(),
            query: Vec::new(),
            method: None,
        }),
        Some(ms) => {
            for (j, m) in ms.iter().enumerate() {
                if let Some(m) = route_match(ctx, doc, &format!("{field}.matches[{j}]"), m) {
                    matches.push(m);
                }
            }
        }
    }
    if matches.is_empty() && ctx.issue_count() == before {
        // `matches: []`: as the Gateway API defaults it, every path.
        matches.push(RouteMatch {
            path: PathMatch::Segments(defaults::GATEWAY_PATH_PREFIX.to_owned()),
            headers: Vec::new(),
            query: Vec::new(),
            method: None,
        });
    }
    let filters = filters::filters(
        ctx,
        doc,
        &format!("{field}.filters"),
        &rule.filters,
        route_ns,
        &matches,
    );
    let mut backends = Vec::new();
    for (j, b) in rule.backend_refs.iter().enumerate() {
        let bf = format!("{field}.backendRefs[{j}]");
        let Some(name) = b.name.clone().filter(|n| !n.is_empty()) else {
            ctx.issue(doc, &bf, "a backendRef needs a name");
            continue;
        };
        let weight = match &b.weight {
            None => defaults::BACKEND_WEIGHT,
            Some(w) => match w.as_i64() {
                Some(n) if (0..=defaults::MAX_BACKEND_WEIGHT).contains(&n) => n as u32,
                _ => {
                    ctx.issue(
                        doc,
                        &format!("{bf}.weight"),
                        format!(
                            "{w} is not a weight: write a whole number from 0 to {}",
                            defaults::MAX_BACKEND_WEIGHT
                        ),
                    );
                    continue;
                }
            },
        };
        let port = b
            .port
            .as_ref()
            .and_then(|p| port_field(ctx, doc, &format!("{bf}.port"), p));
        let bfilters = filters::filters(
            ctx,
            doc,
            &format!("{bf}.filters"),
            &b.filters,
            route_ns,
            &matches,
        );
        backends.push(ParsedBackend {
            r: BackendRef {
                group: core(b.group.as_deref()),
                kind: b.kind.clone().unwrap_or_else(|| "Service".to_owned()),
                namespace: namespace_of(b.namespace.as_deref().or(Some(route_ns))),
                name,
                port,
            },
            weight,
            filters: bfilters,
            field: bf,
        });
    }
    let timeouts = timeouts(ctx, doc, &field, rule.timeouts.as_ref());
    let affinity = rule
        .session_persistence
        .as_ref()
        .and_then(|s| session_persistence(ctx, doc, &format!("{field}.sessionPersistence"), s));
    for (f, given) in [("retry", rule.retry.is_some())] {
        if given {
            ctx.notice(
                doc,
                &format!("{field}.{f}"),
                format!("{f} is not supported yet: the rule is served without it"),
            );
        }
    }
    if ctx.issue_count() > before {
        return None;
    }
    Some(ParsedRule {
        name,
        field,
        matches,
        filters,
        backends,
        timeouts,
        affinity,
    })
}

/// `sessionPersistence`: a cookie weir sets (`Cookie`, the default) or a header the
/// client sends (`Header`), keeping a user on one leg of the rule's split.
fn session_persistence(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    s: &crate::decode::gateway::SessionPersistence,
) -> Option<crate::model::Affinity> {
    use crate::model::Affinity;
    if s.idle_timeout.is_some() {
        ctx.notice(
            doc,
            &format!("{field}.idleTimeout"),
            "idleTimeout is not supported: the session lasts its absoluteTimeout",
        );
    }
    let name = s.session_name.clone().filter(|n| !n.is_empty());
    match s.type_.as_deref().unwrap_or("Cookie") {
        "Cookie" => {
            let max_age = match &s.absolute_timeout {
                Some(t) => match crate::duration::parse_gateway(t) {
                    Ok(d) => d,
                    Err(e) => {
                        ctx.issue(doc, &format!("{field}.absoluteTimeout"), e.to_string());
                        return None;
                    }
                },
                None => defaults::AFFINITY_MAX_AGE,
            };
            Some(Affinity::Cookie {
                name: name.unwrap_or_else(|| defaults::AFFINITY_COOKIE.to_owned()),
                max_age,
            })
        }
        "Header" => match name {
            Some(h) => Some(Affinity::Header(h.to_ascii_lowercase())),
            None => {
                ctx.issue(
                    doc,
                    &format!("{field}.sessionName"),
                    "a Header session needs sessionName: the header that identifies the user",
                );
                None
            }
        },
        other => {
            ctx.issue(
                doc,
                &format!("{field}.type"),
                format!("{other:?} is not a session persistence type: Cookie or Header"),
            );
            None
        }
    }
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn route_match(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    m: &raw::HttpRouteMatch,
) -> Option<RouteMatch> {
    let before = ctx.issue_count();
    let path = match &m.path {
        None => PathMatch::Segments(defaults::GATEWAY_PATH_PREFIX.to_owned()),
        Some(p) => path_match(ctx, doc, &format!("{field}.path"), p)?,
    };
    let mut headers: Vec<HeaderMatch> = Vec::new();
    for (k, h) in m.headers.iter().enumerate() {
        let hf = format!("{field}.headers[{k}]");
        let Some((name, value)) = value_match(ctx, doc, &hf, h, true) else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        // "The first entry with an equivalent name takes precedence."
        if headers.iter().any(|o| o.name == name) {
            ctx.notice(doc, &hf, format!("header {name:?} is matched twice: the first match counts, as the Gateway API says"));
            continue;
        }
        let kind = match value {
            ValueMatch::Exact(v) => HeaderMatchKind::Exact(v),
            ValueMatch::Regex(r) => HeaderMatchKind::Regex(r),
        };
        headers.push(HeaderMatch { name, kind });
    }
    let mut query: Vec<QueryMatch> = Vec::new();
    for (k, q) in m.query_params.iter().enumerate() {
        let qf = format!("{field}.queryParams[{k}]");
        let Some((name, value)) = value_match(ctx, doc, &qf, q, false) else {
            continue;
        };
        if query.iter().any(|o| o.name == name) {
            ctx.notice(doc, &qf, format!("query parameter {name:?} is matched twice: the first match counts, as the Gateway API says"));
            continue;
        }
        query.push(QueryMatch { name, value });
    }
    let method = match m.method.as_deref() {
        None => None,
        Some(
            x @ ("GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE"
            | "PATCH"),
        ) => Some(x.to_owned()),
        Some(x) => {
            ctx.issue(doc, &format!("{field}.method"), format!("{x:?} is not a method: use GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE or PATCH"));
            None
        }
    };
    if ctx.issue_count() > before {
        return None;
    }
    Some(RouteMatch {
        path,
        headers,
        query,
        method,
    })
}

fn path_match(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    p: &raw::HttpPathMatch,
) -> Option<PathMatch> {
    let value = p
        .value
        .clone()
        .unwrap_or_else(|| defaults::GATEWAY_PATH_PREFIX.to_owned());
    let kind = p.type_.as_deref().unwrap_or("PathPrefix");
    if kind == "RegularExpression" {
        return match regex::Regex::new(&format!("^(?:{value})$")) {
            Ok(r) => Some(PathMatch::Regex(r)),
            Err(e) => {
                ctx.issue(
                    doc,
                    &format!("{field}.value"),
                    format!("not a regular expression: {e}"),
                );
                None
            }
        };
    }
    if !matches!(kind, "Exact" | "PathPrefix") {
        ctx.issue(
            doc,
            &format!("{field}.type"),
            format!(
                "{kind:?} is not a path match type: use Exact, PathPrefix or RegularExpression"
            ),
        );
        return None;
    }
    if let Err(e) = check_path(&value) {
        ctx.issue(doc, &format!("{field}.value"), e);
        return None;
    }
    Some(if kind == "Exact" {
        PathMatch::Exact(value)
    } else {
        let trimmed = value.trim_end_matches('/');
        PathMatch::Segments(if trimmed.is_empty() {
            "/".to_owned()
        } else {
            trimmed.to_owned()
        })
    })
}

/// A path as an `Exact` or `PathPrefix` match, a redirect or a rewrite writes it: absolute,
/// with no `//`, `/./`, `/../`, `%2f` or `#`.
pub(super) fn check_path(value: &str) -> Result<(), String> {
    if !value.starts_with('/') {
        return Err(format!("{value:?} must start with '/'"));
    }
    for bad in ["//", "/./", "/../", "%2f", "%2F", "#"] {
        if value.contains(bad) {
            return Err(format!("{value:?} must not contain {bad:?}"));
        }
    }
    if value.ends_with("/..") || value.ends_with("/.") {
        return Err(format!("{value:?} must not end with /. or /.."));
    }
    Ok(())
}

fn value_match(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    m: &raw::HttpValueMatch,
    header: bool,
) -> Option<(String, ValueMatch)> {
    let what = if header { "header" } else { "query parameter" };
    let name = match m.name.as_deref() {
        Some(n) if super::filters::http_token(n) => n.to_owned(),
        Some(n) => {
            ctx.issue(
                doc,
                &format!("{field}.name"),
                format!("{n:?} is not a {what} name"),
            );
            return None;
        }
        None => {
            ctx.issue(doc, field, format!("a {what} match needs a name"));
            return None;
        }
    };
    let Some(value) = m.value.clone() else {
        ctx.issue(doc, field, format!("a {what} match needs a value"));
        return None;
    };
    match m.type_.as_deref().unwrap_or("Exact") {
        "Exact" => Some((name, ValueMatch::Exact(value))),
        "RegularExpression" => match regex::Regex::new(&format!("^(?:{value})$")) {
            Ok(r) => Some((name, ValueMatch::Regex(r))),
            Err(e) => {
                ctx.issue(
                    doc,
                    &format!("{field}.value"),
                    format!("not a regular expression: {e}"),
                );
                None
            }
        },
        other => {
            ctx.issue(
                doc,
                &format!("{field}.type"),
                format!("{other:?} is not a match type: use Exact or RegularExpression"),
            );
            None
        }
    }
}

fn timeouts(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    t: Option<&raw::HttpRouteTimeouts>,
) -> RouteTimeouts {
    let Some(t) = t else {
        return RouteTimeouts::default();
    };
    let parse = |ctx: &mut Ctx, f: &str, v: &Option<String>| {
        v.as_deref().and_then(|s| match duration::parse_gateway(s) {
            Ok(d) => Some(d),
            Err(e) => {
                ctx.issue(doc, &format!("{field}.timeouts.{f}"), e.to_string());
                None
            }
        })
    };
    let out = RouteTimeouts {
        request: parse(ctx, "request", &t.request),
        backend_request: parse(ctx, "backendRequest", &t.backend_request),
        ..RouteTimeouts::default()
    };
    if let (Some(r), Some(b)) = (out.request, out.backend_request)
        && !r.is_zero()
        && b > r
    {
        ctx.issue(
            doc,
            &format!("{field}.timeouts.backendRequest"),
            format!(
                "backendRequest ({}) must not be longer than request ({})",
                duration::format(b),
                duration::format(r)
            ),
        );
    }
    out
}

/// A whole number at `field` within `range`, or an issue.
pub(super) fn int_in(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    v: &Int,
    range: std::ops::RangeInclusive<i64>,
) -> Option<i64> {
    match v.as_i64() {
        Some(n) if range.contains(&n) => Some(n),
        _ => {
            ctx.issue(
                doc,
                field,
                format!(
                    "{v} is not a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            );
            None
        }
    }
}
