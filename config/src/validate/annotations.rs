//! ingress-nginx's annotations on an `Ingress` (`nginx.ingress.kubernetes.io/NAME`), read
//! as ingress-nginx reads them: what each honoured one asks for ([`Annotations`]), and a
//! report for every other one. An annotation is honoured, not needed (weir behaves so
//! anyway: a notice), not honoured (a warning that says what is lost), or refused (the
//! snippets: weir runs no nginx configuration, so the Ingress is not served).

use std::time::Duration;

use crate::decode::kube::ObjectMeta;
use crate::model::{Cors, HeaderMatch, HeaderMatchKind, Steer, SteerWhen};
use crate::read::Document;

use super::ctx::Ctx;

/// ingress-nginx's annotation prefix.
pub(super) const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// An Ingress's canary annotations (`canary: "true"`).
#[derive(Clone, Debug, Default)]
pub(super) struct Canary {
    /// Header first, then cookie, in ingress-nginx's order.
    pub(super) steer: Vec<Steer>,
    /// `canary-weight`.
    pub(super) weight: u32,
    /// `canary-weight-total` (default 100).
    pub(super) total: u32,
}

/// What the honoured annotations of one Ingress ask for.
#[derive(Clone, Debug)]
pub(super) struct Annotations {
    /// `canary: "true"`, with its rules.
    pub(super) canary: Option<Canary>,
    /// `rewrite-target` (it makes the host's paths regular expressions, as `use-regex`).
    pub(super) rewrite_target: Option<String>,
    /// `use-regex`.
    pub(super) use_regex: bool,
    /// `app-root`: `/` redirects there (302).
    pub(super) app_root: Option<String>,
    /// `ssl-redirect` (default true: plain HTTP to a host with TLS redirects, 308).
    pub(super) ssl_redirect: bool,
    /// `force-ssl-redirect`: redirect even when the host has no TLS.
    pub(super) force_ssl_redirect: bool,
    /// `permanent-redirect` (with `permanent-redirect-code`, default 301) or
    /// `temporal-redirect` (302): every request answered with this URL.
    pub(super) redirect: Option<(String, u16)>,
    /// `proxy-body-size`: `Some(None)` is `0`, no limit.
    pub(super) max_body: Option<Option<u64>>,
    /// `proxy-connect-timeout`.
    pub(super) connect_timeout: Option<Duration>,
    /// `proxy-read-timeout`.
    pub(super) read_timeout: Option<Duration>,
    /// `proxy-send-timeout`.
    pub(super) send_timeout: Option<Duration>,
    /// `backend-protocol`, upper-case (`HTTP` when not written).
    pub(super) backend_protocol: String,
    /// `upstream-vhost`: the Host sent upstream.
    pub(super) upstream_vhost: Option<String>,
    /// `x-forwarded-prefix`: sent upstream as `X-Forwarded-Prefix`.
    pub(super) forwarded_prefix: Option<String>,
    /// `enable-cors` with its `cors-*`.
    pub(super) cors: Option<Cors>,
    /// `whitelist-source-range` (or `allowlist-source-range`).
    pub(super) allow: Vec<ipnet::IpNet>,
    /// `denylist-source-range`.
    pub(super) deny: Vec<ipnet::IpNet>,
    /// The snippets written: the Ingress is not served.
    pub(super) refused: Vec<String>,
}

impl Default for Annotations {
    fn default() -> Self {
        Annotations {
            canary: None,
            rewrite_target: None,
            use_regex: false,
            app_root: None,
            ssl_redirect: true,
            force_ssl_redirect: false,
            redirect: None,
            max_body: None,
            connect_timeout: None,
            read_timeout: None,
            send_timeout: None,
            backend_protocol: "HTTP".to_owned(),
            upstream_vhost: None,
            forwarded_prefix: None,
            cors: None,
            allow: Vec::new(),
            deny: Vec::new(),
            refused: Vec::new(),
        }
    }
}

/// The field of annotation `key` (with its prefix), for messages.
pub(super) fn field(key: &str) -> String {
    format!("metadata.annotations[\"{key}\"]")
}

/// Annotations that change nothing in weir, with why.
const NOT_NEEDED: &[(&str, &str)] = &[
    (
        "proxy-buffering",
        "weir streams responses as they come, without buffering them to disk",
    ),
    (
        "proxy-request-buffering",
        "weir streams request bodies upstream as they come",
    ),
    ("proxy-buffer-size", "weir sizes its buffers itself"),
    ("proxy-buffers-number", "weir sizes its buffers itself"),
    ("proxy-max-temp-file-size", "weir never buffers to disk"),
    ("client-body-buffer-size", "weir never buffers to disk"),
    (
        "proxy-http-version",
        "weir speaks HTTP/1.1 to upstreams (or HTTP/2 where the Service port says so)",
    ),
    (
        "ssl-prefer-server-ciphers",
        "weir's TLS (rustls) chooses its cipher suites",
    ),
];

/// The snippet annotations: nginx configuration, refused.
const SNIPPETS: &[&str] = &[
    "configuration-snippet",
    "server-snippet",
    "auth-snippet",
    "modsecurity-snippet",
    "stream-snippet",
];

/// The canary annotations (read only with `canary: "true"`).
const CANARY_KEYS: &[&str] = &[
    "canary",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
    "canary-weight",
    "canary-weight-total",
];

/// ingress-nginx's CORS defaults.
const CORS_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
const CORS_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
const CORS_MAX_AGE: u32 = 1_728_000;

/// Reads the annotations of `meta` (keys under `prefix`), reporting each one weir does not
/// honour at its field.
pub(super) fn read(ctx: &mut Ctx, doc: &Document, meta: &ObjectMeta, prefix: &str) -> Annotations {
    let mut a = Annotations::default();
    let get = |name: &str| meta.annotations.get(&format!("{prefix}{name}"));
    let mut r = Reader {
        ctx,
        doc,
        prefix,
        meta,
    };

    if let Some(v) = get("canary")
        && r.boolean("canary", v)
    {
        a.canary = Some(r.canary());
    } else {
        for k in &CANARY_KEYS[1..] {
            if get(k).is_some() {
                r.ctx.warn(
                    doc,
                    &field(&format!("{prefix}{k}")),
                    format!("{prefix}{k} has no effect without {prefix}canary: \"true\""),
                );
            }
        }
    }
    a.rewrite_target = get("rewrite-target").cloned();
    if let Some(v) = get("use-regex") {
        a.use_regex = r.boolean("use-regex", v);
    }
    if let Some(v) = get("app-root") {
        if v.starts_with('/') {
            a.app_root = Some(v.clone());
        } else {
            r.issue(
                "app-root",
                format!("{v:?} is not a path: write one such as /app"),
            );
        }
    }
    if let Some(v) = get("ssl-redirect") {
        a.ssl_redirect = r.boolean("ssl-redirect", v);
    }
    if let Some(v) = get("force-ssl-redirect") {
        a.force_ssl_redirect = r.boolean("force-ssl-redirect", v);
    }
    if let Some(url) = get("permanent-redirect") {
        let code = match get("permanent-redirect-code") {
            Some(c) => r.code("permanent-redirect-code", c, 301),
            None => 301,
        };
        a.redirect = r.url("permanent-redirect", url).map(|u| (u, code));
    } else if let Some(url) = get("temporal-redirect") {
        let code = match get("temporal-redirect-code") {
            Some(c) => r.code("temporal-redirect-code", c, 302),
            None => 302,
        };
        a.redirect = r.url("temporal-redirect", url).map(|u| (u, code));
    }
    if let Some(v) = get("proxy-body-size") {
        a.max_body = r.size("proxy-body-size", v);
    }
    a.connect_timeout =
        get("proxy-connect-timeout").and_then(|v| r.secs("proxy-connect-timeout", v));
    a.read_timeout = get("proxy-read-timeout").and_then(|v| r.secs("proxy-read-timeout", v));
    a.send_timeout = get("proxy-send-timeout").and_then(|v| r.secs("proxy-send-timeout", v));
    if let Some(v) = get("backend-protocol") {
        let p = v.trim().to_ascii_uppercase();
        match p.as_str() {
            "HTTP" | "AUTO_HTTP" => {}
            // gRPC over cleartext HTTP/2 (h2c) to the Ingress's backends.
            "GRPC" => {}
            "HTTPS" | "GRPCS" => r.ctx.warn(
                doc,
                &field(&format!("{prefix}backend-protocol")),
                format!("backend-protocol {p} is not honoured: weir does not speak TLS to upstreams, so it sends plain HTTP, which a TLS-only backend refuses"),
            ),
            "FCGI" => r.ctx.warn(
                doc,
                &field(&format!("{prefix}backend-protocol")),
                "backend-protocol FCGI is not honoured: weir speaks HTTP to upstreams, not FastCGI",
            ),
            _ => r.issue(
                "backend-protocol",
                format!("{v:?} is not a backend protocol: HTTP, HTTPS, GRPC, GRPCS, AUTO_HTTP or FCGI"),
            ),
        }
        a.backend_protocol = p;
    }
    if let Some(v) = get("upstream-vhost") {
        match super::hostnames::check(&v.to_ascii_lowercase()) {
            Ok(()) => a.upstream_vhost = Some(v.to_ascii_lowercase()),
            Err(e) => r.issue("upstream-vhost", e),
        }
    }
    a.forwarded_prefix = get("x-forwarded-prefix").cloned();
    if let Some(v) = get("enable-cors")
        && r.boolean("enable-cors", v)
    {
        a.cors = Some(r.cors());
    }
    for key in ["whitelist-source-range", "allowlist-source-range"] {
        if let Some(v) = get(key) {
            a.allow.extend(r.ranges(key, v));
        }
    }
    if let Some(v) = get("denylist-source-range") {
        a.deny.extend(r.ranges("denylist-source-range", v));
    }

    // Everything else under the prefix: reported.
    for key in meta.annotations.keys() {
        let Some(name) = key.strip_prefix(prefix) else {
            continue;
        };
        if HONOURED.contains(&name) || CANARY_KEYS.contains(&name) {
            continue;
        }
        let f = field(key);
        if SNIPPETS.contains(&name) {
            r.ctx.warn(
                doc,
                &f,
                format!("{key} is refused: it is nginx configuration, and weir runs no nginx; this Ingress is not served until it is removed"),
            );
            a.refused.push(key.clone());
        } else if let Some((_, why)) = NOT_NEEDED.iter().find(|(n, _)| *n == name) {
            r.ctx.notice(doc, &f, format!("{key} is not needed: {why}"));
        } else {
            r.ctx.warn(
                doc,
                &f,
                format!("{key} is not honoured by weir: the Ingress is served without it (docs/ingress.md lists the annotations weir honours)"),
            );
        }
    }
    a
}

/// The annotations [`read`] honours, besides the canary ones.
const HONOURED: &[&str] = &[
    "rewrite-target",
    "use-regex",
    "app-root",
    "ssl-redirect",
    "force-ssl-redirect",
    "permanent-redirect",
    "permanent-redirect-code",
    "temporal-redirect",
    "temporal-redirect-code",
    "proxy-body-size",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "backend-protocol",
    "upstream-vhost",
    "x-forwarded-prefix",
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-expose-headers",
    "cors-allow-credentials",
    "cors-max-age",
    "whitelist-source-range",
    "allowlist-source-range",
    "denylist-source-range",
];

/// Every annotation weir knows, with how it treats it, for docs and tests.
pub fn known() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<_> = HONOURED
        .iter()
        .chain(CANARY_KEYS)
        .map(|k| (*k, "honoured"))
        .collect();
    out.extend(NOT_NEEDED.iter().map(|(k, _)| (*k, "not needed")));
    out.extend(SNIPPETS.iter().map(|k| (*k, "refused")));
    out
}

/// The canary rules Argo Rollouts' `additionalIngressAnnotations` ask for (keys without
/// the prefix, as Argo writes them): the header and cookie ones; anything else is
/// reported at `field`.
pub(super) fn additional(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    extra: &std::collections::BTreeMap<String, String>,
) -> Vec<Steer> {
    let meta = ObjectMeta {
        annotations: extra.clone(),
        ..ObjectMeta::default()
    };
    let mut r = Reader {
        ctx,
        doc,
        prefix: "",
        meta: &meta,
    };
    let rules = r.canary().steer;
    for k in extra.keys() {
        if !matches!(
            k.as_str(),
            "canary-by-header"
                | "canary-by-header-value"
                | "canary-by-header-pattern"
                | "canary-by-cookie"
        ) {
            r.ctx.warn(
                doc,
                &format!("{field}.{k}"),
                format!("additionalIngressAnnotations {k} is not honoured: weir applies canary-by-header, canary-by-header-value, canary-by-header-pattern and canary-by-cookie; the weight is the Rollout's"),
            );
        }
    }
    rules
}

/// Reads values, reporting at the annotation's field.
struct Reader<'a, 'c> {
    ctx: &'c mut Ctx,
    doc: &'a Document,
    prefix: &'a str,
    meta: &'a ObjectMeta,
}

impl Reader<'_, '_> {
    fn get(&self, name: &str) -> Option<&String> {
        self.meta.annotations.get(&format!("{}{name}", self.prefix))
    }

    fn field(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            field(&format!("{}{name}", self.prefix))
        }
    }

    fn issue(&mut self, name: &str, message: impl Into<String>) {
        let f = self.field(name);
        self.ctx.issue(self.doc, &f, message);
    }

    /// Go's `strconv.ParseBool`, as ingress-nginx reads booleans.
    fn boolean(&mut self, name: &str, v: &str) -> bool {
        match v.trim() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
            "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
            _ => {
                self.issue(name, format!("{v:?} is not true or false"));
                false
            }
        }
    }

    fn code(&mut self, name: &str, v: &str, default: u16) -> u16 {
        match v.trim().parse::<u16>() {
            Ok(c @ (300..=308)) => c,
            _ => {
                self.issue(
                    name,
                    format!("{v:?} is not a redirect status: write 301, 302, 303, 307 or 308"),
                );
                default
            }
        }
    }

    fn url(&mut self, name: &str, v: &str) -> Option<String> {
        let v = v.trim();
        let ok = (v.starts_with("http://") || v.starts_with("https://") || v.starts_with('/'))
            && !v.bytes().any(|b| b.is_ascii_control() || b == b' ');
        if ok {
            Some(v.to_owned())
        } else {
            self.issue(
                name,
                format!("{v:?} is not a URL: write one such as https://www.example.com/new"),
            );
            None
        }
    }

    /// An nginx size: bytes, or a number with `k`, `m` or `g`; `0` is no limit.
    fn size(&mut self, name: &str, v: &str) -> Option<Option<u64>> {
        let t = v.trim();
        let (digits, unit) = match t.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_lowercase()),
            _ => (t, ' '),
        };
        let mult: u64 = match unit {
            ' ' => 1,
            'k' => 1 << 10,
            'm' => 1 << 20,
            'g' => 1 << 30,
            _ => 0,
        };
        match digits.parse::<u64>() {
            Ok(n) if mult > 0 => Some((n > 0).then(|| n.saturating_mul(mult))),
            _ => {
                self.issue(
                    name,
                    format!("{v:?} is not a size: write bytes, or a number with k, m or g (8m); 0 is no limit"),
                );
                None
            }
        }
    }

    /// Whole seconds, as ingress-nginx reads its timeouts (a trailing `s` is taken).
    fn secs(&mut self, name: &str, v: &str) -> Option<Duration> {
        let t = v.trim();
        match t.strip_suffix('s').unwrap_or(t).parse::<u64>() {
            Ok(n) if n > 0 => Some(Duration::from_secs(n)),
            _ => {
                self.issue(
                    name,
                    format!("{v:?} is not a timeout: write whole seconds above 0, such as 60"),
                );
                None
            }
        }
    }

    fn ranges(&mut self, name: &str, v: &str) -> Vec<ipnet::IpNet> {
        let mut out = Vec::new();
        for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let parsed = part
                .parse::<ipnet::IpNet>()
                .or_else(|_| part.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(n) => out.push(n.trunc()),
                Err(_) => self.issue(
                    name,
                    format!("{part:?} is not an address range: write CIDRs such as 10.0.0.0/8, separated by commas"),
                ),
            }
        }
        out
    }

    fn cors(&mut self) -> Cors {
        let list = |v: &str| -> Vec<String> {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let origins = self
            .get("cors-allow-origin")
            .map_or("*".to_owned(), Clone::clone);
        let methods = self
            .get("cors-allow-methods")
            .map_or(CORS_METHODS.to_owned(), Clone::clone);
        let headers = self
            .get("cors-allow-headers")
            .map_or(CORS_HEADERS.to_owned(), Clone::clone);
        let expose = self.get("cors-expose-headers").cloned().unwrap_or_default();
        let credentials = match self.get("cors-allow-credentials").cloned() {
            Some(v) => self.boolean("cors-allow-credentials", &v),
            None => true,
        };
        let max_age = match self.get("cors-max-age").cloned() {
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) => n,
                Err(_) => {
                    self.issue("cors-max-age", format!("{v:?} is not a number of seconds"));
                    CORS_MAX_AGE
                }
            },
            None => CORS_MAX_AGE,
        };
        Cors {
            allow_origins: list(&origins),
            allow_credentials: credentials,
            allow_methods: list(&methods)
                .into_iter()
                .map(|m| m.to_ascii_uppercase())
                .collect(),
            allow_headers: list(&headers),
            expose_headers: list(&expose),
            max_age,
        }
    }

    /// The canary rules and weight, in ingress-nginx's order: the header (its value, else
    /// its pattern, else `always`/`never`), then the cookie (`always`/`never`).
    fn canary(&mut self) -> Canary {
        let mut c = Canary {
            total: 100,
            ..Canary::default()
        };
        if let Some(h) = self.get("canary-by-header").cloned() {
            let name = h.trim().to_ascii_lowercase();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                self.issue("canary-by-header", format!("{h:?} is not a header name"));
            } else {
                let header = |kind| {
                    SteerWhen::Header(HeaderMatch {
                        name: name.clone(),
                        kind,
                    })
                };
                let value = self.get("canary-by-header-value").cloned();
                let pattern = self.get("canary-by-header-pattern").cloned();
                if let Some(v) = value.filter(|v| !v.is_empty()) {
                    c.steer.push(Steer {
                        when: header(HeaderMatchKind::Exact(v)),
                        to_canary: true,
                    });
                } else if let Some(p) = pattern.filter(|p| !p.is_empty()) {
                    // ngx.re.match: a search, not anchored.
                    match regex::Regex::new(&p) {
                        Ok(re) => c.steer.push(Steer {
                            when: header(HeaderMatchKind::Regex(re)),
                            to_canary: true,
                        }),
                        Err(e) => self.issue(
                            "canary-by-header-pattern",
                            format!("{p:?} is not a regular expression: {e}"),
                        ),
                    }
                } else {
                    for (v, to_canary) in [("always", true), ("never", false)] {
                        c.steer.push(Steer {
                            when: header(HeaderMatchKind::Exact(v.to_owned())),
                            to_canary,
                        });
                    }
                }
            }
        } else {
            for k in ["canary-by-header-value", "canary-by-header-pattern"] {
                if self.get(k).is_some() {
                    let f = self.field(k);
                    self.ctx.warn(
                        self.doc,
                        &f,
                        format!("{k} has no effect without canary-by-header"),
                    );
                }
            }
        }
        if let Some(name) = self.get("canary-by-cookie").cloned() {
            let name = name.trim().to_owned();
            if name.is_empty() {
                self.issue("canary-by-cookie", "a cookie name is empty");
            } else {
                for (v, to_canary) in [("always", true), ("never", false)] {
                    c.steer.push(Steer {
                        when: SteerWhen::Cookie {
                            name: name.clone(),
                            value: v.to_owned(),
                        },
                        to_canary,
                    });
                }
            }
        }
        if let Some(v) = self.get("canary-weight-total").cloned() {
            match v.trim().parse::<u32>() {
                Ok(n) if n > 0 => c.total = n,
                _ => self.issue(
                    "canary-weight-total",
                    format!("{v:?} is not a whole number above 0"),
                ),
            }
        }
        if let Some(v) = self.get("canary-weight").cloned() {
            match v.trim().parse::<u32>() {
                Ok(n) => c.weight = n,
                _ => self.issue("canary-weight", format!("{v:?} is not a whole number")),
            }
        }
        if c.weight > c.total {
            // ingress-nginx: a weight above the total sends every request to the canary.
            c.weight = c.total;
        }
        c
    }
}
