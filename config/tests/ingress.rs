//! Ingress and IngressClass: which Ingresses are served (class by `ingressClassName`, the
//! legacy annotation, a default IngressClass, a class whose controller is weir's, the
//! Proxy's `ingressClassNames`), errors at file, line and field, the routes made (nginx's
//! location order, regex hosts, host defaults), and the docs list every annotation.

#[allow(dead_code)]
mod gateway_support;

use gateway_support::*;
use weir_config::model::{PathMatch, RouteTarget};

/// A Service `app` (port 80 named `web`) and its EndpointSlice, then `extra`.
fn svc(extra: &str) -> String {
    let base = BASE
        .split("---\n")
        .skip(1)
        .collect::<Vec<_>>()
        .join("---\n");
    format!("{base}---\n{extra}")
}

fn ingress(name: &str, class: &str, host: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}}}\nspec:\n  {class}\n  rules:\n    - host: {host}\n      http:\n        paths:\n          - {{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{name: web}}}}}}}}\n---\n"
    )
}

fn served(m: &weir_config::Model) -> Vec<String> {
    let mut v: Vec<String> = m
        .proxy
        .routes
        .iter()
        .filter(|r| matches!(r.target, RouteTarget::Split(_)))
        .map(|r| r.name.clone())
        .collect();
    v.sort();
    v
}

#[test]
fn classes_weir_serves() {
    let yaml = svc(&format!(
        "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {{name: edge}}\nspec:\n  ingressClassNames: [nginx]\n  listeners: [{{name: web, address: \"127.0.0.1:8080\"}}]\n---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: mine}}\nspec: {{controller: weir.dev/ingress-controller}}\n---\n{}{}{}{}{}",
        ingress("a", "ingressClassName: weir", "a.test"),
        ingress("b", "ingressClassName: nginx", "b.test"),
        ingress("c", "ingressClassName: mine", "c.test"),
        ingress("d", "ingressClassName: traefik", "d.test"),
        ingress("e", "# no class", "e.test"),
    ));
    let m = ok(yaml.trim_end_matches("---\n"));
    assert_eq!(
        served(&m),
        [
            "default/a/a.test/",
            "default/b/b.test/",
            "default/c/c.test/"
        ]
    );
    let notice = |t: &str| m.notices.iter().any(|n| n.message.contains(t));
    assert!(notice("class \"traefik\", which weir does not serve"));
    assert!(notice("Ingress default/e has no class"));

    // A default IngressClass takes the Ingresses without one; the legacy annotation names
    // a class too.
    let yaml = svc(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: weir\n  annotations: {{ingressclass.kubernetes.io/is-default-class: \"true\"}}\nspec: {{controller: weir.dev/ingress-controller}}\n---\n{}apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: f\n  annotations: {{kubernetes.io/ingress.class: other}}\nspec:\n  rules:\n    - host: f.test\n      http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}]}}\n",
        ingress("e", "# no class", "e.test"),
    ));
    let m = ok(&yaml);
    assert_eq!(served(&m), ["default/e/e.test/"]);
    // Without a Proxy document: a listener of its own on :80.
    assert_eq!(m.proxy.listeners.len(), 1);
    assert_eq!(m.proxy.listeners[0].address.port(), 80);
}

#[test]
fn errors_name_file_line_and_field() {
    let yaml = svc(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bad}
spec:
  ingressClassName: weir
  rules:
    - host: Bad_Host
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}
    - host: ok.test
      http:
        paths:
          - {path: relative, pathType: Exact, backend: {service: {name: app, port: {number: 80}}}}
          - {path: /a, backend: {service: {name: app, port: {number: 80}}}}
          - {path: /b, pathType: Glob, backend: {service: {name: app, port: {number: 80}}}}
          - {path: /c, pathType: Prefix, backend: {service: {name: app, port: {number: 80, name: web}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: worse
  annotations:
    nginx.ingress.kubernetes.io/proxy-body-size: lots
    nginx.ingress.kubernetes.io/canary: maybe
    nginx.ingress.kubernetes.io/whitelist-source-range: 10.0.0.0/8, nowhere
    nginx.ingress.kubernetes.io/permanent-redirect-code: \"200\"
    nginx.ingress.kubernetes.io/permanent-redirect: https://x.test/
spec:
  ingressClassName: weir
  defaultBackend: {service: {name: app, port: {number: 80}}}
---
apiVersion: extensions/v1beta1
kind: Ingress
metadata: {name: old}
spec: {}
",
    );
    let base = BASE
        .split("---\n")
        .skip(1)
        .collect::<Vec<_>>()
        .join("---\n");
    let l = |n: u32| base.lines().count() as u32 + 1 + n;
    let got = issues(&yaml);
    at(&got, l(7), "spec.rules[0].host", "is not a hostname");
    at(
        &got,
        l(14),
        "spec.rules[1].http.paths[0].path",
        "is not an absolute path",
    );
    at(
        &got,
        l(15),
        "spec.rules[1].http.paths[1].pathType",
        "needs a pathType",
    );
    at(
        &got,
        l(16),
        "spec.rules[1].http.paths[2].pathType",
        "\"Glob\" is not a path type",
    );
    at(
        &got,
        l(17),
        "spec.rules[1].http.paths[3].backend.service.port",
        "exactly one of number and name",
    );
    let ann = |k: &str| format!("metadata.annotations[\"nginx.ingress.kubernetes.io/{k}\"]");
    at(&got, l(24), &ann("proxy-body-size"), "is not a size");
    at(&got, l(25), &ann("canary"), "is not true or false");
    at(
        &got,
        l(26),
        &ann("whitelist-source-range"),
        "\"nowhere\" is not an address range",
    );
    at(
        &got,
        l(27),
        &ann("permanent-redirect-code"),
        "is not a redirect status",
    );
    at(&got, l(33), "apiVersion", "removed in Kubernetes 1.22");
}

#[test]
fn nginx_location_order_and_regex_hosts() {
    let yaml = svc(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: plain
spec:
  ingressClassName: weir
  rules:
    - host: plain.test
      http:
        paths:
          - {path: /a/, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}
          - {path: /a/b, pathType: Exact, backend: {service: {name: app, port: {number: 80}}}}
          - {path: /c, pathType: ImplementationSpecific, backend: {service: {name: app, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: one
spec:
  ingressClassName: weir
  rules:
    - host: re.test
      http:
        paths:
          - {path: /x, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: two
  annotations: {nginx.ingress.kubernetes.io/use-regex: \"true\"}
spec:
  ingressClassName: weir
  rules:
    - host: re.test
      http:
        paths:
          - {path: \"/x/[0-9]+\", pathType: ImplementationSpecific, backend: {service: {name: app, port: {number: 80}}}}
",
    );
    let m = ok(&yaml);
    let paths = |host: &str| -> Vec<(String, String)> {
        m.proxy
            .routes
            .iter()
            .filter(|r| r.name.contains(host))
            .map(|r| {
                let p = match &r.matches[0].path {
                    PathMatch::Exact(p) => format!("= {p}"),
                    PathMatch::Segments(p) => format!("segments {p}"),
                    PathMatch::Prefix(p) => format!("prefix {p}"),
                    PathMatch::Regex(r) => format!("regex {}", r.as_str()),
                };
                (r.name.clone(), p)
            })
            .collect()
    };
    let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        paths("plain.test"),
        [
            s("default/plain/plain.test/a/", "segments /a"),
            s("default/plain/plain.test/a/b", "= /a/b"),
            s("default/plain/plain.test/c", "prefix /c"),
            s("default/plain/plain.test/no-path", "segments /"),
        ]
    );
    // One Ingress of the host asks for regular expressions: every path of the host is
    // one, longest first, whichever Ingress wrote it; the default comes last.
    assert_eq!(
        paths("re.test"),
        [
            s("default/two/re.test/x/[0-9]+", "regex (?i)^/x/[0-9]+"),
            s("default/one/re.test/x", "regex (?i)^/x"),
            s("default/one/re.test/no-path", "regex ^/"),
        ]
    );
}

/// docs/ingress.md lists every annotation weir knows, with how it treats it.
#[test]
fn the_docs_list_every_annotation() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ingress.md");
    let doc = std::fs::read_to_string(&p).expect("docs/ingress.md");
    for (name, status) in weir_config::validate::ingress_annotations() {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}`")))
            .unwrap_or_else(|| panic!("docs/ingress.md has no row for {name}"));
        assert!(row.contains(status), "{name}: {row} does not say {status}");
    }
}

/// The timeout and body-size annotations land on the Ingress's routes.
#[test]
fn timeouts_and_body_size_reach_the_routes() {
    let yaml = svc("apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: t
  annotations:
    nginx.ingress.kubernetes.io/proxy-connect-timeout: \"3\"
    nginx.ingress.kubernetes.io/proxy-read-timeout: 30s
    nginx.ingress.kubernetes.io/proxy-send-timeout: \"20\"
    nginx.ingress.kubernetes.io/proxy-body-size: 8m
spec:
  ingressClassName: weir
  rules:
    - host: t.test
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}
");
    let m = ok(&yaml);
    let r = m
        .proxy
        .routes
        .iter()
        .find(|r| r.name == "default/t/t.test/")
        .unwrap();
    let s = std::time::Duration::from_secs;
    assert_eq!(r.timeouts.connect, Some(s(3)));
    assert_eq!(r.timeouts.read, Some(s(30)));
    assert_eq!(r.timeouts.send, Some(s(20)));
    assert_eq!(r.max_body, Some(8 << 20));
}
