//! Issue 10, items 2 and 3: the state on disk. A state file that cannot be read never
//! promotes the canary (weir falls back on the previous file, or on what the damaged one
//! still shows, and says so); the damaged file is kept aside. A user action whose state
//! could not be saved is applied but not acknowledged as durable, the fault shows in the
//! loop's statistics, and saving is retried.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::{Harness, canary, start};
use weir_control::api::RolloutView;
use weir_control::state::{Reason, RolloutPhase};
use weir_control::{Action, ActionError};

const STEPS: &str = "[{setWeight: 10}, {pause: {}}, {setWeight: 50}, {pause: {}}]";
const WAIT: Duration = Duration::from_secs(30);

fn paused_at(v: &RolloutView, weight: f64) -> bool {
    v.phase == Some(RolloutPhase::Paused) && v.canary_weight == weight
}

/// v1 stable, then v2 at 10%, paused; the loop stopped (its state saved in `dir`).
async fn mid_update(dir: &Path) {
    let h = start(canary("v1", STEPS, ""), Some(dir.to_path_buf()));
    h.until(WAIT, |v| v.phase == Some(RolloutPhase::Healthy))
        .await;
    h.tx.send(canary("v2", STEPS, "")).unwrap();
    let v = h.until(WAIT, |v| paused_at(v, 10.0)).await;
    assert_eq!(v.stable_revision.as_deref(), Some("app:v1"));
    h.stop().await;
    assert!(dir.join("app.json").exists());
}

/// The files in `dir` whose names start with `prefix`, with their contents.
fn files(dir: &Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).unwrap();
            (n, bytes)
        })
        .collect();
    out.sort();
    out
}

fn unreadable_events(v: &RolloutView) -> Vec<String> {
    v.events
        .iter()
        .filter(|e| e.reason == Reason::StateUnreadable)
        .map(|e| e.message.clone())
        .collect()
}

/// No plan ever made the update's image stable.
fn never_promoted(h: &Harness) {
    for p in h.router.all().into_iter().flatten() {
        assert_ne!(p.stable, "app:v2", "the canary was promoted: {p:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_damaged_state_file_falls_back_on_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    mid_update(dir.path()).await;
    assert!(
        dir.path().join("app.json.prev").exists(),
        "the state before the last save is kept"
    );
    let damaged = b"{\"name\":\"app\",\"stab".to_vec();
    std::fs::write(dir.path().join("app.json"), &damaged).unwrap();

    let h = start(canary("v2", STEPS, ""), Some(dir.path().to_path_buf()));
    let v = h.until(WAIT, |v| v.phase.is_some()).await;
    never_promoted(&h);
    assert_eq!(v.stable_revision.as_deref(), Some("app:v1"));
    assert_eq!(v.canary_revision.as_deref(), Some("app:v2"));
    let said = unreadable_events(&v);
    assert_eq!(said.len(), 1, "{:#?}", v.events);
    assert!(said[0].contains("previous"), "{said:?}");
    // The damaged file is kept aside, as it was; a good one replaces it.
    let aside = files(dir.path(), "app.json.corrupt-");
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(aside[0].1, damaged);
    h.stop().await;
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("app.json")).unwrap()).unwrap();
    assert_eq!(saved["stable"]["image"], "app:v1");
}

#[tokio::test(start_paused = true)]
async fn with_no_readable_file_the_stable_revision_is_recovered_and_the_canary_holds_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    mid_update(dir.path()).await;
    // Cut short after the stable revision, as a full disk or a crash may leave it.
    let bytes = std::fs::read(dir.path().join("app.json")).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let cut = text.find("\"history\"").expect("history is saved") + 4;
    std::fs::write(dir.path().join("app.json"), &bytes[..cut]).unwrap();
    std::fs::remove_file(dir.path().join("app.json.prev")).unwrap();

    let h = start(canary("v2", STEPS, ""), Some(dir.path().to_path_buf()));
    let v = h.until(WAIT, |v| v.phase.is_some()).await;
    never_promoted(&h);
    assert_eq!(v.phase, Some(RolloutPhase::Paused), "{}", v.message);
    assert_eq!(v.stable_revision.as_deref(), Some("app:v1"));
    assert_eq!(v.canary_revision.as_deref(), Some("app:v2"));
    assert_eq!(v.canary_weight, 0.0);
    assert!(v.message.contains("state"), "{}", v.message);
    let plan = h.router.last().expect("a plan");
    assert_eq!(
        (plan.stable.as_str(), plan.canary.as_deref()),
        ("app:v1", Some("app:v2"))
    );
    assert_eq!(plan.canary_weight.percent(), 0.0);
    assert_eq!(unreadable_events(&v).len(), 1, "{:#?}", v.events);
    assert_eq!(files(dir.path(), "app.json.corrupt-").len(), 1);
    // Nothing moves by itself; a user resumes the update from its first step.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(paused_at(&h.app().await, 0.0));
    h.handle.act("app", Action::Resume).await.unwrap();
    h.until(WAIT, |v| paused_at(v, 10.0)).await;
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn with_nothing_readable_no_revision_is_made_stable_until_a_user_says_so() {
    let dir = tempfile::tempdir().unwrap();
    mid_update(dir.path()).await;
    std::fs::write(dir.path().join("app.json"), b"\0\0\0\0").unwrap();
    std::fs::write(dir.path().join("app.json.prev"), b"").unwrap();

    let h = start(canary("v2", STEPS, ""), Some(dir.path().to_path_buf()));
    let v = h.until(WAIT, |v| v.phase.is_some()).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    never_promoted(&h);
    assert!(h.router.last().is_none(), "no stable revision to serve");
    let v2 = h.app().await;
    assert_eq!(v2.phase, Some(RolloutPhase::Paused), "{}", v2.message);
    assert_eq!(v2.stable_revision, None);
    assert!(v2.message.contains("promote"), "{}", v2.message);
    assert_eq!(unreadable_events(&v).len(), 1, "{:#?}", v.events);
    assert_eq!(files(dir.path(), "app.json.corrupt-").len(), 1);
    assert_eq!(files(dir.path(), "app.json.prev.corrupt-").len(), 1);
    // The user decides: promote makes the configured image stable.
    h.handle.act("app", Action::Promote).await.unwrap();
    let v = h
        .until(WAIT, |v| v.phase == Some(RolloutPhase::Healthy))
        .await;
    assert_eq!(v.stable_revision.as_deref(), Some("app:v2"));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn no_state_file_at_all_is_a_first_sight() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(canary("v2", STEPS, ""), Some(dir.path().to_path_buf()));
    let v = h.until(WAIT, |v| v.phase.is_some()).await;
    assert_eq!(v.phase, Some(RolloutPhase::Healthy));
    assert_eq!(v.stable_revision.as_deref(), Some("app:v2"));
    assert!(unreadable_events(&v).is_empty());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_action_that_could_not_be_saved_is_applied_but_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let h = start(canary("v1", STEPS, ""), Some(state.clone()));
    h.until(WAIT, |v| v.phase == Some(RolloutPhase::Healthy))
        .await;
    h.tx.send(canary("v2", STEPS, "")).unwrap();
    h.until(WAIT, |v| paused_at(v, 10.0)).await;
    assert!(h.handle.stats.storage_healthy.load(Relaxed));
    assert_eq!(h.handle.stats.state_save_failures.load(Relaxed), 0);

    // The state folder becomes a file: nothing can be saved there.
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::write(&state, b"not a folder").unwrap();
    let err = h.handle.act("app", Action::Abort).await.unwrap_err();
    let ActionError::NotDurable { view, reason } = &err else {
        panic!("expected NotDurable, got {err:?}");
    };
    assert!(view.aborted, "the abort took effect");
    assert!(!reason.is_empty());
    assert_eq!(
        h.router.last().unwrap().canary_weight.percent(),
        0.0,
        "the abort reached traffic"
    );
    assert!(!h.handle.stats.storage_healthy.load(Relaxed));
    let failures = h.handle.stats.state_save_failures.load(Relaxed);
    assert!(failures >= 1);
    // Retried on later turns while the fault lasts...
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(h.handle.stats.state_save_failures.load(Relaxed) > failures);
    assert!(!h.handle.stats.storage_healthy.load(Relaxed));
    // ...and saved once it is gone.
    std::fs::remove_file(&state).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(h.handle.stats.storage_healthy.load(Relaxed));
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("app.json")).unwrap()).unwrap();
    assert_eq!(saved["aborted"], true);
    // Durable again: the next action is acknowledged.
    h.handle.act("app", Action::Retry).await.unwrap();
    h.stop().await;
}

/// The configuration with the Service but without the Rollout.
fn without_rollout() -> std::sync::Arc<weir_config::Model> {
    common::load(
        r#"
apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {name: app}
spec:
  endpoints: [{address: "127.0.0.1:9001", image: "app:v1"}]
"#,
    )
}

async fn gone(h: &Harness) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while h.handle.get("app").await.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "still listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 10, item 1: a Rollout that leaves the configuration (a half-written file, a
/// document cut by mistake) and comes back resumes its saved state, in the same process
/// and after a restart in between; it is never taken as seen for the first time, which
/// would make its canary image stable at once.
#[tokio::test(start_paused = true)]
async fn a_rollout_that_disappears_and_comes_back_resumes_its_state() {
    let dir = tempfile::tempdir().unwrap();
    mid_update(dir.path()).await;

    // In one process.
    let h = start(canary("v2", STEPS, ""), Some(dir.path().to_path_buf()));
    h.until(WAIT, |v| paused_at(v, 10.0)).await;
    h.tx.send(without_rollout()).unwrap();
    gone(&h).await;
    assert_eq!(h.router.last(), None, "its traffic is withdrawn");
    h.tx.send(canary("v2", STEPS, "")).unwrap();
    let v = h.until(WAIT, |v| v.phase.is_some()).await;
    assert!(paused_at(&v, 10.0), "{v:#?}");
    assert_eq!(v.stable_revision.as_deref(), Some("app:v1"));
    assert!(
        v.events
            .iter()
            .any(|e| e.reason == Reason::RolloutResumed && e.message.contains("back")),
        "{:#?}",
        v.events
    );
    never_promoted(&h);

    // Gone across a restart: the state file stays.
    h.tx.send(without_rollout()).unwrap();
    gone(&h).await;
    h.stop().await;
    assert!(dir.path().join("app.json").exists(), "its state is kept");
    let h = start(without_rollout(), Some(dir.path().to_path_buf()));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(h.handle.get("app").await.is_none());
    h.stop().await;
    let h = start(canary("v2", STEPS, ""), Some(dir.path().to_path_buf()));
    let v = h.until(WAIT, |v| v.phase.is_some()).await;
    assert!(paused_at(&v, 10.0), "{v:#?}");
    assert_eq!(v.stable_revision.as_deref(), Some("app:v1"));
    never_promoted(&h);

    // Back with another image: an update from the saved stable revision, with its steps.
    h.tx.send(without_rollout()).unwrap();
    gone(&h).await;
    h.tx.send(canary("v3", STEPS, "")).unwrap();
    let v = h.until(WAIT, |v| paused_at(v, 10.0)).await;
    assert_eq!(v.stable_revision.as_deref(), Some("app:v1"));
    assert_eq!(v.canary_revision.as_deref(), Some("app:v3"));
    for p in h.router.all().into_iter().flatten() {
        assert_eq!(p.stable, "app:v1", "nothing was promoted: {p:?}");
    }
    h.stop().await;
}
