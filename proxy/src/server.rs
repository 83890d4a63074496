//! Client listeners: the accept loop over an already-bound listener, the connection
//! limit, and per-connection work (TLS handshake, protocol detection, serving) inside
//! the connection's own task, so a slow handshake never stalls `accept`.
//!
//! HTTP/1.x goes to the fast path ([`crate::h1`]); HTTP/2, by ALPN or by the prior
//! knowledge preface, to hyper ([`crate::h2`]).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{Admission, Admitted, Slot};
pub use crate::conn::ServerSettings;
use crate::conn::{ConnInfo, Shared};
use crate::h1::{self, H2_PREFACE};

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
        let free = if admission.owed.load(Ordering::Acquire) == 0 {
            admission.limit.clone().try_acquire_owned().ok()
        } else {
            None
        };
        let permit = match free {
            Some(p) => Some(p),
            None if admission.evict_one() => {
                counters.connections_evicted.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => {
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
            port: local.map_or(0, |a| a.port()),
            client,
            client_ip: client_ip_header(client),
            tls: tls.is_some(),
            slot: slot.clone(),
        });
        let token = slot.stop.clone();
        // Owed a permit (admitted by an eviction) until its task has taken it, or gone.
        let owed = permit
            .is_none()
            .then(|| crate::admission::Owed::new(&admission));
        let admission = admission.clone();
        drain.tracker.spawn(async move {
            let counters = conn.shared.counters.clone();
            let permit = match permit {
                Some(p) => p,
                // Room is being made: the evicted connection lets its permit go as soon
                // as its task sees the request to stop.
                None => match wait_for_permit(&admission, owed).await {
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

/// Waits (at most [`EVICTION_WAIT`]) for the permit an eviction frees; owed it meanwhile.
async fn wait_for_permit(
    admission: &Arc<Admission>,
    owed: Option<crate::admission::Owed>,
) -> Result<
    Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>,
    tokio::time::error::Elapsed,
> {
    let _owed = owed;
    tokio::time::timeout(EVICTION_WAIT, admission.limit.clone().acquire_owned()).await
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
            h1::serve(conn, io, rbuf, settings, deadline, drain).await;
            return;
        }
    }
    let io = Rewind {
        prefix: rbuf,
        inner: io,
    };
    Box::pin(crate::h2::serve(conn, io, settings, drain)).await;
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
    /// Budgets for what every open connection holds while it waits: the connection
    /// task's future (its state machine, buffers excluded) and a parsed head. An idle
    /// connection's memory is the figure where we trail nginx, so growth here must be
    /// a decision, not an accident. Debug builds lay futures out no smaller than
    /// release builds, so the budgets hold for both.
    const DETECT_AND_SERVE_BUDGET: usize = 1536;
    const H1_SERVE_BUDGET: usize = 1024;
    const REQUEST_HEAD_BUDGET: usize = 128;

    fn size_of_fut<F: std::future::Future>(_: &F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn connection_state_stays_within_budget() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let s = tokio::net::TcpStream::connect(l.local_addr().unwrap())
                .await
                .unwrap();
            let settings = crate::conn::ServerSettings::for_tests();
            let f = super::detect_and_serve(
                crate::conn::ConnInfo::for_tests(),
                s,
                false,
                settings,
                tokio::time::Instant::now(),
                Default::default(),
            );
            let detect = size_of_fut(&f);
            let (a, _b) = tokio::io::duplex(64);
            let g = crate::h1::serve(
                crate::conn::ConnInfo::for_tests(),
                a,
                bytes::BytesMut::new(),
                settings,
                tokio::time::Instant::now(),
                Default::default(),
            );
            let h1 = size_of_fut(&g);
            let head = std::mem::size_of::<crate::codec::head::RequestHead>();
            println!("detect_and_serve {detect} B, h1::serve {h1} B, RequestHead {head} B");
            assert!(
                detect <= DETECT_AND_SERVE_BUDGET,
                "detect_and_serve: {detect} B"
            );
            assert!(h1 <= H1_SERVE_BUDGET, "h1::serve: {h1} B");
            assert!(head <= REQUEST_HEAD_BUDGET, "RequestHead: {head} B");
        });
    }
}
