//! `weir demo --once`: the README's first command tells the whole story and exits 0.

use std::process::Command;

use crate::kit::process::{Sockets, WEIR};

#[test]
fn the_demo_tells_its_story_and_exits_0() {
    let sockets = Sockets::bind();
    let (port, admin) = (sockets.web_addr().port(), sockets.admin_addr().port());
    let mut cmd = Command::new(WEIR);
    cmd.args([
        "demo",
        "--once",
        "--port",
        &port.to_string(),
        "--admin-port",
        &admin.to_string(),
    ]);
    let out = sockets.pass_to(&mut cmd).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("dashboard: http://127.0.0.1:{admin}/")),
        "{text}"
    );
    assert!(
        text.contains("Rollout completed update to revision 2 (demo:v2)"),
        "{text}"
    );
    assert!(text.contains("Act 1 done, demo:v2 promoted"), "{text}");
    assert!(
        text.contains("Rollout aborted update to revision 3"),
        "{text}"
    );
    assert!(
        text.contains("Act 2 done, demo:v3-broken reverted: blast radius"),
        "{text}"
    );
}

#[test]
fn a_taken_port_is_said_plainly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(WEIR)
        .args([
            "demo",
            "--once",
            "--port",
            &port.to_string(),
            "--admin-port",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("port {port} is taken")) && err.contains("--port"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
