//! Gateway API routes at scale, in this process (issue 11's performance goal): a config with
//! one Gateway (class weir, one HTTP listener) and N HTTPRoutes over N hostnames, each with
//! three rules (an `Exact` path, a `PathPrefix` with a header match, a `PathPrefix /` split
//! between two Services), plus Kubernetes Services and their EndpointSlices. It times the
//! config load (read + validate, from a file) and the route table build, and the
//! nanoseconds per [`RouteTable::lookup`] for an exact hostname's first and last rule, a
//! wildcard hostname and a miss, next to the same lookups in a table of one HTTPRoute.
//!
//! [`config`] writes the config; the `gateway-reload` scenario ([`super::gateway_reload`])
//! serves the same one from the real binary.
//!
//! [`RouteTable::lookup`]: weir_proxy::routing::RouteTable::lookup

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use weir_proxy::routing::{BuildContext, Lookup, RouteTable, build, rebuild};
use weir_proxy::stats::Stats;
use weir_proxy::upstream::Upstreams;

/// The header the `api` rule of every route matches on, and its value.
pub const TENANT_HEADER: &str = "x-tenant";
/// The value the `api` rule wants.
pub const TENANT: &str = "gold";

/// The shape of a generated config.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSet {
    /// HTTPRoutes, each with its own hostname.
    pub routes: usize,
    /// How many of those hostnames are wildcards (`*.wild-I.bench.example`), spread evenly.
    pub wildcards: usize,
    /// Routes added after the first `routes` (by reloads), numbered on from `routes`, each
    /// with an exact hostname.
    pub added: usize,
    /// Kubernetes Services (each with one EndpointSlice); route I's rules use Service
    /// `I % services` and its `web` rule also `(I + 1) % services`.
    pub services: usize,
    /// The endpoints the Services point at: Service J's EndpointSlice lists
    /// `backends[J % len]`.
    pub backends: Vec<SocketAddr>,
    /// The Gateway listener's port (bound on 127.0.0.1).
    pub web_port: u16,
    /// The admin API's port (127.0.0.1).
    pub admin_port: u16,
}

impl RouteSet {
    /// Whether route `i` has a wildcard hostname: `wildcards` of the `routes` are, evenly
    /// spread.
    pub fn is_wildcard(&self, i: usize) -> bool {
        self.wildcards > 0
            && i < self.routes
            && (i + 1) * self.wildcards / self.routes != i * self.wildcards / self.routes
    }

    /// Route `i`'s hostname as written in the HTTPRoute.
    pub fn hostname(&self, i: usize) -> String {
        if self.is_wildcard(i) {
            format!("*.wild-{i}.bench.example")
        } else {
            format!("app-{i}.bench.example")
        }
    }

    /// A request host that route `i` serves (for a wildcard, one name under it).
    pub fn request_host(&self, i: usize) -> String {
        if self.is_wildcard(i) {
            format!("www.wild-{i}.bench.example")
        } else {
            format!("app-{i}.bench.example")
        }
    }

    /// The Service of route `i`'s `web` rule's leg `leg` (0 or 1).
    pub fn web_service(&self, i: usize, leg: usize) -> usize {
        (i + leg) % self.services.max(1)
    }

    /// The endpoint Service `j` points at.
    pub fn service_backend(&self, j: usize) -> SocketAddr {
        self.backends[j % self.backends.len()]
    }
}

/// The config: a Proxy (admin API; Gateway listeners bind on 127.0.0.1), one Gateway of
/// class weir with an HTTP listener, `set.services` Services with their EndpointSlices and
/// `set.routes` HTTPRoutes. Route I's `web` rule (`PathPrefix /`) splits 1:0 between
/// Services I and I+1, or 0:1 when I is in `flipped`.
pub fn config(set: &RouteSet, flipped: &BTreeSet<usize>) -> String {
    let mut y = String::with_capacity(200 + set.services * 420 + (set.routes + set.added) * 720);
    let _ = write!(
        y,
        "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {{name: bench}}\nspec:\n  gatewayAddress: 127.0.0.1\n  admin: {{address: \"127.0.0.1:{}\"}}\n",
        set.admin_port
    );
    let _ = write!(
        y,
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: edge, namespace: default}}\nspec:\n  gatewayClassName: weir\n  listeners:\n    - {{name: http, protocol: HTTP, port: {}, allowedRoutes: {{namespaces: {{from: Same}}}}}}\n",
        set.web_port
    );
    for j in 0..set.services.max(1) {
        let b = set.service_backend(j);
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{j}, namespace: default}}\nspec:\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: svc-{j}-1\n  namespace: default\n  labels: {{kubernetes.io/service-name: svc-{j}}}\naddressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints:\n  - {{addresses: [\"{}\"], conditions: {{ready: true}}}}\n",
            b.port(),
            b.ip()
        );
    }
    for i in 0..set.routes + set.added {
        let (a, b) = (set.web_service(i, 0), set.web_service(i, 1));
        let (wa, wb) = if flipped.contains(&i) { (0, 1) } else { (1, 0) };
        let _ = write!(
            y,
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: route-{i}, namespace: default}}\nspec:\n  parentRefs: [{{name: edge}}]\n  hostnames: [\"{host}\"]\n  rules:\n    - name: status\n      matches: [{{path: {{type: Exact, value: /status}}}}]\n      backendRefs: [{{name: svc-{a}, port: 80}}]\n    - name: api\n      matches: [{{path: {{type: PathPrefix, value: /api/v1}}, headers: [{{name: {TENANT_HEADER}, value: {TENANT}}}]}}]\n      backendRefs: [{{name: svc-{a}, port: 80}}]\n    - name: web\n      matches: [{{path: {{type: PathPrefix, value: /}}}}]\n      backendRefs: [{{name: svc-{a}, port: 80, weight: {wa}}}, {{name: svc-{b}, port: 80, weight: {wb}}}]\n",
            host = set.hostname(i)
        );
    }
    y
}

/// The config of one HTTPRoute with an exact and a wildcard hostname and the same rules:
/// the small table the big one's lookups are compared with.
fn one_route_config() -> String {
    let set = RouteSet {
        routes: 1,
        wildcards: 0,
        added: 0,
        services: 2,
        backends: dummy_backends(),
        web_port: 8080,
        admin_port: 9901,
    };
    config(&set, &BTreeSet::new()).replace(
        "hostnames: [\"app-0.bench.example\"]",
        "hostnames: [\"app-0.bench.example\", \"*.wild-0.bench.example\"]",
    )
}

fn dummy_backends() -> Vec<SocketAddr> {
    vec![
        SocketAddr::from(([127, 0, 0, 1], 9001)),
        SocketAddr::from(([127, 0, 0, 1], 9002)),
    ]
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayRoutesOptions {
    /// HTTPRoutes (and hostnames).
    pub routes: usize,
    /// Wildcard hostnames among them.
    pub wildcards: usize,
    /// Services (each with an EndpointSlice).
    pub services: usize,
    /// Loads and builds to time.
    pub runs: usize,
    /// Lookups per timed round.
    pub iterations: u64,
    /// Timed rounds per lookup.
    pub rounds: usize,
}

/// Spread of repeated timings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spread {
    /// Fastest.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// Slowest.
    pub max: f64,
    /// Every value, in the order measured.
    pub all: Vec<f64>,
}

impl Spread {
    /// The spread of `values` (not empty).
    pub fn of(values: Vec<f64>) -> Spread {
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        Spread {
            min: sorted.first().copied().unwrap_or(0.0),
            median: super::quantile_sorted(&sorted, 0.5),
            max: sorted.last().copied().unwrap_or(0.0),
            all: values,
        }
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "median {:8.1}  min {:8.1}  max {:8.1}",
            self.median, self.min, self.max
        )
    }
}

/// One lookup's cost in both tables.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LookupRow {
    /// What was looked up.
    pub case: String,
    /// The route and rule it found (`-`: none), in the big table.
    pub found: String,
    /// ns per lookup in the big table.
    pub big_ns: Spread,
    /// ns per lookup in the one-route table (`None`: not measured there).
    pub one_ns: Option<Spread>,
}

/// What the scenario measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRoutesResult {
    /// HTTPRoutes.
    pub routes: usize,
    /// Wildcard hostnames.
    pub wildcards: usize,
    /// Services.
    pub services: usize,
    /// Routes (one per rule) in the model.
    pub model_routes: usize,
    /// Config size in bytes.
    pub config_bytes: usize,
    /// `weir_config::load` of the file (read, decode, validate, load), ms.
    pub load_ms: Spread,
    /// Its stages, timed apart in another pass: `read::read` (the file read and parsed as
    /// YAML), ms.
    pub read_ms: Spread,
    /// `decode::decode` (YAML to typed documents), ms.
    pub decode_ms: Spread,
    /// `validate::validate` (the model, Gateway API attachment included), ms.
    pub validate_ms: Spread,
    /// `routing::build` with a fresh context (weir's first build), ms.
    pub first_build_ms: Spread,
    /// `routing::build` again with the same context and model, ms.
    pub rebuild_ms: Spread,
    /// A [`weir_config::Loader`] loading the file again after one route's weights were
    /// flipped (what weir's watcher does on that change), ms.
    pub reload_ms: Spread,
    /// `routing::build` of the reloaded model with the previous build's context (what
    /// weir's updater does next), ms.
    pub reload_build_ms: Spread,
    /// The same Loader loading the file again after one HTTPRoute was added, ms.
    pub add_ms: Spread,
    /// `routing::rebuild` of that model after the one before (what weir's updater does:
    /// entries and host index of unchanged routes kept), ms.
    pub add_rebuild_ms: Spread,
    /// Lookups per round, and rounds.
    pub iterations: u64,
    /// Rounds per lookup.
    pub rounds: usize,
    /// One row per lookup.
    pub lookups: Vec<LookupRow>,
}

/// Runs the benchmark (CPU-bound; blocks the calling thread).
// Timing synchronous code with std's Instant, as `micro` does.
#[allow(clippy::disallowed_types)]
pub fn run(opts: &GatewayRoutesOptions) -> Result<GatewayRoutesResult> {
    if opts.routes == 0 || opts.runs == 0 || opts.iterations == 0 || opts.rounds == 0 {
        bail!("--routes, --runs, --iterations and --rounds must be at least 1");
    }
    if opts.wildcards >= opts.routes {
        bail!("--wildcards must be below --routes (the exact-host lookups need one)");
    }
    let set = RouteSet {
        routes: opts.routes,
        wildcards: opts.wildcards,
        added: 0,
        services: opts.services.max(2),
        backends: dummy_backends(),
        web_port: 8080,
        admin_port: 9901,
    };
    let yaml = config(&set, &BTreeSet::new());
    let dir = tempfile::Builder::new()
        .prefix("weir-bench-gateway-")
        .tempdir()
        .context("creating a temporary folder")?;
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, &yaml).with_context(|| format!("writing {}", path.display()))?;

    let mut load_ms = Vec::new();
    let (mut read_ms, mut decode_ms, mut validate_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut model = None;
    let ms = |start: std::time::Instant| start.elapsed().as_secs_f64() * 1000.0;
    for _ in 0..opts.runs {
        let start = std::time::Instant::now();
        let m = weir_config::load(&path)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("the generated config")?;
        load_ms.push(ms(start));
        // Kept for the builds below (the previous run's model is dropped here).
        model = Some(m);
        // The same stages one by one (what `load` runs, short of its I/O stage).
        let start = std::time::Instant::now();
        let read = weir_config::read::read(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
        read_ms.push(ms(start));
        let start = std::time::Instant::now();
        let mut findings = weir_config::decode::Findings::default();
        let docs = weir_config::decode::decode(read.docs, &mut findings);
        decode_ms.push(ms(start));
        let env = weir_config::analysis::MetricEnv::from_process();
        let start = std::time::Instant::now();
        let v = weir_config::validate::validate(docs, findings, &env);
        validate_ms.push(ms(start));
        if !v.findings.issues.is_empty() {
            bail!("the generated config has issues: {:?}", v.findings.issues);
        }
        drop(v);
    }
    let Some(model) = model else {
        bail!("nothing loaded");
    };
    let new_ctx = || {
        BuildContext::new(
            Arc::new(Stats::new(1, true)),
            Arc::new(Upstreams::default()),
        )
    };
    let mut first_build_ms = Vec::new();
    let mut rebuild_ms = Vec::new();
    let mut kept = None;
    for _ in 0..opts.runs {
        let mut ctx = new_ctx();
        let start = std::time::Instant::now();
        let table = build(&model, &BTreeMap::new(), &mut ctx).map_err(anyhow::Error::msg)?;
        first_build_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        drop(table);
        let start = std::time::Instant::now();
        let table = build(&model, &BTreeMap::new(), &mut ctx).map_err(anyhow::Error::msg)?;
        rebuild_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        kept = Some(table);
    }
    let Some(big) = kept else {
        bail!("nothing built");
    };

    // A reload of one changed route, as weir does it: the watcher's loader (warmed by
    // the first load), then a build with the context of the one before.
    let loader = weir_config::Loader::new();
    let mut reloaded = loader
        .load(&path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the generated config")?;
    let mut ctx = new_ctx();
    let mut table = build(&reloaded, &BTreeMap::new(), &mut ctx).map_err(anyhow::Error::msg)?;
    let (mut reload_ms, mut reload_build_ms) = (Vec::new(), Vec::new());
    let mut flipped = BTreeSet::new();
    for k in 0..opts.runs {
        let mut r = (k * 7919 + 1) % set.routes;
        while set.is_wildcard(r) {
            r = (r + 1) % set.routes;
        }
        if !flipped.insert(r) {
            flipped.remove(&r);
        }
        std::fs::write(&path, config(&set, &flipped))
            .with_context(|| format!("writing {}", path.display()))?;
        let start = std::time::Instant::now();
        reloaded = loader
            .load(&path)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("the changed config")?;
        reload_ms.push(ms(start));
        let start = std::time::Instant::now();
        let next = build(&reloaded, &BTreeMap::new(), &mut ctx).map_err(anyhow::Error::msg)?;
        reload_build_ms.push(ms(start));
        drop(std::mem::replace(&mut table, next));
    }
    drop((table, ctx));

    // One HTTPRoute added per reload, rebuilt as weir's updater does (`rebuild`).
    let mut ctx = new_ctx();
    let mut last = Arc::new(reloaded);
    let mut table = rebuild(&last, &BTreeMap::new(), &mut ctx).map_err(anyhow::Error::msg)?;
    let (mut add_ms, mut add_rebuild_ms) = (Vec::new(), Vec::new());
    for k in 0..opts.runs {
        let grown = RouteSet {
            added: k + 1,
            ..set.clone()
        };
        std::fs::write(&path, config(&grown, &flipped))
            .with_context(|| format!("writing {}", path.display()))?;
        let start = std::time::Instant::now();
        let next = loader
            .load(&path)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("the grown config")?;
        add_ms.push(ms(start));
        let next = Arc::new(next);
        let start = std::time::Instant::now();
        let t = rebuild(&next, &BTreeMap::new(), &mut ctx).map_err(anyhow::Error::msg)?;
        add_rebuild_ms.push(ms(start));
        drop(std::mem::replace(&mut table, t));
        last = next;
    }
    drop((table, last, ctx));

    let small_model = weir_config::load_str(Path::new("/bench/weir.yaml"), &one_route_config())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the one-route config")?;
    let small =
        build(&small_model, &BTreeMap::new(), &mut new_ctx()).map_err(anyhow::Error::msg)?;

    // The exact-host route in the middle, and the wildcard one nearest the middle.
    let mid = (0..set.routes)
        .map(|k| (set.routes / 2 + k) % set.routes)
        .find(|&i| !set.is_wildcard(i))
        .unwrap_or(0);
    let wild = (0..set.routes)
        .map(|k| (set.routes / 2 + k) % set.routes)
        .find(|&i| set.is_wildcard(i));
    let exact_hosts: Vec<String> = (0..set.routes)
        .filter(|&i| !set.is_wildcard(i))
        .map(|i| set.request_host(i))
        .collect();
    let wild_hosts: Vec<String> = (0..set.routes)
        .filter(|&i| set.is_wildcard(i))
        .map(|i| set.request_host(i))
        .collect();

    let listener = only_listener(&big)?;
    let small_listener = only_listener(&small)?;
    let no_headers = http::HeaderMap::new();
    let mut with_tenant = http::HeaderMap::new();
    with_tenant.insert(TENANT_HEADER, http::HeaderValue::from_static(TENANT));

    struct Case<'a> {
        name: String,
        host: String,
        small_host: Option<&'a str>,
        path: &'static str,
        headers: &'a http::HeaderMap,
        /// The route and rule it must find.
        want: Option<(usize, &'static str)>,
    }
    let mid_host = set.request_host(mid);
    let mut cases = vec![
        Case {
            name: format!("exact host, first rule (Exact /status): {mid_host}"),
            host: mid_host.clone(),
            small_host: Some("app-0.bench.example"),
            path: "/status",
            headers: &no_headers,
            want: Some((mid, "status")),
        },
        Case {
            name: "exact host, header rule (PathPrefix /api/v1 + x-tenant)".to_owned(),
            host: mid_host.clone(),
            small_host: Some("app-0.bench.example"),
            path: "/api/v1/orders",
            headers: &with_tenant,
            want: Some((mid, "api")),
        },
        Case {
            name: "exact host, last rule (PathPrefix /, after Exact and header misses)".to_owned(),
            host: mid_host.clone(),
            small_host: Some("app-0.bench.example"),
            path: "/api/v1/orders",
            headers: &no_headers,
            want: Some((mid, "web")),
        },
    ];
    if let Some(w) = wild {
        cases.push(Case {
            name: format!("wildcard host, first rule: {}", set.request_host(w)),
            host: set.request_host(w),
            small_host: Some("www.wild-0.bench.example"),
            path: "/status",
            headers: &no_headers,
            want: Some((w, "status")),
        });
    }
    cases.push(Case {
        name: "miss (unknown host)".to_owned(),
        host: "nowhere.other.example".to_owned(),
        small_host: Some("nowhere.other.example"),
        path: "/status",
        headers: &no_headers,
        want: None,
    });

    let mut lookups = Vec::new();
    for c in &cases {
        let req = Lookup {
            listener,
            host: &c.host,
            method: "GET",
            path: c.path,
            query: "",
        };
        let found = big
            .lookup(&req, c.headers)
            .map(|f| f.route.name.to_string());
        let want = c.want.map(|(i, rule)| format!("default/route-{i}/{rule}"));
        check_found(&c.name, found.as_deref(), want.as_deref())?;
        let big_ns = ns_per_op(opts, |_| {
            black_box(big.lookup(black_box(&req), c.headers));
        });
        let one_ns = match c.small_host {
            Some(h) => {
                let req = Lookup {
                    listener: small_listener,
                    host: h,
                    ..req
                };
                let found = small
                    .lookup(&req, c.headers)
                    .map(|f| f.route.name.to_string());
                check_found(
                    &format!("{} (one route)", c.name),
                    found.as_deref(),
                    c.want
                        .map(|(_, rule)| format!("default/route-0/{rule}"))
                        .as_deref(),
                )?;
                Some(ns_per_op(opts, |_| {
                    black_box(small.lookup(black_box(&req), c.headers));
                }))
            }
            None => None,
        };
        lookups.push(LookupRow {
            case: c.name.clone(),
            found: found.unwrap_or_else(|| "-".to_owned()),
            big_ns,
            one_ns,
        });
    }
    // The same, with the host changing every call: every exact host in turn, every
    // wildcard host in turn (cache misses; the wildcard ones at every place in the scan).
    for (what, hosts) in [("exact", &exact_hosts), ("wildcard", &wild_hosts)] {
        if hosts.is_empty() {
            continue;
        }
        let reqs: Vec<Lookup<'_>> = hosts
            .iter()
            .map(|h| Lookup {
                listener,
                host: h,
                method: "GET",
                path: "/status",
                query: "",
            })
            .collect();
        if let Some(bad) = reqs.iter().find(|r| big.lookup(r, &no_headers).is_none()) {
            bail!("no route for {}", bad.host);
        }
        let big_ns = ns_per_op(opts, |i| {
            let r = &reqs[(i % reqs.len() as u64) as usize];
            black_box(big.lookup(black_box(r), &no_headers));
        });
        lookups.push(LookupRow {
            case: format!("{what} hosts in turn ({} of them), first rule", reqs.len()),
            found: "default/route-*/status".to_owned(),
            big_ns,
            one_ns: None,
        });
    }
    // For scale: the host index alone, a std HashMap of the same hosts to a Vec<u32> (as
    // the table's), looked up in the same turn.
    let index: std::collections::HashMap<Box<str>, Vec<u32>> = exact_hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (Box::from(h.as_str()), vec![i as u32]))
        .collect();
    let hosts: Vec<&str> = exact_hosts.iter().map(String::as_str).collect();
    let big_ns = ns_per_op(opts, |i| {
        let h = hosts[(i % hosts.len() as u64) as usize];
        black_box(index.get(black_box(h)).and_then(|ids| ids.first().copied()));
    });
    lookups.push(LookupRow {
        case: format!(
            "for scale: HashMap<Box<str>, Vec<u32>>::get alone, the {} exact hosts in turn",
            hosts.len()
        ),
        found: "-".to_owned(),
        big_ns,
        one_ns: None,
    });

    Ok(GatewayRoutesResult {
        routes: set.routes,
        wildcards: set.wildcards,
        services: set.services,
        model_routes: model.proxy.routes.len(),
        config_bytes: yaml.len(),
        load_ms: Spread::of(load_ms),
        read_ms: Spread::of(read_ms),
        decode_ms: Spread::of(decode_ms),
        validate_ms: Spread::of(validate_ms),
        first_build_ms: Spread::of(first_build_ms),
        rebuild_ms: Spread::of(rebuild_ms),
        reload_ms: Spread::of(reload_ms),
        reload_build_ms: Spread::of(reload_build_ms),
        add_ms: Spread::of(add_ms),
        add_rebuild_ms: Spread::of(add_rebuild_ms),
        iterations: opts.iterations,
        rounds: opts.rounds,
        lookups,
    })
}

/// The index of the table's one listener (the Gateway's).
fn only_listener(table: &RouteTable) -> Result<u32> {
    match table.listeners.values().collect::<Vec<_>>().as_slice() {
        [one] => Ok(one.index),
        other => bail!("expected one listener, found {}", other.len()),
    }
}

/// Fails unless the route found is the one wanted.
fn check_found(case: &str, found: Option<&str>, want: Option<&str>) -> Result<()> {
    if found != want {
        bail!("lookup {case:?} found {found:?}, wanted {want:?}");
    }
    Ok(())
}

/// ns per call of `f(i)`, in each of `opts.rounds` timed rounds of `opts.iterations` calls
/// after a warm-up round of a tenth as many.
#[allow(clippy::disallowed_types)]
fn ns_per_op(opts: &GatewayRoutesOptions, mut f: impl FnMut(u64)) -> Spread {
    for i in 0..opts.iterations.div_ceil(10) {
        f(i);
    }
    let mut all = Vec::with_capacity(opts.rounds);
    for _ in 0..opts.rounds {
        let start = std::time::Instant::now();
        for i in 0..opts.iterations {
            f(black_box(i));
        }
        all.push(start.elapsed().as_nanos() as f64 / opts.iterations as f64);
    }
    Spread::of(all)
}

impl fmt::Display for GatewayRoutesResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} HTTPRoutes ({} wildcard hostnames), {} Services + EndpointSlices: {} model routes, {:.1} MB of YAML",
            self.routes,
            self.wildcards,
            self.services,
            self.model_routes,
            self.config_bytes as f64 / 1e6
        )?;
        writeln!(f, "load (read + decode + validate), ms:  {}", self.load_ms)?;
        writeln!(f, "  read (file + YAML parse), ms:        {}", self.read_ms)?;
        writeln!(
            f,
            "  decode (typed documents), ms:        {}",
            self.decode_ms
        )?;
        writeln!(
            f,
            "  validate (model, attachment), ms:    {}",
            self.validate_ms
        )?;
        writeln!(
            f,
            "table build (fresh context), ms:      {}",
            self.first_build_ms
        )?;
        writeln!(
            f,
            "table rebuild (same context), ms:     {}",
            self.rebuild_ms
        )?;
        writeln!(
            f,
            "reload, one route flipped (Loader), ms: {}",
            self.reload_ms
        )?;
        writeln!(
            f,
            "  then the table build, ms:           {}",
            self.reload_build_ms
        )?;
        writeln!(
            f,
            "reload, one HTTPRoute added (Loader), ms: {}",
            self.add_ms
        )?;
        writeln!(
            f,
            "  then routing::rebuild, ms:          {}",
            self.add_rebuild_ms
        )?;
        writeln!(
            f,
            "lookup ns per call ({} rounds of {} calls; median, min, max over rounds):",
            self.rounds, self.iterations
        )?;
        for r in &self.lookups {
            writeln!(f, "  {}  -> {}", r.case, r.found)?;
            writeln!(f, "    {:>9} routes: {}", self.routes, r.big_ns)?;
            if let Some(one) = &r.one_ns {
                writeln!(
                    f,
                    "            1 route:  {}   ratio {:.2}",
                    one,
                    r.big_ns.median / one.median.max(f64::MIN_POSITIVE)
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sets_load_and_route() {
        let r = run(&GatewayRoutesOptions {
            routes: 20,
            wildcards: 4,
            services: 4,
            runs: 1,
            iterations: 100,
            rounds: 1,
        })
        .unwrap();
        assert_eq!(r.model_routes, 60);
        assert_eq!(r.lookups.len(), 8, "{r}");
        assert!(r.lookups[4].found == "-", "{r}");
    }

    #[test]
    fn wildcards_are_spread_and_counted() {
        let set = RouteSet {
            routes: 10_000,
            wildcards: 100,
            added: 0,
            services: 2,
            backends: dummy_backends(),
            web_port: 1,
            admin_port: 2,
        };
        assert_eq!((0..10_000).filter(|&i| set.is_wildcard(i)).count(), 100);
        assert!(!set.is_wildcard(0));
        assert!(set.hostname(99).starts_with("*."));
    }
}
