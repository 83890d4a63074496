//! Stage 1, reading: a path is one YAML file or a folder read recursively (`*.yaml`,
//! `*.yml`, in name order), each file holding one or more documents. The result is a list
//! of located documents ([`node`]) and the files they came from; this stage knows nothing
//! of kinds.

pub mod node;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{ConfigError, Issue, Pos};
use node::{Node, parse_documents};

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

    /// `field` as a [`Location`](crate::error::Location): this file, its position, its
    /// path.
    pub fn location(&self, field: &str) -> crate::error::Location {
        crate::error::Location {
            file: self.file.clone(),
            pos: self.locate(field),
            field: field.to_owned(),
        }
    }

    /// The folder that relative paths in this document are relative to.
    pub fn base_dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    /// `p` relative to [`Document::base_dir`] when it is not absolute.
    pub fn relative_path(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir().join(path)
        }
    }
}

/// What reading produced: the documents, the files read, and the files that could not be
/// read or parsed.
#[derive(Debug, Default)]
pub struct Read {
    /// Every document of every file, in file then document order.
    pub docs: Vec<Document>,
    /// The files read (the watcher reloads when one of them changes).
    pub files: Vec<PathBuf>,
    /// Unreadable files and YAML syntax errors.
    pub issues: Vec<Issue>,
}

/// Reads the configuration at `path` (a file or a folder).
///
/// # Errors
/// [`ConfigError::Io`] when `path` itself cannot be read or a folder cannot be listed;
/// a file that cannot be read is an issue in [`Read::issues`].
pub fn read(path: &Path) -> Result<Read, ConfigError> {
    let files = collect_files(path)?;
    let mut out = Read::default();
    for file in &files {
        match std::fs::read_to_string(file) {
            Ok(text) => read_text(file, &text, &mut out),
            Err(e) => out.issues.push(Issue {
                file: Arc::from(file.as_path()),
                pos: Pos::default(),
                field: String::new(),
                message: format!("cannot read: {e}"),
            }),
        }
    }
    out.files = files;
    Ok(out)
}

/// Reads YAML text as though it were the file `name`.
pub fn read_str(name: &Path, text: &str) -> Read {
    let mut out = Read::default();
    read_text(name, text, &mut out);
    out.files = vec![name.to_path_buf()];
    out
}

fn read_text(file: &Path, text: &str, out: &mut Read) {
    let file: Arc<Path> = Arc::from(file);
    match parse_documents(text) {
        Ok(nodes) => out.docs.extend(nodes.into_iter().map(|node| Document {
            file: file.clone(),
            node,
        })),
        Err(e) => out.issues.push(Issue {
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
