//! What the Gateway API tests share: the conformance suite's manifests loaded from a
//! folder (`tests/gateway-conformance/`), and inline YAML with a Gateway, a Service and
//! its EndpointSlice, loaded from text, with its issues.

use std::path::{Path, PathBuf};

use weir_config::model::gateway::reason;
use weir_config::model::{
    GatewayStatus, Model, PathMatch, Route, RouteTarget, StatusKind, WeightedService,
};
use weir_config::{ConfigError, load_str};

pub(crate) const INFRA: &str = "gateway-conformance-infra";
pub(crate) const V1: &str = "gateway-conformance-infra/infra-backend-v1:8080";
pub(crate) const V2: &str = "gateway-conformance-infra/infra-backend-v2:8080";
pub(crate) const V3: &str = "gateway-conformance-infra/infra-backend-v3:8080";

pub(crate) fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/gateway-conformance")
}

pub(crate) fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A folder with the base manifests, `tests` (`{GATEWAY_CLASS_NAME}` made `weir`, as the
/// suite does), the EndpointSlices, and the TLS Secret the suite creates at setup.
pub(crate) fn folder(tests: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for f in std::iter::once("base-manifests.yaml").chain(tests.iter().copied()) {
        let text = std::fs::read_to_string(data().join("manifests").join(f)).expect(f);
        let text = text.replace("{GATEWAY_CLASS_NAME}", "weir");
        std::fs::write(dir.path().join(f), text).unwrap();
    }
    std::fs::copy(
        data().join("endpoints.yaml"),
        dir.path().join("endpoints.yaml"),
    )
    .unwrap();
    let names = vec!["example.org".to_owned(), "second-example.org".to_owned()];
    let c = rcgen::generate_simple_self_signed(names).expect("certificate");
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: tls-validity-checks-certificate\n  namespace: {INFRA}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(&c.cert.pem()),
        b64(&c.signing_key.serialize_pem())
    );
    std::fs::write(dir.path().join("secret.yaml"), secret).unwrap();
    dir
}

pub(crate) fn model(test: &str) -> Model {
    let dir = folder(&[test]);
    weir_config::load(dir.path()).unwrap_or_else(|e| panic!("{test}: {e}"))
}

/// The model routes of HTTPRoute `name` (namespace gateway-conformance-infra).
pub(crate) fn routes<'a>(m: &'a Model, name: &str) -> Vec<&'a Route> {
    let prefix = format!("{INFRA}/{name}/");
    m.proxy
        .routes
        .iter()
        .filter(|r| r.name.starts_with(&prefix))
        .map(|r| &**r)
        .collect()
}

pub(crate) fn route<'a>(m: &'a Model, name: &str) -> &'a Route {
    m.proxy
        .routes
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no route {name}: {:?}", names(m)))
}

pub(crate) fn names(m: &Model) -> Vec<&str> {
    m.proxy.routes.iter().map(|r| r.name.as_str()).collect()
}

pub(crate) fn status<'a>(m: &'a Model, kind: StatusKind, name: &str) -> &'a GatewayStatus {
    m.gateway_status
        .iter()
        .find(|s| s.kind == kind && s.name == name)
        .unwrap_or_else(|| panic!("no status for {kind} {name}"))
}

/// The (type, status, reason) of every condition of HTTPRoute `name`'s only parent.
pub(crate) fn parent(m: &Model, name: &str) -> Vec<(&'static str, bool, &'static str)> {
    let s = status(m, StatusKind::HttpRoute, name);
    assert_eq!(s.sections.len(), 1, "{s:?}");
    s.sections[0]
        .conditions
        .iter()
        .map(|c| (c.type_, c.status, c.reason))
        .collect()
}

pub(crate) fn split(legs: &[(&str, u32)]) -> RouteTarget {
    RouteTarget::Split(
        legs.iter()
            .map(|(s, w)| WeightedService {
                service: (*s).to_owned(),
                weight: *w,
                filters: Vec::new(),
                invalid: None,
            })
            .collect(),
    )
}

pub(crate) fn prefix(p: &str) -> PathMatch {
    PathMatch::Segments(p.to_owned())
}

pub(crate) fn accepted() -> Vec<(&'static str, bool, &'static str)> {
    vec![
        ("Accepted", true, reason::ACCEPTED),
        ("ResolvedRefs", true, reason::RESOLVED_REFS),
    ]
}

pub(crate) const FILE: &str = "/cfg/gw.yaml";

pub(crate) fn ok(yaml: &str) -> Model {
    load_str(Path::new(FILE), yaml).unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn issues(yaml: &str) -> Vec<String> {
    match load_str(Path::new(FILE), yaml) {
        Ok(_) => panic!("expected errors"),
        Err(ConfigError::Invalid(issues)) => issues.iter().map(|i| i.to_string()).collect(),
        Err(e) => panic!("unexpected {e}"),
    }
}

/// The issue at `line` of the file, at `field`, whose message contains `text`.
pub(crate) fn at(issues: &[String], line: u32, field: &str, text: &str) {
    let start = format!("{FILE}:{line}:");
    let field = format!(": {field}: ");
    assert!(
        issues
            .iter()
            .any(|i| i.starts_with(&start) && i.contains(&field) && i.contains(text)),
        "no issue at line {line}{field}{text}:\n{}",
        issues.join("\n")
    );
}

/// A Gateway `gw` (class weir, listener `http` on 8080), Service `app` (port 80, named
/// `web`) and its EndpointSlice (127.0.0.1:9001), in namespace default.
pub(crate) const BASE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: weir
  listeners:
    - {name: http, port: 8080, protocol: HTTP}
---
apiVersion: v1
kind: Service
metadata: {name: app}
spec:
  ports:
    - {name: web, port: 80, targetPort: 8080}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: app-1
  labels: {kubernetes.io/service-name: app}
addressType: IPv4
ports: [{name: web, port: 9001}]
endpoints:
  - addresses: [127.0.0.1]
"#;

pub(crate) fn with(extra: &str) -> String {
    format!("{BASE}---\n{extra}")
}

/// The line in `with(extra)` of `extra`'s line `n` (1-based).
pub(crate) fn line(n: u32) -> u32 {
    BASE.lines().count() as u32 + 1 + n
}
