//! WebSocket and other Upgrade requests pass through both ways.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::kit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_passes_through() {
    let b = backend("ws").await;
    let yaml = proxy(&split_route("app", &[("ws", 100.0)]), "") + &service("ws", &[b.addr()]);
    let weir = Weir::start(&yaml).await;
    let mut s = tokio::net::TcpStream::connect(weir.web()).await.unwrap();
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    // Bytes both ways, several times, over the one upgraded connection.
    for msg in [
        &b"hello"[..],
        b"over the upgraded connection",
        &[0u8, 1, 2, 255],
    ] {
        s.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg);
    }
    weir.shutdown().await;
}
