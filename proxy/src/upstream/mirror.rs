//! Mirror copies: a whole request, as it was sent upstream (written as HTTP/1.1 whatever
//! the upstream speaks), sent again to a mirror route's target in a task of its own, over
//! HTTP/1.1 or h2c as the target speaks; the answer is read and discarded, but measured in
//! the target's stats like any canary request.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use weir_config::model::UpstreamProtocol;

use crate::codec::chunked::Chunked;
use crate::codec::head::Framing;
use crate::error::Kind;
use crate::request::forward::{H2Headers, HeaderSink};
use crate::routing::Backend;
use crate::stats::Outcome;
use crate::upstream::client::{Pace, UpError, forward_body, read_response_head};
use crate::upstream::h2c::{self, UpBody};
use crate::upstream::{EndpointPool, PoolSettings};

/// The largest request a mirror route copies (head and body as sent upstream): a copy is
/// kept in memory until the real request's body has gone upstream.
pub(crate) const MIRROR_MAX: usize = 64 * 1024;

/// Adds `bytes`, sent upstream, to a mirror route's copy; drops the copy (None) once the
/// request outgrows [`MIRROR_MAX`].
pub(crate) fn tee_extend(tee: &mut Option<Vec<u8>>, bytes: &[u8]) {
    if let Some(t) = tee {
        if t.len() + bytes.len() > MIRROR_MAX {
            *tee = None;
        } else {
            t.extend_from_slice(bytes);
        }
    }
}
/// A mirror route's copy of a request whose body is on its way to an h2c upstream
/// inside hyper's connection task: the HTTP/1.1 head written at the start, the body
/// added (chunk-framed when unsized) as it goes, and the whole sent when the body has.
#[derive(Debug)]
pub(crate) struct MirrorTee {
    copy: Vec<u8>,
    chunked: bool,
    targets: Vec<(Arc<Backend>, Arc<EndpointPool>)>,
    tasks: tokio_util::task::TaskTracker,
    pool: PoolSettings,
    timeout: Duration,
}

impl MirrorTee {
    /// A copy starting with `head` (an HTTP/1.1 request head; `chunked` when it says so).
    pub(crate) fn new(
        head: Vec<u8>,
        chunked: bool,
        targets: Vec<(Arc<Backend>, Arc<EndpointPool>)>,
        tasks: tokio_util::task::TaskTracker,
        pool: PoolSettings,
        timeout: Duration,
    ) -> Self {
        MirrorTee {
            copy: head,
            chunked,
            targets,
            tasks,
            pool,
            timeout,
        }
    }

    /// Adds body bytes; false once the request outgrows [`MIRROR_MAX`] (the copy is then
    /// dropped).
    pub(crate) fn data(&mut self, data: &[u8]) -> bool {
        let mut tee = Some(std::mem::take(&mut self.copy));
        if self.chunked {
            tee_extend(&mut tee, format!("{:x}\r\n", data.len()).as_bytes());
            tee_extend(&mut tee, data);
            tee_extend(&mut tee, b"\r\n");
        } else {
            tee_extend(&mut tee, data);
        }
        match tee {
            Some(t) => {
                self.copy = t;
                true
            }
            None => false,
        }
    }

    /// Sends the copy: the body has gone whole.
    pub(crate) fn send(mut self) {
        if self.chunked {
            let mut tee = Some(std::mem::take(&mut self.copy));
            tee_extend(&mut tee, b"0\r\n\r\n");
            let Some(t) = tee else { return };
            self.copy = t;
        }
        spawn_mirror_copy(
            &self.tasks,
            self.copy,
            &self.targets,
            self.pool,
            self.timeout,
            false,
        );
    }
}

/// Sends `copy` (a whole request, as sent upstream) to each mirror target, each in a
/// task of its own, tracked by `tasks` (shutdown waits for them, bounded by their
/// timeout).
pub(crate) fn spawn_mirror_copy(
    tasks: &tokio_util::task::TaskTracker,
    copy: Vec<u8>,
    mirrors: &[(Arc<Backend>, Arc<EndpointPool>)],
    pool: PoolSettings,
    timeout: Duration,
    head_request: bool,
) {
    let Some(((last_b, last_e), rest)) = mirrors.split_last() else {
        return;
    };
    for (b, e) in rest {
        tasks.spawn(mirror_copy(
            copy.clone(),
            b.clone(),
            e.clone(),
            pool,
            timeout,
            head_request,
        ));
    }
    tasks.spawn(mirror_copy(
        copy,
        last_b.clone(),
        last_e.clone(),
        pool,
        timeout,
        head_request,
    ));
}

/// Sends a mirrored copy and reads its response to the end: discarded, but measured in
/// the target's stats like any canary request.
async fn mirror_copy(
    copy: Vec<u8>,
    target: Arc<Backend>,
    endpoint: Arc<EndpointPool>,
    pool: PoolSettings,
    timeout: Duration,
    head_request: bool,
) {
    let start = Instant::now();
    endpoint.begin();
    let result: Result<u16, Kind> = if endpoint.protocol == UpstreamProtocol::H2c {
        mirror_copy_h2c(&copy, &endpoint, &pool, timeout).await
    } else {
        mirror_copy_h1(copy, &endpoint, pool, timeout, head_request).await
    };
    endpoint.end();
    let (status, proxy_error) = match result {
        Ok(s) => (s, false),
        Err(k) => (k.status(), true),
    };
    target.stats.record(Outcome {
        status,
        proxy_error,
        latency_us: start.elapsed().as_micros() as u64,
    });
}

/// A mirrored copy over HTTP/1.1; the response's status.
async fn mirror_copy_h1(
    copy: Vec<u8>,
    endpoint: &EndpointPool,
    pool: PoolSettings,
    timeout: Duration,
    head_request: bool,
) -> Result<u16, Kind> {
    let mut up = endpoint.checkout_raw(&pool).await.map_err(|e| e.kind)?;
    up.stream
        .write_all(&copy)
        .await
        .map_err(|_| Kind::UpstreamProtocol)?;
    let resp = match read_response_head(&mut up, timeout).await {
        Ok(r) => r,
        Err(UpError::Timeout) => return Err(Kind::ResponseTimeout),
        Err(_) => return Err(Kind::UpstreamProtocol),
    };
    let status = resp.status;
    let framing = resp.framing(head_request);
    let keep =
        resp.common.keep_alive() && framing != Framing::UntilClose && !resp.common.both_framings;
    up.buf.advance(resp.common.len);
    let mut out = Vec::new();
    let mut sink = tokio::io::sink();
    let pace = Pace::relay(timeout, timeout, None);
    forward_body(
        &mut up.buf,
        &mut up.stream,
        &mut sink,
        &mut out,
        framing,
        false,
        pace,
        &mut None,
    )
    .await
    .map_err(|_| Kind::UpstreamProtocol)?;
    if keep {
        endpoint.checkin_raw(up, pool.max_idle);
    }
    Ok(status)
}

/// A mirrored copy to an h2c upstream: the HTTP/1.1 copy read back into a request (its
/// body decoded when chunked), sent over the endpoint's HTTP/2 connections, the answer
/// read to its end; the response's status.
async fn mirror_copy_h2c(
    copy: &[u8],
    endpoint: &EndpointPool,
    pool: &PoolSettings,
    timeout: Duration,
) -> Result<u16, Kind> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = parsed.parse(copy) else {
        return Err(Kind::BadRequest);
    };
    let (Some(method), Some(target)) = (parsed.method, parsed.path) else {
        return Err(Kind::BadRequest);
    };
    let mut h2 = H2Headers::default();
    let mut chunked = false;
    for h in parsed.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            h2.host(h.value);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = true;
        } else {
            h2.put(name, h.value);
        }
    }
    let rest = &copy[len..];
    let data = if chunked {
        let mut out = Vec::new();
        Chunked::default()
            .feed(rest, Some(&mut out))
            .map_err(|_| Kind::BadRequest)?;
        Bytes::from(out)
    } else {
        Bytes::copy_from_slice(rest)
    };
    let body = if data.is_empty() {
        UpBody::Empty
    } else {
        UpBody::Full(Some(data))
    };
    let req = h2c::request(
        method.as_bytes(),
        target.as_bytes(),
        h2.authority,
        endpoint,
        h2.map,
        body,
    )
    .map_err(|e| e.kind)?;
    let (resp, _slot) = endpoint.h2_send(pool, req).await.map_err(|e| e.kind)?;
    let resp = match tokio::time::timeout(timeout, resp).await {
        Err(_) => return Err(Kind::ResponseTimeout),
        Ok(Err(_)) => return Err(Kind::UpstreamProtocol),
        Ok(Ok(r)) => r,
    };
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    loop {
        match tokio::time::timeout(timeout, body.frame()).await {
            Err(_) | Ok(Some(Err(_))) => return Err(Kind::UpstreamProtocol),
            Ok(None) => return Ok(status),
            Ok(Some(Ok(_))) => {}
        }
    }
}
