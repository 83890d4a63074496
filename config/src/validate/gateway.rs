//! `GatewayClass`es and `Gateway`s: which Gateways weir serves, and their listeners as
//! model listeners. Gateway listeners on the same address and port share one model
//! listener (a Proxy listener on that address, or one named `gateway:ADDRESS:PORT`),
//! told apart by hostname; an HTTPS listener's certificates come from the Secrets it
//! names, served for its hostname. Each Gateway's and listener's status is written with
//! the Gateway API's conditions.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use std::sync::Arc;

use crate::decode::gateway::{self as raw, GATEWAY_GROUP};
use crate::defaults;
use crate::model::gateway::{condition as ty, reason};
use crate::model::{
    Condition, GatewayStatus, Listener, Proxy, SectionStatus, ServedFor, StatusKind,
};
use crate::read::Document;

use super::ctx::{Ctx, check_name};
use super::endpoints::{Cluster, TlsPem, core, namespace_of, port_field};
use super::hostnames;
use super::io::{Address, AddressUse, SecretCertificate, Slot};

/// Which namespaces' routes a listener takes.
#[derive(Clone, Debug)]
pub(super) enum From {
    /// Its Gateway's.
    Same,
    /// Every namespace's.
    All,
    /// Those whose labels match.
    Selector(Vec<Requirement>),
}

/// One label requirement of a selector.
#[derive(Clone, Debug)]
pub(super) enum Requirement {
    /// The label has one of these values.
    In(String, Vec<String>),
    /// The label is absent or has none of these values.
    NotIn(String, Vec<String>),
    /// The label is present.
    Exists(String),
    /// The label is absent.
    DoesNotExist(String),
}

impl Requirement {
    fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

/// A listener of a Gateway weir serves.
#[derive(Clone, Debug)]
pub(super) struct GatewayListener {
    /// Its name.
    pub(super) name: String,
    /// Its port.
    pub(super) port: u16,
    /// Its hostname, if it names one.
    pub(super) hostname: Option<String>,
    /// The model listener it is served on, when it is programmed: its index and name.
    pub(super) model: Option<(usize, String)>,
    /// Which namespaces' routes it takes.
    pub(super) from: From,
    /// Whether it takes HTTPRoutes (its `allowedRoutes.kinds`).
    pub(super) http_routes: bool,
    /// Where its status is: the index in the status list and of the section.
    pub(super) status: (usize, usize),
}

impl GatewayListener {
    /// Whether a route of namespace `ns` may attach (namespace labels from `cluster`).
    pub(super) fn admits(&self, gateway_ns: &str, ns: &str, cluster: &Cluster<'_>) -> bool {
        match &self.from {
            From::Same => gateway_ns == ns,
            From::All => true,
            From::Selector(reqs) => {
                let labels = cluster.labels(ns);
                reqs.iter().all(|r| r.holds(&labels))
            }
        }
    }
}

/// A Gateway: whether weir serves it, and its listeners.
#[derive(Clone, Debug)]
pub(super) struct Gateway {
    /// Served by weir (its class is weir's).
    pub(super) served: bool,
    /// Its listeners, in the order written.
    pub(super) listeners: Vec<GatewayListener>,
}

/// The Gateways by (namespace, name).
pub(super) type Gateways = BTreeMap<(String, String), Gateway>;

/// Validates the GatewayClasses and Gateways: listeners into `proxy`, certificates into
/// the I/O plan, statuses into `status`.
pub(super) fn gateways(
    ctx: &mut Ctx,
    classes: &[(Document, Arc<raw::GatewayClassDoc>)],
    docs: &[(Document, Arc<raw::GatewayDoc>)],
    cluster: &Cluster<'_>,
    proxy: &mut Proxy,
    status: &mut Vec<GatewayStatus>,
) -> Gateways {
    let mut weir_classes: Vec<String> = vec![defaults::GATEWAY_CLASS.to_owned()];
    weir_classes.extend(proxy.gateway_class_names.iter().cloned());
    for (doc, c) in classes {
        let Some(name) = check_name(ctx, doc, c.metadata.name.as_deref()) else {
            continue;
        };
        let controller = c
            .spec
            .as_ref()
            .and_then(|s| s.controller_name.clone())
            .unwrap_or_default();
        if controller == defaults::GATEWAY_CONTROLLER {
            weir_classes.push(name.clone());
        }
        if weir_classes.contains(&name) {
            status.push(GatewayStatus {
                kind: StatusKind::GatewayClass,
                namespace: String::new(),
                name,
                conditions: vec![Condition::yes(
                    ty::ACCEPTED,
                    reason::ACCEPTED,
                    "served by weir",
                )],
                sections: Vec::new(),
            });
        }
    }
    // Model listeners by address: the Proxy's own, then those Gateways add; with whether
    // they terminate TLS.
    // Keyed by address as written (`IP:port`, or `host:port` for a Hostname address,
    // resolved by the load stage).
    let mut sockets: BTreeMap<String, (usize, bool)> = BTreeMap::new();
    for (i, l) in proxy.listeners.iter().enumerate() {
        if l.address.port() != 0 {
            let tls = ctx.io.certificates.iter().any(|c| c.listener == i);
            sockets.entry(l.address.to_string()).or_insert((i, tls));
        }
    }
    let mut out = Gateways::new();
    for (doc, g) in docs {
        let Some(name) = check_name(ctx, doc, g.metadata.name.as_deref()) else {
            continue;
        };
        let ns = namespace_of(g.metadata.namespace.as_deref());
        let spec = g.spec.clone().unwrap_or_default();
        let class = match spec.gateway_class_name.as_deref() {
            Some(c) if !c.is_empty() => c.to_owned(),
            _ => {
                ctx.issue(
                    doc,
                    "spec.gatewayClassName",
                    "a Gateway needs a gatewayClassName",
                );
                continue;
            }
        };
        if out.contains_key(&(ns.clone(), name.clone())) {
            ctx.issue(
                doc,
                "metadata.name",
                format!("Gateway {ns}/{name} is defined twice"),
            );
            continue;
        }
        let served = weir_classes.contains(&class);
        let mut gw = Gateway {
            served,
            listeners: Vec::new(),
        };
        if !served {
            ctx.notice(
                doc,
                "spec.gatewayClassName",
                format!("Gateway {ns}/{name}: class {class:?} is not weir's (weir serves \"weir\", the Proxy's spec.gatewayClassNames and classes whose controllerName is {}): skipped", defaults::GATEWAY_CONTROLLER),
            );
            out.insert((ns, name), gw);
            continue;
        }
        let addr = gateway_address(ctx, doc, &spec, proxy.gateway_address);
        let at = status.len();
        status.push(GatewayStatus {
            kind: StatusKind::Gateway,
            namespace: ns.clone(),
            name: name.clone(),
            conditions: Vec::new(),
            sections: Vec::new(),
        });
        let mut hosts_on: BTreeMap<(u16, Option<String>), String> = BTreeMap::new();
        let mut listener_names = std::collections::BTreeSet::new();
        for (i, l) in spec.listeners.iter().enumerate() {
            let field = format!("spec.listeners[{i}]");
            let before = ctx.issue_count();
            let lname = match l.name.as_deref() {
                Some(n) if !n.is_empty() => n.to_owned(),
                _ => {
                    ctx.issue(doc, &field, "a listener needs a name");
                    continue;
                }
            };
            if !listener_names.insert(lname.clone()) {
                ctx.issue(
                    doc,
                    &format!("{field}.name"),
                    format!("listener name {lname:?} is used twice"),
                );
                continue;
            }
            let port = match &l.port {
                Some(p) => port_field(ctx, doc, &format!("{field}.port"), p),
                None => {
                    ctx.issue(doc, &field, "a listener needs a port");
                    None
                }
            };
            if let Some(h) = &l.hostname
                && let Err(e) = hostnames::check(h)
            {
                ctx.issue(doc, &format!("{field}.hostname"), e);
            }
            let protocol = l.protocol.clone().unwrap_or_default();
            let from = allowed_from(ctx, doc, &field, l.allowed_routes.as_ref());
            if ctx.issue_count() > before {
                continue;
            }
            let (Some(port), Some(from)) = (port, from) else {
                continue;
            };
            let mut conditions = Vec::new();
            let mut ok = true;
            let https = match protocol.as_str() {
                "HTTP" => {
                    if l.tls.is_some() {
                        ctx.issue(
                            doc,
                            &format!("{field}.tls"),
                            "an HTTP listener takes no tls",
                        );
                    }
                    false
                }
                "HTTPS" => true,
                other => {
                    ok = false;
                    conditions.push(Condition::no(
                        ty::ACCEPTED,
                        reason::UNSUPPORTED_PROTOCOL,
                        format!("weir serves HTTP and HTTPS listeners, not {other:?}"),
                    ));
                    false
                }
            };
            let http_routes = match l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref()) {
                None => true,
                Some(kinds) => {
                    let mut any = false;
                    for k in kinds {
                        let group = k.group.clone().unwrap_or_else(|| GATEWAY_GROUP.to_owned());
                        let kind = k.kind.clone().unwrap_or_default();
                        if group == GATEWAY_GROUP && kind == "HTTPRoute" {
                            any = true;
                        } else {
                            conditions.push(Condition::no(
                                ty::RESOLVED_REFS,
                                reason::INVALID_ROUTE_KINDS,
                                format!("weir serves HTTPRoutes, not {kind}"),
                            ));
                        }
                    }
                    any
                }
            };
            // Certificates.
            let mut secrets = Vec::new();
            if https {
                match &l.tls {
                    None => ctx.issue(
                        doc,
                        &format!("{field}.tls"),
                        "an HTTPS listener needs tls.certificateRefs",
                    ),
                    Some(t) if t.mode.as_deref().is_some_and(|m| m != "Terminate") => {
                        ok = false;
                        conditions.push(Condition::no(
                            ty::ACCEPTED,
                            reason::UNSUPPORTED_VALUE,
                            format!(
                                "tls.mode {:?}: weir terminates TLS on HTTPS listeners (Terminate)",
                                t.mode.as_deref().unwrap_or("")
                            ),
                        ));
                    }
                    Some(t) => {
                        if t.certificate_refs.is_empty() {
                            ctx.issue(
                                doc,
                                &format!("{field}.tls.certificateRefs"),
                                "an HTTPS listener needs at least one certificateRef",
                            );
                        }
                        for r in &t.certificate_refs {
                            match certificate(cluster, &ns, r) {
                                Ok(s) => secrets.push(s),
                                Err((rsn, m)) => {
                                    conditions.push(Condition::no(ty::RESOLVED_REFS, rsn, m))
                                }
                            }
                        }
                        if secrets.is_empty() {
                            ok = false;
                        }
                    }
                }
            }
            if ctx.issue_count() > before {
                continue;
            }
            // The model listener.
            let (socket, resolved) = match &addr {
                GatewayAddress::Ip(ip) => {
                    let s = SocketAddr::new(*ip, port);
                    (s.to_string(), Address::Ip(s))
                }
                GatewayAddress::Host(h) => {
                    let s = format!("{h}:{port}");
                    (s.clone(), Address::Host(s))
                }
            };
            let mut model = None;
            if ok {
                match sockets.get(&socket) {
                    Some((_, tls)) if *tls != https => {
                        ok = false;
                        conditions.push(Condition::yes(
                            ty::CONFLICTED,
                            reason::PROTOCOL_CONFLICT,
                            format!(
                                "{socket} already serves {}",
                                if *tls { "HTTPS" } else { "HTTP" }
                            ),
                        ));
                    }
                    _ => {}
                }
                let key = (port, l.hostname.clone());
                if let Some(other) = hosts_on.get(&key) {
                    ok = false;
                    conditions.push(Condition::yes(
                        ty::CONFLICTED,
                        reason::HOSTNAME_CONFLICT,
                        format!("listener {other:?} has the same port and hostname"),
                    ));
                }
                if ok {
                    hosts_on.insert(key, lname.clone());
                    let (index, _) = *sockets.entry(socket.clone()).or_insert_with(|| {
                        let index = proxy.listeners.len();
                        proxy.listeners.push(Listener {
                            name: format!("gateway:{socket}"),
                            address: match &resolved {
                                Address::Ip(s) => *s,
                                Address::Host(_) => super::io::UNRESOLVED,
                            },
                            tls: None,
                            role_hosts: None,
                        });
                        ctx.io.addresses.push(AddressUse {
                            slot: Slot::Listener(index),
                            address: resolved.clone(),
                            written: socket.clone(),
                            at: doc.location(&format!("{field}.port")),
                        });
                        (index, https)
                    });
                    let served_for = match &l.hostname {
                        Some(h) => ServedFor::Host(hostnames::host_match(h)),
                        None => ServedFor::AnyHost,
                    };
                    for (sns, sname, pem) in secrets {
                        ctx.io.secret_certificates.push(SecretCertificate {
                            listener: index,
                            namespace: sns,
                            name: sname,
                            cert_pem: pem.cert,
                            key_pem: pem.key,
                            served_for: served_for.clone(),
                            cert_at: pem.cert_at,
                            key_at: pem.key_at,
                        });
                    }
                    model = Some((index, proxy.listeners[index].name.clone()));
                }
            }
            finish_listener(&mut conditions, ok, https, &socket);
            if !ok {
                ctx.warn(
                    doc,
                    &field,
                    format!(
                        "Gateway {ns}/{name} listener {lname:?} is not served: {}",
                        problems(&conditions)
                    ),
                );
            }
            let section = status[at].sections.len();
            status[at].sections.push(SectionStatus {
                name: lname.clone(),
                attached_routes: Some(0),
                conditions,
            });
            gw.listeners.push(GatewayListener {
                name: lname,
                port,
                hostname: l.hostname.clone(),
                model,
                from,
                http_routes,
                status: (at, section),
            });
        }
        let serving = gw.listeners.iter().filter(|l| l.model.is_some()).count();
        let all_valid = serving == spec.listeners.len();
        status[at].conditions = vec![
            if all_valid {
                Condition::yes(ty::ACCEPTED, reason::ACCEPTED, "")
            } else {
                Condition::yes(
                    ty::ACCEPTED,
                    reason::LISTENERS_NOT_VALID,
                    "some listeners are not valid",
                )
            },
            if serving > 0 {
                Condition::yes(ty::PROGRAMMED, reason::PROGRAMMED, "")
            } else {
                Condition::no(ty::PROGRAMMED, reason::INVALID, "no listener is served")
            },
        ];
        out.insert((ns, name), gw);
    }
    out
}

/// The conditions every listener gets besides its problems.
fn finish_listener(conditions: &mut Vec<Condition>, ok: bool, https: bool, socket: &str) {
    let has = |c: &Vec<Condition>, t: &str| c.iter().any(|x| x.type_ == t);
    if !has(conditions, ty::ACCEPTED) {
        conditions.insert(0, Condition::yes(ty::ACCEPTED, reason::ACCEPTED, ""));
    }
    if !has(conditions, ty::RESOLVED_REFS) {
        conditions.push(Condition::yes(ty::RESOLVED_REFS, reason::RESOLVED_REFS, ""));
    }
    if !has(conditions, ty::CONFLICTED) {
        conditions.push(Condition::no(ty::CONFLICTED, reason::NO_CONFLICTS, ""));
    }
    conditions.push(if ok {
        let scheme = if https { "https" } else { "http" };
        Condition::yes(
            ty::PROGRAMMED,
            reason::PROGRAMMED,
            format!("{scheme} on {socket}"),
        )
    } else {
        Condition::no(ty::PROGRAMMED, reason::INVALID, "not served")
    });
}

fn problems(conditions: &[Condition]) -> String {
    conditions
        .iter()
        .filter(|c| c.type_ != ty::PROGRAMMED && c.status == (c.type_ == ty::CONFLICTED))
        .map(|c| c.message.clone())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A certificateRef resolved to a usable Secret (its namespace, name and PEM), or a
/// reason and message.
fn certificate(
    cluster: &Cluster<'_>,
    gateway_ns: &str,
    r: &raw::ObjectRef,
) -> Result<(String, String, TlsPem), (&'static str, String)> {
    let group = core(r.group.as_deref());
    let kind = r.kind.clone().unwrap_or_else(|| "Secret".to_owned());
    if !group.is_empty() || kind != "Secret" {
        return Err((
            reason::INVALID_CERTIFICATE_REF,
            format!("a certificateRef names a Secret, not {kind}"),
        ));
    }
    let Some(name) = r.name.clone() else {
        return Err((
            reason::INVALID_CERTIFICATE_REF,
            "a certificateRef needs a name".to_owned(),
        ));
    };
    let ns = namespace_of(r.namespace.as_deref().or(Some(gateway_ns)));
    if !cluster.granted("Gateway", gateway_ns, "", "Secret", &ns, &name) {
        return Err((
            reason::REF_NOT_PERMITTED,
            format!(
                "Secret {ns}/{name} is in another namespace and no ReferenceGrant there allows Gateways of {gateway_ns} to use it"
            ),
        ));
    }
    match cluster.tls_secret(&ns, &name) {
        Ok(pem) => Ok((ns, name, pem)),
        Err(m) => Err((reason::INVALID_CERTIFICATE_REF, m)),
    }
}

/// Where a Gateway's listeners bind.
enum GatewayAddress {
    Ip(IpAddr),
    /// A `Hostname` address: the listeners bind what it resolves to when the
    /// configuration loads (again at each reload).
    Host(String),
}

/// The address a Gateway's listeners bind: its first `IPAddress`, else its first
/// `Hostname`, else `default`.
fn gateway_address(
    ctx: &mut Ctx,
    doc: &Document,
    spec: &raw::GatewaySpec,
    default: IpAddr,
) -> GatewayAddress {
    let mut host = None;
    for (i, a) in spec.addresses.iter().enumerate() {
        let field = format!("spec.addresses[{i}]");
        let value = a.value.as_deref().unwrap_or("");
        match a.type_.as_deref().unwrap_or("IPAddress") {
            "IPAddress" => match value.parse::<IpAddr>() {
                Ok(ip) => return GatewayAddress::Ip(ip),
                Err(_) => ctx.issue(
                    doc,
                    &format!("{field}.value"),
                    format!("{value:?} is not an IP address"),
                ),
            },
            "Hostname" => match hostnames::check(value) {
                Ok(()) if !value.starts_with("*.") => {
                    host.get_or_insert_with(|| value.to_owned());
                }
                _ => ctx.issue(
                    doc,
                    &format!("{field}.value"),
                    format!("{value:?} is not a host name: write a DNS name such as gw.example.com (the listeners bind the address it resolves to)"),
                ),
            },
            other => ctx.notice(
                doc,
                &field,
                format!("an address of type {other:?} is not used: weir binds IPAddress and Hostname addresses"),
            ),
        }
    }
    host.map_or(GatewayAddress::Ip(default), GatewayAddress::Host)
}

/// `allowedRoutes.namespaces`, checked.
fn allowed_from(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    a: Option<&raw::AllowedRoutes>,
) -> Option<From> {
    let ns = a.and_then(|a| a.namespaces.as_ref());
    let from = ns
        .and_then(|n| n.from.clone())
        .unwrap_or_else(|| defaults::ALLOWED_ROUTES_FROM.to_owned());
    let f = format!("{field}.allowedRoutes.namespaces");
    match from.as_str() {
        "Same" => Some(From::Same),
        "All" => Some(From::All),
        "Selector" => {
            let Some(sel) = ns.and_then(|n| n.selector.as_ref()) else {
                ctx.issue(doc, &f, "from: Selector needs a selector");
                return None;
            };
            let mut reqs: Vec<Requirement> = sel
                .match_labels
                .iter()
                .map(|(k, v)| Requirement::In(k.clone(), vec![v.clone()]))
                .collect();
            for (i, e) in sel.match_expressions.iter().enumerate() {
                let ef = format!("{f}.selector.matchExpressions[{i}]");
                let Some(key) = e.key.clone() else {
                    ctx.issue(doc, &ef, "a requirement needs a key");
                    return None;
                };
                let values = e.values.clone();
                reqs.push(match (e.operator.as_deref().unwrap_or(""), values.is_empty()) {
                    ("In", false) => Requirement::In(key, values),
                    ("NotIn", false) => Requirement::NotIn(key, values),
                    ("Exists", true) => Requirement::Exists(key),
                    ("DoesNotExist", true) => Requirement::DoesNotExist(key),
                    (op, _) => {
                        ctx.issue(doc, &format!("{ef}.operator"), format!("{op:?} with these values is not a requirement: use In or NotIn with values, Exists or DoesNotExist without"));
                        return None;
                    }
                });
            }
            Some(From::Selector(reqs))
        }
        other => {
            ctx.issue(
                doc,
                &format!("{f}.from"),
                format!("{other:?} is not a choice: use Same, All or Selector"),
            );
            None
        }
    }
}
