//! Active health checks: one `GET` of the Service's `healthCheck.path` on a connection of
//! its own (never a pooled one, never counted as a request), a 2xx or 3xx answer within
//! the timeout passes, as Kubernetes' `httpGet` probes read it. An h2c-only endpoint is
//! checked by connecting (an HTTP/1.1 `GET` is not its language).

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
        return true;
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
