//! A YAML document as a tree that remembers where every node came from.
//!
//! Later stages go through this tree twice over: `decode` finds `apiVersion`/`kind` and
//! converts the tree into the serde mirror types (via `serde_json::Value`, so that
//! `serde_path_to_error` can name the field that failed), and every stage after it turns a
//! field path such as `spec.routes[2].backends` back into a line and column.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

pub use crate::error::Pos;

/// One YAML node with its position.
#[derive(Clone, Debug)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// What it holds.
    pub value: NodeValue,
}

/// The value of a [`Node`].
#[derive(Clone, Debug)]
pub enum NodeValue {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits i64.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    UInt(u64),
    /// A float.
    Float(f64),
    /// A string scalar.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order; the position is the key's.
    Map(Vec<(String, Pos, Node)>),
}

fn pos_of(loc: &serde_saphyr::Location) -> Pos {
    Pos {
        line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
        column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
    }
}

impl From<Spanned<NodeValue>> for Node {
    fn from(s: Spanned<NodeValue>) -> Self {
        Node {
            pos: pos_of(&s.referenced),
            value: s.value,
        }
    }
}

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeValue;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_none<E>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeValue, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
    fn visit_bool<E>(self, b: bool) -> Result<NodeValue, E> {
        Ok(NodeValue::Bool(b))
    }
    fn visit_i64<E>(self, v: i64) -> Result<NodeValue, E> {
        Ok(NodeValue::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<NodeValue, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => NodeValue::Int(i),
            Err(_) => NodeValue::UInt(v),
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<NodeValue, E> {
        Ok(NodeValue::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<NodeValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = a.next_element::<Spanned<NodeValue>>()? {
            items.push(item.into());
        }
        Ok(NodeValue::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<NodeValue, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = a.next_key::<Spanned<KeyString>>()? {
            let value: Spanned<NodeValue> = a.next_value()?;
            entries.push((key.value.0, pos_of(&key.referenced), value.into()));
        }
        Ok(NodeValue::Map(entries))
    }
}

/// A mapping key. Kubernetes-style documents use strings; other scalars are turned into
/// their text (`1: x` has key `"1"`), and the rare complex key (YAML allows a mapping as a
/// key, which is what an unquoted `{{args.x}}` parses as) into a compact rendering of it,
/// so that such documents still load.
struct KeyString(String);

impl<'de> Deserialize<'de> for KeyString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = NodeValue::deserialize(d)?;
        Ok(KeyString(render_key(&v)))
    }
}

fn render_key(v: &NodeValue) -> String {
    match v {
        NodeValue::Null => "null".to_owned(),
        NodeValue::Bool(b) => b.to_string(),
        NodeValue::Int(i) => i.to_string(),
        NodeValue::UInt(u) => u.to_string(),
        NodeValue::Float(f) => f.to_string(),
        NodeValue::Str(s) => s.clone(),
        NodeValue::Seq(items) => format!(
            "[{}]",
            items
                .iter()
                .map(|n| render_key(&n.value))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        NodeValue::Map(entries) => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(k, _, v)| match v.value {
                    NodeValue::Null => k.clone(),
                    ref other => format!("{k}: {}", render_key(other)),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A YAML parse error, with its position.
#[derive(Clone, Debug)]
pub struct ParseError {
    /// Where the parser stopped.
    pub pos: Pos,
    /// What it said, without the position and the snippet.
    pub message: String,
}

/// The stack YAML is parsed on, whatever thread parses it (see [`parse_documents`]).
pub const PARSE_STACK: usize = 16 << 20;

/// The most events that anchors may record, and the most that aliases may replay, in one
/// file.
pub const MAX_ALIAS_EVENTS: usize = 100_000;

/// Parses every document of a YAML text. Empty documents (a trailing `---`) are dropped.
///
/// # Errors
/// The first syntax error, with its line and column.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, ParseError> {
    // The parser recurses for each level of nesting, up to the budget's depth limit (64):
    // at that limit it needs about 3 MiB of stack in a debug build, more than a tokio
    // worker's 2 MiB, where the watcher reloads. So it runs on a stack of its own.
    on_parse_stack(|| parse_here(text))
}

/// Runs `f` on a stack of [`PARSE_STACK`] bytes, the stack [`parse_here`] needs; one
/// stack for many parses (a file's documents parsed one by one).
pub fn on_parse_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::grow(PARSE_STACK, f)
}

/// [`parse_documents`] on the current stack: only inside [`on_parse_stack`].
///
/// # Errors
/// The first syntax error, with its line and column.
pub fn parse_here(text: &str) -> Result<Vec<Node>, ParseError> {
    // The configuration is the operator's own file, not hostile input: the parser's
    // default budget (1,024 documents, 250,000 nodes) would refuse a real fleet of a
    // thousand Rollouts, so the limits are raised well above any real configuration.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = 1_000_000;
    budget.max_nodes = 50_000_000;
    budget.max_events = 200_000_000;
    // Aliases share a block in a hand-written file; they are not how a fleet is written.
    // What they expand to is bounded apart, below the parser's default: at a million
    // events an alias bomb of a few hundred bytes took 1.2 s to refuse in a release
    // build (10 s in a debug one); at MAX_ALIAS_EVENTS it takes a tenth of that.
    budget.max_recorded_anchor_events = MAX_ALIAS_EVENTS;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = MAX_ALIAS_EVENTS;
    let parsed = serde_saphyr::from_multiple_with_options::<Spanned<NodeValue>>(text, options);
    match parsed {
        Ok(docs) => Ok(docs
            .into_iter()
            .map(Node::from)
            .filter(|n| !matches!(n.value, NodeValue::Null))
            .collect()),
        Err(e) => {
            let plain = e.without_snippet();
            let pos = plain.location().map(|l| pos_of(&l)).unwrap_or_default();
            Err(ParseError {
                pos,
                message: clean_message(&plain.to_string()),
            })
        }
    }
}

/// serde-saphyr renders `error: line 4 column 10: expected string scalar`; we print the
/// position ourselves, so keep only the message, in plain words where serde-saphyr's
/// would name its own internals (`DuplicateKeyPolicy`, budget breaches such as
/// `RecordedAnchorEvents { .. }`).
fn clean_message(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or(rendered);
    let mut msg = first.strip_prefix("error: ").unwrap_or(first);
    if let Some(rest) = msg.strip_prefix("line ")
        && let Some((_, tail)) = rest.split_once(": ")
        && rest.contains(" column ")
    {
        msg = tail;
    }
    // A trailing `at line 2, column 1`.
    if let Some((head, tail)) = msg.rsplit_once(" at line ")
        && tail.contains(", column ")
        && tail.chars().all(|c| {
            c.is_ascii_digit() || matches!(c, ',' | ' ' | 'c' | 'o' | 'l' | 'u' | 'm' | 'n')
        })
    {
        msg = head;
    }
    plain_words(msg.trim())
}

/// serde-saphyr's messages that speak of its options or internals, in words for someone
/// writing a configuration file.
fn plain_words(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("duplicate mapping key") {
        let key = rest
            .strip_prefix(": ")
            .and_then(|r| r.split_once(", set DuplicateKeyPolicy").map(|(k, _)| k));
        return match key {
            Some(k) => format!("the key {k:?} is written twice in one mapping: keep one"),
            None => "a key is written twice in one mapping: keep one".to_owned(),
        };
    }
    if msg == "alias references unknown anchor" {
        return "an alias (*name) names an anchor (&name) that is not defined before it in this document".to_owned();
    }
    if msg == "recursion limit exceeded" {
        return "the YAML is nested too deeply to read".to_owned();
    }
    if msg.starts_with("recursive references require") {
        return "an alias (*name) is used inside its own anchor (&name): YAML that refers to itself is not accepted".to_owned();
    }
    let budget = msg
        .strip_prefix("budget breached: ")
        .or_else(|| msg.strip_prefix("YAML document too large or too complex: "));
    let alias = msg.starts_with("alias replay") || msg.starts_with("alias expansion");
    if budget.is_some() || alias {
        let what = budget.unwrap_or(msg);
        let why = if alias || what.contains("Alias") || what.contains("Anchor") {
            "it uses anchors and aliases (&name, *name) too much"
        } else if what.starts_with("Depth") || what.contains("depth") {
            "it is nested too deeply"
        } else if what.starts_with("MergeKeys") {
            "it has too many merge keys (<<)"
        } else {
            "it has too many nodes or too much text"
        };
        return format!(
            "the YAML is too large or too complex to read: {why}; split it or write it out plainly"
        );
    }
    if let Some((head, _)) = msg.split_once(". If you just use !!binary") {
        return head.to_owned();
    }
    msg.to_owned()
}

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Splits `spec.routes[2].backends` into segments. Keys that hold dots cannot be written
/// this way; such keys (annotations) are addressed with `["a.b/c"]`.
pub fn split_path(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    let mut cur = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if !cur.is_empty() {
                    segs.push(Seg::Key(std::mem::take(&mut cur)));
                }
            }
            '[' => {
                if !cur.is_empty() {
                    segs.push(Seg::Key(std::mem::take(&mut cur)));
                }
                let mut inner = String::new();
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    inner.push(c);
                }
                if let Some(quoted) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    segs.push(Seg::Key(quoted.to_owned()));
                } else if let Ok(i) = inner.parse() {
                    segs.push(Seg::Index(i));
                } else {
                    segs.push(Seg::Key(inner));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        segs.push(Seg::Key(cur));
    }
    segs
}

impl Node {
    /// The node's child by key, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            NodeValue::Map(entries) => entries.iter().find(|(k, _, _)| k == key).map(|e| &e.2),
            _ => None,
        }
    }

    /// The node's string value, if it is a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The node at `path`, if the tree has it.
    pub fn at(&self, path: &str) -> Option<&Node> {
        let mut node = self;
        for seg in split_path(path) {
            node = match (&node.value, &seg) {
                (NodeValue::Map(entries), Seg::Key(k)) => {
                    entries.iter().find(|(key, _, _)| key == k).map(|e| &e.2)?
                }
                (NodeValue::Seq(items), Seg::Index(i)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// The position of the deepest node on `path` that exists: the key's position for a
    /// mapping entry (so errors point at `weight:`, not at its value), the item's for a
    /// sequence entry. A path that leaves the tree resolves to its nearest ancestor.
    pub fn locate(&self, path: &str) -> Pos {
        let mut node = self;
        let mut pos = self.pos;
        for seg in split_path(path) {
            let next = match (&node.value, &seg) {
                (NodeValue::Map(entries), Seg::Key(k)) => entries
                    .iter()
                    .find(|(key, _, _)| key == k)
                    .map(|(_, kpos, v)| (*kpos, v)),
                (NodeValue::Seq(items), Seg::Index(i)) => items.get(*i).map(|v| (v.pos, v)),
                _ => None,
            };
            match next {
                Some((p, n)) => {
                    pos = p;
                    node = n;
                }
                None => break,
            }
        }
        pos
    }

    /// Converts to JSON for decoding into the serde mirror types.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::from(*i),
            NodeValue::UInt(u) => Value::from(*u),
            NodeValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(f.to_string())),
            NodeValue::Str(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, _, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_paths() {
        let text = "a: 1\nspec:\n  routes:\n    - name: x\n      weight: 5\n    - name: y\n---\n";
        let docs = parse_documents(text).unwrap();
        assert_eq!(docs.len(), 1);
        let d = &docs[0];
        assert_eq!(d.locate("spec.routes[0].weight").line, 5);
        assert_eq!(d.locate("spec.routes[1]").line, 6);
        // Missing leaves resolve to the nearest ancestor.
        assert_eq!(d.locate("spec.routes[1].weight").line, 6);
        assert_eq!(d.locate("spec.nothing.here").line, 2);
    }

    #[test]
    fn parse_error_has_position() {
        let err = parse_documents("a: 1\nb: [1,\n").unwrap_err();
        assert_eq!(err.pos.line, 2);
        assert!(err.message.contains("bracket"), "{}", err.message);
    }

    #[test]
    fn quoted_path_segments() {
        assert_eq!(
            split_path("metadata.annotations[\"a.b/c\"]"),
            vec![
                Seg::Key("metadata".into()),
                Seg::Key("annotations".into()),
                Seg::Key("a.b/c".into())
            ]
        );
    }
}
