//! [`rebuild`] takes the last build's entries of unchanged routes, and only of those:
//! a changed route, a route whose Service changed and a Rollout's route are built again.

use std::collections::BTreeMap;
use std::sync::Arc;

use weir_config::Model;
use weir_config::model::{Filter, Mirror, RouteTarget, Weight};

use super::*;

const YAML: &str = r#"
apiVersion: weir.dev/v1alpha1
kind: Proxy
metadata: {name: edge}
spec:
  listeners: [{name: web, address: "127.0.0.1:0"}]
  admin: {address: "127.0.0.1:0"}
  routes:
  - {name: a, match: {host: a.test}, backends: [{service: s}]}
  - {name: b, match: {host: b.test}, backends: [{service: t}]}
  - {name: c, match: {host: c.test}, backends: [{service: s}]}
  - {name: app, match: {host: app.test}, rollout: app}
---
apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {name: s}
spec:
  endpoints: ["127.0.0.1:9"]
---
apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {name: t}
spec:
  endpoints: ["127.0.0.1:10"]
---
apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {name: app}
spec:
  endpoints: [{address: "127.0.0.1:11", image: "app:v1"}, {address: "127.0.0.1:12", image: "app:v2"}]
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

fn model() -> Model {
    weir_config::load_str(std::path::Path::new("/t/weir.yaml"), YAML).unwrap()
}

fn ctx() -> BuildContext {
    BuildContext::new(
        Arc::new(crate::stats::Stats::new(1, true)),
        Arc::new(crate::upstream::Upstreams::default()),
    )
}

fn entry<'t>(t: &'t RouteTable, name: &str) -> &'t Arc<RouteEntry> {
    t.routes()
        .iter()
        .find(|r| &*r.name == name)
        .unwrap_or_else(|| panic!("no route {name}"))
}

fn split(e: &RouteEntry) -> &SplitTarget {
    match &e.target {
        Target::Split(t) => t,
        other => panic!("{}: not a split: {other:?}", e.name),
    }
}

fn ports(e: &RouteEntry) -> Vec<Vec<u16>> {
    split(e)
        .legs
        .iter()
        .map(|b| b.endpoints.iter().map(|p| p.addr.port()).collect())
        .collect()
}

fn lookup_route<'t>(t: &'t RouteTable, host: &str) -> &'t RouteEntry {
    let req = Lookup {
        listener: 0,
        host,
        method: "GET",
        path: "/",
        query: "",
    };
    t.lookup(&req, &http::HeaderMap::new())
        .expect("a route")
        .route
}

fn two_legs(m: &mut Model, route: &str, weights: [u32; 2]) {
    let r = m.proxy.routes.iter_mut().find(|r| r.name == route).unwrap();
    let RouteTarget::Split(legs) = &mut Arc::make_mut(r).target else {
        panic!("not a split");
    };
    let mut other = legs[0].clone();
    other.service = "t".into();
    legs.truncate(1);
    legs.push(other);
    legs[0].weight = weights[0];
    legs[1].weight = weights[1];
}

#[test]
fn an_unchanged_route_is_reused_and_a_changed_one_built_again() {
    let mut ctx = ctx();
    let mut m = model();
    two_legs(&mut m, "a", [1, 0]);
    let first = Arc::new(m);
    let t1 = rebuild(&first, &BTreeMap::new(), &mut ctx).unwrap();
    assert_eq!(ctx.reused, 0, "nothing to reuse at first");

    // Weights flipped on a: a is built again, b and c are not.
    let mut m = (*first).clone();
    two_legs(&mut m, "a", [0, 1]);
    let second = Arc::new(m);
    let t2 = rebuild(&second, &BTreeMap::new(), &mut ctx).unwrap();
    assert!(!Arc::ptr_eq(entry(&t1, "a"), entry(&t2, "a")));
    assert!(Arc::ptr_eq(entry(&t1, "b"), entry(&t2, "b")));
    assert!(Arc::ptr_eq(entry(&t1, "c"), entry(&t2, "c")));
    assert_eq!(
        ctx.reused, 2,
        "b and c (the Rollout's route is always built)"
    );
    assert_eq!(split(entry(&t2, "a")).weights[1], Weight::FULL);
    // Requests find the new entry, and the reused ones through their new ids.
    assert!(Arc::ptr_eq(
        &split(lookup_route(&t2, "a.test")).legs[1],
        &split(entry(&t2, "a")).legs[1]
    ));
    assert_eq!(&*lookup_route(&t2, "b.test").name, "b");
    assert_eq!(&*lookup_route(&t2, "c.test").name, "c");

    // A route added before the others: they move, and are still reused.
    let mut m = (*second).clone();
    let mut new = (*m.proxy.routes[1]).clone();
    new.name = "new".into();
    new.hosts = vec![weir_config::model::HostMatch::Exact("new.test".into())];
    m.proxy.routes.insert(0, Arc::new(new));
    let third = Arc::new(m);
    let t3 = rebuild(&third, &BTreeMap::new(), &mut ctx).unwrap();
    assert_eq!(ctx.reused, 3);
    assert!(Arc::ptr_eq(entry(&t2, "a"), entry(&t3, "a")));
    assert_eq!(&*lookup_route(&t3, "new.test").name, "new");
    assert_eq!(&*lookup_route(&t3, "a.test").name, "a");
    assert_eq!(&*lookup_route(&t3, "c.test").name, "c");

    // A plain build keeps nothing for the next rebuild.
    build(&third, &BTreeMap::new(), &mut ctx).unwrap();
    rebuild(&third, &BTreeMap::new(), &mut ctx).unwrap();
    assert_eq!(ctx.reused, 0);
}

#[test]
fn a_changed_service_reaches_the_routes_that_use_it() {
    let mut ctx = ctx();
    let first = Arc::new(model());
    let t1 = rebuild(&first, &BTreeMap::new(), &mut ctx).unwrap();
    assert_eq!(ports(entry(&t1, "a")), vec![vec![9]]);

    let mut m = (*first).clone();
    let mut s = (*m.services["s"]).clone();
    s.endpoints[0].address = "127.0.0.1:19".parse().unwrap();
    s.endpoints[0].authority = "127.0.0.1:19".into();
    m.services.insert("s".into(), Arc::new(s));
    let second = Arc::new(m);
    let t2 = rebuild(&second, &BTreeMap::new(), &mut ctx).unwrap();
    // a and c use s: built again, on its new endpoint; b (on t) is reused.
    assert_eq!(ports(entry(&t2, "a")), vec![vec![19]]);
    assert_eq!(ports(entry(&t2, "c")), vec![vec![19]]);
    assert_eq!(ports(lookup_route(&t2, "c.test")), vec![vec![19]]);
    assert!(Arc::ptr_eq(entry(&t1, "b"), entry(&t2, "b")));
    assert_eq!(ctx.reused, 1);

    // A Service a mirror copies to counts as well.
    let mut m = (*second).clone();
    Arc::make_mut(&mut m.proxy.routes[1])
        .filters
        .push(Filter::Mirror(Mirror {
            service: "s".into(),
            share: Weight::FULL,
        }));
    let third = Arc::new(m);
    let t3 = rebuild(&third, &BTreeMap::new(), &mut ctx).unwrap();
    assert_eq!(split(entry(&t3, "b")).mirrors.len(), 1);
    let mut m = (*third).clone();
    let mut s = (*m.services["s"]).clone();
    s.endpoints[0].address = "127.0.0.1:29".parse().unwrap();
    m.services.insert("s".into(), Arc::new(s));
    let fourth = Arc::new(m);
    let t4 = rebuild(&fourth, &BTreeMap::new(), &mut ctx).unwrap();
    assert!(!Arc::ptr_eq(entry(&t3, "b"), entry(&t4, "b")));
    let mirror = &split(entry(&t4, "b")).mirrors[0].target;
    assert_eq!(mirror.endpoints[0].addr.port(), 29);
    assert_eq!(ctx.reused, 0);
}

#[test]
fn rollout_traffic_still_applies() {
    let mut ctx = ctx();
    let m = Arc::new(model());
    let t1 = rebuild(&m, &BTreeMap::new(), &mut ctx).unwrap();
    assert_eq!(split(entry(&t1, "app")).legs.len(), 1);

    // The control loop's decision on the same model: the Rollout's route follows it.
    let mut traffic = BTreeMap::new();
    traffic.insert(
        "app".to_owned(),
        RolloutTraffic {
            service: "app".into(),
            stable: "app:v1".into(),
            canary: Some("app:v2".into()),
            canary_weight: Weight::from_basis_points(2_500),
            header_routes: Vec::new(),
            mirror_routes: Vec::new(),
            role_hosts: Vec::new(),
        },
    );
    let t2 = rebuild(&m, &traffic, &mut ctx).unwrap();
    let app = split(entry(&t2, "app"));
    assert_eq!(app.legs.len(), 2);
    assert_eq!(app.weights[1], Weight::from_basis_points(2_500));
    assert_eq!(app.legs[1].endpoints[0].addr.port(), 12);
    assert_eq!(ctx.reused, 3, "a, b and c");
    assert!(Arc::ptr_eq(entry(&t1, "a"), entry(&t2, "a")));

    // And a reload after it keeps the traffic.
    let again = Arc::new((*m).clone());
    let t3 = rebuild(&again, &traffic, &mut ctx).unwrap();
    assert_eq!(split(entry(&t3, "app")).legs.len(), 2);
    assert_eq!(ctx.reused, 3);
}

#[test]
fn the_split_counters_of_reused_routes_are_kept() {
    let mut ctx = ctx();
    let mut m = model();
    two_legs(&mut m, "b", [1, 1]);
    let m = Arc::new(m);
    rebuild(&m, &BTreeMap::new(), &mut ctx).unwrap();
    let before = ctx.counters.get("b").map(|(_, c)| c.clone()).unwrap();
    for _ in 0..3 {
        let t = rebuild(&m, &BTreeMap::new(), &mut ctx).unwrap();
        assert!(ctx.reused >= 3);
        drop(t);
    }
    let after = ctx.counters.get("b").map(|(_, c)| c.clone()).unwrap();
    assert_eq!(before.len(), after.len());
    assert!(before.iter().zip(&after).all(|(a, b)| Arc::ptr_eq(a, b)));
}

fn traffic_with_role_host(host: &str) -> BTreeMap<String, RolloutTraffic> {
    BTreeMap::from([(
        "app".to_owned(),
        RolloutTraffic {
            service: "app".into(),
            stable: "app:v1".into(),
            canary: None,
            canary_weight: Weight::ZERO,
            header_routes: Vec::new(),
            mirror_routes: Vec::new(),
            role_hosts: vec![(host.to_owned(), crate::stats::Role::Stable)],
        },
    )])
}

#[test]
fn the_index_is_shared_while_every_route_matches_the_same_requests() {
    let mut ctx = ctx();
    let mut m = model();
    two_legs(&mut m, "a", [1, 0]);
    let first = Arc::new(m);
    let t1 = rebuild(&first, &BTreeMap::new(), &mut ctx).unwrap();

    // Weights flipped: the same index, and requests find the new entry.
    let mut m = (*first).clone();
    two_legs(&mut m, "a", [0, 1]);
    let second = Arc::new(m);
    let t2 = rebuild(&second, &BTreeMap::new(), &mut ctx).unwrap();
    assert!(Arc::ptr_eq(&t1.index, &t2.index));
    assert_eq!(split(lookup_route(&t2, "a.test")).weights[1], Weight::FULL);
    assert_eq!(&*lookup_route(&t2, "c.test").name, "c");

    // A route's host changes: a new index, with the new host and without the old.
    let mut m = (*second).clone();
    Arc::make_mut(&mut m.proxy.routes[2]).hosts =
        vec![weir_config::model::HostMatch::Exact("d.test".into())];
    let third = Arc::new(m);
    let t3 = rebuild(&third, &BTreeMap::new(), &mut ctx).unwrap();
    assert!(!Arc::ptr_eq(&t2.index, &t3.index));
    assert_eq!(&*lookup_route(&t3, "d.test").name, "c");
    let req = Lookup {
        listener: 0,
        host: "c.test",
        method: "GET",
        path: "/",
        query: "",
    };
    assert!(t3.lookup(&req, &http::HeaderMap::new()).is_none());

    // A route added, then one removed: new indexes.
    let mut m = (*third).clone();
    let mut new = (*m.proxy.routes[0]).clone();
    new.name = "e".into();
    new.hosts = vec![weir_config::model::HostMatch::Exact("e.test".into())];
    m.proxy.routes.push(Arc::new(new));
    let fourth = Arc::new(m);
    let t4 = rebuild(&fourth, &BTreeMap::new(), &mut ctx).unwrap();
    assert!(!Arc::ptr_eq(&t3.index, &t4.index));
    assert_eq!(&*lookup_route(&t4, "e.test").name, "e");
    let t5 = rebuild(&third, &BTreeMap::new(), &mut ctx).unwrap();
    assert!(!Arc::ptr_eq(&t4.index, &t5.index));
    assert_eq!(&*lookup_route(&t5, "d.test").name, "c");

    // A role host comes, then changes: new indexes; the same again: shared.
    let t6 = rebuild(&third, &traffic_with_role_host("app-stable"), &mut ctx).unwrap();
    assert!(!Arc::ptr_eq(&t5.index, &t6.index));
    assert_eq!(&*lookup_route(&t6, "app-stable").name, "app/app-stable");
    let t7 = rebuild(&third, &traffic_with_role_host("app-preview"), &mut ctx).unwrap();
    assert!(!Arc::ptr_eq(&t6.index, &t7.index));
    assert_eq!(&*lookup_route(&t7, "app-preview").name, "app/app-preview");
    let t8 = rebuild(&third, &traffic_with_role_host("app-preview"), &mut ctx).unwrap();
    assert!(Arc::ptr_eq(&t7.index, &t8.index));
    assert_eq!(&*lookup_route(&t8, "app-preview").name, "app/app-preview");
}

/// The index of a table as text, with each matcher's route by name (slots differ between
/// an index patched and one built afresh): every group, in order, and the claims.
fn describe(t: &RouteTable) -> Vec<String> {
    let ix = &*t.index;
    let group = |key: String, g: &Group| {
        let ms: Vec<String> = g
            .iter()
            .map(|m| {
                let route = t.by_slot[m.route as usize]
                    .as_ref()
                    .map_or("(none)", |e| &*e.name);
                format!(
                    "{route}#{} {:?} {:?} {:?} {:?} {:x} {:?}",
                    m.nth, m.path, m.headers, m.query, m.method, m.listener_mask, m.scope
                )
            })
            .collect();
        format!("{key}: {}", ms.join(" | "))
    };
    let mut out: Vec<String> = ix
        .exact
        .iter()
        .map(|(k, g)| group(format!("exact {k}"), g))
        .chain(
            ix.suffix
                .iter()
                .map(|(k, g)| group(format!("suffix {k}"), g)),
        )
        .collect();
    out.sort();
    out.push(group("any".into(), &ix.any));
    let mut claims: Vec<String> = ix
        .claims
        .iter()
        .map(|(l, c)| {
            let mut e: Vec<_> = c.exact.iter().collect();
            e.sort();
            let mut s: Vec<_> = c.suffix.iter().collect();
            s.sort();
            format!("claims {l}: {e:?} {s:?} {}", c.any)
        })
        .collect();
    claims.sort();
    out.extend(claims);
    // Every route has its slot, and the slots of no route are empty.
    assert_eq!(ix.slots.len(), t.routes().len());
    for (r, s) in t.routes().iter().zip(&ix.slots) {
        assert!(Arc::ptr_eq(t.by_slot[*s as usize].as_ref().unwrap(), r));
    }
    assert_eq!(
        t.by_slot.iter().filter(|e| e.is_some()).count(),
        t.routes().len()
    );
    out
}

/// What each of a set of requests is routed to (route name and path match).
fn lookups(t: &RouteTable) -> Vec<String> {
    let mut out = Vec::new();
    let mut gold = http::HeaderMap::new();
    gold.insert("x-tenant", "gold".parse().unwrap());
    for host in [
        "h0.test",
        "h1.test",
        "h2.test",
        "h3.test",
        "h4.test",
        "a.w0.test",
        "b.w1.test",
        "x.a.w0.test",
        "other.test",
        "app-stable",
    ] {
        for path in ["/", "/x", "/api", "/api/v1", "/apix"] {
            for method in ["GET", "POST"] {
                for listener in [0, 1] {
                    for headers in [&http::HeaderMap::new(), &gold] {
                        let req = Lookup {
                            listener,
                            host,
                            method,
                            path,
                            query: "",
                        };
                        let found = t
                            .lookup(&req, headers)
                            .map(|f| format!("{} {:?}", f.route.name, f.path));
                        out.push(format!("{listener} {host} {method} {path}: {found:?}"));
                    }
                }
            }
        }
    }
    out
}

/// A small deterministic generator (no rand crate here).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// A route named `name` with hosts, matches, listeners and scope drawn by `rng`, over
/// `base`'s target.
fn random_route(
    base: &weir_config::model::Route,
    name: String,
    rng: &mut Lcg,
) -> weir_config::model::Route {
    use weir_config::model::{HeaderMatch, HeaderMatchKind, HostMatch, PathMatch, RouteMatch};
    let mut r = base.clone();
    r.name = name;
    r.hosts = match rng.below(6) {
        0 => Vec::new(),
        1 => vec![HostMatch::Suffix(format!(".w{}.test", rng.below(2)))],
        2 => vec![
            HostMatch::Exact(format!("h{}.test", rng.below(5))),
            HostMatch::Suffix(".w0.test".into()),
        ],
        _ => vec![HostMatch::Exact(format!("h{}.test", rng.below(5)))],
    };
    let one = |rng: &mut Lcg| {
        let path = match rng.below(4) {
            0 => PathMatch::Prefix("/".into()),
            1 => PathMatch::Exact("/x".into()),
            2 => PathMatch::Segments("/api".into()),
            _ => PathMatch::Prefix("/api".into()),
        };
        let headers = if rng.below(3) == 0 {
            vec![HeaderMatch {
                name: "x-tenant".into(),
                kind: HeaderMatchKind::Exact("gold".into()),
            }]
        } else {
            Vec::new()
        };
        RouteMatch {
            path,
            headers,
            query: Vec::new(),
            method: (rng.below(4) == 0).then(|| "GET".to_owned()),
        }
    };
    r.matches = (0..1 + rng.below(2)).map(|_| one(rng)).collect();
    r.listeners = match rng.below(3) {
        0 => vec!["alt".into()],
        _ => Vec::new(),
    };
    r.scope = match rng.below(4) {
        0 => vec![Some(HostMatch::Exact("h0.test".into()))],
        1 => vec![Some(HostMatch::Suffix(".w0.test".into()))],
        2 => vec![None],
        _ => Vec::new(),
    };
    if !r.scope.is_empty() && r.listeners.is_empty() {
        r.listeners = vec!["web".into()];
    }
    r
}

fn two_listeners() -> Model {
    let yaml = YAML.replace(
        r#"listeners: [{name: web, address: "127.0.0.1:0"}]"#,
        r#"listeners: [{name: web, address: "127.0.0.1:0"}, {name: alt, address: "127.0.0.1:0"}]"#,
    );
    weir_config::load_str(std::path::Path::new("/t/weir.yaml"), &yaml).unwrap()
}

/// Rebuilds `m` on `ctx` and checks the result against a build afresh: the same groups
/// in the same order, the same claims, and every request of a set routed alike.
fn check(
    m: &Arc<Model>,
    traffic: &BTreeMap<String, RolloutTraffic>,
    ctx: &mut BuildContext,
) -> RouteTable {
    let t = rebuild(m, traffic, ctx).unwrap();
    let fresh = build(m, traffic, &mut super::reuse_tests::ctx()).unwrap();
    assert_eq!(describe(&t), describe(&fresh));
    assert_eq!(lookups(&t), lookups(&fresh));
    t
}

/// The groups of the two tables that are the same value (shared, not rebuilt).
fn shared_groups(a: &RouteTable, b: &RouteTable) -> usize {
    let (a, b) = (&*a.index, &*b.index);
    a.exact
        .iter()
        .filter(|(k, g)| b.exact.get(&**k).is_some_and(|h| Arc::ptr_eq(g, h)))
        .count()
        + a.suffix
            .iter()
            .filter(|(k, g)| b.suffix.get(&**k).is_some_and(|h| Arc::ptr_eq(g, h)))
            .count()
}

#[test]
fn a_patched_index_equals_one_built_afresh() {
    let mut rng = Lcg(7);
    let base = two_listeners();
    let template = (*base.proxy.routes[0]).clone();
    let mut m = base.clone();
    m.proxy.routes = (0..40)
        .map(|k| Arc::new(random_route(&template, format!("r{k}"), &mut rng)))
        .collect();
    let mut ctx = ctx();
    let traffic = traffic_with_role_host("app-stable");
    let mut m = Arc::new(m);
    let mut last = check(&m, &traffic, &mut ctx);
    let mut next_name = 40;
    let mut patched = 0;
    for step in 0..300 {
        let mut n = (*m).clone();
        let routes = &mut n.proxy.routes;
        // One to three edits, anywhere: add, remove, change hosts or matches, or move.
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(routes.len() + 1);
            match rng.below(5) {
                0 | 1 => {
                    next_name += 1;
                    let r = random_route(&template, format!("r{next_name}"), &mut rng);
                    routes.insert(at, Arc::new(r));
                }
                2 if routes.len() > 5 => {
                    routes.remove(at.min(routes.len() - 1));
                }
                3 if !routes.is_empty() => {
                    let at = at.min(routes.len() - 1);
                    let name = routes[at].name.clone();
                    routes[at] = Arc::new(random_route(&template, name, &mut rng));
                }
                _ if routes.len() > 1 => {
                    let r = routes.remove(at.min(routes.len() - 1));
                    let to = rng.below(routes.len() + 1);
                    routes.insert(to, r);
                }
                _ => {}
            }
        }
        let traffic = if step % 50 == 49 {
            BTreeMap::new()
        } else {
            traffic.clone()
        };
        m = Arc::new(n);
        let t = check(&m, &traffic, &mut ctx);
        if shared_groups(&last, &t) > 0 {
            patched += 1;
        }
        last = t;
    }
    assert!(
        patched > 100,
        "the index was patched {patched} times in 300"
    );
}

/// Many routes, one host each (the shape of issue 11's benchmark), with their Gateway
/// listener hostname.
fn many(n: usize) -> Model {
    use weir_config::model::HostMatch;
    let mut m = two_listeners();
    let template = (*m.proxy.routes[0]).clone();
    m.proxy.routes = (0..n)
        .map(|k| {
            let mut r = template.clone();
            r.name = format!("r{k}");
            r.hosts = vec![HostMatch::Exact(format!("h{k}.test"))];
            r.listeners = vec!["web".into()];
            r.scope = vec![None];
            Arc::new(r)
        })
        .collect();
    m
}

#[test]
fn adding_a_route_rebuilds_the_group_of_its_host_only() {
    use weir_config::model::HostMatch;
    let mut ctx = ctx();
    let first = Arc::new(many(100));
    let t1 = check(&first, &BTreeMap::new(), &mut ctx);

    // Added in the middle: its host's group is new, every other is shared, and the
    // routes after it (their places moved) are still found.
    let mut m = (*first).clone();
    let mut r = (*m.proxy.routes[0]).clone();
    r.name = "new".into();
    r.hosts = vec![HostMatch::Exact("new.test".into())];
    m.proxy.routes.insert(50, Arc::new(r));
    let second = Arc::new(m);
    let t2 = check(&second, &BTreeMap::new(), &mut ctx);
    assert_eq!(shared_groups(&t1, &t2), 100);
    assert_eq!(&*lookup_route(&t2, "new.test").name, "new");
    assert_eq!(&*lookup_route(&t2, "h70.test").name, "r70");
    assert_eq!(ctx.reused, 100);

    // Another route on an existing host, written later: that group is made again, with
    // the earlier route first.
    let mut m = (*second).clone();
    let mut r = (*m.proxy.routes[0]).clone();
    r.name = "second-on-h10".into();
    r.hosts = vec![HostMatch::Exact("h10.test".into())];
    m.proxy.routes.insert(80, Arc::new(r));
    let third = Arc::new(m);
    let t3 = check(&third, &BTreeMap::new(), &mut ctx);
    assert_eq!(shared_groups(&t2, &t3), 100);
    assert_eq!(t3.index.exact["h10.test"].len(), 2);
    assert_eq!(&*lookup_route(&t3, "h10.test").name, "r10");

    // Removed: the slot is freed and taken by the next route added.
    let t4 = check(&second, &BTreeMap::new(), &mut ctx);
    assert_eq!(shared_groups(&t3, &t4), 100);
    assert_eq!(t4.index.free.len(), 1);
    let t5 = check(&third, &BTreeMap::new(), &mut ctx);
    assert!(t5.index.free.is_empty());
    assert_eq!(t5.index.slot_count, t3.index.slot_count);

    // A host changed: the old host's group goes, the new one comes.
    let mut m = (*third).clone();
    Arc::make_mut(&mut m.proxy.routes[20]).hosts = vec![HostMatch::Exact("moved.test".into())];
    let fourth = Arc::new(m);
    let t6 = check(&fourth, &BTreeMap::new(), &mut ctx);
    assert!(!t6.index.exact.contains_key("h20.test"));
    assert_eq!(&*lookup_route(&t6, "moved.test").name, "r20");
    assert_eq!(shared_groups(&t5, &t6), 100);

    // The last claim of a listener hostname removed: the claim goes.
    let mut m = (*fourth).clone();
    let mut r = (*m.proxy.routes[0]).clone();
    r.name = "scoped".into();
    r.scope = vec![Some(HostMatch::Exact("h1.test".into()))];
    m.proxy.routes.push(Arc::new(r));
    let fifth = Arc::new(m);
    let t7 = check(&fifth, &BTreeMap::new(), &mut ctx);
    assert!(t7.index.claims[&0].exact.contains("h1.test"));
    let t8 = check(&fourth, &BTreeMap::new(), &mut ctx);
    assert!(!t8.index.claims[&0].exact.contains("h1.test"));
    assert!(t8.index.claims[&0].any);

    // Many routes changed: built afresh, with no free slot.
    let t9 = check(&first, &BTreeMap::new(), &mut ctx);
    drop(t9);
    let mut m = (*first).clone();
    m.proxy.routes.truncate(10);
    let t10 = check(&Arc::new(m), &BTreeMap::new(), &mut ctx);
    assert!(t10.index.free.is_empty());
    assert_eq!(t10.index.slot_count, 10);
}
