//! Bounds on an expression's depth, checked before expr-lang sees it: expr-lang parses,
//! compiles, evaluates and drops expressions recursively, so about 700 nested brackets
//! (or a long chain of operators) overflow a thread's stack and abort the process.
//! [`check_expression_depth`] refuses, without recursing, an expression nested deeper
//! than [`MAX_EXPRESSION_NESTING`] brackets, or whose operators could make a syntax tree
//! deeper than [`MAX_EXPRESSION_COMPLEXITY`]. It is used when a metric is decoded
//! (`weir check`, loading) and before a condition is evaluated.

/// Why an expression is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExpressionError {
    /// Brackets nested deeper than [`MAX_EXPRESSION_NESTING`].
    #[error("it is nested more than {MAX_EXPRESSION_NESTING} brackets deep")]
    TooDeep,
    /// A syntax tree that could be deeper than [`MAX_EXPRESSION_COMPLEXITY`].
    #[error(
        "it is too complex: its syntax tree could be more than {MAX_EXPRESSION_COMPLEXITY} deep"
    )]
    TooComplex,
    /// expr-lang's compiler refused it.
    #[error("not a valid expression: {0}")]
    Invalid(String),
    /// expr-lang's compiler panicked on it.
    #[error("not a valid expression: expr-lang cannot compile it ({0}); write it another way")]
    CompilerPanic(String),
}

/// Brackets nested deeper than this are refused.
pub const MAX_EXPRESSION_NESTING: usize = 100;
/// A bound on the depth of the syntax tree an expression makes (nested brackets plus the
/// operators in each); deeper expressions are refused.
pub const MAX_EXPRESSION_COMPLEXITY: usize = 1_000;

/// The stack an expression is compiled on: expressions within these bounds need a
/// fraction of it, in debug builds too.
pub const EXPRESSION_STACK: usize = 32 << 20;

/// Compiles `code` with expr-lang, bounded: too deep an expression is refused before
/// expr-lang sees it, and the compile runs on a stack of [`EXPRESSION_STACK`] bytes
/// inside `catch_unwind`, so that a panic in expr-lang (it panics on some map literals)
/// is an error, not a crash.
///
/// # Errors
/// What is wrong with the expression, in words for the user.
pub fn compile_expression(code: &str) -> Result<(), ExpressionError> {
    let blank = check_expression_depth(code)?;
    stacker::grow(EXPRESSION_STACK, || {
        match std::panic::catch_unwind(|| expr::compile(&blank).map(drop)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ExpressionError::Invalid(e.to_string())),
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".to_owned());
                Err(ExpressionError::CompilerPanic(why))
            }
        }
    })
}

/// Words that are operators or make a syntax tree deeper.
const WORD_OPS: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "contains",
    "matches",
    "startsWith",
    "endsWith",
    "if",
    "else",
    "let",
];

/// One bracket level while measuring.
#[derive(Default)]
struct Level {
    /// Operators and groups in the current comma-separated part.
    ops: usize,
    /// The deepest group in the current part.
    child: usize,
    /// The deepest part so far.
    best: usize,
}

impl Level {
    fn end_part(&mut self) {
        self.best = self.best.max(self.ops + self.child);
        self.ops = 0;
        self.child = 0;
    }
}

/// Checks, without recursing, the nesting of `code` and returns it with its comments blanked out (each
/// comment character a space, newlines kept, so that positions do not move).
///
/// # Errors
/// Nesting deeper than [`MAX_EXPRESSION_NESTING`] brackets, or a syntax tree that could be deeper
/// than [`MAX_EXPRESSION_COMPLEXITY`].
pub fn check_expression_depth(code: &str) -> Result<String, ExpressionError> {
    let bytes = code.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut levels = vec![Level::default()];
    let mut i = 0;
    let mut in_op = false;
    while i < bytes.len() {
        let c = bytes[i];
        // Strings: copied as they are; nothing inside counts.
        if matches!(c, b'"' | b'\'' | b'`') {
            let quote = c;
            out.push(c);
            i += 1;
            while i < bytes.len() {
                let d = bytes[i];
                out.push(d);
                i += 1;
                if d == b'\\' && quote != b'`' && i < bytes.len() {
                    out.push(bytes[i]);
                    i += 1;
                } else if d == quote {
                    break;
                }
            }
            in_op = false;
            continue;
        }
        // Comments: blanked.
        if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
            continue;
        }
        if c == b'/' && bytes.get(i + 1) == Some(&b'*') {
            let end = code[i + 2..]
                .find("*/")
                .map_or(bytes.len(), |e| i + 2 + e + 2);
            while i < end {
                out.push(if bytes[i] == b'\n' { b'\n' } else { b' ' });
                i += 1;
            }
            continue;
        }
        let level = levels.last_mut().expect("the outermost level stays");
        match c {
            b'(' | b'[' | b'{' => {
                level.ops += 1;
                levels.push(Level::default());
                if levels.len() - 1 > MAX_EXPRESSION_NESTING {
                    return Err(ExpressionError::TooDeep);
                }
                in_op = false;
            }
            b')' | b']' | b'}' => {
                if levels.len() > 1 {
                    let mut done = levels.pop().expect("more than one level");
                    done.end_part();
                    let parent = levels.last_mut().expect("the outermost level stays");
                    parent.child = parent.child.max(1 + done.best);
                }
                in_op = false;
            }
            b',' | b';' => {
                level.end_part();
                in_op = false;
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'!' | b'<' | b'>' | b'=' | b'&' | b'|'
            | b'?' | b':' | b'.' => {
                if !in_op {
                    level.ops += 1;
                }
                in_op = true;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c == b'#' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'$' | b'#'))
                {
                    i += 1;
                }
                if WORD_OPS.contains(&&code[start..i]) {
                    level.ops += 1;
                }
                out.extend_from_slice(&bytes[start..i]);
                in_op = false;
                continue;
            }
            _ => in_op = false,
        }
        out.push(c);
        i += 1;
    }
    // Brackets left open (expr-lang will say so) close here.
    while levels.len() > 1 {
        let mut done = levels.pop().expect("more than one level");
        done.end_part();
        let parent = levels.last_mut().expect("the outermost level stays");
        parent.child = parent.child.max(1 + done.best);
    }
    let mut root = levels.pop().expect("the outermost level");
    root.end_part();
    if root.best > MAX_EXPRESSION_COMPLEXITY {
        return Err(ExpressionError::TooComplex);
    }
    // Only ASCII bytes were changed, into ASCII spaces: still UTF-8.
    Ok(String::from_utf8_lossy(&out).into_owned())
}
