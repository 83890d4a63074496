//! Condition evaluation with the expr language, as Argo does (argo-reference §3.5, §3.12):
//! `result` plus Argo's helpers `asInt`, `asFloat`, `isNaN`, `isInf`, `isNil`, `default`.
//!
//! Evaluation is bounded ([`bounds`]): too deep an expression is refused before it is
//! parsed, ranges may not hold more than a million elements, and it runs on a stack of
//! its own ([`EVAL_STACK`]) inside `catch_unwind`, so that whatever the expression, the
//! worst it does is make its measurement an Error.

use std::sync::LazyLock;

#[path = "eval_bounds.rs"]
mod bounds;

use expr::{Context, Environment, Value};

/// The outcome of one measurement's conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Verdict {
    /// The success condition held (or no condition failed).
    Successful,
    /// The failure condition held, or the success condition did not.
    Failed,
    /// Both conditions given and neither held.
    Inconclusive,
}

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.add_function("asInt", |c| {
        let v = c.args.first().cloned().unwrap_or(Value::Nil);
        match v {
            Value::Integer(i) => Ok(Value::Integer(i)),
            Value::Float(f) => Ok(Value::Integer(f as i64)),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::Integer)
                .or_else(|_| s.trim().parse::<f64>().map(|f| Value::Integer(f as i64)))
                .map_err(|_| expr::Error::ExprError(format!("asInt: {s:?} is not a number"))),
            other => Err(expr::Error::ExprError(format!(
                "asInt: {other:?} is not a number"
            ))),
        }
    });
    env.add_function("asFloat", |c| {
        let v = c.args.first().cloned().unwrap_or(Value::Nil);
        match v {
            Value::Integer(i) => Ok(Value::Float(i as f64)),
            Value::Float(f) => Ok(Value::Float(f)),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .map(Value::Float)
                .map_err(|_| expr::Error::ExprError(format!("asFloat: {s:?} is not a number"))),
            other => Err(expr::Error::ExprError(format!(
                "asFloat: {other:?} is not a number"
            ))),
        }
    });
    env.add_function("isNaN", |c| match c.args.first() {
        Some(Value::Float(f)) => Ok(Value::Bool(f.is_nan())),
        Some(Value::Integer(_)) => Ok(Value::Bool(false)),
        other => Err(expr::Error::ExprError(format!(
            "isNaN: {other:?} is not a number"
        ))),
    });
    env.add_function("isInf", |c| match c.args.first() {
        Some(Value::Float(f)) => Ok(Value::Bool(f.is_infinite())),
        Some(Value::Integer(_)) => Ok(Value::Bool(false)),
        other => Err(expr::Error::ExprError(format!(
            "isInf: {other:?} is not a number"
        ))),
    });
    // Argo's quirk: isNil and default test the top-level result, whatever the argument.
    env.add_function("isNil", |c| {
        Ok(Value::Bool(c.ctx.get("result").is_none_or(Value::is_nil)))
    });
    env.add_function(bounds::RANGE_FN, |c| bounds::range(&c.args));
    #[cfg(test)]
    env.add_function("__weir_panic", |_| panic!("a function that panics"));
    env.add_function("default", |c| {
        let result = c.ctx.get("result").cloned().unwrap_or(Value::Nil);
        if result.is_nil() {
            Ok(c.args.get(1).cloned().unwrap_or(Value::Nil))
        } else {
            Ok(result)
        }
    });
    env
});

/// Turns a JSON value into an expr value. Numbers become floats, as Go's JSON decoding
/// and Prometheus vectors give them.
pub(crate) fn to_expr(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(to_expr).collect()),
        serde_json::Value::Object(o) => {
            Value::Map(o.iter().map(|(k, v)| (k.clone(), to_expr(v))).collect())
        }
    }
}

/// The stack an evaluation runs on: expressions within the bounds of [`bounds`] need a
/// fraction of it, in debug builds too.
pub(crate) const EVAL_STACK: usize = 32 << 20;

/// At most the first 200 characters of `code`, for messages.
fn shown(code: &str) -> String {
    match code.char_indices().nth(200) {
        Some((i, _)) => format!("{:?}...", &code[..i]),
        None => format!("{code:?}"),
    }
}

/// Runs `f` on a stack of [`EVAL_STACK`] bytes, with a fresh range budget; a panic is an
/// error saying so.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    stacker::grow(EVAL_STACK, || {
        bounds::reset_budget();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            tracing::error!("evaluating an expression panicked: {why}");
            Err(format!("the evaluation panicked: {why}"))
        })
    })
}

/// `code` made safe to run: checked for depth, comments blanked, ranges bounded.
///
/// # Errors
/// Too deep an expression, or one that does not parse.
fn prepare(code: &str) -> Result<String, String> {
    let blank =
        bounds::check_depth(code).map_err(|e| format!("{} is refused: {e}", shown(code)))?;
    bounds::bound_ranges(&blank).map_err(|parse| match expr::compile(&blank) {
        Err(e) => format!("{} could not be evaluated: {e}", shown(code)),
        Ok(_) => format!(
            "{} is refused: its ranges could not be bounded ({parse})",
            shown(code)
        ),
    })
}

/// Evaluates `code` with nothing in its context (a rangeQuery's times), bounded as
/// conditions are.
///
/// # Errors
/// A refused expression, a syntax or evaluation error, or a panic.
pub(crate) fn evaluate(code: &str) -> Result<Value, String> {
    guarded(|| {
        let code = prepare(code)?;
        ENV.eval(&code, &Context::default())
            .map_err(|e| e.to_string())
    })
}

/// Evaluates one condition against `result`.
///
/// # Errors
/// A syntax or evaluation error, or a result that is not a boolean.
pub(crate) fn condition(code: &str, result: &Value) -> Result<bool, String> {
    guarded(|| {
        let prepared = prepare(code).map_err(|e| format!("condition {e}"))?;
        let mut ctx = Context::default();
        ctx.insert("result", result.clone());
        match ENV.eval(&prepared, &ctx) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "condition {} gave {other:?}, not true or false",
                shown(code)
            )),
            Err(e) => {
                let mut msg = format!("condition {} could not be evaluated: {e}", shown(code));
                if result.is_nil() || matches!(result, Value::Array(a) if a.is_empty()) {
                    msg.push_str(" (no data came back from the provider)");
                }
                Err(msg)
            }
        }
    })
}

/// Argo's table (argo-reference §3.5): the verdict for a value, given the conditions.
///
/// # Errors
/// When a condition cannot be evaluated: the measurement is an Error, not a failure.
pub(crate) fn verdict(
    success: Option<&str>,
    failure: Option<&str>,
    result: &Value,
) -> Result<Verdict, String> {
    match (success, failure) {
        (None, None) => Ok(Verdict::Successful),
        (Some(s), None) => Ok(if condition(s, result)? {
            Verdict::Successful
        } else {
            Verdict::Failed
        }),
        (None, Some(f)) => Ok(if condition(f, result)? {
            Verdict::Failed
        } else {
            Verdict::Successful
        }),
        (Some(s), Some(f)) => {
            if condition(f, result)? {
                Ok(Verdict::Failed)
            } else if condition(s, result)? {
                Ok(Verdict::Successful)
            } else {
                Ok(Verdict::Inconclusive)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(j: serde_json::Value) -> Value {
        to_expr(&j)
    }

    /// argo-reference §3.5 as a table.
    #[test]
    fn verdict_table() {
        let r = v(json!([0.97]));
        let s = Some("result[0] >= 0.95");
        let f_true = Some("result[0] > 0.5");
        let f_false = Some("result[0] > 0.99");
        let s_false = Some("result[0] >= 0.99");
        assert_eq!(
            verdict(None, None, &r),
            Ok(Verdict::Successful),
            "no conditions: Successful"
        );
        assert_eq!(verdict(s, None, &r), Ok(Verdict::Successful));
        assert_eq!(
            verdict(s_false, None, &r),
            Ok(Verdict::Failed),
            "only success, false: Failed"
        );
        assert_eq!(verdict(None, f_true, &r), Ok(Verdict::Failed));
        assert_eq!(verdict(None, f_false, &r), Ok(Verdict::Successful));
        assert_eq!(
            verdict(s, f_true, &r),
            Ok(Verdict::Failed),
            "both true: Failed wins"
        );
        assert_eq!(verdict(s, f_false, &r), Ok(Verdict::Successful));
        assert_eq!(verdict(s_false, f_false, &r), Ok(Verdict::Inconclusive));
    }

    #[test]
    fn errors_are_not_failures() {
        // Index out of range on an empty vector is an Error.
        assert!(
            verdict(Some("result[0] >= 0.95"), None, &v(json!([])))
                .unwrap_err()
                .contains("no data")
        );
        assert!(
            verdict(Some("result >= "), None, &v(json!(1))).is_err(),
            "bad syntax"
        );
        assert!(verdict(Some("unknown_name > 1"), None, &v(json!(1))).is_err());
        assert!(
            verdict(Some("result[0]"), None, &v(json!([1]))).is_err(),
            "not a boolean"
        );
    }

    #[test]
    fn nan_inf_and_helpers() {
        let nan = Value::Array(vec![Value::Float(f64::NAN)]);
        assert_eq!(
            verdict(Some("result[0] >= 0.95"), None, &nan),
            Ok(Verdict::Failed),
            "NaN >= x is false"
        );
        assert_eq!(
            verdict(Some("result[0] >= 0.95"), Some("result[0] < 0.5"), &nan),
            Ok(Verdict::Inconclusive)
        );
        assert_eq!(
            verdict(Some("isNaN(result[0]) || result[0] >= 0.95"), None, &nan),
            Ok(Verdict::Successful)
        );
        let inf = Value::Array(vec![Value::Float(f64::INFINITY)]);
        assert_eq!(
            verdict(Some("result[0] >= 0.95"), None, &inf),
            Ok(Verdict::Successful)
        );
        assert_eq!(condition("isInf(result[0])", &inf), Ok(true));
        assert_eq!(condition("asInt(result) == 5", &v(json!("5"))), Ok(true));
        assert_eq!(
            condition("asFloat(result) > 0.5", &v(json!("0.75"))),
            Ok(true)
        );
        assert!(condition("asFloat(result) > 0.5", &v(json!("abc"))).is_err());
        assert_eq!(
            condition("default(result, 0) < 0.05", &Value::Nil),
            Ok(true)
        );
        assert_eq!(condition("isNil(result)", &Value::Nil), Ok(true));
        assert_eq!(
            condition("isNil(1)", &Value::Nil),
            Ok(true),
            "isNil looks at result, not its argument"
        );
        assert_eq!(
            condition("default(1, 5) == 7", &v(json!(7))),
            Ok(true),
            "default gives result when it is set"
        );
        assert_eq!(
            condition("all(result, # < 1000)", &v(json!([1, 2, 999]))),
            Ok(true)
        );
        assert_eq!(
            condition("len(result) == 0 || result[0] > 1", &v(json!([]))),
            Ok(true)
        );
        assert_eq!(
            condition("result == 'It worked!'", &v(json!("It worked!"))),
            Ok(true)
        );
    }

    /// Issue 10, item 5: what used to panic the control loop, abort the process on an
    /// allocation, or overflow its stack, is an error of that one condition.
    #[test]
    fn ranges_are_bounded() {
        let huge = condition("len(0..9223372036854775806) > 0", &Value::Nil).unwrap_err();
        assert!(huge.contains("1000000"), "{huge}");
        let big = condition("len(1..10000000000) > 0", &Value::Nil).unwrap_err();
        assert!(big.contains("memory budget"), "{big}");
        assert_eq!(
            condition("len(1..1000000) == 1000000", &Value::Nil),
            Ok(true)
        );
        assert!(condition("len(0..1000000) > 0", &Value::Nil).is_err());
        // The budget is over the whole evaluation, ranges made in a loop included.
        assert!(
            condition("len(map(1..2000, {len(1..1000)})) > 0", &Value::Nil)
                .unwrap_err()
                .contains("memory budget")
        );
        assert_eq!(
            condition("len(map(1..10, {len(1..1000)})) == 10", &Value::Nil),
            Ok(true)
        );
        // Bounds from data are checked as the condition runs.
        let from_data = condition("len(0..asInt(result)) > 0", &to_expr(&json!("9000000000")));
        assert!(from_data.unwrap_err().contains("1000000"));
        assert!(
            condition("len(1..result) > 0", &to_expr(&json!(1.5)))
                .unwrap_err()
                .contains("invalid range")
        );
    }

    #[test]
    fn bounded_ranges_mean_what_they_meant() {
        let cases = [
            "1..3",
            "len(-2..2)",
            "(1..3)[0]",
            "2 in 1..3",
            "5..1",
            "1..2..3",
            "1 + 1..2 * 3",
            "-1..1",
            "map(1..3, {len(1..#)})",
            "all(1..5, {# > 0})",
            "(1)..(3)",
            "[1..2, 3..4]",
            "1..3 | map(# * 2)",
            "true ? 1..2 : 3..4",
            "nil ?? 1..2",
            "let x = 1..3; len(x)",
            "if true { 1..2 } else { 0..1 }",
            "'a..b' + \"..\" + `..`",
            "1 /* a..b */ .. /* c */ 3",
            "1..3 // ..\n == [1, 2, 3]",
            "{a: 1..2}.a",
            "{a: 0..9223372036854775806}.a",
            "filter(0..9, {# % 2 == 0})[1:3]",
        ];
        for code in cases {
            let plain = expr::eval(code, &Context::default()).map(|v| format!("{v:?}"));
            let ours = evaluate(code).map(|v| format!("{v:?}"));
            assert_eq!(ours, plain.map_err(|e| e.to_string()), "{code}");
        }
    }

    #[test]
    fn deep_expressions_are_refused_before_they_are_parsed() {
        // On a thread with a small stack, which these would overflow were they parsed.
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| {
                for n in [101, 700, 5000, 100_000] {
                    let code = format!("{}1{} > 0", "(".repeat(n), ")".repeat(n));
                    let err = condition(&code, &Value::Nil).unwrap_err();
                    assert!(err.contains("nested more than 100"), "{err}");
                    assert!(err.len() < 400, "the message shows a little of the code");
                    let code = format!("{}true{}", "!(".repeat(n), ")".repeat(n));
                    assert!(condition(&code, &Value::Nil).is_err());
                }
                for chain in ["+1", "**1", "[0]", ".a", " ?? 1"] {
                    let code = format!("1{} > 0", chain.repeat(5000));
                    let err = condition(&code, &Value::Nil).unwrap_err();
                    assert!(err.contains("too complex"), "{chain}: {err}");
                }
                let ternaries = format!("{}true", "true ? true : ".repeat(5000));
                assert!(
                    condition(&ternaries, &Value::Nil)
                        .unwrap_err()
                        .contains("too complex")
                );
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn expressions_within_the_bounds_still_run() {
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| {
                let code = format!("{}1{} == 1", "(".repeat(100), ")".repeat(100));
                assert_eq!(condition(&code, &Value::Nil), Ok(true));
                let code = format!("1{} == 900", "+1".repeat(899));
                assert_eq!(condition(&code, &Value::Nil), Ok(true));
                // A long flat condition is not deep.
                let code = (0..100)
                    .map(|i| format!("result[{}] >= 0.5", i % 3))
                    .collect::<Vec<_>>()
                    .join(" && ");
                assert_eq!(condition(&code, &to_expr(&json!([1, 1, 1]))), Ok(true));
                let list = format!("len([{}]) == 10000", vec!["1"; 10000].join(","));
                assert_eq!(condition(&list, &Value::Nil), Ok(true));
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_panic_is_an_error_of_its_condition() {
        let err = condition("__weir_panic() > 0", &Value::Nil).unwrap_err();
        assert!(err.contains("panicked"), "{err}");
        // expr-lang's compiler panics on a map literal whose values are not constants.
        let err = condition("{a: [1]}.a == [1]", &Value::Nil).unwrap_err();
        assert!(err.contains("panicked"), "{err}");
        // The next evaluation is not affected.
        assert_eq!(condition("result > 0", &to_expr(&json!(1))), Ok(true));
    }

    /// The copied grammar accepts what expr-lang accepts.
    #[test]
    fn the_grammar_is_expr_langs() {
        let cases = [
            "1..2",
            "a..b",
            "result[0] >= 0.95",
            "1 ..",
            "..2",
            "1...2",
            "1. .2",
            "[1,2,3][1:]",
            "x?.y ?? 1",
            "f(1, {#})",
            "not x in [1]",
            "x not in [1]",
            "`raw\nline`",
            "b'\\x00'",
            "if a { b } else if c { d } else { e }",
            "let a = 1; let b = 2; a + b",
            "0x_2A",
            "{a: 1, b: 'x'}",
            "a | map(.b)",
            "((1)",
            "\"unterminated",
        ];
        for code in cases {
            let ours = bounds::grammar_accepts(code);
            assert_eq!(ours, expr::compile(code).is_ok(), "{code:?}");
        }
    }
}
