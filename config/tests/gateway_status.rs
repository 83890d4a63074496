//! The Gateway API conformance suite's own manifests loaded into the model (see
//! `gateway.rs`): weights, mirrors, CORS, timeouts, hostnames, certificates, and the
//! statuses of routes that do not resolve or do not attach.

#[allow(dead_code)]
mod gateway_support;

use std::time::Duration;

use gateway_support::*;
use weir_config::model::gateway::reason;
use weir_config::model::*;

#[test]
fn weights_mirrors_cors_and_timeouts() {
    let m = model("httproute-weight.yaml");
    assert_eq!(
        route(&m, "gateway-conformance-infra/weighted-backends/0").target,
        split(&[(V1, 70), (V2, 30), (V3, 0)])
    );
    let m = model("httproute-all-backends-weight-zero.yaml");
    assert!(matches!(
        route(&m, "gateway-conformance-infra/all-backends-weight-zero/0").target,
        RouteTarget::Respond { status: 500, .. }
    ));

    let m = model("httproute-request-mirror.yaml");
    let mirror = |share| {
        Filter::Mirror(Mirror {
            service: V2.into(),
            share,
        })
    };
    assert_eq!(
        route(&m, "gateway-conformance-infra/request-mirror/0").filters,
        [mirror(Weight::FULL)]
    );
    let m = model("httproute-request-percentage-mirror.yaml");
    let shares: Vec<Filter> = routes(&m, "request-percentage-mirror")
        .iter()
        .map(|r| r.filters.last().unwrap().clone())
        .collect();
    let bp = Weight::from_basis_points;
    assert_eq!(
        shares,
        [mirror(bp(2000)), mirror(bp(5000)), mirror(bp(3500))]
    );
    let m = model("httproute-request-multiple-mirrors.yaml");
    let r = &routes(&m, "request-multiple-mirrors")[0];
    assert!(
        r.filters
            .iter()
            .filter(|f| matches!(f, Filter::Mirror(_)))
            .count()
            >= 2,
        "{:?}",
        r.filters
    );

    let m = model("httproute-cors.yaml");
    let c = route(
        &m,
        "gateway-conformance-infra/cors-multiple-origins-methods-headers/0",
    );
    let want = Cors {
        allow_origins: vec!["https://www.foo.com".into(), "https://*.bar.com".into()],
        allow_credentials: true,
        allow_methods: vec!["GET".into(), "OPTIONS".into()],
        allow_headers: vec!["x-header-1".into(), "x-header-2".into()],
        expose_headers: vec!["x-header-3".into(), "x-header-4".into()],
        max_age: 3600,
    };
    assert_eq!(c.filters, [Filter::Cors(want)]);
    let c = route(&m, "gateway-conformance-infra/cors-wildcard-methods/0");
    assert!(matches!(
        &c.filters[..],
        [Filter::Cors(Cors {
            max_age: 5,
            allow_credentials: false,
            ..
        })]
    ));

    let m = model("httproute-timeout-request.yaml");
    assert_eq!(
        route(&m, "gateway-conformance-infra/request-timeout/0")
            .timeouts
            .request,
        Some(Duration::from_millis(500))
    );
    assert_eq!(
        route(&m, "gateway-conformance-infra/request-timeout/1")
            .timeouts
            .request,
        Some(Duration::ZERO)
    );
    let m = model("httproute-timeout-backend-request.yaml");
    let t = route(&m, "gateway-conformance-infra/backend-request-timeout/0").timeouts;
    assert_eq!(
        (t.request, t.backend_request),
        (None, Some(Duration::from_millis(500)))
    );
}

#[test]
fn hostnames_intersect_with_listener_hostnames() {
    let m = model("httproute-hostname-intersection.yaml");
    let hosts = |n: &str| route(&m, &format!("{INFRA}/{n}/0")).hosts.clone();
    let exact = |h: &str| HostMatch::Exact(h.into());
    assert_eq!(
        hosts("specific-host-matches-listener-specific-host"),
        [exact("very.specific.com")]
    );
    assert_eq!(
        hosts("specific-host-matches-listener-wildcard-host"),
        [
            exact("foo.wildcard.io"),
            exact("bar.wildcard.io"),
            exact("foo.bar.wildcard.io")
        ]
    );
    assert_eq!(
        hosts("wildcard-host-matches-listener-specific-host"),
        [exact("very.specific.com")]
    );
    assert_eq!(
        hosts("wildcard-host-matches-listener-wildcard-host"),
        [HostMatch::Suffix(".anotherwildcard.io".into())]
    );
    assert!(
        routes(&m, "no-intersecting-hosts").is_empty(),
        "not attached, never half-applied"
    );
    assert_eq!(
        parent(&m, "no-intersecting-hosts"),
        [("Accepted", false, reason::NO_MATCHING_LISTENER_HOSTNAME)]
    );
    assert!(
        m.notices
            .iter()
            .any(|n| n.warning && n.message.contains("no-intersecting-hosts is not attached"))
    );
    let gw = status(&m, StatusKind::Gateway, "httproute-hostname-intersection");
    let attached: Vec<Option<u32>> = gw.sections.iter().map(|s| s.attached_routes).collect();
    assert_eq!(attached, [Some(2), Some(1), Some(1)]);

    let m = model("httproute-listener-hostname-matching.yaml");
    let hosts = |n: &str| route(&m, &format!("{INFRA}/{n}/0")).hosts.clone();
    assert_eq!(hosts("backend-v1"), [HostMatch::Exact("bar.com".into())]);
    assert_eq!(
        hosts("backend-v2"),
        [HostMatch::Exact("foo.bar.com".into())]
    );
    assert_eq!(
        hosts("backend-v3"),
        [
            HostMatch::Suffix(".bar.com".into()),
            HostMatch::Suffix(".foo.com".into())
        ]
    );
    assert_eq!(
        status(&m, StatusKind::HttpRoute, "backend-v3")
            .sections
            .len(),
        2
    );
}

#[test]
fn https_listeners_serve_their_secrets_by_hostname() {
    let m = model("httproute-https-listener.yaml");
    let l = m
        .proxy
        .listeners
        .iter()
        .find(|l| l.name == "gateway:0.0.0.0:443")
        .unwrap();
    let tls = l.tls.as_ref().expect("certificates from the Secret");
    let served: Vec<&ServedFor> = tls.certificates.iter().map(|c| &c.served_for).collect();
    assert_eq!(
        served,
        [
            &ServedFor::AnyHost,
            &ServedFor::Host(HostMatch::Exact("second-example.org".into()))
        ]
    );
    let secret = CertificateSource::Secret {
        namespace: INFRA.into(),
        name: "tls-validity-checks-certificate".into(),
    };
    assert!(tls.certificates.iter().all(|c| c.source == secret));
    assert_eq!(
        route(&m, "gateway-conformance-infra/httproute-https-test/0").hosts,
        [HostMatch::Exact("example.org".into())]
    );
    assert_eq!(
        route(
            &m,
            "gateway-conformance-infra/httproute-https-test-no-hostname/0"
        )
        .hosts,
        [HostMatch::Exact("second-example.org".into())]
    );
}

#[test]
fn invalid_backends_answer_500_with_their_reason() {
    let cases = [
        (
            "httproute-invalid-backendref-unknown-kind.yaml",
            "invalid-cross-namespace-backend-ref",
            reason::INVALID_KIND,
        ),
        (
            "httproute-invalid-cross-namespace-backend-ref.yaml",
            "invalid-cross-namespace-backend-ref",
            reason::REF_NOT_PERMITTED,
        ),
        (
            "httproute-invalid-nonexistent-backendref.yaml",
            "invalid-nonexistent-backend-ref",
            reason::BACKEND_NOT_FOUND,
        ),
    ];
    for (file, name, why) in cases {
        let m = model(file);
        assert!(
            matches!(
                route(&m, &format!("{INFRA}/{name}/0")).target,
                RouteTarget::Respond { status: 500, .. }
            ),
            "{file}"
        );
        assert_eq!(
            parent(&m, name),
            [
                ("Accepted", true, reason::ACCEPTED),
                ("ResolvedRefs", false, why)
            ],
            "{file}"
        );
    }
    for file in [
        "httproute-invalid-reference-grant.yaml",
        "httproute-partially-invalid-via-invalid-reference-grant.yaml",
    ] {
        let m = model(file);
        let r = routes(&m, "invalid-reference-grant");
        assert!(
            matches!(r[0].target, RouteTarget::Respond { status: 500, .. }),
            "{file}"
        );
        assert_eq!(
            r[1].target,
            split(&[("gateway-conformance-app-backend/app-backend-v1:8080", 1)]),
            "{file}"
        );
    }
    let m = model("httproute-reference-grant.yaml");
    assert_eq!(
        route(&m, "gateway-conformance-infra/reference-grant/0").target,
        split(&[("gateway-conformance-web-backend/web-backend:8080", 1)])
    );
}

#[test]
fn routes_that_cannot_attach_are_reported_and_not_served() {
    let cases = [
        (
            "httproute-invalid-cross-namespace-parent-ref.yaml",
            "invalid-cross-namespace-parent-ref",
            reason::NOT_ALLOWED_BY_LISTENERS,
        ),
        (
            "httproute-invalid-parentref-not-matching-listener-port.yaml",
            "httproute-listener-not-matching-route-port",
            reason::NO_MATCHING_PARENT,
        ),
        (
            "httproute-invalid-parentref-not-matching-section-name.yaml",
            "httproute-listener-not-matching-route-port",
            reason::NO_MATCHING_PARENT,
        ),
        (
            "httproute-disallowed-kind.yaml",
            "disallowed-kind",
            reason::NOT_ALLOWED_BY_LISTENERS,
        ),
    ];
    for (file, name, why) in cases {
        let m = model(file);
        assert!(m.proxy.routes.is_empty(), "{file}: {:?}", names(&m));
        assert_eq!(parent(&m, name), [("Accepted", false, why)], "{file}");
    }
    let m = model("httproute-disallowed-kind.yaml");
    let tls = status(&m, StatusKind::Gateway, "tlsroutes-only")
        .section("tls")
        .unwrap();
    assert_eq!(
        tls.condition("Accepted").unwrap().reason,
        reason::UNSUPPORTED_PROTOCOL
    );
    assert_eq!(
        tls.condition("ResolvedRefs").unwrap().reason,
        reason::INVALID_ROUTE_KINDS
    );
    assert!(!tls.condition("Programmed").unwrap().status);

    // From another namespace, through a listener that selects namespaces by label.
    let m = model("httproute-cross-namespace.yaml");
    let r = route(&m, "gateway-conformance-web-backend/cross-namespace/0");
    assert_eq!(
        r.target,
        split(&[("gateway-conformance-web-backend/web-backend:8080", 1)])
    );
}
