//! Argo fields whose handling is easy to get wrong: a scalar `pause`, a `weir` provider
//! window longer than the kept history, and fields that mean nothing without pods.

use std::path::Path;

use weir_config::{ConfigError, load_str};

fn rollout(strategy: &str) -> String {
    format!(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {{name: app}}
spec:
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec: {{containers: [{{name: app, image: "app:v1"}}]}}
  strategy:
{strategy}
"#
    )
}

fn errors(yaml: &str) -> Vec<String> {
    match load_str(Path::new("/t/app.yaml"), yaml) {
        Ok(_) => panic!("expected errors"),
        Err(ConfigError::Invalid(issues)) => issues.iter().map(|i| i.to_string()).collect(),
        Err(e) => panic!("unexpected {e}"),
    }
}

#[test]
fn a_scalar_pause_is_refused_with_the_right_form() {
    let e = errors(&rollout(
        "    canary:\n      steps:\n        - setWeight: 10\n        - pause: 10\n",
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("/t/app.yaml:14:")
            && e[0].contains("spec.strategy.canary.steps[1].pause")
            && e[0].contains("pause: {duration: 10}"),
        "{e:?}"
    );
}

#[test]
fn a_weir_window_beyond_the_history_is_refused() {
    let yaml = rollout("    canary:\n      steps: [{setWeight: 10}]\n")
        + r#"---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: t}
spec:
  metrics:
    - name: m
      successCondition: "result[0] > 0.9"
      provider: {weir: {metric: success-rate, window: 15m}}
"#;
    let e = errors(&yaml);
    assert!(
        e.iter()
            .any(|x| x.contains("provider.weir.window") && x.contains("10m or less")),
        "{e:?}"
    );
}

#[test]
fn pod_only_fields_are_named_in_one_notice() {
    let m = load_str(
        Path::new("/t/app.yaml"),
        &rollout(
            "    canary:\n      scaleDownDelaySeconds: 30\n      abortScaleDownDelaySeconds: 0\n      steps: [{setWeight: 10}]\n",
        ),
    )
    .unwrap();
    let notices: Vec<String> = m.notices.iter().map(|n| n.to_string()).collect();
    let n = notices
        .iter()
        .find(|n| n.contains("mean nothing without pods"))
        .unwrap_or_else(|| panic!("{notices:?}"));
    assert!(
        n.contains("scaleDownDelaySeconds") && n.contains("abortScaleDownDelaySeconds"),
        "{n}"
    );
}
