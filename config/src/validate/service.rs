//! `Service`s: a name, endpoints, a load balancer and the protocol the endpoints speak.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::decode::weir as raw;
use crate::defaults;
use crate::model::{Endpoint, HealthCheck, LoadBalancer, Service, UpstreamProtocol};
use crate::read::Document;

use super::address;
use super::ctx::{Ctx, check_name};
use super::io::Slot;

/// Validates the `Service` documents into Services by name.
pub(super) fn services(
    ctx: &mut Ctx,
    docs: Vec<(Document, Arc<raw::ServiceDoc>)>,
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
            None => defaults::LOAD_BALANCER,
            Some("roundRobin") => LoadBalancer::RoundRobin,
            Some("leastRequest") => LoadBalancer::LeastRequest,
            Some(other) => {
                ctx.issue(
                    &doc,
                    "spec.loadBalancer",
                    format!("{other:?} is not a load balancer: use roundRobin or leastRequest"),
                );
                defaults::LOAD_BALANCER
            }
        };
        let protocol = match raw.spec.protocol.as_deref() {
            None => defaults::UPSTREAM_PROTOCOL,
            Some("http1") => UpstreamProtocol::Http1,
            Some("h2c") => UpstreamProtocol::H2c,
            Some(other) => {
                ctx.issue(
                    &doc,
                    "spec.protocol",
                    format!("{other:?} is not an upstream protocol: use http1 (HTTP/1.1) or h2c (HTTP/2 with prior knowledge, as gRPC servers speak)"),
                );
                defaults::UPSTREAM_PROTOCOL
            }
        };
        let mut endpoints = Vec::new();
        for (i, ep) in raw.spec.endpoints.iter().enumerate() {
            let field = format!("spec.endpoints[{i}]");
            let Some(addr) = ep.address.as_deref() else {
                ctx.issue(&doc, &field, "an endpoint needs an address (host:port)");
                continue;
            };
            let address_field = format!("{field}.address");
            let Some(parsed) = address::parse(ctx, &doc, &address_field, addr) else {
                continue;
            };
            if let Some(img) = &ep.image
                && img.trim().is_empty()
            {
                ctx.issue(&doc, &format!("{field}.image"), "image is empty");
                continue;
            }
            let slot = Slot::Endpoint {
                service: name.clone(),
                index: endpoints.len(),
                entry: doc.location(&field),
            };
            let address = address::record(ctx, &doc, &address_field, addr, parsed, slot);
            endpoints.push(Endpoint {
                address,
                authority: addr.to_owned(),
                image: ep.image.clone(),
            });
        }
        let health = raw
            .spec
            .health_check
            .as_ref()
            .and_then(|h| health_check(ctx, &doc, h));
        out.insert(
            name.clone(),
            Arc::new(Service {
                name,
                endpoints,
                load_balancer,
                protocol,
                health,
            }),
        );
    }
    out
}

/// `spec.healthCheck`, defaults applied.
fn health_check(ctx: &mut Ctx, doc: &Document, h: &raw::HealthCheck) -> Option<HealthCheck> {
    let f = "spec.healthCheck";
    let path = h.path.clone().unwrap_or_else(|| "/".to_owned());
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        ctx.issue(
            doc,
            &format!("{f}.path"),
            format!("{path:?} is not a path: write one such as /healthz"),
        );
        return None;
    }
    let interval = ctx.duration(
        doc,
        &format!("{f}.interval"),
        h.interval.as_deref(),
        defaults::HEALTH_INTERVAL,
    );
    let timeout = ctx.duration(
        doc,
        &format!("{f}.timeout"),
        h.timeout.as_deref(),
        defaults::HEALTH_TIMEOUT,
    );
    if interval.is_zero() || timeout.is_zero() {
        ctx.issue(doc, f, "interval and timeout must be above 0");
        return None;
    }
    let mut threshold = |name: &str, v: &Option<crate::decode::scalar::Int>, default: u32| match v {
        None => default,
        Some(n) => match n.as_i64() {
            Some(n @ 1..=100) => n as u32,
            _ => {
                ctx.issue(
                    doc,
                    &format!("{f}.{name}"),
                    format!("{n} is not a whole number from 1 to 100"),
                );
                default
            }
        },
    };
    let healthy = threshold(
        "healthyThreshold",
        &h.healthy_threshold,
        defaults::HEALTHY_THRESHOLD,
    );
    let unhealthy = threshold(
        "unhealthyThreshold",
        &h.unhealthy_threshold,
        defaults::UNHEALTHY_THRESHOLD,
    );
    Some(HealthCheck {
        path,
        interval,
        timeout,
        healthy,
        unhealthy,
    })
}
