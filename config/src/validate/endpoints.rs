//! The Kubernetes objects behind Gateway API references, checked and indexed: `Namespace`s
//! (labels for selectors, each with the automatic `kubernetes.io/metadata.name`),
//! `Service`s and their `EndpointSlice`s (the addresses behind a backend, ports matched as
//! Kubernetes matches them), `Secret`s of type `kubernetes.io/tls` and `ReferenceGrant`s.
//!
//! [`Cluster::backend`] turns an HTTPRoute backend (namespace, Service, port) into a model
//! Service, keyed `NAMESPACE/NAME:PORT`, built once however many routes name it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::decode::gateway::{GATEWAY_GROUP, ReferenceGrantDoc};
use crate::decode::kube::{
    EndpointSliceDoc, EndpointsDoc, KubeServiceDoc, NamespaceDoc, SERVICE_NAME_LABEL, SecretDoc,
    SlicePort, TLS_SECRET_TYPE,
};
use crate::decode::scalar::{Int, IntOrString};
use crate::defaults;
use crate::error::Location;
use crate::model::gateway::reason;
use crate::model::{Endpoint, Service, UpstreamProtocol};
use crate::read::Document;

use super::address;
use super::ctx::{Ctx, check_name};
use super::io::Slot;

/// The label every namespace carries with its own name.
pub(super) const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// An object's namespace: as written, else `default`.
pub(super) fn namespace_of(ns: Option<&str>) -> String {
    ns.filter(|n| !n.is_empty())
        .unwrap_or(defaults::NAMESPACE)
        .to_owned()
}

/// A port number (1 to 65535) at `field`; what is not one is an issue.
pub(super) fn port_field(ctx: &mut Ctx, doc: &Document, field: &str, v: &Int) -> Option<u16> {
    match v.as_i64() {
        Some(n) if (1..=65535).contains(&n) => Some(n as u16),
        _ => {
            ctx.issue(
                doc,
                field,
                format!("{v} is not a port: write a number from 1 to 65535"),
            );
            None
        }
    }
}

/// A TLS Secret's PEM chain and key, with where each is written.
pub(super) struct TlsPem {
    /// The chain (`tls.crt`).
    pub(super) cert: Vec<u8>,
    /// The key (`tls.key`).
    pub(super) key: Vec<u8>,
    /// Where `tls.crt` is written.
    pub(super) cert_at: Location,
    /// Where `tls.key` is written.
    pub(super) key_at: Location,
}

/// Why a backend reference does not resolve: a Gateway API reason and a message.
#[derive(Clone, Debug)]
pub(super) struct Unresolved {
    /// `BackendNotFound`, `RefNotPermitted`, `InvalidKind`.
    pub(super) reason: &'static str,
    /// What a user reads.
    pub(super) message: String,
}

/// A reference to a backend, defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct BackendRef {
    /// The group (`""` for the core group).
    pub(super) group: String,
    /// The kind.
    pub(super) kind: String,
    /// The namespace.
    pub(super) namespace: String,
    /// The name.
    pub(super) name: String,
    /// The port.
    pub(super) port: Option<u16>,
}

struct KubeService<'a> {
    doc: &'a Document,
    external_name: Option<String>,
    ports: Vec<KubePort>,
}

/// A Service port, checked.
#[derive(Clone)]
struct KubePort {
    name: String,
    port: u16,
    target: Option<IntOrString>,
    /// What its `appProtocol` asks weir to speak (HTTP/1.1 when not written).
    protocol: UpstreamProtocol,
}

/// The ready addresses of one EndpointSlice, or of one subset of an `Endpoints`, with the
/// ports they serve and where each is written.
struct AddressSet<'a> {
    doc: &'a Document,
    /// `EndpointSlice` or `Endpoints`.
    kind: &'static str,
    /// Where its ports are written.
    ports_field: String,
    ports: &'a [SlicePort],
    /// (the host part of an address, IPv6 in brackets; its field; its entry's field).
    addresses: Vec<(String, String, String)>,
}

/// The documents addresses come from: EndpointSlices, and the legacy `Endpoints`.
pub(super) type AddressDocs<'a> = (
    &'a [(Document, Arc<EndpointSliceDoc>)],
    &'a [(Document, Arc<EndpointsDoc>)],
);

struct Grant {
    namespace: String,
    from: Vec<(String, String, String)>,
    to: Vec<(String, String, Option<String>)>,
}

/// How [`Cluster::backend`] resolved a reference, so that validation may resolve it
/// again without the work while the documents it looks at are the same (`memo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Resolved {
    /// To the weir Service of that name (in namespace `default`).
    Weir(String),
    /// To a Kubernetes Service (`key`, marked used) already built into model Service
    /// `id`. `weir_name`: the name, when a weir Service of that name would have been
    /// taken instead (a reference in namespace `default`).
    Kube {
        weir_name: Option<String>,
        key: (String, String),
        id: String,
    },
    /// Anything else: a model Service built, or the reference not resolved.
    Other,
}

/// The Kubernetes objects, checked and indexed.
pub(super) struct Cluster<'a> {
    labels: BTreeMap<String, BTreeMap<String, String>>,
    services: BTreeMap<(String, String), KubeService<'a>>,
    /// By Service: the addresses of its EndpointSlices, else of its `Endpoints`.
    slices: BTreeMap<(String, String), Vec<AddressSet<'a>>>,
    legacy: BTreeMap<(String, String), Vec<AddressSet<'a>>>,
    secrets: BTreeMap<(String, String), &'a (Document, Arc<SecretDoc>)>,
    grants: Vec<Grant>,
    /// Rollout role Services (`stableService`, `canaryService`) by (namespace, name):
    /// the Rollout's name.
    roles: BTreeMap<(String, String), String>,
    used: BTreeSet<(String, String)>,
}

/// The core group as references write it: `""` or `core`.
pub(super) fn core(group: Option<&str>) -> String {
    match group.unwrap_or("") {
        "core" => String::new(),
        g => g.to_owned(),
    }
}

impl<'a> Cluster<'a> {
    /// Checks and indexes the objects. `roles` maps a Rollout's role Service (namespace,
    /// name) to the Rollout's name.
    pub(super) fn new(
        ctx: &mut Ctx,
        namespaces: &'a [(Document, Arc<NamespaceDoc>)],
        services: &'a [(Document, Arc<KubeServiceDoc>)],
        (slices, legacy): AddressDocs<'a>,
        secrets: &'a [(Document, Arc<SecretDoc>)],
        grants: &'a [(Document, Arc<ReferenceGrantDoc>)],
        roles: BTreeMap<(String, String), String>,
    ) -> Cluster<'a> {
        let mut c = Cluster {
            labels: BTreeMap::new(),
            services: BTreeMap::new(),
            slices: BTreeMap::new(),
            legacy: BTreeMap::new(),
            secrets: BTreeMap::new(),
            grants: Vec::new(),
            roles,
            used: BTreeSet::new(),
        };
        for (doc, n) in namespaces {
            if let Some(name) = check_name(ctx, doc, n.metadata.name.as_deref()) {
                let mut labels = n.metadata.labels.clone();
                labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
                if c.labels.insert(name.clone(), labels).is_some() {
                    ctx.issue(
                        doc,
                        "metadata.name",
                        format!("Namespace {name:?} is defined twice"),
                    );
                }
            }
        }
        for pair in services {
            c.service(ctx, pair);
        }
        for pair in slices {
            c.slice(ctx, pair);
        }
        for pair in legacy {
            c.endpoints(ctx, pair);
        }
        for pair @ (doc, s) in secrets {
            if s.type_.as_deref() != Some(TLS_SECRET_TYPE) {
                continue;
            }
            let Some(name) = s.metadata.name.clone() else {
                continue;
            };
            let ns = namespace_of(s.metadata.namespace.as_deref());
            for key in ["tls.crt", "tls.key"] {
                if !s.data.contains_key(key) && !s.string_data.contains_key(key) {
                    ctx.issue(
                        doc,
                        "data",
                        format!(
                            "a Secret of type {TLS_SECRET_TYPE} needs data[\"{key}\"] (base64 PEM)"
                        ),
                    );
                }
            }
            c.secrets.insert((ns, name), pair);
        }
        for (doc, g) in grants {
            c.grant(ctx, doc, g);
        }
        c
    }

    fn service(&mut self, ctx: &mut Ctx, pair: &'a (Document, Arc<KubeServiceDoc>)) {
        let (doc, s) = pair;
        let Some(name) = check_name(ctx, doc, s.metadata.name.as_deref()) else {
            return;
        };
        let ns = namespace_of(s.metadata.namespace.as_deref());
        let spec = s.spec.clone().unwrap_or_default();
        let mut ports = Vec::new();
        for (i, p) in spec.ports.iter().enumerate() {
            let f = format!("spec.ports[{i}]");
            let Some(port) = p.port.as_ref() else {
                ctx.issue(doc, &f, "a Service port needs a port");
                continue;
            };
            let Some(port) = port_field(ctx, doc, &format!("{f}.port"), port) else {
                continue;
            };
            if let Some(t) = &p.target_port {
                let ok = match t {
                    IntOrString::Int(n) => (1..=65535).contains(n),
                    IntOrString::String(s) => !s.is_empty() && s.len() <= 15,
                    _ => false,
                };
                if !ok {
                    ctx.issue(
                        doc,
                        &format!("{f}.targetPort"),
                        format!("{t} is not a port: write a number from 1 to 65535 or a port name"),
                    );
                }
            }
            if ports.iter().any(|q: &KubePort| q.port == port) {
                ctx.issue(
                    doc,
                    &format!("{f}.port"),
                    format!("port {port} is listed twice"),
                );
            }
            let protocol = match p.app_protocol.as_deref() {
                None => UpstreamProtocol::Http1,
                Some(ap) => UpstreamProtocol::from_app_protocol(ap).unwrap_or_else(|| {
                    ctx.warn(
                        doc,
                        &format!("{f}.appProtocol"),
                        format!("appProtocol {ap} is not one weir knows: it speaks HTTP/1.1 to this port (kubernetes.io/h2c, h2c, grpc and http2 ask for HTTP/2 with prior knowledge)"),
                    );
                    UpstreamProtocol::Http1
                }),
            };
            ports.push(KubePort {
                name: p.name.clone().unwrap_or_default(),
                port,
                target: p.target_port.clone(),
                protocol,
            });
        }
        let external_name = match spec.type_.as_deref() {
            Some("ExternalName") => match spec.external_name.clone() {
                Some(n) if !n.is_empty() => Some(n),
                _ => {
                    ctx.issue(
                        doc,
                        "spec.externalName",
                        "an ExternalName Service needs externalName",
                    );
                    None
                }
            },
            _ => None,
        };
        let key = (ns.clone(), name.clone());
        if self.services.contains_key(&key) {
            ctx.issue(
                doc,
                "metadata.name",
                format!(
                    "a Service {ns}/{name} is already defined; names must be unique in a namespace"
                ),
            );
            return;
        }
        self.services.insert(
            key,
            KubeService {
                doc,
                external_name,
                ports,
            },
        );
    }

    /// A `v1` `Endpoints`: its subsets' ready addresses, for the Service of its name.
    fn endpoints(&mut self, ctx: &mut Ctx, pair: &'a (Document, Arc<EndpointsDoc>)) {
        let (doc, e) = pair;
        let Some(name) = check_name(ctx, doc, e.metadata.name.as_deref()) else {
            return;
        };
        let ns = namespace_of(e.metadata.namespace.as_deref());
        let before = ctx.issue_count();
        let mut sets = Vec::new();
        for (k, subset) in e.subsets.iter().enumerate() {
            for (i, p) in subset.ports.iter().enumerate() {
                match &p.port {
                    Some(port) => {
                        port_field(ctx, doc, &format!("subsets[{k}].ports[{i}].port"), port);
                    }
                    None => ctx.issue(
                        doc,
                        &format!("subsets[{k}].ports[{i}]"),
                        "an Endpoints port needs a port",
                    ),
                }
            }
            let mut addresses = Vec::new();
            for (j, a) in subset.addresses.iter().enumerate() {
                let f = format!("subsets[{k}].addresses[{j}]");
                match a.ip.as_deref().map(str::parse::<std::net::IpAddr>) {
                    Some(Ok(std::net::IpAddr::V6(v6))) => {
                        addresses.push((format!("[{v6}]"), format!("{f}.ip"), f))
                    }
                    Some(Ok(v4)) => addresses.push((v4.to_string(), format!("{f}.ip"), f)),
                    _ => ctx.issue(
                        doc,
                        &format!("{f}.ip"),
                        format!("{:?} is not an IP address", a.ip.as_deref().unwrap_or("")),
                    ),
                }
            }
            sets.push(AddressSet {
                doc,
                kind: "Endpoints",
                ports_field: format!("subsets[{k}].ports"),
                ports: &subset.ports,
                addresses,
            });
        }
        if ctx.issue_count() > before {
            return;
        }
        let key = (ns, name);
        if self.slices.contains_key(&key) {
            ctx.notice(doc, "kind", format!("Service {}/{} has EndpointSlices: they are used, and this Endpoints is not (as Kubernetes does)", key.0, key.1));
            return;
        }
        self.legacy.entry(key).or_default().extend(sets);
    }

    fn slice(&mut self, ctx: &mut Ctx, pair: &'a (Document, Arc<EndpointSliceDoc>)) {
        let (doc, s) = pair;
        if check_name(ctx, doc, s.metadata.name.as_deref()).is_none() {
            return;
        }
        let ns = namespace_of(s.metadata.namespace.as_deref());
        let kind = s.address_type.as_deref().unwrap_or("");
        if !matches!(kind, "IPv4" | "IPv6" | "FQDN") {
            ctx.issue(
                doc,
                "addressType",
                format!("{kind:?} is not an address type: use IPv4, IPv6 or FQDN"),
            );
            return;
        }
        let before = ctx.issue_count();
        for (i, p) in s.ports.iter().enumerate() {
            if let Some(port) = &p.port {
                port_field(ctx, doc, &format!("ports[{i}].port"), port);
            }
        }
        for (i, e) in s.endpoints.iter().enumerate() {
            for (j, a) in e.addresses.iter().enumerate() {
                let ok = match kind {
                    "IPv4" => a.parse::<std::net::Ipv4Addr>().is_ok(),
                    "IPv6" => a.parse::<std::net::Ipv6Addr>().is_ok(),
                    _ => super::hostnames::check(a).is_ok(),
                };
                if !ok {
                    ctx.issue(
                        doc,
                        &format!("endpoints[{i}].addresses[{j}]"),
                        format!("{a:?} is not an {kind} address"),
                    );
                }
            }
        }
        if ctx.issue_count() > before {
            return;
        }
        let ipv6 = kind == "IPv6";
        let set = AddressSet {
            doc,
            kind: "EndpointSlice",
            ports_field: "ports".into(),
            ports: &s.ports,
            addresses: s
                .endpoints
                .iter()
                .enumerate()
                .filter(|(_, e)| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
                .filter_map(|(i, e)| {
                    let a = e.addresses.first()?;
                    let host = if ipv6 { format!("[{a}]") } else { a.clone() };
                    Some((
                        host,
                        format!("endpoints[{i}].addresses[0]"),
                        format!("endpoints[{i}]"),
                    ))
                })
                .collect(),
        };
        match s.metadata.labels.get(SERVICE_NAME_LABEL) {
            Some(svc) => self.slices.entry((ns, svc.clone())).or_default().push(set),
            None => ctx.notice(
                doc,
                "metadata.labels",
                format!("EndpointSlice without the label {SERVICE_NAME_LABEL}: it belongs to no Service, and is not used"),
            ),
        }
    }

    fn grant(&mut self, ctx: &mut Ctx, doc: &Document, g: &ReferenceGrantDoc) {
        if check_name(ctx, doc, g.metadata.name.as_deref()).is_none() {
            return;
        }
        let spec = g.spec.clone().unwrap_or_default();
        let mut grant = Grant {
            namespace: namespace_of(g.metadata.namespace.as_deref()),
            from: Vec::new(),
            to: Vec::new(),
        };
        for (i, f) in spec.from.iter().enumerate() {
            match (&f.kind, &f.namespace) {
                (Some(k), Some(n)) => {
                    grant
                        .from
                        .push((core(f.group.as_deref()), k.clone(), n.clone()))
                }
                _ => ctx.issue(
                    doc,
                    &format!("spec.from[{i}]"),
                    "a ReferenceGrant's from needs kind and namespace",
                ),
            }
        }
        for (i, t) in spec.to.iter().enumerate() {
            match &t.kind {
                Some(k) => grant
                    .to
                    .push((core(t.group.as_deref()), k.clone(), t.name.clone())),
                None => ctx.issue(
                    doc,
                    &format!("spec.to[{i}]"),
                    "a ReferenceGrant's to needs a kind",
                ),
            }
        }
        self.grants.push(grant);
    }

    /// The labels of namespace `ns` (documented or not), with the automatic one.
    pub(super) fn labels(&self, ns: &str) -> BTreeMap<String, String> {
        self.labels
            .get(ns)
            .cloned()
            .unwrap_or_else(|| BTreeMap::from([(NAMESPACE_NAME_LABEL.to_owned(), ns.to_owned())]))
    }

    /// Whether a `from_kind` in `from_ns` may refer to the `to_group`/`to_kind` named
    /// `to_name` in `to_ns`: always within a namespace, else when a ReferenceGrant in
    /// `to_ns` allows it.
    pub(super) fn granted(
        &self,
        from_kind: &str,
        from_ns: &str,
        to_group: &str,
        to_kind: &str,
        to_ns: &str,
        to_name: &str,
    ) -> bool {
        from_ns == to_ns
            || self.grants.iter().any(|g| {
                g.namespace == to_ns
                    && g.from
                        .iter()
                        .any(|(gr, k, n)| gr == GATEWAY_GROUP && k == from_kind && n == from_ns)
                    && g.to.iter().any(|(gr, k, n)| {
                        gr == to_group && k == to_kind && n.as_deref().is_none_or(|n| n == to_name)
                    })
            })
    }

    /// The PEM chain and key of the `kubernetes.io/tls` Secret `ns/name`, with where they
    /// are written; `Err` says why it cannot be used.
    pub(super) fn tls_secret(&self, ns: &str, name: &str) -> Result<TlsPem, String> {
        let Some((doc, s)) = self.secrets.get(&(ns.to_owned(), name.to_owned())) else {
            return Err(format!(
                "there is no Secret {ns}/{name} of type {TLS_SECRET_TYPE} in the configuration"
            ));
        };
        let value = |key: &str| -> Option<(Vec<u8>, Location)> {
            if let Some(v) = s.string_data.get(key) {
                let at = doc.location(&format!("stringData[\"{key}\"]"));
                return Some((v.clone().into_bytes(), at));
            }
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.data.get(key)?.trim())
                .ok()?;
            Some((bytes, doc.location(&format!("data[\"{key}\"]"))))
        };
        match (value("tls.crt"), value("tls.key")) {
            (Some((cert, cert_at)), Some((key, key_at))) => Ok(TlsPem {
                cert,
                key,
                cert_at,
                key_at,
            }),
            _ => Err(format!(
                "Secret {ns}/{name} has no usable tls.crt and tls.key"
            )),
        }
    }

    /// The model Service behind backend `r` of an HTTPRoute of namespace `from_ns` (a
    /// Service of `r.namespace`, or a weir Service of that name in `default`), built into
    /// `weir` if need be; its key.
    pub(super) fn backend(
        &mut self,
        ctx: &mut Ctx,
        from_ns: &str,
        r: &BackendRef,
        weir: &mut BTreeMap<String, Arc<Service>>,
    ) -> Result<String, Unresolved> {
        self.backend_traced(ctx, from_ns, r, weir).0
    }

    /// As [`Self::backend`], saying how the reference resolved (see [`Resolved`]).
    pub(super) fn backend_traced(
        &mut self,
        ctx: &mut Ctx,
        from_ns: &str,
        r: &BackendRef,
        weir: &mut BTreeMap<String, Arc<Service>>,
    ) -> (Result<String, Unresolved>, Resolved) {
        let mut how = Resolved::Other;
        let out = self.resolve(ctx, from_ns, r, weir, &mut how);
        (out, how)
    }

    /// Whether [`Self::backend`] of the reference that resolved as `how` (under the
    /// same documents: see `memo`) would now resolve the same way again with nothing
    /// more to do than [`Self::repeat`]: its Service is in `weir` already.
    pub(super) fn can_repeat(how: &Resolved, weir: &BTreeMap<String, Arc<Service>>) -> bool {
        match how {
            Resolved::Weir(name) => weir.contains_key(name),
            Resolved::Kube { weir_name, id, .. } => {
                weir_name.as_ref().is_none_or(|n| !weir.contains_key(n)) && weir.contains_key(id)
            }
            Resolved::Other => false,
        }
    }

    /// What [`Self::backend`] of a reference [`Self::can_repeat`] says yes to does:
    /// marks its Kubernetes Service used.
    pub(super) fn repeat(&mut self, how: &Resolved) {
        if let Resolved::Kube { key, .. } = how
            && !self.used.contains(key)
        {
            self.used.insert(key.clone());
        }
    }

    fn resolve(
        &mut self,
        ctx: &mut Ctx,
        from_ns: &str,
        r: &BackendRef,
        weir: &mut BTreeMap<String, Arc<Service>>,
        how: &mut Resolved,
    ) -> Result<String, Unresolved> {
        if !(r.group.is_empty() && r.kind == "Service") {
            return Err(Unresolved {
                reason: reason::INVALID_KIND,
                message: format!(
                    "{}{} is not a kind weir can send traffic to: use a Service",
                    if r.group.is_empty() {
                        String::new()
                    } else {
                        format!("{}/", r.group)
                    },
                    r.kind
                ),
            });
        }
        if !self.granted("HTTPRoute", from_ns, "", "Service", &r.namespace, &r.name) {
            return Err(Unresolved {
                reason: reason::REF_NOT_PERMITTED,
                message: format!(
                    "Service {}/{} is in another namespace and no ReferenceGrant there allows HTTPRoutes of {from_ns} to use it",
                    r.namespace, r.name
                ),
            });
        }
        let in_default = r.namespace == defaults::NAMESPACE;
        if in_default && weir.contains_key(&r.name) {
            *how = Resolved::Weir(r.name.clone());
            return Ok(r.name.clone());
        }
        let key = (r.namespace.clone(), r.name.clone());
        let Some(svc) = self.services.get(&key) else {
            let hint = match self.roles.get(&key) {
                Some(ro) => format!(
                    ": it is Rollout {ro}'s role Service; name this HTTPRoute in the Rollout's trafficRouting.plugins[\"argoproj-labs/gatewayAPI\"] so that weir splits it, or add the Service with its EndpointSlices"
                ),
                None => ": add the Service (v1) and its EndpointSlices, or a weir Service of that name in namespace default".to_owned(),
            };
            return Err(Unresolved {
                reason: reason::BACKEND_NOT_FOUND,
                message: format!(
                    "Service {}/{} is not in the configuration{hint}",
                    r.namespace, r.name
                ),
            });
        };
        self.used.insert(key.clone());
        let Some(port) = r.port else {
            return Err(Unresolved {
                reason: reason::BACKEND_NOT_FOUND,
                message: format!(
                    "a backend that is a Service needs a port: Service {}/{} has ports {}",
                    r.namespace,
                    r.name,
                    port_list(svc)
                ),
            });
        };
        let Some(KubePort {
            name: pname,
            target,
            protocol,
            ..
        }) = svc.ports.iter().find(|p| p.port == port).cloned()
        else {
            return Err(Unresolved {
                reason: reason::BACKEND_NOT_FOUND,
                message: format!(
                    "Service {}/{} has no port {port}: its ports are {}",
                    r.namespace,
                    r.name,
                    port_list(svc)
                ),
            });
        };
        let id = format!("{}/{}:{port}", r.namespace, r.name);
        if weir.contains_key(&id) {
            *how = Resolved::Kube {
                weir_name: in_default.then(|| r.name.clone()),
                key,
                id: id.clone(),
            };
            return Ok(id);
        }
        let mut endpoints = Vec::new();
        if let Some(host) = svc.external_name.clone() {
            let written = format!("{host}:{port}");
            let (doc, field) = (svc.doc, "spec.externalName");
            if let Some(parsed) = address::parse(ctx, doc, field, &written) {
                let slot = Slot::Endpoint {
                    service: id.clone(),
                    index: 0,
                    entry: doc.location(field),
                };
                let address = address::record(ctx, doc, field, &written, parsed, slot);
                endpoints.push(Endpoint {
                    address,
                    authority: written,
                    image: None,
                });
            }
        }
        let mut seen = BTreeSet::new();
        let sets = match self.slices.get(&key) {
            Some(s) if !s.is_empty() => Some(s),
            _ => self.legacy.get(&key),
        };
        for set in sets.into_iter().flatten() {
            let doc = set.doc;
            let number = match set
                .ports
                .iter()
                .find(|p| p.name.clone().unwrap_or_default() == pname)
            {
                Some(p) => p.port.as_ref().and_then(Int::as_i64).map(|n| n as u16),
                None if set.ports.is_empty() => match &target {
                    None => Some(port),
                    Some(IntOrString::Int(n)) => Some(*n as u16),
                    Some(_) => None,
                },
                None => None,
            };
            let Some(number) = number else {
                ctx.notice(
                    doc,
                    &set.ports_field,
                    format!(
                        "{} serves no port named {pname:?} of Service {id}: not used for it",
                        set.kind
                    ),
                );
                continue;
            };
            for (host, field, entry) in &set.addresses {
                let written = format!("{host}:{number}");
                if !seen.insert(written.clone()) {
                    continue;
                }
                let Some(parsed) = address::parse(ctx, doc, field, &written) else {
                    continue;
                };
                let slot = Slot::Endpoint {
                    service: id.clone(),
                    index: endpoints.len(),
                    entry: doc.location(entry),
                };
                let address = address::record(ctx, doc, field, &written, parsed, slot);
                endpoints.push(Endpoint {
                    address,
                    authority: written,
                    image: None,
                });
            }
        }
        weir.insert(
            id.clone(),
            Arc::new(Service {
                name: id.clone(),
                endpoints,
                load_balancer: defaults::LOAD_BALANCER,
                protocol,
                // Kubernetes says which endpoints are ready (EndpointSlice conditions).
                health: None,
            }),
        );
        Ok(id)
    }

    /// The number of the port named `port` of Service `ns/name`: `Ok(None)` when there is
    /// no such Kubernetes Service (a weir Service may stand for it), `Err` with the ports
    /// it has when it has none of that name.
    pub(super) fn port_named(
        &self,
        ns: &str,
        name: &str,
        port: &str,
    ) -> Result<Option<u16>, String> {
        let Some(svc) = self.services.get(&(ns.to_owned(), name.to_owned())) else {
            return Ok(None);
        };
        match svc.ports.iter().find(|p| p.name == port) {
            Some(p) => Ok(Some(p.port)),
            None => Err(format!(
                "Service {ns}/{name} has no port named {port:?}: its ports are {}",
                svc.ports
                    .iter()
                    .map(
                        |KubePort {
                             name: n, port: p, ..
                         }| if n.is_empty() {
                            p.to_string()
                        } else {
                            format!("{n} ({p})")
                        }
                    )
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// A notice for each Service no route uses (and that is no Rollout's role Service).
    pub(super) fn report_unused(&self, ctx: &mut Ctx) {
        for (key, s) in &self.services {
            if !self.used.contains(key) && !self.roles.contains_key(key) {
                ctx.notice(
                    s.doc,
                    "kind",
                    format!("Service {}/{}: no HTTPRoute or Ingress backend names it; weir does not act on it otherwise", key.0, key.1),
                );
            }
        }
    }
}

fn port_list(s: &KubeService<'_>) -> String {
    if s.ports.is_empty() {
        return "none".to_owned();
    }
    s.ports
        .iter()
        .map(|p| p.port.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
