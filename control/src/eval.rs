//! Condition evaluation with the expr language, as Argo does (argo-reference §3.5, §3.12):
//! `result` plus Argo's helpers `asInt`, `asFloat`, `isNaN`, `isInf`, `isNil`, `default`.

use std::sync::LazyLock;

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

/// Evaluates one condition against `result`.
///
/// # Errors
/// A syntax or evaluation error, or a result that is not a boolean.
pub(crate) fn condition(code: &str, result: &Value) -> Result<bool, String> {
    let mut ctx = Context::default();
    ctx.insert("result", result.clone());
    match ENV.eval(code, &ctx) {
        Ok(Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!(
            "condition {code:?} gave {other:?}, not true or false"
        )),
        Err(e) => {
            let mut msg = format!("condition {code:?} could not be evaluated: {e}");
            if result.is_nil() || matches!(result, Value::Array(a) if a.is_empty()) {
                msg.push_str(" (no data came back from the provider)");
            }
            Err(msg)
        }
    }
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
}
