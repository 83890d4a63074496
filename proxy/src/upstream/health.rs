//! Active health checks: one `GET` of the Service's `healthCheck.path` on a connection of
//! its own (never a pooled one, never counted as a request), a 2xx or 3xx answer within
//! the timeout passes, as Kubernetes' `httpGet` probes read it. An h2c endpoint gets the
//! same `GET` over HTTP/2 with prior knowledge (hyper's client, on a connection opened
//! for it and closed after), since an HTTP/1.1 `GET` is not its language.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use weir_config::model::{HealthCheck, UpstreamProtocol};

use super::EndpointPool;

/// Whether `pool`'s endpoint passes `check` now.
pub(super) async fn probe(pool: &EndpointPool, check: &HealthCheck) -> bool {
    tokio::time::timeout(check.timeout, attempt(pool, check))
        .await
        .unwrap_or(false)
}

async fn attempt(pool: &EndpointPool, check: &HealthCheck) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(pool.addr).await else {
        return false;
    };
    if pool.protocol == UpstreamProtocol::H2c {
        return h2c_get(s, pool, check).await;
    }
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: weir-health-check\r\nConnection: close\r\n\r\n",
        check.path, pool.authority
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    // The status line is enough: `HTTP/1.1 200`.
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]).await {
            Ok(0) | Err(_) => return false,
            Ok(k) => n += k,
        }
    }
    let status = std::str::from_utf8(&buf[9..12])
        .ok()
        .and_then(|c| c.parse::<u16>().ok());
    buf.starts_with(b"HTTP/1.") && status.is_some_and(|c| (200..400).contains(&c))
}

/// The check's `GET` over HTTP/2 (prior knowledge) on `s`.
async fn h2c_get(s: tokio::net::TcpStream, pool: &EndpointPool, check: &HealthCheck) -> bool {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let Ok((mut send, conn)) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s)).await
    else {
        return false;
    };
    // The connection is driven here, beside the request, and dropped with it.
    let conn = std::pin::pin!(conn);
    let uri = format!("http://{}{}", pool.authority, check.path);
    let Ok(req) = http::Request::get(uri)
        .header(http::header::USER_AGENT, "weir-health-check")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
    else {
        return false;
    };
    tokio::select! {
        r = send.send_request(req) => r.is_ok_and(|r| (200..400).contains(&r.status().as_u16())),
        _ = conn => false,
    }
}
