//! Proxy errors: where a fault came from decides the status the client gets, whether it
//! is charged to a backend in the stats, and what is logged.

use std::fmt;

/// Where a fault came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The client sent something wrong.
    Client,
    /// The upstream failed.
    Upstream,
    /// Nothing can serve the request (no route, no endpoints).
    Config,
}

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A malformed request (bad head, bad Host, bad chunked body): 400.
    BadRequest,
    /// The request head did not arrive within `headerTimeout`: 408.
    HeadTimeout,
    /// The request body stalled (`bodyTimeout`) or came slower than `minBodyRate`: 408.
    BodyTimeout,
    /// The request line alone is longer than `maxHeaderBytes`: 414.
    UriTooLong,
    /// The request head is larger than `maxHeaderBytes`, or has too many headers: 431.
    HeadersTooLarge,
    /// The client's address is not let in (a route's source ranges): 403.
    Forbidden,
    /// No route matched: 404.
    NoRoute,
    /// The request body is larger than the route takes: 413.
    BodyTooLarge,
    /// The backend has no endpoints: 503.
    NoEndpoints,
    /// The route's target cannot serve now: 503.
    Unavailable,
    /// The route has no valid backend (an HTTPRoute rule whose backends do not resolve,
    /// or all weigh 0): 500, as the Gateway API says.
    InvalidBackend,
    /// TCP connect refused or failed: 502.
    ConnectFailed,
    /// TCP connect took too long: 504.
    ConnectTimeout,
    /// No response headers in time: 504.
    ResponseTimeout,
    /// The connection broke or the upstream spoke bad HTTP: 502.
    UpstreamProtocol,
}

impl Kind {
    /// Every kind, for metrics.
    pub const ALL: [Kind; 15] = [
        Kind::BadRequest,
        Kind::HeadTimeout,
        Kind::BodyTimeout,
        Kind::UriTooLong,
        Kind::HeadersTooLarge,
        Kind::Forbidden,
        Kind::BodyTooLarge,
        Kind::NoRoute,
        Kind::NoEndpoints,
        Kind::Unavailable,
        Kind::InvalidBackend,
        Kind::ConnectFailed,
        Kind::ConnectTimeout,
        Kind::ResponseTimeout,
        Kind::UpstreamProtocol,
    ];

    /// The status the client gets.
    pub fn status(self) -> u16 {
        match self {
            Kind::BadRequest => 400,
            Kind::HeadTimeout | Kind::BodyTimeout => 408,
            Kind::UriTooLong => 414,
            Kind::HeadersTooLarge => 431,
            Kind::Forbidden => 403,
            Kind::BodyTooLarge => 413,
            Kind::NoRoute => 404,
            Kind::NoEndpoints | Kind::Unavailable => 503,
            Kind::InvalidBackend => 500,
            Kind::ConnectFailed | Kind::UpstreamProtocol => 502,
            Kind::ConnectTimeout | Kind::ResponseTimeout => 504,
        }
    }

    /// Where it came from.
    pub fn source(self) -> Source {
        match self {
            Kind::BadRequest
            | Kind::HeadTimeout
            | Kind::BodyTimeout
            | Kind::UriTooLong
            | Kind::HeadersTooLarge
            | Kind::Forbidden
            | Kind::BodyTooLarge => Source::Client,
            Kind::NoRoute | Kind::NoEndpoints | Kind::Unavailable | Kind::InvalidBackend => {
                Source::Config
            }
            Kind::ConnectFailed
            | Kind::ConnectTimeout
            | Kind::ResponseTimeout
            | Kind::UpstreamProtocol => Source::Upstream,
        }
    }

    /// Label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Kind::BadRequest => "bad_request",
            Kind::HeadTimeout => "head_timeout",
            Kind::BodyTimeout => "body_timeout",
            Kind::UriTooLong => "uri_too_long",
            Kind::HeadersTooLarge => "headers_too_large",
            Kind::Forbidden => "forbidden",
            Kind::BodyTooLarge => "body_too_large",
            Kind::NoRoute => "no_route",
            Kind::NoEndpoints => "no_endpoints",
            Kind::Unavailable => "unavailable",
            Kind::InvalidBackend => "invalid_backend",
            Kind::ConnectFailed => "connect_failed",
            Kind::ConnectTimeout => "connect_timeout",
            Kind::ResponseTimeout => "response_timeout",
            Kind::UpstreamProtocol => "upstream_protocol",
        }
    }

    /// The reason phrase of [`Kind::status`].
    pub fn reason(self) -> &'static str {
        match self.status() {
            400 => "Bad Request",
            403 => "Forbidden",
            413 => "Content Too Large",
            404 => "Not Found",
            408 => "Request Timeout",
            414 => "URI Too Long",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            _ => "Error",
        }
    }

    /// The short body sent to the client.
    pub fn body(self) -> &'static str {
        match self {
            Kind::BadRequest => "400 Bad Request\n",
            Kind::HeadTimeout => "408 Request Timeout: the request head took too long\n",
            Kind::BodyTimeout => "408 Request Timeout: the request body came too slowly\n",
            Kind::UriTooLong => "414 URI Too Long\n",
            Kind::HeadersTooLarge => "431 Request Header Fields Too Large\n",
            Kind::Forbidden => "403 Forbidden: this address may not use this route\n",
            Kind::BodyTooLarge => {
                "413 Content Too Large: the request body is larger than this route takes\n"
            }
            Kind::NoRoute => "404 Not Found: no route matches this request\n",
            Kind::NoEndpoints => "503 Service Unavailable: no endpoints for this service\n",
            Kind::Unavailable => "503 Service Unavailable\n",
            Kind::InvalidBackend => "500 Internal Server Error: this route has no valid backend\n",
            Kind::ConnectFailed => "502 Bad Gateway: the upstream refused the connection\n",
            Kind::ConnectTimeout => "504 Gateway Timeout: connecting to the upstream timed out\n",
            Kind::ResponseTimeout => "504 Gateway Timeout: the upstream did not answer in time\n",
            Kind::UpstreamProtocol => "502 Bad Gateway: the upstream connection failed\n",
        }
    }
}

/// A proxy error with its cause, for the log.
#[derive(Debug)]
pub struct ProxyError {
    /// What went wrong.
    pub kind: Kind,
    /// The underlying error, if any.
    pub cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ProxyError {
    /// An error of `kind` with no cause.
    pub fn new(kind: Kind) -> Self {
        ProxyError { kind, cause: None }
    }

    /// An error of `kind` caused by `e`.
    pub fn with(kind: Kind, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ProxyError {
            kind,
            cause: Some(e.into()),
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind.label())?;
        if let Some(c) = &self.cause {
            write!(f, ": {c}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProxyError {}

/// Why the data plane could not be built, at start or for a new configuration (which is
/// then refused, the last good one serving on).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// rustls refused a listener's TLS settings.
    #[error("listener {listener}: {source}")]
    Tls {
        /// The listener.
        listener: String,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// The access log file could not be opened.
    #[error("cannot open the access log: {0}")]
    AccessLog(#[source] std::io::Error),
}
