//! Files the config tests read: the repository's root, its YAML files, and the fenced
//! YAML blocks of its Markdown.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `*.yaml` and `*.yml` below `dir`, sorted.
pub(crate) fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()));
        for entry in entries {
            let p = entry.expect("a folder entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A fenced YAML block: the Markdown line its content starts on, and its content.
pub(crate) struct Block {
    /// The Markdown line its content starts on.
    pub(crate) line: usize,
    /// Its content.
    pub(crate) text: String,
}

/// The ```yaml blocks of a Markdown text (fences at the start of a line).
pub(crate) fn yaml_blocks(md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in md.lines().enumerate() {
        match &mut open {
            None => {
                if line.trim_end() == "```yaml" {
                    open = Some(Block {
                        line: i + 2,
                        text: String::new(),
                    });
                }
            }
            Some(b) => {
                if line.trim_end() == "```" {
                    out.extend(open.take());
                } else {
                    b.text.push_str(line);
                    b.text.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "a ```yaml block is not closed");
    out
}
