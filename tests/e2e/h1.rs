//! HTTP/1.1 details of the fast path: bodies both ways (chunked and sized, large ones
//! streamed), 100-continue, HEAD/204, close-delimited responses, HTTP/1.0 clients,
//! pipelining, and the retry on a pooled connection the upstream closed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::kit::*;

/// An upstream that echoes request bodies (streamed back, chunked) and knows a few
/// special paths.
async fn echo_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let path = req.uri().path().to_owned();
                    let resp = match path.as_str() {
                        "/204" => http::Response::builder()
                            .status(204)
                            .body(Full::new(Bytes::new()).boxed())
                            .unwrap(),
                        "/sized" => http::Response::builder()
                            .header("content-length", "5")
                            .body(Full::new(Bytes::from_static(b"sized")).boxed())
                            .unwrap(),
                        _ => {
                            // Read the whole body, then send it back chunked.
                            let method = req.method().to_string();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let stream =
                                http_body_util::StreamBody::new(futures_util::stream::iter(vec![
                                    Ok::<_, Infallible>(hyper::body::Frame::data(body)),
                                ]));
                            http::Response::builder()
                                .header("x-method", method)
                                .body(stream.boxed())
                                .unwrap()
                        }
                    };
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

async fn weir_to(upstream: SocketAddr) -> Weir {
    Weir::start(&(proxy(&split_route("app", &[("up", 100.0)]), "") + &service("up", &[upstream])))
        .await
}

/// Reads one HTTP/1.1 response from `s`, returning (head, body); understands
/// content-length, chunked (decoded) and close-delimited bodies.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> (String, Vec<u8>) {
    let mut tmp = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut tmp).await.unwrap();
        assert!(
            n > 0,
            "closed before a response head: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    buf.drain(..head_end);
    let status: u16 = head[9..12].parse().unwrap();
    if head.contains("content-length: ") {
        let len: usize = head
            .split("content-length: ")
            .nth(1)
            .unwrap()
            .split("\r\n")
            .next()
            .unwrap()
            .parse()
            .unwrap();
        while buf.len() < len {
            let n = s.read(&mut tmp).await.unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&tmp[..n]);
        }
        let body = buf.drain(..len).collect();
        return (head, body);
    }
    if status == 204 || status == 304 || (100..200).contains(&status) {
        return (head, Vec::new());
    }
    if head.contains("transfer-encoding: chunked") {
        let mut body = Vec::new();
        loop {
            while !buf.windows(2).any(|w| w == b"\r\n") {
                let n = s.read(&mut tmp).await.unwrap();
                assert!(n > 0);
                buf.extend_from_slice(&tmp[..n]);
            }
            let line_end = buf.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(
                std::str::from_utf8(&buf[..line_end])
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap(),
                16,
            )
            .unwrap();
            buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers until an empty line.
                loop {
                    while !buf.windows(2).any(|w| w == b"\r\n") {
                        let n = s.read(&mut tmp).await.unwrap();
                        buf.extend_from_slice(&tmp[..n]);
                    }
                    let e = buf.windows(2).position(|w| w == b"\r\n").unwrap();
                    let line: Vec<u8> = buf.drain(..e + 2).collect();
                    if e == 0 {
                        return (head, body);
                    }
                    body.extend_from_slice(b"[trailer ");
                    body.extend_from_slice(&line[..e]);
                    body.extend_from_slice(b"]");
                }
            }
            while buf.len() < size + 2 {
                let n = s.read(&mut tmp).await.unwrap();
                assert!(n > 0);
                buf.extend_from_slice(&tmp[..n]);
            }
            body.extend(buf.drain(..size));
            buf.drain(..2);
        }
    }
    // Close-delimited.
    let mut body = std::mem::take(buf);
    s.read_to_end(&mut body).await.unwrap();
    (head, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_both_ways_chunked_and_sized() {
    let weir = weir_to(echo_upstream().await).await;
    let mut s = TcpStream::connect(weir.web()).await.unwrap();
    let mut buf = Vec::new();
    // Sized request body, echoed back.
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world")
        .await
        .unwrap();
    let (head, body) = read_response(&mut s, &mut buf).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("x-method: post"), "{head}");
    assert_eq!(body, b"hello world");
    // Chunked request body in pieces, on the same connection.
    s.write_all(
        b"PUT /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    tokio::task::yield_now().await;
    s.write_all(b"6\r\n world\r\n0\r\n\r\n").await.unwrap();
    let (head, body) = read_response(&mut s, &mut buf).await;
    assert!(head.contains("x-method: put"), "{head}");
    assert_eq!(body, b"hello world");
    weir.shutdown().await;

    // A chunked response with trailers passes through verbatim.
    let up = scripted_upstream(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ndata\r\n0\r\nX-Checksum: abc\r\n\r\n",
        false,
    )
    .await;
    let weir = weir_to(up).await;
    let mut s = TcpStream::connect(weir.web()).await.unwrap();
    s.write_all(b"GET /trailers HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_response(&mut s, &mut buf).await;
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert_eq!(body, b"data[trailer X-Checksum: abc]");
    weir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_through() {
    let weir = weir_to(echo_upstream().await).await;
    let c = reqwest_like_client();
    let payload: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}/echo", weir.web()))
        .header("host", "a")
        .body(Full::new(Bytes::from(payload.clone())))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let got = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(got.len(), payload.len());
    assert!(got == payload, "8 MiB came back intact");
    weir.shutdown().await;
}

fn reqwest_like_client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
> {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_head_204_and_pipelining() {
    let weir = weir_to(echo_upstream().await).await;
    let mut s = TcpStream::connect(weir.web()).await.unwrap();
    let mut buf = Vec::new();
    // The client waits for 100 Continue before sending its body.
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let (head, _) = read_response(&mut s, &mut buf).await;
    assert!(head.starts_with("http/1.1 100"), "{head}");
    s.write_all(b"ping").await.unwrap();
    let (head, body) = read_response(&mut s, &mut buf).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"ping");
    // HEAD: the head only, and the connection stays usable.
    s.write_all(b"HEAD /sized HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut tmp = vec![0u8; 4096];
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut tmp[..1]).await.unwrap();
        assert!(n > 0);
        head.push(tmp[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 200") && head.contains("content-length: 5"),
        "{head}"
    );
    // 204, then two pipelined requests in one write, answered in order.
    s.write_all(b"GET /204 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_response(&mut s, &mut buf).await;
    assert!(head.starts_with("http/1.1 204"), "{head}");
    assert!(body.is_empty());
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\noneGET /sized HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let (_, body) = read_response(&mut s, &mut buf).await;
    assert_eq!(body, b"one");
    let (_, body) = read_response(&mut s, &mut buf).await;
    assert_eq!(body, b"sized");
    weir.shutdown().await;
}

/// A raw upstream: answers every first request on a connection with `first`, then
/// either closes at once (`close_after`) or reads the second request and closes the
/// connection without answering it (a keep-alive race).
async fn scripted_upstream(first: &'static [u8], close_after: bool) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                // First request.
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                let _ = s.write_all(first).await;
                if close_after {
                    return;
                }
                // Second request: read it, then hang up.
                let _ = s.read(&mut buf).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_closed_under_a_request_is_retried_for_safe_requests() {
    let up = scripted_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false).await;
    let weir = weir_to(up).await;
    let mut s = TcpStream::connect(weir.web()).await.unwrap();
    let mut buf = Vec::new();
    for _ in 0..3 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let (head, body) = read_response(&mut s, &mut buf).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(body, b"ok");
    }
    // A POST with a body is not sent twice: the client gets a 502.
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx")
        .await
        .unwrap();
    let (head, _) = read_response(&mut s, &mut buf).await;
    assert!(head.starts_with("http/1.1 502"), "{head}");
    weir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_delimited_responses_and_http10_clients() {
    // An upstream that answers without a length and closes.
    let close_up = scripted_upstream(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close",
        true,
    )
    .await;
    let weir = weir_to(close_up).await;
    let mut s = TcpStream::connect(weir.web()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let (head, body) = read_response(&mut s, &mut buf).await;
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(body, b"until close");
    weir.shutdown().await;

    // An HTTP/1.0 client gets a chunked upstream body decoded, then the close.
    let weir = weir_to(echo_upstream().await).await;
    let mut s = TcpStream::connect(weir.web()).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.0\r\nContent-Length: 4\r\n\r\n1.0!")
        .await
        .unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&all).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(!text.contains("transfer-encoding"), "{text}");
    assert!(text.ends_with("\r\n\r\n1.0!"), "{text}");
    // HTTP/1.0 with keep-alive keeps the connection.
    let mut s = TcpStream::connect(weir.web()).await.unwrap();
    let mut buf = Vec::new();
    for _ in 0..2 {
        s.write_all(b"GET /sized HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let (head, body) = read_response(&mut s, &mut buf).await;
        assert!(head.contains("connection: keep-alive"), "{head}");
        assert_eq!(body, b"sized");
    }
    weir.shutdown().await;
}

/// HTTP/2 clients reach HTTP/1.1 upstreams with bodies both ways: an unsized request
/// body goes out chunked, a chunked response comes back as data frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_with_bodies() {
    let weir = weir_to(echo_upstream().await).await;
    let tcp = TcpStream::connect(weir.web()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for i in 0..3 {
        let payload = format!("h2 body {i} ").repeat(5000);
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(
            payload
                .as_bytes()
                .chunks(7000)
                .map(|c| Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::copy_from_slice(c))))
                .collect::<Vec<_>>(),
        ));
        let req = http::Request::builder()
            .method("POST")
            .uri("http://app.test/echo")
            .body(body)
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-method"], "POST");
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(got.len(), payload.len());
        assert!(got == payload.as_bytes());
    }
    weir.shutdown().await;
}
