//! The response body of the HTTP/2 path: read from a raw upstream HTTP/1.1 connection
//! (sized, chunked or close-delimited) and handed to hyper frame by frame, passed on
//! from an h2c upstream frame by frame (trailers too), or a short body made by the
//! proxy. An enum, not a boxed trait object: no allocation per request for the body
//! itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::codec::chunked::Chunked;
use crate::codec::head::Framing;
use crate::request::Exchange;
use crate::upstream::UpConn;
use crate::upstream::h2c::{BodyState, StreamSlot};

/// Bytes read from an upstream at once.
const READ: usize = 16 * 1024;

/// A body sent to the client. It carries the request's [`Exchange`], which records the
/// outcome when the body ends (or is dropped) and returns the upstream connection to its
/// pool when the upstream's body was read to its end.
#[derive(Debug)]
pub(crate) struct RespBody {
    inner: Inner,
    finish: Option<Exchange>,
    /// The route's whole-exchange deadline (an HTTPRoute's `timeouts.request`): past it
    /// the response is cut off. Allocated only for routes that have one.
    deadline: Option<Pin<Box<Sleep>>>,
}

#[derive(Debug)]
enum Inner {
    Upstream(Upstream),
    H2c(Box<H2cUpstream>),
    Full(Option<Bytes>),
}

/// A response body from an h2c upstream, with the stream's slot on its connection.
#[derive(Debug)]
struct H2cUpstream {
    body: Incoming,
    /// Longest wait for the upstream's next frame (the route's `requestTimeout`, as
    /// between reads on the HTTP/1.1 path).
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    /// How the request body fared: a client that reset its own request is not the
    /// upstream's failure.
    request: Arc<BodyState>,
    _slot: StreamSlot,
}

impl H2cUpstream {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<Frame<Bytes>>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Pending => {
                if self.timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the upstream sent nothing within the request timeout",
                    ))));
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(f))) => {
                self.timer.as_mut().reset(Instant::now() + self.idle);
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(std::io::Error::other(e)))),
            Poll::Ready(None) => Poll::Ready(None),
        }
    }
}

#[derive(Debug)]
struct Upstream {
    up: Option<UpConn>,
    framing: Framing,
    remaining: u64,
    chunked: Chunked,
    keep: bool,
    done: bool,
}

impl RespBody {
    /// The body of `up`'s current response, delimited by `framing`; `keep` says whether
    /// the connection may be reused once it is read.
    pub(crate) fn upstream(up: UpConn, framing: Framing, keep: bool, finish: Exchange) -> Self {
        let remaining = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        RespBody {
            inner: Inner::Upstream(Upstream {
                up: Some(up),
                framing,
                remaining,
                chunked: Chunked::default(),
                keep,
                done: framing == Framing::None,
            }),
            deadline: deadline_of(&finish),
            finish: Some(finish),
        }
    }

    /// The body of an h2c upstream's response; `request` tells how the request body
    /// fared, `slot` is the stream's place on its connection.
    pub(crate) fn h2c(
        body: Incoming,
        idle: Duration,
        request: Arc<BodyState>,
        slot: StreamSlot,
        finish: Exchange,
    ) -> Self {
        RespBody {
            inner: Inner::H2c(Box::new(H2cUpstream {
                body,
                idle,
                timer: Box::pin(tokio::time::sleep(idle)),
                request,
                _slot: slot,
            })),
            deadline: deadline_of(&finish),
            finish: Some(finish),
        }
    }

    /// A body made by the proxy.
    pub(crate) fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        RespBody {
            inner: Inner::Full((!data.is_empty()).then_some(data)),
            finish: None,
            deadline: None,
        }
    }

    fn settle(&mut self, complete: bool) {
        let Some(mut f) = self.finish.take() else {
            return;
        };
        let conn = match &mut self.inner {
            Inner::Upstream(u) if complete && u.keep => u.up.take(),
            _ => None,
        };
        if complete {
            f.complete(conn);
        } else {
            f.abandon();
        }
    }
}

fn deadline_of(ex: &Exchange) -> Option<Pin<Box<Sleep>>> {
    ex.routed
        .deadline
        .map(|at| Box::pin(tokio::time::sleep_until(at)))
}

impl Drop for RespBody {
    fn drop(&mut self) {
        let complete = self.is_end_stream();
        self.settle(complete);
    }
}

impl Upstream {
    /// The next data frame, None at the end of the body.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            let Some(up) = self.up.as_mut() else {
                return Poll::Ready(None);
            };
            if !up.buf.is_empty() {
                match self.framing {
                    Framing::None => {
                        self.done = true;
                        return Poll::Ready(None);
                    }
                    Framing::Length(_) => {
                        let n = (up.buf.len() as u64).min(self.remaining) as usize;
                        let data = up.buf.split_to(n).freeze();
                        self.remaining -= n as u64;
                        self.done = self.remaining == 0;
                        return Poll::Ready(Some(Ok(data)));
                    }
                    Framing::Chunked => {
                        let mut out = Vec::new();
                        let n = self
                            .chunked
                            .feed(&up.buf, Some(&mut out))
                            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                        up.buf.advance(n);
                        self.done = self.chunked.done();
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Bytes::from(out))));
                        }
                        continue;
                    }
                    Framing::UntilClose => {
                        let data = up.buf.split().freeze();
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
            }
            if self.framing == Framing::None
                || (self.framing != Framing::UntilClose
                    && self.framing != Framing::Chunked
                    && self.remaining == 0)
            {
                self.done = true;
                return Poll::Ready(None);
            }
            up.buf.reserve(READ);
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut up.stream),
                cx,
                &mut up.buf
            ))?;
            if n == 0 {
                if self.framing == Framing::UntilClose {
                    self.done = true;
                    self.keep = false;
                    return Poll::Ready(None);
                }
                return Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the upstream closed before the end of the body",
                ))));
            }
        }
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        if let Some(d) = this.deadline.as_mut()
            && d.as_mut().poll(cx).is_ready()
        {
            this.deadline = None;
            if let Some(mut f) = this.finish.take() {
                f.fail(crate::error::Kind::ResponseTimeout);
            }
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the route's request timeout passed with the response under way",
            ))));
        }
        let out = match &mut this.inner {
            Inner::Upstream(u) => match ready!(u.poll_next(cx)) {
                Some(Ok(d)) => Some(Ok(Frame::data(d))),
                Some(Err(e)) => Some(Err(e)),
                None => None,
            },
            Inner::H2c(u) => ready!(u.poll_next(cx)),
            Inner::Full(data) => data.take().map(|d| Ok(Frame::data(d))),
        };
        match &out {
            None => this.settle(true),
            Some(Err(_)) => {
                let client_fault = matches!(&this.inner, Inner::H2c(u)
                    if matches!(u.request.state(), BodyState::CLIENT_GONE | BodyState::CLIENT_SLOW));
                if let Some(mut f) = this.finish.take() {
                    if client_fault {
                        f.abandon();
                    } else {
                        f.broken();
                    }
                }
            }
            Some(Ok(_)) => {}
        }
        Poll::Ready(out)
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(u) => u.done,
            Inner::H2c(u) => u.body.is_end_stream(),
            Inner::Full(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(u) => match u.framing {
                Framing::Length(_) => SizeHint::with_exact(u.remaining),
                Framing::None => SizeHint::with_exact(0),
                _ => SizeHint::default(),
            },
            Inner::H2c(u) => u.body.size_hint(),
            Inner::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}
