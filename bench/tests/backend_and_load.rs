//! The fake backend and the load generator against each other, over real loopback sockets.
//! No sleeps as synchronisation and no timing assertions: waits poll for a condition, with a
//! generous deadline that only turns a hang into a failure.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use weir_bench::{Behavior, FakeBackend, Latency, LoadSpec, Mode, Report, run};

const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `cond` until it holds; panics after [`PATIENCE`].
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let give_up = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < give_up,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One HTTP/1.1 request on a fresh connection.
async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: &'static str,
) -> (StatusCode, HeaderMap, Bytes) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "test")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

fn spec(addr: SocketAddr, connections: usize, duration: Duration) -> LoadSpec {
    LoadSpec {
        connections,
        duration,
        ..LoadSpec::new(addr)
    }
}

/// Runs `spec` in the background until `enough` holds, then stops it.
async fn run_until(spec: LoadSpec, what: &str, enough: impl FnMut() -> bool) -> Report {
    let stop = CancellationToken::new();
    let load = tokio::spawn(run(spec, stop.clone()));
    wait_for(what, enough).await;
    stop.cancel();
    load.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_counts_match_the_backend() {
    let v1 = FakeBackend::start("v1", Behavior::default()).await.unwrap();
    let v2 = FakeBackend::start("v2", Behavior::default()).await.unwrap();
    let report = run(
        LoadSpec {
            record_sequence: true,
            ..spec(v1.addr(), 4, Duration::from_millis(800))
        },
        CancellationToken::new(),
    )
    .await;
    println!("{report}");

    assert_eq!(report.errors, 0);
    assert!(report.requests > 0);
    assert_eq!(report.by_status, BTreeMap::from([(200, report.requests)]));
    assert_eq!(
        report.by_backend,
        BTreeMap::from([("v1".to_owned(), report.requests)])
    );
    assert_eq!(report.latency.len(), report.requests);
    assert_eq!(report.sequence.len() as u64, report.requests);
    assert!(report.sequence.iter().all(|b| b == "v1"));
    assert_eq!(report.success_rate(), 1.0);
    assert!(report.rps() > 0.0);
    // Every request sent was answered and seen, over keep-alive connections.
    assert_eq!(v1.hits(), report.requests);
    assert_eq!(
        v1.hits_by_status(),
        BTreeMap::from([(200, report.requests)])
    );
    assert_eq!(v1.connections(), 4);
    assert_eq!(v2.hits(), 0);

    let report = run(
        spec(v2.addr(), 1, Duration::from_millis(100)),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(report.by_backend.keys().collect::<Vec<_>>(), ["v2"]);
    assert_eq!(v2.hits(), report.requests);

    v1.reset_hits();
    assert_eq!(v1.hits(), 0);
    assert!(v1.hits_by_status().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_switches_behaviour_while_load_runs() {
    let backend = FakeBackend::start("v1", Behavior::default()).await.unwrap();
    let stop = CancellationToken::new();
    let load = tokio::spawn(run(
        spec(backend.addr(), 2, Duration::from_secs(120)),
        stop.clone(),
    ));
    wait_for("some 200s", || backend.hits() >= 20).await;
    backend.set(Behavior::with_status(503));
    assert_eq!(backend.behavior().status, 503);
    let flipped_at = backend.hits();
    wait_for("some 503s", || backend.hits() >= flipped_at + 20).await;
    stop.cancel();
    let report = load.await.unwrap();

    assert_eq!(report.errors, 0);
    assert!(report.by_status[&200] > 0, "{report}");
    assert!(report.by_status[&503] >= 10, "{report}");
    assert_eq!(report.by_status.values().sum::<u64>(), report.requests);
    assert!(backend.hits() >= report.requests);
    assert!(report.success_rate() < 1.0);
}

#[tokio::test]
async fn responses_carry_name_body_and_content_type() {
    let backend = FakeBackend::start(
        "blue",
        Behavior {
            body_size: 5,
            ..Behavior::default()
        },
    )
    .await
    .unwrap();
    let (status, headers, body) = send(backend.addr(), Method::GET, "/anything", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-backend"], "blue");
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(body, "aaaaa");

    // A request with a body is answered too.
    let (status, _, body) = send(backend.addr(), Method::POST, "/", "payload").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "aaaaa");
    assert_eq!(backend.hits(), 2);
}

#[tokio::test]
async fn control_endpoint_reads_and_replaces_the_behaviour() {
    let backend = FakeBackend::start("v1", Behavior::default()).await.unwrap();
    let addr = backend.addr();

    let (status, headers, body) = send(addr, Method::GET, weir_bench::CONTROL_PATH, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-backend"], "v1");
    let current: Behavior = serde_json::from_slice(&body).unwrap();
    assert_eq!(current, Behavior::default());

    let (status, _, body) = send(
        addr,
        Method::PUT,
        weir_bench::CONTROL_PATH,
        r#"{"status":418,"bodySize":0}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(backend.behavior().status, 418);
    assert_eq!(backend.behavior().body_size, 0);
    let (status, headers, body) = send(addr, Method::GET, "/", "").await;
    assert_eq!(status, StatusCode::IM_A_TEAPOT);
    assert_eq!(headers["x-backend"], "v1");
    assert!(body.is_empty());

    for bad in [r#"{"status":42}"#, r#"{"sttus":500}"#, "not json"] {
        let (status, _, _) = send(addr, Method::POST, weir_bench::CONTROL_PATH, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(backend.behavior().status, 418);
    let (status, _, _) = send(addr, Method::DELETE, weir_bench::CONTROL_PATH, "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // Control requests are not hits.
    assert_eq!(backend.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_rate_mixes_error_statuses_in() {
    let backend = FakeBackend::start(
        "v1",
        Behavior {
            error_rate: 1.0,
            error_status: 502,
            ..Behavior::default()
        },
    )
    .await
    .unwrap();
    let report = run(
        spec(backend.addr(), 1, Duration::from_millis(100)),
        CancellationToken::new(),
    )
    .await;
    assert!(report.requests > 0);
    assert_eq!(report.by_status, BTreeMap::from([(502, report.requests)]));
    assert_eq!(report.success_rate(), 0.0);

    backend.set(Behavior {
        error_rate: 0.5,
        error_status: 503,
        ..Behavior::default()
    });
    backend.reset_hits();
    run_until(
        spec(backend.addr(), 2, Duration::from_secs(120)),
        "400 hits",
        || backend.hits() >= 400,
    )
    .await;
    // With 400 fair coin flips, either side below 100 has odds far under 1e-20.
    let by_status = backend.hits_by_status();
    assert!(by_status[&200] >= 100, "{by_status:?}");
    assert!(by_status[&503] >= 100, "{by_status:?}");
}

#[tokio::test]
async fn latency_delays_answers() {
    let backend = FakeBackend::start(
        "slow",
        Behavior {
            latency: Latency::Fixed { ms: 20.0 },
            ..Behavior::default()
        },
    )
    .await
    .unwrap();
    let report = run(
        spec(backend.addr(), 2, Duration::from_millis(200)),
        CancellationToken::new(),
    )
    .await;
    assert!(report.requests > 0);
    assert_eq!(report.errors, 0);
    // A lower bound only: sleeping never ends early.
    assert!(report.quantile_ms(0.0) >= 20.0, "{report}");
    assert_eq!(backend.hits(), report.requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_never_exceeds_its_schedule() {
    let backend = FakeBackend::start("v1", Behavior::default()).await.unwrap();
    let report = run(
        LoadSpec {
            mode: Mode::Open { rate: 200.0 },
            ..spec(backend.addr(), 2, Duration::from_millis(500))
        },
        CancellationToken::new(),
    )
    .await;
    // 200/s over 0.5 s: connection 0 at 0, 10, ... 490 ms, connection 1 at 5, 15, ... 495 ms.
    assert!(report.requests > 0);
    assert!(report.requests <= 100, "{report}");
    assert_eq!(report.errors, 0);
    assert_eq!(backend.hits(), report.requests);

    let report = run(
        LoadSpec {
            mode: Mode::Open { rate: 0.0 },
            ..spec(backend.addr(), 2, Duration::from_millis(50))
        },
        CancellationToken::new(),
    )
    .await;
    assert_eq!(report.requests + report.errors, 0);
}

#[tokio::test]
async fn refused_connections_are_errors_not_panics() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let report = run(
        spec(addr, 3, Duration::from_millis(200)),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(report.requests, 0);
    assert!(report.errors > 0);
    assert_eq!(report.success_rate(), 0.0);
    assert_eq!(report.quantile_ms(0.99), 0.0);
    println!("{report}");
}

#[tokio::test]
async fn a_cancelled_run_stops_at_once() {
    let backend = FakeBackend::start("v1", Behavior::default()).await.unwrap();
    let stop = CancellationToken::new();
    stop.cancel();
    let report = run(spec(backend.addr(), 4, Duration::from_secs(3600)), stop).await;
    assert_eq!(report.requests, 0);
    assert_eq!(report.errors, 0);
}

#[tokio::test]
async fn upgrades_are_echoed_until_shutdown() {
    let backend = FakeBackend::start("ws", Behavior::default()).await.unwrap();
    let mut stream = TcpStream::connect(backend.addr()).await.unwrap();
    stream
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: test\r\nConnection: keep-alive, Upgrade\r\n\
              Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).await.unwrap(),
            1,
            "closed in the head"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(head.contains("\r\nx-backend: ws\r\n"), "{head}");

    for message in [&b"hello"[..], b"\x00\x01 binary \xff", b"again"] {
        stream.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, message);
    }
    assert_eq!(backend.hits_by_status(), BTreeMap::from([(101, 1)]));

    // Shutting down closes the upgraded connection and the listener.
    backend.shutdown();
    tokio::time::timeout(PATIENCE, backend.closed())
        .await
        .expect("backend closed");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("connection closed");
    assert!(read.is_err() || rest.is_empty());
    assert!(TcpStream::connect(backend.addr()).await.is_err());
}

#[tokio::test]
async fn serves_a_given_listener_and_h2c_prior_knowledge() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let backend = FakeBackend::serve("h2", listener, Behavior::default()).await;
    assert_eq!(backend.addr(), addr);
    assert_eq!(backend.name(), "h2");

    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let request = Request::builder()
            .uri(format!("http://{addr}/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-backend"], "h2");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "aa");
    }
    assert_eq!(backend.hits(), 3);
    assert_eq!(backend.connections(), 1);
}
