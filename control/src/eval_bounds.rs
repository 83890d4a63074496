//! Bounds on what evaluating a condition may cost, checked before expr-lang sees it.
//!
//! * Depth: expr-lang parses, evaluates and drops expressions recursively, so about 700
//!   nested brackets (or a long chain of operators) overflow a thread's stack and abort
//!   the process. [`check_depth`] refuses them with the config crate's check, the one
//!   `weir check` runs ([`weir_config::analysis::check_expression_depth`]).
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

/// Checks the nesting of `code` and returns it with its comments blanked out.
///
/// # Errors
/// Too deep or too complex an expression, in words.
pub(crate) fn check_depth(code: &str) -> Result<String, String> {
    weir_config::analysis::check_expression_depth(code).map_err(|e| e.to_string())
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
