//! The weir kinds: valid documents load into the model; invalid ones give every error
//! at once, each with file, line and field.

use std::path::Path;

use weir_config::model::{HostMatch, PathMatch, RouteTarget};
use weir_config::{ConfigError, load_str};

fn issues(yaml: &str) -> Vec<String> {
    match load_str(Path::new("/cfg/weir.yaml"), yaml) {
        Ok(_) => panic!("expected errors"),
        Err(ConfigError::Invalid(issues)) => issues.iter().map(|i| i.to_string()).collect(),
        Err(e) => panic!("unexpected {e}"),
    }
}

const GOOD: &str = r#"
apiVersion: weir.dev/v1alpha1
kind: Proxy
metadata: {name: edge}
spec:
  listeners:
    - {name: web, address: "127.0.0.1:0"}
  admin: {address: "127.0.0.1:0"}
  routes:
    - name: api
      match:
        host: "*.Example.com"
        pathPrefix: /api
        headers:
          - {name: X-Canary, exact: "yes"}
      backends:
        - {service: v1, weight: 99.5}
        - {service: v2, weight: 0.5}
---
apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {name: v1}
spec:
  endpoints: ["127.0.0.1:9001", {address: "127.0.0.1:9002", image: "app:v1"}]
  loadBalancer: leastRequest
---
apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {name: v2}
spec:
  endpoints: ["127.0.0.1:9003"]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: other}
"#;

#[test]
fn a_good_config_loads() {
    let m = load_str(Path::new("/cfg/weir.yaml"), GOOD).unwrap();
    assert_eq!(m.proxy.name, "edge");
    let r = &m.proxy.routes[0];
    assert_eq!(r.hosts, vec![HostMatch::Suffix(".example.com".into())]);
    assert_eq!(r.matches[0].path, PathMatch::Prefix("/api".into()));
    assert_eq!(r.matches[0].headers[0].name, "x-canary");
    match &r.target {
        RouteTarget::Split(legs) => {
            assert_eq!(legs[0].weight, 9950);
            assert_eq!(legs[1].weight, 50);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(m.services["v1"].endpoints.len(), 2);
    assert_eq!(
        m.services["v1"].endpoints[1].image.as_deref(),
        Some("app:v1")
    );
    // The ConfigMap is skipped with a notice naming the file and kind.
    assert_eq!(m.notices.len(), 1);
    let n = m.notices[0].to_string();
    assert!(
        n.contains("/cfg/weir.yaml") && n.contains("ConfigMap"),
        "{n}"
    );
    // Defaults applied.
    assert_eq!(
        m.proxy.upstream.connect_timeout,
        weir_config::defaults::CONNECT_TIMEOUT
    );
}

#[test]
fn every_error_is_reported_with_file_line_and_field() {
    let yaml = r#"apiVersion: weir.dev/v1alpha1
kind: Proxy
metadata: {name: edge}
spec:
  listeners:
    - {name: web, address: "127.0.0.1"}
  routes:
    - name: a
      backends:
        - {service: v1, weight: 90}
        - {service: missing, weight: 5}
    - name: b
      match: {pathPrefix: nope}
      rollout: x
      backends: [{service: v1}]
---
apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {name: v1}
spec:
  endpoints: ["127.0.0.1:9001"]
  loadBalancer: random
"#;
    let got = issues(yaml);
    let expect = [
        "/cfg/weir.yaml:6:19: spec.listeners[0].address: \"127.0.0.1\" has no port",
        "/cfg/weir.yaml:9:7: spec.routes[0].backends: weights sum to 95%",
        "/cfg/weir.yaml:11:12: spec.routes[0].backends[1].service: no Service is named \"missing\"",
        "/cfg/weir.yaml:12:7: spec.routes[1]: a route has either rollout or backends, not both",
        "/cfg/weir.yaml:13:15: spec.routes[1].match.pathPrefix: \"nope\" must start with '/'",
        "/cfg/weir.yaml:22:3: spec.loadBalancer: \"random\" is not a load balancer",
    ];
    for e in expect {
        assert!(
            got.iter().any(|g| g.starts_with(e)),
            "missing {e:?} in\n{}",
            got.join("\n")
        );
    }
    assert_eq!(got.len(), expect.len(), "{}", got.join("\n"));
}

#[test]
fn typos_in_weir_kinds_fail_loudly() {
    let yaml = "apiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {name: s}\nspec:\n  endpoint: []\n";
    let got = issues(yaml);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("/cfg/weir.yaml:5:3: spec.endpoint: unknown field `endpoint`"),
        "{}",
        got[0]
    );
}

#[test]
fn type_errors_name_the_field() {
    let yaml = "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {name: p}\nspec:\n  routes:\n    - name: r\n      backends:\n        - {service: s, weight: lots}\n";
    let got = issues(yaml);
    assert!(
        got[0].starts_with("/cfg/weir.yaml:8:24: spec.routes[0].backends[0].weight: invalid type"),
        "{got:?}"
    );
}

#[test]
fn weights_need_hundredths() {
    let yaml = "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {name: p}\nspec:\n  routes:\n    - name: r\n      backends:\n        - {service: s, weight: 99.995}\n        - {service: s2, weight: 0.005}\n---\napiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {name: s}\nspec: {}\n---\napiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {name: s2}\nspec: {}\n";
    let got = issues(yaml);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].contains("steps of 0.01"), "{got:?}");
}

#[test]
fn yaml_syntax_errors_have_a_position() {
    let got = issues("apiVersion: weir.dev/v1alpha1\nkind: Proxy\nspec: [1,\n");
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("/cfg/weir.yaml:3:"), "{got:?}");
    assert!(got[0].contains("not valid YAML"), "{got:?}");
}

#[test]
fn duplicate_names_and_missing_names() {
    let yaml = "apiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {name: s}\nspec: {}\n---\napiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {name: s}\nspec: {}\n---\napiVersion: weir.dev/v1alpha1\nkind: Service\nspec: {}\n";
    let got = issues(yaml);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].starts_with("/cfg/weir.yaml:8:12:") && got[0].contains("already defined"),
        "{got:?}"
    );
    assert!(
        got[1].starts_with("/cfg/weir.yaml:11:1:") && got[1].contains("metadata.name"),
        "{got:?}"
    );
}

#[test]
fn examples_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/static-split.yaml");
    let m = weir_config::load(&dir).unwrap();
    assert_eq!(m.proxy.routes.len(), 1);
}

#[test]
fn a_fleet_of_thousands_of_documents_loads() {
    // The YAML parser's default budget stops at 1,024 documents; weir's own files are
    // trusted and may hold a whole fleet.
    let mut yaml = String::from(
        "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {name: edge}\nspec:\n  listeners: [{name: web, address: \"127.0.0.1:0\"}]\n  routes:\n",
    );
    for i in 0..3000 {
        yaml.push_str(&format!(
            "    - {{name: r{i}, match: {{host: app{i}.example.com}}, backends: [{{service: s{i}}}]}}\n"
        ));
    }
    for i in 0..3000 {
        yaml.push_str(&format!(
            "---\napiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {{name: s{i}}}\nspec:\n  endpoints: [\"127.0.0.1:{}\"]\n",
            10000 + i
        ));
    }
    let m = load_str(Path::new("/cfg/fleet.yaml"), &yaml).expect("a fleet loads");
    assert_eq!(m.services.len(), 3000);
}

#[test]
fn a_misspelt_field_does_not_hide_the_documents_other_errors() {
    let yaml = r#"
apiVersion: weir.dev/v1alpha1
kind: Proxy
metadata: {name: edge}
spec:
  listeners:
    - {name: web, adress: "127.0.0.1:8080"}
  admin: {address: "127.0.0.1:9901"}
  routes:
    - name: app
      backends: [{service: nope, weight: 150}]
---
apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {name: app}
spec:
  endpoints: ["127.0.0.1:1"]
  loadBalanser: round-robin
  timeouts: {connect: 5s}
"#;
    let got = issues(yaml);
    for want in [
        "/cfg/weir.yaml:7:19: spec.listeners[0].adress: unknown field `adress`, expected one of `name`, `address`, `tls`",
        "/cfg/weir.yaml:7:7: spec.listeners[0]: a listener needs an address",
        "/cfg/weir.yaml:11:19: spec.routes[0].backends[0].service: no Service is named \"nope\"",
        "/cfg/weir.yaml:11:34: spec.routes[0].backends[0].weight: 150 is not a weight",
        "/cfg/weir.yaml:18:3: spec.loadBalanser: unknown field `loadBalanser`",
        "/cfg/weir.yaml:19:3: spec.timeouts: unknown field `timeouts`",
    ] {
        assert!(
            got.iter().any(|g| g.starts_with(want)),
            "missing {want:?} in {got:#?}"
        );
    }
    assert_eq!(got.len(), 6, "{got:#?}");
}

/// `roleHosts` defaults to on for loopback listeners only; turning it on for a public
/// address is allowed and noted.
#[test]
fn role_hosts_default_to_loopback_listeners_and_public_ones_are_noted() {
    let yaml = GOOD.replace(
        "    - {name: web, address: \"127.0.0.1:0\"}\n",
        "    - {name: web, address: \"127.0.0.1:0\"}\n    - {name: pub, address: \"0.0.0.0:0\"}\n    - {name: internal, address: \"10.1.2.3:0\", roleHosts: true}\n    - {name: closed, address: \"[::1]:0\", roleHosts: false}\n",
    );
    let m = load_str(Path::new("/cfg/weir.yaml"), &yaml).expect("valid");
    let serves: Vec<(&str, bool)> = m
        .proxy
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.serves_role_hosts()))
        .collect();
    assert_eq!(
        serves,
        [
            ("web", true),
            ("pub", false),
            ("internal", true),
            ("closed", false)
        ]
    );
    let notes: Vec<String> = m
        .notices
        .iter()
        .map(|n| n.to_string())
        .filter(|n| n.contains("Host header"))
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("/cfg/weir.yaml:9:") && notes[0].contains("10.1.2.3"),
        "{notes:?}"
    );
}

/// A Service's `protocol`: HTTP/1.1 by default, `h2c` for HTTP/2 with prior knowledge;
/// anything else is an issue at the field.
#[test]
fn a_service_says_what_its_endpoints_speak() {
    use weir_config::model::UpstreamProtocol;
    let doc = |protocol: &str| {
        format!(
            "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {{name: edge}}\nspec:\n  listeners: [{{name: web, address: \"127.0.0.1:0\"}}]\n  admin: {{address: \"127.0.0.1:0\"}}\n  routes: [{{name: r, backends: [{{service: grpc, weight: 100}}]}}]\n---\napiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {{name: grpc}}\nspec:\n  {protocol}endpoints: [\"127.0.0.1:9001\"]\n"
        )
    };
    let m = load_str(Path::new("/cfg/weir.yaml"), &doc("")).unwrap();
    assert_eq!(m.services["grpc"].protocol, UpstreamProtocol::Http1);
    let m = load_str(Path::new("/cfg/weir.yaml"), &doc("protocol: h2c\n  ")).unwrap();
    assert_eq!(m.services["grpc"].protocol, UpstreamProtocol::H2c);
    let m = load_str(Path::new("/cfg/weir.yaml"), &doc("protocol: http1\n  ")).unwrap();
    assert_eq!(m.services["grpc"].protocol, UpstreamProtocol::Http1);
    let errs = issues(&doc("protocol: http3\n  "));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("spec.protocol") && errs[0].contains("use http1"),
        "{errs:?}"
    );
}
