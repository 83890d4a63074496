//! Kubernetes `Ingress`es served as ingress-nginx serves them: the classes weir takes, each
//! Ingress's rules grouped into one "server" per host, paths ordered and matched as nginx
//! matches the locations ingress-nginx writes, conflicts resolved in favour of the
//! Ingress written first (ingress-nginx keeps the oldest), canary Ingresses merged into
//! the main Ingress's path of the same host, path and type, TLS Secrets served by SNI,
//! and the annotations of [`super::annotations`]. Each path becomes a model route.
//!
//! How nginx picks a location, which the routes reproduce: for a host, an `Exact` path
//! first, then the longest prefix (`Prefix` by whole segments, `ImplementationSpecific`
//! as a plain string prefix). When any Ingress of the host asks for regular expressions
//! (`use-regex`, or `rewrite-target`), every path of the host becomes a case-insensitive
//! regular expression anchored at its start, tried longest first. A request for a host
//! that has rules but no matching path gets the host's default (the Ingress's
//! `defaultBackend`, else 404); it never falls through to another host's rules.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::decode::ingress::{
    CLASS_ANNOTATION, DEFAULT_CLASS_ANNOTATION, IngressBackend, IngressClassDoc, IngressDoc,
};
use crate::model::{
    Filter, HeaderModifier, HostMatch, Listener, PathMatch, PathRewrite, Proxy, Redirect, Rewrite,
    Route, RouteMatch, RouteTarget, RouteTimeouts, ServedFor, Service, SourceRanges, Steer,
    UpstreamProtocol, WeightedService,
};
use crate::read::Document;

use super::annotations::{self, Annotations, PREFIX};
use super::canary::IngressBindings;
use super::ctx::{Ctx, check_name};
use super::endpoints::{BackendRef, Cluster, namespace_of};
use super::io::{Address, AddressUse, SecretCertificate, Slot};

/// The class weir always serves.
pub(super) const WEIR_CLASS: &str = "weir";

/// The controller name that marks an IngressClass as weir's.
pub(super) const WEIR_CONTROLLER: &str = "weir.dev/ingress-controller";

/// Where the Ingress routes go and what they draw on.
pub(super) struct Placement<'p, 'c, 'a> {
    /// Kubernetes Services, EndpointSlices and Secrets.
    pub(super) cluster: &'p mut Cluster<'c>,
    /// Model Services (backends are added here).
    pub(super) services: &'p mut BTreeMap<String, Arc<Service>>,
    /// Rollouts that split Ingresses (`trafficRouting.nginx`).
    pub(super) bindings: &'a IngressBindings,
    /// No `Proxy` document: the Ingresses get listeners of their own (:80, :443).
    pub(super) no_proxy: bool,
}

/// A path type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PathType {
    Exact,
    Prefix,
    Specific,
}

impl PathType {
    fn name(self) -> &'static str {
        match self {
            PathType::Exact => "Exact",
            PathType::Prefix => "Prefix",
            PathType::Specific => "ImplementationSpecific",
        }
    }
}

/// Where a path's requests go, resolved.
#[derive(Clone, Debug)]
enum Dest {
    Service(String),
    /// Does not resolve: answered with this status, as ingress-nginx answers a backend
    /// it has no endpoints for.
    Unavailable(u16, String),
}

/// One path of one rule of a served Ingress.
#[derive(Clone, Debug)]
struct Loc {
    /// Index into the served Ingresses.
    ing: usize,
    host: Option<String>,
    path: String,
    ty: PathType,
    dest: Dest,
    /// The Service named (to bind a Rollout's stable Service).
    service: String,
    field: String,
    /// A canary merged in: its destination and rules.
    canary: Option<(Dest, annotations::Canary)>,
    /// The Rollout splitting it, with its rules.
    rollout: Option<(String, Vec<Steer>)>,
}

/// One served Ingress.
struct Served<'d> {
    doc: &'d Document,
    ns: String,
    name: String,
    ann: Annotations,
    default: Option<(Dest, String)>,
}

/// The classes weir serves, and the default class (from an IngressClass marked default).
fn classes(
    ctx: &mut Ctx,
    docs: &[(Document, Arc<IngressClassDoc>)],
    proxy: &Proxy,
) -> (BTreeSet<String>, Option<String>) {
    let mut served: BTreeSet<String> = BTreeSet::from([WEIR_CLASS.to_owned()]);
    served.extend(proxy.ingress_class_names.iter().cloned());
    let mut default = None;
    for (doc, c) in docs {
        let Some(name) = check_name(ctx, doc, c.metadata.name.as_deref()) else {
            continue;
        };
        let controller = c.spec.as_ref().and_then(|s| s.controller.clone());
        if controller.as_deref() == Some(WEIR_CONTROLLER) {
            served.insert(name.clone());
        }
        if c.metadata
            .annotations
            .get(DEFAULT_CLASS_ANNOTATION)
            .is_some_and(|v| v == "true")
        {
            if default.is_none() {
                default = Some(name.clone());
            } else {
                ctx.warn(doc, &format!("metadata.annotations[\"{DEFAULT_CLASS_ANNOTATION}\"]"), format!("a second default IngressClass: Ingresses without a class take the first, {}", default.as_deref().unwrap_or("")));
            }
        }
    }
    (served, default)
}

/// Validates the Ingresses into model routes (and listeners, and TLS certificates).
pub(super) fn ingresses(
    ctx: &mut Ctx,
    docs: &[(Document, Arc<IngressDoc>)],
    class_docs: &[(Document, Arc<IngressClassDoc>)],
    place: &mut Placement<'_, '_, '_>,
    proxy: &mut Proxy,
) {
    if docs.is_empty() {
        return;
    }
    let (served_classes, default_class) = classes(ctx, class_docs, proxy);

    // The served Ingresses and their paths, in the order written.
    let mut served: Vec<Served<'_>> = Vec::new();
    let mut main: Vec<Loc> = Vec::new();
    let mut canaries: Vec<Loc> = Vec::new();
    let mut tls: Vec<(usize, Vec<String>, String, String)> = Vec::new();
    let mut seen = BTreeSet::new();
    for (doc, ing) in docs {
        let Some(name) = check_name(ctx, doc, ing.metadata.name.as_deref()) else {
            continue;
        };
        let ns = namespace_of(ing.metadata.namespace.as_deref());
        if !seen.insert((ns.clone(), name.clone())) {
            ctx.issue(
                doc,
                "metadata.name",
                format!(
                    "an Ingress {ns}/{name} is already defined; names must be unique in a namespace"
                ),
            );
            continue;
        }
        let spec = ing.spec.clone().unwrap_or_default();
        let class = spec
            .ingress_class_name
            .clone()
            .or_else(|| ing.metadata.annotations.get(CLASS_ANNOTATION).cloned())
            .or_else(|| default_class.clone());
        let Some(class) = class else {
            ctx.notice(doc, "spec.ingressClassName", format!("Ingress {ns}/{name} has no class and no IngressClass is the default: not served (set ingressClassName: {WEIR_CLASS}, or list its class in the Proxy's spec.ingressClassNames)"));
            continue;
        };
        if !served_classes.contains(&class) {
            ctx.notice(doc, "spec.ingressClassName", format!("Ingress {ns}/{name} is of class {class:?}, which weir does not serve: not served (list it in the Proxy's spec.ingressClassNames to serve it)"));
            continue;
        }
        let ann = annotations::read(ctx, doc, &ing.metadata, PREFIX);
        if !ann.refused.is_empty() {
            continue;
        }
        if spec.rules.is_empty() && spec.default_backend.is_none() {
            ctx.issue(doc, "spec", "an Ingress needs rules or a defaultBackend");
            continue;
        }
        let index = served.len();
        let is_canary = ann.canary.is_some();
        let before = ctx.issue_count();
        let mut locs = Vec::new();
        for (i, rule) in spec.rules.iter().enumerate() {
            let rf = format!("spec.rules[{i}]");
            let host = match rule.host.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(h) => {
                    let h = h.to_ascii_lowercase();
                    match super::hostnames::check(&h) {
                        Ok(()) => Some(h),
                        Err(e) => {
                            ctx.issue(doc, &format!("{rf}.host"), e);
                            continue;
                        }
                    }
                }
            };
            let Some(http) = &rule.http else {
                // A host without paths: its requests go to the default backend.
                locs.push((host, None));
                continue;
            };
            for (j, p) in http.paths.iter().enumerate() {
                let pf = format!("{rf}.http.paths[{j}]");
                let ty = match p.path_type.as_deref() {
                    Some("Exact") => PathType::Exact,
                    Some("Prefix") => PathType::Prefix,
                    Some("ImplementationSpecific") => PathType::Specific,
                    Some(other) => {
                        ctx.issue(doc, &format!("{pf}.pathType"), format!("{other:?} is not a path type: Exact, Prefix or ImplementationSpecific"));
                        continue;
                    }
                    None => {
                        ctx.issue(doc, &format!("{pf}.pathType"), "a path needs a pathType (Exact, Prefix or ImplementationSpecific), as networking.k8s.io/v1 requires");
                        continue;
                    }
                };
                let path = p.path.clone().unwrap_or_else(|| "/".to_owned());
                if ty != PathType::Specific && !path.starts_with('/') {
                    ctx.issue(
                        doc,
                        &format!("{pf}.path"),
                        format!("{path:?} is not an absolute path: it must start with /"),
                    );
                    continue;
                }
                let Some(b) = &p.backend else {
                    ctx.issue(doc, &format!("{pf}.backend"), "a path needs a backend");
                    continue;
                };
                let bound = b
                    .service
                    .as_ref()
                    .and_then(|s| s.name.as_deref())
                    .is_some_and(|svc| {
                        place
                            .bindings
                            .get(&(ns.clone(), name.clone()))
                            .is_some_and(|bs| bs.iter().any(|x| x.stable == svc))
                    });
                let (dest, service) = if bound {
                    // A Rollout's stable Service: the Rollout's revisions serve it.
                    let svc = b
                        .service
                        .as_ref()
                        .and_then(|s| s.name.clone())
                        .unwrap_or_default();
                    (Dest::Service(String::new()), svc)
                } else {
                    resolve(ctx, doc, &format!("{pf}.backend"), &ns, b, place)
                };
                locs.push((
                    host.clone(),
                    Some(Loc {
                        ing: index,
                        host: host.clone(),
                        path,
                        ty,
                        dest,
                        service,
                        field: pf,
                        canary: None,
                        rollout: None,
                    }),
                ));
            }
        }
        let default = spec
            .default_backend
            .as_ref()
            .map(|b| resolve(ctx, doc, "spec.defaultBackend", &ns, b, place));
        if ctx.issue_count() > before {
            continue;
        }
        for (k, t) in spec.tls.iter().enumerate() {
            let Some(secret) = t.secret_name.clone() else {
                ctx.notice(doc, &format!("spec.tls[{k}]"), "a tls entry without secretName: ingress-nginx serves its default certificate there; weir serves the listener's own certificates");
                continue;
            };
            let mut hosts: Vec<String> = t
                .hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect();
            if hosts.is_empty() {
                hosts = locs.iter().filter_map(|(h, _)| h.clone()).collect();
            }
            tls.push((index, hosts, secret, format!("spec.tls[{k}].secretName")));
        }
        for (host, loc) in locs {
            match loc {
                Some(l) if is_canary => canaries.push(l),
                Some(l) => main.push(l),
                // Rules without paths still make a host server (answered by the default).
                None if !is_canary => main.push(Loc {
                    ing: index,
                    host,
                    path: String::new(),
                    ty: PathType::Prefix,
                    dest: Dest::Unavailable(404, String::new()),
                    service: String::new(),
                    field: String::new(),
                    canary: None,
                    rollout: None,
                }),
                None => {}
            }
        }
        if is_canary && default.is_some() {
            ctx.warn(doc, "spec.defaultBackend", "a canary Ingress's defaultBackend is not honoured: weir applies a canary only to the paths of a main Ingress");
        }
        served.push(Served {
            doc,
            ns,
            name,
            ann,
            default: if is_canary { None } else { default },
        });
    }
    if served.is_empty() {
        return;
    }

    // Conflicts: a host, path and type served twice go to the Ingress written first.
    let mut kept: Vec<Loc> = Vec::new();
    for l in main {
        if l.field.is_empty() {
            if !kept.iter().any(|k| k.host == l.host) {
                kept.push(l);
            }
            continue;
        }
        if let Some(k) = kept
            .iter()
            .find(|k| !k.field.is_empty() && k.host == l.host && k.path == l.path && k.ty == l.ty)
        {
            let (s, first) = (&served[l.ing], &served[k.ing]);
            ctx.warn(s.doc, &l.field, format!(
                "host {} path {} ({}) is already served by Ingress {}/{}: ingress-nginx keeps the oldest, and so does weir (the one written first)",
                l.host.as_deref().unwrap_or("*"), l.path, l.ty.name(), first.ns, first.name
            ));
            continue;
        }
        kept.push(l);
    }
    let mut main = kept;

    // Canaries: onto the main path of the same host, path and type; one per path.
    for c in canaries {
        let s = &served[c.ing];
        let rules = s.ann.canary.clone().unwrap_or_default();
        let Some(m) = main
            .iter_mut()
            .find(|m| !m.field.is_empty() && m.host == c.host && m.path == c.path && m.ty == c.ty)
        else {
            ctx.warn(s.doc, &c.field, format!(
                "this canary applies to nothing: no main Ingress serves host {} path {} ({}); ingress-nginx applies a canary only where a main Ingress has the same host and path",
                c.host.as_deref().unwrap_or("*"), c.path, c.ty.name()
            ));
            continue;
        };
        if m.canary.is_some() {
            ctx.warn(s.doc, &c.field, format!("host {} path {} already has a canary: ingress-nginx uses one canary per path (the first), and so does weir", c.host.as_deref().unwrap_or("*"), c.path));
            continue;
        }
        if m.service == c.service {
            ctx.warn(
                s.doc,
                &c.field,
                format!(
                    "the canary's backend is the main path's own Service {}: nothing to split",
                    c.service
                ),
            );
            continue;
        }
        m.canary = Some((c.dest, rules));
    }

    // Rollouts (trafficRouting.nginx): the stable Ingress's paths to the stable Service.
    for m in main.iter_mut().filter(|m| !m.field.is_empty()) {
        let s = &served[m.ing];
        for b in place
            .bindings
            .get(&(s.ns.clone(), s.name.clone()))
            .into_iter()
            .flatten()
        {
            if m.service == b.stable {
                if m.canary.is_some() {
                    ctx.warn(s.doc, &m.field, format!("a canary Ingress on this path is not applied: Rollout {} splits it between {} and {}", b.rollout, b.stable, b.canary));
                    m.canary = None;
                }
                m.rollout = Some((b.rollout.clone(), b.steer.clone()));
                break;
            }
        }
    }
    for ((ns, name), bs) in place.bindings.iter() {
        for b in bs {
            let used = main.iter().any(|m| {
                m.rollout.as_ref().is_some_and(|(r, _)| *r == b.rollout)
                    && served[m.ing].ns == *ns
                    && served[m.ing].name == *name
            });
            if !used && let Some(s) = served.iter().find(|s| s.ns == *ns && s.name == *name) {
                ctx.warn(s.doc, "spec.rules", format!("Rollout {} splits this Ingress, but none of its paths has the stableService {} as backend: nothing is split", b.rollout, b.stable));
            }
        }
    }

    // Listeners: the Proxy's own, or :80 and :443 of their own without a Proxy document.
    let mut plain: Vec<String> = Vec::new();
    let mut secure: Vec<(usize, String)> = Vec::new();
    if place.no_proxy {
        let wants_tls = !tls.is_empty();
        for (name, port, on) in [
            ("ingress-http", 80u16, true),
            ("ingress-https", 443, wants_tls),
        ] {
            if !on {
                continue;
            }
            let socket = std::net::SocketAddr::new(proxy.gateway_address, port);
            let index = proxy.listeners.len();
            proxy.listeners.push(Listener {
                name: name.to_owned(),
                address: socket,
                tls: None,
                role_hosts: None,
            });
            let doc = served[0].doc;
            ctx.io.addresses.push(AddressUse {
                slot: Slot::Listener(index),
                address: Address::Ip(socket),
                written: socket.to_string(),
                at: doc.location("kind"),
            });
            if port == 443 {
                secure.push((index, name.to_owned()));
            } else {
                plain.push(name.to_owned());
            }
        }
    } else {
        // A listener's certificates are read by the load stage: validation knows a TLS
        // listener by the certificates it asks for.
        let with_tls: BTreeSet<usize> = ctx.io.certificates.iter().map(|c| c.listener).collect();
        for (i, l) in proxy.listeners.iter().enumerate() {
            if l.name.starts_with("gateway:") {
                continue;
            }
            if l.tls.is_some() || with_tls.contains(&i) {
                secure.push((i, l.name.clone()));
            } else {
                plain.push(l.name.clone());
            }
        }
    }

    // TLS Secrets, served by SNI on the TLS listeners.
    let mut tls_hosts: BTreeSet<String> = BTreeSet::new();
    for (ing, hosts, secret, field) in &tls {
        let s = &served[*ing];
        match place.cluster.tls_secret(&s.ns, secret) {
            Ok(pem) => {
                if secure.is_empty() {
                    ctx.warn(s.doc, field, "no TLS listener serves this Secret: the Proxy has no listener with tls");
                }
                for h in hosts {
                    tls_hosts.insert(h.clone());
                    for (listener, _) in &secure {
                        ctx.io.secret_certificates.push(SecretCertificate {
                            listener: *listener,
                            namespace: s.ns.clone(),
                            name: secret.clone(),
                            cert_pem: pem.cert.clone(),
                            key_pem: pem.key.clone(),
                            served_for: ServedFor::Host(super::hostnames::host_match(h)),
                            cert_at: pem.cert_at.clone(),
                            key_at: pem.key_at.clone(),
                        });
                    }
                }
            }
            Err(m) => ctx.warn(s.doc, field, format!("{m}: ingress-nginx serves its default certificate for these hosts; weir serves the listener's own certificates")),
        }
    }
    let secure: Vec<String> = secure.into_iter().map(|(_, n)| n).collect();
    let every: Vec<String> = plain.iter().chain(secure.iter()).cloned().collect();

    // backend-protocol GRPC: the Ingress's Services spoken to over h2c.
    for l in main.iter_mut() {
        if served[l.ing].ann.backend_protocol == "GRPC" {
            h2c(place.services, &mut l.dest);
            if let Some((c, _)) = &mut l.canary {
                h2c(place.services, c);
            }
        }
    }
    for s in served.iter_mut() {
        if s.ann.backend_protocol == "GRPC"
            && let Some((d, _)) = &mut s.default
        {
            h2c(place.services, d);
        }
    }

    // Routes, host by host, in the order hosts first appear.
    let mut hosts: Vec<Option<String>> = Vec::new();
    for l in &main {
        if !hosts.contains(&l.host) {
            hosts.push(l.host.clone());
        }
    }
    let mut names = BTreeSet::new();
    // What each Ingress serves, said once per Ingress (`weir check -v`: the migration
    // report, object by object).
    let mut report: Vec<Vec<String>> = vec![Vec::new(); served.len()];
    // Every path: a host's default in regex mode, and the default backend.
    let any_path = regex::Regex::new("^/").expect("a valid expression");
    for host in &hosts {
        let locs: Vec<&Loc> = main.iter().filter(|l| &l.host == host).collect();
        let regex = locs
            .iter()
            .any(|l| served[l.ing].ann.use_regex || served[l.ing].ann.rewrite_target.is_some());
        let host_matches: Vec<HostMatch> = host
            .iter()
            .map(|h| super::hostnames::host_match(h))
            .collect();
        let shown = host.as_deref().unwrap_or("*");
        // The server's Ingress (the first with this host) gives its default and app-root.
        let first = &served[locs[0].ing];
        let has_tls = host.as_ref().is_some_and(|h| {
            tls_hosts.contains(h)
                || tls_hosts.iter().any(|t| {
                    t.strip_prefix('*')
                        .is_some_and(|s| h.ends_with(s) && h.len() > s.len())
                })
        });
        if let Some(root) = &first.ann.app_root {
            push_route(
                &mut names,
                proxy,
                Route {
                    filters: vec![Filter::Redirect(Redirect {
                        scheme: None,
                        hostname: None,
                        path: Some(PathRewrite::Full(root.clone())),
                        port: None,
                        status: 302,
                        url: None,
                    })],
                    ..plain_route(
                        format!("{}/{}/{shown}/app-root", first.ns, first.name),
                        host_matches.clone(),
                        PathMatch::Exact("/".into()),
                        &every,
                        RouteTarget::Respond {
                            status: 302,
                            message: String::new(),
                        },
                    )
                },
            );
        }
        let mut ordered: Vec<&Loc> = locs
            .iter()
            .copied()
            .filter(|l| !l.field.is_empty())
            .collect();
        if regex {
            // nginx tries regular expression locations in order; ingress-nginx writes
            // them longest path first.
            ordered.sort_by_key(|l| std::cmp::Reverse(l.path.len()));
        }
        for l in ordered {
            let s = &served[l.ing];
            let path = match path_match(ctx, s.doc, l, regex) {
                Some(p) => p,
                None => continue,
            };
            report[l.ing].push(describe(l, shown, regex, s, has_tls));
            let name = format!("{}/{}/{shown}{}", s.ns, s.name, l.path);
            let route = Route {
                filters: filters(&s.ann),
                timeouts: RouteTimeouts {
                    connect: s.ann.connect_timeout,
                    read: s.ann.read_timeout,
                    send: s.ann.send_timeout,
                    ..RouteTimeouts::default()
                },
                max_body: s.ann.max_body.flatten(),
                steer: match (&l.rollout, &l.canary) {
                    (Some((_, steer)), _) => steer.clone(),
                    (None, Some((_, c))) => c.steer.clone(),
                    _ => Vec::new(),
                },
                ..plain_route(name, host_matches.clone(), path, &every, target(l))
            };
            push_secure(&mut names, proxy, route, &s.ann, has_tls, &plain, &secure);
        }
        // Whatever the host's paths leave: its default, never another host's rules.
        if host.is_some() {
            let (target, default_name) = match &first.default {
                Some((d, _)) => (dest_target(d), "default-backend"),
                None => (
                    RouteTarget::Respond {
                        status: 404,
                        message: "default backend - 404".into(),
                    },
                    "no-path",
                ),
            };
            let path = if regex {
                PathMatch::Regex(any_path.clone())
            } else {
                PathMatch::Segments("/".into())
            };
            push_route(
                &mut names,
                proxy,
                plain_route(
                    format!("{}/{}/{shown}/{default_name}", first.ns, first.name),
                    host_matches.clone(),
                    path,
                    &every,
                    target,
                ),
            );
        }
    }
    for (s, lines) in served.iter().zip(&report) {
        if s.ann.canary.is_some() {
            continue;
        }
        let mut text = format!("Ingress {}/{} is served:", s.ns, s.name);
        for l in lines {
            text.push_str("\n    ");
            text.push_str(l);
        }
        if let Some((d, _)) = &s.default {
            text.push_str(&format!("\n    defaultBackend -> {}", dest_name(d)));
        }
        ctx.notice(s.doc, "kind", text);
    }
    // Requests for hosts no rule names: the first Ingress's defaultBackend.
    if let Some(s) = served.iter().find(|s| s.default.is_some()) {
        let (d, _) = s.default.as_ref().expect("found");
        push_route(
            &mut names,
            proxy,
            plain_route(
                format!("{}/{}/default-backend", s.ns, s.name),
                Vec::new(),
                PathMatch::Regex(any_path.clone()),
                &every,
                dest_target(d),
            ),
        );
        for other in served.iter().filter(|o| o.default.is_some()).skip(1) {
            ctx.notice(
                other.doc,
                "spec.defaultBackend",
                format!(
                    "the defaultBackend for hosts no rule names is Ingress {}/{}'s, written first",
                    s.ns, s.name
                ),
            );
        }
    }
}

fn dest_name(d: &Dest) -> String {
    match d {
        Dest::Service(s) => s.clone(),
        Dest::Unavailable(status, _) => format!("answered {status}"),
    }
}

/// One line of an Ingress's report: host, path, how it matches, where it goes.
fn describe(l: &Loc, host: &str, regex: bool, s: &Served<'_>, tls: bool) -> String {
    let how = if regex {
        "regular expression, case-insensitive".to_owned()
    } else {
        l.ty.name().to_owned()
    };
    let to = match (&l.rollout, &l.canary) {
        (Some((r, steer)), _) => format!(
            "Rollout {r} (stable and canary by its steps{})",
            if steer.is_empty() {
                ""
            } else {
                ", with its header and cookie rules"
            }
        ),
        (None, Some((c, rules))) => format!(
            "{}, canary {} at {}/{}{}",
            dest_name(&l.dest),
            dest_name(c),
            rules.weight,
            rules.total,
            if rules.steer.is_empty() {
                ""
            } else {
                " with its header and cookie rules"
            }
        ),
        _ => dest_name(&l.dest),
    };
    let mut out = format!("{host}{} ({how}) -> {to}", l.path);
    if (tls && s.ann.ssl_redirect) || s.ann.force_ssl_redirect {
        out.push_str("; plain HTTP redirects to HTTPS (308)");
    }
    out
}

/// Points `d` at a copy of its Service spoken to over h2c (ingress-nginx's
/// `backend-protocol: GRPC`), keyed `KEY+h2c`.
fn h2c(services: &mut BTreeMap<String, Arc<Service>>, d: &mut Dest) {
    let Dest::Service(key) = d else { return };
    if key.is_empty() {
        return;
    }
    let Some(svc) = services.get(key.as_str()) else {
        return;
    };
    if svc.protocol == UpstreamProtocol::H2c {
        return;
    }
    let id = format!("{key}+h2c");
    let copy = Service {
        name: id.clone(),
        protocol: UpstreamProtocol::H2c,
        ..(**svc).clone()
    };
    services.entry(id.clone()).or_insert_with(|| Arc::new(copy));
    *key = id;
}

/// A route of one path match to `target`, on `listeners`, with nothing else.
fn plain_route(
    name: String,
    hosts: Vec<HostMatch>,
    path: PathMatch,
    listeners: &[String],
    target: RouteTarget,
) -> Route {
    Route {
        name,
        hosts,
        matches: vec![RouteMatch::path(path)],
        listeners: listeners.to_vec(),
        filters: Vec::new(),
        target,
        timeouts: RouteTimeouts::default(),
        scope: Vec::new(),
        max_body: None,
        steer: Vec::new(),
        affinity: None,
    }
}

/// Adds `route`, its name made unique.
fn push_route(names: &mut BTreeSet<String>, proxy: &mut Proxy, mut route: Route) {
    if !names.insert(route.name.clone()) {
        let mut k = 2;
        while !names.insert(format!("{}#{k}", route.name)) {
            k += 1;
        }
        route.name = format!("{}#{k}", route.name);
    }
    proxy.routes.push(Arc::new(route));
}

/// Adds `route`, split by listener when plain HTTP redirects to HTTPS
/// (`ssl-redirect` for a host with TLS, `force-ssl-redirect` for any).
fn push_secure(
    names: &mut BTreeSet<String>,
    proxy: &mut Proxy,
    route: Route,
    ann: &Annotations,
    has_tls: bool,
    plain: &[String],
    secure: &[String],
) {
    let redirect = (ann.ssl_redirect && has_tls) || ann.force_ssl_redirect;
    if !redirect || plain.is_empty() {
        push_route(names, proxy, route);
        return;
    }
    let mut to_https = route.clone();
    to_https.name = format!("{}/ssl-redirect", route.name);
    to_https.listeners = plain.to_vec();
    to_https.filters = vec![Filter::Redirect(Redirect {
        scheme: Some("https".into()),
        hostname: None,
        path: None,
        port: None,
        status: 308,
        url: None,
    })];
    to_https.steer = Vec::new();
    push_route(names, proxy, to_https);
    if !secure.is_empty() {
        let mut r = route;
        r.listeners = secure.to_vec();
        push_route(names, proxy, r);
    }
}

/// A path as nginx matches ingress-nginx's location for it.
fn path_match(ctx: &mut Ctx, doc: &Document, l: &Loc, regex: bool) -> Option<PathMatch> {
    if regex {
        return match regex::Regex::new(&format!("(?i)^{}", l.path)) {
            Ok(r) => Some(PathMatch::Regex(r)),
            Err(e) => {
                ctx.issue(doc, &format!("{}.path", l.field), format!("{:?} is not a regular expression (this host's paths are, with use-regex or rewrite-target): {e}", l.path));
                None
            }
        };
    }
    Some(match l.ty {
        PathType::Exact => PathMatch::Exact(l.path.clone()),
        PathType::Prefix => {
            let p = l.path.trim_end_matches('/');
            PathMatch::Segments(if p.is_empty() {
                "/".into()
            } else {
                p.to_owned()
            })
        }
        PathType::Specific => PathMatch::Prefix(l.path.clone()),
    })
}

/// The filters an Ingress's annotations ask for, in the order nginx applies them.
fn filters(a: &Annotations) -> Vec<Filter> {
    let mut out = Vec::new();
    if !a.allow.is_empty() || !a.deny.is_empty() {
        out.push(Filter::Source(SourceRanges {
            allow: a.allow.clone(),
            deny: a.deny.clone(),
        }));
    }
    if let Some((url, code)) = &a.redirect {
        out.push(Filter::Redirect(Redirect {
            scheme: None,
            hostname: None,
            path: None,
            port: None,
            status: *code,
            url: Some(url.clone()),
        }));
    }
    if let Some(c) = &a.cors {
        out.push(Filter::Cors(c.clone()));
    }
    if a.rewrite_target.is_some() || a.upstream_vhost.is_some() {
        out.push(Filter::Rewrite(Rewrite {
            hostname: a.upstream_vhost.clone(),
            path: a.rewrite_target.clone().map(PathRewrite::Captures),
        }));
    }
    if let Some(p) = &a.forwarded_prefix {
        out.push(Filter::RequestHeaders(HeaderModifier {
            set: vec![("x-forwarded-prefix".into(), p.clone())],
            ..HeaderModifier::default()
        }));
    }
    out
}

fn dest_target(d: &Dest) -> RouteTarget {
    match d {
        Dest::Service(s) => RouteTarget::Split(vec![leg(s, 1)]),
        Dest::Unavailable(status, message) => RouteTarget::Respond {
            status: *status,
            message: message.clone(),
        },
    }
}

fn leg(service: &str, weight: u32) -> WeightedService {
    WeightedService {
        service: service.to_owned(),
        weight,
        filters: Vec::new(),
        invalid: None,
    }
}

/// Where a path's requests go: its Rollout, its Service and canary, or its Service.
fn target(l: &Loc) -> RouteTarget {
    if let Some((rollout, _)) = &l.rollout {
        return RouteTarget::Rollout(rollout.clone());
    }
    match (&l.dest, &l.canary) {
        (Dest::Service(m), Some((Dest::Service(c), rules))) => {
            // ingress-nginx draws a number from 1 to the total (100 unless the total is
            // written and larger) and takes the canary at or below the weight: an exact
            // share of weight/total here.
            RouteTarget::Split(vec![
                leg(m, rules.total - rules.weight),
                leg(c, rules.weight),
            ])
        }
        (d, _) => dest_target(d),
    }
}

/// Resolves an Ingress backend to a model Service, or says why not (a warning) and
/// answers 503 there, as ingress-nginx does for a Service without endpoints.
fn resolve(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    ns: &str,
    b: &IngressBackend,
    place: &mut Placement<'_, '_, '_>,
) -> (Dest, String) {
    let Some(svc) = &b.service else {
        let why = if b.resource.is_some() {
            "a resource backend is not served: weir sends traffic to Services"
        } else {
            "a backend needs a service"
        };
        ctx.warn(doc, field, format!("{why}; its requests are answered 503"));
        return (Dest::Unavailable(503, why.to_owned()), String::new());
    };
    let Some(name) = svc.name.clone().filter(|n| !n.is_empty()) else {
        ctx.issue(
            doc,
            &format!("{field}.service.name"),
            "a service backend needs a name",
        );
        return (Dest::Unavailable(503, String::new()), String::new());
    };
    let port = match svc.port.as_ref() {
        Some(p) => match (&p.number, &p.name) {
            (Some(n), None) => {
                super::endpoints::port_field(ctx, doc, &format!("{field}.service.port.number"), n)
            }
            (None, Some(pn)) => match place.cluster.port_named(ns, &name, pn) {
                Ok(p) => p,
                Err(m) => {
                    ctx.warn(
                        doc,
                        &format!("{field}.service.port.name"),
                        format!("{m}; its requests are answered 503"),
                    );
                    return (Dest::Unavailable(503, m), name);
                }
            },
            _ => {
                ctx.issue(
                    doc,
                    &format!("{field}.service.port"),
                    "a service port needs exactly one of number and name",
                );
                None
            }
        },
        None => {
            ctx.issue(
                doc,
                &format!("{field}.service.port"),
                "a service backend needs a port (number or name)",
            );
            None
        }
    };
    let r = BackendRef {
        group: String::new(),
        kind: "Service".into(),
        namespace: ns.to_owned(),
        name: name.clone(),
        port,
    };
    match place.cluster.backend(ctx, ns, &r, place.services) {
        Ok(key) => (Dest::Service(key), name),
        Err(u) => {
            ctx.warn(
                doc,
                &format!("{field}.service"),
                format!("{}; its requests are answered 503", u.message),
            );
            (Dest::Unavailable(503, u.message), name)
        }
    }
}
