//! Splitting a YAML file into the text of each document, without parsing it, so that a
//! document whose text did not change need not be parsed again (see
//! [`crate::load::Loader`]).
//!
//! A line that starts with `---` followed by a space, a tab or the end of the line starts
//! a document. YAML forbids such a line inside any scalar (the spec's `c-forbidden`), so
//! it is a document start wherever it is. Anything this splitter is not sure of sends the
//! whole file to the parser in one piece, as it was always read: directives (`%YAML`),
//! document end markers (`...`), byte order marks, lone carriage returns, and anything that
//! may be an anchor, an alias or a merge key (`&a`, `*a`, `<<`), whose limits are counted
//! per file (see [`super::node::MAX_ALIAS_EVENTS`]).

/// The text of one document of a file and where it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece<'a> {
    /// The document's text: its `---` line (none for a file's first document) to the line
    /// before the next `---`.
    pub text: &'a str,
    /// Lines of the file before it.
    pub line_offset: u32,
}

/// The most pieces a file is split into; more (a storm of `---`) is parsed whole, so that
/// the parser's own limit on documents per file still applies.
pub const MAX_PIECES: usize = 1_000_000;

/// The documents of `text`, in order, or `None` when the file has to be parsed whole.
/// Pieces that hold only comments or blank lines are kept: they parse to nothing.
pub fn split(text: &str) -> Option<Vec<Piece<'_>>> {
    let bytes = text.as_bytes();
    if may_need_whole_file(bytes) {
        return None;
    }
    let mut pieces = Vec::new();
    let (mut start, mut start_line) = (0usize, 0u32);
    let (mut at, mut line) = (0usize, 0u32);
    while at < bytes.len() {
        let end = memchr_newline(bytes, at);
        let l = &bytes[at..end];
        if l.starts_with(b"...") && is_marker_end(l, 3) {
            return None;
        }
        if l.starts_with(b"---") && is_marker_end(l, 3) && at > start {
            pieces.push(Piece {
                text: &text[start..at],
                line_offset: start_line,
            });
            start = at;
            start_line = line;
        }
        if l.first() == Some(&b'%') {
            return None;
        }
        at = end + 1;
        line = line.checked_add(1)?;
    }
    pieces.push(Piece {
        text: &text[start..],
        line_offset: start_line,
    });
    (pieces.len() <= MAX_PIECES).then_some(pieces)
}

/// A marker (`---`, `...`) ends the line or is followed by a space or a tab.
fn is_marker_end(line: &[u8], n: usize) -> bool {
    matches!(line.get(n), None | Some(b' ' | b'\t' | b'\r'))
}

fn memchr_newline(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| from + i)
}

/// Whether the text has anything the splitter leaves to the parser: a byte order mark, a
/// carriage return that does not end a line, a merge key, or `&` / `*` after a space,
/// a line start or a flow indicator and before a non-space (what an anchor or an alias
/// looks like; in quoted text it is harmless and only costs the speed-up).
fn may_need_whole_file(bytes: &[u8]) -> bool {
    if bytes.starts_with("\u{feff}".as_bytes())
        || bytes.windows(3).any(|w| w == "\u{feff}".as_bytes())
    {
        return true;
    }
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\r' if bytes.get(i + 1) != Some(&b'\n') => return true,
            b'<' if bytes.get(i + 1) == Some(&b'<') => return true,
            b'&' | b'*' => {
                let before = if i == 0 { b'\n' } else { bytes[i - 1] };
                let after = bytes.get(i + 1).copied().unwrap_or(b' ');
                if matches!(
                    before,
                    b'\n' | b' ' | b'\t' | b'[' | b'{' | b',' | b':' | b'-' | b'?' | b'!'
                ) && !matches!(after, b' ' | b'\t' | b'\r' | b'\n')
                {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(t: &str) -> Vec<(&str, u32)> {
        split(t)
            .unwrap()
            .into_iter()
            .map(|p| (p.text, p.line_offset))
            .collect()
    }

    #[test]
    fn splits_at_document_starts() {
        assert_eq!(
            texts("a: 1\n---\nb: 2\nc: 3\n--- \nd: 4\n"),
            vec![("a: 1\n", 0), ("---\nb: 2\nc: 3\n", 1), ("--- \nd: 4\n", 4)]
        );
        assert_eq!(texts("---\na: 1\n"), vec![("---\na: 1\n", 0)]);
        assert_eq!(texts(""), vec![("", 0)]);
        // Not markers: more dashes, text after them, indented.
        assert_eq!(texts("a: ----\n----\n---x\n ---\n").len(), 1);
        assert_eq!(texts("a: 1\r\n---\r\nb: 2\r\n").len(), 2);
    }

    #[test]
    fn leaves_what_it_is_not_sure_of_to_the_parser() {
        for t in [
            "%YAML 1.2\n---\na: 1\n",
            "a: 1\n...\n---\nb: 2\n",
            "a: &x 1\nb: *x\n",
            "a: [*x]\n",
            "<<: {a: 1}\n",
            "\u{feff}a: 1\n",
            "a: 1\rb: 2\n",
        ] {
            assert!(split(t).is_none(), "{t:?}");
        }
        // Quoted wildcards and ampersands in words are not anchors.
        assert!(split("hostnames: [\"*.example.com\"]\nm: 'a & b'\n").is_some());
    }
}
