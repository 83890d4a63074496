//! What a route can match and do to a request, shared by every kind that routes: weir's
//! own `Proxy` routes, Gateway API `HTTPRoute`s and (later) `Ingress`es all validate into
//! these, and the proxy builds one routing table from them.
//!
//! The vocabulary is the Gateway API's (matches, filters, backend weights, timeouts),
//! the widest of the three; weir's own routes use a subset.

use std::time::Duration;

use super::weir::HeaderMatch;

/// One way a request can match a route. A route's matches are OR'd; within a match,
/// every condition must hold.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteMatch {
    /// The path condition.
    pub path: PathMatch,
    /// Header conditions (names lower-case).
    pub headers: Vec<HeaderMatch>,
    /// Query parameter conditions.
    pub query: Vec<QueryMatch>,
    /// The method, upper-case as sent (`GET`), when the match names one.
    pub method: Option<String>,
}

impl RouteMatch {
    /// A match on a plain path prefix and nothing else.
    pub fn prefix(prefix: &str) -> RouteMatch {
        RouteMatch::path(PathMatch::Prefix(prefix.to_owned()))
    }

    /// A match on `path` and nothing else.
    pub fn path(path: PathMatch) -> RouteMatch {
        RouteMatch {
            path,
            headers: Vec::new(),
            query: Vec::new(),
            method: None,
        }
    }
}

/// How the path (without the query) is tested.
#[derive(Clone, Debug)]
pub enum PathMatch {
    /// weir's `pathPrefix`: a plain string prefix (`/api` matches `/apis`).
    Prefix(String),
    /// The Gateway API's `PathPrefix`: whole segments (`/v2` matches `/v2` and `/v2/x`,
    /// not `/v2example`); stored without a trailing slash, except `/` itself.
    Segments(String),
    /// `Exact`.
    Exact(String),
    /// `RegularExpression`, anchored at both ends.
    Regex(regex::Regex),
}

impl PartialEq for PathMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PathMatch::Prefix(a), PathMatch::Prefix(b))
            | (PathMatch::Segments(a), PathMatch::Segments(b))
            | (PathMatch::Exact(a), PathMatch::Exact(b)) => a == b,
            (PathMatch::Regex(a), PathMatch::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl PathMatch {
    /// Whether `path` (no query) passes.
    #[inline]
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Segments(p) => {
                p == "/"
                    || path
                        .strip_prefix(p.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
            PathMatch::Exact(p) => path == p,
            PathMatch::Regex(r) => r.is_match(path),
        }
    }

    /// The prefix this match replaces in a `ReplacePrefixMatch` rewrite.
    pub fn prefix(&self) -> Option<&str> {
        match self {
            PathMatch::Prefix(p) | PathMatch::Segments(p) | PathMatch::Exact(p) => Some(p),
            PathMatch::Regex(_) => None,
        }
    }
}

/// A query parameter condition: the first value of parameter `name` (names are
/// case-sensitive) is tested.
#[derive(Clone, Debug)]
pub struct QueryMatch {
    /// Parameter name, as written.
    pub name: String,
    /// The test.
    pub value: ValueMatch,
}

impl PartialEq for QueryMatch {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.value == other.value
    }
}

/// A test of one value.
#[derive(Clone, Debug)]
pub enum ValueMatch {
    /// Equal to.
    Exact(String),
    /// Matches, anchored at both ends.
    Regex(regex::Regex),
}

impl PartialEq for ValueMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ValueMatch::Exact(a), ValueMatch::Exact(b)) => a == b,
            (ValueMatch::Regex(a), ValueMatch::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl ValueMatch {
    /// Whether `v` passes.
    #[inline]
    pub fn matches(&self, v: &str) -> bool {
        match self {
            ValueMatch::Exact(s) => s == v,
            ValueMatch::Regex(r) => r.is_match(v),
        }
    }
}

/// What a route (or one of its backends) does to a request or its response, in the
/// order written.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// Changes the request's headers before it goes upstream.
    RequestHeaders(HeaderModifier),
    /// Changes the response's headers before it goes to the client.
    ResponseHeaders(HeaderModifier),
    /// Answers with a redirect instead of forwarding.
    Redirect(Redirect),
    /// Rewrites the host and/or path sent upstream.
    Rewrite(Rewrite),
    /// Copies requests to another Service; the copy's response is discarded.
    Mirror(Mirror),
    /// Answers CORS preflights and adds CORS headers to responses.
    Cors(Cors),
    /// Lets in only clients from some addresses (ingress-nginx's
    /// `whitelist-source-range` / `denylist-source-range`); others get 403.
    Source(SourceRanges),
}

/// Client address ranges: a client in `deny` is refused; with `allow` given, so is a
/// client in none of its ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceRanges {
    /// The ranges let in (empty: every address not denied).
    pub allow: Vec<ipnet::IpNet>,
    /// The ranges refused.
    pub deny: Vec<ipnet::IpNet>,
}

impl SourceRanges {
    /// Whether a client at `ip` is let in.
    pub fn admits(&self, ip: std::net::IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        !self.deny.iter().any(|n| n.contains(&ip))
            && (self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip)))
    }
}

/// `set` replaces (or adds), `add` appends, `remove` drops; names lower-case.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderModifier {
    /// Replace the header's values with this one.
    pub set: Vec<(String, String)>,
    /// Add this value (after any the request has).
    pub add: Vec<(String, String)>,
    /// Drop the header.
    pub remove: Vec<String>,
}

/// A `RequestRedirect`. Each part not given keeps the request's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// `http` or `https`.
    pub scheme: Option<String>,
    /// The host name (no port).
    pub hostname: Option<String>,
    /// The path.
    pub path: Option<PathRewrite>,
    /// The port. `None`: as the Gateway API says, the scheme's well-known port when the
    /// scheme is changed, else the port the request came in on (the listener's).
    pub port: Option<u16>,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
    /// A fixed `Location`, sent as written, nothing of the request kept (ingress-nginx's
    /// `permanent-redirect` and `temporal-redirect`); the parts above are then unused.
    pub url: Option<String>,
}

/// A `URLRewrite`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrite {
    /// The Host sent upstream.
    pub hostname: Option<String>,
    /// The path sent upstream.
    pub path: Option<PathRewrite>,
}

/// How a path is rewritten (a redirect's or a rewrite's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRewrite {
    /// The whole path becomes this (the query is kept).
    Full(String),
    /// The part the route's path match matched becomes this; the rest is kept, with no
    /// doubled slash where they meet.
    Prefix(String),
    /// The path becomes this, `$1`..`$9` replaced by the groups the route's regular
    /// expression captured (ingress-nginx's `rewrite-target`); the query is kept.
    Captures(String),
}

/// A `RequestMirror`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mirror {
    /// The Service copies go to (a key of [`super::Model::services`]).
    pub service: String,
    /// Share of requests copied.
    pub share: super::Weight,
}

/// A CORS policy (the Gateway API's `CORS` filter).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cors {
    /// Origins allowed (`*`, exact, or with one `*` label wildcard such as
    /// `https://*.example.com`).
    pub allow_origins: Vec<String>,
    /// Whether credentials are allowed.
    pub allow_credentials: bool,
    /// Methods allowed (`*` for all).
    pub allow_methods: Vec<String>,
    /// Request headers allowed (`*` for all).
    pub allow_headers: Vec<String>,
    /// Response headers exposed.
    pub expose_headers: Vec<String>,
    /// How long a browser may cache the preflight's answer, in seconds.
    pub max_age: u32,
}

/// A route's own timeouts (Gateway API `timeouts`); `None` keeps the proxy's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteTimeouts {
    /// The whole exchange, from the request's arrival to the response's end.
    pub request: Option<Duration>,
    /// One attempt upstream, to the response's head.
    pub backend_request: Option<Duration>,
    /// Connecting to an endpoint (ingress-nginx's `proxy-connect-timeout`).
    pub connect: Option<Duration>,
    /// Between two reads of the response (ingress-nginx's `proxy-read-timeout`).
    pub read: Option<Duration>,
    /// Between two writes of the request (ingress-nginx's `proxy-send-timeout`).
    pub send: Option<Duration>,
}

/// Keeps each user on one revision (a route's `sessionAffinity`): the user's id (a cookie
/// weir sets, or a header the client sends) is hashed to a bucket of 10,000 with a fixed
/// function, and the bucket picks the leg. The canary (the last leg) takes the lowest
/// buckets, as many as its weight in hundredths of a percent: raising its weight only
/// moves users onto it, and every process agrees on every user's revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Affinity {
    /// A cookie: read when the client sends it, set (with a new id) when it does not.
    Cookie {
        /// Its name.
        name: String,
        /// Its `Max-Age`.
        max_age: Duration,
    },
    /// A request header whose value identifies the user; a request without it is split
    /// by the weights.
    Header(String),
}

/// ingress-nginx's canary rules on a route between a main and a canary backend (the
/// two legs of a split, or a Rollout's stable and canary revisions): tried in order
/// before the weights, the first that holds decides where the request goes.
#[derive(Clone, Debug, PartialEq)]
pub struct Steer {
    /// The condition.
    pub when: SteerWhen,
    /// Where a request that meets it goes: the canary (`true`) or the main backend.
    pub to_canary: bool,
}

/// A [`Steer`] condition.
#[derive(Clone, Debug, PartialEq)]
pub enum SteerWhen {
    /// A header test (ingress-nginx reads the header's first value).
    Header(HeaderMatch),
    /// Cookie `name` has exactly `value`.
    Cookie {
        /// The cookie's name.
        name: String,
        /// Its value.
        value: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_prefixes_match_whole_segments() {
        let m = PathMatch::Segments("/v2".into());
        assert!(m.matches("/v2"));
        assert!(m.matches("/v2/"));
        assert!(m.matches("/v2/x"));
        assert!(!m.matches("/v2example"));
        assert!(!m.matches("/v"));
        assert!(PathMatch::Segments("/".into()).matches("/anything"));
        assert!(PathMatch::Prefix("/v2".into()).matches("/v2example"));
    }
}
