//! State that survives: kill -9 mid-rollout, restart, and the rollout resumes at the same
//! step and weight; a finished promotion is not lost.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::kit::process::{Sockets, WEIR};
use crate::kit::*;
use crate::rollout::rollout_config;

/// Starts weir on `sockets` (so that every run of it serves the same addresses, and a
/// connection made while none runs waits in the socket's queue for the next).
fn spawn(cfg: &std::path::Path, state: &std::path::Path, sockets: &Sockets) -> Child {
    let mut cmd = Command::new(WEIR);
    cmd.args(["serve", "-c"])
        .arg(cfg)
        .arg("--state-dir")
        .arg(state)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    sockets.pass_to(&mut cmd).spawn().unwrap()
}

async fn state(admin: SocketAddr) -> Option<serde_json::Value> {
    let stream = tokio::net::TcpStream::connect(admin).await.ok()?;
    drop(stream);
    serde_json::from_slice(&get(admin, "127.0.0.1", "/api/v1/rollouts/app").await.body).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_rollout_resumes_the_same_step() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let eps = [(v1.addr(), "app:v1"), (v2.addr(), "app:v2")];
    let sockets = Sockets::bind();
    let (web, admin) = (sockets.web_addr(), sockets.admin_addr());
    let strategy = "    canary:
      steps:
        - setWeight: 30
        - pause: {duration: 4}
        - setWeight: 70
        - pause: {}";
    let cfg = |img: &str| {
        rollout_config(img, strategy, &eps)
            .replacen("127.0.0.1:0", &web.to_string(), 1)
            .replacen("127.0.0.1:0", &admin.to_string(), 1)
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    let state_dir = dir.path().join("state");
    std::fs::write(&path, cfg("app:v1")).unwrap();
    let mut child = spawn(&path, &state_dir, &sockets);
    eventually("weir is up", Duration::from_secs(20), || async {
        state(admin).await.is_some_and(|s| s["phase"] == "Healthy")
    })
    .await;
    std::fs::write(&path, cfg("app:v2")).unwrap();
    eventually(
        "at 30%, in the timed pause",
        Duration::from_secs(10),
        || async {
            state(admin)
                .await
                .is_some_and(|s| s["currentStepIndex"] == 1 && s["canaryWeight"] == 30.0)
        },
    )
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let mut child = spawn(&path, &state_dir, &sockets);
    eventually("back up", Duration::from_secs(20), || async {
        state(admin).await.is_some()
    })
    .await;
    let s = state(admin).await.unwrap();
    assert_eq!(s["currentStepIndex"], 1, "the same step: {s}");
    assert_eq!(s["canaryWeight"], 30.0, "the same weight: {s}");
    assert_eq!(s["canaryRevision"], "app:v2");
    // The remaining pause runs out and the rollout carries on.
    eventually(
        "at 70%, paused for good",
        Duration::from_secs(15),
        || async {
            state(admin)
                .await
                .is_some_and(|s| s["currentStepIndex"] == 3 && s["canaryWeight"] == 70.0)
        },
    )
    .await;
    let r = super::rollout::post(admin, "/api/v1/rollouts/app/promote").await;
    assert_eq!(r.status, 200);
    eventually("promoted", Duration::from_secs(10), || async {
        state(admin)
            .await
            .is_some_and(|s| s["phase"] == "Healthy" && s["stableRevision"] == "app:v2")
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();

    // The promotion is not lost, and the very first request after the restart is
    // routed by it: weir serves only once the control loop has routed the saved state
    // (before, the first requests got 503 "no revision yet").
    // The request is sent before weir runs: it waits in the socket's queue, and is
    // the first thing the new weir answers.
    let mut early = tokio::net::TcpStream::connect(web).await.unwrap();
    early
        .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut child = spawn(&path, &state_dir, &sockets);
    let mut first = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), early.read_to_end(&mut first))
        .await
        .expect("the queued request is answered")
        .unwrap();
    let first = String::from_utf8_lossy(&first).to_ascii_lowercase();
    assert!(first.starts_with("http/1.1 200"), "{first}");
    assert!(first.contains("\r\nx-backend: v2\r\n"), "{first}");
    eventually("back up", Duration::from_secs(20), || async {
        state(admin).await.is_some()
    })
    .await;
    let s = state(admin).await.unwrap();
    assert_eq!(s["phase"], "Healthy");
    assert_eq!(s["stableRevision"], "app:v2");
    assert_eq!(
        get(web, "app.test", "/").await.header("x-backend"),
        Some("v2")
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
