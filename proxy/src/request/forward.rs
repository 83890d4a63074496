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

/// Where the forwarded request headers go: an HTTP/1.1 head being written (`Vec<u8>`,
/// the fast path, no allocation), or an HTTP/2 request's header map ([`H2Headers`]).
pub(crate) trait HeaderSink {
    /// One header.
    fn put(&mut self, name: &[u8], value: &[u8]);
    /// One header whose value is written in parts (X-Forwarded-For), so that the
    /// HTTP/1.1 head need not build it first.
    fn put_parts(&mut self, name: &[u8], parts: &[&[u8]]);
    /// The host the request is for: Host in HTTP/1.1, `:authority` in HTTP/2.
    fn host(&mut self, host: &[u8]);
}

impl HeaderSink for Vec<u8> {
    #[inline]
    fn put(&mut self, name: &[u8], value: &[u8]) {
        put_header(self, name, value);
    }

    #[inline]
    fn put_parts(&mut self, name: &[u8], parts: &[&[u8]]) {
        self.extend_from_slice(name);
        self.extend_from_slice(b": ");
        for p in parts {
            self.extend_from_slice(p);
        }
        self.extend_from_slice(b"\r\n");
    }

    #[inline]
    fn host(&mut self, host: &[u8]) {
        put_header(self, b"host", host);
    }
}

/// The headers of a request to an HTTP/2 upstream, and its `:authority`.
#[derive(Debug, Default)]
pub(crate) struct H2Headers {
    pub(crate) map: http::HeaderMap,
    pub(crate) authority: Option<http::uri::Authority>,
}

impl HeaderSink for H2Headers {
    fn put(&mut self, name: &[u8], value: &[u8]) {
        // Names and values come from a parsed head or a header map, or from the
        // configuration, all checked already; what would not make a header is left out.
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) {
            self.map.append(n, v);
        }
    }

    fn put_parts(&mut self, name: &[u8], parts: &[&[u8]]) {
        self.put(name, &parts.concat());
    }

    fn host(&mut self, host: &[u8]) {
        self.authority = http::uri::Authority::try_from(host).ok();
    }
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
    out.extend_from_slice(target(req, edit));
    out.extend_from_slice(b" HTTP/1.1\r\n");
    forward_headers(out, conn, req, headers, named_in_connection, edit);
    out.extend_from_slice(b"\r\n");
}

/// The target sent upstream: the filters' rewrite, else the client's.
pub(crate) fn target<'a>(req: &Outgoing<'a>, edit: Option<&'a Edit>) -> &'a [u8] {
    edit.and_then(|e| e.target.as_deref())
        .map_or(req.target, str::as_bytes)
}

/// Gives `sink` the upstream request's headers, by the rules of [`write_head`], which
/// hold for HTTP/2 upstreams too.
pub(crate) fn forward_headers<'h, S: HeaderSink>(
    sink: &mut S,
    conn: &ConnInfo,
    req: &Outgoing<'_>,
    headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
    named_in_connection: impl Fn(&[u8]) -> bool,
    edit: Option<&Edit>,
) {
    let mut xff: Option<&[u8]> = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(b"te") {
            // The one TE value a proxy passes on: it forwards trailers verbatim.
            if value.eq_ignore_ascii_case(b"trailers") {
                sink.put(name, b"trailers");
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
                sink.put(name, value);
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
        sink.put(name, value);
    }
    if let Some(e) = edit {
        e.extra(false, |n, v| sink.put(n, v));
    }
    if let Some(h) = edit
        .and_then(|e| e.host.as_deref())
        .map(str::as_bytes)
        .or(req.host)
    {
        sink.host(h);
    }
    if req.chunked {
        sink.put(b"transfer-encoding", b"chunked");
    }
    let ip = conn.client_ip.as_bytes();
    match xff.filter(|p| !p.is_empty()) {
        Some(prev) => sink.put_parts(b"x-forwarded-for", &[prev, b", ", ip]),
        None => sink.put(b"x-forwarded-for", ip),
    }
    sink.put(
        b"x-forwarded-proto",
        if conn.tls { b"https" } else { b"http" },
    );
    if let Some(h) = req.host {
        sink.put(b"x-forwarded-host", h);
    }
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
