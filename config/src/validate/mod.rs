//! Stage 3, validation: decoded documents -> the [`Model`] and every issue, by pure
//! functions. Nothing here reads a file, resolves a name or looks at the environment: what
//! needs I/O (a host name to resolve, a certificate to read) is written down in [`Io`]
//! with the location that asked for it, and the load stage does it.
//!
//! Defaults come from [`crate::defaults`]. Every issue is collected; nothing stops at the
//! first. One file per kind, in the order they are validated (each may look up the ones
//! before it):
//!
//! - `service`: `Service`s and their endpoints;
//! - `kube`: `Secret`s (for args) and `Deployment`s (for `workloadRef`);
//! - `template`: `AnalysisTemplate`s and `ClusterAnalysisTemplate`s;
//! - `rollout`: `Rollout`s, with `strategy` (canary, blue-green), `steps` and
//!   `analysis` (the analyses a Rollout runs);
//! - `proxy`: the `Proxy`, with `route` (its routes), `address` and `tls`;
//! - the Kubernetes and Gateway API kinds: `endpoints` (Namespaces, Services,
//!   EndpointSlices, TLS Secrets, ReferenceGrants), `gateway` (GatewayClasses, Gateways:
//!   listeners), `canary` (Rollouts split through an HTTPRoute), `httproute` with
//!   `filters` (an HTTPRoute alone) and `attach` (HTTPRoutes onto listeners, backends
//!   resolved: model routes), with `hostnames`.
//!
//! Checks that one document makes against another (a route's Service, a Rollout's
//! templates, an arg's Secret) are all in `refs`; the context every part reports through
//! and the helpers they share are in `ctx`, the I/O plan in `io`.

mod address;
mod analysis;
mod annotations;
mod attach;
mod canary;
mod ctx;
mod endpoints;
mod filters;
mod gateway;
mod hostnames;
mod httproute;
mod ingress;
mod io;
mod kube;
mod memo;
mod proxy;
mod refs;
mod rollout;
mod route;
mod service;
mod steps;
mod strategy;
mod template;
mod tls;

use crate::analysis::MetricEnv;
use crate::decode::{Documents, Findings};
use crate::model::Model;
use crate::rollout::Argo;

pub use address::check_unique;
pub use annotations::known as ingress_annotations;
pub use io::{
    Address, AddressUse, CertificateFiles, FileUse, Io, ListenerCertificates, SecretCertificate,
    Slot, UNRESOLVED,
};

use ctx::Ctx;
pub use memo::Memo;

/// What validation produced.
#[derive(Debug)]
pub struct Validated {
    /// The model, whole except for what [`Validated::io`] lists: host-name addresses
    /// hold `0.0.0.0:0` until they are resolved, listeners with TLS have no certificates
    /// until they are read, and `files`, `notices` and `fingerprint` are left to the load
    /// stage.
    pub model: Model,
    /// The I/O the model still needs.
    pub io: Io,
    /// Every issue and notice so far, decoding's included.
    pub findings: Findings,
}

/// Validates every document into one model. Services come first, then the Argo kinds
/// (which look up Services, Secrets and Deployments), then the Proxy, whose routes name
/// both, then the Kubernetes and Gateway API kinds, whose listeners join the Proxy's and
/// whose routes follow its routes.
///
/// `env` is what analysis metrics may take from the environment (read by the caller:
/// validation looks at nothing but its arguments).
pub fn validate(docs: Documents, findings: Findings, env: &MetricEnv) -> Validated {
    validate_with(docs, findings, env, &mut Memo::default())
}

/// As [`validate`], reusing what `memo` kept of the last validation for the documents
/// that did not change (see [`Memo`]), and keeping this one's.
pub fn validate_with(
    docs: Documents,
    findings: Findings,
    env: &MetricEnv,
    memo: &mut Memo,
) -> Validated {
    memo.begin(&docs);
    let mut ctx = Ctx::new(findings, env.clone());
    let mut services = service::services(&mut ctx, docs.services);
    let mut argo = Argo {
        secrets: kube::secrets(&mut ctx, &docs.secrets),
        ..Argo::default()
    };
    let deployments = kube::deployment_templates(&docs.deployments);
    template::templates(&mut ctx, &docs.templates, &mut argo);
    rollout::rollouts(&mut ctx, &docs.rollouts, &deployments, &services, &mut argo);
    let no_proxy = docs.proxies.is_empty();
    let mut proxy = proxy::proxy(&mut ctx, docs.proxies, &services, &argo);

    let mut gateway_status = Vec::new();
    let (bindings, roles) = canary::bindings(&mut ctx, &docs.rollouts, &docs.http_routes, &argo);
    memo.bindings(&bindings);
    let ingress_bindings =
        canary::ingress_bindings(&mut ctx, &docs.rollouts, &docs.ingresses, &argo);
    let mut cluster = endpoints::Cluster::new(
        &mut ctx,
        &docs.namespaces,
        &docs.kube_services,
        (&docs.endpoint_slices, &docs.endpoints),
        &docs.secrets,
        &docs.reference_grants,
        roles,
    );
    let gateways = gateway::gateways(
        &mut ctx,
        &docs.gateway_classes,
        &docs.gateways,
        &cluster,
        &mut proxy,
        &mut gateway_status,
    );
    let mut place = attach::Placement {
        gateways: &gateways,
        cluster: &mut cluster,
        bindings: &bindings,
        services: &mut services,
        uses: Vec::new(),
    };
    attach::routes(
        &mut ctx,
        &docs.http_routes,
        &mut place,
        &mut proxy,
        &mut gateway_status,
        memo,
    );
    memo.finish();
    ingress::ingresses(
        &mut ctx,
        &docs.ingresses,
        &docs.ingress_classes,
        &mut ingress::Placement {
            cluster: &mut cluster,
            services: &mut services,
            bindings: &ingress_bindings,
            no_proxy,
        },
        &mut proxy,
    );
    cluster.report_unused(&mut ctx);

    Validated {
        model: Model {
            proxy,
            services,
            argo,
            files: Vec::new(),
            notices: Vec::new(),
            fingerprint: 0,
            gateway_status,
        },
        io: ctx.io,
        findings: ctx.findings,
    }
}
