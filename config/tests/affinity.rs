//! `sessionAffinity` on weir's routes and `sessionPersistence` on HTTPRoute rules: what they
//! become, and their errors at file, line and field.

#[allow(dead_code)]
mod gateway_support;

use std::time::Duration;

use gateway_support::*;
use weir_config::model::Affinity;

fn proxy(affinity: &str) -> String {
    format!(
        "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {{name: edge}}\nspec:\n  listeners: [{{name: web, address: \"127.0.0.1:8080\"}}]\n  routes:\n    - name: r\n      backends: [{{service: s}}]\n      sessionAffinity: {affinity}\n---\napiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {{name: s}}\nspec: {{endpoints: [\"127.0.0.1:9\"]}}\n"
    )
}

#[test]
fn session_affinity_on_weir_routes() {
    let a = |y: &str| ok(&proxy(y)).proxy.routes[0].affinity.clone();
    assert_eq!(
        a("{cookieName: flagger-cookie, maxAge: 21600}"),
        Some(Affinity::Cookie {
            name: "flagger-cookie".into(),
            max_age: Duration::from_secs(21600)
        })
    );
    assert_eq!(
        a("{cookieName: c, maxAge: 90m}"),
        Some(Affinity::Cookie {
            name: "c".into(),
            max_age: Duration::from_secs(5400)
        })
    );
    assert_eq!(
        a("{cookieName: c}"),
        Some(Affinity::Cookie {
            name: "c".into(),
            max_age: Duration::from_secs(6 * 3600)
        })
    );
    assert_eq!(
        a("{header: X-User-Id}"),
        Some(Affinity::Header("x-user-id".into()))
    );
    let got = issues(&proxy("{cookieName: c, header: h}"));
    at(
        &got,
        9,
        "spec.routes[0].sessionAffinity",
        "exactly one of cookieName",
    );
    let got = issues(&proxy("{cookieName: \"a b\"}"));
    at(
        &got,
        9,
        "spec.routes[0].sessionAffinity.cookieName",
        "is not a cookie name",
    );
    let got = issues(&proxy("{cookieName: c, maxAge: soon}"));
    at(&got, 9, "spec.routes[0].sessionAffinity.maxAge", "");
    let got = issues(&proxy("{header: h, maxAge: 10}"));
    at(
        &got,
        9,
        "spec.routes[0].sessionAffinity.maxAge",
        "maxAge goes with cookieName",
    );
}

#[test]
fn session_persistence_on_httproute_rules() {
    let route = |sp: &str| {
        with(&format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules:\n    - backendRefs: [{{name: app, port: 80}}]\n      sessionPersistence: {sp}\n"
        ))
    };
    let a = |sp: &str| ok(&route(sp)).proxy.routes[0].affinity.clone();
    assert_eq!(
        a("{sessionName: s, absoluteTimeout: 1h}"),
        Some(Affinity::Cookie {
            name: "s".into(),
            max_age: Duration::from_secs(3600)
        })
    );
    assert_eq!(
        a("{}"),
        Some(Affinity::Cookie {
            name: "weir-session".into(),
            max_age: Duration::from_secs(6 * 3600)
        })
    );
    assert_eq!(
        a("{type: Header, sessionName: X-User}"),
        Some(Affinity::Header("x-user".into()))
    );
    let got = issues(&route("{type: Header}"));
    at(
        &got,
        line(8),
        "spec.rules[0].sessionPersistence.sessionName",
        "needs sessionName",
    );
    let got = issues(&route("{type: Sticky}"));
    at(
        &got,
        line(8),
        "spec.rules[0].sessionPersistence.type",
        "\"Sticky\" is not",
    );
}

/// A weir Service's `healthCheck`: defaults, and errors at their fields.
#[test]
fn health_checks_on_weir_services() {
    let svc = |hc: &str| {
        format!(
            "apiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {{name: s}}\nspec:\n  endpoints: [\"127.0.0.1:9\"]\n  healthCheck: {hc}\n"
        )
    };
    let h = ok(&svc("{path: /healthz}")).services["s"]
        .health
        .clone()
        .unwrap();
    assert_eq!(
        (
            h.path.as_str(),
            h.interval,
            h.timeout,
            h.healthy,
            h.unhealthy
        ),
        (
            "/healthz",
            Duration::from_secs(5),
            Duration::from_secs(1),
            2,
            3
        )
    );
    let h = ok(&svc(
        "{interval: 250ms, timeout: 100ms, healthyThreshold: 1, unhealthyThreshold: 5}",
    ))
    .services["s"]
        .health
        .clone()
        .unwrap();
    assert_eq!(
        (
            h.path.as_str(),
            h.interval,
            h.timeout,
            h.healthy,
            h.unhealthy
        ),
        (
            "/",
            Duration::from_millis(250),
            Duration::from_millis(100),
            1,
            5
        )
    );
    let got = issues(&svc("{path: healthz, unhealthyThreshold: 0}"));
    at(&got, 6, "spec.healthCheck.path", "is not a path");
    let got = issues(&svc("{unhealthyThreshold: 0}"));
    at(
        &got,
        6,
        "spec.healthCheck.unhealthyThreshold",
        "from 1 to 100",
    );
}
