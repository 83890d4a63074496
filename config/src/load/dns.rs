//! Resolving the host names validation left unresolved: the first address a name
//! resolves to is the one connected to (or bound), until the next reload.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::error::Issue;
use crate::validate::{Address, AddressUse};

/// Resolves `u` if it is a host name; a failure is an issue at its field, and leaves it
/// unresolved.
pub(super) fn resolve(u: &mut AddressUse, issues: &mut Vec<Issue>) -> Option<SocketAddr> {
    let s = match &u.address {
        Address::Ip(a) => return Some(*a),
        Address::Host(s) => s.clone(),
    };
    match s.to_socket_addrs() {
        Ok(mut addrs) => match addrs.next() {
            Some(a) => {
                u.address = Address::Ip(a);
                Some(a)
            }
            None => {
                issues.push(u.at.issue(format!("{s:?} resolves to no address")));
                None
            }
        },
        Err(e) => {
            issues.push(u.at.issue(format!("{s:?} is not an address: {e}")));
            None
        }
    }
}
