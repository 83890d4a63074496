//! An HTTP/2 request to an endpoint that speaks h2c: HTTP/2 on both sides, so the
//! request and response bodies are passed frame by frame in both directions at once
//! (gRPC streaming), trailers included (`grpc-status`, `grpc-message`). The request core
//! is the same as the HTTP/1.1 upstream path's ([`super::handle`]): forwarding rules,
//! filters, pacing of the client's body, timeouts, record, access log, mirrors.

use std::sync::Arc;

use http::Request;
use http::header;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::body::RespBody;
use super::short_response;
use crate::conn::{ConnInfo, ServerSettings};
use crate::error::Kind;
use crate::request::forward::{
    self, H2Headers, Outgoing, debug_headers, forward_headers, write_head,
};
use crate::request::{self, Exchange, LogLine, Routed};
use crate::upstream::h2c::{self, BodyState, Paced, UpBody};
use crate::upstream::mirror::{MirrorTee, spawn_mirror_copy};

/// Forwards `req` (routed to `routed`, for `host`) to its h2c endpoint; never fails
/// (errors become short responses).
pub(super) async fn handle(
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
    host: &str,
    routed: Routed,
    start: Instant,
    log: Option<Box<LogLine>>,
    settings: ServerSettings,
) -> Response {
    let (parts, body) = req.into_parts();
    let has_body = !http_body::Body::is_end_stream(&body);
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let out = Outgoing {
        method: parts.method.as_str().as_bytes(),
        target: target.as_bytes(),
        host: (!host.is_empty()).then_some(host.as_bytes()),
        chunked: false,
        upgrade: false,
    };
    let edit = routed.edit.as_deref();
    let headers = || {
        parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
    };
    let mut h2 = H2Headers::default();
    // HTTP/2 has no Connection header (hyper refuses one).
    forward_headers(&mut h2, &conn, &out, headers(), |_| false, edit);
    // A mirror route's copy, written as HTTP/1.1 (chunked when the body is unsized).
    let mut tee = None;
    if !routed.mirror.is_empty() {
        let chunked = has_body && !parts.headers.contains_key(header::CONTENT_LENGTH);
        let mut copy = Vec::with_capacity(512);
        let copy_out = Outgoing { chunked, ..out };
        write_head(&mut copy, &conn, &copy_out, headers(), |_| false, edit);
        if has_body {
            tee = Some(MirrorTee::new(
                copy,
                chunked,
                routed.mirror.clone(),
                conn.shared.tasks.clone(),
                routed.pool,
                routed.request_timeout(),
            ));
        } else {
            spawn_mirror_copy(
                &conn.shared.tasks,
                copy,
                &routed.mirror,
                routed.pool,
                routed.request_timeout(),
                parts.method == http::Method::HEAD,
            );
        }
    }
    let state = Arc::new(BodyState::default());
    let body = if has_body {
        let pace = request::client_body_pace(&settings, &routed);
        Paced::body(body, pace, state.clone(), tee)
    } else {
        UpBody::Empty
    };
    let req = h2c::request(
        out.method,
        forward::target(&out, edit),
        h2.authority,
        &routed.endpoint,
        h2.map,
        body,
    );

    let mut ex = Exchange::begin(conn, routed, start, log);
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            ex.fail(e.kind);
            return short_response(e.kind);
        }
    };
    let r = &ex.routed;
    let (resp, slot) = match r.endpoint.h2_send(&r.pool, req).await {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(endpoint = %r.endpoint.addr, "upstream: {e}");
            ex.fail(e.kind);
            return short_response(e.kind);
        }
    };
    // `requestTimeout` for the response head, counted again while the request body
    // still moves: an upload may take as long as it steadily moves (its own pace is the
    // client's `bodyTimeout` and `minBodyRate`).
    tokio::pin!(resp);
    let mut seen = state.received();
    let resp = loop {
        match tokio::time::timeout(r.request_timeout(), resp.as_mut()).await {
            Ok(x) => break x,
            Err(_) => {
                let now = state.received();
                if state.state() == BodyState::SENDING && now != seen {
                    seen = now;
                    continue;
                }
                ex.fail(Kind::ResponseTimeout);
                return short_response(Kind::ResponseTimeout);
            }
        }
    };
    let resp = match resp {
        Ok(resp) => resp,
        Err(e) => {
            return match state.state() {
                BodyState::CLIENT_SLOW if ex.routed.past_deadline() => {
                    ex.fail(Kind::ResponseTimeout);
                    short_response(Kind::ResponseTimeout)
                }
                BodyState::CLIENT_SLOW => {
                    ex.fail(Kind::BodyTimeout);
                    short_response(Kind::BodyTimeout)
                }
                BodyState::TOO_LARGE => {
                    ex.fail(Kind::BodyTooLarge);
                    short_response(Kind::BodyTooLarge)
                }
                BodyState::CLIENT_GONE => {
                    ex.client_gone();
                    short_response(Kind::BadRequest)
                }
                _ => {
                    tracing::debug!(endpoint = %r.endpoint.addr, "upstream response: {e}");
                    ex.fail(Kind::UpstreamProtocol);
                    short_response(Kind::UpstreamProtocol)
                }
            };
        }
    };

    let (mut parts, body) = resp.into_parts();
    let h = &mut parts.headers;
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        h.remove(name);
    }
    h.remove("keep-alive");
    h.remove("proxy-connection");
    if let Some(e) = r.edit.as_deref() {
        let dropped: Vec<_> = h
            .keys()
            .filter(|n| e.drops(true, n.as_str().as_bytes()))
            .cloned()
            .collect();
        for n in dropped {
            h.remove(n);
        }
        e.extra(true, |n, v| append(h, n, v));
    }
    if let Some(ticket) = r.ticket {
        debug_headers(r, ticket, |n, v| append(h, n.as_bytes(), v));
    }
    ex.status = parts.status.as_u16();
    let idle = r.request_timeout();
    http::Response::from_parts(parts, RespBody::h2c(body, idle, state, slot, ex))
}

/// The response type of the HTTP/2 path.
type Response = http::Response<RespBody>;

fn append(h: &mut http::HeaderMap, name: &[u8], value: &[u8]) {
    if let (Ok(n), Ok(v)) = (
        http::HeaderName::from_bytes(name),
        http::HeaderValue::from_bytes(value),
    ) {
        h.append(n, v);
    }
}
