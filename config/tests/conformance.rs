//! Every file of `../shared/conformance` gives the outcome its README or header states,
//! checked alone as `weir check -c FILE` would; every error names file, line and field.

use std::path::{Path, PathBuf};

use weir_config::{ConfigError, load};

fn conformance(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/conformance")
        .join(rel)
}

fn valid(rel: &str) -> weir_config::Model {
    match load(&conformance(rel)) {
        Ok(m) => m,
        Err(e) => panic!("{rel} should be valid:\n{e}"),
    }
}

/// The errors of an invalid file, each checked to carry file:line:column.
fn errors(rel: &str) -> Vec<String> {
    match load(&conformance(rel)) {
        Ok(_) => panic!("{rel} should be refused"),
        Err(ConfigError::Invalid(issues)) => issues
            .iter()
            .map(|i| {
                assert!(i.pos.line > 0, "{rel}: an error without a line: {i}");
                assert!(
                    i.file.ends_with(rel),
                    "{rel}: error names another file: {i}"
                );
                i.to_string()
            })
            .collect(),
        Err(e) => panic!("{rel}: {e}"),
    }
}

fn notices(m: &weir_config::Model) -> String {
    m.notices
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn seed_files() {
    let m = valid("seed/01-canary-basic.yaml");
    let r = &m.argo.rollouts["my-app"];
    assert_eq!(r.image, "my-app:v2.0.0");
    match &r.strategy {
        weir_config::rollout::Strategy::Canary(c) => assert_eq!(c.steps.len(), 7),
        other => panic!("{other:?}"),
    }

    let m = valid("seed/02-canary-traefik.yaml");
    let n = notices(&m);
    assert!(n.contains("trafficRouting.traefik is not needed"), "{n}");
    assert!(n.contains("skipped TraefikService"), "{n}");

    for partial in [
        "seed/03-partial-nginx.yaml",
        "seed/04-partial-istio.yaml",
        "seed/07-partial-rollout-with-analysis.yaml",
    ] {
        let e = errors(partial);
        assert!(
            e[0].contains("metadata.name"),
            "{partial}: the first error names metadata.name: {e:?}"
        );
    }

    let m = valid("seed/05-bluegreen.yaml");
    match &m.argo.rollouts["my-app"].strategy {
        weir_config::rollout::Strategy::BlueGreen(b) => {
            assert_eq!(b.active_service, "my-app-active");
            assert_eq!(b.preview_service.as_deref(), Some("my-app-preview"));
            assert!(!b.auto_promotion_enabled);
        }
        other => panic!("{other:?}"),
    }
    let m = valid("seed/06-analysis-success-rate.yaml");
    assert_eq!(m.argo.templates.len(), 1);
    valid("seed/08-analysis-comprehensive.yaml");
    valid("seed/09-analysis-smoke-test.yaml");
    let m = valid("seed/10-notifications.yaml");
    assert!(
        m.argo.rollouts["my-app"]
            .annotations
            .contains_key("notifications.argoproj.io/subscribe.on-rollout-completed.slack")
    );
    let m = valid("seed/11-production-api.yaml");
    assert_eq!(m.argo.rollouts["api"].rollback_window, Some(2));
    let m = valid("seed/12-argocd-application.yaml");
    assert!(
        notices(&m).contains("skipped Application"),
        "{}",
        notices(&m)
    );

    let alone = valid("seed/11-production-api.yaml");
    assert!(
        notices(&alone)
            .contains("AnalysisTemplate \"smoke-test\" not in this configuration: add it")
    );

    // Checked together with 06 and 09, 11's templates are found, and Argo's rule applies:
    // 06's metric has an interval and no count, so it never ends, which a step analysis
    // may not do (argo-reference §9.4).
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "seed/11-production-api.yaml",
        "seed/06-analysis-success-rate.yaml",
        "seed/09-analysis-smoke-test.yaml",
    ] {
        std::fs::copy(
            conformance(f),
            dir.path().join(Path::new(f).file_name().unwrap()),
        )
        .unwrap();
    }
    match load(dir.path()) {
        Err(ConfigError::Invalid(issues)) => {
            assert_eq!(issues.len(), 2, "{issues:?}");
            assert!(
                issues.iter().all(|i| i.message.contains("never ends")),
                "{issues:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn argo_example_files() {
    for f in [
        "argo/rollout-canary.yaml",
        "argo/rollout-rolling-update.yaml",
        "argo/rollout-bluegreen.yaml",
        "argo/ambassador/rollout.yaml",
        "argo/istio/istio-subset-split.yaml",
        "argo/notifications/rollout-canary.yaml",
        "argo/analysis-templates.yaml",
        "argo/traffic-management/job.yaml",
        "argo/traffic-management/rollout-linkerd.yaml",
        "argo/appmesh/canary-rollout.yaml",
        "argo/apisix/rollout.yaml",
        "argo/istio/istio-mirror.yaml",
        "argo/workload-ref/workload-ref.yaml",
        "argo/rollout-template-ref.yaml",
        "argo/rollout-secret.yaml",
    ] {
        valid(f);
    }
    // setCanaryScale is accepted with a notice.
    assert!(notices(&valid("argo/apisix/rollout.yaml")).contains("setCanaryScale"));
    // workloadRef takes the template from the Deployment in the same file.
    let m = valid("argo/workload-ref/workload-ref.yaml");
    assert_eq!(
        m.argo.rollouts["rollout-ref-deployment"].image,
        "argoproj/rollouts-demo:blue"
    );

    let e = errors("argo/rollout-background-analysis.yaml");
    assert!(e.iter().any(|e| e.contains("random-fail")), "{e:?}");
    let e = errors("argo/rollout-analysis-step.yaml");
    assert!(
        e.iter()
            .any(|e| e.contains("random-fail") && e.contains("always-pass")),
        "{e:?}"
    );

    for f in [
        "argo/rollout-experiment-step.yaml",
        "argo/rollout-baseline-vs-canary.yaml",
        "argo/rollout-canary-preview.yaml",
        "argo/traffic-routing-experiment-step/istio-host-split-experiment-step.yaml",
        "argo/traffic-routing-experiment-step/rollout-alb-experiment-step.yaml",
        "argo/traffic-routing-experiment-step/rollout-smi-experiment-step.yaml",
    ] {
        let e = errors(f);
        assert!(
            e.iter()
                .any(|e| e.contains("experiment steps are not supported")),
            "{f}: {e:?}"
        );
    }
    let e = errors("argo/helm-blue-green/templates/rollout.yaml");
    assert_eq!(e.len(), 1);
    assert!(e[0].contains("not valid YAML"), "{e:?}");
}

/// rollout-background-analysis.yaml is valid together with analysis-templates.yaml;
/// rollout-secret.yaml is refused, naming the Secret, once the Secret is taken out.
#[test]
fn files_checked_together_and_apart() {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "argo/rollout-background-analysis.yaml",
        "argo/analysis-templates.yaml",
    ] {
        std::fs::copy(
            conformance(f),
            dir.path().join(Path::new(f).file_name().unwrap()),
        )
        .unwrap();
    }
    load(dir.path()).unwrap_or_else(|e| panic!("{e}"));

    let text = std::fs::read_to_string(conformance("argo/rollout-secret.yaml")).unwrap();
    let without_secret: Vec<&str> = text
        .split("\n---")
        .filter(|d| !d.contains("kind: Secret"))
        .collect();
    let path = dir.path().join("secret-less.yaml");
    std::fs::write(&path, without_secret.join("\n---")).unwrap();
    match load(&path) {
        Err(ConfigError::Invalid(issues)) => {
            let all: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
            assert!(
                all.iter()
                    .any(|e| e.contains("example-secret") && e.contains("secretKeyRef")),
                "{all:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn quickstart_example_loads() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart.yaml");
    let m = load(&p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.argo.rollouts["my-app"].image, "my-app:v1.0.0");
    assert_eq!(m.argo.templates.len(), 1);
}

/// The copies in this repository are the shared files, unchanged (checked where the
/// shared folder sits beside the checkout).
#[test]
fn copies_match_the_shared_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shared = root.join("../shared");
    if !shared.is_dir() {
        println!("skipped: {} is not here to compare with", shared.display());
        return;
    }
    let mut stack = vec![shared.join("conformance")];
    let mut compared = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(shared.join("conformance")).unwrap();
            let ours = root.join("tests/conformance").join(rel);
            assert_eq!(
                std::fs::read(&p).unwrap(),
                std::fs::read(&ours).unwrap_or_default(),
                "{}",
                rel.display()
            );
            compared += 1;
        }
    }
    for f in ["quickstart.yaml", "static-split.yaml"] {
        assert_eq!(
            std::fs::read(shared.join("examples").join(f)).unwrap(),
            std::fs::read(root.join("examples").join(f)).unwrap(),
            "{f}"
        );
    }
    assert!(compared > 30);
}
