//! The real binary: graceful shutdown on SIGTERM, exit codes, refusing a bad config.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::kit::process::{Sockets, WEIR};
use crate::kit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let slow = FakeBackend::start(
        "slow",
        Behavior {
            latency: Latency::Fixed { ms: 1500.0 },
            ..Behavior::default()
        },
    )
    .await
    .unwrap();
    let sockets = Sockets::bind();
    let (web, admin) = (sockets.web_addr(), sockets.admin_addr());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("weir.yaml");
    let yaml = format!(
        "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {{name: edge}}\nspec:\n  listeners: [{{name: web, address: \"{web}\"}}]\n  admin: {{address: \"{admin}\"}}\n  routes:\n    - name: app\n      backends: [{{service: slow}}]\n{}",
        service("slow", &[slow.addr()])
    );
    std::fs::write(&cfg, yaml).unwrap();
    let mut cmd = Command::new(WEIR);
    cmd.args(["serve", "-c"])
        .arg(&cfg)
        .args(["--state-dir"])
        .arg(dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = sockets.pass_to(&mut cmd).spawn().unwrap();
    drop(cmd);
    // Only weir holds the sockets now: once it exits, nothing listens.
    drop(sockets);
    eventually("weir is up", Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(admin).await.is_ok()
    })
    .await;
    let in_flight = tokio::spawn(async move { get(web, "app.test", "/").await });
    eventually(
        "the slow request is in flight",
        Duration::from_secs(10),
        || async {
            sample(
                &metrics(admin).await,
                &format!(
                    "weir_upstream_requests_in_flight{{endpoint=\"{}\"}}",
                    slow.addr()
                ),
            ) == Some(1.0)
        },
    )
    .await;
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let resp = in_flight.await.unwrap();
    assert_eq!(resp.status, 200, "the in-flight request finishes");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        tokio::net::TcpStream::connect(web).await.is_err(),
        "nothing listens after exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_is_refused_with_every_error_and_nothing_bound() {
    // The test holds both addresses: had weir tried to bind them before refusing the
    // config, it would fail to ("cannot listen", exit 1).
    let sockets = Sockets::bind();
    let (web, admin) = (sockets.web_addr(), sockets.admin_addr());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    let yaml = format!(
        "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {{name: edge}}\nspec:\n  listeners: [{{name: web, address: \"{web}\"}}]\n  admin: {{address: \"{admin}\"}}\n  routes:\n    - name: app\n      backends: [{{service: nope}}]\n    - name: app2\n      backends: [{{service: nope2, weight: 100}}]\n"
    );
    std::fs::write(&cfg, yaml).unwrap();
    let out = Command::new(WEIR)
        .args(["serve", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:9:19: spec.routes[0].backends[0].service: no Service is named \"nope\"",
            cfg.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}:11:19: spec.routes[1].backends[0].service: no Service is named \"nope2\"",
            cfg.display()
        )),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !err.contains("cannot listen"),
        "refused before binding anything: {err}"
    );

    let out = Command::new(WEIR)
        .args(["check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 configuration errors"));

    let out = Command::new(WEIR)
        .args(["check", "-c"])
        .arg(dir.path().join("missing.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing.yaml") && err.contains("there is no such file or folder"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_said_plainly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("weir.yaml");
    std::fs::write(
        &cfg,
        format!("apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {{name: edge}}\nspec:\n  listeners: [{{name: web, address: \"{addr}\"}}]\n  admin: {{address: \"127.0.0.1:0\"}}\n"),
    )
    .unwrap();
    let out = Command::new(WEIR)
        .args(["serve", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr} (listener web)")),
        "{err}"
    );
    assert!(err.contains("another process has this port"), "{err}");
}
