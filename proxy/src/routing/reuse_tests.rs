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
