//! The I/O validation leaves to the load stage: plain data, each piece with the location
//! that asked for it.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::error::Location;
use crate::model::ServedFor;

/// The I/O validation leaves to the load stage, each piece with the location that asked
/// for it, so that a failure is reported at its field.
#[derive(Debug, Default)]
pub struct Io {
    /// Every address of the model as written: literal ones are in the model already,
    /// host names are to be resolved. All of them take part in
    /// [`check_unique`](super::check_unique) once resolved.
    pub addresses: Vec<AddressUse>,
    /// The certificates of each listener that terminates TLS.
    pub certificates: Vec<ListenerCertificates>,
    /// The certificates Gateway listeners take from Secrets, each for the listener that
    /// serves it; the load stage builds them after the listener's own files.
    pub secret_certificates: Vec<SecretCertificate>,
    /// Files the model depends on beyond the YAML (certificates and keys): the watcher
    /// reloads when one changes.
    pub files: Vec<PathBuf>,
    /// The admin token file (`spec.admin.tokenFile`), to be read by the load stage.
    pub admin_token: Option<FileUse>,
}

/// A file to be read by the load stage, with the field that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileUse {
    /// The path, relative paths resolved against the config file's folder.
    pub path: PathBuf,
    /// The field that names it.
    pub at: Location,
}

/// An address as far as validation can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// An IP address and port, or a host name the load stage has resolved.
    Ip(SocketAddr),
    /// A host name and port, as written, still to be resolved.
    Host(String),
}

/// Where an address goes in the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    /// `proxy.listeners[i].address`.
    Listener(usize),
    /// `proxy.admin`.
    Admin,
    /// `services[service].endpoints[index].address`.
    Endpoint {
        /// The Service's name.
        service: String,
        /// The endpoint's index in the model.
        index: usize,
        /// The endpoint's entry in the document (where "listed twice" is reported).
        entry: Location,
    },
}

/// One address of the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressUse {
    /// Where it goes.
    pub slot: Slot,
    /// What is known of it.
    pub address: Address,
    /// As written.
    pub written: String,
    /// The field it was written in.
    pub at: Location,
}

/// A placeholder for an address until the load stage has resolved it.
pub const UNRESOLVED: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// The certificates of one listener, to be read by the load stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerCertificates {
    /// The listener's index in `proxy.listeners`.
    pub listener: usize,
    /// Its certificates, in the order written (each entry that names both files).
    pub certificates: Vec<CertificateFiles>,
}

/// One certificate chain and its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The PEM chain, leaf first.
    pub cert_file: PathBuf,
    /// The PEM private key.
    pub key_file: PathBuf,
    /// Where `certFile` is written.
    pub cert_at: Location,
    /// Where `keyFile` is written.
    pub key_at: Location,
}

/// A certificate and key from a Kubernetes `Secret` (PEM, decoded from `tls.crt` and
/// `tls.key`), for the listener a Gateway listener binds. Its `Debug` leaves the bytes
/// out.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretCertificate {
    /// The listener's index in `proxy.listeners`.
    pub listener: usize,
    /// The Secret's namespace.
    pub namespace: String,
    /// The Secret's name.
    pub name: String,
    /// The PEM chain, leaf first.
    pub cert_pem: Vec<u8>,
    /// The PEM private key.
    pub key_pem: Vec<u8>,
    /// The SNI names it is served for (the Gateway listener's hostname).
    pub served_for: ServedFor,
    /// Where `tls.crt` is written in the Secret.
    pub cert_at: Location,
    /// Where `tls.key` is written in the Secret.
    pub key_at: Location,
}

impl std::fmt::Debug for SecretCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretCertificate")
            .field("listener", &self.listener)
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("served_for", &self.served_for)
            .finish_non_exhaustive()
    }
}
