//! Hot reload: edits apply without dropping a request; a bad edit is refused with file,
//! line and field, counted, and the last good config keeps serving.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::kit::*;

fn config(a: &FakeBackend, b: &FakeBackend, canary: f64) -> String {
    proxy(
        &split_route("app", &[("v1", 100.0 - canary), ("v2", canary)]),
        "",
    ) + &service("v1", &[a.addr()])
        + &service("v2", &[b.addr()])
}

async fn weight_of(admin: std::net::SocketAddr, service: &str) -> Option<f64> {
    let m = metrics(admin).await;
    sample(
        &m,
        &format!(
            "weir_route_weight_percent{{route=\"app\",service=\"{service}\",role=\"\",revision=\"\"}}"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_no_request() {
    let a = backend("v1").await;
    let b = backend("v2").await;
    let weir = Weir::start(&config(&a, &b, 10.0)).await;
    let addr = weir.web();
    let stop = Arc::new(AtomicBool::new(false));
    // Load: 16 connections sending back to back while the config changes under them.
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut all = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                all.extend(drive(addr, "app.test", 16, 400).await);
            }
            all
        })
    };
    let reloads = 20;
    for i in 0..reloads {
        let canary = if i % 2 == 0 { 30.0 } else { 10.0 };
        weir.write_config(&config(&a, &b, canary));
        eventually(
            "the new weight is live",
            Duration::from_secs(10),
            || async { weight_of(weir.admin(), "v2").await == Some(canary) },
        )
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    let results = load.await.expect("load");
    assert!(results.len() >= 400);
    let failed: Vec<_> = results.iter().filter(|r| r.0 != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed",
        failed.len(),
        results.len()
    );
    let m = metrics(weir.admin()).await;
    assert_eq!(
        sample(&m, "weir_config_reloads_total{result=\"success\"}"),
        Some(reloads as f64)
    );
    assert_eq!(
        sample(&m, "weir_config_reloads_total{result=\"failure\"}"),
        Some(0.0)
    );
    weir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_edit_is_refused_and_the_old_config_serves() {
    let a = backend("v1").await;
    let b = backend("v2").await;
    let weir = Weir::start(&config(&a, &b, 50.0)).await;
    // Weights that do not sum to 100, and a service that does not exist.
    let bad = config(&a, &b, 50.0).replace(
        "weight: 50}\n        - {service: v2",
        "weight: 60}\n        - {service: v3",
    );
    weir.write_config(&bad);
    eventually(
        "the failure is counted",
        Duration::from_secs(10),
        || async {
            sample(
                &metrics(weir.admin()).await,
                "weir_config_reloads_total{result=\"failure\"}",
            ) == Some(1.0)
        },
    )
    .await;
    let issues = weir.app().reload_stats.last_issues.lock().unwrap().clone();
    let text: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
    assert_eq!(text.len(), 2, "{text:?}");
    let file = weir.path.display().to_string();
    assert!(text.iter().all(|t| t.starts_with(&file)), "{text:?}");
    assert!(
        text.iter()
            .any(|t| t.contains(":11:7: spec.routes[0].backends: weights sum to 110%")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("spec.routes[0].backends[1].service: no Service is named \"v3\"")),
        "{text:?}"
    );
    let m = metrics(weir.admin()).await;
    assert_eq!(sample(&m, "weir_config_last_reload_successful"), Some(0.0));
    // The old split still serves, at the old weights.
    let results = drive(weir.web(), "app.test", 4, 200).await;
    assert!(results.iter().all(|r| r.0 == 200));
    assert_eq!(results.iter().filter(|r| r.2 == "v2").count(), 100);
    // A good edit after it is taken.
    weir.write_config(&config(&a, &b, 20.0));
    eventually("the good edit is live", Duration::from_secs(10), || async {
        weight_of(weir.admin(), "v2").await == Some(20.0)
    })
    .await;
    assert_eq!(
        sample(
            &metrics(weir.admin()).await,
            "weir_config_last_reload_successful"
        ),
        Some(1.0)
    );
    weir.shutdown().await;
}

/// A folder of files, one per document, read recursively; a new file is picked up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_are_read_recursively_and_watched() {
    let a = backend("v1").await;
    let b = backend("v2").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("services")).unwrap();
    std::fs::write(
        dir.path().join("services/v1.yaml"),
        service("v1", &[a.addr()]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("services/v2.yml"),
        service("v2", &[b.addr()]),
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
    let proxy_yaml = proxy(&split_route("app", &[("v1", 100.0)]), "");
    std::fs::write(dir.path().join("proxy.yaml"), &proxy_yaml).unwrap();
    let model = weir_config::load(dir.path()).unwrap();
    let opts = weir::app::ServeOptions {
        config: dir.path().to_path_buf(),
        state_dir: dir.path().join(".state"),
        workers: 2,
        measure: true,
        shutdown_grace: Duration::from_secs(5),
        watch: true,
        node: "test".into(),
    };
    let app = weir::app::App::start(model, &opts).await.unwrap();
    let web = app.listener("web").unwrap();
    assert_eq!(get(web, "x", "/").await.header("x-backend"), Some("v1"));
    // Route to v2 by editing the proxy file; the route change is seen.
    let tmp = dir.path().join(".proxy.tmp");
    std::fs::write(&tmp, proxy(&split_route("app", &[("v2", 100.0)]), "")).unwrap();
    std::fs::rename(&tmp, dir.path().join("proxy.yaml")).unwrap();
    eventually(
        "the edit in the folder is seen",
        Duration::from_secs(10),
        || async { get(web, "x", "/").await.header("x-backend") == Some("v2") },
    )
    .await;
    app.shutdown().await;
}

/// One GET over an open HTTP/1.1 connection; the response's `x-backend`.
async fn get_on(conn: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())?;
            if buf.len() >= end + 4 + len {
                return head
                    .lines()
                    .find_map(|l| l.strip_prefix("x-backend: "))
                    .map(|v| v.trim().to_owned());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_adds_and_removes_listeners() {
    let a = backend("v1").await;
    let b = backend("v2").await;
    let port = |()| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (p1, p2, p3) = (port(()), port(()), port(()));
    let config = |web: SocketAddr, extra: Option<SocketAddr>, to: &str| {
        let mut y = proxy(&split_route("app", &[(to, 100.0)]), "").replacen(
            "127.0.0.1:0",
            &web.to_string(),
            1,
        );
        if let Some(e) = extra {
            y = y.replacen(
                "  admin:",
                &format!("    - {{name: api, address: \"{e}\"}}\n  admin:"),
                1,
            );
        }
        y + &service("v1", &[a.addr()]) + &service("v2", &[b.addr()])
    };
    let weir = Weir::start(&config(p1, None, "v1")).await;
    assert_eq!(weir.web(), p1);
    let mut open = tokio::net::TcpStream::connect(p1).await.unwrap();
    assert_eq!(get_on(&mut open).await.as_deref(), Some("v1"));

    // Move web to p2 and add api on p3.
    weir.write_config(&config(p2, Some(p3), "v1"));
    eventually(
        "web serves on its new address",
        Duration::from_secs(10),
        || async { tokio::net::TcpStream::connect(p2).await.is_ok() },
    )
    .await;
    assert_eq!(get(p2, "x", "/").await.header("x-backend"), Some("v1"));
    assert_eq!(get(p3, "x", "/").await.header("x-backend"), Some("v1"));
    assert_eq!(weir.app().listener("web"), Some(p2));
    assert_eq!(weir.app().listener("api"), Some(p3));
    // The old address no longer accepts, but the connection opened there carries on.
    eventually(
        "the old address is closed",
        Duration::from_secs(5),
        || async { tokio::net::TcpStream::connect(p1).await.is_err() },
    )
    .await;
    assert_eq!(get_on(&mut open).await.as_deref(), Some("v1"));

    // A move to an address in use is refused by the OS: web keeps serving where it is,
    // and the rest of the edit (the route to v2) applies.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    weir.write_config(&config(taken.local_addr().unwrap(), Some(p3), "v2"));
    eventually(
        "the route edit applies",
        Duration::from_secs(10),
        || async { get(p2, "x", "/").await.header("x-backend") == Some("v2") },
    )
    .await;
    assert_eq!(weir.app().listener("web"), Some(p2));

    // Removing api stops it accepting.
    weir.write_config(&config(p2, None, "v2"));
    eventually("api is gone", Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(p3).await.is_err()
    })
    .await;
    assert_eq!(weir.app().listener("api"), None);
    assert_eq!(get(p2, "x", "/").await.header("x-backend"), Some("v2"));

    // The admin listener moves too.
    let old_admin = weir.admin();
    let p4 = port(());
    weir.write_config(&config(p2, None, "v2").replacen("127.0.0.1:0", &p4.to_string(), 1));
    eventually(
        "admin serves on its new address",
        Duration::from_secs(10),
        || async { weir.admin() == p4 },
    )
    .await;
    assert_eq!(get(p4, "127.0.0.1", "/metrics").await.status, 200);
    eventually(
        "the old admin address is closed",
        Duration::from_secs(5),
        || async { tokio::net::TcpStream::connect(old_admin).await.is_err() },
    )
    .await;

    // Renaming web on the same address: the new name takes the address over.
    weir.write_config(
        &config(p2, None, "v2")
            .replacen("127.0.0.1:0", &p4.to_string(), 1)
            .replace("name: web", "name: www"),
    );
    eventually(
        "www serves where web did",
        Duration::from_secs(10),
        || async { weir.app().listener("www") == Some(p2) },
    )
    .await;
    assert_eq!(weir.app().listener("web"), None);
    assert_eq!(get(p2, "x", "/").await.header("x-backend"), Some("v2"));
}

/// Issue 10, item 13: moving the admin listener and a listener from 127.0.0.1:P to
/// 0.0.0.0:P (the same port, another address) by a reload: the kernel refuses the new
/// socket while the old one listens, so the old one lets go first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_listeners_to_another_address_on_the_same_port() {
    let up = backend("up").await;
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (web_port, admin_port) = (free(), free());
    let yaml = |ip: &str| {
        proxy(&split_route("app", &[("up", 100.0)]), "")
            .replace(
                "{name: web, address: \"127.0.0.1:0\"}",
                &format!("{{name: web, address: \"{ip}:{web_port}\"}}"),
            )
            .replace(
                "admin: {address: \"127.0.0.1:0\"}",
                &format!("admin: {{address: \"{ip}:{admin_port}\"}}"),
            )
            + &service("up", &[up.addr()])
    };
    let weir = Weir::start(&yaml("127.0.0.1")).await;
    assert_eq!(weir.web().to_string(), format!("127.0.0.1:{web_port}"));
    weir.write_config(&yaml("0.0.0.0"));
    eventually("both moved", Duration::from_secs(10), || async {
        weir.admin().to_string() == format!("0.0.0.0:{admin_port}")
            && weir.web().to_string() == format!("0.0.0.0:{web_port}")
    })
    .await;
    let loopback = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(get(loopback(web_port), "app.test", "/").await.status, 200);
    assert!(
        metrics(loopback(admin_port))
            .await
            .contains("weir_config_reloads_total")
    );
    // And back.
    weir.write_config(&yaml("127.0.0.1"));
    eventually("both moved back", Duration::from_secs(10), || async {
        weir.admin().to_string() == format!("127.0.0.1:{admin_port}")
            && weir.web().to_string() == format!("127.0.0.1:{web_port}")
    })
    .await;
    assert_eq!(get(loopback(web_port), "app.test", "/").await.status, 200);
    weir.shutdown().await;
}
