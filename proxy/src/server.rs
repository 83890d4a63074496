//! Client listeners: the accept loop over an already-bound listener, the connection
//! limit, and per-connection work (TLS handshake, HTTP/1.1 or HTTP/2 serving) inside the
//! connection's own task, so a slow handshake never stalls `accept`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::service::{ConnInfo, Shared, handle};

/// Settings of the client side that are fixed at start.
#[derive(Clone, Copy, Debug)]
pub struct ServerSettings {
    /// Bytes of request head allowed (HTTP/1.1), and of header list (HTTP/2).
    pub max_header_bytes: usize,
    /// Time to receive a request head, and to finish a TLS handshake.
    pub header_timeout: Duration,
    /// Idle keep-alive lifetime.
    pub idle_timeout: Duration,
}

/// Runs one listener until `shutdown`: accepts, and serves each connection in its own
/// task, registered with `graceful` so that shutdown can drain it.
pub async fn serve(
    shared: Arc<Shared>,
    listener_name: Arc<str>,
    listener: TcpListener,
    limit: Arc<Semaphore>,
    settings: ServerSettings,
    graceful: Arc<std::sync::Mutex<Option<GracefulShutdown>>>,
    shutdown: CancellationToken,
) {
    let local = listener.local_addr().ok();
    tracing::info!(listener = %listener_name, address = ?local, "listening");
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, client) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off a little instead of spinning.
                tracing::warn!(listener = %listener_name, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let counters = &shared.counters;
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            counters
                .connections_rejected
                .fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        counters
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let (index, tls) = {
            let table = shared.table.load();
            match table.listener(&listener_name) {
                Some(l) => (l.index, l.tls.clone()),
                None => (0, None),
            }
        };
        let conn = Arc::new(ConnInfo {
            shared: shared.clone(),
            listener: listener_name.clone(),
            listener_index: index,
            client,
            client_ip: client_ip_header(client),
            tls: tls.is_some(),
        });
        // Shutdown has begun once the drain took the GracefulShutdown away.
        let Some(watcher) = graceful
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(GracefulShutdown::watcher))
        else {
            drop(stream);
            continue;
        };
        tokio::spawn(async move {
            let counters = conn.shared.counters.clone();
            counters.connections_open.fetch_add(1, Ordering::Relaxed);
            match tls {
                None => serve_connection(conn, TokioIo::new(stream), settings, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(settings.header_timeout, acceptor.0.accept(stream))
                        .await
                    {
                        Ok(Ok(tls_stream)) => {
                            serve_connection(conn, TokioIo::new(tls_stream), settings, watcher)
                                .await
                        }
                        Ok(Err(e)) => {
                            counters
                                .tls_handshake_errors
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%client, "TLS handshake failed: {e}");
                        }
                        Err(_) => {
                            counters
                                .tls_handshake_errors
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%client, "TLS handshake timed out");
                        }
                    }
                }
            }
            counters.connections_open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    tracing::info!(listener = %listener_name, "stopped accepting");
}

async fn serve_connection<I>(
    conn: Arc<ConnInfo>,
    io: TokioIo<I>,
    settings: ServerSettings,
    graceful: Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(settings.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(settings.max_header_bytes as u32)
        .keep_alive_interval(Some(settings.idle_timeout / 2))
        .keep_alive_timeout(Duration::from_secs(20));
    let client = conn.client;
    let service = service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(handle(conn, req).await) }
    });
    let served = builder.serve_connection_with_upgrades(io, service);
    if let Err(e) = graceful.watch(served.into_owned()).await {
        tracing::debug!(%client, "connection ended: {e}");
    }
}

fn client_ip_header(client: SocketAddr) -> http::HeaderValue {
    let ip = client.ip().to_canonical().to_string();
    http::HeaderValue::from_maybe_shared(bytes::Bytes::from(ip))
        .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"))
}
