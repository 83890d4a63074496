//! The Gateway API conformance suite's own manifests (`tests/gateway-conformance/`
//! `manifests/`, each test's file with the suite's base manifests, the EndpointSlices of
//! `tests/gateway-conformance/endpoints.yaml` and the TLS Secret the suite creates) loaded
//! into the model: listeners, routes, hosts, matches and filters. Weights, mirrors and
//! statuses are in `gateway_status.rs`.

#[allow(dead_code)]
mod gateway_support;

use gateway_support::*;
use weir_config::model::*;

#[test]
fn every_manifest_loads_and_every_route_has_a_status() {
    let mut files: Vec<String> = std::fs::read_dir(data().join("manifests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.starts_with("httproute-") && f.ends_with(".yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 40, "{files:?}");
    for f in &files {
        let m = model(f);
        let text = std::fs::read_to_string(data().join("manifests").join(f)).unwrap();
        let declared = text.lines().filter(|l| *l == "kind: HTTPRoute").count();
        let reported = m
            .gateway_status
            .iter()
            .filter(|s| s.kind == StatusKind::HttpRoute)
            .count();
        assert_eq!(declared, reported, "{f}");
    }
}

#[test]
fn a_simple_route_without_a_proxy_document() {
    let m = model("httproute-simple-same-namespace.yaml");
    // No Proxy document: the defaults, with the Gateways' listeners.
    assert_eq!(m.proxy.admin, "127.0.0.1:9901".parse().unwrap());
    let listeners: Vec<(&str, String)> = m
        .proxy
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.address.to_string()))
        .collect();
    assert_eq!(
        listeners,
        [
            ("gateway:0.0.0.0:80", "0.0.0.0:80".to_owned()),
            ("gateway:0.0.0.0:443", "0.0.0.0:443".to_owned())
        ]
    );
    let r = route(
        &m,
        "gateway-conformance-infra/gateway-conformance-infra-test/0",
    );
    assert!(r.hosts.is_empty());
    assert_eq!(r.listeners, ["gateway:0.0.0.0:80"]);
    assert_eq!(r.matches.len(), 1);
    assert_eq!(r.matches[0].path, prefix("/"));
    assert_eq!(r.target, split(&[(V1, 1)]));
    // The ready endpoint of the slice, on the port named like the Service's port.
    let s = &m.services[V1];
    let eps: Vec<&str> = s.endpoints.iter().map(|e| e.authority.as_str()).collect();
    assert_eq!(eps, ["127.0.0.1:3101"]);
    assert_eq!(parent(&m, "gateway-conformance-infra-test"), accepted());
    let gw = status(&m, StatusKind::Gateway, "same-namespace");
    assert!(gw.conditions.iter().all(|c| c.status), "{gw:?}");
    let http = gw.section("http").unwrap();
    assert_eq!(http.attached_routes, Some(1));
    assert!(http.condition("Programmed").unwrap().status);
}

#[test]
fn matches_paths_headers_query_parameters_and_methods() {
    let m = model("httproute-matching.yaml");
    let r = route(&m, "gateway-conformance-infra/matching/1");
    assert_eq!(r.matches[0].path, prefix("/v2"));
    assert_eq!(r.matches[1].path, prefix("/"));
    assert_eq!(r.matches[1].headers[0].name, "version");
    assert_eq!(
        r.matches[1].headers[0].kind,
        HeaderMatchKind::Exact("two".into())
    );

    let m = model("httproute-exact-path-matching.yaml");
    assert_eq!(
        route(&m, "gateway-conformance-infra/exact-matching/0").matches[0].path,
        PathMatch::Exact("/one".into())
    );

    let m = model("httproute-header-matching.yaml");
    let r = route(&m, "gateway-conformance-infra/header-matching/2");
    let hs: Vec<&str> = r.matches[0]
        .headers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(hs, ["version", "color"]);
    assert_eq!(
        route(&m, "gateway-conformance-infra/header-matching/3")
            .matches
            .len(),
        2
    );

    let m = model("httproute-query-param-matching.yaml");
    let r = route(&m, "gateway-conformance-infra/query-param-matching/2");
    assert_eq!(
        r.matches[1].query[0].name, "ANIMAL",
        "query parameter names keep their case"
    );
    assert_eq!(
        r.matches[1].query[0].value,
        ValueMatch::Exact("Whale".into())
    );
    let r = route(&m, "gateway-conformance-infra/query-param-matching/6");
    assert_eq!(
        (
            r.matches[1].path.clone(),
            r.matches[1].headers.len(),
            r.matches[1].query.len()
        ),
        (prefix("/path4"), 1, 1)
    );

    let m = model("httproute-method-matching.yaml");
    let methods: Vec<Option<&str>> = routes(&m, "method-matching")
        .iter()
        .map(|r| r.matches[0].method.as_deref())
        .collect();
    assert_eq!(
        methods,
        [
            Some("POST"),
            Some("GET"),
            Some("GET"),
            Some("PUT"),
            Some("POST"),
            Some("PATCH"),
            None,
            Some("PATCH"),
            None
        ]
    );

    let m = model("httproute-named-rule.yaml");
    assert_eq!(
        names(&m),
        [
            "gateway-conformance-infra/http-named-rules/named-rule",
            "gateway-conformance-infra/http-named-rules/1"
        ]
    );
}

#[test]
fn routes_come_in_document_then_rule_order() {
    let m = model("httproute-matching-across-routes.yaml");
    assert_eq!(
        names(&m),
        [
            "gateway-conformance-infra/matching-part1/0",
            "gateway-conformance-infra/matching-part2/0"
        ]
    );
    let hosts = |n: &str| route(&m, n).hosts.clone();
    assert_eq!(
        hosts("gateway-conformance-infra/matching-part1/0"),
        [
            HostMatch::Exact("example.com".into()),
            HostMatch::Exact("example.net".into())
        ]
    );
    assert_eq!(
        hosts("gateway-conformance-infra/matching-part2/0"),
        [HostMatch::Exact("example.com".into())]
    );
}

#[test]
fn header_modifiers_lower_case_names() {
    let m = model("httproute-request-header-modifier.yaml");
    let r = route(&m, "gateway-conformance-infra/request-header-modifier/3");
    let want = HeaderModifier {
        set: vec![
            ("x-header-set-1".into(), "header-set-1".into()),
            ("x-header-set-2".into(), "header-set-2".into()),
        ],
        add: vec![
            ("x-header-add-1".into(), "header-add-1".into()),
            ("x-header-add-2".into(), "header-add-2".into()),
            ("x-header-add-3".into(), "header-add-3".into()),
        ],
        remove: vec!["x-header-remove-1".into(), "x-header-remove-2".into()],
    };
    assert_eq!(r.filters, [Filter::RequestHeaders(want)]);

    let m = model("httproute-response-header-modifier.yaml");
    let r = route(&m, "gateway-conformance-infra/response-header-modifier/5");
    assert!(
        matches!(
            r.filters[..],
            [Filter::ResponseHeaders(_), Filter::RequestHeaders(_)]
        ),
        "{:?}",
        r.filters
    );

    let m = model("httproute-request-header-modifier-backend-weights.yaml");
    let RouteTarget::Split(legs) = &route(
        &m,
        "gateway-conformance-infra/request-header-modifier-backend-weights/0",
    )
    .target
    else {
        panic!()
    };
    assert_eq!((legs[0].weight, legs[1].weight), (10, 10));
    let set = HeaderModifier {
        set: vec![("backend".into(), "infra-backend-v2".into())],
        ..Default::default()
    };
    assert_eq!(legs[1].filters, [Filter::RequestHeaders(set)]);
}

#[test]
fn redirects() {
    let redirect = |m: &Model, n: &str| match &route(m, n).filters[..] {
        [Filter::Redirect(r)] => r.clone(),
        other => panic!("{other:?}"),
    };
    let base = Redirect {
        scheme: None,
        hostname: None,
        path: None,
        port: None,
        status: 302,
        url: None,
    };
    let m = model("httproute-redirect-host-and-status.yaml");
    assert_eq!(
        redirect(&m, "gateway-conformance-infra/redirect/0"),
        Redirect {
            hostname: Some("example.org".into()),
            ..base.clone()
        }
    );
    assert_eq!(
        redirect(&m, "gateway-conformance-infra/redirect/1"),
        Redirect {
            status: 301,
            ..base.clone()
        }
    );
    // A rule without backends answers 500 unless a filter answers first.
    assert_eq!(
        route(&m, "gateway-conformance-infra/redirect/1").target,
        RouteTarget::Respond {
            status: 500,
            message: "no backendRefs".into()
        }
    );

    let m = model("httproute-redirect-path.yaml");
    assert_eq!(
        redirect(&m, "gateway-conformance-infra/redirect-path/0").path,
        Some(PathRewrite::Prefix("/replacement-prefix".into()))
    );
    assert_eq!(
        redirect(&m, "gateway-conformance-infra/redirect-path/5"),
        Redirect {
            path: Some(PathRewrite::Full("/replacement-full".into())),
            status: 301,
            ..base.clone()
        }
    );

    let m = model("httproute-redirect-port.yaml");
    let r = redirect(&m, "gateway-conformance-infra/redirect-port/4");
    assert_eq!(
        (r.port, r.status, r.hostname.as_deref()),
        (Some(8083), 307, Some("example.org"))
    );
    assert_eq!(
        redirect(&m, "gateway-conformance-infra/redirect-port/5").status,
        308
    );

    let m = model("httproute-redirect-scheme.yaml");
    assert_eq!(
        redirect(&m, "gateway-conformance-infra/redirect-scheme/0")
            .scheme
            .as_deref(),
        Some("https")
    );
    let m = model("httproute-303-redirect-scheme.yaml");
    assert_eq!(
        redirect(&m, "gateway-conformance-infra/303-redirect-scheme/0").status,
        303
    );

    let m = model("httproute-redirect-port-and-scheme.yaml");
    assert_eq!(
        route(
            &m,
            "gateway-conformance-infra/http-route-for-listener-on-port-8080/0"
        )
        .listeners,
        ["gateway:0.0.0.0:8080"]
    );
    assert_eq!(
        route(
            &m,
            "gateway-conformance-infra/http-route-for-listener-on-port-443/0"
        )
        .listeners,
        ["gateway:0.0.0.0:443"]
    );
}

#[test]
fn rewrites() {
    let m = model("httproute-rewrite-path.yaml");
    let rw = |n: &str| route(&m, n).filters[0].clone();
    assert_eq!(
        rw("gateway-conformance-infra/rewrite-path/0"),
        Filter::Rewrite(Rewrite {
            hostname: None,
            path: Some(PathRewrite::Prefix("/one".into()))
        })
    );
    assert_eq!(
        rw("gateway-conformance-infra/rewrite-path/1"),
        Filter::Rewrite(Rewrite {
            hostname: None,
            path: Some(PathRewrite::Prefix("/".into()))
        })
    );
    assert_eq!(
        rw("gateway-conformance-infra/rewrite-path/2"),
        Filter::Rewrite(Rewrite {
            hostname: None,
            path: Some(PathRewrite::Full("/one".into()))
        })
    );
    assert_eq!(
        route(&m, "gateway-conformance-infra/rewrite-path/4")
            .filters
            .len(),
        2
    );

    let m = model("httproute-rewrite-host.yaml");
    let r = route(&m, "gateway-conformance-infra/rewrite-host/1");
    assert_eq!(r.hosts, [HostMatch::Exact("rewrite.example".into())]);
    assert_eq!(
        r.filters,
        [Filter::Rewrite(Rewrite {
            hostname: Some("example.org".into()),
            path: None
        })]
    );
}

/// A Service port's `appProtocol` decides what weir speaks to its endpoints:
/// `kubernetes.io/h2c` (and `grpc`, `h2c`, `http2`) HTTP/2 with prior knowledge,
/// `kubernetes.io/ws` and no appProtocol HTTP/1.1; a value weir does not know is
/// HTTP/1.1 with a warning.
#[test]
fn app_protocol_picks_the_upstream_protocol() {
    let m = model("httproute-backend-protocol-h2c.yaml");
    let svc = &m.services["gateway-conformance-infra/infra-backend-v1:8081"];
    assert_eq!(svc.protocol, UpstreamProtocol::H2c);
    assert!(!svc.endpoints.is_empty());
    let m = model("httproute-simple-same-namespace.yaml");
    let svc = &m.services["gateway-conformance-infra/infra-backend-v1:8080"];
    assert_eq!(svc.protocol, UpstreamProtocol::Http1);

    for (ap, want) in [
        ("kubernetes.io/h2c", Some(UpstreamProtocol::H2c)),
        ("grpc", Some(UpstreamProtocol::H2c)),
        ("h2c", Some(UpstreamProtocol::H2c)),
        ("http2", Some(UpstreamProtocol::H2c)),
        ("kubernetes.io/ws", Some(UpstreamProtocol::Http1)),
        ("http", Some(UpstreamProtocol::Http1)),
        ("https", None),
    ] {
        assert_eq!(UpstreamProtocol::from_app_protocol(ap), want, "{ap}");
    }

    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: weir
  listeners: [{name: http, protocol: HTTP, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: s, port: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: s}
spec:
  ports: [{port: 80, appProtocol: example.com/thrift}]
"#;
    let m = weir_config::load_str(std::path::Path::new("/cfg/k.yaml"), yaml).unwrap();
    assert_eq!(m.services["default/s:80"].protocol, UpstreamProtocol::Http1);
    let warned: Vec<String> = m
        .notices
        .iter()
        .map(|n| n.to_string())
        .filter(|n| n.contains("appProtocol"))
        .collect();
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains("example.com/thrift is not one weir knows"),
        "{warned:?}"
    );
}
