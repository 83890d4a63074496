//! Configuration errors are data: every problem found is an [`Issue`] with a file, a
//! position and a field path, and all of them are reported at once.
//!
//! A leaf of the crate: every stage reports through these types, and they import no stage.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A position in a YAML file, 1-based. Line 0 means unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column number.
    pub column: u32,
}

/// Where a field was written: its file, its position and its path. Validation records
/// one for each piece of I/O it leaves to the load stage, so that a failure there is
/// reported at the field that asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: Arc<Path>,
    /// Where in that file.
    pub pos: Pos,
    /// The field path, e.g. `spec.listeners[0].address`.
    pub field: String,
}

impl Location {
    /// An issue at this location.
    pub fn issue(&self, message: impl Into<String>) -> Issue {
        Issue {
            file: self.file.clone(),
            pos: self.pos,
            field: self.field.clone(),
            message: message.into(),
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// The file it is in.
    pub file: Arc<Path>,
    /// Where in that file.
    pub pos: Pos,
    /// The field path, e.g. `spec.routes[0].backends[1].weight`; empty for file-level issues.
    pub field: String,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.pos.line > 0 {
            write!(f, ":{}:{}", self.pos.line, self.pos.column)?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

/// Something legal but worth saying: a skipped document kind, a field that has no
/// meaning outside Kubernetes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The file it is in.
    pub file: Arc<Path>,
    /// Where in that file.
    pub pos: Pos,
    /// What it says.
    pub message: String,
    /// Something that will go wrong at run time unless fixed (a Service without
    /// endpoints for the Rollout's image, a missing AnalysisTemplate), as opposed to
    /// information (a skipped kind, a field without meaning outside Kubernetes).
    pub warning: bool,
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.pos.line > 0 {
            write!(f, ":{}", self.pos.line)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The path given could not be read at all.
    #[error("{}", io_message(path, source))]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The files were read, and these things are wrong with them.
    #[error("{}", render_issues(.0))]
    Invalid(Vec<Issue>),
}

/// What a user reads when the configuration path cannot be read, and what to do.
fn io_message(path: &Path, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "no configuration at {}: there is no such file or folder. Give -c a YAML file or a folder of them (examples/quickstart.yaml is one), or try `weir demo`",
            path.display()
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "cannot read the configuration at {}: permission denied. Make it readable by the user weir runs as",
            path.display()
        ),
        _ => format!("cannot read the configuration at {}: {e}", path.display()),
    }
}

impl ConfigError {
    /// Every issue, or one made of the I/O error.
    pub fn issues(&self) -> Vec<Issue> {
        match self {
            ConfigError::Invalid(issues) => issues.clone(),
            ConfigError::Io { path, source } => vec![Issue {
                file: Arc::from(path.as_path()),
                pos: Pos::default(),
                field: String::new(),
                message: source.to_string(),
            }],
        }
    }
}

fn render_issues(issues: &[Issue]) -> String {
    let mut out = format!(
        "{} configuration error{}:",
        issues.len(),
        if issues.len() == 1 { "" } else { "s" }
    );
    for i in issues {
        out.push_str("\n  ");
        out.push_str(&i.to_string());
    }
    out
}
