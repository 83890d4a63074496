//! The Gateway API conformance suite's HTTPRoute tests, run against weir from files.
//!
//! The data lives in `tests/gateway-conformance/` (see its README.md): the suite's own
//! manifests (`manifests/`, copied from kubernetes-sigs/gateway-api) and, per test, the
//! cases of its Go file transcribed into `cases/<test>.yaml`. For each case file this
//! runner plays the part of the Kubernetes cluster and of the Go suite:
//!
//! - the echo Deployments of the base manifests are echo backends in this process
//!   ([`weir_fixtures::echo`], two pods per Deployment, as the manifests ask), and their
//!   Services get `EndpointSlice`s pointing at them (what the EndpointSlice controller
//!   would write);
//! - the `tls-validity-checks-certificate` Secret the suite creates at setup is generated
//!   (rcgen);
//! - the manifests are loaded as they are, with these rewrites (written next to them in a
//!   temp dir): `{GATEWAY_CLASS_NAME}` becomes `weir`; every Gateway gets
//!   `spec.addresses: [{type: IPAddress, value: 127.0.0.1}]` and each listener port (80,
//!   443, 8080, ...) becomes a free port reserved here, the same one for the listeners of a
//!   Gateway that share a port; an HTTPRoute `parentRef.port` that names such a port follows
//!   it; the suite's own empty `EndpointSlice`s (HTTPRouteServiceTypes) are filled the way
//!   that test patches them. A redirect `Location` whose port is one of the reserved ports is
//!   read as the port it stands for, so the suite's rules about ports 80 and 443 keep their
//!   meaning;
//! - each case's request is sent the way the Go helpers send it (never following
//!   redirects) and checked the way `CompareRoundTrip` checks it; a case passes when it
//!   holds on each of `RequiredConsecutiveSuccesses` (3) consecutive requests. weir has
//!   loaded everything before it listens, so there is no eventual consistency to wait for.
//!
//! The summary (tests, cases, passed, failed with the first reason, skipped with why) is
//! printed (run with `--nocapture` to see it) and written to
//! `$CARGO_TARGET_TMPDIR/gateway-conformance-report.txt`. With `CI=true` (or
//! `GATEWAY_CONFORMANCE_STRICT=1`) any failed case fails the test; otherwise failures are
//! only reported, while the Gateway API support is being built. `GATEWAY_CONFORMANCE=<text>`
//! runs only the case files whose name contains `<text>`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use weir::app::{App, ServeOptions};
use weir_fixtures::echo::{EchoBackend, EchoContext};

/// The Go suite's `RequiredConsecutiveSuccesses`.
const CONSECUTIVE: usize = 3;
/// The Go suite's `RequestTimeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The suite's placeholder for the implementation's GatewayClass.
const CLASS_PLACEHOLDER: &str = "{GATEWAY_CLASS_NAME}";

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gateway-conformance")
}

// ---------------------------------------------------------------------------------------
// The cluster: echo Deployments, their pods, and the objects Kubernetes would write.
// ---------------------------------------------------------------------------------------

/// The echo Deployments of the base manifests (two replicas each).
const DEPLOYMENTS: &[(&str, &str)] = &[
    ("gateway-conformance-infra", "infra-backend-v1"),
    ("gateway-conformance-infra", "infra-backend-v2"),
    ("gateway-conformance-infra", "infra-backend-v3"),
    ("gateway-conformance-app-backend", "app-backend-v1"),
    ("gateway-conformance-app-backend", "app-backend-v2"),
    ("gateway-conformance-web-backend", "web-backend"),
];
/// Pod name suffixes, the way a ReplicaSet names its pods.
const POD_SUFFIXES: &[&str] = &["7d9f6c5b8-x2k4p", "7d9f6c5b8-q8m3z"];
/// echo-basic's `H2C_PORT`: a Service `targetPort` of 3001 reaches the h2c listener.
const H2C_TARGET_PORT: i64 = 3001;

struct Deployment {
    namespace: String,
    name: String,
    pods: Vec<EchoBackend>,
}

struct Cluster {
    deployments: Vec<Deployment>,
}

impl Cluster {
    async fn start() -> Cluster {
        let mut deployments = Vec::new();
        for (ns, name) in DEPLOYMENTS {
            let mut pods = Vec::new();
            for suffix in POD_SUFFIXES {
                let pod = EchoBackend::start(EchoContext {
                    namespace: (*ns).to_owned(),
                    ingress: String::new(),
                    service: String::new(),
                    pod: format!("{name}-{suffix}"),
                })
                .await
                .expect("echo backend starts");
                pods.push(pod);
            }
            deployments.push(Deployment {
                namespace: (*ns).to_owned(),
                name: (*name).to_owned(),
                pods,
            });
        }
        Cluster { deployments }
    }

    fn deployment(&self, ns: &str, name: &str) -> Option<&Deployment> {
        self.deployments
            .iter()
            .find(|d| d.namespace == ns && d.name == name)
    }

    /// The pods of the Service `ns/name` (all of them, for mirror checks).
    fn service_pods(&self, ns: &str, name: &str) -> Vec<&EchoBackend> {
        self.deployment(ns, name)
            .map(|d| d.pods.iter().collect())
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------
// Case files.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, Default)]
struct GwRef {
    namespace: String,
    name: String,
    /// The listener port as the manifest writes it (before the rewrite).
    port: Option<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Http,
    Https,
    H2c,
    Ws,
}

#[derive(Clone, Debug, Default)]
struct ReqSpec {
    host: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default)]
struct ExpReq {
    host: String,
    method: String,
    path: String,
    headers: Option<Vec<(String, String)>>,
    absent: Vec<String>,
}

#[derive(Clone, Debug, Default)]
struct RespSpec {
    status_codes: Vec<u16>,
    headers: Vec<(String, String)>,
    one_of: Vec<(String, Vec<String>)>,
    ignore_whitespace: bool,
    absent: Vec<String>,
}

#[derive(Clone, Debug, Default)]
struct Redirect {
    scheme: String,
    host: String,
    port: String,
    path: String,
}

#[derive(Clone, Debug)]
struct Mirror {
    namespace: String,
    name: String,
    percent: Option<f64>,
}

#[derive(Clone, Debug)]
struct Distribution {
    requests: usize,
    concurrency: usize,
    tolerance: f64,
    weights: Vec<(String, f64)>,
    attempts: usize,
}

#[derive(Clone, Debug)]
struct MirrorDistribution {
    requests: usize,
    concurrency: usize,
    tolerance_percent: f64,
}

#[derive(Clone, Debug)]
struct BackendHeader {
    requests: usize,
    header: String,
}

#[derive(Clone, Debug)]
struct Case {
    name: String,
    skip: Option<String>,
    derived: bool,
    gateway: GwRef,
    protocol: Proto,
    server_name: String,
    request: ReqSpec,
    backend_set_response_headers: Vec<(String, String)>,
    response: RespSpec,
    redirect: Option<Redirect>,
    backend: String,
    namespace: String,
    expected_request: Option<ExpReq>,
    mirrored_to: Vec<Mirror>,
    distribution: Option<Distribution>,
    mirror_distribution: Option<MirrorDistribution>,
    backend_header: Option<BackendHeader>,
}

struct TestFile {
    file: String,
    test: String,
    manifests: Vec<String>,
    skip: Option<String>,
    not_run: Vec<(String, String)>,
    cases: Vec<Case>,
}

fn yaml(text: &str, what: &str) -> Vec<Value> {
    weir_config::read::node::parse_documents(text)
        .unwrap_or_else(|e| panic!("{what}: YAML error at {:?}: {}", e.pos, e.message))
        .iter()
        .map(|n| n.to_json())
        .collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn field(v: &Value, key: &str) -> String {
    v.get(key).map(text).unwrap_or_default()
}

fn list(v: &Value, key: &str) -> Vec<String> {
    match v.get(key) {
        Some(Value::Array(items)) => items.iter().map(text).collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![text(other)],
    }
}

fn pairs(v: Option<&Value>) -> Vec<(String, String)> {
    match v {
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        _ => Vec::new(),
    }
}

fn gw_ref(v: Option<&Value>, default: &GwRef) -> GwRef {
    let Some(v) = v else {
        return default.clone();
    };
    GwRef {
        namespace: v
            .get("namespace")
            .map(text)
            .unwrap_or_else(|| default.namespace.clone()),
        name: v
            .get("name")
            .map(text)
            .unwrap_or_else(|| default.name.clone()),
        port: v.get("port").and_then(Value::as_u64).map(|p| p as u16),
    }
}

fn parse_case(v: &Value, default_gw: &GwRef, index: usize) -> Case {
    let request = v.get("request").cloned().unwrap_or(Value::Null);
    let response = v.get("response").cloned().unwrap_or(Value::Null);
    let mut status_codes: Vec<u16> = match response.get("statusCodes") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_u64)
            .map(|c| c as u16)
            .collect(),
        _ => Vec::new(),
    };
    if status_codes.is_empty() {
        status_codes.push(200);
    }
    let protocol = match field(v, "protocol").as_str() {
        "" | "HTTP" => Proto::Http,
        "HTTPS" => Proto::Https,
        "H2C_PRIOR_KNOWLEDGE" => Proto::H2c,
        "WS" => Proto::Ws,
        other => panic!("case {index}: unknown protocol {other}"),
    };
    let expected_request = v.get("expectedRequest").map(|e| ExpReq {
        host: field(e, "host"),
        method: field(e, "method"),
        path: field(e, "path"),
        headers: e.get("headers").map(|h| pairs(Some(h))),
        absent: list(e, "absentHeaders"),
    });
    let one_of = match response.get("headersOneOf") {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                let vals = match v {
                    Value::Array(a) => a.iter().map(text).collect(),
                    other => vec![text(other)],
                };
                (k.clone(), vals)
            })
            .collect(),
        _ => Vec::new(),
    };
    Case {
        name: v
            .get("name")
            .map(text)
            .unwrap_or_else(|| format!("case {index}")),
        skip: v.get("skip").map(text),
        derived: v.get("derived").and_then(Value::as_bool).unwrap_or(false),
        gateway: gw_ref(v.get("gateway"), default_gw),
        protocol,
        server_name: field(v, "serverName"),
        request: ReqSpec {
            host: field(&request, "host"),
            method: {
                let m = field(&request, "method");
                if m.is_empty() { "GET".to_owned() } else { m }
            },
            path: field(&request, "path"),
            headers: pairs(request.get("headers")),
        },
        backend_set_response_headers: pairs(v.get("backendSetResponseHeaders")),
        response: RespSpec {
            status_codes,
            headers: pairs(response.get("headers")),
            one_of,
            ignore_whitespace: response
                .get("ignoreWhitespace")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            absent: list(&response, "absentHeaders"),
        },
        redirect: v.get("redirect").map(|r| Redirect {
            scheme: field(r, "scheme"),
            host: field(r, "host"),
            port: field(r, "port"),
            path: field(r, "path"),
        }),
        backend: field(v, "backend"),
        namespace: field(v, "namespace"),
        expected_request,
        mirrored_to: match v.get("mirroredTo") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|m| Mirror {
                    namespace: field(m, "namespace"),
                    name: field(m, "name"),
                    percent: m.get("percent").and_then(Value::as_f64),
                })
                .collect(),
            _ => Vec::new(),
        },
        distribution: v.get("distribution").map(|d| Distribution {
            requests: d.get("requests").and_then(Value::as_u64).unwrap_or(500) as usize,
            concurrency: d.get("concurrency").and_then(Value::as_u64).unwrap_or(10) as usize,
            tolerance: d.get("tolerance").and_then(Value::as_f64).unwrap_or(0.05),
            attempts: d.get("attempts").and_then(Value::as_u64).unwrap_or(10) as usize,
            weights: match d.get("weights") {
                Some(Value::Object(m)) => m
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(0.0)))
                    .collect(),
                _ => Vec::new(),
            },
        }),
        mirror_distribution: v.get("mirrorDistribution").map(|d| MirrorDistribution {
            requests: d.get("requests").and_then(Value::as_u64).unwrap_or(500) as usize,
            concurrency: d.get("concurrency").and_then(Value::as_u64).unwrap_or(10) as usize,
            tolerance_percent: d
                .get("tolerancePercent")
                .and_then(Value::as_f64)
                .unwrap_or(5.0),
        }),
        backend_header: v.get("backendHeaderMatchesPod").map(|d| BackendHeader {
            requests: d.get("requests").and_then(Value::as_u64).unwrap_or(100) as usize,
            header: d
                .get("header")
                .map(text)
                .unwrap_or_else(|| "Backend".to_owned()),
        }),
    }
}

fn load_test_file(path: &Path) -> TestFile {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let raw = std::fs::read_to_string(path).expect("read case file");
    let docs = yaml(&raw, &file);
    let doc = docs
        .first()
        .unwrap_or_else(|| panic!("{file}: empty case file"));
    let default_gw = gw_ref(
        doc.get("gateway"),
        &GwRef {
            namespace: "gateway-conformance-infra".to_owned(),
            name: "same-namespace".to_owned(),
            port: None,
        },
    );
    let cases = match doc.get("cases") {
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, c)| parse_case(c, &default_gw, i))
            .collect(),
        _ => Vec::new(),
    };
    let not_run = match doc.get("notRun") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|n| (field(n, "check"), field(n, "reason")))
            .collect(),
        _ => Vec::new(),
    };
    TestFile {
        test: field(doc, "test"),
        manifests: list(doc, "manifests"),
        skip: doc.get("skip").map(text),
        not_run,
        cases,
        file,
    }
}

// ---------------------------------------------------------------------------------------
// Manifests: split, rewrite, complete with EndpointSlices and Secrets.
// ---------------------------------------------------------------------------------------

/// Listener ports: (gateway namespace, gateway name, port in the manifest) -> reserved port.
#[derive(Default)]
struct Ports {
    map: BTreeMap<(String, String, u16), u16>,
    /// Ports reserved but not yet handed out, held open until weir starts.
    held: Vec<std::net::TcpListener>,
}

impl Ports {
    fn reserve(&mut self, ns: &str, name: &str, port: u16) -> u16 {
        let key = (ns.to_owned(), name.to_owned(), port);
        if let Some(p) = self.map.get(&key) {
            return *p;
        }
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("reserve a port");
        let p = l.local_addr().expect("local addr").port();
        self.held.push(l);
        self.map.insert(key, p);
        p
    }

    fn get(&self, ns: &str, name: &str, port: u16) -> Option<u16> {
        self.map
            .get(&(ns.to_owned(), name.to_owned(), port))
            .copied()
    }

    /// The manifest's port for a reserved one.
    fn original(&self, reserved: u16) -> Option<u16> {
        self.map
            .iter()
            .find(|(_, p)| **p == reserved)
            .map(|((_, _, o), _)| *o)
    }

    fn of_gateway(&self, ns: &str, name: &str) -> Vec<(u16, u16)> {
        self.map
            .iter()
            .filter(|((n, g, _), _)| n == ns && g == name)
            .map(|((_, _, o), p)| (*o, *p))
            .collect()
    }
}

/// One YAML document of a manifest file, with its text.
struct Doc {
    text: String,
    value: Value,
}

fn split_docs(raw: &str, what: &str) -> Vec<Doc> {
    let mut chunks = vec![String::new()];
    for line in raw.lines() {
        if line.trim_end() == "---" {
            chunks.push(String::new());
        } else {
            let last = chunks.last_mut().expect("a chunk");
            last.push_str(line);
            last.push('\n');
        }
    }
    chunks
        .into_iter()
        .filter_map(|text| {
            let value = yaml(&text, what).into_iter().next()?;
            value.get("kind")?;
            Some(Doc { text, value })
        })
        .collect()
}

fn kind(v: &Value) -> &str {
    v.get("kind").and_then(Value::as_str).unwrap_or("")
}

fn meta_ns(v: &Value) -> String {
    v.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_owned()
}

fn meta_name(v: &Value) -> String {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

fn is_gateway_api(v: &Value) -> bool {
    v.get("apiVersion")
        .and_then(Value::as_str)
        .is_some_and(|a| a.starts_with("gateway.networking.k8s.io/"))
}

/// What the harness wrote for one test: the config dir and the ports.
struct Prepared {
    dir: tempfile::TempDir,
    ports: Ports,
    /// Rewrites made, for the report.
    notes: Vec<String>,
}

/// The EndpointSlice ports for a Service's ports, pointing at one pod.
fn slice_ports(service: &Value, pod: &EchoBackend) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(Value::Array(ports)) = service.pointer("/spec/ports") {
        for p in ports {
            let target = p
                .get("targetPort")
                .and_then(Value::as_i64)
                .or_else(|| p.get("port").and_then(Value::as_i64))
                .unwrap_or(0);
            let addr = if target == H2C_TARGET_PORT {
                pod.h2c_addr()
            } else {
                pod.http_addr()
            };
            let mut port = json!({
                "name": p.get("name").and_then(Value::as_str).unwrap_or(""),
                "port": addr.port(),
                "protocol": p.get("protocol").and_then(Value::as_str).unwrap_or("TCP"),
            });
            if let Some(ap) = p.get("appProtocol") {
                port["appProtocol"] = ap.clone();
            }
            out.push(port);
        }
    }
    out
}

fn slice(ns: &str, service: &str, name: &str, pod: &EchoBackend, ports: Vec<Value>) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": [{
            "addresses": [pod.http_addr().ip().to_string()],
            "conditions": {"ready": true, "serving": true, "terminating": false},
            "targetRef": {"kind": "Pod", "name": pod.context().pod, "namespace": ns},
        }],
        "ports": ports,
    })
}

fn to_yaml_doc(v: &Value, note: &str) -> String {
    // JSON is YAML: the rewritten documents are written as JSON, with a note saying so.
    format!(
        "# {note}\n{}\n",
        serde_json::to_string_pretty(v).expect("json")
    )
}

/// A self-signed CA and a leaf for the names the suite's requests use, as a
/// `kubernetes.io/tls` Secret; returns (the Secret's YAML, the CA's DER).
pub(crate) fn tls_secret(ns: &str, name: &str, names: &[&str]) -> (String, Vec<u8>) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key"))
        .expect("self-signed CA");
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
        .expect("leaf params")
        .signed_by(&key, &ca)
        .expect("leaf");
    let b64 = weir_fixtures::echo::base64;
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": b64(leaf.pem().as_bytes()),
            "tls.key": b64(key.serialize_pem().as_bytes()),
        },
    });
    (
        to_yaml_doc(
            &doc,
            "Created by the harness, as the suite creates it at setup (self-signed).",
        ),
        ca.der().to_vec(),
    )
}

/// Names on the generated certificates: every SNI the suite's HTTPS cases send (the suite's
/// own certificate is for `*` and `*.org`, which a strict client does not accept as names).
const CERT_NAMES: &[&str] = &[
    "example.org",
    "second-example.org",
    "unknown-example.org",
    "*.wildcard.org",
];

fn prepare(test: &TestFile, cluster: &Cluster, ca: &mut Vec<u8>) -> Result<Prepared, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut ports = Ports::default();
    let mut notes = Vec::new();
    let mut files: Vec<(String, Vec<Doc>)> = Vec::new();
    let mut names = vec!["base-manifests.yaml".to_owned()];
    names.extend(test.manifests.iter().cloned());
    for name in &names {
        let path = data_dir().join("manifests").join(name);
        let raw = std::fs::read_to_string(&path)
            .map_err(|e| format!("manifest {name}: {e} (not copied yet?)"))?;
        files.push((name.clone(), split_docs(&raw, name)));
    }

    // Reserve listener ports first: routes refer to them.
    for (_, docs) in &files {
        for d in docs {
            if kind(&d.value) == "Gateway" && is_gateway_api(&d.value) {
                let (ns, gw) = (meta_ns(&d.value), meta_name(&d.value));
                if let Some(Value::Array(ls)) = d.value.pointer("/spec/listeners") {
                    for l in ls {
                        if let Some(p) = l.get("port").and_then(Value::as_u64) {
                            ports.reserve(&ns, &gw, p as u16);
                        }
                    }
                }
            }
        }
    }

    let all_docs: Vec<&Value> = files
        .iter()
        .flat_map(|(_, d)| d.iter().map(|d| &d.value))
        .collect();
    let endpoints_objects: Vec<(String, String)> = all_docs
        .iter()
        .filter(|v| kind(v) == "Endpoints")
        .map(|v| (meta_ns(v), meta_name(v)))
        .collect();
    let services: Vec<&Value> = all_docs
        .iter()
        .copied()
        .filter(|v| {
            kind(v) == "Service" && v.get("apiVersion").and_then(Value::as_str) == Some("v1")
        })
        .collect();
    let infra_v1 = cluster
        .deployment("gateway-conformance-infra", "infra-backend-v1")
        .expect("infra-backend-v1");

    for (name, docs) in &files {
        let mut out = String::new();
        for d in docs {
            let v = &d.value;
            let rewritten = match kind(v) {
                "Gateway" if is_gateway_api(v) => {
                    let mut g = v.clone();
                    let (ns, gw) = (meta_ns(v), meta_name(v));
                    if g.pointer("/spec/gatewayClassName").and_then(Value::as_str)
                        == Some(CLASS_PLACEHOLDER)
                    {
                        g["spec"]["gatewayClassName"] = json!("weir");
                    }
                    g["spec"]["addresses"] = json!([{"type": "IPAddress", "value": "127.0.0.1"}]);
                    if let Some(Value::Array(ls)) = g.pointer_mut("/spec/listeners") {
                        for l in ls.iter_mut() {
                            if let Some(p) = l.get("port").and_then(Value::as_u64) {
                                let new = ports.get(&ns, &gw, p as u16).expect("reserved");
                                notes.push(format!(
                                    "Gateway {ns}/{gw} listener {}: port {p} -> {new}",
                                    field(l, "name")
                                ));
                                l["port"] = json!(new);
                            }
                        }
                    }
                    Some((
                        g,
                        format!(
                            "Gateway {ns}/{gw} from {name}, rewritten by the harness: class weir, address 127.0.0.1, listener ports reserved"
                        ),
                    ))
                }
                "HTTPRoute" if is_gateway_api(v) => {
                    let mut r = v.clone();
                    let route_ns = meta_ns(v);
                    let mut changed = false;
                    if let Some(Value::Array(refs)) = r.pointer_mut("/spec/parentRefs") {
                        for pr in refs.iter_mut() {
                            let is_gw = pr
                                .get("kind")
                                .and_then(Value::as_str)
                                .is_none_or(|k| k == "Gateway");
                            let Some(port) = pr.get("port").and_then(Value::as_u64) else {
                                continue;
                            };
                            if !is_gw {
                                continue;
                            }
                            let gns = pr
                                .get("namespace")
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                                .unwrap_or_else(|| route_ns.clone());
                            let gname = field(pr, "name");
                            if let Some(new) = ports.get(&gns, &gname, port as u16) {
                                notes.push(format!(
                                    "HTTPRoute {route_ns}/{}: parentRef {gns}/{gname} port {port} -> {new}",
                                    meta_name(v)
                                ));
                                pr["port"] = json!(new);
                                changed = true;
                            }
                        }
                    }
                    changed.then(|| {
                        (
                            r,
                            format!("HTTPRoute from {name}: parentRefs[].port follows the reserved listener port"),
                        )
                    })
                }
                "EndpointSlice" => {
                    // The suite's own slices (HTTPRouteServiceTypes) are created empty and
                    // patched by the test with infra-backend-v1's pods on first-port:3000.
                    let mut s = v.clone();
                    let pod = &infra_v1.pods[0];
                    s["endpoints"] = json!([{
                        "addresses": [pod.http_addr().ip().to_string()],
                        "conditions": {"ready": true, "serving": true, "terminating": false},
                    }]);
                    if let Some(Value::Array(ps)) = s.get_mut("ports") {
                        for p in ps.iter_mut() {
                            p["port"] = json!(pod.http_addr().port());
                        }
                    }
                    notes.push(format!(
                        "EndpointSlice {}/{}: endpoints patched to infra-backend-v1's pods (as the test does)",
                        meta_ns(v),
                        meta_name(v)
                    ));
                    Some((
                        s,
                        format!(
                            "EndpointSlice from {name}, patched as HTTPRouteServiceTypes patches it"
                        ),
                    ))
                }
                _ => None,
            };
            out.push_str("---\n");
            match rewritten {
                Some((value, note)) => out.push_str(&to_yaml_doc(&value, &note)),
                None => out.push_str(&d.text),
            }
        }
        std::fs::write(dir.path().join(name), out).map_err(|e| e.to_string())?;
    }

    // EndpointSlices: what the EndpointSlice controller (and its mirroring controller, for
    // the Endpoints objects HTTPRouteServiceTypes patches) would write.
    let mut slices = String::new();
    for svc in &services {
        let (ns, name) = (meta_ns(svc), meta_name(svc));
        let selector_app = svc
            .pointer("/spec/selector/app")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let pods: Vec<&EchoBackend> = if let Some(app) = &selector_app {
            cluster.service_pods(&ns, app)
        } else if endpoints_objects.contains(&(ns.clone(), name.clone())) {
            infra_v1.pods.iter().collect()
        } else if all_docs.iter().any(|v| {
            kind(v) == "EndpointSlice"
                && v.pointer("/metadata/labels/kubernetes.io~1service-name")
                    .and_then(Value::as_str)
                    == Some(name.as_str())
        }) {
            // The manifest's own slice holds the first pod; this adds the second.
            infra_v1.pods.iter().skip(1).collect()
        } else {
            Vec::new()
        };
        for (i, pod) in pods.iter().enumerate() {
            let ports = slice_ports(svc, pod);
            let sname = format!("{name}-harness-{i}");
            slices.push_str("---\n");
            slices.push_str(&to_yaml_doc(
                &slice(&ns, &name, &sname, pod, ports),
                &format!(
                    "EndpointSlice for Service {ns}/{name}, pod {}",
                    pod.context().pod
                ),
            ));
        }
    }
    std::fs::write(dir.path().join("zz-endpointslices.yaml"), slices).map_err(|e| e.to_string())?;

    // The Secrets the suite creates at setup, and a Proxy for the admin listener.
    let (infra_secret, ca_der) = tls_secret(
        "gateway-conformance-infra",
        "tls-validity-checks-certificate",
        CERT_NAMES,
    );
    let (web_secret, _) = tls_secret("gateway-conformance-web-backend", "certificate", CERT_NAMES);
    *ca = ca_der;
    let proxy = "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {name: conformance}\nspec:\n  admin: {address: \"127.0.0.1:0\"}\n";
    std::fs::write(
        dir.path().join("zz-harness.yaml"),
        format!("{proxy}---\n{infra_secret}---\n{web_secret}"),
    )
    .map_err(|e| e.to_string())?;
    Ok(Prepared { dir, ports, notes })
}

// ---------------------------------------------------------------------------------------
// Requests.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Got {
    status: u16,
    /// Response headers, names lower-case, in order.
    headers: Vec<(String, String)>,
    /// The echo, when the body was one (`Content-Type: application/json`).
    echo: Option<Value>,
    /// The start of any other body, for failure messages.
    body: String,
}

impl Got {
    fn header_values(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

struct Target {
    addr: SocketAddr,
    /// What the Go suite's `CalculateHost` would put in the URL: the address without the
    /// port when the manifest's port is the scheme's default.
    url_host: String,
    scheme: &'static str,
    tls: Option<Arc<rustls::ClientConfig>>,
}

pub(crate) fn tls_client(ca_der: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca_der.to_vec()))
        .expect("CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

fn request_headers(case: &Case) -> Vec<(String, String)> {
    let mut h = case.request.headers.clone();
    // MakeRequest always sends X-Echo-Set-Header (empty when nothing is asked).
    let set: Vec<String> = case
        .backend_set_response_headers
        .iter()
        .map(|(n, v)| format!("{n}:{v}"))
        .collect();
    h.push(("X-Echo-Set-Header".to_owned(), set.join(",")));
    h
}

async fn send(target: &Target, case: &Case) -> Result<Got, String> {
    tokio::time::timeout(REQUEST_TIMEOUT, send_inner(target, case))
        .await
        .map_err(|_| format!("no response within {REQUEST_TIMEOUT:?}"))?
}

async fn send_inner(target: &Target, case: &Case) -> Result<Got, String> {
    let tcp = tokio::net::TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", target.addr))?;
    let host = if case.request.host.is_empty() {
        target.url_host.clone()
    } else {
        case.request.host.clone()
    };
    let headers = request_headers(case);
    let response = match (case.protocol, &target.tls) {
        (Proto::H2c, _) => {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                    .await
                    .map_err(|e| format!("h2c handshake: {e}"))?;
            tokio::spawn(conn);
            let mut b = http::Request::builder()
                .method(case.request.method.as_str())
                .uri(format!("http://{host}{}", case.request.path));
            for (n, v) in &headers {
                b = b.header(n.as_str(), v.as_str());
            }
            let req = b
                .body(Empty::<Bytes>::new())
                .map_err(|e| format!("request: {e}"))?;
            send.send_request(req)
                .await
                .map_err(|e| format!("h2c request: {e}"))?
        }
        (_, Some(tls)) => {
            let name = rustls::pki_types::ServerName::try_from(case.server_name.clone())
                .map_err(|e| format!("server name {:?}: {e}", case.server_name))?;
            let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake (SNI {}): {e}", case.server_name))?;
            http1(TokioIo::new(stream), case, &host, &headers).await?
        }
        _ => http1(TokioIo::new(tcp), case, &host, &headers).await?,
    };
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("response body: {e}"))?
        .to_bytes();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let is_json = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/json");
    let echo = if is_json {
        Some(
            serde_json::from_slice(&body)
                .map_err(|e| format!("unexpected error reading response: {e}"))?,
        )
    } else {
        None
    };
    let body = if echo.is_some() {
        String::new()
    } else {
        String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned()
    };
    Ok(Got {
        status: parts.status.as_u16(),
        headers,
        echo,
        body,
    })
}

async fn http1<I>(
    io: I,
    case: &Case,
    host: &str,
    headers: &[(String, String)],
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut b = http::Request::builder()
        .method(case.request.method.as_str())
        .uri(case.request.path.as_str())
        .header(http::header::HOST, host);
    for (n, v) in headers {
        b = b.header(n.as_str(), v.as_str());
    }
    let req = b
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    send.send_request(req)
        .await
        .map_err(|e| format!("request failed: {e}"))
}

// ---------------------------------------------------------------------------------------
// Checks: the Go suite's CompareRoundTrip.
// ---------------------------------------------------------------------------------------

fn is_timeout(status: u16) -> bool {
    status == 408 || status == 504
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 300 | 301 | 302 | 303 | 304 | 305 | 307 | 308)
}

fn strip_ws(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

fn echo_str<'a>(echo: Option<&'a Value>, key: &str) -> &'a str {
    echo.and_then(|e| e.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The echoed request header `name` (any case), its values joined with `,`.
fn echo_header(echo: Option<&Value>, name: &str) -> Option<String> {
    let headers = echo?.get("headers")?.as_object()?;
    let name = name.to_ascii_lowercase();
    let mut found: Option<Vec<String>> = None;
    for (k, v) in headers {
        if k.to_ascii_lowercase() == name {
            let vals: Vec<String> = match v {
                Value::Array(a) => a.iter().map(text).collect(),
                other => vec![text(other)],
            };
            found.get_or_insert_with(Vec::new).extend(vals);
        }
    }
    found.map(|v| v.join(","))
}

struct Location {
    scheme: String,
    host: String,
    port: String,
    path: String,
}

/// A `Location` resolved against the request URL, as Go's `Response.Location` does, split
/// as `url.URL`'s Scheme, Hostname(), Port() and Path.
fn parse_location(loc: &str, req_scheme: &str, req_host: &str) -> Location {
    let (scheme, rest) = match loc.split_once("://") {
        Some((s, r)) if !s.contains('/') => (s.to_ascii_lowercase(), r.to_owned()),
        _ => {
            if let Some(r) = loc.strip_prefix("//") {
                (req_scheme.to_owned(), r.to_owned())
            } else {
                (req_scheme.to_owned(), format!("{req_host}{loc}"))
            }
        }
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, r) = v6.split_once(']').unwrap_or((v6, ""));
        (h.to_owned(), r.strip_prefix(':').unwrap_or("").to_owned())
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.to_owned()),
            None => (authority.to_owned(), String::new()),
        }
    };
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    Location {
        scheme,
        host,
        port,
        path: percent_decode(&tail[..path_end]),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| char::from(c).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn compare(case: &Case, target: &Target, ports: &Ports, got: &Got) -> Result<(), String> {
    let want = &case.response;
    if is_timeout(got.status) && want.status_codes.iter().any(|c| is_timeout(*c)) {
        return Ok(());
    }
    if !want.status_codes.contains(&got.status) {
        let mut why = format!(
            "expected status code to be one of {:?}, got {}",
            want.status_codes, got.status
        );
        if got.echo.is_some() {
            let _ = write!(why, " (from pod {:?})", echo_str(got.echo.as_ref(), "pod"));
        } else if !got.body.trim().is_empty() {
            let _ = write!(why, " (body {:?})", got.body.trim());
        }
        return Err(why);
    }

    // Response headers. The Go helper checks them on 200 answers only; here they are
    // checked on every answer whose status was expected (a CORS preflight answered 204 must
    // carry its headers as much as one answered 200).
    for (name, value) in &want.headers {
        let vals = got.header_values(name);
        if vals.is_empty() {
            return Err(format!(
                "expected response header {name} to be set, got headers {:?}",
                got.headers
            ));
        }
        let joined = vals.join(",");
        let (a, b) = if want.ignore_whitespace {
            (strip_ws(&joined), strip_ws(value))
        } else {
            (joined.clone(), value.clone())
        };
        if a != b {
            return Err(format!(
                "expected response header {name} to be set to {value}, got {joined}"
            ));
        }
    }
    for (name, allowed) in &want.one_of {
        let vals = got.header_values(name);
        if vals.is_empty() {
            return Err(format!(
                "expected response header {name} (one of {allowed:?}), got headers {:?}",
                got.headers
            ));
        }
        let joined = vals.join(",");
        let norm = |s: &str| {
            if want.ignore_whitespace {
                strip_ws(s)
            } else {
                s.to_owned()
            }
        };
        if !allowed.iter().any(|a| norm(a) == norm(&joined)) {
            return Err(format!(
                "expected response header {name} to be one of {allowed:?}, got {joined}"
            ));
        }
    }
    for name in &want.absent {
        let vals = got.header_values(name);
        if !vals.is_empty() {
            return Err(format!(
                "expected response header {name} to not be set, got {vals:?}"
            ));
        }
    }

    if got.status == 200 {
        let echo = got.echo.as_ref();
        let expected = case.expected_request.clone().unwrap_or_else(|| ExpReq {
            host: case.request.host.clone(),
            method: case.request.method.clone(),
            path: case.request.path.clone(),
            headers: (!case.request.headers.is_empty()).then(|| case.request.headers.clone()),
            absent: Vec::new(),
        });
        if case.expected_request.is_some() && expected.path.is_empty() {
            // The suite's "answered by the gateway itself" cases (CORS preflights): its
            // expected request is empty, so nothing may have reached an echo backend.
            if echo.is_some() {
                return Err(format!(
                    "expected the gateway to answer itself, but backend pod {:?} echoed path {:?}",
                    echo_str(echo, "pod"),
                    echo_str(echo, "path")
                ));
            }
            return Ok(());
        }
        let method = if expected.method.is_empty() {
            "GET"
        } else {
            expected.method.as_str()
        };
        let got_host = echo_str(echo, "host");
        if !expected.host.is_empty() && expected.host != got_host {
            return Err(format!(
                "expected host to be {}, got {got_host:?}",
                expected.host
            ));
        }
        let got_path = echo_str(echo, "path");
        if expected.path != got_path {
            return Err(format!(
                "expected path to be {}, got {got_path:?}{}",
                expected.path,
                if echo.is_none() {
                    " (the response was not an echo)"
                } else {
                    ""
                }
            ));
        }
        let got_method = echo_str(echo, "method");
        if method != got_method {
            return Err(format!(
                "expected method to be {method}, got {got_method:?}"
            ));
        }
        let got_ns = echo_str(echo, "namespace");
        if case.namespace != got_ns {
            return Err(format!(
                "expected namespace to be {:?}, got {got_ns:?}",
                case.namespace
            ));
        }
        if let Some(headers) = &expected.headers {
            for (name, value) in headers {
                match echo_header(echo, name) {
                    None => {
                        return Err(format!(
                            "expected {name} header to be set on the backend's request, actual headers: {}",
                            echo.and_then(|e| e.get("headers"))
                                .map(|h| h.to_string())
                                .unwrap_or_default()
                        ));
                    }
                    Some(v) if &v != value => {
                        return Err(format!(
                            "expected {name} header to be set to {value} on the backend's request, got {v}"
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        for name in &expected.absent {
            if let Some(v) = echo_header(echo, name) {
                return Err(format!(
                    "expected {name} header to not be set on the backend's request, got {v}"
                ));
            }
        }
        let pod = echo_str(echo, "pod");
        if !pod.starts_with(case.backend.as_str()) {
            return Err(format!(
                "expected pod name to start with {}, got {pod:?}",
                case.backend
            ));
        }
    } else if is_redirect(got.status) {
        let Some(want_r) = &case.redirect else {
            return Ok(());
        };
        let loc = got.header_values("location");
        let Some(loc) = loc.first() else {
            return Err(format!("redirect {} without a Location header", got.status));
        };
        let got_r = parse_location(loc, target.scheme, &target.url_host);
        // A reserved port stands for the manifest's port.
        let got_port = match got_r
            .port
            .parse::<u16>()
            .ok()
            .and_then(|p| ports.original(p))
        {
            Some(o) => o.to_string(),
            None => got_r.port.clone(),
        };
        let want_host = if want_r.host.is_empty() {
            got_r.host.clone()
        } else {
            want_r.host.clone()
        };
        let want_scheme = if want_r.scheme.is_empty() {
            target.scheme.to_owned()
        } else {
            want_r.scheme.clone()
        };
        let want_path = if want_r.path.is_empty() {
            case.request
                .path
                .split_once('?')
                .map(|(p, _)| p)
                .unwrap_or(&case.request.path)
                .to_owned()
        } else {
            want_r.path.clone()
        };
        if want_host != got_r.host {
            return Err(format!(
                "expected redirected hostname to be {want_host:?}, got {:?} (Location {loc})",
                got_r.host
            ));
        }
        if want_r.port.is_empty() {
            let scheme = got_r.scheme.to_ascii_lowercase();
            if scheme == "http" && got_port != "80" && !got_port.is_empty() {
                return Err(format!(
                    "for http scheme, expected redirected port to be 80 or not set, got {got_port:?} (Location {loc})"
                ));
            }
            if scheme == "https" && got_port != "443" && !got_port.is_empty() {
                return Err(format!(
                    "for https scheme, expected redirected port to be 443 or not set, got {got_port:?} (Location {loc})"
                ));
            }
        } else if want_r.port != got_port {
            return Err(format!(
                "expected redirected port to be {:?}, got {got_port:?} (Location {loc})",
                want_r.port
            ));
        }
        if want_scheme != got_r.scheme {
            return Err(format!(
                "expected redirected scheme to be {want_scheme:?}, got {:?} (Location {loc})",
                got_r.scheme
            ));
        }
        if want_path != got_r.path {
            return Err(format!(
                "expected redirected path to be {want_path:?}, got {:?} (Location {loc})",
                got_r.path
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Running a case.
// ---------------------------------------------------------------------------------------

fn target_for(
    case: &Case,
    prepared: &Prepared,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<Target, String> {
    let gw = &case.gateway;
    let listeners = prepared.ports.of_gateway(&gw.namespace, &gw.name);
    let (original, port) = match gw.port {
        Some(p) => (
            p,
            prepared
                .ports
                .get(&gw.namespace, &gw.name, p)
                .ok_or_else(|| {
                    format!(
                        "Gateway {}/{} has no listener on port {p}",
                        gw.namespace, gw.name
                    )
                })?,
        ),
        None => match listeners.as_slice() {
            [one] => *one,
            [] => {
                return Err(format!(
                    "no Gateway {}/{} in the manifests",
                    gw.namespace, gw.name
                ));
            }
            _ => {
                return Err(format!(
                    "Gateway {}/{} listens on several ports; the case must name one",
                    gw.namespace, gw.name
                ));
            }
        },
    };
    let https = case.protocol == Proto::Https;
    let default = if https { 443 } else { 80 };
    let url_host = if original == default {
        "127.0.0.1".to_owned()
    } else {
        format!("127.0.0.1:{port}")
    };
    Ok(Target {
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        url_host,
        scheme: if https { "https" } else { "http" },
        tls: https.then(|| Arc::clone(tls)),
    })
}

async fn one(target: &Target, case: &Case, ports: &Ports) -> Result<Got, String> {
    let got = send(target, case).await?;
    compare(case, target, ports, &got)?;
    Ok(got)
}

async fn run_case(
    case: &Case,
    prepared: &Prepared,
    cluster: &Cluster,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<(), String> {
    let target = Arc::new(target_for(case, prepared, tls)?);
    if case.protocol == Proto::Ws {
        for _ in 0..CONSECUTIVE {
            websocket_roundtrip(&target).await?;
        }
        return Ok(());
    }
    let start = Instant::now();
    for i in 0..CONSECUTIVE {
        one(&target, case, &prepared.ports).await.map_err(|e| {
            if i == 0 {
                e
            } else {
                format!("request {}: {e}", i + 1)
            }
        })?;
    }
    for m in &case.mirrored_to {
        if m.percent.is_some() {
            continue;
        }
        wait_mirrored(cluster, m, &case.request.path, start).await?;
    }
    if let Some(d) = &case.distribution {
        let mut last = String::new();
        for _ in 0..d.attempts {
            match weight_distribution(&target, case, d, &prepared.ports).await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        return Err(format!("weighted distribution: {last}"));
    }
    if let Some(d) = &case.mirror_distribution {
        mirror_distribution(&target, case, d, cluster, &prepared.ports).await?;
    }
    if let Some(b) = &case.backend_header {
        for _ in 0..b.requests {
            let got = send(&target, case).await?;
            let backends = echo_header(got.echo.as_ref(), &b.header);
            let Some(want) = backends.filter(|v| !v.contains(',')) else {
                return Err(format!(
                    "expected a single '{}' header to have been set",
                    b.header
                ));
            };
            let pod = echo_str(got.echo.as_ref(), "pod");
            if !pod.starts_with(want.as_str()) {
                return Err(format!(
                    "expected the backendRef to have set the correct headers and sent the request to the correct pod, got {pod:?}, want {want:?}"
                ));
            }
        }
    }
    Ok(())
}

async fn wait_mirrored(
    cluster: &Cluster,
    m: &Mirror,
    path: &str,
    since: Instant,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = cluster
            .service_pods(&m.namespace, &m.name)
            .iter()
            .any(|p| p.seen_since(since).iter().any(|r| r.path == path));
        if seen {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no mirrored request for {path} reached {}/{}",
                m.namespace, m.name
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `n` requests, `concurrency` at a time, each checked like the case; returns the pods
/// that answered.
async fn burst(
    target: &Arc<Target>,
    case: &Case,
    n: usize,
    concurrency: usize,
    ports: &Ports,
) -> Result<Vec<String>, String> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let case = Arc::new(case.clone());
    let ports = Arc::new(Ports {
        map: ports.map.clone(),
        held: Vec::new(),
    });
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, target, case, ports) =
            (next.clone(), target.clone(), case.clone(), ports.clone());
        tasks.push(tokio::spawn(async move {
            let mut pods = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                let got = one(&target, &case, &ports).await?;
                pods.push(echo_str(got.echo.as_ref(), "pod").to_owned());
            }
            Ok::<_, String>(pods)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| e.to_string())??);
    }
    Ok(all)
}

async fn weight_distribution(
    target: &Arc<Target>,
    case: &Case,
    d: &Distribution,
    ports: &Ports,
) -> Result<(), String> {
    let pods = burst(target, case, d.requests, d.concurrency, ports).await?;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for pod in &pods {
        let backend = d
            .weights
            .iter()
            .map(|(b, _)| b)
            .find(|b| pod.starts_with(b.as_str()))
            .ok_or_else(|| format!("request was handled by an unexpected pod {pod:?}"))?;
        *seen.entry(backend.clone()).or_default() += 1;
    }
    let mut errs = Vec::new();
    let nonzero = d.weights.iter().filter(|(_, w)| *w > 0.0).count();
    if seen.len() != nonzero {
        errs.push(format!(
            "expected only {nonzero} backends to receive traffic, got {seen:?}"
        ));
    }
    for (backend, want) in &d.weights {
        let got = *seen.get(backend).unwrap_or(&0) as f64 / d.requests as f64;
        if got == 0.0 && *want != 0.0 {
            errs.push(format!(
                "expect traffic to hit backend {backend:?} - but none was received"
            ));
        } else if (got - want).abs() > d.tolerance {
            errs.push(format!(
                "backend {backend:?} weighted traffic of {got} not within tolerance {want} (+/-{})",
                d.tolerance
            ));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

async fn mirror_distribution(
    target: &Arc<Target>,
    case: &Case,
    d: &MirrorDistribution,
    cluster: &Cluster,
    ports: &Ports,
) -> Result<(), String> {
    let since = Instant::now();
    burst(target, case, d.requests, d.concurrency, ports).await?;
    let mut errs = Vec::new();
    for m in &case.mirrored_to {
        let Some(percent) = m.percent else { continue };
        let count = || {
            cluster
                .service_pods(&m.namespace, &m.name)
                .iter()
                .map(|p| {
                    p.seen_since(since)
                        .iter()
                        .filter(|r| r.path == case.request.path)
                        .count()
                })
                .sum::<usize>()
        };
        // Mirrors are sent alongside: wait until the count stops growing.
        let mut last = count();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = count();
            if now == last || Instant::now() > deadline {
                last = now;
                break;
            }
            last = now;
        }
        let expected = d.requests as f64 * percent / 100.0;
        let (min, max) = (
            expected * (1.0 - d.tolerance_percent / 100.0),
            expected * (1.0 + d.tolerance_percent / 100.0),
        );
        let actual = last as f64;
        if actual < min || actual > max {
            errs.push(format!(
                "{} did not meet the mirroring percentage within tolerance: expected between {min} and {max}, got {actual}",
                m.name
            ));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

/// The suite's HTTPRouteBackendProtocolWebSocket check: dial `ws://<gateway>/ws`, send a
/// text and a binary message, get each back.
async fn websocket_roundtrip(target: &Target) -> Result<(), String> {
    let mut tcp = tokio::net::TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("failed to dial: {e}"))?;
    let key = weir_fixtures::echo::base64(b"gateway-api-conf");
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: ws://gateway/HTTPRouteBackendProtocolWebSocket\r\n\r\n",
        target.url_host
    );
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(REQUEST_TIMEOUT, tcp.read(&mut byte))
            .await
            .map_err(|_| "failed to dial: no handshake answer".to_owned())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!(
                "failed to dial: connection closed after {:?}",
                String::from_utf8_lossy(&head)
            ));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if !head.starts_with("HTTP/1.1 101") {
        return Err(format!(
            "failed to dial: {}",
            head.lines().next().unwrap_or("")
        ));
    }
    let want_accept = weir_fixtures::echo::websocket_accept(&key);
    if !head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("sec-websocket-accept:") && l.ends_with(&want_accept)
    }) {
        return Err("failed to dial: bad Sec-WebSocket-Accept".to_owned());
    }
    for (op, payload) in [
        (1u8, b"Websocket Support!".to_vec()),
        (2u8, vec![1, 2, 3, 4, 5, 6, 7]),
    ] {
        let mut frame = vec![0x80 | op, 0x80 | payload.len() as u8];
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        tcp.write_all(&frame)
            .await
            .map_err(|e| format!("failed to send frame: {e}"))?;
        let mut h = [0u8; 2];
        tokio::time::timeout(REQUEST_TIMEOUT, tcp.read_exact(&mut h))
            .await
            .map_err(|_| "failed to receive frame: timeout".to_owned())?
            .map_err(|e| format!("failed to receive frame: {e}"))?;
        let len = usize::from(h[1] & 0x7f);
        let mut reply = vec![0u8; len];
        tcp.read_exact(&mut reply)
            .await
            .map_err(|e| format!("failed to receive frame: {e}"))?;
        if h[0] & 0x0f != op || reply != payload {
            return Err(format!(
                "unexpected reply - want: {payload:?} got: opcode {} {reply:?}",
                h[0] & 0x0f
            ));
        }
    }
    let _ = tcp.write_all(&[0x88, 0x80, 0, 0, 0, 0]).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The test.
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    tests: usize,
    tests_skipped: usize,
    cases: usize,
    passed: usize,
    failed: usize,
    skipped: usize,
    derived_passed: usize,
    derived_failed: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_conformance_httproute() {
    let filter = std::env::var("GATEWAY_CONFORMANCE").unwrap_or_default();
    let strict = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("GATEWAY_CONFORMANCE_STRICT").is_ok_and(|v| v == "1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir().join("cases"))
        .expect("tests/gateway-conformance/cases")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.to_string_lossy().contains(filter.as_str()))
        .collect();
    files.sort();

    let cluster = Cluster::start().await;
    let mut report = String::new();
    let mut tally = Tally::default();
    let mut failures = Vec::new();

    for path in &files {
        let test = load_test_file(path);
        tally.tests += 1;
        let _ = writeln!(report, "\n{} ({})", test.test, test.file);
        if let Some(why) = &test.skip {
            tally.tests_skipped += 1;
            tally.skipped += test.cases.len();
            let _ = writeln!(report, "  SKIPPED test: {why}");
            continue;
        }
        for (check, why) in &test.not_run {
            let _ = writeln!(report, "  not run: {check}: {why}");
        }
        // A reserved port is let go just before weir binds it, and another test running
        // at the same time may take it in between: then again, with other ports.
        let mut started = None;
        for attempt in 1..=3 {
            let mut ca = Vec::new();
            let mut prepared = match prepare(&test, &cluster, &mut ca) {
                Ok(p) => p,
                Err(e) => {
                    started = Some(Err(format!("harness: {e}")));
                    break;
                }
            };
            match start_weir(&mut prepared).await {
                Ok(app) => {
                    started = Some(Ok((prepared, ca, app)));
                    break;
                }
                Err(e) if attempt < 3 && e.contains("address already in use") => continue,
                Err(e) => {
                    started = Some(Err(e));
                    break;
                }
            }
        }
        let (prepared, ca, weir) = match started {
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                fail_all(&test, &e, &mut report, &mut tally, &mut failures);
                continue;
            }
            None => unreachable!("three attempts end in a result"),
        };
        let tls = tls_client(&ca);
        for case in &test.cases {
            let tag = if case.derived { " [derived]" } else { "" };
            if let Some(why) = &case.skip {
                tally.skipped += 1;
                let _ = writeln!(report, "  SKIP {}{tag}: {why}", case.name);
                continue;
            }
            let result = run_case(case, &prepared, &cluster, &tls).await;
            match (&result, case.derived) {
                (Ok(()), false) => {
                    tally.cases += 1;
                    tally.passed += 1;
                }
                (Err(_), false) => {
                    tally.cases += 1;
                    tally.failed += 1;
                }
                (Ok(()), true) => tally.derived_passed += 1,
                (Err(_), true) => tally.derived_failed += 1,
            }
            match result {
                Ok(()) => {
                    let _ = writeln!(report, "  pass {}{tag}", case.name);
                }
                Err(e) => {
                    let _ = writeln!(report, "  FAIL {}{tag}: {e}", case.name);
                    failures.push(format!("{} / {}{tag}: {e}", test.test, case.name));
                }
            }
        }
        if std::env::var_os("GATEWAY_CONFORMANCE_VERBOSE").is_some() {
            for n in &prepared.notes {
                let _ = writeln!(report, "  rewrite: {n}");
            }
        }
        weir.shutdown().await;
        drop(prepared);
    }

    let summary = format!(
        "Gateway API conformance (HTTPRoute), weir from files: {} tests ({} skipped whole), {} cases run: {} passed, {} failed; {} cases skipped; derived checks (not in the Go suite): {} passed, {} failed",
        tally.tests,
        tally.tests_skipped,
        tally.cases,
        tally.passed,
        tally.failed,
        tally.skipped,
        tally.derived_passed,
        tally.derived_failed
    );
    let full = format!("{summary}\n{report}\n{summary}\n");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gateway-conformance-report.txt");
    let _ = std::fs::write(&out, &full);
    eprintln!("{full}\n(report written to {})", out.display());
    if strict {
        assert!(
            failures.is_empty(),
            "{} failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

fn fail_all(
    test: &TestFile,
    why: &str,
    report: &mut String,
    tally: &mut Tally,
    failures: &mut Vec<String>,
) {
    let _ = writeln!(report, "  FAIL all cases: {why}");
    for case in &test.cases {
        if case.skip.is_some() {
            tally.skipped += 1;
        } else if case.derived {
            tally.derived_failed += 1;
        } else {
            tally.cases += 1;
            tally.failed += 1;
        }
    }
    failures.push(format!("{}: {why}", test.test));
}

async fn start_weir(prepared: &mut Prepared) -> Result<App, String> {
    let path = prepared.dir.path().to_path_buf();
    let model = weir_config::load(&path).map_err(|e| {
        let text = e.to_string();
        let lines: Vec<&str> = text.lines().take(12).collect();
        format!("config error: {}", lines.join(" | "))
    })?;
    let opts = ServeOptions {
        config: path.clone(),
        state_dir: path.join("state"),
        workers: 2,
        measure: true,
        shutdown_grace: Duration::from_secs(2),
        watch: false,
        node: "test".into(),
    };
    // The reserved ports are released just before weir binds them.
    prepared.ports.held.clear();
    App::start(model, &opts)
        .await
        .map_err(|e| format!("weir did not start: {e}"))
}
