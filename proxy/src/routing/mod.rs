//! The routing snapshot: everything a request needs, immutable, behind one `ArcSwap`.
//!
//! [`RouteTable`] is built by [`build::build`] from a config model and the rollouts'
//! traffic state, only ever by the updater task; the hot path does one `load()` and a
//! lookup. No I/O here.

pub mod affinity;
pub mod build;
#[cfg(test)]
mod match_tests;
#[cfg(test)]
mod reuse_tests;
pub mod split;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use weir_config::model::{
    Cors, HeaderMatch, HeaderModifier, Limits, LoadBalancer, PathMatch, QueryMatch, Redirect,
    Rewrite, UpstreamSettings, Weight,
};

use crate::access_log::AccessLogSink;
use crate::error::Kind;
use crate::stats::{Cell, CellKey, Role};
use crate::tls::TlsAcceptor;
use crate::upstream::EndpointPool;
use split::Split;

pub use build::{BuildContext, HeaderRoute, MirrorRoute, RolloutTraffic, build, rebuild};

/// Header lookup by lower-case name, over whatever a request's headers are held in.
pub trait Headers {
    /// Whether `pred` holds for any value of the header named `lower` (a header sent
    /// several times, such as `cookie` over HTTP/2, is tested value by value), or, when
    /// the request has no such header, for `None`.
    fn any_value(&self, lower: &str, pred: impl Fn(Option<&[u8]>) -> bool) -> bool;
}

impl Headers for http::HeaderMap {
    #[inline]
    fn any_value(&self, lower: &str, pred: impl Fn(Option<&[u8]>) -> bool) -> bool {
        let mut values = self.get_all(lower).iter().peekable();
        if values.peek().is_none() {
            return pred(None);
        }
        values.any(|v| pred(Some(v.as_bytes())))
    }
}

/// The routing snapshot.
#[derive(Debug)]
pub struct RouteTable {
    /// Increases with every build.
    pub generation: u64,
    routes: Vec<Arc<RouteEntry>>,
    /// The same entries by the slot the index's matchers name them by (`None`: a slot no
    /// route has).
    by_slot: Vec<Option<Arc<RouteEntry>>>,
    /// How requests find their route.
    index: Arc<Index>,
    /// By listener name: the index routes use in their listener masks, and TLS.
    pub listeners: HashMap<String, ListenerEntry>,
    /// Upstream timeouts and pool sizes.
    pub upstream: UpstreamSettings,
    /// Client limits (read when a connection is accepted).
    pub limits: Limits,
    /// Host names the admin listener answers to besides IP addresses and `localhost`.
    pub admin_hosts: Vec<Box<str>>,
    /// The admin token (`spec.admin.tokenFile`): with it, changes need
    /// `Authorization: Bearer TOKEN`, from any client.
    pub admin_token: Option<weir_config::model::AdminToken>,
    /// Where access log lines go, when the log is on.
    pub access_log: Option<Arc<AccessLogSink>>,
    /// Whether to add `x-weir-*` headers to responses.
    pub debug_headers: bool,
}

/// How requests find their route: the ways they match routes, in groups by host. Shared
/// by consecutive tables whose routes match the same requests (a reload that changed
/// only where routes send their traffic); after a reload that added, removed or changed
/// a few routes, the next index shares the groups of every other host with this one
/// (see [`build::rebuild`]).
#[derive(Debug)]
struct Index {
    /// The matchers of each exact host, the most specific first.
    exact: HashMap<Arc<str>, Group>,
    /// Wildcard hosts by their suffix (`.example.com`).
    suffix: HashMap<Arc<str>, Group>,
    /// Routes without a host.
    any: Group,
    /// By listener index: the Gateway listener hostnames on that socket (none for
    /// sockets without Gateway listeners).
    claims: HashMap<u32, Claims>,
    /// The rest is for the next build only. Each route's slot (what its matchers name
    /// it by), in the table's order: the model's routes, then the role hosts'.
    slots: Vec<u32>,
    /// Slots in use or free: the length of [`RouteTable::by_slot`].
    slot_count: u32,
    /// Slots no route has.
    free: Vec<u32>,
    /// By listener index: how many routes claim each listener hostname (what `claims`
    /// is made from).
    claim_counts: HashMap<u32, HashMap<Claim, u32>>,
}

/// One host's matchers, the most specific first; shared between indexes until a route
/// of that host changes.
type Group = Arc<[Matcher]>;

/// Per-listener data in the snapshot.
#[derive(Clone, Debug)]
pub struct ListenerEntry {
    /// Bit index in route listener masks.
    pub index: u32,
    /// The TLS acceptor, for TLS listeners; replaced when certificates change.
    pub tls: Option<TlsAcceptor>,
}

/// One route.
#[derive(Debug)]
pub struct RouteEntry {
    /// Its name, for logs and the API.
    pub name: Arc<str>,
    /// Where its requests go.
    pub target: Target,
    /// What it does to requests and responses; `None` for most routes, which do
    /// nothing (the fast path checks one pointer).
    pub filters: Option<Arc<RouteFilters>>,
    /// How long its upstream has to answer: the proxy's `requestTimeout`, or the
    /// route's own shorter one. Worked out when the table is built, not per request.
    pub request_timeout: std::time::Duration,
    /// How long each write of the request upstream may take (ingress-nginx's
    /// `proxy-send-timeout`; else the proxy's `requestTimeout`).
    pub send_timeout: std::time::Duration,
    /// How long connecting to an endpoint may take (`proxy-connect-timeout`; else the
    /// proxy's `connectTimeout`).
    pub connect_timeout: std::time::Duration,
    /// The largest request body it takes (a larger one gets 413).
    pub max_body: Option<u64>,
    /// The whole exchange's limit (an HTTPRoute's `timeouts.request`): past it, a
    /// request not yet answered gets 504, and a response on its way is cut off.
    pub deadline: Option<std::time::Duration>,
}

/// A route's filters, merged in the order written.
#[derive(Debug, Default)]
pub struct RouteFilters {
    /// Header changes on the way upstream.
    pub request: Option<HeaderModifier>,
    /// Header changes on the way back.
    pub response: Option<HeaderModifier>,
    /// Host and path sent upstream.
    pub rewrite: Option<Rewrite>,
    /// CORS: preflights answered here, headers added to responses.
    pub cors: Option<Cors>,
    /// The client addresses let in (others get 403).
    pub source: Option<weir_config::model::SourceRanges>,
}

/// One way a request matches a route.
#[derive(Clone, Debug)]
struct Matcher {
    /// The route's slot in [`RouteTable::by_slot`].
    route: u32,
    /// Its place among its route's matches (ties between routes go to the route written
    /// first, then to its first match).
    nth: u32,
    path: PathMatch,
    headers: Vec<HeaderMatch>,
    query: Vec<QueryMatch>,
    method: Option<Box<str>>,
    /// Bit i set: the route serves listener i. Zero: all listeners.
    listener_mask: u64,
    /// The Gateway listener hostnames its route is attached through; empty for weir's
    /// own routes.
    scope: Box<[Claim]>,
}

/// A Gateway listener's hostname on a socket: what a request's host selects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Claim {
    /// `foo.example.com`.
    Exact(Box<str>),
    /// `*.example.com`, as `.example.com`.
    Suffix(Box<str>),
    /// A listener without a hostname.
    Any,
}

/// The Gateway listener hostnames on one socket.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    exact: std::collections::HashSet<Box<str>>,
    /// Wildcard hostnames by their suffix (`.example.com`).
    suffix: std::collections::HashSet<Box<str>>,
    any: bool,
}

impl Claims {
    pub(crate) fn add(&mut self, c: &Claim) {
        match c {
            Claim::Exact(h) => {
                self.exact.insert(h.clone());
            }
            Claim::Suffix(s) => {
                self.suffix.insert(s.clone());
            }
            Claim::Any => self.any = true,
        }
    }

    /// The listener hostname `host` selects: the exact one, else the longest wildcard,
    /// else the listener without a hostname.
    fn select(&self, host: &str) -> Option<Claim> {
        if let Some(h) = self.exact.get(host) {
            return Some(Claim::Exact(h.clone()));
        }
        if let Some(s) = suffixes(host).find_map(|s| self.suffix.get(s)) {
            return Some(Claim::Suffix(s.clone()));
        }
        self.any.then_some(Claim::Any)
    }
}

impl Matcher {
    #[inline]
    fn matches(&self, req: &Lookup<'_>, headers: &impl Headers, chosen: &Chosen<'_>) -> bool {
        (self.listener_mask == 0 || self.listener_mask & (1u64 << req.listener.min(63)) != 0)
            && (self.scope.is_empty() || chosen.get().is_some_and(|c| self.scope.contains(c)))
            && self.path.matches(req.path)
            && self.method.as_deref().is_none_or(|m| m == req.method)
            && self
                .headers
                .iter()
                .all(|h| headers.any_value(&h.name, |v| h.kind.matches(v)))
            && self
                .query
                .iter()
                .all(|q| query_value(req.query, &q.name).is_some_and(|v| q.value.matches(v)))
    }
}

/// The Gateway listener hostname a request selects on its socket, found on first need.
struct Chosen<'t> {
    /// Every socket's claims; only looked into when a scoped route is tried, so that a
    /// table without Gateway routes pays nothing for them.
    claims: &'t HashMap<u32, Claims>,
    listener: u32,
    host: &'t str,
    cell: std::cell::OnceCell<Option<Claim>>,
}

impl Chosen<'_> {
    fn get(&self) -> Option<&Claim> {
        self.cell
            .get_or_init(|| {
                self.claims
                    .get(&self.listener)
                    .and_then(|c| c.select(self.host))
            })
            .as_ref()
    }
}

/// The first value of query parameter `name` (case-sensitive), as sent.
fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (n == name).then_some(v)
    })
}

/// What a request is routed by.
#[derive(Clone, Copy, Debug)]
pub struct Lookup<'a> {
    /// The listener's index in route masks.
    pub listener: u32,
    /// Lower-case, without a port.
    pub host: &'a str,
    /// As sent.
    pub method: &'a str,
    /// Without the query.
    pub path: &'a str,
    /// After the `?`, or empty.
    pub query: &'a str,
}

/// A route found for a request, with the path match that took it (a prefix rewrite
/// replaces what it matched).
#[derive(Clone, Copy, Debug)]
pub struct Found<'t> {
    /// The route.
    pub route: &'t RouteEntry,
    /// The path condition that matched.
    pub path: &'t PathMatch,
}

/// Where a route's requests go.
#[derive(Debug)]
pub enum Target {
    /// Split between legs.
    Split(SplitTarget),
    /// Answered with a redirect (`RequestRedirect`).
    Redirect(Redirect),
    /// Nothing can serve it now (a Rollout whose revision has no endpoints; an
    /// HTTPRoute rule with no valid backend): this status and message.
    Unavailable {
        /// What the client is told: 503 ([`Kind::Unavailable`]), 500 for an invalid
        /// backend, 404 where an Ingress host has no such path.
        kind: Kind,
        /// Why, for the short body and the log.
        reason: Arc<str>,
    },
}

/// A split with its legs.
#[derive(Debug)]
pub struct SplitTarget {
    /// The weighted pick.
    pub split: Split,
    /// The legs, in split order.
    pub legs: Vec<Arc<Backend>>,
    /// Each leg's configured weight.
    pub weights: Vec<Weight>,
    /// Requests matching one of these go to the given backend whatever the weights:
    /// Argo's setHeaderRoute, and ingress-nginx's canary rules. The first that matches
    /// decides. The backend is a leg's, or for a Rollout's canary one of the same
    /// endpoints counted apart ([`crate::Role::CanaryPinned`]).
    pub header_routes: Vec<(Pin, Arc<Backend>)>,
    /// Copies of matching requests go to these (Argo's setMirrorRoute).
    pub mirrors: Vec<Mirror>,
    /// Keeps each user on one leg (`sessionAffinity`).
    pub affinity: Option<weir_config::model::Affinity>,
}

/// A request's leg under `sessionAffinity`.
#[derive(Debug)]
pub struct Sticky<'t> {
    /// The leg.
    pub backend: &'t Arc<Backend>,
    /// A new user: the id to set in the affinity cookie.
    pub new_id: Option<u64>,
}

/// A condition that sends a request to a given leg, before the weights.
#[derive(Debug)]
pub enum Pin {
    /// Argo's setHeaderRoute.
    Header(HeaderRoute),
    /// An ingress-nginx canary rule (its leg is the canary's or the main one's).
    Steer(weir_config::model::SteerWhen),
}

impl Pin {
    /// Whether a request with these headers meets it.
    #[inline]
    pub fn matches(&self, headers: &impl Headers) -> bool {
        use weir_config::model::SteerWhen;
        match self {
            Pin::Header(h) => h.matches(headers),
            Pin::Steer(SteerWhen::Header(h)) => headers.any_value(&h.name, |v| h.kind.matches(v)),
            // The first cookie of that name decides, as nginx's `$cookie_NAME` does.
            Pin::Steer(SteerWhen::Cookie { name, value }) => headers.any_value("cookie", |v| {
                v.and_then(|v| cookies(v).find(|(n, _)| *n == name.as_bytes()))
                    .is_some_and(|(_, v)| v == value.as_bytes())
            }),
        }
    }
}

/// The `name=value` pairs of a `Cookie` header value, in order.
fn cookies(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    header.split(|b| *b == b';').filter_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|b| *b == b'=')?;
        Some((&pair[..eq], &pair[eq + 1..]))
    })
}

/// One mirror route in the snapshot.
#[derive(Debug)]
pub struct Mirror {
    /// Argo's setMirrorRoute: what it matches and how much it copies. `None`: a
    /// Gateway API `RequestMirror`, which copies a share of every request of its route.
    pub route: Option<MirrorRoute>,
    /// The exact split deciding which matching requests are copied.
    pub share: Split,
    /// Where copies go.
    pub target: Arc<Backend>,
}

impl SplitTarget {
    /// The backends copies of this request go to: each Gateway API mirror that takes its
    /// share, or the first Argo mirror route that matches and takes it.
    #[inline]
    pub fn mirrors(
        &self,
        method: &str,
        path: &str,
        headers: &impl Headers,
    ) -> impl Iterator<Item = &Arc<Backend>> {
        let mut argo_done = false;
        self.mirrors.iter().filter_map(move |m| match &m.route {
            None => (m.share.pick() == 0).then_some(&m.target),
            Some(r) if !argo_done && r.matches(method, path, headers) => {
                argo_done = true;
                (m.share.pick() == 0).then_some(&m.target)
            }
            Some(_) => None,
        })
    }
}

impl SplitTarget {
    /// The leg for a request with these headers, and its split ticket (None when a
    /// header route or the user's affinity decided), and the id of a new user to set in
    /// the affinity cookie.
    #[inline]
    pub fn pick(&self, headers: &impl Headers) -> (&Arc<Backend>, Option<u64>, Option<u64>) {
        for (hr, to) in &self.header_routes {
            if hr.matches(headers) {
                return (to, None, None);
            }
        }
        if let Some(a) = &self.affinity
            && let Some(s) = self.sticky(a, headers)
        {
            return (s.backend, None, s.new_id);
        }
        let (leg, ticket) = self.split.pick_with_ticket();
        (&self.legs[leg], Some(ticket), None)
    }

    /// The leg of the user this request is from: by the bucket of its id (the cookie's
    /// value, or the header's). A request without a cookie is a new user with a new id; a
    /// request without the header is not sticky (None: the weights decide).
    fn sticky(
        &self,
        a: &weir_config::model::Affinity,
        headers: &impl Headers,
    ) -> Option<Sticky<'_>> {
        use weir_config::model::Affinity;
        let (key, new_id) = match a {
            Affinity::Cookie { name, .. } => match cookie_value(headers, name) {
                Some(v) => (affinity::hash(&v), None),
                None => {
                    let id = affinity::new_id();
                    (affinity::hash(format!("{id:016x}").as_bytes()), Some(id))
                }
            },
            Affinity::Header(h) => {
                let v = first_value(headers, h).filter(|v| !v.is_empty())?;
                (affinity::hash(&v), None)
            }
        };
        let leg = affinity::leg(&self.weights, key);
        Some(Sticky {
            backend: &self.legs[leg],
            new_id,
        })
    }
}

/// The value of cookie `name` (its first non-empty occurrence), over every `cookie`
/// header.
fn cookie_value(headers: &impl Headers, name: &str) -> Option<Vec<u8>> {
    let found = std::cell::RefCell::new(None);
    headers.any_value("cookie", |v| {
        let hit = v.and_then(|v| cookies(v).find(|(n, v)| *n == name.as_bytes() && !v.is_empty()));
        if let Some((_, value)) = hit {
            *found.borrow_mut() = Some(value.to_vec());
        }
        hit.is_some()
    });
    found.into_inner()
}

/// The first value of header `name` (None when the request has none).
pub(crate) fn first_value(headers: &impl Headers, name: &str) -> Option<Vec<u8>> {
    let found = std::cell::RefCell::new(None);
    headers.any_value(name, |v| {
        *found.borrow_mut() = v.map(<[u8]>::to_vec);
        true
    });
    found.into_inner()
}

/// One leg: a set of endpoints of one (service, role, revision), with its stats cell.
#[derive(Debug)]
pub struct Backend {
    /// Service, role, revision.
    pub key: CellKey,
    /// Where its measurements go.
    pub stats: Arc<Cell>,
    /// Its endpoints; may be empty (then requests get 503).
    pub endpoints: Vec<Arc<EndpointPool>>,
    /// Spreading over endpoints.
    pub load_balancer: LoadBalancer,
    /// Header changes for this leg's requests and responses (an HTTPRoute backendRef's
    /// own filters).
    pub filters: Option<Arc<RouteFilters>>,
    /// A leg whose reference does not resolve: its share answers 500.
    pub invalid: bool,
    next: AtomicUsize,
}

impl Backend {
    /// A backend over these endpoints.
    pub fn new(
        key: CellKey,
        stats: Arc<Cell>,
        endpoints: Vec<Arc<EndpointPool>>,
        load_balancer: LoadBalancer,
    ) -> Self {
        Backend {
            key,
            stats,
            endpoints,
            load_balancer,
            filters: None,
            invalid: false,
            next: AtomicUsize::new(0),
        }
    }

    /// The role of this leg.
    pub fn role(&self) -> Role {
        self.key.role
    }

    /// The endpoint for the next request, or None when there are none. An endpoint that
    /// outlier detection ejected is passed over while another is in; when all are out,
    /// they are used all the same (a backend is never left with none).
    #[inline]
    pub fn pick_endpoint(&self) -> Option<&Arc<EndpointPool>> {
        let n = self.endpoints.len();
        match n {
            0 => None,
            1 => self.endpoints.first(),
            _ => {
                let i = self.next.fetch_add(1, Ordering::Relaxed);
                let first = match self.load_balancer {
                    LoadBalancer::RoundRobin => &self.endpoints[i % n],
                    LoadBalancer::LeastRequest => {
                        // Power of two choices, the pair taken in turn.
                        let a = &self.endpoints[i % n];
                        let b = &self.endpoints[(i + 1) % n];
                        if b.in_flight() < a.in_flight() { b } else { a }
                    }
                };
                if !first.maybe_out() {
                    return Some(first);
                }
                let now = crate::upstream::clock_ms();
                if !first.out_at(now) {
                    return Some(first);
                }
                (1..n)
                    .map(|k| &self.endpoints[(i + k) % n])
                    .find(|e| !e.out_at(now))
                    .or(Some(first))
            }
        }
    }

    /// Another endpoint than `tried`, in (not ejected), for a request whose connect to
    /// `tried` failed: the same revision's, never another leg's.
    pub fn other_endpoint(&self, tried: &Arc<EndpointPool>) -> Option<&Arc<EndpointPool>> {
        let n = self.endpoints.len();
        if n < 2 {
            return None;
        }
        let now = crate::upstream::clock_ms();
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|k| &self.endpoints[(i + k) % n])
            .find(|e| !Arc::ptr_eq(e, tried) && !e.out_at(now))
    }
}

impl RouteTable {
    /// The route for a request: the most specific whose host, path, method, headers,
    /// query and listener match.
    #[inline]
    pub fn lookup(&self, req: &Lookup<'_>, headers: &impl Headers) -> Option<Found<'_>> {
        let ix = &*self.index;
        let chosen = Chosen {
            claims: &ix.claims,
            listener: req.listener,
            host: req.host,
            cell: std::cell::OnceCell::new(),
        };
        if let Some(group) = ix.exact.get(req.host)
            && let Some(r) = self.first_match(group, req, headers, &chosen)
        {
            return Some(r);
        }
        if !ix.suffix.is_empty() {
            for group in suffixes(req.host).filter_map(|s| ix.suffix.get(s)) {
                if let Some(r) = self.first_match(group, req, headers, &chosen) {
                    return Some(r);
                }
            }
        }
        self.first_match(&ix.any, req, headers, &chosen)
    }

    #[inline]
    fn first_match<'t>(
        &'t self,
        group: &'t [Matcher],
        req: &Lookup<'_>,
        headers: &impl Headers,
        chosen: &Chosen<'_>,
    ) -> Option<Found<'t>> {
        let m = group.iter().find(|m| m.matches(req, headers, chosen))?;
        Some(Found {
            route: self.by_slot.get(m.route as usize)?.as_deref()?,
            path: &m.path,
        })
    }

    /// Every route, in match order within each host group.
    pub fn routes(&self) -> &[Arc<RouteEntry>] {
        &self.routes
    }

    /// The index of a listener by name (for its accept loop).
    pub fn listener(&self, name: &str) -> Option<&ListenerEntry> {
        self.listeners.get(name)
    }
}

/// The wildcard suffixes `host` could match, longest first: for `a.b.example.com`,
/// `.b.example.com`, `.example.com` and `.com`. A wildcard needs at least one character
/// before its suffix, so a leading dot gives none. One hash lookup per label, whatever
/// the number of wildcard routes.
#[inline]
fn suffixes(host: &str) -> impl Iterator<Item = &str> {
    host.match_indices('.')
        .filter(|(i, _)| *i > 0)
        .map(move |(i, _)| &host[i..])
}

/// Lower-cases `host` without its port into `buf`, returning the result. Hosts longer
/// than the buffer are returned as written (they match nothing lower-cased anyway).
#[inline]
pub fn normalize_host<'a>(host: &'a str, buf: &'a mut [u8; 256]) -> &'a str {
    let h = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        }
    } else {
        match host.rfind(':') {
            Some(i) => &host[..i],
            None => host,
        }
    };
    let h = h.strip_suffix('.').unwrap_or(h);
    if !h.bytes().any(|b| b.is_ascii_uppercase()) {
        return h;
    }
    if h.len() > buf.len() {
        return h;
    }
    let out = &mut buf[..h.len()];
    out.copy_from_slice(h.as_bytes());
    out.make_ascii_lowercase();
    std::str::from_utf8(out).unwrap_or(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_request_prefers_the_less_busy_endpoint() {
        use crate::stats::Stats;
        use crate::upstream::Upstreams;
        let ups = Upstreams::default();
        let a = ups.pool("127.0.0.1:1".parse().unwrap(), "a", Default::default());
        let b = ups.pool("127.0.0.1:2".parse().unwrap(), "b", Default::default());
        let key = CellKey {
            service: "s".into(),
            role: Role::None,
            revision: "".into(),
        };
        let cell = Stats::new(1, true).cell(key.clone());
        let backend = Backend::new(
            key,
            cell,
            vec![a.clone(), b.clone()],
            LoadBalancer::LeastRequest,
        );
        for _ in 0..5 {
            a.begin();
        }
        for _ in 0..10 {
            let e = backend.pick_endpoint().unwrap();
            assert_eq!(e.addr, b.addr, "b has nothing in flight");
        }
        let rr = Backend::new(
            backend.key.clone(),
            backend.stats.clone(),
            vec![a.clone(), b.clone()],
            LoadBalancer::RoundRobin,
        );
        let picks: Vec<_> = (0..4)
            .map(|_| rr.pick_endpoint().unwrap().addr.port())
            .collect();
        assert_eq!(picks, vec![1, 2, 1, 2]);
    }

    #[test]
    fn a_rollout_not_yet_decided_on_serves_its_template_image() {
        // What a reload that adds a Rollout builds before the control loop's next turn:
        // no traffic decision yet, so first sight (the template's image stable) applies.
        let yaml = r#"
apiVersion: weir.dev/v1alpha1
kind: Proxy
metadata: {name: edge}
spec:
  listeners: [{name: web, address: "127.0.0.1:0"}]
  admin: {address: "127.0.0.1:0"}
  routes: [{name: app, rollout: app}]
---
apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {name: app}
spec:
  endpoints: [{address: "127.0.0.1:9", image: "app:v1"}]
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: app}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec: {containers: [{name: app, image: "app:v1"}]}
  strategy: {canary: {steps: [{setWeight: 10}]}}
"#;
        let model = weir_config::load_str(std::path::Path::new("/t/weir.yaml"), yaml).unwrap();
        let mut ctx = BuildContext::new(
            Arc::new(crate::stats::Stats::new(1, true)),
            Arc::new(crate::upstream::Upstreams::default()),
        );
        let table = build(&model, &Default::default(), &mut ctx).unwrap();
        let req = Lookup {
            listener: 0,
            host: "app.test",
            method: "GET",
            path: "/",
            query: "",
        };
        let route = table
            .lookup(&req, &http::HeaderMap::new())
            .expect("a route")
            .route;
        let Target::Split(t) = &route.target else {
            panic!("not served: {:?}", route.name);
        };
        let (backend, _, _) = t.pick(&http::HeaderMap::new());
        assert_eq!(&*backend.key.revision, "app:v1");
        assert_eq!(backend.key.role, Role::Stable);
        assert_eq!(backend.endpoints.len(), 1);
    }

    #[test]
    fn hosts_normalize() {
        let mut b = [0u8; 256];
        assert_eq!(normalize_host("Example.COM:8080", &mut b), "example.com");
        let mut b = [0u8; 256];
        assert_eq!(normalize_host("api.example.com", &mut b), "api.example.com");
        let mut b = [0u8; 256];
        assert_eq!(normalize_host("[::1]:80", &mut b), "[::1]");
        let mut b = [0u8; 256];
        assert_eq!(normalize_host("example.com.", &mut b), "example.com");
    }

    #[test]
    fn a_header_sent_twice_matches_on_any_value() {
        use weir_config::model::{HeaderMatch, HeaderMatchKind};
        let route = HeaderRoute {
            name: "r".into(),
            matches: vec![HeaderMatch {
                name: "cookie".into(),
                kind: HeaderMatchKind::Prefix("canary=".into()),
            }],
        };
        let mut h = http::HeaderMap::new();
        h.append("cookie", "session=abc".parse().unwrap());
        assert!(!route.matches(&h));
        // HTTP/2 clients send each cookie as its own header field.
        h.append("cookie", "canary=1".parse().unwrap());
        assert!(route.matches(&h));
        let absent = HeaderRoute {
            name: "a".into(),
            matches: vec![HeaderMatch {
                name: "x-beta".into(),
                kind: HeaderMatchKind::Present(false),
            }],
        };
        assert!(absent.matches(&h));
        h.append("x-beta", "".parse().unwrap());
        assert!(!absent.matches(&h));
    }
}
