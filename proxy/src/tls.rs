//! TLS termination: a rustls server config per listener, with the certificate chosen by
//! the client's SNI and ALPN offering h2 and http/1.1. Certificates come loaded and
//! checked from the config model; a change of files gives a new model and, through the
//! updater, a new acceptor in the next snapshot. Handshakes already under way finish with
//! the old one.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::ServerName;
use weir_config::model::Tls;

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
    let resolver = SniResolver {
        certs: spec.certificates.iter().map(|c| c.key.clone()).collect(),
    };
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

/// Picks the first certificate valid for the SNI name; without SNI, or when none is
/// valid, the first certificate.
#[derive(Debug)]
struct SniResolver {
    certs: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name()
            && let Ok(server_name) = ServerName::try_from(name)
        {
            for c in &self.certs {
                let Some(leaf) = c.cert.first() else { continue };
                if let Ok(ee) = webpki::EndEntityCert::try_from(leaf)
                    && ee.verify_is_valid_for_subject_name(&server_name).is_ok()
                {
                    return Some(c.clone());
                }
            }
        }
        self.certs.first().cloned()
    }
}
