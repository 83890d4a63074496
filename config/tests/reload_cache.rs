//! The loader that reloads keep: only the documents whose text changed are parsed and
//! decoded again, and what it loads is what a fresh load of the same files gives, issues
//! (file, line and field) included.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;
use weir_config::load::Reuse;
use weir_config::watch::{ConfigWatcher, ReloadStats};
use weir_config::{ConfigError, Loader, Model, load};

/// A Proxy routing to `n` Services, a kind weir skips (a notice from decoding), and the
/// Services, one document each. Service `i`'s endpoint port is `ports[i]`.
fn config(ports: &[u16]) -> String {
    let mut y = String::from(
        "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {name: edge}\nspec:\n  listeners:\n    - {name: web, address: \"127.0.0.1:8080\"}\n  admin: {address: \"127.0.0.1:9901\"}\n  routes:\n",
    );
    for i in 0..ports.len() {
        y.push_str(&format!(
            "    - {{name: r{i}, match: {{pathPrefix: /r{i}}}, backends: [{{service: app-{i}}}]}}\n"
        ));
    }
    y.push_str("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: skipped}\n");
    for (i, port) in ports.iter().enumerate() {
        y.push_str(&format!(
            "---\napiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata:\n  name: app-{i}\nspec:\n  endpoints:\n    - address: \"127.0.0.1:{port}\"\n"
        ));
    }
    y
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn port_of(m: &Model, service: &str) -> u16 {
    m.services[service].endpoints[0].address.port()
}

fn messages(r: Result<Model, ConfigError>) -> Vec<String> {
    match r {
        Ok(_) => panic!("expected issues"),
        Err(ConfigError::Invalid(issues)) => issues.iter().map(|i| i.to_string()).collect(),
        Err(e) => panic!("unexpected {e}"),
    }
}

/// What a loader that has seen other versions of the files loads is what a fresh load
/// loads (the notices, with their files and lines, included).
fn assert_same_as_fresh(loaded: &Model, path: &Path) {
    let fresh = load(path).unwrap();
    assert_eq!(format!("{loaded:?}"), format!("{fresh:?}"));
    let notices = |m: &Model| m.notices.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(notices(loaded), notices(&fresh));
}

#[test]
fn a_changed_document_is_parsed_and_decoded_again_and_the_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    write(&path, &config(&[9001, 9002, 9003]));
    let loader = Loader::new();
    let first = loader.load(&path).unwrap();
    assert_eq!(port_of(&first, "app-1"), 9002);
    // Proxy, ConfigMap, three Services.
    assert_eq!(
        loader.last_reuse(),
        Reuse {
            parsed: 5,
            reused: 0,
            decoded: 5,
            whole_files: 0,
            routes_checked: 0,
            routes_attached: 0,
        }
    );

    // One Service's endpoint changes; the line count does not.
    write(&path, &config(&[9001, 9012, 9003]));
    let second = loader.load(&path).unwrap();
    assert_eq!(port_of(&second, "app-1"), 9012);
    assert_eq!(port_of(&second, "app-0"), 9001);
    assert_eq!(
        loader.last_reuse(),
        Reuse {
            parsed: 1,
            reused: 4,
            decoded: 1,
            whole_files: 0,
            routes_checked: 0,
            routes_attached: 0,
        }
    );
    assert_same_as_fresh(&second, &path);

    // Nothing changes: nothing is parsed or decoded.
    let third = loader.load(&path).unwrap();
    assert_eq!(loader.last_reuse().parsed, 0);
    assert_eq!(loader.last_reuse().decoded, 0);
    assert_eq!(format!("{third:?}"), format!("{second:?}"));
}

#[test]
fn documents_moved_down_the_file_are_reused_and_report_their_new_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    let base = config(&[9001, 9002]);
    write(&path, &base);
    let loader = Loader::new();
    loader.load(&path).unwrap();

    // Two comment lines at the end of the first document (the Proxy): the documents
    // after it move down, and do not change.
    write(&path, &base.replacen("---\n", "# one\n# two\n---\n", 1));
    let moved = loader.load(&path).unwrap();
    assert_eq!(loader.last_reuse().parsed, 1);
    assert_eq!(loader.last_reuse().reused, 3);
    assert_eq!(loader.last_reuse().decoded, 1);
    // The ConfigMap's notice (from decoding, reused) names its new line.
    let line = base.lines().position(|l| l == "kind: ConfigMap").unwrap() + 1 + 2;
    let notice = moved
        .notices
        .iter()
        .map(|n| n.to_string())
        .find(|n| n.contains("ConfigMap"))
        .unwrap();
    assert!(notice.contains(&format!("weir.yaml:{line}")), "{notice}");
    assert_same_as_fresh(&moved, &path);
}

#[test]
fn an_error_in_a_changed_document_names_its_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    let good = config(&[9001, 9002, 9003]);
    write(&path, &good);
    let loader = Loader::new();
    loader.load(&path).unwrap();

    // app-2's endpoints become a number (a decoding error) and app-1 gets a field that
    // does not exist.
    let bad = good
        .replacen(
            "  name: app-2\nspec:\n  endpoints:\n    - address: \"127.0.0.1:9003\"\n",
            "  name: app-2\nspec:\n  endpoints: 5\n",
            1,
        )
        .replacen(
            "  name: app-1\nspec:\n",
            "  name: app-1\nspec:\n  colour: blue\n",
            1,
        );
    assert_ne!(bad, good);
    write(&path, &bad);
    let cached = messages(loader.load(&path));
    assert_eq!(loader.last_reuse().parsed, 2);
    assert_eq!(loader.last_reuse().decoded, 2);
    // Exactly what a fresh load says.
    assert_eq!(cached, messages(load(&path)));
    let line_of = |needle: &str| bad.lines().position(|l| l == needle).unwrap() + 1;
    let file = path.display().to_string();
    let at = |line: usize, field: &str| format!("{file}:{line}:3: {field}:");
    assert!(
        cached
            .iter()
            .any(|m| m.starts_with(&at(line_of("  endpoints: 5"), "spec.endpoints"))),
        "{cached:#?}"
    );
    assert!(
        cached
            .iter()
            .any(|m| m.starts_with(&at(line_of("  colour: blue"), "spec.colour"))),
        "{cached:#?}"
    );

    // The same broken documents moved down by an edit above them: reused, and the
    // issues name the new lines.
    let moved = bad.replacen("---\n", "# a comment\n---\n", 1);
    write(&path, &moved);
    let again = messages(loader.load(&path));
    // The Proxy's text changed; the broken Services' did not.
    assert_eq!(loader.last_reuse().decoded, 1);
    assert_eq!(again, messages(load(&path)));
    let line_of = |needle: &str| moved.lines().position(|l| l == needle).unwrap() + 1;
    assert!(
        again
            .iter()
            .any(|m| m.starts_with(&at(line_of("  endpoints: 5"), "spec.endpoints"))),
        "{again:#?}"
    );
}

#[test]
fn a_syntax_error_is_reported_as_the_whole_file_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    let good = config(&[9001, 9002]);
    write(&path, &good);
    let loader = Loader::new();
    loader.load(&path).unwrap();
    let bad = good.replacen("  name: app-1\n", "  name: [app-1\n", 1);
    write(&path, &bad);
    let cached = messages(loader.load(&path));
    assert_eq!(cached, messages(load(&path)));
    assert!(cached[0].contains("not valid YAML"), "{cached:?}");
    assert_eq!(loader.last_reuse().whole_files, 1);
}

#[test]
fn removing_a_file_drops_its_objects() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    let all = config(&[9001, 9002]);
    // a.yaml: the Proxy and the ConfigMap, routing to app-0 only; b.yaml: the Services,
    // and a Service app-9 that nothing routes to.
    let at = all
        .find("---\napiVersion: weir.dev/v1alpha1\nkind: Service")
        .unwrap();
    let (head, services) = all.split_at(at);
    write(
        &a,
        &head.replacen(
            "    - {name: r1, match: {pathPrefix: /r1}, backends: [{service: app-1}]}\n",
            "",
            1,
        ),
    );
    write(&b, services);
    let extra = dir.path().join("c.yaml");
    write(
        &extra,
        "apiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {name: app-9}\nspec:\n  endpoints: [{address: \"127.0.0.1:9009\"}]\n",
    );
    let loader = Loader::new();
    let before = loader.load(dir.path()).unwrap();
    assert!(before.services.contains_key("app-9"));
    assert_eq!(before.files.len(), 3);

    std::fs::remove_file(&extra).unwrap();
    let after = loader.load(dir.path()).unwrap();
    assert!(!after.services.contains_key("app-9"));
    assert!(after.services.contains_key("app-1"));
    assert_eq!(after.files.len(), 2);
    assert_eq!(loader.last_reuse().parsed, 0);
    assert_same_as_fresh(&after, dir.path());

    // Written again, it is a new file to the loader: parsed, not remembered.
    write(
        &extra,
        "apiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {name: app-9}\nspec:\n  endpoints: [{address: \"127.0.0.1:9009\"}]\n",
    );
    let back = loader.load(dir.path()).unwrap();
    assert!(back.services.contains_key("app-9"));
    assert_eq!(loader.last_reuse().parsed, 1);
}

#[test]
fn a_file_with_anchors_is_parsed_whole_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    let text = config(&[9001, 9002]).replacen(
        "    - address: \"127.0.0.1:9001\"\n",
        "    - &ep {address: \"127.0.0.1:9001\"}\n",
        1,
    );
    write(&path, &text);
    let loader = Loader::new();
    let first = loader.load(&path).unwrap();
    assert_eq!(port_of(&first, "app-0"), 9001);
    assert_eq!(loader.last_reuse().whole_files, 1);
    loader.load(&path).unwrap();
    assert_eq!(
        loader.last_reuse(),
        Reuse {
            parsed: 0,
            reused: 0,
            decoded: 4,
            whole_files: 1,
            routes_checked: 0,
            routes_attached: 0,
        }
    );
    assert_same_as_fresh(&first, &path);
}

#[test]
fn the_last_good_config_keeps_serving_when_a_changed_document_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    let good = config(&[9001, 9002]);
    write(&path, &good);
    let loader = Loader::new();
    let model = loader.load(&path).unwrap();
    let (tx, rx) = watch::channel(Arc::new(model));
    let stats = Arc::new(ReloadStats::default());
    let w = ConfigWatcher::new(path.clone(), tx, stats.clone()).with_loader(loader.clone());

    write(
        &path,
        &good.replacen("127.0.0.1:9002", "127.0.0.1:notaport", 1),
    );
    assert!(!w.reload());
    assert_eq!(stats.failures.load(Ordering::Relaxed), 1);
    assert_eq!(
        port_of(&rx.borrow(), "app-1"),
        9002,
        "the last good model stays"
    );
    let issues = stats.last_issues.lock().unwrap().clone();
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].field, "spec.endpoints[0].address");
    assert_eq!(loader.last_reuse().parsed, 1);

    write(&path, &good.replacen("127.0.0.1:9002", "127.0.0.1:9022", 1));
    assert!(w.reload());
    assert_eq!(port_of(&rx.borrow(), "app-1"), 9022);
    assert_eq!(loader.last_reuse().parsed, 1);
    assert!(stats.last_ok());
}

#[tokio::test]
async fn the_watcher_loads_off_the_runtime_with_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    write(&path, &config(&[9001, 9002]));
    let (tx, rx) = watch::channel(Arc::new(load(&path).unwrap()));
    let stats = Arc::new(ReloadStats::default());
    let w = ConfigWatcher::new(path.clone(), tx, stats.clone());
    write(&path, &config(&[9001, 9032]));
    assert!(w.reload_async().await);
    assert_eq!(port_of(&rx.borrow(), "app-1"), 9032);
    assert_same_as_fresh(&rx.borrow(), &path);
    write(
        &path,
        "apiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {name: 5}\n",
    );
    assert!(!w.reload_async().await);
    assert_eq!(port_of(&rx.borrow(), "app-1"), 9032);
}

/// A Gateway, Services `svc-0..services` (each with an EndpointSlice) and one HTTPRoute
/// per entry of `routes`: its hostname's number and the Service it sends to.
fn gateway_config(services: usize, routes: &[(usize, usize)]) -> String {
    let mut y = String::from(
        "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {name: edge}\nspec:\n  gatewayAddress: 127.0.0.1\n  admin: {address: \"127.0.0.1:9901\"}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: default}\nspec:\n  gatewayClassName: weir\n  listeners:\n    - {name: http, protocol: HTTP, port: 8080, allowedRoutes: {namespaces: {from: Same}}}\n",
    );
    for j in 0..services {
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{j}, namespace: default}}\nspec:\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: svc-{j}-1\n  namespace: default\n  labels: {{kubernetes.io/service-name: svc-{j}}}\naddressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints:\n  - {{addresses: [\"127.0.0.1\"], conditions: {{ready: true}}}}\n",
            9000 + j
        ));
    }
    for (i, (host, svc)) in routes.iter().enumerate() {
        y.push_str(&format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: route-{i}, namespace: default}}\nspec:\n  parentRefs: [{{name: edge}}]\n  hostnames: [\"app-{host}.example\"]\n  rules:\n    - name: web\n      matches: [{{path: {{type: PathPrefix, value: /}}}}]\n      backendRefs: [{{name: svc-{svc}, port: 80}}]\n"
        ));
    }
    y
}

fn everything(r: &Result<Model, ConfigError>) -> String {
    match r {
        Ok(m) => format!(
            "{m:?}\n{:?}",
            m.notices.iter().map(|n| n.to_string()).collect::<Vec<_>>()
        ),
        Err(ConfigError::Invalid(issues)) => format!(
            "{:?}",
            issues.iter().map(|i| i.to_string()).collect::<Vec<_>>()
        ),
        Err(e) => format!("{e}"),
    }
}

#[test]
fn an_unchanged_httproute_is_not_checked_again_but_its_references_are() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    write(&path, &gateway_config(3, &[(0, 0), (1, 1), (2, 2)]));
    let loader = Loader::new();
    let first = loader.load(&path).unwrap();
    assert_eq!(first.proxy.routes.len(), 3);
    assert_eq!(loader.last_reuse().routes_checked, 3);

    // One route's backend changes: only it is checked alone again.
    write(&path, &gateway_config(3, &[(0, 0), (1, 2), (2, 2)]));
    let second = loader.load(&path);
    assert_eq!(loader.last_reuse().routes_checked, 1);
    assert_eq!(everything(&second), everything(&load(&path)));

    // svc-2 goes: the routes that name it did not change, and still report it, as a fresh
    // load does.
    write(&path, &gateway_config(2, &[(0, 0), (1, 2), (2, 2)]));
    let third = loader.load(&path);
    assert_eq!(loader.last_reuse().routes_checked, 0);
    let fresh = load(&path);
    assert_eq!(everything(&third), everything(&fresh));
    assert!(
        everything(&third).contains("svc-2"),
        "{}",
        everything(&third)
    );

    // Two routes with one hostname and name: the second is refused whether or not it
    // was checked before.
    let text = gateway_config(2, &[(0, 0), (1, 1), (1, 1)]);
    let dup = text.replacen("name: route-2,", "name: route-1,", 1);
    write(&path, &dup);
    let fourth = loader.load(&path);
    assert_eq!(everything(&fourth), everything(&load(&path)));
    assert!(
        everything(&fourth).contains("defined twice"),
        "{}",
        everything(&fourth)
    );
}

#[test]
fn an_httproute_issue_kept_from_before_names_its_new_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    let bad = gateway_config(2, &[(0, 0), (1, 1)]).replacen("- name: web", "- name: Web_Rule", 1);
    write(&path, &bad);
    let loader = Loader::new();
    let first = loader.load(&path);
    assert!(
        everything(&first).contains("is not a rule name"),
        "{}",
        everything(&first)
    );

    // A line added in the Proxy document moves the routes down; they are not checked
    // again, and the issue names the new line.
    let moved = bad.replacen("---\n", "# moved\n---\n", 1);
    write(&path, &moved);
    let second = loader.load(&path);
    assert_eq!(loader.last_reuse().routes_checked, 0);
    assert_eq!(loader.last_reuse().decoded, 1);
    assert_eq!(everything(&second), everything(&load(&path)));
    let line = moved
        .lines()
        .position(|l| l == "    - name: Web_Rule")
        .unwrap()
        + 1;
    assert!(
        everything(&second).contains(&format!("weir.yaml:{line}:")),
        "{}",
        everything(&second)
    );
}

/// `gateway_config`, with HTTPRoute `bad` (when given) attached to a Gateway that does
/// not exist: a warning at its parentRef, kept from one load to the next.
fn gateway_config_with(services: usize, routes: &[(usize, usize)], bad: Option<usize>) -> String {
    let mut y = gateway_config(services, routes);
    if let Some(i) = bad {
        let at = y.find(&format!("name: route-{i},")).unwrap();
        let parent = y[at..].find("parentRefs: [{name: edge}]").unwrap() + at;
        y.replace_range(
            parent..parent + "parentRefs: [{name: edge}]".len(),
            "parentRefs: [{name: nowhere}]",
        );
    }
    y
}

#[test]
fn an_unchanged_httproute_is_not_attached_again_while_nothing_it_depends_on_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    let loader = Loader::new();
    let step = |text: &str| {
        write(&path, text);
        let cached = loader.load(&path);
        assert_eq!(everything(&cached), everything(&load(&path)));
        (cached, loader.last_reuse().routes_attached)
    };
    // Six routes over three Services: routes 0, 1 and 2 are the first to use svc-0,
    // svc-1 and svc-2, and build them on every load.
    let routes = [(0, 0), (1, 1), (2, 2), (3, 0), (4, 1), (5, 2)];
    let (first, attached) = step(&gateway_config_with(3, &routes, Some(4)));
    assert_eq!(attached, 6);
    assert_eq!(first.unwrap().proxy.routes.len(), 5);

    // Nothing changes: only the three that build a Service are attached again.
    let (_, attached) = step(&gateway_config_with(3, &routes, Some(4)));
    assert_eq!(attached, 3);

    // Route 3 moves from svc-0 to svc-1: it, and the three, are attached again.
    let mut moved = routes;
    moved[3] = (3, 1);
    let (_, attached) = step(&gateway_config_with(3, &moved, Some(4)));
    assert_eq!(attached, 4);

    // Route 0 (the first to use svc-0) moves to svc-2: route 3, unchanged, is now the
    // first to use svc-0 (moved back above), and builds it, as a fresh load does.
    let mut first_moves = routes;
    first_moves[0] = (0, 2);
    let (_, attached) = step(&gateway_config_with(3, &first_moves, Some(4)));
    assert_eq!(attached, 4);

    // An HTTPRoute above the route with a warning grows by a line: the warning, kept,
    // names its new line.
    let text = gateway_config_with(3, &first_moves, Some(4)).replacen(
        "  hostnames: [\"app-2.example\"]\n",
        "  hostnames: [\"app-2.example\"]\n  # a comment\n",
        1,
    );
    let (shifted, attached) = step(&text);
    assert_eq!(attached, 4, "the commented route, and the three that build");
    let line = text
        .lines()
        .position(|l| l.contains("{name: nowhere}"))
        .unwrap()
        + 1;
    let shifted = everything(&shifted);
    assert!(
        shifted.contains(&format!("weir.yaml:{line}:")) && shifted.contains("nowhere"),
        "{shifted}"
    );

    // A document of another kind changes (svc-2 goes): every route is attached again,
    // and those that named svc-2 say so.
    let (gone, attached) = step(&gateway_config_with(2, &first_moves, Some(4)));
    assert_eq!(attached, 6);
    assert!(everything(&gone).contains("svc-2"));
    let (_, attached) = step(&gateway_config_with(2, &first_moves, Some(4)));
    assert!(attached < 6, "{attached}");

    // The same route twice: the second is refused, kept or not.
    let dup = gateway_config_with(2, &first_moves, Some(4)).replacen(
        "name: route-5,",
        "name: route-3,",
        1,
    );
    let (twice, _) = step(&dup);
    assert!(everything(&twice).contains("defined twice"));
    // And back.
    assert!(
        step(&gateway_config_with(2, &first_moves, Some(4)))
            .0
            .is_ok()
    );
}

#[test]
fn a_route_kept_from_before_follows_a_rollout_that_splits_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    let loader = Loader::new();
    let base = gateway_config(3, &[(0, 0), (1, 1), (2, 2)]).replacen(
        "      backendRefs: [{name: svc-1, port: 80}]\n",
        "      backendRefs: [{name: svc-1, port: 80}, {name: svc-2, port: 80, weight: 0}]\n",
        1,
    );
    let rollout = "---\napiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: app}\nspec:\n  selector: {matchLabels: {app: app}}\n  template:\n    metadata: {labels: {app: app}}\n    spec:\n      containers: [{name: app, image: app:v1}]\n  strategy:\n    canary:\n      stableService: svc-1\n      canaryService: svc-2\n      trafficRouting:\n        plugins:\n          argoproj-labs/gatewayAPI: {httpRoute: route-1}\n      steps: [{setWeight: 20}]\n";
    for text in [
        base.clone(),
        format!("{base}{rollout}"),
        format!("{base}{rollout}"),
        base.clone(),
        base.replacen("name: route-1,", "name: route-9,", 1) + rollout,
    ] {
        write(&path, &text);
        let cached = loader.load(&path);
        assert_eq!(everything(&cached), everything(&load(&path)), "{text}");
        let split = text.contains("kind: Rollout") && text.contains("name: route-1,");
        assert_eq!(
            everything(&cached).contains("target: Rollout(\"app\")"),
            split,
            "{}",
            everything(&cached)
        );
    }
}

#[test]
fn the_fingerprint_hashed_while_reading_is_the_one_the_watcher_computes() {
    use weir_config::load::fingerprint;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    write(&path, &config(&[9001, 9002]));
    let loader = Loader::new();
    let first = loader.load(&path).unwrap();
    assert_eq!(first.fingerprint, fingerprint(&first.files));
    assert_eq!(load(&path).unwrap().fingerprint, first.fingerprint);
    // A changed file: another fingerprint, again the watcher's.
    write(&path, &config(&[9001, 9003]));
    assert_ne!(fingerprint(&first.files), first.fingerprint);
    let second = loader.load(&path).unwrap();
    assert_eq!(second.fingerprint, fingerprint(&second.files));
    assert_ne!(second.fingerprint, first.fingerprint);
    // A folder of two files.
    let folder = dir.path().join("conf");
    std::fs::create_dir(&folder).unwrap();
    write(&folder.join("a.yaml"), &config(&[9001]));
    write(
        &folder.join("b.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    );
    let m = loader.load(&folder).unwrap();
    assert_eq!(m.files.len(), 2);
    assert_eq!(m.fingerprint, fingerprint(&m.files));
}
