//! Reading files: a path is one YAML file or a folder read recursively (`*.yaml`,
//! `*.yml`, in name order), each file holding one or more documents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{ConfigError, Issue};
use crate::model::Model;
use crate::node::{Node, Pos, parse_documents};
use crate::validate;

/// One YAML document, with the file it came from.
#[derive(Clone, Debug)]
pub struct Document {
    /// The file.
    pub file: Arc<Path>,
    /// The document's tree.
    pub node: Node,
}

impl Document {
    /// `apiVersion`, if it is a string.
    pub fn api_version(&self) -> Option<&str> {
        self.node.get("apiVersion").and_then(Node::as_str)
    }

    /// `kind`, if it is a string.
    pub fn kind(&self) -> Option<&str> {
        self.node.get("kind").and_then(Node::as_str)
    }

    /// `metadata.name`, if it is a string.
    pub fn name(&self) -> Option<&str> {
        self.node
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Node::as_str)
    }

    /// The position of `field` (or its nearest ancestor that exists).
    pub fn locate(&self, field: &str) -> Pos {
        self.node.locate(field)
    }

    /// The folder that relative paths in this document are relative to.
    pub fn base_dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }
}

/// Loads and validates the configuration at `path` (a file or a folder).
///
/// # Errors
/// [`ConfigError::Io`] when `path` cannot be read, otherwise
/// [`ConfigError::Invalid`] with every issue in every file.
pub fn load(path: &Path) -> Result<Model, ConfigError> {
    let files = collect_files(path)?;
    let mut docs = Vec::new();
    let mut issues = Vec::new();
    for file in &files {
        match std::fs::read_to_string(file) {
            Ok(text) => read_text(file, &text, &mut docs, &mut issues),
            Err(e) => issues.push(Issue {
                file: Arc::from(file.as_path()),
                pos: Pos::default(),
                field: String::new(),
                message: format!("cannot read: {e}"),
            }),
        }
    }
    validate::validate(docs, issues, files)
}

/// Loads and validates YAML text as though it were the file `name`. Relative paths in it
/// are relative to `name`'s folder.
///
/// # Errors
/// [`ConfigError::Invalid`] with every issue.
pub fn load_str(name: &Path, text: &str) -> Result<Model, ConfigError> {
    let mut docs = Vec::new();
    let mut issues = Vec::new();
    read_text(name, text, &mut docs, &mut issues);
    validate::validate(docs, issues, vec![name.to_path_buf()])
}

fn read_text(file: &Path, text: &str, docs: &mut Vec<Document>, issues: &mut Vec<Issue>) {
    let file: Arc<Path> = Arc::from(file);
    match parse_documents(text) {
        Ok(nodes) => docs.extend(nodes.into_iter().map(|node| Document {
            file: file.clone(),
            node,
        })),
        Err(e) => issues.push(Issue {
            file,
            pos: e.pos,
            field: String::new(),
            message: format!("not valid YAML: {}", e.message),
        }),
    }
}

/// The YAML files that `path` names: itself, or every `*.yaml`/`*.yml` below it.
///
/// # Errors
/// When `path` does not exist or a folder cannot be listed.
pub fn collect_files(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| ConfigError::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let p = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Editors' temporary and hidden files are not configuration.
            if name.starts_with('.') {
                continue;
            }
            let ft = match entry.file_type() {
                Ok(ft) => ft,
                Err(_) => continue,
            };
            let is_dir = ft.is_dir() || (ft.is_symlink() && p.is_dir());
            if is_dir {
                stack.push(p);
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A hash of the paths and contents of `files` (a missing file hashes as missing).
pub fn fingerprint(files: &[PathBuf]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    for f in files {
        f.hash(&mut h);
        match std::fs::read(f) {
            Ok(bytes) => bytes.hash(&mut h),
            Err(_) => 0u8.hash(&mut h),
        }
    }
    h.finish()
}
