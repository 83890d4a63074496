//! HTTPRoute filters, at rule and at backend level, checked as the Gateway API's schema
//! checks them: `RequestHeaderModifier`, `ResponseHeaderModifier`, `RequestRedirect`,
//! `URLRewrite`, `RequestMirror` and `CORS` become model [`Filter`]s (a mirror once its
//! backend resolves); `ExtensionRef` and the types weir does not implement are kept as
//! unsupported, so that the route is refused with `UnsupportedValue` rather than served
//! without them.

use crate::decode::gateway as raw;
use crate::defaults;
use crate::model::{
    Cors, Filter, HeaderModifier, PathMatch, PathRewrite, Redirect, Rewrite, RouteMatch, Weight,
};
use crate::read::Document;

use super::ctx::Ctx;
use super::endpoints::{BackendRef, core, namespace_of, port_field};
use super::hostnames;
use super::httproute::{check_path, int_in};

/// A checked filter.
#[derive(Debug)]
pub(super) enum ParsedFilter {
    /// Ready for the model.
    Ready(Filter),
    /// A `RequestMirror`, whose backend is resolved with the route's.
    Mirror {
        /// The backend copies go to.
        r: BackendRef,
        /// The share of requests copied.
        share: Weight,
        /// Its field.
        field: String,
    },
    /// A filter weir does not implement.
    Unsupported {
        /// Its type.
        what: String,
        /// Its field.
        field: String,
    },
}

/// Whether `s` is an HTTP token (a header name).
pub(super) fn http_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks the filters at `field`; `matches` are the rule's (a `ReplacePrefixMatch` needs
/// one `PathPrefix` match).
pub(super) fn filters(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    list: &[raw::HttpRouteFilter],
    route_ns: &str,
    matches: &[RouteMatch],
) -> Vec<ParsedFilter> {
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (i, f) in list.iter().enumerate() {
        let ff = format!("{field}[{i}]");
        let Some(kind) = f.type_.as_deref() else {
            ctx.issue(doc, &ff, "a filter needs a type");
            continue;
        };
        let given: Vec<&str> = [
            ("requestHeaderModifier", f.request_header_modifier.is_some()),
            (
                "responseHeaderModifier",
                f.response_header_modifier.is_some(),
            ),
            ("requestRedirect", f.request_redirect.is_some()),
            ("urlRewrite", f.url_rewrite.is_some()),
            ("requestMirror", f.request_mirror.is_some()),
            ("cors", f.cors.is_some()),
            ("extensionRef", f.extension_ref.is_some()),
        ]
        .iter()
        .filter(|(_, g)| *g)
        .map(|(n, _)| *n)
        .collect();
        let want = match kind {
            "RequestHeaderModifier" => "requestHeaderModifier",
            "ResponseHeaderModifier" => "responseHeaderModifier",
            "RequestRedirect" => "requestRedirect",
            "URLRewrite" => "urlRewrite",
            "RequestMirror" => "requestMirror",
            "CORS" => "cors",
            "ExtensionRef" => "extensionRef",
            "ExternalAuth" => {
                out.push(ParsedFilter::Unsupported {
                    what: kind.to_owned(),
                    field: ff,
                });
                continue;
            }
            other => {
                ctx.issue(doc, &format!("{ff}.type"), format!("{other:?} is not a filter type: use RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite, RequestMirror, CORS or ExtensionRef"));
                continue;
            }
        };
        if given != [want] {
            ctx.issue(
                doc,
                &ff,
                format!("a {kind} filter needs {want} and no other filter's field"),
            );
            continue;
        }
        if kind != "RequestMirror" {
            if seen.contains(&kind) {
                ctx.issue(doc, &format!("{ff}.type"), format!("{kind} is given twice: a rule takes each filter type once (RequestMirror excepted)"));
                continue;
            }
            seen.push(kind);
        }
        if seen.contains(&"RequestRedirect") && seen.contains(&"URLRewrite") {
            ctx.issue(
                doc,
                &format!("{ff}.type"),
                "RequestRedirect and URLRewrite cannot be used together",
            );
            continue;
        }
        let parsed = match kind {
            "RequestHeaderModifier" => f
                .request_header_modifier
                .as_ref()
                .and_then(|m| header_modifier(ctx, doc, &format!("{ff}.requestHeaderModifier"), m))
                .map(|m| ParsedFilter::Ready(Filter::RequestHeaders(m))),
            "ResponseHeaderModifier" => f
                .response_header_modifier
                .as_ref()
                .and_then(|m| header_modifier(ctx, doc, &format!("{ff}.responseHeaderModifier"), m))
                .map(|m| ParsedFilter::Ready(Filter::ResponseHeaders(m))),
            "RequestRedirect" => f
                .request_redirect
                .as_ref()
                .and_then(|r| redirect(ctx, doc, &format!("{ff}.requestRedirect"), r, matches))
                .map(|r| ParsedFilter::Ready(Filter::Redirect(r))),
            "URLRewrite" => f
                .url_rewrite
                .as_ref()
                .and_then(|r| rewrite(ctx, doc, &format!("{ff}.urlRewrite"), r, matches))
                .map(|r| ParsedFilter::Ready(Filter::Rewrite(r))),
            "RequestMirror" => f
                .request_mirror
                .as_ref()
                .and_then(|m| mirror(ctx, doc, &format!("{ff}.requestMirror"), m, route_ns)),
            "CORS" => f
                .cors
                .as_ref()
                .and_then(|c| cors(ctx, doc, &format!("{ff}.cors"), c))
                .map(|c| ParsedFilter::Ready(Filter::Cors(c))),
            _ => Some(ParsedFilter::Unsupported {
                what: kind.to_owned(),
                field: ff,
            }),
        };
        out.extend(parsed);
    }
    out
}

fn header_modifier(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    m: &raw::HeaderModifierDoc,
) -> Option<HeaderModifier> {
    let before = ctx.issue_count();
    let list = |ctx: &mut Ctx, part: &str, headers: &[raw::HeaderDoc]| {
        let mut out: Vec<(String, String)> = Vec::new();
        for (i, h) in headers.iter().enumerate() {
            let hf = format!("{field}.{part}[{i}]");
            let (Some(name), Some(value)) = (&h.name, &h.value) else {
                ctx.issue(doc, &hf, "a header needs a name and a value");
                continue;
            };
            if !http_token(name) {
                ctx.issue(
                    doc,
                    &format!("{hf}.name"),
                    format!("{name:?} is not a header name"),
                );
                continue;
            }
            let name = name.to_ascii_lowercase();
            if out.iter().any(|(n, _)| *n == name) {
                ctx.issue(
                    doc,
                    &format!("{hf}.name"),
                    format!("header {name:?} is listed twice in {part}"),
                );
                continue;
            }
            out.push((name, value.clone()));
        }
        out
    };
    let set = list(ctx, "set", &m.set);
    let add = list(ctx, "add", &m.add);
    let mut remove: Vec<String> = Vec::new();
    for (i, n) in m.remove.iter().enumerate() {
        let name = n.to_ascii_lowercase();
        if !http_token(n) {
            ctx.issue(
                doc,
                &format!("{field}.remove[{i}]"),
                format!("{n:?} is not a header name"),
            );
        } else if remove.contains(&name) {
            ctx.issue(
                doc,
                &format!("{field}.remove[{i}]"),
                format!("header {name:?} is listed twice in remove"),
            );
        } else {
            remove.push(name);
        }
    }
    (ctx.issue_count() == before).then_some(HeaderModifier { set, add, remove })
}

/// A redirect's or a rewrite's `hostname`: a precise host name (no wildcard).
fn precise_hostname(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    h: &Option<String>,
) -> Option<Option<String>> {
    match h {
        None => Some(None),
        Some(h) => match hostnames::check(h) {
            Ok(()) if !h.starts_with('*') => Some(Some(h.clone())),
            Ok(()) => {
                ctx.issue(
                    doc,
                    field,
                    format!("{h:?}: a wildcard is not a host name to send to"),
                );
                None
            }
            Err(e) => {
                ctx.issue(doc, field, e);
                None
            }
        },
    }
}

fn path_modifier(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    p: &raw::PathModifierDoc,
    matches: &[RouteMatch],
) -> Option<PathRewrite> {
    let (value, out): (&Option<String>, fn(String) -> PathRewrite) = match p.type_.as_deref() {
        Some("ReplaceFullPath") if p.replace_prefix_match.is_none() => {
            (&p.replace_full_path, PathRewrite::Full)
        }
        Some("ReplacePrefixMatch") if p.replace_full_path.is_none() => {
            let one_prefix =
                matches.len() == 1 && matches!(matches[0].path, PathMatch::Segments(_));
            if !one_prefix {
                ctx.issue(doc, &format!("{field}.type"), "ReplacePrefixMatch needs the rule to have exactly one match, of type PathPrefix");
                return None;
            }
            (&p.replace_prefix_match, PathRewrite::Prefix)
        }
        Some(t @ ("ReplaceFullPath" | "ReplacePrefixMatch")) => {
            ctx.issue(
                doc,
                field,
                format!(
                    "type {t} takes only its own field ({})",
                    if t == "ReplaceFullPath" {
                        "replaceFullPath"
                    } else {
                        "replacePrefixMatch"
                    }
                ),
            );
            return None;
        }
        other => {
            ctx.issue(
                doc,
                &format!("{field}.type"),
                format!(
                    "{:?} is not a path modifier: use ReplaceFullPath or ReplacePrefixMatch",
                    other.unwrap_or("")
                ),
            );
            return None;
        }
    };
    let Some(value) = value else {
        let f = if matches!(p.type_.as_deref(), Some("ReplaceFullPath")) {
            "replaceFullPath"
        } else {
            "replacePrefixMatch"
        };
        ctx.issue(
            doc,
            field,
            format!(
                "{f} is required with type {}",
                p.type_.as_deref().unwrap_or("")
            ),
        );
        return None;
    };
    if let Err(e) = check_path(value) {
        ctx.issue(doc, field, e);
        return None;
    }
    Some(out(value.clone()))
}

fn redirect(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    r: &raw::RedirectDoc,
    matches: &[RouteMatch],
) -> Option<Redirect> {
    let before = ctx.issue_count();
    let scheme = match r.scheme.as_deref() {
        None => None,
        Some(s @ ("http" | "https")) => Some(s.to_owned()),
        Some(s) => {
            ctx.issue(
                doc,
                &format!("{field}.scheme"),
                format!("{s:?} is not a scheme: use http or https"),
            );
            None
        }
    };
    let hostname = precise_hostname(ctx, doc, &format!("{field}.hostname"), &r.hostname);
    let path = r
        .path
        .as_ref()
        .map(|p| path_modifier(ctx, doc, &format!("{field}.path"), p, matches));
    let port = r
        .port
        .as_ref()
        .map(|p| port_field(ctx, doc, &format!("{field}.port"), p));
    let status = match &r.status_code {
        None => Some(defaults::REDIRECT_STATUS),
        Some(v) => match v.as_i64() {
            Some(n @ (301 | 302 | 303 | 307 | 308)) => Some(n as u16),
            _ => {
                ctx.issue(
                    doc,
                    &format!("{field}.statusCode"),
                    format!("{v} is not a redirect status: use 301, 302, 303, 307 or 308"),
                );
                None
            }
        },
    };
    if ctx.issue_count() > before {
        return None;
    }
    Some(Redirect {
        scheme,
        hostname: hostname?,
        path: path.flatten(),
        port: port.flatten(),
        status: status?,
        url: None,
    })
}

fn rewrite(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    r: &raw::RewriteDoc,
    matches: &[RouteMatch],
) -> Option<Rewrite> {
    let before = ctx.issue_count();
    let hostname = precise_hostname(ctx, doc, &format!("{field}.hostname"), &r.hostname);
    let path = r
        .path
        .as_ref()
        .map(|p| path_modifier(ctx, doc, &format!("{field}.path"), p, matches));
    if ctx.issue_count() > before {
        return None;
    }
    Some(Rewrite {
        hostname: hostname?,
        path: path.flatten(),
    })
}

fn mirror(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    m: &raw::MirrorDoc,
    route_ns: &str,
) -> Option<ParsedFilter> {
    let before = ctx.issue_count();
    let Some(b) = &m.backend_ref else {
        ctx.issue(doc, field, "a RequestMirror needs a backendRef");
        return None;
    };
    let Some(name) = b.name.clone().filter(|n| !n.is_empty()) else {
        ctx.issue(
            doc,
            &format!("{field}.backendRef"),
            "a backendRef needs a name",
        );
        return None;
    };
    let port = b
        .port
        .as_ref()
        .and_then(|p| port_field(ctx, doc, &format!("{field}.backendRef.port"), p));
    let share = match (&m.percent, &m.fraction) {
        (Some(_), Some(_)) => {
            ctx.issue(doc, field, "give percent or fraction, not both");
            None
        }
        (None, None) => Some(defaults::MIRROR_SHARE),
        (Some(p), None) => int_in(ctx, doc, &format!("{field}.percent"), p, 0..=100)
            .map(|n| Weight::from_basis_points(n as u32 * 100)),
        (None, Some(f)) => {
            let den = match &f.denominator {
                None => Some(defaults::MIRROR_DENOMINATOR),
                Some(d) => int_in(
                    ctx,
                    doc,
                    &format!("{field}.fraction.denominator"),
                    d,
                    1..=i64::from(i32::MAX),
                ),
            };
            let num = match &f.numerator {
                None => {
                    ctx.issue(
                        doc,
                        &format!("{field}.fraction"),
                        "a fraction needs a numerator",
                    );
                    None
                }
                Some(n) => int_in(
                    ctx,
                    doc,
                    &format!("{field}.fraction.numerator"),
                    n,
                    0..=i64::from(i32::MAX),
                ),
            };
            match (num, den) {
                (Some(n), Some(d)) if n > d => {
                    ctx.issue(doc, &format!("{field}.fraction"), format!("{n}/{d} is more than the whole: the numerator must not exceed the denominator"));
                    None
                }
                (Some(n), Some(d)) => {
                    Some(Weight::from_basis_points(((n * 10_000 + d / 2) / d) as u32))
                }
                _ => None,
            }
        }
    };
    if ctx.issue_count() > before {
        return None;
    }
    Some(ParsedFilter::Mirror {
        r: BackendRef {
            group: core(b.group.as_deref()),
            kind: b.kind.clone().unwrap_or_else(|| "Service".to_owned()),
            namespace: namespace_of(b.namespace.as_deref().or(Some(route_ns))),
            name,
            port,
        },
        share: share?,
        field: field.to_owned(),
    })
}

fn cors(ctx: &mut Ctx, doc: &Document, field: &str, c: &raw::CorsDoc) -> Option<Cors> {
    let before = ctx.issue_count();
    for (i, o) in c.allow_origins.iter().enumerate() {
        let ok = o == "*"
            || ["http://", "https://"].iter().any(|s| {
                o.strip_prefix(s).is_some_and(|rest| {
                    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
                    !host.is_empty() && !rest.contains('/') && hostnames::check(host).is_ok()
                })
            });
        if !ok {
            ctx.issue(doc, &format!("{field}.allowOrigins[{i}]"), format!("{o:?} is not an origin: write *, or scheme://host[:port] where host may start with *."));
        }
    }
    for (part, list) in [
        ("allowMethods", &c.allow_methods),
        ("allowHeaders", &c.allow_headers),
        ("exposeHeaders", &c.expose_headers),
    ] {
        for (i, v) in list.iter().enumerate() {
            if !http_token(v) {
                ctx.issue(
                    doc,
                    &format!("{field}.{part}[{i}]"),
                    format!(
                        "{v:?} is not a {}",
                        if part == "allowMethods" {
                            "method"
                        } else {
                            "header name"
                        }
                    ),
                );
            }
        }
    }
    if c.allow_methods.len() > 1 && c.allow_methods.iter().any(|m| m == "*") {
        ctx.issue(
            doc,
            &format!("{field}.allowMethods"),
            "* allows every method: give it alone",
        );
    }
    let max_age = match &c.max_age {
        None => Some(defaults::CORS_MAX_AGE),
        Some(v) => int_in(
            ctx,
            doc,
            &format!("{field}.maxAge"),
            v,
            1..=i64::from(i32::MAX),
        )
        .map(|n| n as u32),
    };
    if ctx.issue_count() > before {
        return None;
    }
    Some(Cors {
        allow_origins: c.allow_origins.clone(),
        allow_credentials: c.allow_credentials.unwrap_or(false),
        allow_methods: c.allow_methods.clone(),
        allow_headers: c
            .allow_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        expose_headers: c
            .expose_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        max_age: max_age?,
    })
}
