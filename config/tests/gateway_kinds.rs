//! Gateway API and Kubernetes kinds written for weir: a Rollout split through an
//! HTTPRoute; Gateways beside a Proxy; Kubernetes Service ports and EndpointSlices;
//! certificates from Secrets; namespace selectors; listener isolation.

#[allow(dead_code)]
mod gateway_support;

use gateway_support::*;
use weir_config::model::gateway::reason;
use weir_config::model::{HostMatch, RouteTarget, ServedFor, StatusKind};

const SHOP: &str = r#"apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {name: shop}
spec:
  endpoints:
    - {address: "127.0.0.1:9001", image: "shop:v1"}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: shop}
spec:
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec: {containers: [{name: shop, image: "shop:v1"}]}
  strategy:
    canary:
      stableService: shop-stable
      canaryService: shop-canary
      trafficRouting:
        plugins:
          argoproj-labs/gatewayAPI:
            httpRoute: shop-route
            namespace: default
          example/other: {}
      steps: [{setWeight: 10}]
"#;

#[test]
fn a_rollout_splits_the_rules_of_the_httproute_its_plugin_names() {
    let route = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop-route}
spec:
  parentRefs: [{name: gw}]
  rules:
    - backendRefs:
        - {name: shop-stable, port: 80, weight: 100}
        - {name: shop-canary, port: 80, weight: 0}
    - matches: [{path: {value: /static}}]
      backendRefs: [{name: app, port: 80}]
"#;
    let m = ok(&with(&format!("{SHOP}---\n{route}")));
    let target = |n: &str| {
        m.proxy
            .routes
            .iter()
            .find(|r| r.name == n)
            .unwrap()
            .target
            .clone()
    };
    assert_eq!(
        target("default/shop-route/0"),
        RouteTarget::Rollout("shop".into())
    );
    assert!(
        matches!(target("default/shop-route/1"), RouteTarget::Split(ref l) if l[0].service == "default/app:80")
    );
    let notices: Vec<&str> = m.notices.iter().map(|n| n.message.as_str()).collect();
    assert!(
        notices
            .iter()
            .any(|n| n.contains("trafficRouting.plugins.example/other is not needed")),
        "{notices:?}"
    );
    assert!(
        !notices
            .iter()
            .any(|n| n.contains("gatewayAPI is not needed")),
        "{notices:?}"
    );

    // The route must exist.
    let i = issues(&with(SHOP));
    let field =
        "spec.strategy.canary.trafficRouting.plugins[\"argoproj-labs/gatewayAPI\"].httpRoute";
    at(
        &i,
        line(23),
        field,
        "HTTPRoute default/shop-route is not in the configuration",
    );
}

#[test]
fn gateways_join_the_proxy_listeners_and_follow_its_routes() {
    let key = rcgen::generate_simple_self_signed(vec!["secure.example".to_owned()]).unwrap();
    let yaml = format!(
        r#"apiVersion: weir.dev/v1alpha1
kind: Proxy
metadata: {{name: edge}}
spec:
  gatewayClassNames: [company]
  gatewayAddress: 127.0.0.1
  listeners:
    - {{name: web, address: "127.0.0.1:8080"}}
  routes:
    - {{name: own, backends: [{{service: legacy}}]}}
---
apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {{name: legacy}}
spec: {{endpoints: ["127.0.0.1:9100"]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: custom}}
spec: {{controllerName: weir.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: listed}}
spec:
  gatewayClassName: company
  listeners: [{{name: http, port: 9090, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: pinned}}
spec:
  gatewayClassName: custom
  addresses: [{{type: IPAddress, value: 127.0.0.2}}]
  listeners: [{{name: http, port: 8080, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: foreign}}
spec:
  gatewayClassName: istio
  listeners: [{{name: http, port: 7070, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: clash}}
spec:
  gatewayClassName: weir
  listeners:
    - {{name: https, port: 8080, protocol: HTTPS, tls: {{certificateRefs: [{{name: cert}}]}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: cert}}
type: kubernetes.io/tls
stringData:
  tls.crt: "{}"
  tls.key: "{}"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r}}
spec:
  parentRefs: [{{name: gw}}, {{name: foreign}}]
  rules: [{{backendRefs: [{{name: legacy}}]}}]
"#,
        key.cert.pem().replace('\n', "\\n"),
        key.signing_key.serialize_pem().replace('\n', "\\n")
    );
    let m = ok(&with(&yaml));
    let listeners: Vec<(&str, String)> = m
        .proxy
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.address.to_string()))
        .collect();
    assert_eq!(
        listeners,
        [
            ("web", "127.0.0.1:8080".to_owned()),
            ("gateway:127.0.0.1:9090", "127.0.0.1:9090".to_owned()),
            ("gateway:127.0.0.2:8080", "127.0.0.2:8080".to_owned()),
        ]
    );
    assert_eq!(m.proxy.gateway_class_names, ["company"]);
    let names: Vec<&str> = m.proxy.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["own", "default/r/0"]);
    let r = &m.proxy.routes[1];
    assert_eq!(
        r.listeners,
        ["web"],
        "the Gateway shares the Proxy's listener on its address"
    );
    assert!(matches!(&r.target, RouteTarget::Split(l) if l[0].service == "legacy"));
    // The foreign Gateway is skipped, and not reported as weir's.
    assert!(m.gateway_status.iter().all(|s| s.name != "foreign"));
    assert!(
        m.notices
            .iter()
            .any(|n| n.message.contains("class \"istio\" is not weir's"))
    );
    assert_eq!(
        m.gateway_status
            .iter()
            .find(|s| s.name == "r")
            .unwrap()
            .sections
            .len(),
        1
    );
    let class = m
        .gateway_status
        .iter()
        .find(|s| s.kind == StatusKind::GatewayClass)
        .unwrap();
    assert_eq!(
        (class.name.as_str(), class.conditions[0].status),
        ("custom", true)
    );
    let clash = m.gateway_status.iter().find(|s| s.name == "clash").unwrap();
    let c = clash.sections[0].condition("Conflicted").unwrap();
    assert_eq!((c.status, c.reason), (true, reason::PROTOCOL_CONFLICT));
    assert!(!clash.sections[0].condition("Programmed").unwrap().status);
}

#[test]
fn service_ports_are_matched_as_kubernetes_matches_them() {
    let yaml = r#"apiVersion: v1
kind: Service
metadata: {name: multi}
spec:
  ports:
    - {name: http, port: 80, targetPort: 8080}
    - {name: admin, port: 81, targetPort: admin}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: multi-a, labels: {kubernetes.io/service-name: multi}}
addressType: IPv4
ports: [{name: http, port: 7001}, {name: admin, port: 7002}]
endpoints:
  - {addresses: [10.0.0.1], conditions: {ready: true}}
  - {addresses: [10.0.0.2], conditions: {ready: false}}
  - {addresses: [10.0.0.3]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: multi-b, labels: {kubernetes.io/service-name: multi}}
addressType: IPv6
ports: [{name: http, port: 7001}]
endpoints: [{addresses: ["::1"]}]
---
apiVersion: v1
kind: Service
metadata: {name: plain}
spec: {ports: [{port: 80, targetPort: 8081}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: plain-a, labels: {kubernetes.io/service-name: plain}}
addressType: IPv4
endpoints: [{addresses: [10.0.0.9]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
  rules:
    - backendRefs: [{name: multi, port: 80}]
    - backendRefs: [{name: multi, port: 81}]
    - backendRefs: [{name: plain, port: 80}]
    - backendRefs: [{name: multi, port: 82}]
"#;
    let m = ok(&with(yaml));
    let eps = |k: &str| -> Vec<String> {
        m.services[k]
            .endpoints
            .iter()
            .map(|e| e.address.to_string())
            .collect()
    };
    assert_eq!(
        eps("default/multi:80"),
        ["10.0.0.1:7001", "10.0.0.3:7001", "[::1]:7001"]
    );
    assert_eq!(eps("default/multi:81"), ["10.0.0.1:7002", "10.0.0.3:7002"]);
    assert_eq!(
        eps("default/plain:80"),
        ["10.0.0.9:8081"],
        "a slice without ports: the targetPort"
    );
    let last = m
        .proxy
        .routes
        .iter()
        .find(|r| r.name == "default/r/3")
        .unwrap();
    assert!(matches!(
        last.target,
        RouteTarget::Respond { status: 500, .. }
    ));
    let s = m.gateway_status.iter().find(|s| s.name == "r").unwrap();
    let rr = s.sections[0].condition("ResolvedRefs").unwrap();
    assert_eq!((rr.status, rr.reason), (false, reason::BACKEND_NOT_FOUND));
    assert!(
        rr.message.contains("has no port 82: its ports are 80, 81"),
        "{}",
        rr.message
    );
}

#[test]
fn a_route_with_a_filter_weir_lacks_is_not_served() {
    let route = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ext}
spec:
  parentRefs: [{name: gw}]
  rules:
    - filters: [{type: ExtensionRef, extensionRef: {group: example.com, kind: Auth, name: a}}]
      backendRefs: [{name: app, port: 80}]
"#;
    let m = ok(&with(route));
    assert!(m.proxy.routes.is_empty());
    let s = m.gateway_status.iter().find(|s| s.name == "ext").unwrap();
    let a = s.sections[0].condition("Accepted").unwrap();
    assert_eq!((a.status, a.reason), (false, reason::UNSUPPORTED_VALUE));
    assert!(
        m.notices
            .iter()
            .any(|n| n.warning && n.message.contains("does not implement ExtensionRef"))
    );
}

#[test]
fn listeners_select_namespaces_by_label() {
    let mut yaml = String::from(
        r#"apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {team: a}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shared, namespace: infra}
spec:
  gatewayClassName: weir
  listeners:
    - name: teams
      port: 9000
      protocol: HTTP
      allowedRoutes:
        namespaces:
          from: Selector
          selector: {matchExpressions: [{key: team, operator: In, values: [a, b]}]}
    - name: c-only
      port: 9001
      protocol: HTTP
      allowedRoutes:
        namespaces: {from: Selector, selector: {matchLabels: {kubernetes.io/metadata.name: team-c}}}
"#,
    );
    for ns in ["team-a", "team-b", "team-c"] {
        yaml.push_str(&format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: {ns}}}\nspec:\n  parentRefs: [{{name: shared, namespace: infra}}]\n"
        ));
    }
    let m = ok(&with(&yaml));
    let attached = |ns: &str| -> Vec<String> {
        m.proxy
            .routes
            .iter()
            .filter(|r| r.name.starts_with(&format!("{ns}/")))
            .flat_map(|r| r.listeners.clone())
            .collect()
    };
    assert_eq!(attached("team-a"), ["gateway:0.0.0.0:9000"]);
    assert_eq!(attached("team-c"), ["gateway:0.0.0.0:9001"]);
    assert!(attached("team-b").is_empty());
    let b = m
        .gateway_status
        .iter()
        .find(|s| s.namespace == "team-b")
        .unwrap();
    assert_eq!(
        b.sections[0].conditions[0].reason,
        reason::NOT_ALLOWED_BY_LISTENERS
    );
}

#[test]
fn a_more_specific_listener_keeps_its_hostnames() {
    let yaml = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: iso}
spec:
  gatewayClassName: weir
  listeners:
    - {name: any, port: 9000, protocol: HTTP}
    - {name: wild, port: 9000, protocol: HTTP, hostname: "*.example.com"}
    - {name: abc, port: 9000, protocol: HTTP, hostname: abc.example.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: on-any}
spec:
  parentRefs: [{name: iso, sectionName: any}]
  hostnames: [bar.com, x.example.com, "*.example.com", abc.example.com]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: on-wild}
spec:
  parentRefs: [{name: iso, sectionName: wild}]
  hostnames: [abc.example.com, y.example.com]
"#;
    let m = ok(&with(yaml));
    let hosts = |n: &str| {
        m.proxy
            .routes
            .iter()
            .find(|r| r.name == n)
            .unwrap()
            .hosts
            .clone()
    };
    assert_eq!(
        hosts("default/on-any/0"),
        [HostMatch::Exact("bar.com".into())]
    );
    assert_eq!(
        hosts("default/on-wild/0"),
        [HostMatch::Exact("y.example.com".into())]
    );
}

#[test]
fn a_secret_in_another_namespace_needs_a_reference_grant() {
    let key = rcgen::generate_simple_self_signed(vec!["secure.example".to_owned()]).unwrap();
    let gateway = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: secure, namespace: edge}}
spec:
  gatewayClassName: weir
  listeners:
    - name: https
      port: 8443
      protocol: HTTPS
      hostname: "*.secure.example"
      tls: {{certificateRefs: [{{name: cert, namespace: certs}}]}}
---
apiVersion: v1
kind: Secret
metadata: {{name: cert, namespace: certs}}
type: kubernetes.io/tls
stringData:
  tls.crt: "{}"
  tls.key: "{}"
"#,
        key.cert.pem().replace('\n', "\\n"),
        key.signing_key.serialize_pem().replace('\n', "\\n")
    );
    let m = ok(&gateway);
    assert!(m.proxy.listeners.is_empty());
    let l = &m.gateway_status[0].sections[0];
    assert_eq!(
        l.condition("ResolvedRefs").unwrap().reason,
        reason::REF_NOT_PERMITTED
    );
    assert!(!l.condition("Programmed").unwrap().status);

    let grant = "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: certs}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: edge}]\n  to: [{group: \"\", kind: Secret}]\n";
    let m = ok(&format!("{gateway}{grant}"));
    let tls = m.proxy.listeners[0].tls.as_ref().unwrap();
    assert_eq!(
        tls.certificates[0].served_for,
        ServedFor::Host(HostMatch::Suffix(".secure.example".into()))
    );
}

/// A Gateway's `Hostname` address: its listeners bind what the name resolves to, when no
/// `IPAddress` is given; a name that is not one is an error at its field.
#[test]
fn a_hostname_address_binds_what_it_resolves_to() {
    let gw = |addresses: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  gatewayClassName: weir\n  addresses: {addresses}\n  listeners:\n    - {{name: http, port: 8080, protocol: HTTP}}\n"
        )
    };
    let m = ok(&gw("[{type: Hostname, value: localhost}]"));
    let l: Vec<_> = m
        .proxy
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.address))
        .collect();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].0, "gateway:localhost:8080");
    assert!(l[0].1.ip().is_loopback() && l[0].1.port() == 8080, "{l:?}");
    // An IPAddress, wherever it is, wins.
    let m = ok(&gw(
        "[{type: Hostname, value: localhost}, {type: IPAddress, value: 127.0.0.2}]",
    ));
    assert_eq!(
        m.proxy.listeners[0].address,
        "127.0.0.2:8080".parse().unwrap()
    );
    let got = issues(&gw("[{type: Hostname, value: \"*.example.com\"}]"));
    at(&got, 6, "spec.addresses[0].value", "is not a host name");
}

/// The legacy `v1` `Endpoints`: read for a Service without EndpointSlices (ready
/// addresses only, ports by name), ignored with a notice where the Service has some, and
/// checked at its fields.
#[test]
fn legacy_endpoints_stand_in_for_endpoint_slices() {
    let yaml = r#"apiVersion: v1
kind: Service
metadata: {name: old}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: old}
subsets:
  - addresses: [{ip: 10.0.0.1}, {ip: "::1", hostname: pod-b}]
    notReadyAddresses: [{ip: 10.0.0.2}]
    ports: [{name: http, port: 9001}, {name: other, port: 9002}]
  - addresses: [{ip: 10.0.0.3}]
    ports: [{name: other, port: 9002}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: app}
subsets:
  - addresses: [{ip: 10.9.9.9}]
    ports: [{name: web, port: 9999}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
  rules:
    - backendRefs: [{name: old, port: 80}]
    - backendRefs: [{name: app, port: 80}]
"#;
    let m = ok(&with(yaml));
    let eps = |k: &str| -> Vec<String> {
        m.services[k]
            .endpoints
            .iter()
            .map(|e| e.address.to_string())
            .collect()
    };
    assert_eq!(eps("default/old:80"), ["10.0.0.1:9001", "[::1]:9001"]);
    // Service app has an EndpointSlice: its Endpoints is not read.
    assert_eq!(eps("default/app:80"), ["127.0.0.1:9001"]);
    assert!(m.notices.iter().any(|n| {
        n.message
            .contains("has EndpointSlices: they are used, and this Endpoints is not")
    }));

    let bad = "apiVersion: v1\nkind: Endpoints\nmetadata: {name: bad}\nsubsets:\n  - addresses: [{ip: 10.0.0.1}, {ip: nowhere}]\n    ports: [{port: 70000}]\n";
    let got = issues(&with(bad));
    at(
        &got,
        line(5),
        "subsets[0].addresses[1].ip",
        "\"nowhere\" is not an IP address",
    );
    at(&got, line(6), "subsets[0].ports[0].port", "is not a port");
}
