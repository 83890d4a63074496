//! HTTP/2 with prior knowledge (h2c) to upstreams that ask for it (a Kubernetes Service
//! port's `appProtocol: kubernetes.io/h2c`, `grpc`; a weir Service's `protocol: h2c`):
//! hyper's HTTP/2 client, a few multiplexed connections per endpoint ([`H2Conns`]), and
//! the request bodies it sends ([`UpBody`]).
//!
//! Connections. Requests share one connection per endpoint; a second is opened only when
//! every open one already carries [`STREAMS_PER_CONN`] streams of weir's. That number is
//! the smallest `SETTINGS_MAX_CONCURRENT_STREAMS` RFC 9113 §6.5.2 asks servers to allow
//! (Go's servers allow 250, nginx 128, Envoy and hyper far more), so weir rarely meets a
//! peer's limit; when a peer allows fewer, h2 holds the extra streams until one ends,
//! within the request's response timeout. Opening a connection per stream instead would
//! throw away multiplexing; waiting on one connection only would tie every request to one
//! TCP window. A connection that closes or is sent GOAWAY is dropped from the set on the
//! next checkout (hyper marks it closed) and a new one opened; a request that could not
//! be handed to a closing connection is given to a new one. Idle connections are closed
//! after the upstream `idleTimeout` by the maintenance task, as the HTTP/1.1 pool's are.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::PollSender;

use crate::error::{Kind, ProxyError};
use crate::upstream::client::Pace;
use crate::upstream::mirror::MirrorTee;
use crate::upstream::{EndpointPool, PoolSettings};

/// Streams of weir's on one upstream connection before another is opened (see the
/// module doc for why 100).
pub(crate) const STREAMS_PER_CONN: usize = 100;

/// A response on its way from an h2c upstream.
pub(crate) type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<Incoming>, hyper::Error>> + Send>>;

/// An endpoint's HTTP/2 connections.
#[derive(Default)]
pub(crate) struct H2Conns {
    conns: Mutex<Vec<H2Conn>>,
    /// Held while a connection is being opened, so that a burst of first requests opens
    /// one connection, not one each.
    connecting: tokio::sync::Mutex<()>,
    /// When the last connection attempt failed, and how: requests that waited for that
    /// attempt fail the same way at once rather than each trying again in turn.
    last_failure: Mutex<Option<(Instant, Kind)>>,
}

struct H2Conn {
    send: SendRequest<UpBody>,
    streams: Arc<AtomicUsize>,
    last_used: Instant,
}

/// A stream's place on its connection, counted until it is dropped (with the response
/// body, or the request when it fails).
#[derive(Debug)]
pub(crate) struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for H2Conns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Conns")
            .field("open", &self.open())
            .finish_non_exhaustive()
    }
}

impl H2Conns {
    /// A stream on an open connection with room, if there is one.
    fn take(&self, now: Instant) -> Option<(SendRequest<UpBody>, StreamSlot)> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|c| !c.send.is_closed());
        let c = conns
            .iter_mut()
            .find(|c| c.streams.load(Ordering::Relaxed) < STREAMS_PER_CONN)?;
        c.streams.fetch_add(1, Ordering::Relaxed);
        c.last_used = now;
        Some((c.send.clone(), StreamSlot(c.streams.clone())))
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.conns
            .lock()
            .map(|c| c.iter().filter(|c| !c.send.is_closed()).count())
            .unwrap_or(0)
    }

    /// Connections open and carrying no stream.
    pub(crate) fn idle(&self) -> usize {
        self.conns
            .lock()
            .map(|c| {
                c.iter()
                    .filter(|c| !c.send.is_closed() && c.streams.load(Ordering::Relaxed) == 0)
                    .count()
            })
            .unwrap_or(0)
    }

    /// Drops the connections that closed, and those without streams unused for
    /// `idle_timeout` (dropping the last handle ends hyper's connection task, which
    /// closes the connection).
    pub(crate) fn prune(&self, now: Instant, idle_timeout: Duration) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|c| {
            !c.send.is_closed()
                && (c.streams.load(Ordering::Relaxed) > 0
                    || now.duration_since(c.last_used) < idle_timeout)
        });
    }
}

impl EndpointPool {
    /// A stream to this endpoint: on an open connection with room, else on a new one.
    async fn h2_checkout(
        &self,
        s: &PoolSettings,
    ) -> Result<(SendRequest<UpBody>, StreamSlot), ProxyError> {
        let asked = Instant::now();
        if let Some(x) = self.h2.take(asked) {
            return Ok(x);
        }
        let _one = self.h2.connecting.lock().await;
        let now = Instant::now();
        if let Some(x) = self.h2.take(now) {
            return Ok(x);
        }
        if let Some((at, kind)) = *self
            .h2
            .last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            && at >= asked
        {
            return Err(ProxyError::new(kind));
        }
        match self.h2_connect(s).await {
            Ok(send) => {
                let streams = Arc::new(AtomicUsize::new(1));
                let slot = StreamSlot(streams.clone());
                let mut conns = self.h2.conns.lock().unwrap_or_else(|e| e.into_inner());
                conns.push(H2Conn {
                    send: send.clone(),
                    streams,
                    last_used: now,
                });
                Ok((send, slot))
            }
            Err(e) => {
                *self
                    .h2
                    .last_failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), e.kind));
                Err(e)
            }
        }
    }

    /// Opens a connection: TCP, then the HTTP/2 preface, within the connect timeout.
    /// hyper's connection task runs on its own until every handle is dropped or the
    /// peer closes.
    async fn h2_connect(&self, s: &PoolSettings) -> Result<SendRequest<UpBody>, ProxyError> {
        let stream = self.tcp_connect(s).await?;
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            // Pings only while streams are open: a peer that vanished fails them rather
            // than leaving them to their timeouts.
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(false);
        let handshake = builder.handshake(TokioIo::new(stream));
        let (send, conn) = match tokio::time::timeout(s.connect_timeout, handshake).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                self.connect_errors.fetch_add(1, Ordering::Relaxed);
                return Err(ProxyError::with(Kind::ConnectFailed, e));
            }
            Err(_) => {
                self.connect_errors.fetch_add(1, Ordering::Relaxed);
                return Err(ProxyError::new(Kind::ConnectTimeout));
            }
        };
        self.connects.fetch_add(1, Ordering::Relaxed);
        let addr = self.addr;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(endpoint = %addr, "h2c upstream connection ended: {e}");
            }
        });
        Ok(send)
    }

    /// Hands `req` to a connection of this endpoint and returns its response on its
    /// way, with the stream's slot. A request a closing connection (GOAWAY) did not
    /// take is given to a new one; it has not been sent, so this is safe for any method.
    ///
    /// # Errors
    /// Connect failures and timeouts; a request no connection would take.
    pub(crate) async fn h2_send(
        &self,
        s: &PoolSettings,
        mut req: Request<UpBody>,
    ) -> Result<(ResponseFuture, StreamSlot), ProxyError> {
        for _ in 0..3 {
            let (mut send, slot) = self.h2_checkout(s).await?;
            let mut fut = Box::pin(send.try_send_request(req));
            // The request is queued on the connection at once, or given back when the
            // connection is closing: one poll tells which.
            let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
            match first {
                Poll::Pending => {
                    let resp: ResponseFuture =
                        Box::pin(async move { fut.await.map_err(|e| e.into_error()) });
                    return Ok((resp, slot));
                }
                Poll::Ready(Ok(resp)) => {
                    return Ok((Box::pin(std::future::ready(Ok(resp))), slot));
                }
                Poll::Ready(Err(mut e)) => match e.take_message() {
                    Some(back) => req = back,
                    None => {
                        return Err(ProxyError::with(Kind::UpstreamProtocol, e.into_error()));
                    }
                },
            }
        }
        Err(ProxyError::with(
            Kind::UpstreamProtocol,
            "no h2c connection to the upstream would take the request",
        ))
    }
}

/// A request body sent to an h2c upstream.
#[derive(Debug)]
pub(crate) enum UpBody {
    /// No body: the HEADERS frame ends the stream.
    Empty,
    /// A body at hand (a mirrored copy's).
    Full(Option<Bytes>),
    /// Frames read from an HTTP/1.1 client's connection by the request's own task
    /// ([`pump`]).
    Pumped(Pumped),
    /// An HTTP/2 client's body, passed on frame by frame (trailers too), paced.
    Paced(Box<Paced>),
}

/// Why an upstream request body did not end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyAborted {
    /// The client's body ended before it was whole.
    #[error("the client's request body ended early")]
    ClientGone,
    /// The client's body came too slowly.
    #[error("the client's request body came too slowly")]
    ClientSlow,
    /// The client's body grew past the route's limit.
    #[error("the client's request body is larger than the route takes")]
    TooLarge,
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = BodyAborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        match self.get_mut() {
            UpBody::Empty => Poll::Ready(None),
            UpBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            UpBody::Pumped(p) => p.poll(cx),
            UpBody::Paced(p) => p.poll(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Empty => true,
            UpBody::Full(data) => data.is_none(),
            UpBody::Pumped(p) => p.done,
            UpBody::Paced(p) => p.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpBody::Empty => SizeHint::with_exact(0),
            UpBody::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            UpBody::Pumped(_) => SizeHint::default(),
            UpBody::Paced(p) => p.inner.size_hint(),
        }
    }
}

/// The receiving end of [`pump`]: `None` in the channel marks the clean end, so a pump
/// that stops without it (the client went away) fails the stream instead of ending it.
#[derive(Debug)]
pub(crate) struct Pumped {
    rx: mpsc::Receiver<Option<Bytes>>,
    done: bool,
}

impl Pumped {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match ready!(self.rx.poll_recv(cx)) {
            Some(Some(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Some(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            None => Poll::Ready(Some(Err(BodyAborted::ClientGone))),
        }
    }
}

/// A body whose bytes are written by the request's task through [`PumpWriter`]: the
/// HTTP/1.1 body pump writes into it as into a socket, and the channel's small bound is
/// the backpressure of HTTP/2 flow control. `tee` is a mirror route's copy, sent when the
/// body is whole.
pub(crate) fn pump(tee: Option<MirrorTee>) -> (PumpWriter, UpBody) {
    let (tx, rx) = mpsc::channel(4);
    (
        PumpWriter {
            tx: PollSender::new(tx),
            tee,
        },
        UpBody::Pumped(Pumped { rx, done: false }),
    )
}

/// The writing end of [`pump`].
#[derive(Debug)]
pub(crate) struct PumpWriter {
    tx: PollSender<Option<Bytes>>,
    tee: Option<MirrorTee>,
}

impl PumpWriter {
    /// Marks the body whole (and sends the mirror copy). False when the upstream no
    /// longer takes it.
    pub(crate) async fn finish(mut self) -> bool {
        if std::future::poll_fn(|cx| self.tx.poll_reserve(cx))
            .await
            .is_err()
        {
            return false;
        }
        let ok = self.tx.send_item(None).is_ok();
        if ok && let Some(t) = self.tee.take() {
            t.send();
        }
        ok
    }
}

impl AsyncWrite for PumpWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if ready!(this.tx.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        match this.tx.send_item(Some(Bytes::copy_from_slice(buf))) {
            Ok(()) => {
                if let Some(t) = &mut this.tee
                    && !t.data(buf)
                {
                    this.tee = None;
                }
                Poll::Ready(Ok(buf.len()))
            }
            Err(_) => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// How an HTTP/2 client's body sent upstream is doing, shared between the body (inside
/// hyper's connection task) and the request's task.
#[derive(Debug, Default)]
pub(crate) struct BodyState {
    state: AtomicU8,
    received: AtomicU64,
}

impl BodyState {
    /// Still being sent.
    pub(crate) const SENDING: u8 = 0;
    /// Sent whole.
    pub(crate) const DONE: u8 = 1;
    /// The client reset its stream mid-body.
    pub(crate) const CLIENT_GONE: u8 = 2;
    /// The client's body came too slowly.
    pub(crate) const CLIENT_SLOW: u8 = 3;
    /// The client's body grew past the route's limit.
    pub(crate) const TOO_LARGE: u8 = 4;

    /// One of the constants above.
    pub(crate) fn state(&self) -> u8 {
        self.state.load(Ordering::Relaxed)
    }

    /// Body bytes taken from the client so far.
    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// An HTTP/2 client's body on its way to an h2c upstream: frames passed as they come
/// (trailers too), the client paced as on the HTTP/1.1 path (`bodyTimeout` between
/// frames, `minBodyRate` after that grace), a copy kept for a mirror route.
#[derive(Debug)]
pub(crate) struct Paced {
    inner: Incoming,
    pace: Pace,
    began: Option<Instant>,
    timer: Pin<Box<Sleep>>,
    state: Arc<BodyState>,
    tee: Option<MirrorTee>,
    done: bool,
}

impl Paced {
    /// The upstream body of `inner`, paced by `pace`, reporting to `state`; `tee` is a
    /// mirror route's copy, sent when the body has gone whole.
    pub(crate) fn body(
        inner: Incoming,
        pace: Pace,
        state: Arc<BodyState>,
        tee: Option<MirrorTee>,
    ) -> UpBody {
        UpBody::Paced(Box::new(Paced {
            inner,
            pace,
            began: None,
            timer: Box::pin(tokio::time::sleep(pace.read_idle)),
            state,
            tee,
            done: false,
        }))
    }

    fn fail(&mut self, why: u8, e: BodyAborted) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        self.state.state.store(why, Ordering::Relaxed);
        self.tee = None;
        self.done = true;
        Poll::Ready(Some(Err(e)))
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.began.is_none() {
            let began = Instant::now();
            self.began = Some(began);
            self.timer.as_mut().reset(self.pace.read_deadline(began, 0));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => {
                if self.timer.as_mut().poll(cx).is_ready() {
                    return self.fail(BodyState::CLIENT_SLOW, BodyAborted::ClientSlow);
                }
                Poll::Pending
            }
            Poll::Ready(None) => {
                self.done = true;
                self.state.state.store(BodyState::DONE, Ordering::Relaxed);
                if let Some(t) = self.tee.take() {
                    t.send();
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(_))) => self.fail(BodyState::CLIENT_GONE, BodyAborted::ClientGone),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    let n = self
                        .state
                        .received
                        .fetch_add(d.len() as u64, Ordering::Relaxed)
                        + d.len() as u64;
                    if n > self.pace.max_body {
                        return self.fail(BodyState::TOO_LARGE, BodyAborted::TooLarge);
                    }
                    if let Some(t) = &mut self.tee
                        && !t.data(d)
                    {
                        self.tee = None;
                    }
                    let began = self.began.unwrap_or_else(Instant::now);
                    let next = self.pace.read_deadline(began, n);
                    self.timer.as_mut().reset(next);
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }
}

/// The headers of an HTTP/2 response that are not passed on: hop-by-hop in HTTP/1.1
/// (HTTP/2 has none, RFC 9113 §8.2.2, but a peer may send them all the same).
pub(crate) fn hop_by_hop(name: &http::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// The request sent to an h2c upstream: `target` (origin form) on `authority` (the
/// request's host, else the endpoint's address), with `headers`.
///
/// # Errors
/// A method, target or authority that does not make a request (answered 400).
pub(crate) fn request(
    method: &[u8],
    target: &[u8],
    authority: Option<http::uri::Authority>,
    endpoint: &EndpointPool,
    headers: http::HeaderMap,
    body: UpBody,
) -> Result<Request<UpBody>, ProxyError> {
    let authority = match authority {
        Some(a) => a,
        None => http::uri::Authority::try_from(&*endpoint.authority)
            .map_err(|e| ProxyError::with(Kind::BadRequest, e))?,
    };
    let uri = http::Uri::builder()
        .scheme(http::uri::Scheme::HTTP)
        .authority(authority)
        .path_and_query(target)
        .build()
        .map_err(|e| ProxyError::with(Kind::BadRequest, e))?;
    let method =
        http::Method::from_bytes(method).map_err(|e| ProxyError::with(Kind::BadRequest, e))?;
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Ok(req)
}

/// Whether a TE header value lists `trailers` (RFC 9110 §10.1.4).
pub(crate) fn te_trailers(value: &[u8]) -> bool {
    value.split(|b| *b == b',').any(|t| {
        let t = t.split(|b| *b == b';').next().unwrap_or(b"");
        t.trim_ascii().eq_ignore_ascii_case(b"trailers")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn te_lists_trailers() {
        assert!(te_trailers(b"trailers"));
        assert!(te_trailers(b"gzip, Trailers"));
        assert!(te_trailers(b"deflate;q=0.5, trailers;q=1"));
        assert!(!te_trailers(b"gzip"));
        assert!(!te_trailers(b""));
    }

    #[test]
    fn hop_by_hop_names() {
        assert!(hop_by_hop(&http::header::CONNECTION));
        assert!(hop_by_hop(&http::header::TRANSFER_ENCODING));
        assert!(!hop_by_hop(&http::header::CONTENT_TYPE));
        assert!(!hop_by_hop(&http::HeaderName::from_static("grpc-status")));
    }

    #[tokio::test]
    async fn pumped_body_ends_only_when_marked() {
        use http_body_util::BodyExt;
        use tokio::io::AsyncWriteExt;

        let (mut w, mut body) = pump(None);
        w.write_all(b"abc").await.unwrap();
        assert!(w.finish().await);
        let f = body.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), Bytes::from_static(b"abc"));
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());

        // A pump dropped without its end marker fails the body.
        let (mut w, mut body) = pump(None);
        w.write_all(b"abc").await.unwrap();
        drop(w);
        assert!(body.frame().await.unwrap().is_ok());
        assert!(matches!(
            body.frame().await,
            Some(Err(BodyAborted::ClientGone))
        ));
    }

    #[tokio::test]
    async fn pump_fails_when_the_upstream_drops_the_body() {
        use tokio::io::AsyncWriteExt;

        let (mut w, body) = pump(None);
        drop(body);
        assert!(w.write_all(b"abc").await.is_err());
    }
}
