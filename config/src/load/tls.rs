//! Reading a listener's certificates: PEM files (a Proxy listener's) and PEM bytes (a
//! Secret's, for a Gateway listener) read and checked here, so that a missing file, a bad
//! PEM or a key that does not match its certificate is a config error at the field that
//! names it, and the proxy only ever sees usable keys.

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::Issue;
use crate::model::{CertificateSource, ServedFor, Tls, TlsCertificate};
use crate::validate::{CertificateFiles, ListenerCertificates, SecretCertificate};

/// Reads the certificates of one listener; `None` when one of them fails (each failure
/// is in `issues`).
pub(super) fn read_certificates(l: &ListenerCertificates, issues: &mut Vec<Issue>) -> Option<Tls> {
    let mut certificates = Vec::new();
    for c in &l.certificates {
        if let Some(cert) = read_certificate(c, issues) {
            certificates.push(cert);
        }
    }
    (certificates.len() == l.certificates.len()).then_some(Tls { certificates })
}

fn read_certificate(c: &CertificateFiles, issues: &mut Vec<Issue>) -> Option<TlsCertificate> {
    let (cert_path, key_path) = (&c.cert_file, &c.key_file);
    let read = |what: &str,
                path: &std::path::Path,
                at: &crate::error::Location,
                issues: &mut Vec<Issue>| {
        crate::read::read_file(path)
            .map_err(|e| {
                let e = e.strip_prefix("cannot read: ").unwrap_or(&e);
                issues.push(at.issue(format!("cannot read {what} from {}: {e}", path.display())));
            })
            .ok()
    };
    let cert_pem = read("certificates", cert_path, &c.cert_at, issues)?;
    let key_pem = read("a private key", key_path, &c.key_at, issues)?;
    let certs: Result<Vec<CertificateDer<'static>>, _> =
        CertificateDer::pem_slice_iter(&cert_pem).collect();
    let certs = match certs {
        Ok(certs) if !certs.is_empty() => certs,
        Ok(_) => {
            issues.push(
                c.cert_at
                    .issue(format!("{} holds no PEM certificate", cert_path.display())),
            );
            return None;
        }
        Err(e) => {
            issues.push(c.cert_at.issue(format!(
                "cannot read certificates from {}: {e}",
                cert_path.display()
            )));
            return None;
        }
    };
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(k) => k,
        Err(e) => {
            issues.push(c.key_at.issue(format!(
                "cannot read a private key from {}: {e}",
                key_path.display()
            )));
            return None;
        }
    };
    let provider = rustls::crypto::ring::default_provider();
    match CertifiedKey::from_der(certs, key, &provider) {
        Ok(k) => Some(TlsCertificate {
            source: CertificateSource::Files {
                cert_file: cert_path.clone(),
                key_file: key_path.clone(),
            },
            served_for: ServedFor::CertificateNames,
            key: Arc::new(k),
        }),
        Err(e) => {
            issues.push(c.key_at.issue(format!(
                "{} does not fit {}: {e}",
                key_path.display(),
                cert_path.display()
            )));
            None
        }
    }
}

/// Builds the certified key of a Secret's certificate; `None` when it fails (the failure
/// is in `issues`, at the Secret's `tls.crt` or `tls.key`).
pub(super) fn secret_certificate(
    c: &SecretCertificate,
    issues: &mut Vec<Issue>,
) -> Option<Arc<CertifiedKey>> {
    let secret = format!("Secret {}/{}", c.namespace, c.name);
    let certs: Result<Vec<CertificateDer<'static>>, _> =
        CertificateDer::pem_slice_iter(&c.cert_pem).collect();
    let certs = match certs {
        Ok(certs) if !certs.is_empty() => certs,
        Ok(_) => {
            issues.push(
                c.cert_at
                    .issue(format!("{secret}: tls.crt holds no PEM certificate")),
            );
            return None;
        }
        Err(e) => {
            issues.push(c.cert_at.issue(format!(
                "{secret}: tls.crt is not a PEM certificate chain: {e}"
            )));
            return None;
        }
    };
    let key = match PrivateKeyDer::from_pem_slice(&c.key_pem) {
        Ok(k) => k,
        Err(e) => {
            issues.push(
                c.key_at
                    .issue(format!("{secret}: tls.key is not a PEM private key: {e}")),
            );
            return None;
        }
    };
    let provider = rustls::crypto::ring::default_provider();
    match CertifiedKey::from_der(certs, key, &provider) {
        Ok(k) => Some(Arc::new(k)),
        Err(e) => {
            issues.push(
                c.key_at
                    .issue(format!("{secret}: tls.key does not fit tls.crt: {e}")),
            );
            None
        }
    }
}

/// The model's certificate for a Secret's certified key.
pub(super) fn from_secret(c: &SecretCertificate, key: Arc<CertifiedKey>) -> TlsCertificate {
    TlsCertificate {
        source: CertificateSource::Secret {
            namespace: c.namespace.clone(),
            name: c.name.clone(),
        },
        served_for: c.served_for.clone(),
        key,
    }
}
