//! Stage 1, reading: a path is one YAML file or a folder read recursively (`*.yaml`,
//! `*.yml`, in name order), each file holding one or more documents. The result is a list
//! of located documents ([`node`]) and the files they came from; this stage knows nothing
//! of kinds.
//!
//! Only regular files are read (a FIFO or a device named `*.yaml` in a folder is skipped
//! with a notice, so that reading never blocks), and none larger than [`MAX_FILE_BYTES`].

pub mod node;
pub mod split;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{ConfigError, Issue, Notice, Pos};
use node::{Node, parse_documents};

/// One YAML document, with the file it came from.
#[derive(Clone, Debug)]
pub struct Document {
    /// The file.
    pub file: Arc<Path>,
    /// The document's tree. Its lines count from [`Document::line_offset`]: a document
    /// parsed alone (see [`split`]) keeps its tree when lines before it are added or
    /// removed.
    pub node: Arc<Node>,
    /// Lines of the file before the text the tree was parsed from (0 when the whole file
    /// was parsed at once).
    pub line_offset: u32,
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

    /// The position of `field` (or its nearest ancestor that exists) in the file.
    pub fn locate(&self, field: &str) -> Pos {
        shift(self.node.locate(field), self.line_offset)
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

/// `pos`, `lines` further down the file (an unknown position stays unknown).
pub fn shift(pos: Pos, lines: u32) -> Pos {
    if pos.line == 0 {
        return pos;
    }
    Pos {
        line: pos.line.saturating_add(lines),
        column: pos.column,
    }
}

/// `pos`, `lines` further up the file: the inverse of [`shift`].
pub fn unshift(pos: Pos, lines: u32) -> Pos {
    if pos.line == 0 {
        return pos;
    }
    Pos {
        line: pos.line.saturating_sub(lines),
        column: pos.column,
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
    /// Files skipped (not regular files).
    pub notices: Vec<Notice>,
    /// The [`content_hash`] of each file read as text, for the model's fingerprint (so
    /// that it is of the text loaded, hashed as it is read rather than read again).
    pub hashes: std::collections::HashMap<PathBuf, u64>,
}

/// A hash of a file's bytes, as [`crate::load::fingerprint`] takes it.
pub fn content_hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// The largest configuration file read: 16 MiB.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Reads the configuration at `path` (a file or a folder).
///
/// # Errors
/// [`ConfigError::Io`] when `path` itself cannot be read or a folder cannot be listed;
/// a file that cannot be read is an issue in [`Read::issues`].
pub fn read(path: &Path) -> Result<Read, ConfigError> {
    read_with(path, read_text)
}

/// As [`read`], with `on_text` turning each file's text into documents (or a syntax
/// error) in the [`Read`] it is given.
///
/// # Errors
/// As [`read`].
pub fn read_with(
    path: &Path,
    mut on_text: impl FnMut(&Path, &str, &mut Read),
) -> Result<Read, ConfigError> {
    let mut out = Read::default();
    let files = collect_files(path, &mut out.notices)?;
    for file in &files {
        let issue = |message: String| Issue {
            file: Arc::from(file.as_path()),
            pos: Pos::default(),
            field: String::new(),
            message,
        };
        match read_file(file).map(String::from_utf8) {
            Ok(Ok(text)) => {
                out.hashes
                    .insert(file.clone(), content_hash(text.as_bytes()));
                on_text(file, &text, &mut out);
            }
            Ok(Err(e)) => out.issues.push(Issue {
                pos: first_non_utf8(e.as_bytes(), e.utf8_error().valid_up_to()),
                ..issue(format!(
                    "cannot read: it is not UTF-8 text (byte {} is not); save it as UTF-8",
                    e.utf8_error().valid_up_to()
                ))
            }),
            Err(message) => out.issues.push(issue(message)),
        }
    }
    out.files = files;
    Ok(out)
}

/// The line and column of the byte at `valid_up_to`, the first that is not UTF-8.
fn first_non_utf8(bytes: &[u8], valid_up_to: usize) -> Pos {
    let valid = &bytes[..valid_up_to];
    let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
    // UTF-8 up to `valid_up_to`, and a line starts after a newline: a character boundary.
    let column = std::str::from_utf8(&valid[line_start..]).map_or(1, |s| s.chars().count() + 1);
    Pos {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        column: u32::try_from(column).unwrap_or(u32::MAX),
    }
}

/// A regular file's bytes, at most [`MAX_FILE_BYTES`]: what every file the
/// configuration names (itself, certificates, the admin token) is read with, so that a
/// FIFO never blocks a reload and `/dev/zero` is never read without end.
pub(crate) fn read_file(file: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let too_large = |n: u64| {
        format!(
            "the file is {n} bytes, more than weir reads (16 MiB): no configuration, certificate or token file is this large"
        )
    };
    // Checked before opening: opening a FIFO would block until something writes to it.
    let meta = std::fs::metadata(file).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("cannot read: not a regular file".to_owned());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    let f = std::fs::File::open(file).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Reads YAML text as though it were the file `name`.
pub fn read_str(name: &Path, text: &str) -> Read {
    let mut out = Read::default();
    read_text(name, text, &mut out);
    out.files = vec![name.to_path_buf()];
    out
}

/// Parses a file's text at once into `out`: its documents, or its first syntax error.
pub fn read_text(file: &Path, text: &str, out: &mut Read) {
    let file: Arc<Path> = Arc::from(file);
    match parse_documents(text) {
        Ok(nodes) => out.docs.extend(nodes.into_iter().map(|node| Document {
            file: file.clone(),
            node: Arc::new(node),
            line_offset: 0,
        })),
        Err(e) => out.issues.push(Issue {
            file,
            pos: e.pos,
            field: String::new(),
            message: format!("not valid YAML: {}", e.message),
        }),
    }
}

/// The YAML files that `path` names: itself, or every regular `*.yaml`/`*.yml` file below
/// it. Other entries named `*.yaml` (FIFOs, sockets, devices) are skipped with a notice in
/// `notices`.
///
/// # Errors
/// When `path` does not exist, is neither a regular file nor a folder, or a folder cannot
/// be listed.
pub fn collect_files(path: &Path, notices: &mut Vec<Notice>) -> Result<Vec<PathBuf>, ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !meta.is_dir() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "it is neither a regular file nor a folder (a FIFO, a socket or a device?); give a YAML file or a folder of them",
        )));
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
                // Follows a symbolic link; opens nothing.
                match std::fs::metadata(&p) {
                    Ok(m) if !m.is_file() => notices.push(Notice {
                        file: Arc::from(p.as_path()),
                        pos: Pos::default(),
                        message: "skipped: not a regular file (a FIFO, a socket or a device); weir reads only regular files".to_owned(),
                        warning: true,
                    }),
                    // A broken link is reported when it is read.
                    _ => out.push(p),
                }
            }
        }
    }
    out.sort();
    Ok(out)
}
