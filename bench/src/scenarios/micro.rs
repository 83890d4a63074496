//! Micro-benchmarks of weir's hot-path pieces, in this process: nanoseconds per call of
//! recording a request's outcome in a stats cell (measurement on and off), picking a split leg,
//! and looking up a route in a table of about twenty.

use std::collections::BTreeMap;
use std::fmt;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use weir_proxy::routing::split::Split;
use weir_proxy::routing::{BuildContext, build};
use weir_proxy::stats::{CellKey, Outcome, Role, Stats};
use weir_proxy::upstream::Upstreams;

/// Timed rounds per operation; the fastest is reported.
const ROUNDS: usize = 3;

/// The route table looked up: 21 routes over four exact hosts, one wildcard and a catch-all,
/// several path prefixes per host.
const ROUTES_YAML: &str = r#"apiVersion: weir.dev/v1alpha1
kind: Proxy
metadata: {name: bench}
spec:
  listeners:
    - {name: web, address: "127.0.0.1:8080"}
  admin: {address: "127.0.0.1:9901"}
  routes:
    - {name: api-v2-orders, match: {host: api.example.com, pathPrefix: /v2/orders}, backends: [{service: orders}]}
    - {name: api-v2-users, match: {host: api.example.com, pathPrefix: /v2/users}, backends: [{service: users}]}
    - {name: api-v1-orders-items, match: {host: api.example.com, pathPrefix: /v1/orders/items}, backends: [{service: orders}]}
    - {name: api-v1-orders, match: {host: api.example.com, pathPrefix: /v1/orders}, backends: [{service: orders}]}
    - {name: api-v1-users-admin, match: {host: api.example.com, pathPrefix: /v1/users/admin}, backends: [{service: admin}]}
    - name: api-v1-users
      match: {host: api.example.com, pathPrefix: /v1/users}
      backends: [{service: users, weight: 95}, {service: users-canary, weight: 5}]
    - {name: api-v1, match: {host: api.example.com, pathPrefix: /v1}, backends: [{service: web}]}
    - {name: api-health, match: {host: api.example.com, pathPrefix: /health}, backends: [{service: web}]}
    - {name: api, match: {host: api.example.com}, backends: [{service: web}]}
    - {name: www-static, match: {host: www.example.com, pathPrefix: /static}, backends: [{service: web}]}
    - {name: www-assets, match: {host: www.example.com, pathPrefix: /assets}, backends: [{service: web}]}
    - {name: www, match: {host: www.example.com}, backends: [{service: web}]}
    - {name: admin-api, match: {host: admin.example.org, pathPrefix: /api}, backends: [{service: admin}]}
    - {name: admin, match: {host: admin.example.org}, backends: [{service: admin}]}
    - {name: shop-cart, match: {host: shop.example.net, pathPrefix: /cart}, backends: [{service: orders}]}
    - {name: shop-checkout, match: {host: shop.example.net, pathPrefix: /checkout}, backends: [{service: orders}]}
    - {name: shop, match: {host: shop.example.net}, backends: [{service: web}]}
    - {name: wild-api, match: {host: "*.example.com", pathPrefix: /api}, backends: [{service: web}]}
    - {name: wild, match: {host: "*.example.com"}, backends: [{service: web}]}
    - {name: any-health, match: {pathPrefix: /healthz}, backends: [{service: web}]}
    - {name: any, backends: [{service: web}]}
---
{apiVersion: weir.dev/v1alpha1, kind: Service, metadata: {name: web}, spec: {endpoints: ["127.0.0.1:9001", "127.0.0.1:9002"]}}
---
{apiVersion: weir.dev/v1alpha1, kind: Service, metadata: {name: users}, spec: {endpoints: ["127.0.0.1:9003"]}}
---
{apiVersion: weir.dev/v1alpha1, kind: Service, metadata: {name: users-canary}, spec: {endpoints: ["127.0.0.1:9004"]}}
---
{apiVersion: weir.dev/v1alpha1, kind: Service, metadata: {name: orders}, spec: {endpoints: ["127.0.0.1:9005"]}}
---
{apiVersion: weir.dev/v1alpha1, kind: Service, metadata: {name: admin}, spec: {endpoints: ["127.0.0.1:9006"]}}
"#;

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MicroOptions {
    /// Calls per timed round.
    pub iterations: u64,
    /// The CPU time of one proxied request, in µs, to put the measurement cost in proportion.
    pub per_request_us: f64,
}

/// One operation's cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MicroRow {
    /// What was called.
    pub op: String,
    /// Nanoseconds per call (the fastest of the rounds).
    pub ns_per_op: f64,
}

/// What the benchmarks measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MicroResult {
    /// Calls per round.
    pub iterations: u64,
    /// Rounds per operation.
    pub rounds: usize,
    /// One row per operation.
    pub rows: Vec<MicroRow>,
    /// `record` with measurement on minus with it off, in ns.
    pub measurement_ns: f64,
    /// The CPU time per request it is compared with, in µs.
    pub per_request_us: f64,
    /// `measurement_ns` as a percentage of `per_request_us`.
    pub measurement_percent: f64,
}

/// Runs every benchmark (CPU-bound; blocks the calling thread for a few seconds).
pub fn run(opts: &MicroOptions) -> Result<MicroResult> {
    if opts.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    if !(opts.per_request_us.is_finite() && opts.per_request_us > 0.0) {
        bail!("--per-request-us must be a positive number");
    }
    let n = opts.iterations;
    let key = || CellKey {
        service: "app".into(),
        role: Role::Canary,
        revision: "v2".into(),
    };
    let outcome = |i: u64| Outcome {
        status: 200,
        proxy_error: false,
        // 50 µs to about 1 s, spread over the latency buckets.
        latency_us: 50 + (i.wrapping_mul(2_654_435_761) % 1_000_000),
    };

    let on = Stats::new(1, true).cell(key());
    let record_on = ns_per_op(n, |i| on.record(black_box(outcome(i))));
    let off = Stats::new(1, false).cell(key());
    let record_off = ns_per_op(n, |i| off.record(black_box(outcome(i))));

    let split = Split::new(&[9500, 500], &mut Vec::new());
    let pick = ns_per_op(n, |_| {
        black_box(split.pick());
    });

    let model = weir_config::load_str(Path::new("/bench/weir.yaml"), ROUTES_YAML)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the benchmark's route table")?;
    let mut ctx = BuildContext::new(
        Arc::new(Stats::new(1, true)),
        Arc::new(Upstreams::default()),
    );
    let table = build(&model, &BTreeMap::new(), &mut ctx)
        .map_err(anyhow::Error::msg)
        .context("building the route table")?;
    let headers = http::HeaderMap::new();
    let req = weir_proxy::routing::Lookup {
        listener: 0,
        host: "api.example.com",
        method: "GET",
        path: "/v1/users",
        query: "",
    };
    let found = table
        .lookup(&req, &headers)
        .map(|r| r.route.name.to_string());
    if found.as_deref() != Some("api-v1-users") {
        bail!("route lookup found {found:?}, not api-v1-users");
    }
    let lookup = ns_per_op(n, |_| {
        black_box(table.lookup(black_box(&req), &headers));
    });

    let measurement_ns = record_on - record_off;
    Ok(MicroResult {
        iterations: n,
        rounds: ROUNDS,
        rows: vec![
            row("stats Cell::record, measurement on", record_on),
            row("stats Cell::record, measurement off", record_off),
            row("Split::pick (95/5)", pick),
            row(
                &format!(
                    "RouteTable::lookup (api.example.com /v1/users, {} routes)",
                    model.proxy.routes.len()
                ),
                lookup,
            ),
        ],
        measurement_ns,
        per_request_us: opts.per_request_us,
        measurement_percent: measurement_ns / (opts.per_request_us * 1000.0) * 100.0,
    })
}

fn row(op: &str, ns: f64) -> MicroRow {
    MicroRow {
        op: op.to_owned(),
        ns_per_op: ns,
    }
}

/// The fastest of `ROUNDS` timed rounds of `iterations` calls of `f(i)`, after a warm-up
/// round of a tenth as many, in nanoseconds per call.
// A benchmark of synchronous code measures wall-clock time with std's Instant: there is no
// Tokio time to pause here (the workspace bans std::time::Instant for testable async code).
#[allow(clippy::disallowed_types)]
fn ns_per_op(iterations: u64, mut f: impl FnMut(u64)) -> f64 {
    for i in 0..iterations.div_ceil(10) {
        f(i);
    }
    let mut best = f64::INFINITY;
    for _ in 0..ROUNDS {
        let start = std::time::Instant::now();
        for i in 0..iterations {
            f(black_box(i));
        }
        let ns = start.elapsed().as_nanos() as f64 / iterations as f64;
        best = best.min(ns);
    }
    best
}

impl fmt::Display for MicroResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ns per call (fastest of {} rounds of {} calls):",
            self.rounds, self.iterations
        )?;
        for r in &self.rows {
            writeln!(f, "  {:>8.1}  {}", r.ns_per_op, r.op)?;
        }
        write!(
            f,
            "measurement cost: {:.1} ns per request = {:.3}% of {} µs per request",
            self.measurement_ns, self.measurement_percent, self.per_request_us
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_finds_the_route() {
        let r = run(&MicroOptions {
            iterations: 1000,
            per_request_us: 28.0,
        })
        .unwrap();
        assert_eq!(r.rows.len(), 4);
        assert!(r.rows.iter().all(|r| r.ns_per_op.is_finite()));
        assert!(r.rows[3].op.contains("21 routes"), "{}", r.rows[3].op);
        assert!(
            run(&MicroOptions {
                iterations: 0,
                per_request_us: 28.0
            })
            .is_err()
        );
    }
}
