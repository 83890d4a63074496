//! Hardening (issue 10): the admin token file, hostile expressions, durations too large
//! to hold, suspect reloads and unusual files in a config folder.

use std::path::Path;

use weir_config::model::AdminToken;
use weir_config::{ConfigError, load, load_str};

fn issues_of(r: Result<weir_config::Model, ConfigError>) -> Vec<String> {
    match r {
        Ok(_) => panic!("expected errors"),
        Err(ConfigError::Invalid(issues)) => issues.iter().map(|i| i.to_string()).collect(),
        Err(e) => panic!("unexpected {e}"),
    }
}

fn issues(yaml: &str) -> Vec<String> {
    issues_of(load_str(Path::new("/cfg/weir.yaml"), yaml))
}

fn proxy_with_admin(admin: &str) -> String {
    format!(
        "apiVersion: weir.dev/v1alpha1
kind: Proxy
metadata: {{name: edge}}
spec:
  listeners:
    - {{name: web, address: \"127.0.0.1:0\"}}
  admin:
{admin}
"
    )
}

// ---- A. spec.admin.tokenFile ----

#[test]
fn admin_token_file_is_read_relative_to_the_config_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/admin.token"), "  s3cret-token\n\n").unwrap();
    let cfg = dir.path().join("weir.yaml");
    std::fs::write(
        &cfg,
        proxy_with_admin("    address: \"127.0.0.1:0\"\n    tokenFile: secrets/admin.token"),
    )
    .unwrap();
    let m = load(&cfg).unwrap();
    let token = m.proxy.admin_token.as_ref().expect("a token");
    assert!(token.matches(b"s3cret-token"));
    assert!(!token.matches(b"s3cret-tokeN"));
    assert!(!token.matches(b"s3cret-token "));
    assert!(!token.matches(b""));
    // The watcher reloads when the token file changes.
    assert!(m.files.iter().any(|f| f.ends_with("secrets/admin.token")));
    // Never printed.
    assert_eq!(format!("{token:?}"), "AdminToken(***)");
    assert!(!format!("{m:?}").contains("s3cret"));
}

#[test]
fn no_token_file_means_no_token() {
    let m = load_str(
        Path::new("/cfg/weir.yaml"),
        &proxy_with_admin("    address: \"127.0.0.1:0\""),
    )
    .unwrap();
    assert!(m.proxy.admin_token.is_none());
}

#[test]
fn an_empty_or_missing_token_file_is_an_issue_at_the_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.token"), " \n\t\n").unwrap();
    let cfg = dir.path().join("weir.yaml");
    std::fs::write(
        &cfg,
        proxy_with_admin("    address: \"127.0.0.1:0\"\n    tokenFile: empty.token"),
    )
    .unwrap();
    let i = issues_of(load(&cfg));
    assert_eq!(i.len(), 1, "{i:?}");
    assert!(i[0].contains("weir.yaml:9:"), "{i:?}");
    assert!(i[0].contains("spec.admin.tokenFile"), "{i:?}");
    assert!(i[0].contains("is empty"), "{i:?}");

    std::fs::write(
        &cfg,
        proxy_with_admin("    address: \"127.0.0.1:0\"\n    tokenFile: missing.token"),
    )
    .unwrap();
    let i = issues_of(load(&cfg));
    assert_eq!(i.len(), 1, "{i:?}");
    assert!(i[0].contains("weir.yaml:9:"), "{i:?}");
    assert!(i[0].contains("spec.admin.tokenFile"), "{i:?}");
    assert!(i[0].contains("cannot read the admin token file"), "{i:?}");
}

#[test]
fn admin_token_debug_hides_the_secret() {
    let t = AdminToken::new(b"abc".to_vec());
    assert_eq!(format!("{t:?}"), "AdminToken(***)");
    assert!(t.matches(b"abc"));
    assert!(!t.matches(b"abd"));
    assert!(!t.matches(b"ab"));
}

// ---- B. expressions ----

fn template_with_condition(condition: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{name: t}}
spec:
  metrics:
    - name: m
      successCondition: {}
      provider: {{weir: {{metric: success-rate}}}}
",
        serde_json::to_string(condition).unwrap()
    )
}

#[test]
fn a_deeply_nested_condition_is_refused_without_a_crash() {
    let deep = format!("{}result{}", "(".repeat(5_000), ")".repeat(5_000));
    let i = issues(&template_with_condition(&deep));
    assert_eq!(i.len(), 1, "{i:?}");
    assert!(i[0].contains("successCondition"), "{i:?}");
    assert!(i[0].contains("nested more than 100 brackets deep"), "{i:?}");
    // Unclosed brackets too.
    let i = issues(&template_with_condition(&"(".repeat(5_000)));
    assert!(i[0].contains("nested more than 100 brackets deep"), "{i:?}");
}

#[test]
fn a_condition_expr_lang_panics_on_is_refused() {
    let i = issues(&template_with_condition("{a: [1]}"));
    assert_eq!(i.len(), 1, "{i:?}");
    assert!(i[0].contains("spec.metrics[0].successCondition"), "{i:?}");
    assert!(i[0].contains("not a valid expression"), "{i:?}");
    assert!(i[0].contains("cannot compile it"), "{i:?}");
}

#[test]
fn conditions_within_the_bounds_still_compile() {
    let nested = format!("{}result[0]{} > 0.9", "(".repeat(99), ")".repeat(99));
    let chain = format!("result[0]{} > 0", " + 1".repeat(900));
    for c in [nested, chain] {
        load_str(Path::new("/cfg/t.yaml"), &template_with_condition(&c)).unwrap();
    }
    assert!(weir_config::analysis::check_expression_depth(&"(".repeat(101)).is_err());
    assert_eq!(
        weir_config::analysis::check_expression_depth("a // c\n+ b").unwrap(),
        "a     \n+ b"
    );
}

// ---- C. integer durations too large to hold ----

fn rollout(spec: &str, strategy: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {{name: app}}
spec:
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec: {{containers: [{{name: app, image: \"app:v1\"}}]}}
{spec}  strategy:
{strategy}
"
    )
}

fn all_issues(yaml: &str) -> Vec<String> {
    match load_str(Path::new("/cfg/weir.yaml"), yaml) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(issues)) => issues.iter().map(|i| i.to_string()).collect(),
        Err(e) => panic!("unexpected {e}"),
    }
}

fn assert_too_long(yaml: &str, field: &str, written: &str) {
    let i = all_issues(yaml);
    assert!(
        i.iter()
            .any(|x| x.contains(field) && x.contains(&format!("{written:?} is too long"))),
        "{field}: {i:?}"
    );
}

#[test]
fn integer_durations_too_large_to_hold_are_refused() {
    const HUGE: &str = "18446744073709551";
    // The Go-duration form, for the wording.
    assert_too_long(
        &rollout(
            "",
            "    canary:\n      steps:\n        - pause: {duration: 2562047h}\n",
        ),
        "spec.strategy.canary.steps[0].pause.duration",
        "2562047h",
    );
    assert_too_long(
        &rollout(
            "",
            &format!("    canary:\n      steps:\n        - pause: {{duration: {HUGE}}}\n"),
        ),
        "spec.strategy.canary.steps[0].pause.duration",
        HUGE,
    );
    assert_too_long(
        &rollout(
            "",
            &format!("    canary:\n      steps:\n        - pause: {{duration: \"{HUGE}\"}}\n"),
        ),
        "spec.strategy.canary.steps[0].pause.duration",
        HUGE,
    );
    assert_too_long(
        &rollout(
            &format!("  progressDeadlineSeconds: {HUGE}\n"),
            "    canary: {steps: [{setWeight: 10}]}\n",
        ),
        "spec.progressDeadlineSeconds",
        HUGE,
    );
    for field in ["scaleDownDelaySeconds", "abortScaleDownDelaySeconds"] {
        assert_too_long(
            &rollout(
                "",
                &format!("    canary: {{{field}: {HUGE}, steps: [{{setWeight: 10}}]}}\n"),
            ),
            &format!("spec.strategy.canary.{field}"),
            HUGE,
        );
    }
    for field in [
        "autoPromotionSeconds",
        "scaleDownDelaySeconds",
        "abortScaleDownDelaySeconds",
    ] {
        assert_too_long(
            &rollout(
                "",
                &format!(
                    "    blueGreen: {{activeService: a, previewService: p, {field}: {HUGE}}}\n"
                ),
            ),
            &format!("spec.strategy.blueGreen.{field}"),
            HUGE,
        );
    }
    // The largest that fits is still taken.
    let max = weir_config::duration::MAX_SECONDS;
    let i = all_issues(&rollout(
        "",
        &format!("    canary:\n      steps:\n        - pause: {{duration: {max}}}\n"),
    ));
    assert!(!i.iter().any(|x| x.contains("too long")), "{i:?}");
}

// ---- D. suspect reloads ----

mod suspect {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use tokio::sync::watch;
    use weir_config::load;
    use weir_config::watch::{ConfigWatcher, ReloadStats};

    const QUICKSTART: &str = include_str!("../../examples/quickstart.yaml");

    /// The quickstart's Proxy and Service, the route sent to the Service: listeners and
    /// routes, no Rollout.
    fn proxy_only() -> String {
        let docs: Vec<&str> = QUICKSTART.split("\n---").collect();
        assert!(docs[0].contains("kind: Proxy") && docs[1].contains("kind: Service"));
        let proxy = docs[0].replace(
            "rollout: my-app ",
            "backends: [{service: my-app, weight: 100}] ",
        );
        assert_ne!(proxy, docs[0]);
        format!("{proxy}\n---{}", docs[1])
    }

    fn setup(
        text: &str,
    ) -> (
        tempfile::TempDir,
        ConfigWatcher,
        watch::Receiver<Arc<weir_config::Model>>,
        Arc<ReloadStats>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("weir.yaml");
        std::fs::write(&file, text).unwrap();
        let model = load(&file).unwrap();
        assert!(!model.proxy.listeners.is_empty() && !model.argo.rollouts.is_empty());
        let (tx, rx) = watch::channel(Arc::new(model));
        let stats = Arc::new(ReloadStats::default());
        let w = ConfigWatcher::new(file, tx, stats.clone());
        (dir, w, rx, stats)
    }

    fn last_issue(stats: &ReloadStats) -> String {
        let last = stats.last_issues.lock().unwrap();
        assert_eq!(last.len(), 1, "{last:?}");
        last[0].to_string()
    }

    #[test]
    fn an_empty_file_is_held_back_until_written_again() {
        let (dir, w, rx, stats) = setup(QUICKSTART);
        let file = dir.path().join("weir.yaml");
        std::fs::write(&file, "").unwrap();
        assert!(!w.reload(), "an empty config is not applied at once");
        assert_eq!(stats.failures.load(Ordering::Relaxed), 1);
        let msg = last_issue(&stats);
        assert!(msg.contains("the new configuration is empty"), "{msg}");
        assert!(
            msg.contains("an editor may be half-way through writing it: kept the last good one; write it again to apply"),
            "{msg}"
        );
        assert!(
            !rx.borrow().argo.rollouts.is_empty(),
            "the last good one stays"
        );

        // The same content again: meant.
        std::fs::write(&file, "").unwrap();
        assert!(w.reload());
        assert!(rx.borrow().argo.rollouts.is_empty());
        assert!(rx.borrow().proxy.listeners.is_empty());
        assert_eq!(stats.successes.load(Ordering::Relaxed), 1);
        assert!(stats.last_ok());
    }

    #[test]
    fn removing_every_rollout_is_held_back_and_a_good_write_clears_it() {
        let (dir, w, rx, stats) = setup(QUICKSTART);
        let file = dir.path().join("weir.yaml");
        std::fs::write(&file, proxy_only()).unwrap();
        assert!(!w.reload());
        let msg = last_issue(&stats);
        assert!(
            msg.contains("the new configuration has no rollouts;"),
            "{msg}"
        );
        assert!(!rx.borrow().argo.rollouts.is_empty());

        // The editor finishes writing: applied at once, and the held-back one forgotten.
        std::fs::write(&file, QUICKSTART).unwrap();
        assert!(w.reload());
        assert!(stats.last_ok());

        // So the suspect content once more is held back again, not taken as repeated.
        std::fs::write(&file, proxy_only()).unwrap();
        assert!(!w.reload());
        assert_eq!(stats.failures.load(Ordering::Relaxed), 2);
        // A different suspect content does not count as the same.
        std::fs::write(&file, format!("{}\n# edited\n", proxy_only())).unwrap();
        assert!(!w.reload());
        assert_eq!(stats.failures.load(Ordering::Relaxed), 3);
        assert!(!rx.borrow().argo.rollouts.is_empty());
        // Then the same twice in a row: applied.
        assert!(w.reload());
        assert!(rx.borrow().argo.rollouts.is_empty());
        assert!(!rx.borrow().proxy.listeners.is_empty());
    }

    #[test]
    fn removing_every_listener_and_route_is_named() {
        let (dir, w, _rx, stats) = setup(QUICKSTART);
        let file = dir.path().join("weir.yaml");
        let rest = QUICKSTART.split_once("\n---").unwrap().1;
        std::fs::write(&file, rest).unwrap();
        assert!(!w.reload());
        let msg = last_issue(&stats);
        assert!(
            msg.contains("the new configuration has no listeners and no routes;"),
            "{msg}"
        );
    }
}

// ---- E. what a folder holds, file sizes, parser messages, apiVersions ----

const SERVICE: &str = "apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {name: s}
spec:
  endpoints: [\"127.0.0.1:9001\"]
";

/// Runs `f` on another thread and fails if it takes more than 10 s (a hang).
fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("loading hung")
}

#[cfg(unix)]
#[test]
fn a_fifo_in_the_folder_is_skipped_with_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("service.yaml"), SERVICE).unwrap();
    let fifo = dir.path().join("pipe.yaml");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let path = dir.path().to_path_buf();
    let m = within_10s(move || load(&path)).unwrap();
    assert!(m.services.contains_key("s"));
    assert!(
        m.notices
            .iter()
            .any(|n| n.file.ends_with("pipe.yaml") && n.message.contains("not a regular file")),
        "{:?}",
        m.notices
    );
    assert!(!m.files.iter().any(|f| f.ends_with("pipe.yaml")));

    // Named directly: an error, not a hang.
    let e = within_10s(move || load(&fifo)).unwrap_err().to_string();
    assert!(e.contains("neither a regular file nor a folder"), "{e}");
}

#[test]
fn a_file_over_16_mib_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("service.yaml"), SERVICE).unwrap();
    let big = dir.path().join("big.yaml");
    let mut text = String::from("# padding\n");
    text.push_str(&"#".repeat((16 << 20) + 10));
    text.push('\n');
    std::fs::write(&big, text).unwrap();
    let i = issues_of(load(dir.path()));
    assert_eq!(i.len(), 1, "{i:?}");
    assert!(
        i[0].contains("big.yaml") && i[0].contains("16 MiB"),
        "{i:?}"
    );
    let i = issues_of(load(&big));
    assert!(
        i[0].contains("big.yaml") && i[0].contains("16 MiB"),
        "{i:?}"
    );
}

#[test]
fn parser_messages_do_not_name_its_internals() {
    let i = issues("a: 1\na: 2\n");
    assert_eq!(i.len(), 1, "{i:?}");
    assert!(i[0].contains("weir.yaml:2:1:"), "{i:?}");
    assert!(i[0].contains("\"a\" is written twice"), "{i:?}");
    assert!(
        !i[0].contains("DuplicateKeyPolicy") && !i[0].contains("Options"),
        "{i:?}"
    );
    assert!(!i[0].contains("at line"), "{i:?}");

    // Anchors and aliases past the parser's budget.
    let mut big = String::from("a: &a [");
    big.push_str(&"1,".repeat(300_000));
    big.push_str("]\nb: [");
    big.push_str(&"*a,".repeat(40));
    big.push_str("]\n");
    let i = issues(&big);
    assert_eq!(i.len(), 1, "{i:?}");
    for internal in ["RecordedAnchor", "budget breached", "{", "_"] {
        assert!(!i[0].contains(internal), "{i:?}");
    }
    assert!(i[0].contains("anchors and aliases"), "{i:?}");

    let i = issues("a: &x [*x]\n");
    assert!(!i[0].contains("weak recursion"), "{i:?}");
}

#[test]
fn a_weir_kind_at_an_unknown_version_is_an_error() {
    let i = issues(&SERVICE.replace("weir.dev/v1alpha1", "weir.dev/v1"));
    assert_eq!(i.len(), 1, "{i:?}");
    assert!(i[0].contains("apiVersion"), "{i:?}");
    assert!(i[0].contains("weir.dev/v1alpha1"), "{i:?}");
    let i = issues(
        "apiVersion: argoproj.io/v1beta1
kind: Rollout
metadata: {name: app}
",
    );
    assert_eq!(i.len(), 1, "{i:?}");
    assert!(i[0].contains("argoproj.io/v1alpha1"), "{i:?}");
    // Other kinds of other groups are still skipped.
    let m = load_str(
        Path::new("/cfg/weir.yaml"),
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: w}\n",
    )
    .unwrap();
    assert!(
        m.notices
            .iter()
            .any(|n| n.message.contains("skipped Workflow"))
    );
}

/// A token file or a certificate that is a FIFO (or any special file) is refused at
/// once, never read: opening a FIFO would block the reload until something writes.
#[test]
fn token_and_certificate_files_that_are_not_regular_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        assert!(std::env::var_os("CI").is_none(), "mkfifo is missing");
        eprintln!("skipped: no mkfifo here");
        return;
    }
    let cfg = dir.path().join("weir.yaml");
    std::fs::write(
        &cfg,
        proxy_with_admin("    address: \"127.0.0.1:0\"\n    tokenFile: fifo"),
    )
    .unwrap();
    let i = issues_of(load(&cfg));
    assert_eq!(i.len(), 1, "{i:?}");
    assert!(i[0].contains("not a regular file"), "{i:?}");

    std::fs::write(
        &cfg,
        "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {name: edge}\nspec:\n  listeners:\n    - name: tls\n      address: \"127.0.0.1:0\"\n      tls:\n        certificates: [{certFile: fifo, keyFile: fifo}]\n  admin: {address: \"127.0.0.1:0\"}\n",
    )
    .unwrap();
    let i = issues_of(load(&cfg));
    assert!(!i.is_empty(), "{i:?}");
    assert!(i.iter().all(|i| i.contains("not a regular file")), "{i:?}");
}
