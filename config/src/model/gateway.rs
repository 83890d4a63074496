//! What weir says about the Gateway API objects it serves, as a Kubernetes controller
//! would write their `status`: each Gateway's conditions and each of its listeners'
//! (with the routes attached to it), and each HTTPRoute's conditions per parent
//! (`parentRefs` entry). Reasons are the Gateway API's own names ([`reason`]).
//!
//! `weir check -v` and the admin API print these; validation fills them in
//! ([`super::Model::gateway_status`]).

use std::fmt;

/// The status of one Gateway API object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayStatus {
    /// The object's kind.
    pub kind: StatusKind,
    /// `metadata.namespace` (`default` when not written).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// The object's own conditions (a Gateway's, a GatewayClass's; empty for an
    /// HTTPRoute, whose conditions are per parent).
    pub conditions: Vec<Condition>,
    /// A Gateway's listeners, or an HTTPRoute's parents, in the order written.
    pub sections: Vec<SectionStatus>,
}

impl GatewayStatus {
    /// The section named `name`, if there is one.
    pub fn section(&self, name: &str) -> Option<&SectionStatus> {
        self.sections.iter().find(|s| s.name == name)
    }
}

/// Which kind of object a [`GatewayStatus`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatusKind {
    /// A `GatewayClass`.
    GatewayClass,
    /// A `Gateway`.
    Gateway,
    /// An `HTTPRoute`.
    HttpRoute,
}

impl StatusKind {
    /// The kind as Kubernetes writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusKind::GatewayClass => "GatewayClass",
            StatusKind::Gateway => "Gateway",
            StatusKind::HttpRoute => "HTTPRoute",
        }
    }
}

impl fmt::Display for StatusKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Gateway listener's status, or an HTTPRoute's status for one parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionStatus {
    /// A listener's `name`; for an HTTPRoute parent, `NAMESPACE/GATEWAY`, then
    /// `/SECTION` when the parentRef names a `sectionName` and `:PORT` when it names a
    /// `port`.
    pub name: String,
    /// A listener's `attachedRoutes`: how many HTTPRoutes are attached to it. `None` for
    /// an HTTPRoute parent.
    pub attached_routes: Option<u32>,
    /// Its conditions.
    pub conditions: Vec<Condition>,
}

impl SectionStatus {
    /// The condition of type `type_`, if there is one.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// One condition: a type, whether it holds, the Gateway API's reason, and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// `Accepted`, `Programmed`, `ResolvedRefs`, `Conflicted`.
    pub type_: &'static str,
    /// `True` (true) or `False` (false).
    pub status: bool,
    /// One of [`reason`].
    pub reason: &'static str,
    /// What a user reads.
    pub message: String,
}

impl Condition {
    /// A condition that holds.
    pub fn yes(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Condition {
            type_,
            status: true,
            reason,
            message: message.into(),
        }
    }

    /// A condition that does not hold.
    pub fn no(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Condition {
            type_,
            status: false,
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for Condition {
    /// `Accepted=True (Accepted): message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = if self.status { "True" } else { "False" };
        write!(f, "{}={status} ({})", self.type_, self.reason)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// Condition types.
pub mod condition {
    /// The object (or listener, or route for a parent) is accepted.
    pub const ACCEPTED: &str = "Accepted";
    /// The listener or Gateway is serving.
    pub const PROGRAMMED: &str = "Programmed";
    /// Every reference (certificate, backend) resolved.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// The listener conflicts with another on the same address and port.
    pub const CONFLICTED: &str = "Conflicted";
}

/// The Gateway API's reason names.
pub mod reason {
    /// Accepted.
    pub const ACCEPTED: &str = "Accepted";
    /// Programmed.
    pub const PROGRAMMED: &str = "Programmed";
    /// References resolved.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// Not in conflict.
    pub const NO_CONFLICTS: &str = "NoConflicts";
    /// Some of the Gateway's listeners are not valid.
    pub const LISTENERS_NOT_VALID: &str = "ListenersNotValid";
    /// Not valid.
    pub const INVALID: &str = "Invalid";
    /// The listener's protocol is not supported.
    pub const UNSUPPORTED_PROTOCOL: &str = "UnsupportedProtocol";
    /// A value is not supported.
    pub const UNSUPPORTED_VALUE: &str = "UnsupportedValue";
    /// Another listener on the same address and port takes another protocol.
    pub const PROTOCOL_CONFLICT: &str = "ProtocolConflict";
    /// Another listener on the same address and port has the same hostname.
    pub const HOSTNAME_CONFLICT: &str = "HostnameConflict";
    /// A certificate reference does not resolve to a usable Secret.
    pub const INVALID_CERTIFICATE_REF: &str = "InvalidCertificateRef";
    /// `allowedRoutes.kinds` names a kind weir does not serve.
    pub const INVALID_ROUTE_KINDS: &str = "InvalidRouteKinds";
    /// A cross-namespace reference without a ReferenceGrant that allows it.
    pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
    /// No listener's `allowedRoutes` admits the route.
    pub const NOT_ALLOWED_BY_LISTENERS: &str = "NotAllowedByListeners";
    /// No listener's hostname intersects the route's hostnames.
    pub const NO_MATCHING_LISTENER_HOSTNAME: &str = "NoMatchingListenerHostname";
    /// No listener matches the parentRef's `sectionName` and `port`, or the Gateway does
    /// not exist.
    pub const NO_MATCHING_PARENT: &str = "NoMatchingParent";
    /// A backend does not exist (or has no such port).
    pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
    /// A reference names a kind weir cannot use.
    pub const INVALID_KIND: &str = "InvalidKind";
}
