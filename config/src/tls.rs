//! Loading a listener's certificates: PEM files read and checked here, so that a missing
//! file, a bad PEM or a key that does not match its certificate is a config error with a
//! file, a line and a field, and the proxy only ever sees usable keys.

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::load::Document;
use crate::model::{Tls, TlsCertificate};
use crate::raw::weir as raw;
use crate::validate::{Ctx, relative_to};

pub(crate) fn load_tls(ctx: &mut Ctx, doc: &Document, field: &str, t: &raw::Tls) -> Option<Tls> {
    if t.certificates.is_empty() {
        ctx.issue(
            doc,
            field,
            "tls needs at least one certificate: certificates: [{certFile, keyFile}]",
        );
        return None;
    }
    let mut certificates = Vec::new();
    for (i, c) in t.certificates.iter().enumerate() {
        let cf = format!("{field}.certificates[{i}]");
        let (Some(cert_file), Some(key_file)) = (&c.cert_file, &c.key_file) else {
            ctx.issue(doc, &cf, "a certificate needs certFile and keyFile");
            continue;
        };
        let cert_path = relative_to(doc, cert_file);
        let key_path = relative_to(doc, key_file);
        ctx.extra_files.push(cert_path.clone());
        ctx.extra_files.push(key_path.clone());
        let certs: Result<Vec<CertificateDer<'static>>, _> =
            CertificateDer::pem_file_iter(&cert_path).and_then(|it| it.collect());
        let certs = match certs {
            Ok(c) if !c.is_empty() => c,
            Ok(_) => {
                ctx.issue(
                    doc,
                    &format!("{cf}.certFile"),
                    format!("{} holds no PEM certificate", cert_path.display()),
                );
                continue;
            }
            Err(e) => {
                ctx.issue(
                    doc,
                    &format!("{cf}.certFile"),
                    format!("cannot read certificates from {}: {e}", cert_path.display()),
                );
                continue;
            }
        };
        let key = match PrivateKeyDer::from_pem_file(&key_path) {
            Ok(k) => k,
            Err(e) => {
                ctx.issue(
                    doc,
                    &format!("{cf}.keyFile"),
                    format!("cannot read a private key from {}: {e}", key_path.display()),
                );
                continue;
            }
        };
        let provider = rustls::crypto::ring::default_provider();
        match CertifiedKey::from_der(certs, key, &provider) {
            Ok(k) => certificates.push(TlsCertificate {
                cert_file: cert_path,
                key_file: key_path,
                key: Arc::new(k),
            }),
            Err(e) => ctx.issue(
                doc,
                &format!("{cf}.keyFile"),
                format!(
                    "{} does not fit {}: {e}",
                    key_path.display(),
                    cert_path.display()
                ),
            ),
        }
    }
    if certificates.len() == t.certificates.len() {
        Some(Tls { certificates })
    } else {
        None
    }
}
