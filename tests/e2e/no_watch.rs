//! `weir serve --no-watch`: the control loop keeps running, and SIGHUP reloads.

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
