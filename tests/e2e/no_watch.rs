//! `weir serve --no-watch`: the control loop keeps running, and SIGHUP reloads. A storm of
//! SIGHUPs, with or without the file watcher, loses no request and moves no rollout.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::kit::process::{Sockets, WEIR};
use crate::kit::*;
use crate::rollout::{rollout_config, state};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_watching_the_loop_runs_and_sighup_reloads() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let eps = [(v1.addr(), "app:v1"), (v2.addr(), "app:v2")];
    let sockets = Sockets::bind();
    let (web, admin) = (sockets.web_addr(), sockets.admin_addr());
    let strategy = "    canary:\n      steps: [{setWeight: 30}, {pause: {}}]";
    let cfg = |img: &str| {
        rollout_config(img, strategy, &eps)
            .replacen("127.0.0.1:0", &web.to_string(), 1)
            .replacen("127.0.0.1:0", &admin.to_string(), 1)
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, cfg("app:v1")).unwrap();
    let mut cmd = Command::new(WEIR);
    cmd.args(["serve", "--no-watch", "-c"])
        .arg(&path)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = sockets.pass_to(&mut cmd).spawn().unwrap();
    drop(cmd);
    eventually(
        "the rollout is Healthy",
        Duration::from_secs(20),
        || async { state(admin).await["phase"] == "Healthy" },
    )
    .await;
    // The control loop is still there after its first turns: it answers actions.
    let r = crate::rollout::post(admin, "/api/v1/rollouts/app/pause").await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let r = crate::rollout::post(admin, "/api/v1/rollouts/app/resume").await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    // An edit is not seen without a signal; SIGHUP loads it.
    std::fs::write(&path, cfg("app:v2")).unwrap();
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    eventually(
        "the update to app:v2 begins",
        Duration::from_secs(20),
        || async {
            let s = state(admin).await;
            s["canaryRevision"] == "app:v2" && s["canaryWeight"] == 30.0
        },
    )
    .await;
    assert_eq!(get(web, "app.test", "/").await.status, 200);
    let _ = child.kill();
    let _ = child.wait();
}

/// Issue 10, item 4: 500 SIGHUPs in 10 s while the file is rewritten (atomically, each
/// version a real change), under load, in a rollout paused at 30%: every request is
/// answered 200, every reload succeeds, the canary stays where it was.
async fn sighup_storm(watch: bool) {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let eps = [(v1.addr(), "app:v1"), (v2.addr(), "app:v2")];
    let sockets = Sockets::bind();
    let (web, admin) = (sockets.web_addr(), sockets.admin_addr());
    let strategy = "    canary:\n      steps: [{setWeight: 30}, {pause: {}}]";
    let cfg = |img: &str, debug: bool| {
        rollout_config(img, strategy, &eps)
            .replacen("127.0.0.1:0", &web.to_string(), 1)
            .replacen("127.0.0.1:0", &admin.to_string(), 1)
            .replacen(
                "spec:\n  listeners:",
                &format!("spec:\n  debugHeaders: {debug}\n  listeners:"),
                1,
            )
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    let write = |yaml: String| {
        let tmp = dir.path().join(".weir.yaml.tmp");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    write(cfg("app:v1", false));
    let mut cmd = Command::new(WEIR);
    cmd.args(["serve", "-c"])
        .arg(&path)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if !watch {
        cmd.arg("--no-watch");
    }
    let mut child = sockets.pass_to(&mut cmd).spawn().unwrap();
    drop(cmd);
    let pid = child.id().to_string();
    let hup = || {
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        )
    };
    eventually("Healthy", Duration::from_secs(20), || async {
        state(admin).await["phase"] == "Healthy"
    })
    .await;
    write(cfg("app:v2", true));
    hup();
    eventually("paused at 30%", Duration::from_secs(20), || async {
        let s = state(admin).await;
        s["canaryRevision"] == "app:v2" && s["canaryWeight"] == 30.0 && s["phase"] == "Paused"
    })
    .await;
    let reloads = |m: &str, result: &str| {
        sample(
            m,
            &format!("weir_config_reloads_total{{result=\"{result}\"}}"),
        )
        .unwrap_or(0.0)
    };
    let before = reloads(&metrics(admin).await, "success");

    let (stop, load) = crate::rollout::load(web, 200.0);
    for i in 0..500 {
        if i % 5 == 0 {
            write(cfg("app:v2", i % 10 == 0));
        }
        hup();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The last version written is loaded, then the load stops.
    write(cfg("app:v2", true));
    hup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let report = load.await.unwrap();

    let m = metrics(admin).await;
    assert_eq!(reloads(&m, "failure"), 0.0, "no reload failed");
    let after = reloads(&m, "success");
    assert!(
        after - before >= 50.0,
        "the rewrites were reloaded: {before} -> {after}"
    );
    assert!(report.requests >= 1_000, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert!(
        report.by_status.keys().all(|s| *s == 200),
        "{:?}",
        report.by_status
    );
    let s = state(admin).await;
    assert_eq!(s["phase"], "Paused", "{s}");
    assert_eq!(s["canaryWeight"], 30.0, "{s}");
    assert_eq!(s["stableRevision"], "app:v1", "{s}");
    assert_eq!(
        get(web, "app.test", "/").await.header("x-weir-route"),
        Some("app"),
        "the last version (debugHeaders on) is served"
    );
    assert!(child.try_wait().unwrap().is_none(), "weir is still running");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_storm_without_the_watcher_loses_nothing() {
    sighup_storm(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_storm_beside_the_watcher_loses_nothing() {
    sighup_storm(true).await;
}
