//! The stages one at a time: read -> decode -> validate (pure: the I/O it needs is listed,
//! each piece with its field) -> load (does that I/O and reports a failure at the field).

use std::path::Path;

use weir_config::analysis::MetricEnv;
use weir_config::decode::argo::{CanaryStep, StepEntry};
use weir_config::decode::{self, Findings};
use weir_config::validate::{self, Address, Slot, Validated};
use weir_config::{ConfigError, load_str, read};

const FILE: &str = "/cfg/weir.yaml";

fn validated(yaml: &str) -> Validated {
    let r = read::read_str(Path::new(FILE), yaml);
    assert!(r.issues.is_empty(), "{:?}", r.issues);
    let mut findings = Findings::default();
    let docs = decode::decode(r.docs, &mut findings);
    validate::validate(docs, findings, &MetricEnv::default())
}

fn issues(yaml: &str) -> Vec<String> {
    match load_str(Path::new(FILE), yaml) {
        Ok(_) => panic!("expected errors"),
        Err(ConfigError::Invalid(issues)) => issues.iter().map(|i| i.to_string()).collect(),
        Err(e) => panic!("unexpected {e}"),
    }
}

const WITH_IO: &str = r#"apiVersion: weir.dev/v1alpha1
kind: Proxy
metadata: {name: edge}
spec:
  listeners:
    - name: web
      address: "127.0.0.1:8443"
      tls:
        certificates:
          - {certFile: certs/missing.pem, keyFile: certs/missing.key}
  admin: {address: "admin.invalid:9901"}
  routes:
    - name: r
      backends: [{service: app}]
---
apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {name: app}
spec:
  endpoints: ["backend.invalid:80", "127.0.0.1:9001"]
"#;

#[test]
fn validation_lists_the_io_it_needs_and_does_none() {
    let v = validated(WITH_IO);
    assert!(v.findings.issues.is_empty(), "{:?}", v.findings.issues);

    // Host names are left to the load stage, with the field that names them; IP
    // addresses are in the model already.
    let hosts: Vec<(String, u32, &str)> =
        v.io.addresses
            .iter()
            .filter(|u| matches!(u.address, Address::Host(_)))
            .map(|u| (u.written.clone(), u.at.pos.line, u.at.field.as_str()))
            .collect();
    assert_eq!(
        hosts,
        vec![
            (
                "backend.invalid:80".to_owned(),
                20,
                "spec.endpoints[0].address"
            ),
            ("admin.invalid:9901".to_owned(), 11, "spec.admin.address"),
        ]
    );
    assert!(v.io.addresses.iter().any(|u| u.slot == Slot::Listener(0)
        && u.address == Address::Ip("127.0.0.1:8443".parse().unwrap())));
    assert_eq!(
        v.model.proxy.listeners[0].address,
        "127.0.0.1:8443".parse().unwrap()
    );

    // Certificates are named, not read: the listener has none yet.
    assert!(v.model.proxy.listeners[0].tls.is_none());
    let c = &v.io.certificates[0].certificates[0];
    assert_eq!(c.cert_file, Path::new("/cfg/certs/missing.pem"));
    assert_eq!(
        (c.cert_at.pos.line, c.cert_at.field.as_str()),
        (10, "spec.listeners[0].tls.certificates[0].certFile")
    );
    assert!(
        v.io.files
            .contains(&Path::new("/cfg/certs/missing.key").to_path_buf())
    );
}

#[test]
fn the_load_stage_reports_io_failures_at_their_field() {
    // Only the certificate fails (no name to resolve), so this does no DNS lookup.
    let yaml = WITH_IO
        .replace("admin.invalid:9901", "127.0.0.1:9901")
        .replace("backend.invalid:80", "127.0.0.1:9002");
    let got = issues(&yaml);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with(
            "/cfg/weir.yaml:10:14: spec.listeners[0].tls.certificates[0].certFile: cannot read certificates from /cfg/certs/missing.pem"
        ),
        "{got:?}"
    );
}

#[test]
fn a_bad_port_is_refused_without_asking_dns() {
    let yaml = WITH_IO.replace("backend.invalid:80", "backend.invalid:http");
    let v = validated(&yaml);
    let got: Vec<String> = v.findings.issues.iter().map(|i| i.to_string()).collect();
    assert_eq!(
        got,
        vec![
            "/cfg/weir.yaml:20:15: spec.endpoints[0].address: \"backend.invalid:http\" is not an address: invalid port value"
        ]
    );
}

#[test]
fn addresses_shared_after_resolution_are_reported() {
    let yaml = WITH_IO
        .replace("admin.invalid:9901", "127.0.0.1:8443")
        .replace("backend.invalid:80", "127.0.0.1:9001");
    let got = issues(&yaml);
    for want in [
        "/cfg/weir.yaml:11:11: spec.admin.address: 127.0.0.1:8443 is already the address of listener \"web\"",
        "/cfg/weir.yaml:20:33: spec.endpoints[1]: endpoint 127.0.0.1:9001 is listed twice",
    ] {
        assert!(
            got.iter().any(|g| g == want),
            "missing {want:?} in {got:#?}"
        );
    }
}

#[test]
fn canary_steps_decode_into_a_typed_enum() {
    let r = read::read_str(
        Path::new(FILE),
        "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: app}\nspec:\n  strategy:\n    canary:\n      steps:\n        - setWeight: 10\n        - pause: {duration: 1m}\n        - {setCanaryScale: {weight: 10}, setWeight: 20}\n        - 7\n",
    );
    let mut findings = Findings::default();
    let docs = decode::decode(r.docs, &mut findings);
    let steps = docs.rollouts[0]
        .1
        .spec
        .as_ref()
        .unwrap()
        .strategy
        .as_ref()
        .unwrap();
    let steps = steps.canary.as_ref().unwrap().steps.as_ref().unwrap();
    let kinds: Vec<Vec<&str>> = steps
        .iter()
        .map(|s| match s {
            StepEntry::Mapping { kinds, .. } => kinds.iter().map(CanaryStep::key).collect(),
            StepEntry::NotAMapping => vec![],
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            vec!["setWeight"],
            vec!["pause"],
            vec!["setCanaryScale", "setWeight"],
            vec![]
        ]
    );
}

/// A `secretKeyRef` issue names the arg it is in, even after an arg that is refused.
#[test]
fn a_secret_arg_issue_names_its_own_arg() {
    let yaml = "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: t}\nspec:\n  args:\n    - {value: nameless}\n    - name: token\n      valueFrom: {secretKeyRef: {name: missing, key: k}}\n  metrics:\n    - {name: m, provider: {weir: {metric: success-rate}}}\n";
    let got = issues(yaml);
    assert!(
        got.iter().any(|g| g.starts_with(
            "/cfg/weir.yaml:8:34: spec.args[1].valueFrom.secretKeyRef.name: arg \"token\" reads Secret \"missing\""
        )),
        "{got:#?}"
    );
}
