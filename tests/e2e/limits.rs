//! Bad input: malformed HTTP gets 400, oversized headers 431, never a panic; the
//! connection limit closes connections beyond it and counts them.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::kit::*;

async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests() {
    let b = backend("b").await;
    let yaml = proxy(
        &split_route("app", &[("b", 100.0)]),
        "  limits: {maxHeaderBytes: 8192}\n",
    ) + &service("b", &[b.addr()]);
    let weir = Weir::start(&yaml).await;
    let w = weir.web();

    let r = raw(w, b"GARBAGE\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r:?}");
    let r = raw(w, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r:?}");

    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let r = raw(w, big.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 431"), "{r:?}");

    // Still serving.
    assert_eq!(get(w, "x", "/").await.status, 200);
    assert_eq!(b.hits(), 1, "nothing bad reached the backend");
    weir.shutdown().await;
}

/// At the limit a new connection takes the place of one that waits with no request in
/// flight (counted as evicted); when every open connection has a request in flight, the
/// new one is closed at once and counted as rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_and_counted() {
    // Requests to /slow take 3 s: they hold their connections busy.
    let b = FakeBackend::start(
        "b",
        Behavior {
            latency: Latency::fixed_ms(3000.0),
            ..Behavior::default()
        },
    )
    .await
    .unwrap();
    let yaml = proxy(
        &split_route("app", &[("b", 100.0)]),
        "  limits: {maxConnections: 2}\n",
    ) + &service("b", &[b.addr()]);
    let weir = Weir::start(&yaml).await;
    let w = weir.web();
    // An idle connection is evicted by a newcomer.
    let mut idle = TcpStream::connect(w).await.unwrap();
    eventually("one connection open", Duration::from_secs(5), || async {
        sample(&metrics(weir.admin()).await, "weir_connections_open") == Some(1.0)
    })
    .await;
    let mut c1 = TcpStream::connect(w).await.unwrap();
    c1.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut c2 = TcpStream::connect(w).await.unwrap();
    c2.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the idle connection made room: {closed:?}"
    );
    eventually("two busy connections", Duration::from_secs(5), || async {
        let m = metrics(weir.admin()).await;
        sample(&m, "weir_connections_open") == Some(2.0)
            && sample(&m, "weir_connections_evicted_total") == Some(1.0)
    })
    .await;
    // Both open connections are busy: the third is refused.
    let r = raw(w, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(r, "", "the third connection is closed without an answer");
    eventually(
        "the rejection is counted",
        Duration::from_secs(5),
        || async {
            sample(
                &metrics(weir.admin()).await,
                "weir_connections_rejected_total",
            ) == Some(1.0)
        },
    )
    .await;
    drop(c1);
    drop(c2);
    eventually("a slot frees up", Duration::from_secs(5), || async {
        raw(w, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 200")
    })
    .await;
    weir.shutdown().await;
}

/// Requests carry X-Forwarded-For/-Proto/-Host upstream; hop-by-hop headers stay behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers() {
    // A raw upstream that returns the request head it got as the body.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = upstream.accept().await.unwrap();
        let mut buf = vec![0u8; 8192];
        let mut head = Vec::new();
        loop {
            let n = s.read(&mut buf).await.unwrap();
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") || n == 0 {
                break;
            }
        }
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\n\r\n",
            head.len()
        );
        s.write_all(resp.as_bytes()).await.unwrap();
        s.write_all(&head).await.unwrap();
    });
    let yaml = proxy(&split_route("app", &[("echo", 100.0)]), "") + &service("echo", &[up]);
    let weir = Weir::start(&yaml).await;
    let r = raw(
        weir.web(),
        b"GET /p?q=1 HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 10.0.0.1\r\nConnection: close, x-drop\r\nX-Drop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n\r\n",
    )
    .await;
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    let lower_head = head.to_ascii_lowercase();
    assert!(
        !lower_head.contains("keep-alive: timeout"),
        "hop-by-hop response header removed: {head}"
    );
    let got = body.to_ascii_lowercase();
    assert!(got.starts_with("get /p?q=1 http/1.1\r\n"), "{got}");
    assert!(got.contains("\r\nhost: shop.example\r\n"), "{got}");
    assert!(
        got.contains("\r\nx-forwarded-for: 10.0.0.1, 127.0.0.1\r\n"),
        "{got}"
    );
    assert!(got.contains("\r\nx-forwarded-proto: http\r\n"), "{got}");
    assert!(
        got.contains("\r\nx-forwarded-host: shop.example\r\n"),
        "{got}"
    );
    assert!(
        !got.contains("x-drop"),
        "headers named in Connection are dropped: {got}"
    );
    assert!(
        got.contains("\r\nte: trailers\r\n"),
        "TE: trailers is the one TE passed on: {got}"
    );
    assert!(!got.contains("\r\nkeep-alive:"), "{got}");
    weir.shutdown().await;
}

/// Idle keep-alive connections are closed after `limits.idleTimeout`; a client that
/// starts a head and stops gets 408 after `limits.headerTimeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_clients_are_timed_out() {
    let b = backend("b").await;
    let yaml = proxy(
        &split_route("app", &[("b", 100.0)]),
        "  limits: {idleTimeout: 300ms, headerTimeout: 300ms}\n",
    ) + &service("b", &[b.addr()]);
    let weir = Weir::start(&yaml).await;
    // Idle after one request: closed by weir.
    let mut s = TcpStream::connect(weir.web()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let rest = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
    assert!(
        matches!(rest, Ok(Ok(0))),
        "the idle connection is closed: {rest:?}"
    );
    // Half a head, then silence: 408.
    let r = raw(weir.web(), b"GET / HTTP/1.1\r\nHost: x\r\n").await;
    assert!(r.starts_with("HTTP/1.1 408"), "{r:?}");
    weir.shutdown().await;
}

/// `maxConnections` is held within what the open-files limit allows (each client
/// connection may need an upstream one): with 600 files, 44 client connections, and the
/// 45th takes the place of an idle one instead of failing for want of a descriptor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_is_held_within_the_open_files_limit() {
    use crate::kit::process::{Sockets, WEIR};
    use std::process::{Command, Stdio};
    let up = backend("v1").await;
    let sockets = Sockets::bind();
    let (web, admin) = (sockets.web_addr(), sockets.admin_addr());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("weir.yaml");
    std::fs::write(
        &cfg,
        format!(
            "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {{name: edge}}\nspec:\n  listeners: [{{name: web, address: \"{web}\"}}]\n  admin: {{address: \"{admin}\"}}\n  limits: {{headerTimeout: 60s}}\n  routes:\n    - name: app\n      backends: [{{service: app}}]\n{}",
            service("app", &[up.addr()])
        ),
    )
    .unwrap();
    let log = dir.path().join("weir.log");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n 600 && exec \"$0\" serve -c \"$1\" --state-dir \"$2\"")
        .arg(WEIR)
        .arg(&cfg)
        .arg(dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = sockets.pass_to(&mut cmd).spawn().unwrap();
    drop(cmd);
    assert_eq!(get(web, "a", "/").await.status, 200);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("the open-files limit allows 44 client connections"),
        "{text}"
    );
    // 44 idle connections fill the budget (once weir has taken each in), then each of
    // 10 more takes the place of an idle one.
    let mut held = Vec::new();
    for _ in 0..44 {
        held.push(TcpStream::connect(web).await.unwrap());
    }
    eventually("44 connections open", Duration::from_secs(10), || async {
        sample(&metrics(admin).await, "weir_connections_open") == Some(44.0)
    })
    .await;
    for _ in 0..10 {
        held.push(TcpStream::connect(web).await.unwrap());
    }
    eventually(
        "ten idle connections evicted",
        Duration::from_secs(10),
        || async {
            sample(&metrics(admin).await, "weir_connections_evicted_total").unwrap_or(0.0) >= 10.0
        },
    )
    .await;
    assert_eq!(get(web, "a", "/").await.status, 200);
    drop(held);
    let _ = child.kill();
    let _ = child.wait();
}
