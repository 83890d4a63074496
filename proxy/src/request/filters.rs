//! A route's filters, applied the same way for both protocols: header changes on the way
//! up and back, host and path rewrites, redirects, and CORS. Only routes that have
//! filters pay for them: a request on a route without any carries no [`Edit`].

use std::sync::Arc;

use weir_config::model::{Cors, HeaderModifier, PathMatch, PathRewrite, Redirect, Rewrite};

use super::RequestLine;
use crate::routing::{Headers, RouteFilters};

/// What a request's route and leg do to it and to its response.
#[derive(Debug, Default)]
pub(crate) struct Edit {
    /// The route's filters.
    pub(crate) route: Option<Arc<RouteFilters>>,
    /// The leg's own (an HTTPRoute backendRef's filters), applied after the route's.
    pub(crate) leg: Option<Arc<RouteFilters>>,
    /// The origin-form target sent upstream, when a rewrite changed it.
    pub(crate) target: Option<String>,
    /// The Host sent upstream, when a rewrite changed it.
    pub(crate) host: Option<String>,
    /// Headers added to the response (CORS).
    pub(crate) response_headers: Vec<(&'static str, String)>,
}

impl Edit {
    fn mods(&self, response: bool) -> [Option<&HeaderModifier>; 2] {
        fn pick(f: Option<&RouteFilters>, response: bool) -> Option<&HeaderModifier> {
            let f = f?;
            if response {
                f.response.as_ref()
            } else {
                f.request.as_ref()
            }
        }
        [
            pick(self.route.as_deref(), response),
            pick(self.leg.as_deref(), response),
        ]
    }

    /// Whether a header named `name` (as sent) is dropped: removed, or replaced by a
    /// `set`.
    pub(crate) fn drops(&self, response: bool, name: &[u8]) -> bool {
        self.mods(response).iter().flatten().any(|m| {
            m.remove
                .iter()
                .any(|r| name.eq_ignore_ascii_case(r.as_bytes()))
                || m.set
                    .iter()
                    .any(|(n, _)| name.eq_ignore_ascii_case(n.as_bytes()))
        })
    }

    /// The headers the filters add, given to `put` in order: the route's `set` and
    /// `add`, unless the leg's own filters remove or set them, then the leg's; on a
    /// response, the CORS headers last.
    pub(crate) fn extra(&self, response: bool, mut put: impl FnMut(&[u8], &[u8])) {
        let [route, leg] = self.mods(response);
        let overridden = |name: &str| {
            leg.is_some_and(|l| {
                l.remove.iter().any(|r| r == name) || l.set.iter().any(|(n, _)| n == name)
            })
        };
        if let Some(r) = route {
            for (n, v) in r.set.iter().chain(r.add.iter()) {
                if !overridden(n) {
                    put(n.as_bytes(), v.as_bytes());
                }
            }
        }
        if let Some(l) = leg {
            for (n, v) in l.set.iter().chain(l.add.iter()) {
                put(n.as_bytes(), v.as_bytes());
            }
        }
        if response {
            for (n, v) in &self.response_headers {
                put(n.as_bytes(), v.as_bytes());
            }
        }
    }
}

/// The rewrite of a request (`URLRewrite`): the Host and target sent upstream.
pub(crate) fn rewrite(rw: &Rewrite, req: &RequestLine<'_>, matched: &PathMatch, edit: &mut Edit) {
    if let Some(h) = &rw.hostname {
        edit.host = Some(h.clone());
    }
    if let Some(p) = &rw.path {
        let path = new_path(p, req.path, matched);
        edit.target = Some(match req.target.split_once('?') {
            Some((_, q)) => format!("{path}?{q}"),
            None => path,
        });
    }
}

/// `path` rewritten by `rw`; `matched` is the path condition that took the request.
fn new_path(rw: &PathRewrite, path: &str, matched: &PathMatch) -> String {
    match rw {
        PathRewrite::Full(p) => p.clone(),
        PathRewrite::Prefix(replacement) => {
            let prefix = match matched.prefix() {
                Some("/") | None => "",
                Some(p) => p.strip_suffix('/').unwrap_or(p),
            };
            let rest = path.get(prefix.len()..).unwrap_or("");
            let head = replacement.strip_suffix('/').unwrap_or(replacement);
            let joined = if rest.is_empty() || rest.starts_with('/') {
                format!("{head}{rest}")
            } else {
                format!("{head}/{rest}")
            };
            if joined.is_empty() {
                "/".to_owned()
            } else if joined.starts_with('/') {
                joined
            } else {
                format!("/{joined}")
            }
        }
        PathRewrite::Captures(template) => {
            // nginx's `rewrite REGEX TEMPLATE`: the whole path becomes the template, its
            // `$N` the groups the route's expression captured.
            let mut out = String::new();
            match matched {
                PathMatch::Regex(r) => match r.captures(path) {
                    Some(c) => c.expand(&braced_groups(template), &mut out),
                    None => out.push_str(template),
                },
                _ => out.push_str(template),
            }
            if out.starts_with('/') {
                out
            } else {
                format!("/{out}")
            }
        }
    }
}

/// nginx's `$1` as the regex crate's `${1}`, so that a group number followed by letters
/// (`$1abc`) stays a number, as in nginx.
fn braced_groups(template: &str) -> String {
    let mut out = String::with_capacity(template.len() + 8);
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push_str("${");
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                out.push(d);
                chars.next();
            }
            out.push('}');
        } else if c == '$' {
            out.push_str("$$");
        } else {
            out.push(c);
        }
    }
    out
}

/// The `Location` of a redirect, as the Gateway API composes it: each part not given
/// keeps the request's; with no port given, the new scheme's well-known port when the
/// scheme changes, else the listener's; the well-known port of the scheme is left out.
pub(crate) fn location(
    rd: &Redirect,
    req: &RequestLine<'_>,
    host: &str,
    tls: bool,
    listener_port: u16,
    matched: &PathMatch,
) -> String {
    if let Some(url) = &rd.url {
        return url.clone();
    }
    let scheme = rd
        .scheme
        .as_deref()
        .unwrap_or(if tls { "https" } else { "http" });
    let hostname = rd.hostname.as_deref().unwrap_or(host);
    let well_known = if scheme == "https" { 443 } else { 80 };
    let port = match (rd.port, &rd.scheme) {
        (Some(p), _) => p,
        (None, Some(_)) => well_known,
        (None, None) => listener_port,
    };
    let path = match &rd.path {
        Some(p) => new_path(p, req.path, matched),
        None => req.path.to_owned(),
    };
    let mut out = format!("{scheme}://{hostname}");
    if port != well_known && port != 0 {
        out.push(':');
        out.push_str(itoa::Buffer::new().format(port));
    }
    out.push_str(&path);
    if let Some((_, q)) = req.target.split_once('?') {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Whether `origin` is allowed by one of `allowed`: `*`, an exact origin, or one with a
/// `*` standing for one or more labels of the host (`https://*.example.com`).
fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    allowed.iter().any(|a| {
        if a == "*" || a.eq_ignore_ascii_case(origin) {
            return true;
        }
        match a.split_once("://*") {
            Some((scheme, rest)) => origin
                .strip_prefix(scheme)
                .and_then(|o| o.strip_prefix("://"))
                .is_some_and(|o| {
                    o.len() > rest.len()
                        && o.to_ascii_lowercase().ends_with(&rest.to_ascii_lowercase())
                }),
            None => false,
        }
    })
}

fn first(headers: &impl Headers, name: &str) -> Option<String> {
    String::from_utf8(crate::routing::first_value(headers, name)?).ok()
}

/// CORS for a request on a route with a policy. A preflight (`OPTIONS` with `Origin`
/// and `Access-Control-Request-Method`) is answered here, as Envoy does: with the CORS
/// headers (returned) when its origin is allowed, with none otherwise (the browser then
/// refuses the real request). For other requests from an allowed origin, the headers to
/// add to the response go into `edit`; other origins get no CORS header.
pub(crate) fn cors(
    c: &Cors,
    method: &str,
    headers: &impl Headers,
    edit: &mut Edit,
) -> Option<Vec<(&'static str, String)>> {
    let origin = first(headers, "origin")?;
    let asked_method = first(headers, "access-control-request-method");
    let preflight = method == "OPTIONS" && asked_method.is_some();
    if !origin_allowed(&c.allow_origins, &origin) {
        return preflight.then(Vec::new);
    }
    let wildcard = c.allow_origins.iter().any(|o| o == "*") && !c.allow_credentials;
    let allow_origin = if wildcard { "*".to_owned() } else { origin };
    let mut out = vec![("access-control-allow-origin", allow_origin)];
    if c.allow_credentials {
        out.push(("access-control-allow-credentials", "true".to_owned()));
    }
    if !c.expose_headers.is_empty() {
        out.push(("access-control-expose-headers", c.expose_headers.join(", ")));
    }
    if !preflight {
        edit.response_headers.extend(out);
        return None;
    }
    // `*` answers with what was asked: a browser takes that whether or not credentials
    // are allowed (a literal `*` it takes only without them).
    let star_or = |list: &[String], asked: Option<String>| -> String {
        if list.iter().any(|m| m == "*") {
            asked.unwrap_or_default()
        } else {
            list.join(", ")
        }
    };
    let methods = star_or(&c.allow_methods, asked_method);
    if !methods.is_empty() {
        out.push(("access-control-allow-methods", methods));
    }
    let allow_headers = star_or(
        &c.allow_headers,
        first(headers, "access-control-request-headers"),
    );
    if !allow_headers.is_empty() {
        out.push(("access-control-allow-headers", allow_headers));
    }
    out.push(("access-control-max-age", c.max_age.to_string()));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(path: &'a str, target: &'a str) -> RequestLine<'a> {
        RequestLine {
            method: "GET",
            host: "example.com",
            path,
            target,
        }
    }

    #[test]
    fn rewrite_targets_take_the_groups_the_path_captured() {
        let re = |p: &str| PathMatch::Regex(regex::Regex::new(p).unwrap());
        let cap = |t: &str| PathRewrite::Captures(t.to_owned());
        // ingress-nginx's documented example.
        let m = re("(?i)^/something(/|$)(.*)");
        assert_eq!(new_path(&cap("/$2"), "/something", &m), "/");
        assert_eq!(new_path(&cap("/$2"), "/something/", &m), "/");
        assert_eq!(new_path(&cap("/$2"), "/something/new", &m), "/new");
        assert_eq!(new_path(&cap("/$2"), "/SOMETHING/new", &m), "/new");
        // Without groups the whole path becomes the target, as nginx's rewrite does.
        assert_eq!(new_path(&cap("/"), "/foo/bar", &re("(?i)^/foo")), "/");
        // A group number followed by letters stays a number; a lone $ stays itself.
        assert_eq!(
            new_path(&cap("/v$1abc/$"), "/x/7", &re("^/x/(\\d+)")),
            "/v7abc/$"
        );
        assert_eq!(new_path(&cap("$1"), "/a/b", &re("^/a/(.*)")), "/b");
    }

    #[test]
    fn prefix_rewrites_leave_no_double_slash() {
        let seg = |p: &str| PathMatch::Segments(p.to_owned());
        let pre = |p: &str| PathRewrite::Prefix(p.to_owned());
        assert_eq!(
            new_path(&pre("/one"), "/prefix/one/two", &seg("/prefix/one")),
            "/one/two"
        );
        assert_eq!(
            new_path(&pre("/"), "/prefix/one/two", &seg("/prefix/one")),
            "/two"
        );
        assert_eq!(new_path(&pre("/"), "/prefix/one", &seg("/prefix/one")), "/");
        assert_eq!(
            new_path(&pre("/one/"), "/prefix/one/", &seg("/prefix/one")),
            "/one/"
        );
        assert_eq!(new_path(&pre("/bar"), "/foo", &seg("/")), "/bar/foo");
        assert_eq!(
            new_path(&PathRewrite::Full("/x".into()), "/a/b", &seg("/a")),
            "/x"
        );
    }

    #[test]
    fn redirects_keep_what_they_do_not_change() {
        let rd = Redirect {
            scheme: Some("https".into()),
            hostname: None,
            path: None,
            port: None,
            status: 301,
            url: None,
        };
        let m = PathMatch::Segments("/".into());
        let l = line("/a", "/a?x=1");
        assert_eq!(
            location(&rd, &l, "example.com", false, 8080, &m),
            "https://example.com/a?x=1"
        );
        let rd = Redirect {
            scheme: None,
            hostname: Some("other.example".into()),
            path: Some(PathRewrite::Full("/b".into())),
            port: None,
            status: 302,
            url: None,
        };
        assert_eq!(
            location(&rd, &l, "example.com", false, 8080, &m),
            "http://other.example:8080/b?x=1"
        );
        assert_eq!(
            location(&rd, &l, "example.com", false, 80, &m),
            "http://other.example/b?x=1"
        );
        let rd = Redirect {
            port: Some(8443),
            scheme: Some("https".into()),
            ..rd
        };
        assert_eq!(
            location(&rd, &l, "example.com", false, 80, &m),
            "https://other.example:8443/b?x=1"
        );
    }

    #[test]
    fn cors_origins() {
        let allowed = vec![
            "https://*.example.com".to_owned(),
            "http://a.test".to_owned(),
        ];
        assert!(origin_allowed(&allowed, "https://www.example.com"));
        assert!(!origin_allowed(&allowed, "https://example.com"));
        assert!(!origin_allowed(&allowed, "http://www.example.com"));
        assert!(origin_allowed(&allowed, "http://a.test"));
        assert!(!origin_allowed(&allowed, "http://b.test"));
    }
}
