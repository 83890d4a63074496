//! A Proxy's routes: what requests each takes (hosts, path prefix, headers, listeners) and
//! where they go (a Rollout, or a fixed weighted split over Services).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::decode::scalar::Text;
use crate::decode::weir as raw;
use crate::defaults;
use crate::model::{
    Affinity, HeaderMatch, HeaderMatchKind, HostMatch, PathMatch, Route, RouteMatch, RouteTarget,
    RouteTimeouts, Service, Weight, WeightedService,
};
use crate::read::Document;
use crate::rollout::Argo;

use super::ctx::Ctx;
use super::refs;

/// Validates route `i` of the Proxy; `None` when it has an issue.
pub(super) fn route(
    ctx: &mut Ctx,
    doc: &Document,
    i: usize,
    r: &raw::Route,
    services: &BTreeMap<String, Arc<Service>>,
    argo: &Argo,
    listeners: &BTreeSet<String>,
) -> Option<Route> {
    let field = format!("spec.routes[{i}]");
    let before = ctx.issue_count();
    let name = match r.name.as_deref() {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => {
            ctx.issue(doc, &field, "a route needs a name");
            String::new()
        }
    };
    let m = r.matches.clone().unwrap_or_default();
    let mut hosts = Vec::new();
    let host_list: Vec<(String, &String)> = m
        .host
        .iter()
        .map(|h| (format!("{field}.match.host"), h))
        .chain(
            m.hosts
                .iter()
                .flatten()
                .enumerate()
                .map(|(j, h)| (format!("{field}.match.hosts[{j}]"), h)),
        )
        .collect();
    for (hf, h) in host_list {
        match parse_host(h) {
            Ok(hm) => hosts.push(hm),
            Err(e) => ctx.issue(doc, &hf, e),
        }
    }
    let path_prefix = m
        .path_prefix
        .clone()
        .unwrap_or_else(|| defaults::PATH_PREFIX.to_owned());
    if !path_prefix.starts_with('/') {
        ctx.issue(
            doc,
            &format!("{field}.match.pathPrefix"),
            format!("{path_prefix:?} must start with '/'"),
        );
    }
    let mut headers = Vec::new();
    for (j, h) in m.headers.iter().enumerate() {
        let hf = format!("{field}.match.headers[{j}]");
        if let Some(hm) = header_match(ctx, doc, &hf, h) {
            headers.push(hm);
        }
    }
    let route_listeners = r.listeners.clone().unwrap_or_default();
    for (j, l) in route_listeners.iter().enumerate() {
        if !listeners.contains(l) {
            ctx.issue(
                doc,
                &format!("{field}.listeners[{j}]"),
                format!("no listener is named {l:?}"),
            );
        }
    }
    let target = match (&r.rollout, &r.backends) {
        (Some(_), Some(_)) => {
            ctx.issue(
                doc,
                &field,
                "a route has either rollout or backends, not both",
            );
            None
        }
        (None, None) => {
            ctx.issue(
                doc,
                &field,
                "a route needs a target: rollout: NAME, or backends: [{service, weight}]",
            );
            None
        }
        (Some(ro), None) => {
            refs::route_rollout(ctx, doc, &format!("{field}.rollout"), ro, argo);
            Some(RouteTarget::Rollout(ro.clone()))
        }
        (None, Some(backends)) => split_target(ctx, doc, &field, backends, services),
    };
    let affinity = r
        .session_affinity
        .as_ref()
        .and_then(|a| affinity(ctx, doc, &format!("{field}.sessionAffinity"), a));
    if ctx.issue_count() > before {
        return None;
    }
    Some(Route {
        name,
        hosts,
        matches: vec![RouteMatch {
            path: PathMatch::Prefix(path_prefix),
            headers,
            query: Vec::new(),
            method: None,
        }],
        listeners: route_listeners,
        filters: Vec::new(),
        target: target?,
        timeouts: RouteTimeouts::default(),
        scope: Vec::new(),
        max_body: None,
        steer: Vec::new(),
        affinity,
    })
}

/// `sessionAffinity`: exactly one of `cookieName` (with `maxAge`, default
/// [`defaults::AFFINITY_MAX_AGE`]) and `header`.
fn affinity(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    a: &raw::SessionAffinity,
) -> Option<Affinity> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    match (&a.cookie_name, &a.header) {
        (Some(name), None) => {
            if !token(name) {
                ctx.issue(
                    doc,
                    &format!("{field}.cookieName"),
                    format!("{name:?} is not a cookie name: letters, digits and !#$%&'*+-.^_`|~"),
                );
                return None;
            }
            let max_age = match &a.max_age {
                None => defaults::AFFINITY_MAX_AGE,
                // Flagger writes seconds; weir also takes a duration.
                Some(Text::Text(s)) => match s.trim().parse::<u64>() {
                    Ok(n) => std::time::Duration::from_secs(n),
                    Err(_) => ctx.duration(
                        doc,
                        &format!("{field}.maxAge"),
                        Some(s),
                        defaults::AFFINITY_MAX_AGE,
                    ),
                },
                Some(other) => {
                    ctx.issue(
                        doc,
                        &format!("{field}.maxAge"),
                        format!(
                            "{other} is not a duration: write seconds (21600) or a duration (6h)"
                        ),
                    );
                    return None;
                }
            };
            Some(Affinity::Cookie {
                name: name.clone(),
                max_age,
            })
        }
        (None, Some(h)) => {
            if !token(h) {
                ctx.issue(
                    doc,
                    &format!("{field}.header"),
                    format!("{h:?} is not a header name"),
                );
                return None;
            }
            if a.max_age.is_some() {
                ctx.issue(
                    doc,
                    &format!("{field}.maxAge"),
                    "maxAge goes with cookieName: a header is the client's",
                );
            }
            Some(Affinity::Header(h.to_ascii_lowercase()))
        }
        _ => {
            ctx.issue(doc, field, "sessionAffinity needs exactly one of cookieName (weir sets the cookie) and header (the client sends a user id)");
            None
        }
    }
}

fn split_target(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    backends: &[raw::Backend],
    services: &BTreeMap<String, Arc<Service>>,
) -> Option<RouteTarget> {
    if backends.is_empty() {
        ctx.issue(
            doc,
            &format!("{field}.backends"),
            "backends is empty: name at least one service",
        );
        return None;
    }
    let mut legs = Vec::new();
    let mut seen = BTreeSet::new();
    for (j, b) in backends.iter().enumerate() {
        let bf = format!("{field}.backends[{j}]");
        let Some(service) = b.service.clone() else {
            ctx.issue(doc, &bf, "a backend needs a service");
            continue;
        };
        refs::backend_service(ctx, doc, &format!("{bf}.service"), &service, services);
        if !seen.insert(service.clone()) {
            ctx.issue(
                doc,
                &format!("{bf}.service"),
                format!("service {service:?} is listed twice"),
            );
        }
        let weight = match b.weight {
            None if backends.len() == 1 => defaults::SINGLE_BACKEND_WEIGHT,
            None => {
                ctx.issue(
                    doc,
                    &bf,
                    "with several backends each needs a weight (percent)",
                );
                continue;
            }
            Some(w) => {
                match Weight::from_percent(w) {
                    Some(w) => w,
                    None => {
                        ctx.issue(
                        doc,
                        &format!("{bf}.weight"),
                        format!("{w} is not a weight: use a percentage from 0 to 100 in steps of 0.01"),
                    );
                        continue;
                    }
                }
            }
        };
        legs.push(WeightedService {
            service,
            weight: weight.basis_points(),
            filters: Vec::new(),
            invalid: None,
        });
    }
    let total: u32 = legs.iter().map(|l| l.weight).sum();
    if legs.len() == backends.len() && total != Weight::SCALE {
        ctx.issue(
            doc,
            &format!("{field}.backends"),
            format!(
                "weights sum to {}%: they must sum to 100",
                f64::from(total) / 100.0
            ),
        );
        return None;
    }
    Some(RouteTarget::Split(legs))
}

fn parse_host(h: &str) -> Result<HostMatch, String> {
    let h = h.trim().to_ascii_lowercase();
    let valid = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    if let Some(suffix) = h.strip_prefix("*.") {
        if valid(suffix) {
            return Ok(HostMatch::Suffix(format!(".{suffix}")));
        }
    } else if valid(&h) {
        return Ok(HostMatch::Exact(h));
    }
    Err(format!(
        "{h:?} is not a host: write a name such as api.example.com or a wildcard such as *.example.com, without a port"
    ))
}

fn header_match(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    h: &raw::HeaderMatch,
) -> Option<HeaderMatch> {
    let name = match h.name.as_deref() {
        Some(n) if http_token(n) => n.to_ascii_lowercase(),
        Some(n) => {
            ctx.issue(
                doc,
                &format!("{field}.name"),
                format!("{n:?} is not a header name"),
            );
            return None;
        }
        None => {
            ctx.issue(doc, field, "a header match needs a name");
            return None;
        }
    };
    let given = [
        h.exact.is_some(),
        h.prefix.is_some(),
        h.regex.is_some(),
        h.present.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        ctx.issue(
            doc,
            field,
            "a header match needs exactly one of exact, prefix, regex, present",
        );
        return None;
    }
    let kind = if let Some(v) = &h.exact {
        HeaderMatchKind::Exact(v.clone())
    } else if let Some(v) = &h.prefix {
        HeaderMatchKind::Prefix(v.clone())
    } else if let Some(v) = &h.regex {
        match regex::Regex::new(&format!("^(?:{v})$")) {
            Ok(r) => HeaderMatchKind::Regex(r),
            Err(e) => {
                ctx.issue(
                    doc,
                    &format!("{field}.regex"),
                    format!("not a regular expression: {e}"),
                );
                return None;
            }
        }
    } else {
        HeaderMatchKind::Present(h.present.unwrap_or(true))
    };
    Some(HeaderMatch { name, kind })
}

fn http_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
