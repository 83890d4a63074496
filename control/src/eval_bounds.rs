//! Bounds on what evaluating a condition may cost, checked before expr-lang sees it.
//!
//! * Depth: expr-lang parses, evaluates and drops expressions recursively, so about 700
//!   nested brackets (or a long chain of operators) overflow a thread's stack and abort
//!   the process. [`check_depth`] refuses, without recursing, an expression nested
//!   deeper than [`MAX_NESTING`] brackets, or whose operators could make a syntax tree
//!   deeper than [`MAX_COMPLEXITY`].
//! * Ranges: expr-lang makes `a..b` into a list of every integer from a to b, so
//!   `len(0..9223372036854775806)` panics and `len(1..10000000000)` aborts the process
//!   when the allocation fails. Go's expr, which Argo uses, stops such programs with its
//!   memory budget. [`bound_ranges`] rewrites every range `a..b` into a call of
//!   [`RANGE_FN`], which makes the same list but refuses ranges whose elements, added
//!   up over one evaluation, pass [`MAX_RANGE_ELEMENTS`]. The bounds of a range may come
//!   from data (`0..asInt(result)`), so this is checked as the condition runs.
//!
//! The operands of each range are found by parsing with expr-lang's own grammar
//! (`expr.pest`, copied) and precedences (below, copied from its `pratt.rs`).

use std::cell::{Cell, RefCell};
use std::sync::LazyLock;

use expr::Value;
use pest::Parser as _;
use pest::iterators::Pair;
use pest::pratt_parser::PrattParser;

/// Brackets nested deeper than this are refused.
pub(crate) const MAX_NESTING: usize = 100;
/// A bound on the depth of the syntax tree an expression makes (nested brackets plus the
/// operators in each); deeper expressions are refused.
pub(crate) const MAX_COMPLEXITY: usize = 1_000;
/// The elements that the ranges of one evaluation may hold in all (Go expr's default
/// memory budget).
pub(crate) const MAX_RANGE_ELEMENTS: u64 = 1_000_000;
/// The function every range becomes.
pub(crate) const RANGE_FN: &str = "__weir_range";

#[allow(unreachable_pub, missing_docs)]
mod grammar {
    #[derive(pest_derive::Parser)]
    #[grammar = "expr.pest"]
    pub struct ExprGrammar;
}
use grammar::{ExprGrammar, Rule};

/// expr-lang's precedences (its `pratt.rs`), lowest first.
static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    use Rule::*;
    use pest::pratt_parser::{Assoc::*, Op};
    PrattParser::new()
        .op(Op::postfix(ternary))
        .op(Op::postfix(pipe))
        .op(Op::infix(or_op, Left))
        .op(Op::infix(and_op, Left))
        .op(Op::infix(equal_op, Left)
            | Op::infix(comparison_op, Left)
            | Op::infix(not_in_op, Left)
            | Op::infix(string_op, Left))
        .op(Op::infix(range_op, Left))
        .op(Op::infix(addition_op, Left))
        .op(Op::prefix(negation_op))
        .op(Op::infix(multiplication_op, Left))
        .op(Op::prefix(sign_op))
        .op(Op::infix(exponent_op, Right))
        .op(Op::postfix(default_op))
        .op(Op::postfix(method_call)
            | Op::postfix(membership_op)
            | Op::postfix(index_op)
            | Op::postfix(opt_membership_op)
            | Op::postfix(opt_index_op)
            | Op::postfix(range_start_op)
            | Op::postfix(range_end_op))
});

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

/// Checks the nesting of `code` and returns it with its comments blanked out (each
/// comment character a space, newlines kept, so that positions do not move).
///
/// # Errors
/// Nesting deeper than [`MAX_NESTING`] brackets, or a syntax tree that could be deeper
/// than [`MAX_COMPLEXITY`].
pub(crate) fn check_depth(code: &str) -> Result<String, String> {
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
                if levels.len() - 1 > MAX_NESTING {
                    return Err(format!(
                        "it is nested more than {MAX_NESTING} brackets deep"
                    ));
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
    if root.best > MAX_COMPLEXITY {
        return Err(format!(
            "it is too complex: its syntax tree could be more than {MAX_COMPLEXITY} deep"
        ));
    }
    // Only ASCII bytes were changed, into ASCII spaces: still UTF-8.
    String::from_utf8(out).map_err(|e| e.to_string())
}

/// A range found: where its operands and its operator are.
struct Range {
    lhs: (usize, usize),
    op: (usize, usize),
    rhs: (usize, usize),
}

/// `code` (comments blanked out) with every range `a..b` made a call of [`RANGE_FN`]:
/// `__weir_range(a, b)`.
///
/// # Errors
/// Text that expr-lang's grammar does not accept (the caller lets expr-lang say why).
pub(crate) fn bound_ranges(code: &str) -> Result<String, String> {
    if !code.contains("..") {
        return Ok(code.to_owned());
    }
    let pairs = ExprGrammar::parse(Rule::full, code).map_err(|e| e.to_string())?;
    let found = RefCell::new(Vec::new());
    for p in pairs {
        visit(p, code, &found);
    }
    let ranges = found.into_inner();
    if ranges.is_empty() {
        return Ok(code.to_owned());
    }
    // (position, order, text): at one position, closing comes before opening.
    let mut edits: Vec<(usize, u8, &str)> = Vec::new();
    let mut replaced: Vec<(usize, usize)> = Vec::new();
    for r in &ranges {
        edits.push((r.lhs.0, 1, "__weir_range("));
        edits.push((r.rhs.1, 0, ")"));
        replaced.push(r.op);
    }
    edits.sort_by_key(|(pos, order, _)| (*pos, *order));
    replaced.sort_unstable();
    let mut out = String::with_capacity(code.len() + ranges.len() * 16);
    let (mut e, mut r) = (0, 0);
    let mut i = 0;
    while i <= code.len() {
        while e < edits.len() && edits[e].0 == i {
            out.push_str(edits[e].2);
            e += 1;
        }
        if r < replaced.len() && replaced[r].0 == i {
            out.push(',');
            i = replaced[r].1;
            r += 1;
            continue;
        }
        let Some(c) = code[i..].chars().next() else {
            break;
        };
        out.push(c);
        i += c.len_utf8();
    }
    Ok(out)
}

/// Finds the ranges in `pair` and below.
fn visit(pair: Pair<'_, Rule>, code: &str, found: &RefCell<Vec<Range>>) {
    match pair.as_rule() {
        Rule::expr => {
            expr_span(pair, code, found);
        }
        // expr-lang takes the first term of a map literal's value and never evaluates
        // the rest, so a range there makes no list; a call put there would not run.
        Rule::map => {}
        _ => {
            for child in pair.into_inner() {
                visit(child, code, found);
            }
        }
    }
}

/// The span of the expression `pair`, recording its ranges (and those inside it).
fn expr_span(pair: Pair<'_, Rule>, code: &str, found: &RefCell<Vec<Range>>) -> (usize, usize) {
    let span = |p: &Pair<'_, Rule>| (p.as_span().start(), p.as_span().end());
    PRATT
        .map_primary(|p| {
            let mut s = span(&p);
            if p.as_rule() == Rule::expr {
                // `( expr )`: the brackets belong to the operand.
                let before = code[..s.0].trim_end();
                let after = code[s.1..].trim_start();
                if before.ends_with('(') && after.starts_with(')') {
                    s = (before.len() - 1, code.len() - after.len() + 1);
                }
            }
            visit(p, code, found);
            s
        })
        .map_prefix(|op, rhs| {
            let start = op.as_span().start();
            visit(op, code, found);
            (start, rhs.1)
        })
        .map_postfix(|lhs, op| {
            let end = op.as_span().end();
            visit(op, code, found);
            (lhs.0, end)
        })
        .map_infix(|lhs, op, rhs| {
            if op.as_rule() == Rule::range_op {
                found.borrow_mut().push(Range {
                    lhs,
                    op: span(&op),
                    rhs,
                });
            }
            (lhs.0, rhs.1)
        })
        .parse(pair.into_inner())
}

/// Whether expr-lang's grammar, as copied, accepts `code` (for the test that it is
/// expr-lang's).
#[cfg(test)]
pub(crate) fn grammar_accepts(code: &str) -> bool {
    ExprGrammar::parse(Rule::full, code).is_ok()
}

thread_local! {
    /// Range elements made so far by the evaluation running on this thread.
    static RANGE_ELEMENTS: Cell<u64> = const { Cell::new(0) };
}

/// Starts an evaluation's range budget afresh.
pub(crate) fn reset_budget() {
    RANGE_ELEMENTS.with(|c| c.set(0));
}

/// [`RANGE_FN`]: `start..end`, as expr-lang makes it, within the budget.
pub(crate) fn range(args: &[Value]) -> Result<Value, expr::Error> {
    let (start, end) = match args {
        [Value::Integer(s), Value::Integer(e)] => (*s, *e),
        [s, e] => {
            return Err(expr::Error::ExprError(format!(
                "invalid range: {s:?}..{e:?}"
            )));
        }
        _ => return Err(expr::Error::ExprError("a range has two ends".into())),
    };
    let n = u64::try_from((i128::from(end) - i128::from(start) + 1).max(0)).unwrap_or(u64::MAX);
    let used = RANGE_ELEMENTS.with(|c| {
        let used = c.get().saturating_add(n);
        c.set(used);
        used
    });
    if used > MAX_RANGE_ELEMENTS {
        return Err(expr::Error::ExprError(format!(
            "memory budget exceeded: the ranges of a condition may hold {MAX_RANGE_ELEMENTS} elements in all, and {start}..{end} has {n}"
        )));
    }
    Ok(Value::Array((start..=end).map(Value::Integer).collect()))
}
