//! Loading the same configuration again and again, parsing and decoding only the
//! documents whose text changed.
//!
//! Each file is split into the text of its documents ([`crate::read::split`]). A
//! document's tree and its decoded mirror (with what decoding reported) depend on nothing
//! but that text, so they are kept by file and text, and reused while the text is the
//! same. Lines are counted from the document's start in what is kept, and shifted to the
//! document's place in the file when used, so that a document moved down by an edit above
//! it is still reused and every issue still names its file, line and field. Validation
//! always runs on every document: what one document means depends on the others.
//!
//! What the last load did not read is forgotten, so the cache holds one configuration:
//! a removed file or document takes its entries with it.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::decode::{self, Decoded, Documents, Findings};
use crate::error::ConfigError;
use crate::model::Model;
use crate::read::node::{Node, on_parse_stack, parse_here};
use crate::read::{self, Document, Read, shift, split, unshift};
use crate::validate::Memo;

/// Loads a configuration, keeping what it parsed and decoded for the next load of the same
/// files. Cheap to clone: clones share one cache (and take turns with it).
#[derive(Clone, Debug, Default)]
pub struct Loader {
    cache: Arc<Mutex<Cache>>,
    /// What validation keeps (its own lock: the cache is free while validation runs).
    memo: Arc<Mutex<Memo>>,
}

/// What the last load reused and what it had to do again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reuse {
    /// Documents whose text was parsed (new or changed).
    pub parsed: usize,
    /// Documents whose text was seen before: not parsed again.
    pub reused: usize,
    /// Documents decoded (new or changed).
    pub decoded: usize,
    /// Files parsed whole, without reuse (see [`crate::read::split`]).
    pub whole_files: usize,
    /// HTTPRoutes whose own checks ran (new or changed; see [`Memo`]).
    pub routes_checked: usize,
    /// HTTPRoutes attached to their Gateways again (new, changed, the first to use a
    /// Service, or all of them when a document of another kind changed; see [`Memo`]).
    pub routes_attached: usize,
}

#[derive(Debug, Default)]
struct Cache {
    /// By file, then by the hash of a document's text.
    files: HashMap<Arc<Path>, HashMap<u64, Arc<Entry>>>,
    last: Reuse,
    loads: u64,
}

/// One document's text, its tree and, once decoded, its mirror.
#[derive(Debug)]
struct Entry {
    text: Box<str>,
    /// `None`: the text holds no document (comments, an empty `---`).
    node: Option<Arc<Node>>,
    /// The mirror and what decoding reported, lines counted from the document's start.
    decoded: OnceLock<(Decoded, Findings)>,
}

impl Loader {
    /// A loader with nothing kept yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// As [`crate::load()`], reusing what the last load of these files parsed and decoded.
    ///
    /// # Errors
    /// As [`crate::load()`].
    pub fn load(&self, path: &Path) -> Result<Model, ConfigError> {
        let mut cache = self.lock();
        let mut next = HashMap::new();
        let mut reuse = Reuse::default();
        let mut entries = Vec::new();
        let read = read::read_with(path, |file, text, out| {
            cache.read_text(&mut next, &mut reuse, file, text, out, &mut entries);
        })?;
        let (read, docs, findings) = cache.decode(read, next, reuse, entries);
        drop(cache);
        self.finish(read, docs, findings)
    }

    /// As [`crate::load_str`], reusing what the last load of `name` parsed and decoded.
    ///
    /// # Errors
    /// As [`crate::load_str`].
    pub fn load_str(&self, name: &Path, text: &str) -> Result<Model, ConfigError> {
        let mut cache = self.lock();
        let mut next = HashMap::new();
        let mut reuse = Reuse::default();
        let mut entries = Vec::new();
        let mut read = Read::default();
        cache.read_text(&mut next, &mut reuse, name, text, &mut read, &mut entries);
        read.files = vec![name.to_path_buf()];
        let (read, docs, findings) = cache.decode(read, next, reuse, entries);
        drop(cache);
        self.finish(read, docs, findings)
    }

    /// What the last load reused.
    pub fn last_reuse(&self) -> Reuse {
        let memo = self.lock_memo();
        Reuse {
            routes_checked: memo.checked,
            routes_attached: memo.attached,
            ..self.lock().last
        }
    }

    fn finish(
        &self,
        read: Read,
        docs: Documents,
        findings: Findings,
    ) -> Result<Model, ConfigError> {
        super::finish(read, docs, findings, &mut self.lock_memo())
    }

    fn lock_memo(&self) -> std::sync::MutexGuard<'_, Memo> {
        // As the cache: replaced whole once a validation is done.
        self.memo.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this loader (or a clone) has loaded anything yet.
    pub fn has_loaded(&self) -> bool {
        self.lock().loads > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache is only ever replaced whole, after a load: a panic mid-load leaves
        // the previous one, which is still right.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn hash(text: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

impl Cache {
    /// A file's documents into `out`, each with its entry (`None` when parsed whole).
    fn read_text(
        &self,
        next: &mut HashMap<Arc<Path>, HashMap<u64, Arc<Entry>>>,
        reuse: &mut Reuse,
        file: &Path,
        text: &str,
        out: &mut Read,
        entries: &mut Vec<Option<Arc<Entry>>>,
    ) {
        let (docs_before, reuse_before) = (out.docs.len(), *reuse);
        let file: Arc<Path> = Arc::from(file);
        let pieced = split::split(text).is_some_and(|pieces| {
            let old = self.files.get(&file);
            let mine = next.entry(file.clone()).or_default();
            on_parse_stack(|| {
                for p in pieces {
                    let h = hash(p.text);
                    let same = |e: &&Arc<Entry>| *e.text == *p.text;
                    let known = old
                        .and_then(|m| m.get(&h).filter(same))
                        .or_else(|| mine.get(&h).filter(same))
                        .cloned();
                    let entry = match known {
                        Some(e) => {
                            reuse.reused += usize::from(e.node.is_some());
                            e
                        }
                        None => {
                            // A syntax error is reported as the whole file's parse
                            // reports it: below.
                            let Ok(mut nodes) = parse_here(p.text) else {
                                return false;
                            };
                            if nodes.len() > 1 {
                                return false;
                            }
                            let node = nodes.pop().map(Arc::new);
                            reuse.parsed += usize::from(node.is_some());
                            Arc::new(Entry {
                                text: p.text.into(),
                                node,
                                decoded: OnceLock::new(),
                            })
                        }
                    };
                    if let Some(node) = &entry.node {
                        out.docs.push(Document {
                            file: file.clone(),
                            node: node.clone(),
                            line_offset: p.line_offset,
                        });
                        entries.push(Some(entry.clone()));
                    }
                    mine.insert(h, entry);
                }
                true
            })
        });
        if !pieced {
            out.docs.truncate(docs_before);
            entries.truncate(docs_before);
            next.remove(&file);
            *reuse = reuse_before;
            reuse.whole_files += 1;
            read::read_text(&file, text, out);
            entries.resize(out.docs.len(), None);
        }
    }

    /// Decodes (or reuses) every document (taken out of `read`), and keeps what this
    /// load read.
    fn decode(
        &mut self,
        mut read: Read,
        next: HashMap<Arc<Path>, HashMap<u64, Arc<Entry>>>,
        mut reuse: Reuse,
        entries: Vec<Option<Arc<Entry>>>,
    ) -> (Read, Documents, Findings) {
        let mut findings = Findings::default();
        let mut docs = Documents::default();
        for (doc, entry) in std::mem::take(&mut read.docs).into_iter().zip(entries) {
            let Some(entry) = entry else {
                reuse.decoded += 1;
                let decoded = decode::decode_one(&doc, &mut findings);
                docs.push(doc, decoded);
                continue;
            };
            let (decoded, found) = entry.decoded.get_or_init(|| {
                reuse.decoded += 1;
                let mut found = Findings::default();
                let decoded = decode::decode_one(&doc, &mut found);
                for i in &mut found.issues {
                    i.pos = unshift(i.pos, doc.line_offset);
                }
                for n in &mut found.notices {
                    n.pos = unshift(n.pos, doc.line_offset);
                }
                (decoded, found)
            });
            findings.issues.extend(found.issues.iter().map(|i| {
                let mut i = i.clone();
                i.file = doc.file.clone();
                i.pos = shift(i.pos, doc.line_offset);
                i
            }));
            findings.notices.extend(found.notices.iter().map(|n| {
                let mut n = n.clone();
                n.file = doc.file.clone();
                n.pos = shift(n.pos, doc.line_offset);
                n
            }));
            docs.push(doc, decoded.clone());
        }
        drop(std::mem::replace(&mut self.files, next));
        self.last = reuse;
        self.loads += 1;
        (read, docs, findings)
    }
}
