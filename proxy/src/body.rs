//! Body types of the proxy: enums rather than boxed trait objects, so a proxied request
//! costs no allocation for its bodies.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use crate::service::Finish;

pin_project! {
    /// A body sent upstream: the client's, streamed, or none.
    #[project = ReqBodyProj]
    #[derive(Debug)]
    pub enum ReqBody {
        /// The client's body, streamed as it arrives.
        Incoming { #[pin] body: Incoming },
        /// No body.
        Empty,
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = hyper::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            ReqBodyProj::Incoming { body } => body.poll_frame(cx),
            ReqBodyProj::Empty => Poll::Ready(None),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Incoming { body } => body.is_end_stream(),
            ReqBody::Empty => true,
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Incoming { body } => body.size_hint(),
            ReqBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// A body sent to the client: the upstream's, streamed, or a short one made here.
/// It carries the request's [`Finish`], which records the outcome when the body ends
/// (or is dropped), and returns the upstream connection to its pool when the upstream's
/// body was read to its end.
#[derive(Debug)]
pub struct RespBody {
    inner: Inner,
    finish: Option<Finish>,
}

#[derive(Debug)]
enum Inner {
    Upstream(Incoming),
    Full(Option<Bytes>),
}

impl RespBody {
    /// The upstream's body, finishing with `finish`.
    pub fn upstream(body: Incoming, finish: Option<Finish>) -> Self {
        RespBody {
            inner: Inner::Upstream(body),
            finish,
        }
    }

    /// A body made by the proxy.
    pub fn full(data: impl Into<Bytes>, finish: Option<Finish>) -> Self {
        let data: Bytes = data.into();
        RespBody {
            inner: Inner::Full((!data.is_empty()).then_some(data)),
            finish,
        }
    }

    /// No body.
    pub fn empty() -> Self {
        RespBody {
            inner: Inner::Full(None),
            finish: None,
        }
    }
}

impl Drop for RespBody {
    fn drop(&mut self) {
        if let Some(f) = self.finish.take() {
            if self.is_end_stream() {
                f.complete();
            } else {
                f.abandoned();
            }
        }
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = hyper::Error;

    #[inline]
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let out = match &mut this.inner {
            Inner::Upstream(body) => Pin::new(body).poll_frame(cx),
            Inner::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        };
        match &out {
            Poll::Ready(None) => {
                if let Some(f) = this.finish.take() {
                    f.complete();
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(f) = this.finish.take() {
                    f.broken();
                }
            }
            _ => {}
        }
        out
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(body) => body.is_end_stream(),
            Inner::Full(data) => data.is_none(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(body) => body.size_hint(),
            Inner::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}
