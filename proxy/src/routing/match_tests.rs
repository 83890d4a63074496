//! Matching and precedence over routes with every kind of condition (as HTTPRoutes have
//! them), built directly from model routes.

use std::sync::Arc;

use weir_config::model::{
    Filter, HeaderMatch, HeaderMatchKind, HostMatch, PathMatch, QueryMatch, Redirect, Route,
    RouteMatch, RouteTarget, RouteTimeouts, ValueMatch, WeightedService,
};

use super::*;

fn m(path: PathMatch) -> RouteMatch {
    RouteMatch {
        path,
        headers: Vec::new(),
        query: Vec::new(),
        method: None,
    }
}

fn route(name: &str, hosts: &[&str], matches: Vec<RouteMatch>) -> Route {
    Route {
        name: name.to_owned(),
        hosts: hosts
            .iter()
            .map(|h| match h.strip_prefix('*') {
                Some(s) => HostMatch::Suffix(s.to_owned()),
                None => HostMatch::Exact((*h).to_owned()),
            })
            .collect(),
        matches,
        listeners: Vec::new(),
        filters: Vec::new(),
        target: RouteTarget::Split(vec![WeightedService {
            service: "s".into(),
            weight: 1,
            filters: Vec::new(),
            invalid: None,
        }]),
        timeouts: RouteTimeouts::default(),
        scope: Vec::new(),
        max_body: None,
        steer: Vec::new(),
        affinity: None,
    }
}

fn table(routes: Vec<Route>) -> RouteTable {
    let mut model = weir_config::load_str(
        std::path::Path::new("/t/weir.yaml"),
        r#"
apiVersion: weir.dev/v1alpha1
kind: Proxy
metadata: {name: edge}
spec:
  listeners: [{name: web, address: "127.0.0.1:0"}]
  admin: {address: "127.0.0.1:0"}
  routes: []
---
apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {name: s}
spec:
  endpoints: ["127.0.0.1:9"]
"#,
    )
    .unwrap();
    model.proxy.routes = routes.into_iter().map(Arc::new).collect();
    let mut ctx = BuildContext::new(
        Arc::new(crate::stats::Stats::new(1, true)),
        Arc::new(crate::upstream::Upstreams::default()),
    );
    build(&model, &Default::default(), &mut ctx).unwrap()
}

fn find<'t>(
    t: &'t RouteTable,
    host: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Option<&'t str> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut h = http::HeaderMap::new();
    for (n, v) in headers {
        h.append(
            http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let req = Lookup {
        listener: 0,
        host,
        method,
        path,
        query,
    };
    t.lookup(&req, &h).map(|f| &*f.route.name)
}

#[test]
fn exact_paths_win_then_the_longest_prefix_then_regex() {
    let t = table(vec![
        route("prefix-root", &[], vec![m(PathMatch::Segments("/".into()))]),
        route(
            "regex",
            &[],
            vec![m(PathMatch::Regex(
                regex::Regex::new("^(?:/v2/.*)$").unwrap(),
            ))],
        ),
        route("prefix-v2", &[], vec![m(PathMatch::Segments("/v2".into()))]),
        route("exact", &[], vec![m(PathMatch::Exact("/v2/exact".into()))]),
    ]);
    assert_eq!(find(&t, "a", "GET", "/v2/exact", &[]), Some("exact"));
    assert_eq!(
        find(&t, "a", "GET", "/v2/exact/more", &[]),
        Some("prefix-v2")
    );
    assert_eq!(find(&t, "a", "GET", "/v2", &[]), Some("prefix-v2"));
    // Whole segments only.
    assert_eq!(find(&t, "a", "GET", "/v2example", &[]), Some("prefix-root"));
    assert_eq!(find(&t, "a", "GET", "/", &[]), Some("prefix-root"));
}

#[test]
fn method_then_headers_then_query_break_ties() {
    let mut get = m(PathMatch::Segments("/".into()));
    get.method = Some("GET".into());
    let mut two_headers = m(PathMatch::Segments("/".into()));
    two_headers.headers = vec![
        HeaderMatch {
            name: "version".into(),
            kind: HeaderMatchKind::Exact("one".into()),
        },
        HeaderMatch {
            name: "color".into(),
            kind: HeaderMatchKind::Exact("red".into()),
        },
    ];
    let mut one_header = m(PathMatch::Segments("/".into()));
    one_header.headers = vec![HeaderMatch {
        name: "version".into(),
        kind: HeaderMatchKind::Exact("one".into()),
    }];
    let mut query = m(PathMatch::Segments("/".into()));
    query.query = vec![QueryMatch {
        name: "animal".into(),
        value: ValueMatch::Exact("whale".into()),
    }];
    let t = table(vec![
        route("any", &[], vec![m(PathMatch::Segments("/".into()))]),
        route("query", &[], vec![query]),
        route("one-header", &[], vec![one_header]),
        route("two-headers", &[], vec![two_headers]),
        route("get", &[], vec![get]),
    ]);
    assert_eq!(
        find(&t, "a", "GET", "/", &[("version", "one")]),
        Some("get")
    );
    assert_eq!(
        find(&t, "a", "POST", "/", &[("version", "one")]),
        Some("one-header")
    );
    assert_eq!(
        find(
            &t,
            "a",
            "POST",
            "/",
            &[("version", "one"), ("color", "red")]
        ),
        Some("two-headers")
    );
    assert_eq!(find(&t, "a", "POST", "/?animal=whale", &[]), Some("query"));
    assert_eq!(find(&t, "a", "POST", "/?animal=dolphin", &[]), Some("any"));
    assert_eq!(
        find(&t, "a", "POST", "/?x=1&animal=whale", &[]),
        Some("query")
    );
    // Query names are case-sensitive; the first value counts.
    assert_eq!(find(&t, "a", "POST", "/?Animal=whale", &[]), Some("any"));
    assert_eq!(
        find(&t, "a", "POST", "/?animal=dolphin&animal=whale", &[]),
        Some("any")
    );
}

#[test]
fn equal_matches_go_to_the_route_written_first_and_matches_are_ored() {
    let t = table(vec![
        route(
            "first",
            &["example.com"],
            vec![
                m(PathMatch::Segments("/a".into())),
                m(PathMatch::Exact("/b".into())),
            ],
        ),
        route(
            "second",
            &["example.com"],
            vec![m(PathMatch::Segments("/a".into()))],
        ),
        route(
            "wild",
            &["*.example.com"],
            vec![m(PathMatch::Segments("/".into()))],
        ),
    ]);
    assert_eq!(find(&t, "example.com", "GET", "/a/x", &[]), Some("first"));
    assert_eq!(find(&t, "example.com", "GET", "/b", &[]), Some("first"));
    assert_eq!(find(&t, "example.com", "GET", "/b/c", &[]), None);
    assert_eq!(find(&t, "foo.example.com", "GET", "/a", &[]), Some("wild"));
    assert_eq!(find(&t, "other.test", "GET", "/a", &[]), None);
}

#[test]
fn redirects_and_invalid_backends_are_answered_without_an_upstream() {
    let mut redirect = route("redirect", &[], vec![m(PathMatch::Segments("/old".into()))]);
    redirect.filters = vec![Filter::Redirect(Redirect {
        scheme: Some("https".into()),
        hostname: None,
        path: None,
        port: None,
        status: 301,
        url: None,
    })];
    let mut invalid = route("invalid", &[], vec![m(PathMatch::Segments("/bad".into()))]);
    invalid.target = RouteTarget::Respond {
        status: 500,
        message: "no such Service".into(),
    };
    let mut zero = route("zero", &[], vec![m(PathMatch::Segments("/zero".into()))]);
    zero.target = RouteTarget::Split(vec![WeightedService {
        service: "s".into(),
        weight: 0,
        filters: Vec::new(),
        invalid: None,
    }]);
    let t = table(vec![redirect, invalid, zero]);
    let target = |path: &str| {
        let req = Lookup {
            listener: 0,
            host: "a",
            method: "GET",
            path,
            query: "",
        };
        &t.lookup(&req, &http::HeaderMap::new())
            .unwrap()
            .route
            .target
    };
    assert!(matches!(target("/old/x"), Target::Redirect(r) if r.status == 301));
    assert!(matches!(
        target("/bad"),
        Target::Unavailable {
            kind: crate::error::Kind::InvalidBackend,
            ..
        }
    ));
    assert!(matches!(
        target("/zero"),
        Target::Unavailable {
            kind: crate::error::Kind::InvalidBackend,
            ..
        }
    ));
}

#[test]
fn an_invalid_leg_takes_its_share_and_is_marked() {
    let mut r = route("half", &[], vec![m(PathMatch::Segments("/".into()))]);
    r.target = RouteTarget::Split(vec![
        WeightedService {
            service: "s".into(),
            weight: 1,
            filters: Vec::new(),
            invalid: None,
        },
        WeightedService {
            service: String::new(),
            weight: 1,
            filters: Vec::new(),
            invalid: Some("Service default/nope not found".into()),
        },
    ]);
    let t = table(vec![r]);
    let req = Lookup {
        listener: 0,
        host: "a",
        method: "GET",
        path: "/",
        query: "",
    };
    let h = http::HeaderMap::new();
    let Target::Split(s) = &t.lookup(&req, &h).unwrap().route.target else {
        panic!("a split");
    };
    let invalid: Vec<bool> = (0..6).map(|_| s.pick(&h).0.invalid).collect();
    assert_eq!(invalid.iter().filter(|i| **i).count(), 3, "{invalid:?}");
    assert!(s.legs[1].endpoints.is_empty());
}

#[test]
fn a_request_stays_with_the_gateway_listener_its_host_selects() {
    let scoped = |name: &str, hosts: &[&str], path: &str, scope: HostMatch| {
        let mut r = route(name, hosts, vec![m(PathMatch::Segments(path.into()))]);
        r.listeners = vec!["web".into()];
        r.scope = vec![Some(scope)];
        r
    };
    let foo = || HostMatch::Exact("foo.example.com".into());
    let wild = || HostMatch::Suffix(".example.com".into());
    let t = table(vec![
        scoped("foo-a", &["foo.example.com"], "/a", foo()),
        scoped("wild", &["*.example.com"], "/", wild()),
        scoped("wild-x-a", &["x.example.com"], "/a", wild()),
    ]);
    // foo.example.com selects the listener "foo.example.com": its routes only, even
    // where the wildcard listener's route would match.
    assert_eq!(find(&t, "foo.example.com", "GET", "/a", &[]), Some("foo-a"));
    assert_eq!(find(&t, "foo.example.com", "GET", "/b", &[]), None);
    // Other names select the wildcard listener, whose routes all take part.
    assert_eq!(
        find(&t, "x.example.com", "GET", "/a", &[]),
        Some("wild-x-a")
    );
    assert_eq!(find(&t, "x.example.com", "GET", "/b", &[]), Some("wild"));
    assert_eq!(find(&t, "bar.example.com", "GET", "/a", &[]), Some("wild"));
    assert_eq!(find(&t, "example.org", "GET", "/", &[]), None);
}

#[test]
fn the_longest_wildcard_wins_and_a_shorter_one_takes_what_it_leaves() {
    let t = table(vec![
        route("com", &["*.com"], vec![m(PathMatch::Segments("/".into()))]),
        route(
            "example",
            &["*.example.com"],
            vec![m(PathMatch::Segments("/".into()))],
        ),
        route(
            "api-v2",
            &["*.api.example.com"],
            vec![m(PathMatch::Segments("/v2".into()))],
        ),
        route(
            "exact",
            &["a.api.example.com"],
            vec![m(PathMatch::Exact("/x".into()))],
        ),
        route("any", &[], vec![m(PathMatch::Segments("/".into()))]),
    ]);
    assert_eq!(
        find(&t, "a.api.example.com", "GET", "/x", &[]),
        Some("exact")
    );
    assert_eq!(
        find(&t, "a.api.example.com", "GET", "/v2/y", &[]),
        Some("api-v2")
    );
    assert_eq!(
        find(&t, "b.c.api.example.com", "GET", "/v2", &[]),
        Some("api-v2")
    );
    // The longest wildcard has no match for the path: the next one down takes it.
    assert_eq!(
        find(&t, "a.api.example.com", "GET", "/y", &[]),
        Some("example")
    );
    assert_eq!(
        find(&t, "www.example.com", "GET", "/", &[]),
        Some("example")
    );
    assert_eq!(find(&t, "other.com", "GET", "/", &[]), Some("com"));
    // A wildcard needs a label before its suffix.
    assert_eq!(find(&t, "example.com", "GET", "/", &[]), Some("com"));
    assert_eq!(find(&t, ".example.com", "GET", "/", &[]), Some("com"));
    assert_eq!(find(&t, "com", "GET", "/", &[]), Some("any"));
    assert_eq!(find(&t, "localhost", "GET", "/", &[]), Some("any"));
}
