//! Abuse cases on real sockets, each counted where it matters: at the upstream. Request
//! smuggling through `Connection` tokens and mixed framing, hosts an upstream must never
//! see, slow clients (head, body, reader) and a reconnecting slowloris at the connection
//! limit, `Expect: 100-continue` with an origin that ignores it, HTTP/2 uploads longer
//! than the response timeout, and the admin listener's own limits.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::kit::*;

/// One request as a real HTTP/1.1 server (hyper) parsed it.
#[derive(Clone, Debug)]
#[allow(dead_code)] // printed when an assertion fails
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An upstream that records every request it parses (whole, with its body) and answers
/// `200 ok`. Counting here is the point: a smuggled request is one more entry.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let s2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                let seen = s2.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes());
                            if let Ok(body) = body {
                                seen.lock().unwrap().push(Seen {
                                    method: parts.method.to_string(),
                                    path: parts.uri.to_string(),
                                    headers: parts
                                        .headers
                                        .iter()
                                        .map(|(n, v)| {
                                            (
                                                n.as_str().to_owned(),
                                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                            )
                                        })
                                        .collect(),
                                    body: body.to_vec(),
                                });
                            }
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                                b"ok",
                            ))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Recorder { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A raw upstream that answers every request head it reads (and its Content-Length
/// body) with `response`, keeping the connection; counts connections and requests.
struct Scripted {
    addr: SocketAddr,
    requests: Arc<std::sync::atomic::AtomicUsize>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Scripted {
    async fn start(response: Vec<u8>) -> Scripted {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let requests: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let connections: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let (r2, c2) = (requests.clone(), connections.clone());
        let response = Arc::new(response);
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (requests, response) = (r2.clone(), response.clone());
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = vec![0u8; 65536];
                    loop {
                        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => got.extend_from_slice(&buf[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .split("\r\ncontent-length: ")
                            .nth(1)
                            .and_then(|v| v.split("\r\n").next())
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while got.len() < end + 4 + len {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => got.extend_from_slice(&buf[..n]),
                            }
                        }
                        got.drain(..end + 4 + len);
                        requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if s.write_all(&response).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Scripted {
            addr,
            requests,
            connections,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn weir_to(upstream: SocketAddr, extra: &str) -> Weir {
    Weir::start(
        &(proxy(&split_route("app", &[("up", 100.0)]), extra) + &service("up", &[upstream])),
    )
    .await
}

/// Writes `request` on a new connection and reads until weir closes it (or 10 s).
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Reads one response head (through the blank line) and a Content-Length body.
async fn read_one(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-head: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let len: usize = head
        .split("\r\ncontent-length: ")
        .nth(1)
        .and_then(|v| v.split("\r\n").next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    (head, body)
}

// ---- Request smuggling ----

/// `Connection: content-length` must not drop the framing: the body stays the POST's
/// body and is never parsed by the upstream as a second request, on this connection or
/// on the pooled upstream connection the next client gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_tokens_never_drop_the_framing_headers() {
    let up = Recorder::start().await;
    let weir = weir_to(up.addr, "").await;
    let smuggled = b"GET /api/SMUGGLED HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";
    let mut req = format!(
        "POST /upload HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: {}\r\n\r\n",
        smuggled.len()
    )
    .into_bytes();
    req.extend_from_slice(smuggled);
    let mut s = TcpStream::connect(weir.web()).await.unwrap();
    s.write_all(&req).await.unwrap();
    let (head, body) = read_one(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"ok");
    // An incomplete smuggled POST would capture the next request on the pooled upstream
    // connection: send a second client's request after it.
    let partial: &[u8] = b"POST /capture HTTP/1.1\r\nHost: a\r\nContent-Length: 500\r\n\r\n";
    let mut req = format!(
        "POST /first HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: {}\r\n\r\n",
        partial.len()
    )
    .into_bytes();
    req.extend_from_slice(partial);
    s.write_all(&req).await.unwrap();
    let (head, _) = read_one(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let mut other = TcpStream::connect(weir.web()).await.unwrap();
    other
        .write_all(b"GET /victim HTTP/1.1\r\nHost: a\r\nCookie: secret=1\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_one(&mut other).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"ok");
    // `Connection: host` and `Connection: transfer-encoding` keep Host and the chunked
    // framing.
    s.write_all(b"POST /chunked HTTP/1.1\r\nHost: a\r\nConnection: host, transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").await.unwrap();
    let (head, _) = read_one(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");

    let seen = up.seen();
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/upload", "/first", "/victim", "/chunked"],
        "the upstream parsed exactly the client's requests: {seen:#?}"
    );
    assert_eq!(seen[0].body, smuggled, "the smuggled bytes stayed a body");
    assert_eq!(seen[1].body, partial);
    assert_eq!(seen[2].header("cookie"), Some("secret=1"));
    assert_eq!(seen[3].header("host"), Some("a"));
    assert_eq!(seen[3].body, b"hello");
    weir.shutdown().await;
}

/// Mixed or conflicting framing and unknown codings are refused with 400, and nothing
/// of them reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_framing_is_refused_before_the_upstream() {
    let up = Recorder::start().await;
    let weir = weir_to(up.addr, "").await;
    for bad in [
        &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\nabcd",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ] {
        let r = exchange(weir.web(), bad).await;
        assert!(
            r.starts_with("HTTP/1.1 400"),
            "{:?} -> {r:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert!(up.seen().is_empty(), "{:#?}", up.seen());
    weir.shutdown().await;
}

/// A response that names Content-Length in Connection keeps its length; a response
/// with both Content-Length and chunked is forwarded chunked only, and that upstream
/// connection is not used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_keep_their_framing() {
    let up = Scripted::start(
        b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
    )
    .await;
    let weir = weir_to(up.addr, "").await;
    let mut s = TcpStream::connect(weir.web()).await.unwrap();
    for _ in 0..3 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let (head, body) = read_one(&mut s).await;
        assert!(head.contains("\r\ncontent-length: 5\r\n"), "{head}");
        assert_eq!(body, b"hello");
    }
    assert_eq!(up.requests(), 3);
    assert_eq!(up.connections(), 1, "the upstream connection is reused");
    weir.shutdown().await;

    let up = Scripted::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            .to_vec(),
    )
    .await;
    let weir = weir_to(up.addr, "").await;
    let mut s = TcpStream::connect(weir.web()).await.unwrap();
    for _ in 0..2 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut tmp = [0u8; 4096];
        while !got.ends_with(b"0\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut tmp))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "{:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&tmp[..n]);
        }
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 200"), "{text}");
        assert!(text.contains("transfer-encoding: chunked"), "{text}");
        assert!(!text.contains("content-length"), "{text}");
        assert!(text.ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), "{text}");
    }
    assert_eq!(
        up.connections(),
        2,
        "a connection that sent both framings is not reused"
    );
    weir.shutdown().await;
}

/// Hosts no upstream may see are refused (400), an absolute-form target's host wins
/// over Host, HTTP/1.0 with Transfer-Encoding is refused, a bad chunked body gets 400,
/// a huge URI 414.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_targets_and_codings_an_upstream_must_not_see() {
    let up = Recorder::start().await;
    let weir = weir_to(up.addr, "").await;
    let w = weir.web();
    for bad in [
        &b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\\b\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello",
        // A target that is not UTF-8 is refused, not routed as "/".
        b"GET /caf\xc3\xa9/\xff\xfe HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let r = exchange(w, bad).await;
        assert!(
            r.starts_with("HTTP/1.1 400"),
            "{:?} -> {r:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let r = exchange(
        w,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "bad chunked body: {r:?}");
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "x".repeat(100_000));
    let r = exchange(w, long.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 414"), "{r:?}");
    // Absolute form: the target's authority decides, and is the Host upstream.
    let r = exchange(
        w,
        b"GET http://b.example/abs HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r:?}");
    let seen = up.seen();
    let bodies: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        bodies,
        ["/abs"],
        "only the valid request reached the upstream: {seen:#?}"
    );
    assert_eq!(seen[0].header("host"), Some("b.example"));
    assert_eq!(seen[0].header("x-forwarded-host"), Some("b.example"));
    weir.shutdown().await;
}

/// An upstream response with more than 100 headers is forwarded whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_with_many_headers_are_forwarded() {
    let mut resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n".to_vec();
    for i in 0..150 {
        resp.extend_from_slice(format!("x-h{i}: {i}\r\n").as_bytes());
    }
    resp.extend_from_slice(b"\r\nok");
    let up = Scripted::start(resp).await;
    let weir = weir_to(up.addr, "").await;
    let mut s = TcpStream::connect(weir.web()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_one(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("\r\nx-h149: 149\r\n"), "{head}");
    assert_eq!(body, b"ok");
    weir.shutdown().await;
}

// ---- Slow clients ----

/// The header timeout bounds the whole head, however steadily its bytes trickle in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_head_is_cut_at_the_header_timeout() {
    let up = Recorder::start().await;
    let weir = weir_to(up.addr, "  limits: {headerTimeout: 1s}\n").await;
    let mut s = TcpStream::connect(weir.web()).await.unwrap();
    let head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let (mut rd, mut wr) = s.split();
    let trickle = async {
        for b in head {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let mut got = Vec::new();
    let read = rd.read_to_end(&mut got);
    tokio::pin!(read);
    // The head takes ~9 s at this pace: weir must answer 408 long before it is done.
    tokio::select! {
        _ = trickle => panic!("the whole head went through without a timeout"),
        _ = &mut read => {}
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    assert!(up.seen().is_empty());
    weir.shutdown().await;
}

/// A request body that arrives slower than `limits.minBodyRate` (after the grace of
/// `bodyTimeout`) is cut with 408; the upstream never gets a whole request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_cut() {
    let up = Recorder::start().await;
    let weir = weir_to(up.addr, "  limits: {bodyTimeout: 1s, minBodyRate: 100}\n").await;
    let mut s = TcpStream::connect(weir.web()).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
        .await
        .unwrap();
    let (mut rd, mut wr) = s.split();
    let trickle = async {
        // 10 bytes a second: 100 s for the body.
        for _ in 0..1000 {
            if wr.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let mut got = Vec::new();
    let read = rd.read_to_end(&mut got);
    tokio::pin!(read);
    tokio::select! {
        _ = trickle => panic!("the whole body went through"),
        _ = &mut read => {}
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    assert!(
        up.seen().is_empty(),
        "no whole request reached the upstream"
    );
    weir.shutdown().await;
}

/// A client that never reads its response is dropped after `limits.sendTimeout`, and
/// its upstream connection with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped() {
    // 64 MB of response: far more than the socket buffers hold.
    let big = FakeBackend::start(
        "big",
        Behavior {
            body_size: 64 << 20,
            ..Behavior::default()
        },
    )
    .await
    .unwrap();
    let weir = weir_to(big.addr(), "  limits: {sendTimeout: 1s}\n").await;
    let mut s = TcpStream::connect(weir.web()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    eventually(
        "weir drops the connection of a client that stopped reading",
        Duration::from_secs(20),
        || async { sample(&metrics(weir.admin()).await, "weir_connections_open") == Some(0.0) },
    )
    .await;
    drop(s);
    weir.shutdown().await;
}

/// At the connection limit, connections that have not finished a request head make room
/// for new ones (oldest first): a slowloris holding every slot and reconnecting does not
/// lock normal clients out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_at_the_connection_limit_does_not_lock_clients_out() {
    let up = Recorder::start().await;
    let weir = weir_to(up.addr, "  limits: {maxConnections: 20}\n").await;
    let w = weir.web();
    let stop = tokio_util::sync::CancellationToken::new();
    // 40 attackers for 20 slots, each reconnecting 20 ms after it is cut or refused
    // (up to 2,000 connections a second), a header line every 200 ms.
    let mut attackers = Vec::new();
    for _ in 0..40 {
        let stop = stop.clone();
        attackers.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let Ok(mut s) = TcpStream::connect(w).await else {
                    continue;
                };
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await;
                let mut sink = [0u8; 64];
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        // Closed by weir: at once into a new connection.
                        _ = s.read(&mut sink) => break,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                    if s.write_all(b"X-A: b\r\n").await.is_err() {
                        break;
                    }
                }
            }
        }));
    }
    eventually(
        "the attackers hold every slot",
        Duration::from_secs(10),
        || async { sample(&metrics(weir.admin()).await, "weir_connections_open") == Some(20.0) },
    )
    .await;
    let mut ok = 0;
    for _ in 0..50 {
        let r = exchange(
            w,
            b"GET /normal HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await;
        if r.starts_with("HTTP/1.1 200") {
            ok += 1;
        }
    }
    stop.cancel();
    for a in attackers {
        let _ = a.await;
    }
    assert_eq!(ok, 50, "every normal client was served");
    assert!(
        up.seen().iter().all(|s| s.path == "/normal"),
        "no attacker's request reached the upstream"
    );
    let m = metrics(weir.admin()).await;
    assert!(
        sample(&m, "weir_connections_evicted_total").unwrap_or(0.0) >= 1.0,
        "room was made by evicting waiting connections"
    );
    weir.shutdown().await;
}

// ---- Bodies and 100-continue ----

/// `Expect: 100-continue` with an origin that never sends 100: weir answers 100 itself
/// and the body goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_with_an_origin_that_ignores_it() {
    let up =
        Scripted::start(b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone".to_vec()).await;
    let weir = weir_to(up.addr, "  upstream: {requestTimeout: 2s}\n").await;
    let mut s = TcpStream::connect(weir.web()).await.unwrap();
    s.write_all(b"PUT /f HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_one(&mut s).await;
    assert!(head.starts_with("http/1.1 100"), "{head}");
    s.write_all(b"hello").await.unwrap();
    let (head, body) = read_one(&mut s).await;
    assert!(head.starts_with("http/1.1 201"), "{head}");
    assert_eq!(body, b"done");
    assert_eq!(up.requests(), 1);
    weir.shutdown().await;
}

/// An HTTP/2 upload that takes longer than `requestTimeout` is not cut: the timeout
/// starts once the request has gone upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_uploads_are_not_cut_at_the_request_timeout() {
    let up = Recorder::start().await;
    let weir = weir_to(up.addr, "  upstream: {requestTimeout: 500ms}\n").await;
    let tcp = TcpStream::connect(weir.web()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let (tx, body) = futures_channel_body();
    let req = http::Request::builder()
        .method("POST")
        .uri("http://a/upload")
        .body(body)
        .unwrap();
    let resp = tokio::spawn(send.send_request(req));
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        tx.send(Bytes::from(format!("part{i};"))).await.unwrap();
    }
    drop(tx);
    let resp = resp.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        String::from_utf8_lossy(&seen[0].body),
        (0..10).map(|i| format!("part{i};")).collect::<String>()
    );
    weir.shutdown().await;
}

/// A request body whose frames come from a channel.
type ChannelBody = http_body_util::StreamBody<
    futures_util::stream::BoxStream<'static, Result<hyper::body::Frame<Bytes>, Infallible>>,
>;

/// A request body fed from a channel.
fn futures_channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|b| Ok(hyper::body::Frame::data(b))))
    });
    (tx, http_body_util::StreamBody::new(Box::pin(stream)))
}

// ---- The admin listener ----

/// The admin listener refuses foreign Host names (DNS rebinding), caps request bodies and
/// times out a head that never ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_guards_itself() {
    let up = Recorder::start().await;
    let weir = weir_to(up.addr, "").await;
    let admin = weir.admin();
    let r = exchange(
        admin,
        b"GET /healthz HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r:?}");
    for host in ["127.0.0.1", "localhost", "[::1]"] {
        let port = admin.port();
        let req =
            format!("GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
        let r = exchange(admin, req.as_bytes()).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{host}: {r:?}");
    }
    // A 64 MB body declared: refused at once, before it is read.
    let mut s = TcpStream::connect(admin).await.unwrap();
    s.write_all(b"POST /api/v1/rollouts/x/abort HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 67108864\r\n\r\n")
        .await
        .unwrap();
    let mut got = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut got))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&got[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text:?}");
    // The same without a length (chunked): cut once it passes the cap.
    let mut s = TcpStream::connect(admin).await.unwrap();
    s.write_all(b"POST /api/v1/rollouts/x/abort HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
    let mut answered = String::new();
    for _ in 0..64 {
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
        let mut tmp = vec![0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(5), s.read(&mut tmp)).await {
            answered.push_str(&String::from_utf8_lossy(&tmp[..n]));
            break;
        }
    }
    if answered.is_empty() {
        let mut tmp = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut tmp)).await;
        answered = String::from_utf8_lossy(&tmp).into_owned();
    }
    assert!(answered.starts_with("HTTP/1.1 413"), "{answered:?}");
    weir.shutdown().await;
}

/// A half-sent head on the admin listener is closed after the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_times_out_half_sent_heads() {
    let up = Recorder::start().await;
    let weir = weir_to(up.addr, "  limits: {headerTimeout: 1s}\n").await;
    let mut s = TcpStream::connect(weir.admin()).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(r.is_ok(), "the half-sent head is cut");
    weir.shutdown().await;
}

/// Idle connections cannot use up the admin listener (or the process's files): past
/// `MAX_ADMIN_CONNECTIONS` new ones are closed at once, the held ones go at the header
/// timeout, and the client listeners serve throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_fill_the_admin_listener() {
    let up = Recorder::start().await;
    let weir = weir_to(up.addr, "  limits: {headerTimeout: 2s}\n").await;
    let admin = weir.admin();
    let mut held = Vec::new();
    for _ in 0..weir_proxy::admin::MAX_ADMIN_CONNECTIONS {
        held.push(TcpStream::connect(admin).await.unwrap());
    }
    // The admin task has taken every held connection once the next one is turned away.
    eventually(
        "a connection past the cap is closed at once",
        Duration::from_secs(10),
        || async {
            let mut s = TcpStream::connect(admin).await.unwrap();
            let _ = s
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .await;
            let mut got = Vec::new();
            matches!(
                tokio::time::timeout(Duration::from_millis(500), s.read_to_end(&mut got)).await,
                Ok(Ok(0)) | Ok(Err(_))
            ) && got.is_empty()
        },
    )
    .await;
    let r = exchange(
        weir.web(),
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 200"),
        "the proxy serves meanwhile: {r:?}"
    );
    // The idle ones are closed at the header timeout, and the admin API answers again.
    eventually(
        "the admin listener answers again",
        Duration::from_secs(20),
        || async {
            exchange(
                admin,
                b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            )
            .await
            .starts_with("HTTP/1.1 200")
        },
    )
    .await;
    drop(held);
    weir.shutdown().await;
}

/// Changes through the admin API come neither from other sites' pages (CSRF: a foreign
/// `Origin`, `Sec-Fetch-Site: cross-site`) nor from other machines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_forged_and_remote_changes() {
    let up = Recorder::start().await;
    let weir = weir_to(up.addr, "").await;
    let admin = weir.admin();
    let post = |extra: &str| {
        format!(
            "POST /api/v1/rollouts/nope/abort HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n",
            admin.port()
        )
    };
    for forged in [
        "Origin: http://evil.example\r\n",
        "Origin: null\r\n",
        "Sec-Fetch-Site: cross-site\r\n",
        "Sec-Fetch-Site: same-site\r\n",
    ] {
        let r = exchange(admin, post(forged).as_bytes()).await;
        assert!(r.starts_with("HTTP/1.1 403"), "{forged:?} -> {r:?}");
    }
    // The dashboard's own requests (same origin) and the CLI's (no Origin) go through to
    // the API, which knows no rollout "nope".
    let same = format!(
        "Origin: http://127.0.0.1:{}\r\nSec-Fetch-Site: same-origin\r\n",
        admin.port()
    );
    for ok in ["", same.as_str()] {
        let r = exchange(admin, post(ok).as_bytes()).await;
        assert!(r.starts_with("HTTP/1.1 404"), "{ok:?} -> {r:?}");
    }
    // GETs stay open to anyone.
    let r = exchange(
        admin,
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r:?}");
    weir.shutdown().await;

    // From another address of this machine (not loopback), a change is refused.
    let Some(ip) = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
    else {
        eprintln!("skipped the remote part: this machine has no address but loopback");
        return;
    };
    let yaml = proxy(&split_route("app", &[("up", 100.0)]), "").replace(
        "admin: {address: \"127.0.0.1:0\"}",
        "admin: {address: \"0.0.0.0:0\"}",
    ) + &service("up", &[up.addr]);
    let weir = Weir::start(&yaml).await;
    let remote = std::net::SocketAddr::new(ip, weir.admin().port());
    let r = exchange(
        remote,
        format!(
            "POST /api/v1/rollouts/nope/abort HTTP/1.1\r\nHost: {remote}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r:?}");
    assert!(r.contains("loopback"), "{r:?}");
    weir.shutdown().await;
}

/// With `spec.admin.tokenFile`, a change needs `Authorization: Bearer TOKEN`, from any
/// client; the CLI sends it from `--token-file` or `WEIR_ADMIN_TOKEN`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_guards_changes() {
    let up = Recorder::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("admin-token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let extra = "  limits: {headerTimeout: 10s}\n";
    let yaml = proxy(&split_route("app", &[("up", 100.0)]), extra).replace(
        "admin: {address: \"127.0.0.1:0\"}",
        &format!(
            "admin: {{address: \"127.0.0.1:0\", tokenFile: \"{}\"}}",
            token_file.display()
        ),
    ) + &service("up", &[up.addr]);
    let weir = Weir::start(&yaml).await;
    let admin = weir.admin();
    let post = |auth: &str| {
        format!(
            "POST /api/v1/rollouts/nope/abort HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    for bad in [
        "",
        "Authorization: Bearer wrong\r\n",
        "Authorization: s3cret-token\r\n",
    ] {
        let r = exchange(admin, post(bad).as_bytes()).await;
        assert!(r.starts_with("HTTP/1.1 401"), "{bad:?} -> {r:?}");
        assert!(
            r.to_ascii_lowercase().contains("www-authenticate: bearer"),
            "{r:?}"
        );
    }
    let r = exchange(
        admin,
        post("Authorization: Bearer s3cret-token\r\n").as_bytes(),
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 404"),
        "the right token passes: {r:?}"
    );
    // GETs need no token.
    let r = exchange(
        admin,
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r:?}");
    // The CLI: without the token it says how to give it; with it, the action reaches weir.
    let url = format!("http://{admin}");
    let weir_bin = env!("CARGO_BIN_EXE_weir");
    let out = std::process::Command::new(weir_bin)
        .args(["abort", "nope", "--admin", &url])
        .env_remove("WEIR_ADMIN_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--token-file"), "{err}");
    let out = std::process::Command::new(weir_bin)
        .args(["abort", "nope", "--admin", &url, "--token-file"])
        .arg(&token_file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rollout \"nope\" not found"), "{err}");
    let out = std::process::Command::new(weir_bin)
        .args(["abort", "nope", "--admin", &url])
        .env("WEIR_ADMIN_TOKEN", "s3cret-token")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rollout \"nope\" not found"), "{err}");
    weir.shutdown().await;
}

/// A Rollout's role names (`app-canary`, `app-stable`) reach a revision directly only on
/// loopback listeners and on those that opt in with `roleHosts: true`: on a public
/// listener, a Host header cannot pick the canary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_hosts_stay_off_public_listeners() {
    let v1 = backend("v1").await;
    let yaml = crate::rollout::rollout_config("v1", crate::rollout::CANARY, &[(v1.addr(), "v1")])
        .replace(
            "listeners: [{name: web, address: \"127.0.0.1:0\"}]",
            "listeners:\n    - {name: web, address: \"127.0.0.1:0\"}\n    - {name: public, address: \"0.0.0.0:0\"}\n    - {name: opted, address: \"0.0.0.0:0\", roleHosts: true}\n    - {name: closed, address: \"127.0.0.1:0\", roleHosts: false}",
        )
        .replace(
            "    - name: app\n      rollout: app",
            "    - name: app\n      match: {host: app.example.com}\n      rollout: app",
        );
    let weir = Weir::start(&yaml).await;
    let on = |name: &str| {
        let a = weir.app().listener(name).expect(name);
        SocketAddr::from(([127, 0, 0, 1], a.port()))
    };
    eventually(
        "app-stable reaches v1 on the loopback listener",
        Duration::from_secs(5),
        || async { get(on("web"), "app-stable", "/").await.header("x-backend") == Some("v1") },
    )
    .await;
    assert_eq!(
        get(on("opted"), "app-canary", "/")
            .await
            .header("x-backend"),
        Some("v1")
    );
    for listener in ["public", "closed"] {
        for host in ["app-stable", "app-canary", "APP-CANARY"] {
            let r = get(on(listener), host, "/").await;
            assert_eq!(r.status, 404, "{listener} {host}: {}", r.text());
            assert_eq!(r.header("x-backend"), None);
        }
    }
    // The route itself is served everywhere.
    assert_eq!(
        get(on("public"), "app.example.com", "/")
            .await
            .header("x-backend"),
        Some("v1")
    );
    weir.shutdown().await;
}
