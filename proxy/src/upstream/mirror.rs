//! Mirror copies: a whole request, as it was sent upstream, sent again to a mirror
//! route's target in a task of its own; the answer is read and discarded, but measured
//! in the target's stats like any canary request.

use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::codec::head::Framing;
use crate::error::Kind;
use crate::routing::Backend;
use crate::stats::Outcome;
use crate::upstream::client::{Pace, UpError, forward_body, read_response_head};
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
    let result: Result<u16, Kind> = async {
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
        let keep = resp.common.keep_alive()
            && framing != Framing::UntilClose
            && !resp.common.both_framings;
        up.buf.advance(resp.common.len);
        let mut out = Vec::new();
        let mut sink = tokio::io::sink();
        let pace = Pace {
            read_idle: timeout,
            min_rate: 0,
            grace: timeout,
            write: timeout,
        };
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
    .await;
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
