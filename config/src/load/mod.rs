//! Stage 4, loading: the I/O validation left to do, and the entry points that run the
//! whole pipeline, read -> decode -> validate -> load.
//!
//! The I/O is what [`crate::validate::Io`] lists: host names resolved (`dns`),
//! certificates and keys read and checked (`tls`), and the fingerprint of every file
//! the model depends on; and before validation, the environment analysis metrics may
//! read ([`MetricEnv`]). A failure is an issue at the field validation recorded for it,
//! and is reported with every other issue at once.

mod cache;
mod dns;
mod tls;

pub use cache::{Loader, Reuse};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::analysis::MetricEnv;
use crate::decode::{Documents, Findings};
use crate::error::{ConfigError, Issue};
use crate::model::{AdminToken, Model, Tls};
use crate::read::Read;
use crate::validate::{self, FileUse, Slot, Validated};

/// Loads and validates the configuration at `path` (a file or a folder).
///
/// # Errors
/// [`ConfigError::Io`] when `path` cannot be read, otherwise
/// [`ConfigError::Invalid`] with every issue in every file.
pub fn load(path: &Path) -> Result<Model, ConfigError> {
    Loader::new().load(path)
}

/// Loads and validates YAML text as though it were the file `name`. Relative paths in it
/// are relative to `name`'s folder.
///
/// # Errors
/// [`ConfigError::Invalid`] with every issue.
pub fn load_str(name: &Path, text: &str) -> Result<Model, ConfigError> {
    Loader::new().load_str(name, text)
}

/// Validates and loads what was read and decoded (`read`'s documents taken out).
fn finish(
    read: Read,
    docs: Documents,
    findings: Findings,
    memo: &mut validate::Memo,
) -> Result<Model, ConfigError> {
    let Validated {
        mut model,
        mut io,
        findings,
    } = validate::validate_with(docs, findings, &MetricEnv::from_process(), memo);

    let mut issues = read.issues;
    issues.extend(findings.issues);
    for u in &mut io.addresses {
        if let Some(a) = dns::resolve(u, &mut issues) {
            place(&mut model, &u.slot, a);
        }
    }
    for l in &io.certificates {
        let certificates = tls::read_certificates(l, &mut issues);
        if let Some(listener) = model.proxy.listeners.get_mut(l.listener) {
            listener.tls = certificates;
        }
    }
    // A Secret served by several Gateway listeners is built once.
    let mut built = std::collections::BTreeMap::new();
    for c in &io.secret_certificates {
        let key = built
            .entry((c.namespace.clone(), c.name.clone()))
            .or_insert_with(|| tls::secret_certificate(c, &mut issues))
            .clone();
        if let (Some(key), Some(listener)) = (key, model.proxy.listeners.get_mut(c.listener)) {
            listener
                .tls
                .get_or_insert_with(|| Tls {
                    certificates: Vec::new(),
                })
                .certificates
                .push(tls::from_secret(c, key));
        }
    }
    if let Some(t) = &io.admin_token {
        model.proxy.admin_token = read_admin_token(t, &mut issues);
    }
    issues.extend(validate::check_unique(&model, &io.addresses));
    if !issues.is_empty() {
        issues.sort_by(|a, b| (&a.file, a.pos).cmp(&(&b.file, b.pos)));
        return Err(ConfigError::Invalid(issues));
    }

    let mut files = read.files;
    files.extend(io.files);
    files.sort();
    files.dedup();
    model.fingerprint = fingerprint_with(&files, &read.hashes);
    model.files = files;
    model.notices = read.notices;
    model.notices.extend(findings.notices);
    Ok(model)
}

/// Reads the admin token file: its content trimmed of surrounding whitespace, which must
/// leave something.
fn read_admin_token(t: &FileUse, issues: &mut Vec<Issue>) -> Option<AdminToken> {
    let path = t.path.display();
    match crate::read::read_file(&t.path) {
        Ok(bytes) => {
            let token = bytes.trim_ascii();
            if token.is_empty() {
                issues.push(t.at.issue(format!(
                    "the admin token file {path} is empty: write the token in it"
                )));
                None
            } else {
                Some(AdminToken::new(token))
            }
        }
        Err(e) => {
            let e = e.strip_prefix("cannot read: ").unwrap_or(&e);
            issues.push(t.at.issue(format!("cannot read the admin token file {path}: {e}")));
            None
        }
    }
}

/// Puts a resolved address where validation left its placeholder.
fn place(model: &mut Model, slot: &Slot, address: SocketAddr) {
    match slot {
        Slot::Listener(i) => {
            if let Some(l) = model.proxy.listeners.get_mut(*i) {
                l.address = address;
            }
        }
        Slot::Admin => model.proxy.admin = address,
        Slot::Endpoint { service, index, .. } => {
            if let Some(e) = model
                .services
                .get_mut(service)
                .and_then(|s| Arc::make_mut(s).endpoints.get_mut(*index))
            {
                e.address = address;
            }
        }
    }
}

/// A hash of the paths and contents of `files` (a missing file hashes as missing).
pub fn fingerprint(files: &[PathBuf]) -> u64 {
    fingerprint_with(files, &std::collections::HashMap::new())
}

/// As [`fingerprint`], taking the content hash of the files in `known` (those the load
/// read as text, hashed then) rather than reading them again.
fn fingerprint_with(files: &[PathBuf], known: &std::collections::HashMap<PathBuf, u64>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    for f in files {
        f.hash(&mut h);
        let content = match known.get(f) {
            Some(c) => Some(*c),
            None => crate::read::read_file(f)
                .ok()
                .map(|b| crate::read::content_hash(&b)),
        };
        match content {
            Some(c) => (1u8, c).hash(&mut h),
            None => 0u8.hash(&mut h),
        }
    }
    h.finish()
}
