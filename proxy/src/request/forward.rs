//! The upstream request head, written the same way whichever protocol the request came
//! in on: the client's headers less the hop-by-hop ones and those weir sets itself, then
//! Host, the framing, and X-Forwarded-For/-Proto/-Host.

use super::Routed;
use super::filters::Edit;
use crate::conn::ConnInfo;

/// What the upstream head is written from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Outgoing<'a> {
    pub(crate) method: &'a [u8],
    /// Origin form: path and query.
    pub(crate) target: &'a [u8],
    /// The host the request is for (the absolute-form authority or `:authority` when
    /// there is one, else Host); sent as Host and X-Forwarded-Host.
    pub(crate) host: Option<&'a [u8]>,
    /// The body goes chunked.
    pub(crate) chunked: bool,
    /// An Upgrade request (WebSocket): its Upgrade and Connection headers go through.
    pub(crate) upgrade: bool,
}

/// Headers a proxy never forwards (RFC 9110 §7.6.1), and those weir writes itself.
const NOT_FORWARDED: [&[u8]; 10] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"host",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
];

/// Writes `name: value\r\n`.
#[inline]
pub(crate) fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes the upstream request head into `out`. `headers` are the client's, in order;
/// `named_in_connection` tells the headers the client's Connection header names
/// (HTTP/1.1), which are hop-by-hop too. `edit` is what the route's filters change:
/// headers dropped and added, the Host and target sent (X-Forwarded-Host keeps the
/// client's).
pub(crate) fn write_head<'h>(
    out: &mut Vec<u8>,
    conn: &ConnInfo,
    req: &Outgoing<'_>,
    headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
    named_in_connection: impl Fn(&[u8]) -> bool,
    edit: Option<&Edit>,
) {
    out.extend_from_slice(req.method);
    out.push(b' ');
    out.extend_from_slice(
        edit.and_then(|e| e.target.as_deref())
            .map_or(req.target, str::as_bytes),
    );
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut xff: Option<&[u8]> = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(b"te") {
            // The one TE value a proxy passes on: it forwards trailers verbatim.
            if value.eq_ignore_ascii_case(b"trailers") {
                put_header(out, name, b"trailers");
            }
            continue;
        }
        if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            xff = Some(value);
            continue;
        }
        if NOT_FORWARDED.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            if req.upgrade
                && (name.eq_ignore_ascii_case(b"upgrade")
                    || name.eq_ignore_ascii_case(b"connection"))
            {
                put_header(out, name, value);
            }
            continue;
        }
        // weir answers `Expect: 100-continue` itself; other expectations go through.
        if name.eq_ignore_ascii_case(b"expect")
            && value.trim_ascii().eq_ignore_ascii_case(b"100-continue")
        {
            continue;
        }
        if named_in_connection(name) {
            continue;
        }
        if edit.is_some_and(|e| e.drops(false, name)) {
            continue;
        }
        put_header(out, name, value);
    }
    if let Some(e) = edit {
        e.extra(false, |n, v| put_header(out, n, v));
    }
    if let Some(h) = edit
        .and_then(|e| e.host.as_deref())
        .map(str::as_bytes)
        .or(req.host)
    {
        put_header(out, b"host", h);
    }
    if req.chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if let Some(prev) = xff.filter(|p| !p.is_empty()) {
        out.extend_from_slice(prev);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(conn.client_ip.as_bytes());
    out.extend_from_slice(if conn.tls {
        b"\r\nx-forwarded-proto: https\r\n"
    } else {
        b"\r\nx-forwarded-proto: http\r\n"
    });
    if let Some(h) = req.host {
        put_header(out, b"x-forwarded-host", h);
    }
    out.extend_from_slice(b"\r\n");
}

/// The `x-weir-*` response headers of `debugHeaders`, given to `put` one by one.
pub(crate) fn debug_headers(
    r: &Routed,
    ticket: Option<u64>,
    mut put: impl FnMut(&'static str, &[u8]),
) {
    put("x-weir-route", r.route.as_bytes());
    put("x-weir-service", r.backend.key.service.as_bytes());
    put("x-weir-role", r.backend.key.role.to_string().as_bytes());
    put("x-weir-revision", r.backend.key.revision.as_bytes());
    put("x-weir-upstream", r.endpoint.addr.to_string().as_bytes());
    if let Some(t) = ticket {
        let mut b = itoa::Buffer::new();
        put("x-weir-split-seq", b.format(t).as_bytes());
    }
}
