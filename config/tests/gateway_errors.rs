//! Errors in Gateway API and Kubernetes objects: each at its file, line and field, every
//! one at once.

#[allow(dead_code)]
mod gateway_support;

use gateway_support::*;

#[test]
fn errors_in_an_httproute_name_their_line_and_field() {
    let route = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bad}
spec:
  parentRefs: [{name: gw, port: 0}]
  hostnames: ["Example.com", "10.0.0.1"]
  rules:
    - matches:
        - path: {type: RegularExpression, value: "(unclosed"}
        - path: {type: PathPrefix, value: "no-slash"}
        - headers: [{name: "bad header", value: x}]
        - queryParams: [{type: RegularExpression, name: q, value: "["}]
        - method: FETCH
      filters:
        - type: RequestRedirect
          requestRedirect: {statusCode: 304, scheme: ftp}
        - type: Rewrite
      backendRefs:
        - {name: app, port: 80, weight: -1}
        - {port: 80}
      timeouts: {request: 1d, backendRequest: 10s}
    - name: Not_A_Name
      backendRefs: [{name: app, port: 70000}]
    - matches: [{path: {type: Exact, value: /x}}]
      filters:
        - type: URLRewrite
          urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /y}}
        - type: RequestMirror
          requestMirror: {backendRef: {name: app, port: 80}, percent: 20, fraction: {numerator: 1}}
        - type: RequestHeaderModifier
          requestHeaderModifier: {set: [{name: a, value: "1"}, {name: A, value: "2"}]}
        - type: CORS
          urlRewrite: {hostname: x.example}
      timeouts: {request: 1s, backendRequest: 2s}
"#;
    let i = issues(&with(route));
    at(&i, line(5), "spec.parentRefs[0].port", "is not a port");
    at(&i, line(6), "spec.hostnames[0]", "is not a hostname");
    at(&i, line(6), "spec.hostnames[1]", "is an IP address");
    at(
        &i,
        line(9),
        "spec.rules[0].matches[0].path.value",
        "not a regular expression",
    );
    at(
        &i,
        line(10),
        "spec.rules[0].matches[1].path.value",
        "must start with '/'",
    );
    at(
        &i,
        line(11),
        "spec.rules[0].matches[2].headers[0].name",
        "is not a header name",
    );
    at(
        &i,
        line(12),
        "spec.rules[0].matches[3].queryParams[0].value",
        "not a regular expression",
    );
    at(
        &i,
        line(13),
        "spec.rules[0].matches[4].method",
        "is not a method",
    );
    at(
        &i,
        line(16),
        "spec.rules[0].filters[0].requestRedirect.statusCode",
        "304 is not a redirect status",
    );
    at(
        &i,
        line(16),
        "spec.rules[0].filters[0].requestRedirect.scheme",
        "\"ftp\" is not a scheme",
    );
    at(
        &i,
        line(17),
        "spec.rules[0].filters[1].type",
        "\"Rewrite\" is not a filter type",
    );
    at(
        &i,
        line(19),
        "spec.rules[0].backendRefs[0].weight",
        "-1 is not a weight",
    );
    at(&i, line(20), "spec.rules[0].backendRefs[1]", "needs a name");
    at(
        &i,
        line(21),
        "spec.rules[0].timeouts.request",
        "not a Gateway API duration",
    );
    at(&i, line(22), "spec.rules[1].name", "is not a rule name");
    at(
        &i,
        line(23),
        "spec.rules[1].backendRefs[0].port",
        "70000 is not a port",
    );
    at(
        &i,
        line(27),
        "spec.rules[2].filters[0].urlRewrite.path.type",
        "ReplacePrefixMatch needs",
    );
    at(
        &i,
        line(29),
        "spec.rules[2].filters[1].requestMirror",
        "percent or fraction, not both",
    );
    at(
        &i,
        line(31),
        "spec.rules[2].filters[2].requestHeaderModifier.set[1].name",
        "listed twice",
    );
    at(&i, line(32), "spec.rules[2].filters[3]", "needs cors");
    at(
        &i,
        line(34),
        "spec.rules[2].timeouts.backendRequest",
        "must not be longer than request",
    );
}

#[test]
fn errors_in_gateways_and_kubernetes_objects_name_their_line_and_field() {
    let yaml = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: g2}
spec:
  gatewayClassName: weir
  addresses: [{type: IPAddress, value: not-an-ip}]
  listeners:
    - {name: a, port: http, protocol: HTTP}
    - {name: b, port: 81, protocol: HTTP, hostname: "*.*.x"}
    - {name: b, port: 82, protocol: HTTP}
    - {name: c, port: 83, protocol: HTTPS}
    - name: d
      port: 84
      protocol: HTTP
      allowedRoutes: {namespaces: {from: Selector}}
    - name: e
      port: 85
      protocol: HTTP
      allowedRoutes: {namespaces: {from: Elsewhere}}
---
apiVersion: v1
kind: Service
metadata: {name: svc}
spec:
  type: ExternalName
  ports: [{port: 0}, {port: 80, targetPort: -3}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: s, labels: {kubernetes.io/service-name: svc}}
addressType: IPv4
endpoints: [{addresses: ["::1"]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: t}
addressType: IPv5
---
apiVersion: v1
kind: Secret
metadata: {name: cert}
type: kubernetes.io/tls
data: {tls.crt: aGVsbG8=}
---
apiVersion: gateway.networking.k8s.io/v2
kind: HTTPRoute
metadata: {name: future}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: typed}
spec:
  hostnames: example.com
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: Gateway
metadata: {name: classless}
spec:
  listeners: []
"#;
    let i = issues(&with(yaml));
    at(
        &i,
        line(6),
        "spec.addresses[0].value",
        "is not an IP address",
    );
    at(
        &i,
        line(8),
        "spec.listeners[0].port",
        "\"http\" is not a port",
    );
    at(
        &i,
        line(9),
        "spec.listeners[1].hostname",
        "is not a hostname",
    );
    at(&i, line(10), "spec.listeners[2].name", "is used twice");
    at(
        &i,
        line(11),
        "spec.listeners[3].tls",
        "needs tls.certificateRefs",
    );
    at(
        &i,
        line(15),
        "spec.listeners[4].allowedRoutes.namespaces",
        "needs a selector",
    );
    at(
        &i,
        line(19),
        "spec.listeners[5].allowedRoutes.namespaces.from",
        "is not a choice",
    );
    at(&i, line(24), "spec.externalName", "needs externalName");
    at(&i, line(26), "spec.ports[0].port", "0 is not a port");
    at(&i, line(26), "spec.ports[1].targetPort", "-3 is not a port");
    at(
        &i,
        line(32),
        "endpoints[0].addresses[0]",
        "is not an IPv4 address",
    );
    at(&i, line(37), "addressType", "is not an address type");
    at(&i, line(43), "data", "tls.key");
    at(
        &i,
        line(45),
        "apiVersion",
        "not a version weir knows for HTTPRoute",
    );
    at(&i, line(53), "spec.hostnames", "invalid type");
    at(
        &i,
        line(58),
        "spec.gatewayClassName",
        "needs a gatewayClassName",
    );
}

#[test]
fn a_bad_certificate_in_a_secret_is_an_error_at_the_secret() {
    let yaml = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: secure}
spec:
  gatewayClassName: weir
  listeners:
    - name: https
      port: 8443
      protocol: HTTPS
      tls: {certificateRefs: [{name: cert}]}
---
apiVersion: v1
kind: Secret
metadata: {name: cert}
type: kubernetes.io/tls
data:
  tls.crt: aGVsbG8=
  tls.key: aGVsbG8=
"#;
    let i = issues(&with(yaml));
    at(
        &i,
        line(17),
        "data[\"tls.crt\"]",
        "Secret default/cert: tls.crt holds no PEM certificate",
    );
}
