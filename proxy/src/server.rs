//! Client listeners: the accept loop over an already-bound listener, the connection
//! limit, and per-connection work (TLS handshake, protocol detection, serving) inside
//! the connection's own task, so a slow handshake never stalls `accept`.
//!
//! HTTP/1.x goes to the fast path ([`crate::h1`]); HTTP/2, by ALPN or by the prior
//! knowledge preface, to hyper ([`crate::service`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{Admission, Admitted, Slot};
use crate::h1::{self, H2_PREFACE};
use crate::service::{ConnInfo, Shared, handle};

/// Settings of the client side that are fixed at start.
#[derive(Clone, Copy, Debug)]
pub struct ServerSettings {
    /// Bytes of request head allowed (HTTP/1.1), and of header list (HTTP/2).
    pub max_header_bytes: usize,
    /// Time to receive a whole request head, and to finish a TLS handshake.
    pub header_timeout: Duration,
    /// Idle keep-alive lifetime.
    pub idle_timeout: Duration,
    /// Longest wait for a request body's next bytes, and the grace before
    /// `min_body_rate` applies.
    pub body_timeout: Duration,
    /// Slowest average request body rate after the grace, bytes per second (0: none).
    pub min_body_rate: u64,
    /// Longest time a write to the client may make no progress.
    pub send_timeout: Duration,
}

impl ServerSettings {
    pub(crate) fn h1(&self) -> h1::Settings {
        h1::Settings {
            max_header_bytes: self.max_header_bytes,
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            body_timeout: self.body_timeout,
            min_body_rate: self.min_body_rate,
            send_timeout: self.send_timeout,
        }
    }
}

/// How long a connection admitted by evicting another waits for that one's permit.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// How connections are drained at shutdown: `token` asks them to finish, `tracker`
/// knows when they have.
#[derive(Clone, Debug, Default)]
pub struct Drain {
    /// Cancelled when shutdown begins.
    pub token: CancellationToken,
    /// Every connection task.
    pub tracker: TaskTracker,
}

/// Runs one listener until `shutdown`: accepts, and serves each connection in its own
/// task, tracked by `drain`.
pub async fn serve(
    shared: Arc<Shared>,
    listener_name: Arc<str>,
    listener: TcpListener,
    admission: Arc<Admission>,
    settings: ServerSettings,
    drain: Drain,
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
        if drain.token.is_cancelled() {
            break;
        }
        // At the limit, the longest-waiting connection without a request in flight makes
        // room (crate::admission); only when every one is busy is the new one refused.
        let permit = match admission.limit.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) if admission.evict_one() => {
                counters.connections_evicted.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(_) => {
                counters
                    .connections_rejected
                    .fetch_add(1, Ordering::Relaxed);
                drop(stream);
                continue;
            }
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
        let slot = Arc::new(Slot::new(drain.token.child_token()));
        let conn = Arc::new(ConnInfo {
            shared: shared.clone(),
            listener: listener_name.clone(),
            listener_index: index,
            client,
            client_ip: client_ip_header(client),
            tls: tls.is_some(),
            slot: slot.clone(),
        });
        let token = slot.stop.clone();
        let admission = admission.clone();
        drain.tracker.spawn(async move {
            let counters = conn.shared.counters.clone();
            let permit = match permit {
                Some(p) => p,
                // Room is being made: the evicted connection lets its permit go as soon
                // as its task sees the request to stop.
                None => match tokio::time::timeout(
                    EVICTION_WAIT,
                    admission.limit.clone().acquire_owned(),
                )
                .await
                {
                    Ok(Ok(p)) => p,
                    _ => {
                        counters
                            .connections_rejected
                            .fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                },
            };
            admission.enter(&slot);
            let _admitted = Admitted {
                admission: &admission,
                slot,
            };
            let deadline = Instant::now() + settings.header_timeout;
            counters.connections_open.fetch_add(1, Ordering::Relaxed);
            // Each protocol's state is boxed, so that a connection's task is only as large
            // as the one it speaks (TLS and HTTP/2 state is far larger than HTTP/1.1's).
            match tls {
                None => detect_and_serve(conn, stream, false, settings, deadline, token).await,
                Some(acceptor) => {
                    Box::pin(async {
                        let handshake = tokio::select! {
                            biased;
                            r = tokio::time::timeout_at(deadline, acceptor.0.accept(stream)) => r,
                            // Evicted (or shutting down) mid-handshake.
                            _ = token.cancelled() => return,
                        };
                        match handshake {
                            Ok(Ok(tls_stream)) => {
                                let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
                                let deadline = Instant::now() + settings.header_timeout;
                                detect_and_serve(conn, tls_stream, h2, settings, deadline, token)
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
                    })
                    .await
                }
            }
            counters.connections_open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    tracing::info!(listener = %listener_name, "stopped accepting");
}

/// Serves HTTP/2 when ALPN chose it or the client opens with the HTTP/2 preface;
/// otherwise HTTP/1.x on the fast path.
async fn detect_and_serve<S>(
    conn: Arc<ConnInfo>,
    mut io: S,
    alpn_h2: bool,
    settings: ServerSettings,
    deadline: Instant,
    drain: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + h1::WaitReadable + Unpin + Send + Sync + 'static,
{
    // A connection that has sent nothing yet holds no buffer (plain TCP). The first
    // request head has until `deadline`, counted from the accept (or the handshake).
    if !alpn_h2 && io.can_wait_readable() {
        let ready = tokio::select! {
            r = tokio::time::timeout_at(deadline, io.wait_readable()) => r,
            _ = drain.cancelled() => return,
        };
        if !matches!(ready, Ok(Ok(()))) {
            return;
        }
    }
    let mut rbuf = BytesMut::with_capacity(h1::CLIENT_BUF);
    if !alpn_h2 {
        loop {
            let n = rbuf.len().min(H2_PREFACE.len());
            if rbuf.len() >= H2_PREFACE.len() || (n > 0 && rbuf[..n] != H2_PREFACE[..n]) {
                break;
            }
            let read = tokio::select! {
                r = tokio::time::timeout_at(deadline, io.read_buf(&mut rbuf)) => r,
                _ = drain.cancelled() => return,
            };
            match read {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                Ok(Ok(_)) => {}
            }
        }
        if !rbuf.starts_with(H2_PREFACE) {
            h1::serve(conn, io, rbuf, settings.h1(), deadline, drain).await;
            return;
        }
    }
    let io = Rewind {
        prefix: rbuf,
        inner: io,
    };
    Box::pin(serve_h2(conn, io, settings, drain)).await;
}

async fn serve_h2<S>(
    conn: Arc<ConnInfo>,
    io: Rewind<S>,
    settings: ServerSettings,
    drain: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client = conn.client;
    let service = service_fn(move |req| {
        let conn = conn.clone();
        async move {
            // Busy while the request is being answered (up to its response head): an
            // evicted HTTP/2 connection ends gracefully, its streams carried to the end.
            let _busy = crate::admission::Busy::new(&conn.slot);
            Ok::<_, Infallible>(handle(conn.clone(), req, settings).await)
        }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(settings.max_header_bytes as u32)
        .keep_alive_interval(Some(settings.idle_timeout / 2))
        .keep_alive_timeout(Duration::from_secs(20));
    let served = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(served);
    let result = tokio::select! {
        r = served.as_mut() => r,
        _ = drain.cancelled() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%client, "HTTP/2 connection ended: {e}");
    }
}

/// An I/O object that first gives back bytes already read from it.
struct Rewind<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

fn client_ip_header(client: SocketAddr) -> http::HeaderValue {
    let ip = client.ip().to_canonical().to_string();
    http::HeaderValue::from_maybe_shared(bytes::Bytes::from(ip))
        .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod size_tests {
    #[test]
    fn sizes() {
        println!(
            "detect_and_serve<TcpStream>: {}",
            std::mem::size_of::<tokio::net::TcpStream>()
        );
        fn size_of_fut<F: std::future::Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let s = tokio::net::TcpStream::connect(l.local_addr().unwrap())
                .await
                .unwrap();
            let shared = std::sync::Arc::new(crate::service::Shared {
                table: std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(
                    crate::routing::build(
                        &weir_config::load_str(std::path::Path::new("/x.yaml"), "").unwrap(),
                        &Default::default(),
                        &mut crate::routing::BuildContext::new(
                            std::sync::Arc::new(crate::stats::Stats::new(1, true)),
                            std::sync::Arc::new(crate::upstream::Upstreams::default()),
                        ),
                    )
                    .unwrap(),
                )),
                counters: Default::default(),
                access_log: Default::default(),
            });
            let conn = std::sync::Arc::new(crate::service::ConnInfo {
                shared,
                listener: "x".into(),
                listener_index: 0,
                client: "127.0.0.1:1".parse().unwrap(),
                client_ip: http::HeaderValue::from_static("127.0.0.1"),
                tls: false,
                slot: Default::default(),
            });
            let settings = super::ServerSettings {
                max_header_bytes: 1000,
                header_timeout: std::time::Duration::from_secs(1),
                idle_timeout: std::time::Duration::from_secs(1),
                body_timeout: std::time::Duration::from_secs(1),
                min_body_rate: 0,
                send_timeout: std::time::Duration::from_secs(1),
            };
            let f = super::detect_and_serve(
                conn,
                s,
                false,
                settings,
                tokio::time::Instant::now(),
                Default::default(),
            );
            println!("detect_and_serve future: {}", size_of_fut(&f));
        });
    }
}
