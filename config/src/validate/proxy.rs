//! The `Proxy`: listeners, the admin listener, upstream settings, client limits, the
//! access log, notification services and (in [`super::route`]) routes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::decode::weir as raw;
use crate::defaults;
use crate::model::{
    AccessLog, ClusterSettings, Limits, Listener, Notifier, Proxy, Service, UpstreamSettings,
};
use crate::read::Document;
use crate::rollout::Argo;

use super::address;
use super::ctx::{Ctx, check_name};
use super::io::Slot;
use super::{route, tls};

/// The Proxy when no document says otherwise: every default of [`crate::defaults`].
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
        access_log: defaults::ACCESS_LOG,
        admin_hosts: Vec::new(),
        admin_token: None,
        debug_headers: false,
        notifiers: BTreeMap::new(),
        gateway_class_names: Vec::new(),
        ingress_class_names: Vec::new(),
        gateway_address: defaults::GATEWAY_ADDRESS,
        cluster: None,
    }
}

/// Validates the `Proxy` document (weir runs one) with its routes.
pub(super) fn proxy(
    ctx: &mut Ctx,
    mut docs: Vec<(Document, Arc<raw::ProxyDoc>)>,
    services: &BTreeMap<String, Arc<Service>>,
    argo: &Argo,
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
    // One document, taken apart below: a copy when a loader keeps it.
    let raw = Arc::unwrap_or_clone(raw);
    let doc = &doc;
    if let Some(n) = check_name(ctx, doc, raw.metadata.name.as_deref()) {
        proxy.name = n;
    }
    let spec = raw.spec;

    // Listeners.
    let mut names = BTreeSet::new();
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
        let address_field = format!("{field}.address");
        let Some(parsed) = address::parse(ctx, doc, &address_field, addr) else {
            continue;
        };
        if l.role_hosts == Some(true)
            && let super::io::Address::Ip(a) = &parsed
            && !a.ip().is_loopback()
        {
            ctx.notice(
                doc,
                &format!("{field}.roleHosts"),
                format!(
                    "anyone who can reach {a} can choose a Rollout's canary or stable \
                     revision with a Host header; keep this listener internal"
                ),
            );
        }
        let index = proxy.listeners.len();
        let address = address::record(
            ctx,
            doc,
            &address_field,
            addr,
            parsed,
            Slot::Listener(index),
        );
        if let Some(t) = &l.tls {
            tls::certificates(ctx, doc, &format!("{field}.tls"), index, t);
        }
        // The certificates are read by the load stage.
        proxy.listeners.push(Listener {
            name,
            address,
            tls: None,
            role_hosts: l.role_hosts,
        });
    }

    // Admin.
    if let Some(admin) = &spec.admin {
        match admin.address.as_deref() {
            Some(a) => {
                if let Some(parsed) = address::parse(ctx, doc, "spec.admin.address", a) {
                    proxy.admin =
                        address::record(ctx, doc, "spec.admin.address", a, parsed, Slot::Admin);
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
        match admin.token_file.as_deref().map(str::trim) {
            None => {}
            Some("") => ctx.issue(
                doc,
                "spec.admin.tokenFile",
                "tokenFile is empty: name the file that holds the admin token, or leave the field out",
            ),
            Some(f) => {
                // Read by the load stage; the watcher reloads when it changes.
                let path = doc.relative_path(f);
                ctx.io.files.push(path.clone());
                ctx.io.admin_token = Some(super::io::FileUse {
                    path,
                    at: doc.location("spec.admin.tokenFile"),
                });
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
        && a.enabled.unwrap_or(defaults::ACCESS_LOG_ENABLED)
    {
        proxy.access_log = match a.path.as_deref().unwrap_or(defaults::ACCESS_LOG_PATH) {
            "stdout" | "-" => AccessLog::Stdout,
            "stderr" => AccessLog::Stderr,
            p => AccessLog::File(doc.base_dir().join(p)),
        };
    }

    proxy.debug_headers = spec.debug_headers.unwrap_or(defaults::DEBUG_HEADERS);
    for (field, given, out) in [
        (
            "gatewayClassNames",
            &spec.gateway_class_names,
            &mut proxy.gateway_class_names,
        ),
        (
            "ingressClassNames",
            &spec.ingress_class_names,
            &mut proxy.ingress_class_names,
        ),
    ] {
        for (i, c) in given.iter().flatten().enumerate() {
            if c.trim().is_empty() {
                ctx.issue(doc, &format!("spec.{field}[{i}]"), "a class name is empty");
            } else {
                out.push(c.trim().to_owned());
            }
        }
    }
    if let Some(a) = &spec.gateway_address {
        match a.trim().parse() {
            Ok(ip) => proxy.gateway_address = ip,
            Err(_) => ctx.issue(
                doc,
                "spec.gatewayAddress",
                format!("{a:?} is not an IP address: write one without a port, e.g. 0.0.0.0 or 127.0.0.1"),
            ),
        }
    }
    if let Some(n) = &spec.notifications {
        proxy.notifiers = notifiers(ctx, doc, n);
    }
    if let Some(c) = &spec.cluster {
        proxy.cluster = cluster(ctx, doc, c);
    }

    // Routes.
    let mut route_names = BTreeSet::new();
    for (i, r) in spec.routes.iter().enumerate() {
        if let Some(route) = route::route(ctx, doc, i, r, services, argo, &names) {
            if !route_names.insert(route.name.clone()) {
                ctx.issue(
                    doc,
                    &format!("spec.routes[{i}].name"),
                    format!("route name {:?} is used twice", route.name),
                );
                continue;
            }
            proxy.routes.push(Arc::new(route));
        }
    }
    proxy
}

/// `spec.notifications`: the services Rollout annotations subscribe to, by name.
fn notifiers(ctx: &mut Ctx, doc: &Document, n: &raw::Notifications) -> BTreeMap<String, Notifier> {
    let mut notifiers = BTreeMap::new();
    for (i, svc) in n.services.iter().enumerate() {
        let f = format!("spec.notifications.services[{i}]");
        let Some(name) = svc.name.clone().filter(|n| !n.is_empty()) else {
            ctx.issue(doc, &f, "a notification service needs a name");
            continue;
        };
        let url_ok = |ctx: &mut Ctx, field: &str, u: &Option<String>| -> Option<String> {
            match u {
                Some(u) if u.starts_with("http://") || u.starts_with("https://") => Some(u.clone()),
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
                    .unwrap_or_else(|| defaults::WEBHOOK_METHOD.into())
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
                    .filter_map(|h| Some((h.name.clone()?, h.value.clone().unwrap_or_default())))
                    .collect();
                url_ok(ctx, &format!("{f}.webhook.url"), &w.url).map(|url| Notifier::Webhook {
                    url,
                    method,
                    headers,
                })
            }
            (None, Some(s)) => {
                url_ok(ctx, &format!("{f}.slack.webhookUrl"), &s.webhook_url).map(|webhook_url| {
                    Notifier::Slack {
                        webhook_url,
                        username: s.username.clone(),
                        icon_emoji: s.icon_emoji.clone(),
                    }
                })
            }
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
            && notifiers.insert(name.clone(), n).is_some()
        {
            ctx.issue(
                doc,
                &format!("{f}.name"),
                format!("notification service {name:?} is defined twice"),
            );
        }
    }
    notifiers
}

/// `spec.cluster`: etcd endpoints as `host:port` (plain `http://` only: weir does not
/// speak TLS to etcd yet, and says so rather than sending in the clear to an `https` URL)
/// and a key prefix.
fn cluster(ctx: &mut Ctx, doc: &Document, c: &raw::Cluster) -> Option<ClusterSettings> {
    let Some(etcd) = &c.etcd else {
        ctx.issue(
            doc,
            "spec.cluster.etcd",
            "is required: replicas meet through etcd (endpoints: [http://HOST:PORT, ...])",
        );
        return None;
    };
    let mut ok = true;
    if etcd.endpoints.is_empty() {
        ctx.issue(
            doc,
            "spec.cluster.etcd.endpoints",
            "names no etcd member: give the client URL of each (http://HOST:PORT)",
        );
        ok = false;
    }
    let mut endpoints = Vec::new();
    for (i, e) in etcd.endpoints.iter().enumerate() {
        let field = format!("spec.cluster.etcd.endpoints[{i}]");
        let e = e.trim();
        let rest = match e.split_once("://") {
            Some(("http", rest)) => rest,
            Some(("https", _)) => {
                ctx.issue(doc, &field, format!("{e:?}: weir speaks plain HTTP to etcd; TLS to etcd is not supported yet (use http:// on a trusted network)"));
                ok = false;
                continue;
            }
            Some((scheme, _)) => {
                ctx.issue(
                    doc,
                    &field,
                    format!("{e:?}: the scheme must be http, not {scheme}"),
                );
                ok = false;
                continue;
            }
            None => e,
        };
        let hostport = rest.trim_end_matches('/');
        let valid = hostport.rsplit_once(':').is_some_and(|(h, p)| {
            !h.is_empty() && !h.contains('/') && p.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if valid {
            endpoints.push(hostport.to_owned());
        } else {
            ctx.issue(
                doc,
                &field,
                format!("{e:?} is not an etcd client URL: write http://HOST:PORT, e.g. http://127.0.0.1:2379"),
            );
            ok = false;
        }
    }
    let prefix = etcd
        .prefix
        .as_deref()
        .map(str::trim)
        .unwrap_or(defaults::CLUSTER_PREFIX)
        .trim_end_matches('/')
        .to_owned();
    if !prefix.starts_with('/') || prefix.contains(char::is_whitespace) {
        ctx.issue(
            doc,
            "spec.cluster.etcd.prefix",
            format!("{prefix:?}: a key prefix starts with / and has no spaces, e.g. /weir"),
        );
        ok = false;
    }
    ok.then_some(ClusterSettings { endpoints, prefix })
}
