//! A listener's `tls`: which certificate and key files it names, checked without opening
//! them. The load stage reads them (`load::tls`), so that a missing file, a bad PEM or a
//! key that does not fit its certificate is still a config error at the field that names
//! the file.

use crate::decode::weir as raw;
use crate::read::Document;

use super::ctx::Ctx;
use super::io::{CertificateFiles, ListenerCertificates};

/// Records the certificates of listener `listener` (its `tls` at `field` of `doc`) for the
/// load stage.
pub(super) fn certificates(
    ctx: &mut Ctx,
    doc: &Document,
    field: &str,
    listener: usize,
    t: &raw::Tls,
) {
    if t.certificates.is_empty() {
        ctx.issue(
            doc,
            field,
            "tls needs at least one certificate: certificates: [{certFile, keyFile}]",
        );
        return;
    }
    let mut certificates = Vec::new();
    for (i, c) in t.certificates.iter().enumerate() {
        let cf = format!("{field}.certificates[{i}]");
        let (Some(cert_file), Some(key_file)) = (&c.cert_file, &c.key_file) else {
            ctx.issue(doc, &cf, "a certificate needs certFile and keyFile");
            continue;
        };
        let cert_file = doc.relative_path(cert_file);
        let key_file = doc.relative_path(key_file);
        ctx.io.files.push(cert_file.clone());
        ctx.io.files.push(key_file.clone());
        certificates.push(CertificateFiles {
            cert_file,
            key_file,
            cert_at: doc.location(&format!("{cf}.certFile")),
            key_at: doc.location(&format!("{cf}.keyFile")),
        });
    }
    ctx.io.certificates.push(ListenerCertificates {
        listener,
        certificates,
    });
}
