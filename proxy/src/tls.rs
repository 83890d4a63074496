//! TLS termination: a rustls server config per listener, with the certificate chosen by
//! the client's SNI and ALPN offering h2 and http/1.1. Certificates come loaded and
//! checked from the config model; a change of files gives a new model and, through the
//! updater, a new acceptor in the next snapshot. Handshakes already under way finish with
//! the old one.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use weir_config::model::{HostMatch, ServedFor, Tls};

/// A TLS acceptor, cheap to clone.
#[derive(Clone)]
pub struct TlsAcceptor(pub tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsAcceptor")
    }
}

/// Builds the acceptor for a listener's certificates.
///
/// # Errors
/// When rustls refuses the configuration.
pub fn acceptor(spec: &Tls) -> Result<TlsAcceptor, rustls::Error> {
    let resolver = SniResolver::new(spec);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor(tokio_rustls::TlsAcceptor::from(Arc::new(
        config,
    ))))
}

/// Picks the certificate for a client's SNI name, in the order [`Tls::certificates`]
/// documents, by hash lookups: a listener with 10,000 certificates costs a handshake no
/// more than one with a single certificate. Hand-written because rustls's own
/// `ResolvesServerCertUsingSni` knows neither Gateway listener hostnames nor wildcards.
#[derive(Debug)]
struct SniResolver {
    certs: Vec<Arc<CertifiedKey>>,
    /// Gateway listener hostnames, exact: certificate index.
    host_exact: HashMap<Box<str>, usize>,
    /// Gateway listener wildcards (`*.example.com` as `.example.com`), any depth.
    host_suffix: HashMap<Box<str>, usize>,
    /// The DNS names certificates carry, exact.
    cert_exact: HashMap<Box<str>, usize>,
    /// Their wildcards (`*.example.com` as `.example.com`), one label deep.
    cert_wildcard: HashMap<Box<str>, usize>,
    /// The first certificate of a Gateway listener without a hostname.
    any_host: Option<usize>,
}

impl SniResolver {
    fn new(spec: &Tls) -> SniResolver {
        let mut r = SniResolver {
            certs: spec.certificates.iter().map(|c| c.key.clone()).collect(),
            host_exact: HashMap::new(),
            host_suffix: HashMap::new(),
            cert_exact: HashMap::new(),
            cert_wildcard: HashMap::new(),
            any_host: None,
        };
        for (i, c) in spec.certificates.iter().enumerate() {
            match &c.served_for {
                ServedFor::Host(HostMatch::Exact(h)) => {
                    r.host_exact
                        .entry(h.to_ascii_lowercase().into())
                        .or_insert(i);
                }
                ServedFor::Host(HostMatch::Suffix(s)) => {
                    r.host_suffix
                        .entry(s.to_ascii_lowercase().into())
                        .or_insert(i);
                }
                ServedFor::AnyHost => {
                    r.any_host.get_or_insert(i);
                }
                ServedFor::CertificateNames => {
                    let Some(leaf) = c.key.cert.first() else {
                        continue;
                    };
                    let Ok(ee) = webpki::EndEntityCert::try_from(leaf) else {
                        continue;
                    };
                    for name in ee.valid_dns_names() {
                        let name = name.to_ascii_lowercase();
                        match name.strip_prefix('*') {
                            Some(suffix) => r.cert_wildcard.entry(suffix.into()).or_insert(i),
                            None => r.cert_exact.entry(name.into()).or_insert(i),
                        };
                    }
                }
            }
        }
        r
    }

    /// The certificate index for SNI name `name` (lower-case).
    fn pick(&self, name: &str) -> Option<usize> {
        if let Some(i) = self.host_exact.get(name) {
            return Some(*i);
        }
        // The longest wildcard first: ".b.example.com" before ".example.com".
        let mut dots = name.match_indices('.').map(|(i, _)| i);
        if let Some(i) = dots
            .clone()
            .map(|i| &name[i..])
            .find_map(|s| self.host_suffix.get(s))
        {
            return Some(*i);
        }
        if let Some(i) = self.cert_exact.get(name) {
            return Some(*i);
        }
        if let Some(first_dot) = dots.next()
            && let Some(i) = self.cert_wildcard.get(&name[first_dot..])
            && first_dot > 0
        {
            return Some(*i);
        }
        self.any_host
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let picked = match hello.server_name() {
            Some(name) if name.bytes().any(|b| b.is_ascii_uppercase()) => {
                self.pick(&name.to_ascii_lowercase())
            }
            Some(name) => self.pick(name),
            None => self.any_host,
        };
        self.certs.get(picked.unwrap_or(0)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_config::model::{CertificateSource, TlsCertificate};

    fn cert(names: &[&str], served_for: ServedFor) -> TlsCertificate {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        let key = rustls::crypto::ring::sign::any_supported_type(
            &rustls_pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap(),
        )
        .unwrap();
        TlsCertificate {
            source: CertificateSource::Secret {
                namespace: "default".into(),
                name: names.join(","),
            },
            served_for,
            key: Arc::new(CertifiedKey::new(vec![ck.cert.der().clone()], key)),
        }
    }

    #[test]
    fn sni_picks_by_listener_hostname_then_certificate_names() {
        let spec = Tls {
            certificates: vec![
                cert(&["first.test"], ServedFor::CertificateNames),
                cert(&["*.wild.test"], ServedFor::CertificateNames),
                cert(
                    &["unrelated.test"],
                    ServedFor::Host(HostMatch::Exact("gw.test".into())),
                ),
                cert(
                    &["x.test"],
                    ServedFor::Host(HostMatch::Suffix(".apps.test".into())),
                ),
                cert(
                    &["y.test"],
                    ServedFor::Host(HostMatch::Suffix(".b.apps.test".into())),
                ),
                cert(&["z.test"], ServedFor::AnyHost),
            ],
        };
        let r = SniResolver::new(&spec);
        assert_eq!(
            r.pick("gw.test"),
            Some(2),
            "the listener's, whatever its names"
        );
        assert_eq!(r.pick("a.apps.test"), Some(3));
        assert_eq!(r.pick("a.b.apps.test"), Some(4), "the longest wildcard");
        assert_eq!(r.pick("first.test"), Some(0));
        assert_eq!(r.pick("a.wild.test"), Some(1));
        assert_eq!(
            r.pick("a.b.wild.test"),
            Some(5),
            "a certificate wildcard is one label"
        );
        assert_eq!(
            r.pick("other.test"),
            Some(5),
            "the listener without a hostname"
        );
        assert_eq!(r.any_host, Some(5));
    }
}
