//! Request and response heads parsed with httparse into byte ranges of the read buffer:
//! nothing is copied or allocated, and what the proxy needs (framing, Host, Connection
//! options) is worked out in the same pass.

/// Most headers in one request head; more gets 431.
pub(crate) const MAX_HEADERS: usize = 100;
/// Most headers in one response head: upstreams send more than clients do (cookies,
/// security and tracing headers), and refusing them would turn a good answer into a
/// 502. The head's byte limit ([`MAX_HEAD`]) still bounds them.
pub(crate) const MAX_RESPONSE_HEADERS: usize = 512;
/// Most Connection options remembered (headers named there are hop-by-hop).
const MAX_CONN_TOKENS: usize = 8;

/// Longest head accepted, so that offsets fit in 16 bits and a parsed head stays small
/// (it lives in every connection's task).
pub(crate) const MAX_HEAD: usize = u16::MAX as usize;

/// A byte range of the buffer a head was parsed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    start: u16,
    len: u16,
}

impl Span {
    fn of(buf: &[u8], part: &[u8]) -> Span {
        Span {
            start: (part.as_ptr() as usize - buf.as_ptr() as usize) as u16,
            len: part.len() as u16,
        }
    }

    /// The bytes of `buf` this span covers.
    #[inline]
    pub(crate) fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        let start = self.start as usize;
        &buf[start..start + self.len as usize]
    }
}

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// Malformed: 400 (or 502 for a response).
    Malformed(&'static str),
    /// Too many headers, or too many bytes of them: 431.
    TooManyHeaders,
    /// The request line alone is longer than the head may be: 414.
    UriTooLong,
}

impl HeadError {
    /// The client error this is (for a request head).
    pub(crate) fn kind(self) -> crate::error::Kind {
        match self {
            HeadError::Malformed(_) => crate::error::Kind::BadRequest,
            HeadError::TooManyHeaders => crate::error::Kind::HeadersTooLarge,
            HeadError::UriTooLong => crate::error::Kind::UriTooLong,
        }
    }
}

/// The error for a head that outgrew its limit: 414 while the request line is still
/// unfinished, else 431.
pub(crate) fn too_large(buf: &[u8]) -> HeadError {
    if buf.contains(&b'\n') {
        HeadError::TooManyHeaders
    } else {
        HeadError::UriTooLong
    }
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// What both heads share.
#[derive(Debug)]
pub(crate) struct Common {
    /// Bytes of the head, through the blank line.
    pub(crate) len: usize,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor: u8,
    /// (name, value) of each header, in order. The vector is reused from message to
    /// message (see [`parse_request`]), so that parsing allocates nothing.
    pub(crate) headers: Vec<(Span, Span)>,
    pub(crate) content_length: Option<u64>,
    pub(crate) chunked: bool,
    pub(crate) conn_close: bool,
    pub(crate) conn_keep_alive: bool,
    pub(crate) conn_upgrade: bool,
    pub(crate) upgrade: Option<Span>,
    /// A response that came with both Content-Length and chunked: forwarded chunked,
    /// its Content-Length dropped, and its connection not used again (RFC 9112 §6.3).
    pub(crate) both_framings: bool,
    conn_tokens: [Span; MAX_CONN_TOKENS],
    conn_token_count: usize,
}

impl Common {
    fn new(headers: Vec<(Span, Span)>) -> Self {
        Common {
            len: 0,
            minor: 1,
            headers,
            content_length: None,
            chunked: false,
            conn_close: false,
            conn_keep_alive: false,
            conn_upgrade: false,
            upgrade: None,
            both_framings: false,
            conn_tokens: [Span::default(); MAX_CONN_TOKENS],
            conn_token_count: 0,
        }
    }

    /// The headers, as (name, value) spans.
    pub(crate) fn headers(&self) -> &[(Span, Span)] {
        &self.headers
    }

    /// Whether the header named `name` must not be forwarded: hop-by-hop (RFC 9110
    /// §7.6.1), named in Connection, or one the proxy sets itself. The framing headers
    /// are never dropped for a Connection token (see [`Common::interpret`]); a
    /// Content-Length beside chunked coding is.
    pub(crate) fn is_hop_by_hop(&self, buf: &[u8], name: &[u8], keep_upgrade: bool) -> bool {
        if self.both_framings && name.eq_ignore_ascii_case(b"content-length") {
            return true;
        }
        const ALWAYS: [&[u8]; 7] = [
            b"connection",
            b"keep-alive",
            b"proxy-connection",
            b"te",
            b"trailer",
            b"transfer-encoding",
            b"upgrade",
        ];
        for h in ALWAYS {
            if name.eq_ignore_ascii_case(h) {
                return !(keep_upgrade && (h == b"upgrade" || h == b"connection"));
            }
        }
        self.named_in_connection(buf, name)
    }

    /// Whether the Connection header named `name` (a hop-by-hop header of this message
    /// only). Never true for the framing headers and Host.
    pub(crate) fn named_in_connection(&self, buf: &[u8], name: &[u8]) -> bool {
        self.conn_tokens[..self.conn_token_count]
            .iter()
            .any(|t| t.get(buf).eq_ignore_ascii_case(name))
    }

    /// Interprets framing and Connection headers; `is_request` refuses what only
    /// responses may do.
    fn interpret(&mut self, buf: &[u8], is_request: bool) -> Result<(), HeadError> {
        for i in 0..self.headers.len() {
            let (n, v) = self.headers[i];
            let name = n.get(buf);
            let value = v.get(buf);
            if name.eq_ignore_ascii_case(b"content-length") {
                let parsed = parse_content_length(value)
                    .ok_or(HeadError::Malformed("bad Content-Length"))?;
                if let Some(prev) = self.content_length
                    && prev != parsed
                {
                    return Err(HeadError::Malformed("conflicting Content-Length headers"));
                }
                self.content_length = Some(parsed);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                // Only `chunked`, last, is understood; anything else cannot be framed.
                let last = value.rsplit(|b| *b == b',').next().unwrap_or(b"");
                if trim(last).eq_ignore_ascii_case(b"chunked") {
                    self.chunked = true;
                } else if is_request {
                    return Err(HeadError::Malformed("unsupported Transfer-Encoding"));
                } else {
                    self.chunked = false;
                }
            } else if name.eq_ignore_ascii_case(b"connection") {
                for token in value.split(|b| *b == b',') {
                    let t = trim(token);
                    if t.eq_ignore_ascii_case(b"close") {
                        self.conn_close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        self.conn_keep_alive = true;
                    } else if t.eq_ignore_ascii_case(b"upgrade") {
                        self.conn_upgrade = true;
                    } else if is_framing(t) {
                        // `Connection: content-length` (or host, or transfer-encoding)
                        // must not make the proxy drop the message's framing or its
                        // Host while the bytes they frame still go through: the
                        // upstream would parse the body as a request of its own
                        // (request smuggling). The token is ignored instead.
                    } else if !t.is_empty() && self.conn_token_count < MAX_CONN_TOKENS {
                        self.conn_tokens[self.conn_token_count] = Span::of(buf, t);
                        self.conn_token_count += 1;
                    }
                }
            } else if name.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = Some(v);
            }
        }
        if self.chunked && self.content_length.is_some() {
            if is_request {
                // Both framings at once is how requests are smuggled.
                return Err(HeadError::Malformed(
                    "both Content-Length and Transfer-Encoding",
                ));
            }
            self.content_length = None;
            self.both_framings = true;
        }
        if self.minor == 0 && self.has_transfer_encoding(buf) {
            // HTTP/1.0 has no transfer codings: its framing is faulty (RFC 9112 §6.1).
            return Err(HeadError::Malformed("Transfer-Encoding in HTTP/1.0"));
        }
        Ok(())
    }

    fn has_transfer_encoding(&self, buf: &[u8]) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.get(buf).eq_ignore_ascii_case(b"transfer-encoding"))
    }

    /// Whether the connection stays open after this message (HTTP/1.1 unless `close`;
    /// HTTP/1.0 only with `keep-alive`).
    pub(crate) fn keep_alive(&self) -> bool {
        if self.minor == 0 {
            self.conn_keep_alive && !self.conn_close
        } else {
            !self.conn_close
        }
    }
}

/// The headers that frame a message or name its target: never dropped because a
/// Connection header names them.
fn is_framing(token: &[u8]) -> bool {
    token.eq_ignore_ascii_case(b"content-length")
        || token.eq_ignore_ascii_case(b"transfer-encoding")
        || token.eq_ignore_ascii_case(b"host")
}

/// Whether `host` is a valid `uri-host [ ":" port ]` (RFC 3986 reg-name, IPv4 or an
/// IPv6 literal in brackets): no spaces, `/`, `@`, `\`, `?` or `#`, which upstreams and
/// their logs would read as something else.
pub(crate) fn valid_host(host: &[u8]) -> bool {
    let (name, port) = match host.first() {
        Some(b'[') => match host.iter().position(|b| *b == b']') {
            Some(end) => {
                let inside = &host[1..end];
                if inside.is_empty()
                    || !inside
                        .iter()
                        .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
                {
                    return false;
                }
                (&[][..], &host[end + 1..])
            }
            None => return false,
        },
        _ => match host.iter().position(|b| *b == b':') {
            Some(c) => (&host[..c], &host[c..]),
            None => (host, &[][..]),
        },
    };
    let name_ok = name.iter().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            )
    });
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    name_ok && port_ok
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

fn parse_content_length(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) common: Common,
    pub(crate) method: Span,
    /// The request target as sent (origin form, or absolute form).
    pub(crate) target: Span,
    pub(crate) host: Option<Span>,
    pub(crate) expect_continue: bool,
}

impl RequestHead {
    /// How the request body is delimited.
    pub(crate) fn framing(&self) -> Framing {
        if self.common.chunked {
            Framing::Chunked
        } else {
            match self.common.content_length {
                Some(0) | None => Framing::None,
                Some(n) => Framing::Length(n),
            }
        }
    }

    /// Whether this is an Upgrade request (WebSocket and the like).
    pub(crate) fn is_upgrade(&self) -> bool {
        self.common.minor == 1 && self.common.conn_upgrade && self.common.upgrade.is_some()
    }

    /// HEAD requests get responses without a body.
    pub(crate) fn is_head(&self, buf: &[u8]) -> bool {
        self.method.get(buf) == b"HEAD"
    }
}

/// Parses a request head at the start of `buf`. `Ok(None)` means incomplete. The
/// head's header list is taken from `spans` (give it back when done with the head).
pub(crate) fn parse_request(
    buf: &[u8],
    spans: &mut Vec<(Span, Span)>,
) -> Result<Option<RequestHead>, HeadError> {
    let mut raw = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(&buf[..buf.len().min(MAX_HEAD)], &mut raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(too_large(&buf[..MAX_HEAD]));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(_) => return Err(HeadError::Malformed("malformed request")),
    };
    let mut headers = std::mem::take(spans);
    headers.clear();
    let mut common = Common::new(headers);
    common.len = len;
    common.minor = req.version.unwrap_or(1);
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return Err(HeadError::Malformed("malformed request line"));
    };
    let mut host = None;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let ns = Span::of(buf, h.name.as_bytes());
        let vs = Span::of(buf, h.value);
        if h.name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Err(HeadError::Malformed("more than one Host header"));
            }
            if !valid_host(trim(h.value)) {
                return Err(HeadError::Malformed("invalid Host"));
            }
            host = Some(vs);
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect_continue = trim(h.value).eq_ignore_ascii_case(b"100-continue");
        }
        common.headers.push((ns, vs));
    }
    let method = Span::of(buf, method.as_bytes());
    let target = Span::of(buf, path.as_bytes());
    common.interpret(buf, true)?;
    if common.minor == 1 && host.is_none() && !path.starts_with("http") {
        return Err(HeadError::Malformed("HTTP/1.1 request without Host"));
    }
    Ok(Some(RequestHead {
        common,
        method,
        target,
        host,
        expect_continue,
    }))
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) common: Common,
    pub(crate) status: u16,
    pub(crate) reason: Span,
}

impl ResponseHead {
    /// How the response body is delimited, given the request's method.
    pub(crate) fn framing(&self, head_request: bool) -> Framing {
        if head_request
            || (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304
        {
            Framing::None
        } else if self.common.chunked {
            Framing::Chunked
        } else {
            match self.common.content_length {
                Some(0) => Framing::None,
                Some(n) => Framing::Length(n),
                None => Framing::UntilClose,
            }
        }
    }
}

/// Parses a response head at the start of `buf`. `Ok(None)` means incomplete. The
/// head's header list is taken from `spans`.
pub(crate) fn parse_response(
    buf: &[u8],
    spans: &mut Vec<(Span, Span)>,
) -> Result<Option<ResponseHead>, HeadError> {
    let mut raw =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        &buf[..buf.len().min(MAX_HEAD)],
        &mut raw,
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(HeadError::TooManyHeaders);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(_) => return Err(HeadError::Malformed("malformed response")),
    };
    let mut headers = std::mem::take(spans);
    headers.clear();
    let mut common = Common::new(headers);
    common.len = len;
    common.minor = resp.version.unwrap_or(1);
    let status = resp.code.unwrap_or(0);
    let reason = resp
        .reason
        .map(|r| Span::of(buf, r.as_bytes()))
        .unwrap_or_default();
    for h in resp.headers.iter() {
        common
            .headers
            .push((Span::of(buf, h.name.as_bytes()), Span::of(buf, h.value)));
    }
    common.interpret(buf, false)?;
    Ok(Some(ResponseHead {
        common,
        status,
        reason,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let b = b"POST /x?y=1 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nConnection: keep-alive, X-Foo\r\nX-Foo: 1\r\n\r\nhello";
        let r = parse_request(b, &mut Vec::new()).unwrap().unwrap();
        assert_eq!(r.common.len, b.len() - 5);
        assert_eq!(r.method.get(b), b"POST");
        assert_eq!(r.target.get(b), b"/x?y=1");
        assert_eq!(r.host.unwrap().get(b), b"a.test");
        assert_eq!(r.framing(), Framing::Length(5));
        assert!(r.common.keep_alive());
        assert!(r.common.is_hop_by_hop(b, b"x-foo", false));
        assert!(r.common.is_hop_by_hop(b, b"Keep-Alive", false));
        assert!(!r.common.is_hop_by_hop(b, b"content-length", false));
        assert!(
            parse_request(b"GET / HTTP/1.1\r\nHost: a", &mut Vec::new())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn smuggling_and_bad_framing_are_refused() {
        for bad in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ] {
            assert!(
                matches!(parse_request(bad, &mut Vec::new()), Err(HeadError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn http10_keep_alive() {
        let r = parse_request(b"GET / HTTP/1.0\r\n\r\n", &mut Vec::new())
            .unwrap()
            .unwrap();
        assert!(!r.common.keep_alive());
        let r = parse_request(
            b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
            &mut Vec::new(),
        )
        .unwrap()
        .unwrap();
        assert!(r.common.keep_alive());
    }

    #[test]
    fn responses() {
        let b = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let r = parse_response(b, &mut Vec::new()).unwrap().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.framing(false), Framing::Chunked);
        assert_eq!(r.framing(true), Framing::None);
        let r = parse_response(b"HTTP/1.1 200 OK\r\n\r\n", &mut Vec::new())
            .unwrap()
            .unwrap();
        assert_eq!(r.framing(false), Framing::UntilClose);
        let r = parse_response(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
            &mut Vec::new(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.framing(false), Framing::None);
    }
}
