//! Raw documents -> [`Model`]. The only place that applies defaults and checks how
//! documents refer to each other. Every issue is collected; nothing stops at the first.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::defaults;
use crate::duration;
use crate::error::{ConfigError, Issue, Notice};
use crate::load::Document;
use crate::model::*;
use crate::raw::weir as raw;

/// The `apiVersion` of weir's own kinds.
pub const WEIR_API: &str = "weir.dev/v1alpha1";
/// The `apiVersion` of Argo Rollouts' kinds.
pub const ARGO_API: &str = "argoproj.io/v1alpha1";

/// Collects issues and notices while validating.
#[derive(Default)]
pub(crate) struct Ctx {
    pub(crate) issues: Vec<Issue>,
    pub(crate) notices: Vec<Notice>,
    /// Files the model depends on beyond the YAML (certificates).
    pub(crate) extra_files: Vec<PathBuf>,
}

impl Ctx {
    pub(crate) fn issue(&mut self, doc: &Document, field: &str, message: impl Into<String>) {
        self.issues.push(Issue {
            file: doc.file.clone(),
            pos: doc.locate(field),
            field: field.to_owned(),
            message: message.into(),
        });
    }

    pub(crate) fn notice(&mut self, doc: &Document, field: &str, message: impl Into<String>) {
        self.notices.push(Notice {
            file: doc.file.clone(),
            pos: doc.locate(field),
            message: message.into(),
            warning: false,
        });
    }

    /// A notice about something that will go wrong at run time unless fixed.
    pub(crate) fn warn(&mut self, doc: &Document, field: &str, message: impl Into<String>) {
        self.notices.push(Notice {
            file: doc.file.clone(),
            pos: doc.locate(field),
            message: message.into(),
            warning: true,
        });
    }

    /// Decodes a document into its serde mirror, reporting a type error with its field.
    ///
    /// An unknown field is reported and left out, and decoding goes on, so that one
    /// misspelt key does not hide the document's other errors: every error at once.
    pub(crate) fn decode<T: DeserializeOwned>(&mut self, doc: &Document) -> Option<T> {
        let mut json = doc.node.to_json();
        // Each round reports one unknown field; a document has few keys, this bounds it.
        for _ in 0..256 {
            let e = match serde_path_to_error::deserialize::<_, T>(&json) {
                Ok(v) => return Some(v),
                Err(e) => e,
            };
            let mut field = e.path().to_string();
            if field == "." {
                field.clear();
            }
            let message = e.inner().to_string();
            let unknown = message
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split_once('`'))
                .map(|(name, _)| name.to_owned());
            let Some(name) = unknown else {
                self.issue(doc, &field, message);
                return None;
            };
            // Point the error at the field itself, then leave the field out and go on.
            let parent = e.path().clone();
            let at_field = field.ends_with(name.as_str());
            if !at_field {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(&name);
            }
            self.issue(doc, &field, message);
            if !remove_field(&mut json, &parent, &name) {
                return None;
            }
        }
        None
    }

    /// A Go duration field, or its default.
    pub(crate) fn duration(
        &mut self,
        doc: &Document,
        field: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Duration {
        match value {
            None => default,
            Some(s) => match duration::parse_go(s) {
                Ok(d) => d,
                Err(e) => {
                    self.issue(doc, field, e.to_string());
                    default
                }
            },
        }
    }
}

/// Removes key `name` from the object at `path` in `json`; false if there is none.
fn remove_field(
    json: &mut serde_json::Value,
    path: &serde_path_to_error::Path,
    name: &str,
) -> bool {
    use serde_path_to_error::Segment;
    let mut segments: Vec<&Segment> = path.iter().collect();
    // The path may end with the unknown field itself.
    if matches!(segments.last(), Some(Segment::Map { key }) if key == name) {
        segments.pop();
    }
    let mut at = json;
    for seg in segments {
        at = match (seg, at) {
            (Segment::Map { key }, serde_json::Value::Object(m)) => match m.get_mut(key) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Seq { index }, serde_json::Value::Array(a)) => match a.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match at {
        serde_json::Value::Object(m) => m.remove(name).is_some(),
        _ => false,
    }
}

/// Validates every document into one model.
pub(crate) fn validate(
    docs: Vec<Document>,
    mut issues: Vec<Issue>,
    files: Vec<PathBuf>,
) -> Result<Model, ConfigError> {
    let mut ctx = Ctx::default();
    let mut proxies: Vec<(Document, raw::ProxyDoc)> = Vec::new();
    let mut services: Vec<(Document, raw::ServiceDoc)> = Vec::new();
    let mut argo_docs = crate::validate_argo::ArgoDocs::default();

    for doc in docs {
        let api = doc.api_version().map(str::to_owned);
        let kind = doc.kind().map(str::to_owned);
        let (Some(api), Some(kind)) = (api, kind) else {
            let missing = if doc.api_version().is_none() {
                "apiVersion"
            } else {
                "kind"
            };
            ctx.issue(
                &doc,
                missing,
                format!("every document needs apiVersion and kind; this one has no {missing}"),
            );
            continue;
        };
        match (api.as_str(), kind.as_str()) {
            (WEIR_API, "Proxy") => {
                if let Some(raw) = ctx.decode::<raw::ProxyDoc>(&doc) {
                    proxies.push((doc, raw));
                }
            }
            (WEIR_API, "Service") => {
                if let Some(raw) = ctx.decode::<raw::ServiceDoc>(&doc) {
                    services.push((doc, raw));
                }
            }
            (WEIR_API, other) => ctx.issue(
                &doc,
                "kind",
                format!("{WEIR_API} has no kind {other:?}: the kinds are Proxy and Service"),
            ),
            (ARGO_API, "Rollout") => {
                if let Some(raw) = ctx.decode::<crate::raw::argo::RolloutDoc>(&doc) {
                    argo_docs.rollouts.push((doc, raw));
                }
            }
            (ARGO_API, k @ ("AnalysisTemplate" | "ClusterAnalysisTemplate")) => {
                let cluster = k == "ClusterAnalysisTemplate";
                if let Some(raw) = ctx.decode::<crate::raw::argo::AnalysisTemplateDoc>(&doc) {
                    argo_docs.templates.push((doc, raw, cluster));
                }
            }
            ("v1", "Secret") => {
                if let Some(raw) = ctx.decode::<crate::raw::argo::SecretDoc>(&doc) {
                    ctx.notice(
                        &doc,
                        "kind",
                        "Secret: read for secretKeyRef args, not acted on otherwise",
                    );
                    argo_docs.secrets.push((doc, raw));
                }
            }
            ("apps/v1", "Deployment") => {
                if let Some(raw) = ctx.decode::<crate::raw::argo::DeploymentDoc>(&doc) {
                    ctx.notice(
                        &doc,
                        "kind",
                        "Deployment: read for a Rollout's workloadRef, not acted on otherwise",
                    );
                    argo_docs.deployments.push((doc, raw));
                }
            }
            (api, kind) => ctx.notice(
                &doc,
                "kind",
                format!("skipped {kind} ({api}): weir does not act on this kind"),
            ),
        }
    }

    let services = validate_services(&mut ctx, services);
    let argo = crate::validate_argo::validate(&mut ctx, argo_docs, &services);
    let proxy = validate_proxy(&mut ctx, proxies, &services, &argo);

    issues.append(&mut ctx.issues);
    if !issues.is_empty() {
        issues.sort_by(|a, b| (&a.file, a.pos).cmp(&(&b.file, b.pos)));
        return Err(ConfigError::Invalid(issues));
    }
    let mut all_files = files;
    all_files.extend(ctx.extra_files);
    all_files.sort();
    all_files.dedup();
    let fingerprint = crate::load::fingerprint(&all_files);
    Ok(Model {
        fingerprint,
        proxy,
        services,
        argo,
        files: all_files,
        notices: ctx.notices,
    })
}

/// `metadata.name`: present, and a DNS-1123 subdomain as Kubernetes requires.
pub(crate) fn check_name(ctx: &mut Ctx, doc: &Document, name: Option<&str>) -> Option<String> {
    match name {
        None | Some("") => {
            ctx.issue(
                doc,
                "metadata.name",
                format!(
                    "{} has no metadata.name: every {} needs a name",
                    doc.kind().unwrap_or("document"),
                    doc.kind().unwrap_or("document")
                ),
            );
            None
        }
        Some(n) if !is_dns_subdomain(n) => {
            ctx.issue(
                doc,
                "metadata.name",
                format!(
                    "{n:?} is not a valid name: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
                ),
            );
            None
        }
        Some(n) => Some(n.to_owned()),
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

fn validate_services(
    ctx: &mut Ctx,
    docs: Vec<(Document, raw::ServiceDoc)>,
) -> BTreeMap<String, Arc<Service>> {
    let mut out = BTreeMap::new();
    for (doc, raw) in docs {
        let Some(name) = check_name(ctx, &doc, raw.metadata.name.as_deref()) else {
            continue;
        };
        if out.contains_key(&name) {
            ctx.issue(
                &doc,
                "metadata.name",
                format!("a Service named {name:?} is already defined; names must be unique"),
            );
            continue;
        }
        let load_balancer = match raw.spec.load_balancer.as_deref() {
            None | Some("roundRobin") => LoadBalancer::RoundRobin,
            Some("leastRequest") => LoadBalancer::LeastRequest,
            Some(other) => {
                ctx.issue(
                    &doc,
                    "spec.loadBalancer",
                    format!("{other:?} is not a load balancer: use roundRobin or leastRequest"),
                );
                LoadBalancer::RoundRobin
            }
        };
        let mut endpoints = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, ep) in raw.spec.endpoints.iter().enumerate() {
            let field = format!("spec.endpoints[{i}]");
            let Some(addr) = ep.address.as_deref() else {
                ctx.issue(&doc, &field, "an endpoint needs an address (host:port)");
                continue;
            };
            let Some(address) = resolve(ctx, &doc, &format!("{field}.address"), addr) else {
                continue;
            };
            if !seen.insert((address, ep.image.clone())) {
                ctx.issue(&doc, &field, format!("endpoint {addr} is listed twice"));
                continue;
            }
            if let Some(img) = &ep.image
                && img.trim().is_empty()
            {
                ctx.issue(&doc, &format!("{field}.image"), "image is empty");
                continue;
            }
            endpoints.push(Endpoint {
                address,
                authority: addr.to_owned(),
                image: ep.image.clone(),
            });
        }
        out.insert(
            name.clone(),
            Arc::new(Service {
                name,
                endpoints,
                load_balancer,
            }),
        );
    }
    out
}

/// `host:port` to a socket address; a host name is resolved now.
pub(crate) fn resolve(ctx: &mut Ctx, doc: &Document, field: &str, s: &str) -> Option<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    if !s.contains(':') {
        ctx.issue(
            doc,
            field,
            format!("{s:?} has no port: write host:port, e.g. 127.0.0.1:8080"),
        );
        return None;
    }
    match s.to_socket_addrs() {
        Ok(mut addrs) => match addrs.next() {
            Some(a) => Some(a),
            None => {
                ctx.issue(doc, field, format!("{s:?} resolves to no address"));
                None
            }
        },
        Err(e) => {
            ctx.issue(doc, field, format!("{s:?} is not an address: {e}"));
            None
        }
    }
}

fn default_proxy() -> Proxy {
    Proxy {
        name: String::new(),
        listeners: Vec::new(),
        admin: defaults::ADMIN_ADDRESS.parse().expect("valid default"),
        routes: Vec::new(),
        upstream: UpstreamSettings {
            connect_timeout: defaults::CONNECT_TIMEOUT,
            request_timeout: defaults::REQUEST_TIMEOUT,
            idle_timeout: defaults::UPSTREAM_IDLE_TIMEOUT,
            max_idle_per_endpoint: defaults::MAX_IDLE_PER_ENDPOINT,
        },
        limits: Limits {
            max_connections: defaults::MAX_CONNECTIONS,
            max_header_bytes: defaults::MAX_HEADER_BYTES,
            header_timeout: defaults::HEADER_TIMEOUT,
            idle_timeout: defaults::CLIENT_IDLE_TIMEOUT,
            body_timeout: defaults::BODY_TIMEOUT,
            min_body_rate: defaults::MIN_BODY_RATE,
            send_timeout: defaults::SEND_TIMEOUT,
        },
        access_log: AccessLog::Off,
        admin_hosts: Vec::new(),
        debug_headers: false,
        notifiers: BTreeMap::new(),
    }
}

fn validate_proxy(
    ctx: &mut Ctx,
    mut docs: Vec<(Document, raw::ProxyDoc)>,
    services: &BTreeMap<String, Arc<Service>>,
    argo: &crate::rollout::Argo,
) -> Proxy {
    let mut proxy = default_proxy();
    if docs.len() > 1 {
        for (doc, _) in &docs[1..] {
            ctx.issue(
                doc,
                "kind",
                format!(
                    "a second Proxy document: the first is in {}; weir runs one Proxy",
                    docs[0].0.file.display()
                ),
            );
        }
    }
    let Some((doc, raw)) = docs.drain(..).next() else {
        return proxy;
    };
    let doc = &doc;
    if let Some(n) = check_name(ctx, doc, raw.metadata.name.as_deref()) {
        proxy.name = n;
    }
    let spec = raw.spec;

    // Listeners.
    let mut names = BTreeSet::new();
    let mut addrs = BTreeMap::new();
    for (i, l) in spec.listeners.iter().enumerate() {
        let field = format!("spec.listeners[{i}]");
        let name = match l.name.as_deref() {
            Some(n) if !n.is_empty() => n.to_owned(),
            _ => {
                ctx.issue(doc, &field, "a listener needs a name");
                continue;
            }
        };
        if !names.insert(name.clone()) {
            ctx.issue(
                doc,
                &format!("{field}.name"),
                format!("listener name {name:?} is used twice"),
            );
        }
        let Some(addr) = l.address.as_deref() else {
            ctx.issue(doc, &field, "a listener needs an address (host:port)");
            continue;
        };
        let Some(address) = resolve(ctx, doc, &format!("{field}.address"), addr) else {
            continue;
        };
        if address.port() != 0
            && let Some(other) = addrs.insert(address, name.clone())
        {
            ctx.issue(
                doc,
                &format!("{field}.address"),
                format!("{address} is already the address of listener {other:?}"),
            );
        }
        let tls = l
            .tls
            .as_ref()
            .map(|t| crate::tls::load_tls(ctx, doc, &format!("{field}.tls"), t));
        proxy.listeners.push(Listener {
            name,
            address,
            tls: tls.flatten(),
        });
    }

    // Admin.
    if let Some(admin) = &spec.admin {
        match admin.address.as_deref() {
            Some(a) => {
                if let Some(addr) = resolve(ctx, doc, "spec.admin.address", a) {
                    if addr.port() != 0
                        && let Some(l) = addrs.get(&addr)
                    {
                        ctx.issue(
                            doc,
                            "spec.admin.address",
                            format!("{addr} is already the address of listener {l:?}"),
                        );
                    }
                    proxy.admin = addr;
                }
                if let Some((host, _)) = a.rsplit_once(':')
                    && host.parse::<std::net::IpAddr>().is_err()
                    && !host.starts_with('[')
                    && !host.is_empty()
                {
                    proxy.admin_hosts.push(host.to_ascii_lowercase());
                }
            }
            None => ctx.issue(doc, "spec.admin", "admin needs an address (host:port)"),
        }
        for (i, h) in admin.hosts.iter().flatten().enumerate() {
            let h = h.trim().to_ascii_lowercase();
            if h.is_empty() || h.contains(['/', '@', ' ', ':']) {
                ctx.issue(
                    doc,
                    &format!("spec.admin.hosts[{i}]"),
                    format!("{h:?} is not a host name (no port, no scheme)"),
                );
            } else {
                proxy.admin_hosts.push(h);
            }
        }
    }

    // Upstream settings.
    if let Some(u) = &spec.upstream {
        let s = &mut proxy.upstream;
        s.connect_timeout = ctx.duration(
            doc,
            "spec.upstream.connectTimeout",
            u.connect_timeout.as_deref(),
            s.connect_timeout,
        );
        s.request_timeout = ctx.duration(
            doc,
            "spec.upstream.requestTimeout",
            u.request_timeout.as_deref(),
            s.request_timeout,
        );
        s.idle_timeout = ctx.duration(
            doc,
            "spec.upstream.idleTimeout",
            u.idle_timeout.as_deref(),
            s.idle_timeout,
        );
        if let Some(m) = u.max_idle_per_endpoint {
            s.max_idle_per_endpoint = m;
        }
        for (field, d) in [
            ("spec.upstream.connectTimeout", s.connect_timeout),
            ("spec.upstream.requestTimeout", s.request_timeout),
        ] {
            if d.is_zero() {
                ctx.issue(doc, field, "must be more than 0");
            }
        }
    }

    // Limits.
    if let Some(l) = &spec.limits {
        let s = &mut proxy.limits;
        if let Some(m) = l.max_connections {
            if m == 0 {
                ctx.issue(doc, "spec.limits.maxConnections", "must be at least 1");
            }
            s.max_connections = m;
        }
        if let Some(m) = l.max_header_bytes {
            if m < defaults::MIN_HEADER_BYTES {
                ctx.issue(
                    doc,
                    "spec.limits.maxHeaderBytes",
                    format!(
                        "{m} is too small: the least is {}",
                        defaults::MIN_HEADER_BYTES
                    ),
                );
            }
            s.max_header_bytes = m.max(defaults::MIN_HEADER_BYTES);
        }
        s.header_timeout = ctx.duration(
            doc,
            "spec.limits.headerTimeout",
            l.header_timeout.as_deref(),
            s.header_timeout,
        );
        s.idle_timeout = ctx.duration(
            doc,
            "spec.limits.idleTimeout",
            l.idle_timeout.as_deref(),
            s.idle_timeout,
        );
        s.body_timeout = ctx.duration(
            doc,
            "spec.limits.bodyTimeout",
            l.body_timeout.as_deref(),
            s.body_timeout,
        );
        s.send_timeout = ctx.duration(
            doc,
            "spec.limits.sendTimeout",
            l.send_timeout.as_deref(),
            s.send_timeout,
        );
        if let Some(r) = l.min_body_rate {
            s.min_body_rate = r;
        }
        for (field, d) in [
            ("spec.limits.headerTimeout", s.header_timeout),
            ("spec.limits.idleTimeout", s.idle_timeout),
            ("spec.limits.bodyTimeout", s.body_timeout),
            ("spec.limits.sendTimeout", s.send_timeout),
        ] {
            if d.is_zero() {
                ctx.issue(doc, field, "must be more than 0");
            }
        }
    }

    // Access log.
    if let Some(a) = &spec.access_log
        && a.enabled.unwrap_or(true)
    {
        proxy.access_log = match a.path.as_deref() {
            None | Some("stdout") | Some("-") => AccessLog::Stdout,
            Some("stderr") => AccessLog::Stderr,
            Some(p) => AccessLog::File(doc.base_dir().join(p)),
        };
    }

    proxy.debug_headers = spec.debug_headers.unwrap_or(false);
    if let Some(n) = &spec.notifications {
        for (i, svc) in n.services.iter().enumerate() {
            let f = format!("spec.notifications.services[{i}]");
            let Some(name) = svc.name.clone().filter(|n| !n.is_empty()) else {
                ctx.issue(doc, &f, "a notification service needs a name");
                continue;
            };
            let url_ok = |ctx: &mut Ctx, field: &str, u: &Option<String>| -> Option<String> {
                match u {
                    Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                        Some(u.clone())
                    }
                    Some(u) => {
                        ctx.issue(doc, field, format!("{u:?} is not an http(s) URL"));
                        None
                    }
                    None => {
                        ctx.issue(doc, field, "a URL is required");
                        None
                    }
                }
            };
            let notifier = match (&svc.webhook, &svc.slack) {
                (Some(w), None) => {
                    let method = w
                        .method
                        .clone()
                        .unwrap_or_else(|| "POST".into())
                        .to_ascii_uppercase();
                    if method != "POST" && method != "PUT" {
                        ctx.issue(
                            doc,
                            &format!("{f}.webhook.method"),
                            format!("{method} is not allowed: use POST or PUT"),
                        );
                    }
                    let headers = w
                        .headers
                        .iter()
                        .filter_map(|h| {
                            Some((h.name.clone()?, h.value.clone().unwrap_or_default()))
                        })
                        .collect();
                    url_ok(ctx, &format!("{f}.webhook.url"), &w.url).map(|url| Notifier::Webhook {
                        url,
                        method,
                        headers,
                    })
                }
                (None, Some(s)) => url_ok(ctx, &format!("{f}.slack.webhookUrl"), &s.webhook_url)
                    .map(|webhook_url| Notifier::Slack {
                        webhook_url,
                        username: s.username.clone(),
                        icon_emoji: s.icon_emoji.clone(),
                    }),
                _ => {
                    ctx.issue(
                        doc,
                        &f,
                        "a notification service has exactly one of webhook, slack",
                    );
                    None
                }
            };
            if let Some(n) = notifier
                && proxy.notifiers.insert(name.clone(), n).is_some()
            {
                ctx.issue(
                    doc,
                    &format!("{f}.name"),
                    format!("notification service {name:?} is defined twice"),
                );
            }
        }
    }

    // Routes.
    let mut route_names = BTreeSet::new();
    for (i, r) in spec.routes.iter().enumerate() {
        if let Some(route) = validate_route(ctx, doc, i, r, services, argo, &names) {
            if !route_names.insert(route.name.clone()) {
                ctx.issue(
                    doc,
                    &format!("spec.routes[{i}].name"),
                    format!("route name {:?} is used twice", route.name),
                );
                continue;
            }
            proxy.routes.push(route);
        }
    }
    proxy
}

fn validate_route(
    ctx: &mut Ctx,
    doc: &Document,
    i: usize,
    r: &raw::Route,
    services: &BTreeMap<String, Arc<Service>>,
    argo: &crate::rollout::Argo,
    listeners: &BTreeSet<String>,
) -> Option<Route> {
    let field = format!("spec.routes[{i}]");
    let before = ctx.issues.len();
    let name = match r.name.as_deref() {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => {
            ctx.issue(doc, &field, "a route needs a name");
            String::new()
        }
    };
    let m = r.matches.clone().unwrap_or_default();
    let mut hosts = Vec::new();
    let host_list: Vec<(String, &String)> = m
        .host
        .iter()
        .map(|h| (format!("{field}.match.host"), h))
        .chain(
            m.hosts
                .iter()
                .flatten()
                .enumerate()
                .map(|(j, h)| (format!("{field}.match.hosts[{j}]"), h)),
        )
        .collect();
    for (hf, h) in host_list {
        match parse_host(h) {
            Ok(hm) => hosts.push(hm),
            Err(e) => ctx.issue(doc, &hf, e),
        }
    }
    let path_prefix = m
        .path_prefix
        .clone()
        .unwrap_or_else(|| defaults::PATH_PREFIX.to_owned());
    if !path_prefix.starts_with('/') {
        ctx.issue(
            doc,
            &format!("{field}.match.pathPrefix"),
            format!("{path_prefix:?} must start with '/'"),
        );
    }
    let mut headers = Vec::new();
    for (j, h) in m.headers.iter().enumerate() {
        let hf = format!("{field}.match.headers[{j}]");
        if let Some(hm) = header_match(ctx, doc, &hf, h) {
            headers.push(hm);
        }
    }
    let route_listeners = r.listeners.clone().unwrap_or_default();
    for (j, l) in route_listeners.iter().enumerate() {
        if !listeners.contains(l) {
            ctx.issue(
                doc,
                &format!("{field}.listeners[{j}]"),
                format!("no listener is named {l:?}"),
            );
        }
    }
    let target = match (&r.rollout, &r.backends) {
        (Some(_), Some(_)) => {
            ctx.issue(
                doc,
                &field,
                "a route has either rollout or backends, not both",
            );
            None
        }
        (None, None) => {
            ctx.issue(
                doc,
                &field,
                "a route needs a target: rollout: NAME, or backends: [{service, weight}]",
            );
            None
        }
        (Some(ro), None) => {
            if !argo.rollouts.contains_key(ro) {
                ctx.issue(
                    doc,
                    &format!("{field}.rollout"),
                    format!("no Rollout is named {ro:?}: define one (argoproj.io/v1alpha1, kind Rollout)"),
                );
            }
            Some(RouteTarget::Rollout(ro.clone()))
        }
        (None, Some(backends)) => split_target(ctx, doc, &field, backends, services),
    };
    if ctx.issues.len() > before {
        return None;
    }
    Some(Route {
        name,
        hosts,
        path_prefix,
        headers,
        listeners: route_listeners,
        target: target?,
    })
}

fn split_target(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    backends: &[raw::Backend],
    services: &BTreeMap<String, Arc<Service>>,
) -> Option<RouteTarget> {
    if backends.is_empty() {
        ctx.issue(
            doc,
            &format!("{field}.backends"),
            "backends is empty: name at least one service",
        );
        return None;
    }
    let mut legs = Vec::new();
    let mut seen = BTreeSet::new();
    for (j, b) in backends.iter().enumerate() {
        let bf = format!("{field}.backends[{j}]");
        let Some(service) = b.service.clone() else {
            ctx.issue(doc, &bf, "a backend needs a service");
            continue;
        };
        if !services.contains_key(&service) {
            ctx.issue(
                doc,
                &format!("{bf}.service"),
                format!(
                    "no Service is named {service:?}: define a Service with that metadata.name"
                ),
            );
        }
        if !seen.insert(service.clone()) {
            ctx.issue(
                doc,
                &format!("{bf}.service"),
                format!("service {service:?} is listed twice"),
            );
        }
        let weight = match b.weight {
            None if backends.len() == 1 => Weight::FULL,
            None => {
                ctx.issue(
                    doc,
                    &bf,
                    "with several backends each needs a weight (percent)",
                );
                continue;
            }
            Some(w) => {
                match Weight::from_percent(w) {
                    Some(w) => w,
                    None => {
                        ctx.issue(
                        doc,
                        &format!("{bf}.weight"),
                        format!("{w} is not a weight: use a percentage from 0 to 100 in steps of 0.01"),
                    );
                        continue;
                    }
                }
            }
        };
        legs.push(WeightedService { service, weight });
    }
    let total: u32 = legs.iter().map(|l| l.weight.basis_points()).sum();
    if legs.len() == backends.len() && total != Weight::SCALE {
        ctx.issue(
            doc,
            &format!("{field}.backends"),
            format!(
                "weights sum to {}%: they must sum to 100",
                f64::from(total) / 100.0
            ),
        );
        return None;
    }
    Some(RouteTarget::Split(legs))
}

fn parse_host(h: &str) -> Result<HostMatch, String> {
    let h = h.trim().to_ascii_lowercase();
    let valid = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    if let Some(suffix) = h.strip_prefix("*.") {
        if valid(suffix) {
            return Ok(HostMatch::Suffix(format!(".{suffix}")));
        }
    } else if valid(&h) {
        return Ok(HostMatch::Exact(h));
    }
    Err(format!(
        "{h:?} is not a host: write a name such as api.example.com or a wildcard such as *.example.com, without a port"
    ))
}

fn header_match(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    h: &raw::HeaderMatch,
) -> Option<HeaderMatch> {
    let name = match h.name.as_deref() {
        Some(n) if http_token(n) => n.to_ascii_lowercase(),
        Some(n) => {
            ctx.issue(
                doc,
                &format!("{field}.name"),
                format!("{n:?} is not a header name"),
            );
            return None;
        }
        None => {
            ctx.issue(doc, field, "a header match needs a name");
            return None;
        }
    };
    let given = [
        h.exact.is_some(),
        h.prefix.is_some(),
        h.regex.is_some(),
        h.present.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        ctx.issue(
            doc,
            field,
            "a header match needs exactly one of exact, prefix, regex, present",
        );
        return None;
    }
    let kind = if let Some(v) = &h.exact {
        HeaderMatchKind::Exact(v.clone())
    } else if let Some(v) = &h.prefix {
        HeaderMatchKind::Prefix(v.clone())
    } else if let Some(v) = &h.regex {
        match regex::Regex::new(&format!("^(?:{v})$")) {
            Ok(r) => HeaderMatchKind::Regex(r),
            Err(e) => {
                ctx.issue(
                    doc,
                    &format!("{field}.regex"),
                    format!("not a regular expression: {e}"),
                );
                return None;
            }
        }
    } else {
        HeaderMatchKind::Present(h.present.unwrap_or(true))
    };
    Some(HeaderMatch { name, kind })
}

fn http_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Makes `p` relative to the document's folder when it is not absolute.
pub(crate) fn relative_to(doc: &Document, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        doc.base_dir().join(path)
    }
}
