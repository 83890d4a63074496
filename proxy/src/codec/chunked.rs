//! The chunked transfer coding (RFC 9112 §7.1): finds where a chunked message ends while
//! its bytes pass through unchanged, or decodes it into plain data.

/// What went wrong in a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkError(pub(crate) &'static str);

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad chunked body: {}", self.0)
    }
}

impl std::error::Error for ChunkError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    FinalLf,
    Done,
}

/// Longest chunk-size line (with extensions) or trailer line accepted.
const MAX_LINE: usize = 4096;

/// A chunked-body state machine.
#[derive(Debug, Clone)]
pub(crate) struct Chunked {
    state: State,
    size: u64,
    digits: u8,
    line: usize,
    data: u64,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::Size,
            size: 0,
            digits: 0,
            line: 0,
            data: 0,
        }
    }
}

impl Chunked {
    /// Chunk data seen so far, in bytes (sizes, extensions and trailers not counted).
    pub(crate) fn data(&self) -> u64 {
        self.data
    }

    /// Whether the last chunk and trailers have been seen.
    pub(crate) fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes bytes of the message from `input`; returns how many belong to it (all of
    /// them unless it ended inside `input`). With `decode`, the chunk data is appended
    /// there (sizes, extensions and trailers are dropped).
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        mut decode: Option<&mut Vec<u8>>,
    ) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => return Ok(i),
                State::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        if self.digits >= 15 {
                            return Err(ChunkError("chunk size too large"));
                        }
                        self.size = self.size * 16 + d;
                        self.digits += 1;
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => {
                        self.state = State::Ext;
                        self.line = 0;
                    }
                    b'\r' if self.digits > 0 => self.state = State::SizeLf,
                    _ => return Err(ChunkError("expected a chunk size")),
                },
                State::Ext => {
                    self.line += 1;
                    if self.line > MAX_LINE {
                        return Err(ChunkError("chunk extension too long"));
                    }
                    if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if b == b'\n' {
                        return Err(ChunkError("bare LF in chunk header"));
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError("expected LF after chunk size"));
                    }
                    self.digits = 0;
                    self.state = if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                }
                State::Data => {
                    let n = (input.len() - i).min(self.size as usize);
                    if let Some(out) = decode.as_deref_mut() {
                        out.extend_from_slice(&input[i..i + n]);
                    }
                    self.size -= n as u64;
                    self.data += n as u64;
                    i += n;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError("expected CRLF after chunk data"));
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError("expected CRLF after chunk data"));
                    }
                    self.state = State::Size;
                }
                State::TrailerStart => {
                    if b == b'\r' {
                        self.state = State::FinalLf;
                    } else {
                        self.state = State::Trailer;
                        self.line = 1;
                    }
                }
                State::Trailer => {
                    self.line += 1;
                    if self.line > MAX_LINE {
                        return Err(ChunkError("trailer line too long"));
                    }
                    if b == b'\r' {
                        self.state = State::TrailerLf;
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkError("expected LF after trailer"));
                    }
                    self.state = State::TrailerStart;
                }
                State::FinalLf => {
                    if b != b'\n' {
                        return Err(ChunkError("expected LF at the end of the body"));
                    }
                    self.state = State::Done;
                    return Ok(i + 1);
                }
            }
            i += 1;
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(parts: &[&[u8]]) -> (usize, bool, Vec<u8>) {
        let mut c = Chunked::default();
        let mut out = Vec::new();
        let mut used = 0;
        for p in parts {
            used += c.feed(p, Some(&mut out)).unwrap();
        }
        (used, c.done(), out)
    }

    #[test]
    fn whole_and_split_bodies() {
        let body =
            b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (used, done, out) = run(&[body]);
        assert!(done);
        assert_eq!(used, body.len() - 4, "stops at the end of the message");
        assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
        // Byte by byte gives the same.
        let parts: Vec<&[u8]> = body[..body.len() - 4].chunks(1).collect();
        let (used, done, out2) = run(&parts);
        assert!(done);
        assert_eq!(used, body.len() - 4);
        assert_eq!(out2, out);
    }

    #[test]
    fn bad_bodies() {
        for bad in [
            &b"x\r\n"[..],
            b"4\r\nWikiXX",
            b"\r\n",
            b"4\nWiki",
            b"fffffffffffffffff\r\n",
        ] {
            let mut c = Chunked::default();
            assert!(
                c.feed(bad, None).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn incomplete_is_not_done() {
        let mut c = Chunked::default();
        assert_eq!(c.feed(b"4\r\nWi", None).unwrap(), 5);
        assert!(!c.done());
    }
}
