//! The documentation's examples: every `*.yaml` under `examples/` loads as a valid
//! configuration, and every fenced YAML block in `docs/*.md` is the file it names on its
//! first line (`# examples/...`), byte for byte, so the docs and the files cannot drift.

mod files;

use std::path::PathBuf;

use files::{repo, yaml_blocks, yaml_files};

#[test]
fn every_example_loads() {
    let files = yaml_files(&repo().join("examples"));
    assert!(!files.is_empty(), "no examples found");
    let mut failures = Vec::new();
    for f in &files {
        if let Err(e) = weir_config::load(f) {
            failures.push(format!("{}:\n{e}", f.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "examples that do not load:\n{}",
        failures.join("\n")
    );
}

#[test]
fn docs_quote_the_example_files_exactly() {
    let docs = repo().join("docs");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&docs)
        .expect("docs/ exists")
        .map(|e| e.expect("a folder entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    let mut quoted = 0;
    let mut failures = Vec::new();
    for page in &pages {
        let md = std::fs::read_to_string(page).expect("readable page");
        for b in yaml_blocks(&md) {
            let at = format!("{}:{}", page.display(), b.line);
            let first = b.text.lines().next().unwrap_or("");
            let Some(name) = first
                .strip_prefix("# ")
                .filter(|n| n.starts_with("examples/"))
            else {
                failures.push(format!(
                    "{at}: a YAML block must be an example file: start it with `# examples/NAME.yaml` and keep the file under examples/"
                ));
                continue;
            };
            let file = repo().join(name.trim());
            match std::fs::read_to_string(&file) {
                Err(e) => failures.push(format!("{at}: {name}: {e}")),
                Ok(content) if content != b.text => {
                    let line = content
                        .lines()
                        .zip(b.text.lines())
                        .position(|(a, b)| a != b)
                        .map_or_else(
                            || "the lengths differ".to_owned(),
                            |n| format!("first difference at line {}", n + 1),
                        );
                    failures.push(format!(
                        "{at}: the block differs from {name} ({line}): copy the file into the block"
                    ));
                }
                Ok(_) => quoted += 1,
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(quoted > 0, "no example is quoted in docs/*.md");
}

/// docs/migrating.md says the Rollout moves from Traefik to weir unchanged.
#[test]
fn traefik_migration_keeps_the_rollout() {
    let load = |name: &str| {
        weir_config::load(&repo().join("examples/migrating").join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let before = load("traefik-before.yaml");
    let after = load("traefik-after.yaml");
    assert_eq!(
        before.argo.rollouts.get("my-app"),
        after.argo.rollouts.get("my-app")
    );
    assert!(after.argo.rollouts.contains_key("my-app"));
}
