//! An HTTPRoute's `timeouts.request` bounds the whole exchange, not only the wait for the
//! response head: a slow upload gets 504, and a response still dribbling in when the
//! deadline passes is cut off, for HTTP/1.1 and HTTP/2 clients alike. A route without it
//! lets the same slow exchanges finish.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::kit::*;

/// A backend that reads a request (its body up to `Content-Length`), answers the head at
/// once, then its 10-byte body one byte every 200 ms.
async fn dribbling_backend() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n",
                    )
                    .await;
                for _ in 0..10 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if s.write_all(b"x").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn config(port: u16, backend: SocketAddr) -> String {
    format!(
        r#"apiVersion: weir.dev/v1alpha1
kind: Proxy
metadata: {{name: edge}}
spec:
  gatewayAddress: 127.0.0.1
  admin: {{address: "127.0.0.1:0"}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  gatewayClassName: weir
  listeners: [{{name: http, protocol: HTTP, port: {port}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: slow}}
spec:
  ports: [{{name: http, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: slow-1, labels: {{kubernetes.io/service-name: slow}}}}
addressType: IPv4
endpoints: [{{addresses: ["{ip}"]}}]
ports: [{{name: http, port: {bport}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: /bounded}}}}]
      timeouts: {{request: 1s}}
      backendRefs: [{{name: slow, port: 80}}]
    - matches: [{{path: {{type: PathPrefix, value: /free}}}}]
      backendRefs: [{{name: slow, port: 80}}]
"#,
        ip = backend.ip(),
        bport = backend.port()
    )
}

/// A GET over HTTP/1.1: the status and whether the whole body (10 bytes) came.
async fn h1_get(addr: SocketAddr, path: &str) -> (u16, bool) {
    let c = client();
    let req = http::Request::builder()
        .uri(format!("http://{addr}{path}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let whole = resp
        .into_body()
        .collect()
        .await
        .is_ok_and(|b| b.to_bytes().len() == 10);
    (status, whole)
}

/// A GET over HTTP/2 (prior knowledge): the status and whether the whole body came.
async fn h2_get(addr: SocketAddr, path: &str) -> (u16, bool) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(format!("http://{addr}{path}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let whole = resp
        .into_body()
        .collect()
        .await
        .is_ok_and(|b| b.to_bytes().len() == 10);
    (status, whole)
}

/// A POST over HTTP/1.1 whose 10-byte body comes one byte every 200 ms: the status.
async fn slow_upload(addr: SocketAddr, path: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let writer = async {
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if s.write_all(b"y").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while got.len() < 12 {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got)
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_request_bounds_the_whole_exchange() {
    let backend = dribbling_backend().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let w = Weir::start(&config(port, backend)).await;
    let gw = SocketAddr::from(([127, 0, 0, 1], port));
    // The response head comes at once, its body in 2 s: cut off after 1 s.
    assert_eq!(h1_get(gw, "/bounded").await, (200, false));
    assert_eq!(h2_get(gw, "/bounded").await, (200, false));
    // Without timeouts.request the same response arrives whole.
    assert_eq!(h1_get(gw, "/free").await, (200, true));
    assert_eq!(h2_get(gw, "/free").await, (200, true));
    // An upload that takes 2 s: 504 after 1 s, before the backend answers.
    assert_eq!(slow_upload(gw, "/bounded").await, 504);
    assert_eq!(slow_upload(gw, "/free").await, 200);
    assert!(w.shutdown().await);
}
