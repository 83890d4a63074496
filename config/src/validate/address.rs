//! Addresses (`host:port`) of listeners, the admin listener and endpoints. They are
//! checked here as far as they can be without DNS: an IP address is taken as it is, and a
//! host name is handed to the load stage, which resolves it and then calls
//! [`check_unique`] for the checks that need every address resolved.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::error::Issue;
use crate::model::Model;
use crate::read::Document;

use super::ctx::Ctx;
use super::io::{Address, AddressUse, Slot, UNRESOLVED};

/// `host:port` checked without DNS. `None` (and an issue) when it cannot be an address.
pub(super) fn parse(ctx: &mut Ctx, doc: &Document, field: &str, s: &str) -> Option<Address> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(Address::Ip(a));
    }
    let Some((_, port)) = s.rsplit_once(':') else {
        ctx.issue(
            doc,
            field,
            format!("{s:?} has no port: write host:port, e.g. 127.0.0.1:8080"),
        );
        return None;
    };
    // The resolver refuses a bad port before it asks DNS; so does this, with its words.
    if port.parse::<u16>().is_err() {
        ctx.issue(
            doc,
            field,
            format!("{s:?} is not an address: invalid port value"),
        );
        return None;
    }
    Some(Address::Host(s.to_owned()))
}

/// Records `address`, written at `field` of `doc`, as going to `slot`, and gives what the
/// model holds until then.
pub(super) fn record(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    written: &str,
    address: Address,
    slot: Slot,
) -> SocketAddr {
    let now = match &address {
        Address::Ip(a) => *a,
        Address::Host(_) => UNRESOLVED,
    };
    ctx.io.addresses.push(AddressUse {
        slot,
        address,
        written: written.to_owned(),
        at: doc.location(field),
    });
    now
}

/// The checks that need resolved addresses: no endpoint is listed twice in a Service, no
/// two listeners share an address (port 0 excepted), and the admin listener's address is
/// no listener's. Addresses still unresolved (their lookup failed) are left out.
pub fn check_unique(model: &Model, uses: &[AddressUse]) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut seen: BTreeMap<&str, BTreeSet<(SocketAddr, Option<&str>)>> = BTreeMap::new();
    for u in uses {
        if let (
            Slot::Endpoint {
                service,
                index,
                entry,
            },
            Address::Ip(a),
        ) = (&u.slot, &u.address)
        {
            let image = model
                .services
                .get(service)
                .and_then(|s| s.endpoints.get(*index))
                .and_then(|e| e.image.as_deref());
            if !seen.entry(service).or_default().insert((*a, image)) {
                issues.push(entry.issue(format!("endpoint {} is listed twice", u.written)));
            }
        }
    }
    let mut listeners: BTreeMap<SocketAddr, &str> = BTreeMap::new();
    for u in uses {
        if let (Slot::Listener(i), Address::Ip(a)) = (&u.slot, &u.address)
            && a.port() != 0
            && let Some(l) = model.proxy.listeners.get(*i)
            && let Some(other) = listeners.insert(*a, l.name.as_str())
        {
            issues.push(u.at.issue(format!("{a} is already the address of listener {other:?}")));
        }
    }
    for u in uses {
        if let (Slot::Admin, Address::Ip(a)) = (&u.slot, &u.address)
            && a.port() != 0
            && let Some(l) = listeners.get(a)
        {
            issues.push(u.at.issue(format!("{a} is already the address of listener {l:?}")));
        }
    }
    issues
}

#[cfg(test)]
mod tests {
    use std::net::ToSocketAddrs;

    /// [`super::parse`] refuses a bad port in the resolver's own words, without asking it.
    #[test]
    fn a_bad_port_is_refused_as_the_resolver_would() {
        for s in ["app:http", "app:99999", "app:-1", "app:"] {
            let e = s.to_socket_addrs().unwrap_err();
            assert_eq!(e.to_string(), "invalid port value", "{s}");
        }
    }
}
