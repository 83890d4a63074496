//! HTTP/2 to upstreams: a Gateway, an HTTPRoute, and a Kubernetes Service whose port has
//! `appProtocol: kubernetes.io/h2c` (or `grpc`) with its EndpointSlice, in front of an
//! h2c-only backend ([`weir_fixtures::H2cBackend`]). HTTP/1.1 and HTTP/2 clients reach it;
//! gRPC-style calls keep their trailers; large bodies stream both ways; a backend down or
//! slow gets 502/503 and 504.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_fixtures::H2cBackend;
use weir_fixtures::h2c::{grpc_frame, pattern};

use crate::kit::*;

/// A free port on 127.0.0.1 for the Gateway's listener (the Gateway API has no port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Proxy, a Gateway on `port`, an HTTPRoute for `h2c.test` to Service `app` port 50051
/// (with `timeout`, a Gateway API duration, as the rule's `backendRequest` timeout), the
/// Service with `app_protocol` and an EndpointSlice with `endpoints`; a second rule for
/// `/mirror` copies its requests to Service `shadow` (the same backend's port, h2c too).
fn config(port: u16, app_protocol: &str, endpoints: &[SocketAddr], timeout: &str) -> String {
    let target = endpoints.first().map_or(1, |a| a.port());
    let addrs: Vec<String> = endpoints
        .iter()
        .map(|a| format!("{{addresses: [\"{}\"]}}", a.ip()))
        .collect();
    format!(
        r#"apiVersion: weir.dev/v1alpha1
kind: Proxy
metadata: {{name: edge}}
spec:
  debugHeaders: true
  gatewayAddress: 127.0.0.1
  admin: {{address: "127.0.0.1:0"}}
  upstream: {{connectTimeout: 1s}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: default}}
spec:
  gatewayClassName: weir
  listeners:
    - {{name: http, protocol: HTTP, port: {port}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: app, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [h2c.test]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: /mirror}}}}]
      filters:
        - type: RequestMirror
          requestMirror: {{backendRef: {{name: shadow, port: 50051}}}}
      backendRefs: [{{name: app, port: 50051}}]
    - timeouts: {{backendRequest: {timeout}}}
      backendRefs: [{{name: app, port: 50051}}]
---
apiVersion: v1
kind: Service
metadata: {{name: app, namespace: default}}
spec:
  ports: [{{name: grpc, port: 50051, targetPort: {target}, appProtocol: {app_protocol}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: app-1
  namespace: default
  labels: {{kubernetes.io/service-name: app}}
addressType: IPv4
ports: [{{name: grpc, port: {target}, appProtocol: {app_protocol}}}]
endpoints: [{addrs}]
---
apiVersion: v1
kind: Service
metadata: {{name: shadow, namespace: default}}
spec:
  ports: [{{name: grpc, port: 50051, targetPort: {target}, appProtocol: {app_protocol}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: shadow-1
  namespace: default
  labels: {{kubernetes.io/service-name: shadow}}
addressType: IPv4
ports: [{{name: grpc, port: {target}}}]
endpoints: [{addrs}]
"#,
        addrs = addrs.join(", ")
    )
}

/// weir in front of `backend` (h2c) on a Gateway listener; the listener's address.
async fn start(backend: &H2cBackend, app_protocol: &str, timeout: &str) -> (Weir, SocketAddr) {
    let port = free_port();
    let weir = Weir::start(&config(port, app_protocol, &[backend.addr()], timeout)).await;
    (weir, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// An HTTP/2 client with prior knowledge to `addr`.
async fn h2_client<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

/// An HTTP/1.1 client on its own connection to `addr`.
async fn h1_client<B>(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {}", String::from_utf8_lossy(body));
    })
}

/// An HTTP/1.1 client reaches an h2c-only backend: the request goes as HTTP/2 with its
/// forwarding headers, the answer comes back as HTTP/1.1 with weir's debug headers, and
/// requests share one upstream connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_client_to_h2c_backend() {
    let b = H2cBackend::start("h2c").await.unwrap();
    let (weir, addr) = start(&b, "kubernetes.io/h2c", "10s").await;
    let c = client();
    for i in 0..5 {
        let r = get_with(
            &c,
            addr,
            "h2c.test",
            &format!("/echo?i={i}"),
            &[("x-test", "1")],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-backend"), Some("h2c"));
        assert_eq!(r.header("x-weir-upstream"), Some(&*b.addr().to_string()));
        let j = json(&r.body);
        assert_eq!(j["version"], "HTTP/2.0");
        assert_eq!(j["method"], "GET");
        assert_eq!(j["path"], format!("/echo?i={i}"));
        assert_eq!(j["authority"], "h2c.test");
        assert_eq!(j["headers"]["x-test"][0], "1");
        assert_eq!(j["headers"]["x-forwarded-proto"][0], "http");
        assert_eq!(j["headers"]["x-forwarded-host"][0], "h2c.test");
        assert!(j["headers"].get("host").is_none(), "{j}");
        assert!(j["headers"].get("connection").is_none(), "{j}");
    }
    assert_eq!(b.hits(), 5);
    assert_eq!(b.connections(), 1, "one multiplexed upstream connection");

    // A request body (Content-Length) goes through whole.
    let mut send = h1_client::<Full<Bytes>>(addr).await;
    let req = http::Request::post("/echo")
        .header("host", "h2c.test")
        .body(Full::new(Bytes::from(vec![7u8; 100_000])))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(json(&body)["bodyBytes"], 100_000);
    weir.shutdown().await;
}

/// A gRPC-style unary call from an HTTP/2 client: the message echoed, `grpc-status` and
/// `grpc-message` in the trailers, passed through; a failing status too. Service port
/// `appProtocol: grpc`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_client_grpc_unary_keeps_trailers() {
    let b = H2cBackend::start("grpc").await.unwrap();
    let (weir, addr) = start(&b, "grpc", "10s").await;
    let mut send = h2_client::<Full<Bytes>>(addr).await;
    for (asked, message) in [("0", "ok"), ("5", "requested")] {
        let msg = grpc_frame(b"hello, weir");
        let req = http::Request::post("http://h2c.test/grpc/echo.Echo/Say")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("x-grpc-status", asked)
            .body(Full::new(msg.clone()))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.headers()["content-type"], "application/grpc");
        assert!(resp.headers().contains_key("x-weir-route"));
        let collected = resp.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().expect("trailers");
        assert_eq!(trailers["grpc-status"], asked);
        assert_eq!(trailers["grpc-message"], message);
        let body = collected.to_bytes();
        if asked == "0" {
            assert_eq!(body, msg);
        } else {
            assert!(body.is_empty());
        }
    }
    weir.shutdown().await;
}

/// The same call from an HTTP/1.1 client: chunked, the trailers sent only when it asked
/// for them with `TE: trailers`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_client_gets_trailers_only_when_asked() {
    let b = H2cBackend::start("grpc").await.unwrap();
    let (weir, addr) = start(&b, "kubernetes.io/h2c", "10s").await;
    for te in [true, false] {
        let msg = grpc_frame(b"ping");
        let mut head = format!(
            "POST /grpc/echo.Echo/Say HTTP/1.1\r\nhost: h2c.test\r\ncontent-type: application/grpc\r\ncontent-length: {}\r\n",
            msg.len()
        );
        if te {
            head.push_str("te: trailers\r\n");
        }
        head.push_str("connection: close\r\n\r\n");
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(head.as_bytes()).await.unwrap();
        tcp.write_all(&msg).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&raw).to_lowercase();
        assert!(text.starts_with("http/1.1 200 ok\r\n"), "{text}");
        assert!(
            text.contains("content-type: application/grpc\r\n"),
            "{text}"
        );
        if te {
            // Chunked, so that the trailers can follow: the message (9 bytes), the last
            // chunk, the trailers.
            assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
            assert!(!text.contains("content-length"), "{text}");
            assert!(text.contains("\r\n\r\n9\r\n"), "{text}");
            assert!(
                text.ends_with("0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n"),
                "{text}"
            );
        } else {
            // The upstream's length kept; the trailers dropped.
            assert!(text.contains("content-length: 9\r\n"), "{text}");
            assert!(!text.contains("grpc-status"), "{text}");
            assert!(raw.ends_with(&msg), "{text}");
        }
    }
    weir.shutdown().await;
}

/// 8 MiB streamed from the backend, and 8 MiB streamed to it and back at once, for both
/// client protocols; the bytes checked in order, the trailers counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways() {
    const SIZE: u64 = 8 * 1024 * 1024;
    let b = H2cBackend::start("big").await.unwrap();
    let (weir, addr) = start(&b, "kubernetes.io/h2c", "10s").await;
    let check = |body: &[u8]| {
        assert_eq!(body.len() as u64, SIZE);
        assert!(
            body.iter()
                .enumerate()
                .all(|(i, b)| *b == pattern(i as u64)),
            "the bytes came in order"
        );
    };

    // Download over HTTP/2: data and the `x-sent` trailer.
    let mut send = h2_client::<Empty<Bytes>>(addr).await;
    let req = http::Request::get(format!("http://h2c.test/stream?bytes={SIZE}"))
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let got = resp.into_body().collect().await.unwrap();
    assert_eq!(
        got.trailers().expect("trailers")["x-sent"],
        SIZE.to_string()
    );
    check(&got.to_bytes());

    // Download over HTTP/1.1, with and without the upstream's Content-Length.
    for length in ["0", "1"] {
        let r = get(
            addr,
            "h2c.test",
            &format!("/stream?bytes={SIZE}&length={length}"),
        )
        .await;
        assert_eq!(r.status, 200);
        if length == "1" {
            assert_eq!(r.header("content-length"), Some(&*SIZE.to_string()));
        } else {
            assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        }
        check(&r.body);
    }

    // Upload and echo over HTTP/2, the body streamed from a channel in 64 KiB frames.
    let frames = || {
        futures_util::stream::iter((0..SIZE).step_by(65536).map(|at| {
            let data: Vec<u8> = (at..(at + 65536).min(SIZE)).map(pattern).collect();
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(data)))
        }))
    };
    let mut send = h2_client::<StreamBody<_>>(addr).await;
    let req = http::Request::post("http://h2c.test/upload")
        .body(StreamBody::new(frames()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let got = resp.into_body().collect().await.unwrap();
    assert_eq!(
        got.trailers().expect("trailers")["x-received"],
        SIZE.to_string()
    );
    check(&got.to_bytes());

    // Upload over HTTP/1.1, chunked: echoed back chunked.
    let mut send = h1_client::<StreamBody<_>>(addr).await;
    let req = http::Request::post("/upload")
        .header("host", "h2c.test")
        .body(StreamBody::new(frames()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    check(&resp.into_body().collect().await.unwrap().to_bytes());
    weir.shutdown().await;
}

/// Many requests at once from HTTP/2 clients share the upstream's connections: more
/// than 100 in flight open a second one, no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_multiplex() {
    let b = H2cBackend::start("many").await.unwrap();
    let (weir, addr) = start(&b, "kubernetes.io/h2c", "10s").await;
    let send = h2_client::<Empty<Bytes>>(addr).await;
    let mut tasks = Vec::new();
    for i in 0..150 {
        let mut send = send.clone();
        tasks.push(tokio::spawn(async move {
            let req = http::Request::get(format!("http://h2c.test/slow?ms=200&i={i}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            let status = resp.status();
            let _ = resp.into_body().collect().await;
            status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(b.hits(), 150);
    assert!(
        (1..=2).contains(&b.connections()),
        "{} upstream connections for 150 streams",
        b.connections()
    );
    weir.shutdown().await;
}

/// A mirror route's copies reach an h2c target too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_to_h2c_target() {
    let b = H2cBackend::start("m").await.unwrap();
    let (weir, addr) = start(&b, "kubernetes.io/h2c", "10s").await;
    let r = get(addr, "h2c.test", "/mirror/a").await;
    assert_eq!(r.status, 200);
    let mut send = h2_client::<Full<Bytes>>(addr).await;
    let req = http::Request::post("http://h2c.test/mirror/b")
        .body(Full::new(Bytes::from_static(b"copied")))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await;
    // Each request is answered once, and copied once.
    eventually(
        "the mirrored copies arrive",
        Duration::from_secs(5),
        || async { b.hits() == 4 },
    )
    .await;
    weir.shutdown().await;
}

/// A backend that is down: 502 to both client protocols (and 503 for a Service with no
/// ready endpoint); one too slow for the rule's timeout: 504.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_and_slow() {
    let b = H2cBackend::start("slow").await.unwrap();
    let (weir, addr) = start(&b, "kubernetes.io/h2c", "300ms").await;

    // Slow: the rule's backendRequest timeout is 300ms.
    let r = get(addr, "h2c.test", "/slow?ms=2000").await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.text().contains("did not answer in time"), "{}", r.text());
    let mut send = h2_client::<Empty<Bytes>>(addr).await;
    let req = http::Request::get("http://h2c.test/slow?ms=2000")
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 504);
    // In time: fine.
    let r = get(addr, "h2c.test", "/slow?ms=10").await;
    assert_eq!(r.status, 200);

    // Down: the backend's port closed; its open connection goes too.
    let gone = b.addr();
    b.shutdown();
    b.closed().await;
    let _ = gone;
    eventually(
        "502 once the backend is down",
        Duration::from_secs(5),
        || async { get(addr, "h2c.test", "/").await.status == 502 },
    )
    .await;
    let req = http::Request::get("http://h2c.test/")
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 502);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("502 Bad Gateway"));
    weir.shutdown().await;

    // No ready endpoint: 503.
    let port = free_port();
    let weir = Weir::start(&config(port, "kubernetes.io/h2c", &[], "1s")).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let r = get(addr, "h2c.test", "/").await;
    assert_eq!(r.status, 503, "{}", r.text());
    weir.shutdown().await;
}

/// A weir Service with `protocol: h2c` behind a Proxy route reaches the h2c backend;
/// without it, HTTP/1.1 to the same backend fails (502), as it must.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_service_protocol_h2c() {
    let b = H2cBackend::start("w").await.unwrap();
    let svc = |protocol: &str| {
        format!(
            "---\napiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {{name: app}}\nspec:\n  {protocol}endpoints: [\"{}\"]\n",
            b.addr()
        )
    };
    let yaml = proxy(&split_route("app", &[("app", 100.0)]), "") + &svc("protocol: h2c\n  ");
    let weir = Weir::start(&yaml).await;
    let r = get(weir.web(), "app.test", "/x").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(json(&r.body)["version"], "HTTP/2.0");
    weir.shutdown().await;

    let yaml = proxy(&split_route("app", &[("app", 100.0)]), "") + &svc("");
    let weir = Weir::start(&yaml).await;
    let r = get(weir.web(), "app.test", "/x").await;
    assert_eq!(r.status, 502, "{}", r.text());
    weir.shutdown().await;
}

/// An h2c endpoint's health check is a `GET` over HTTP/2, not a bare connect: an
/// endpoint that accepts connections but does not speak h2c never passes, so every
/// request goes to the one that does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_endpoints_are_health_checked_over_http2() {
    let good = H2cBackend::start("good").await.unwrap();
    // Accepts connections and never answers: a connect succeeds, a GET does not.
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mute_addr = mute.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = mute.accept().await {
            held.push(s);
        }
    });
    let within = |f| async move {
        tokio::time::timeout(Duration::from_secs(2), f)
            .await
            .expect("an answer within 2 s: the request went to the endpoint that never answers")
    };
    let svc = format!(
        "---\napiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {{name: app}}\nspec:\n  protocol: h2c\n  healthCheck: {{path: /healthz, interval: 100ms, timeout: 500ms, healthyThreshold: 1}}\n  endpoints: [\"{}\", \"{}\"]\n",
        good.addr(),
        mute_addr
    );
    let yaml = proxy(&split_route("app", &[("app", 100.0)]), "") + &svc;
    let weir = Weir::start(&yaml).await;
    eventually(
        "the h2c endpoint passes its check",
        Duration::from_secs(5),
        || async {
            let mut all_good = true;
            // Before any check has ended, every endpoint takes requests.
            for _ in 0..10 {
                let r = tokio::time::timeout(
                    Duration::from_millis(500),
                    get(weir.web(), "app.test", "/x"),
                )
                .await;
                all_good &=
                    r.is_ok_and(|r| r.status == 200 && r.header("x-backend") == Some("good"));
            }
            all_good
        },
    )
    .await;
    for _ in 0..40 {
        let r = within(get(weir.web(), "app.test", "/x")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-backend"), Some("good"));
    }
    weir.shutdown().await;
}
