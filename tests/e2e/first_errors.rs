//! The errors people meet first read well: what is wrong and what to do, in a line or
//! two, no backtrace. A config path that does not exist, a Rollout whose Service has no
//! endpoint for its image, an AnalysisTemplate that is not there. (A port in use is in
//! `shutdown.rs` for `serve` and `demo.rs` for the demo.)

use std::process::Command;
use std::time::Duration;

use crate::kit::*;
use crate::rollout::{CANARY, rollout_config, state};

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

#[test]
fn a_config_path_that_does_not_exist() {
    let out = Command::new(WEIR)
        .args(["serve", "-c", "/nowhere/weir.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no configuration at /nowhere/weir.yaml: there is no such file or folder")
            && err.contains("weir demo"),
        "{err}"
    );
    assert!(err.lines().count() <= 2, "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("os error"),
        "{err}"
    );
    let out = Command::new(WEIR)
        .args(["check", "-c", "/nowhere/weir.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no configuration at"));
}

#[test]
fn check_warns_of_missing_endpoints_and_templates_with_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.yaml");
    let yaml = rollout_config(
        "app:v2",
        "    canary:\n      steps:\n        - setWeight: 20\n        - analysis: {templates: [{templateName: succes-rate}]}",
        &[("127.0.0.1:9".parse().unwrap(), "app:v1")],
    );
    std::fs::write(&path, &yaml).unwrap();
    let out = Command::new(WEIR)
        .args(["check", "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "warnings do not fail the check");
    let text = String::from_utf8_lossy(&out.stdout);
    let line_of = |needle: &str| yaml.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let p = path.display();
    assert!(
        text.contains(&format!(
            "warning: {p}:{}: Rollout app: Service \"app\" has no endpoint with image app:v2: add `- {{address: HOST:PORT, image: app:v2}}`",
            line_of("template:")
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "warning: {p}:{}: AnalysisTemplate \"succes-rate\" not in this configuration: add it, or fix the templateName",
            line_of("succes-rate")
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_run_time_the_rollout_says_what_it_waits_for_and_why_it_aborted() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let weir = Weir::start(&rollout_config("app:v1", CANARY, &[(v1.addr(), "app:v1")])).await;
    crate::rollout::wait_phase(weir.admin(), "Healthy", Duration::from_secs(5)).await;

    // app:v2 has no endpoint yet: the update waits, with no canary traffic, and says so.
    weir.write_config(&rollout_config("app:v2", CANARY, &[(v1.addr(), "app:v1")]));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let last = loop {
        let s = state(weir.admin()).await;
        if s["message"]
            .as_str()
            .is_some_and(|m| m.contains("waiting for endpoints running app:v2"))
        {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rollout does not say it waits for endpoints: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(last["canaryWeight"], 0.0, "{last}");
    assert_eq!(last["phase"], "Progressing", "{last}");

    // The endpoint arrives, but the step's AnalysisTemplate is misspelled: the update
    // is aborted when it reaches the analysis, and the message names the template.
    let steps = "    canary:\n      steps:\n        - setWeight: 20\n        - analysis: {templates: [{templateName: succes-rate}]}";
    let eps = [(v1.addr(), "app:v1"), (v2.addr(), "app:v2")];
    weir.write_config(&rollout_config("app:v2", steps, &eps));
    let s = crate::rollout::wait_phase(weir.admin(), "Degraded", Duration::from_secs(10)).await;
    let events = s["events"].to_string();
    assert!(
        events.contains(
            "AnalysisTemplate \\\"succes-rate\\\" not found: add it to the configuration"
        ),
        "{events}"
    );
    assert_eq!(s["canaryWeight"], 0.0);
    assert!(weir.shutdown().await);
}

/// A Gateway and two HTTPRoutes, one that attaches and one whose parent does not
/// exist: `weir check -v` prints each object's conditions with the Gateway API's reason
/// names, and the admin API returns them as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_statuses_are_printed_by_check_and_served_by_the_admin_api() {
    let up = backend("up").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let yaml = format!(
        r#"apiVersion: weir.dev/v1alpha1
kind: Proxy
metadata: {{name: edge}}
spec:
  gatewayAddress: 127.0.0.1
  admin: {{address: "127.0.0.1:0"}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  gatewayClassName: weir
  listeners:
    - {{name: http, protocol: HTTP, port: {port}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: good}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
    - backendRefs: [{{name: echo, port: 80}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: orphan}}
spec:
  parentRefs: [{{name: nowhere}}]
  rules:
    - backendRefs: [{{name: echo, port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: echo}}
spec:
  ports: [{{port: 80, targetPort: {up_port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-1
  labels: {{kubernetes.io/service-name: echo}}
addressType: IPv4
endpoints: [{{addresses: ["127.0.0.1"]}}]
ports: [{{port: {up_port}}}]
"#,
        up_port = up.addr().port()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let out = Command::new(WEIR)
        .args(["check", "-v", "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for line in [
        "Gateway default/gw:",
        "  listener http (1 route attached):",
        "HTTPRoute default/good:",
        "HTTPRoute default/orphan:",
        "    Accepted=False (NoMatchingParent)",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }

    let weir = Weir::start_in(dir, "gw.yaml", &yaml).await;
    let web = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(
        get(web, "example.com", "/").await.header("x-backend"),
        Some("up")
    );
    let r = get(weir.admin(), "127.0.0.1", "/api/v1/gateway").await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let gw = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "Gateway" && s["name"] == "gw")
        .expect("the Gateway");
    assert_eq!(gw["sections"][0]["attachedRoutes"], 1, "{gw}");
    let orphan = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "HTTPRoute" && s["name"] == "orphan")
        .expect("the orphan route");
    assert_eq!(
        orphan["sections"][0]["conditions"][0]["reason"], "NoMatchingParent",
        "{orphan}"
    );
    weir.shutdown().await;
}
