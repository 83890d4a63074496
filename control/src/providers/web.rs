//! The web provider (argo-reference §4.2): an HTTP request; the body's JSON, picked by a
//! k8s-style JSONPath, is the result, recorded as JSON the way Argo's Go encoder writes it
//! (a string keeps its quotes); a body that is not JSON is the result as text, recorded
//! as it is. A status outside 2xx is an Error, not a failure.

use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;
use weir_config::analysis::WebProvider;

use super::HttpClient;
use crate::analysis::Outcome;

/// Takes one measurement.
pub async fn measure(client: &HttpClient, w: &WebProvider) -> Outcome {
    let mut req = http::Request::builder()
        .method(w.method.as_str())
        .uri(&w.url);
    for (k, v) in &w.headers {
        req = req.header(k, v);
    }
    let body = if let Some(j) = &w.json_body {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
        Bytes::from(j.to_string())
    } else {
        Bytes::from(w.body.clone().unwrap_or_default())
    };
    let req = match req.body(Full::new(body)) {
        Ok(r) => r,
        Err(e) => return Outcome::Error(format!("bad request to {}: {e}", w.url)),
    };
    let (status, body) = match client.send(req, w.timeout, w.insecure).await {
        Ok(r) => r,
        Err(e) => return Outcome::Error(format!("{} {}: {e}", w.method, w.url)),
    };
    if !status.is_success() {
        return Outcome::Error(format!("{} {} answered {status}", w.method, w.url));
    }
    let json: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        // Not JSON: the body is the result, as a string.
        Err(_) => {
            return Outcome::Value(Value::String(String::from_utf8_lossy(&body).into_owned()));
        }
    };
    let picked = match &w.json_path {
        None => json,
        Some(p) => match pick(&json, p) {
            Ok(v) => v,
            Err(e) => return Outcome::Error(e),
        },
    };
    let shown = go_json(&picked);
    Outcome::Shown(picked, shown)
}

/// `v` as JSON, written as Go's `encoding/json` writes the value it decoded: numbers as
/// float64 in the shortest form (`1.0` is `1`, `1e21` is `1e+21`), object keys sorted,
/// and `<`, `>`, `&`, U+2028 and U+2029 escaped. Written by hand because the recorded
/// value must match Argo's byte for byte, and serde_json formats floats and escapes
/// differently (no crate mimics Go's encoder).
pub(crate) fn go_json(v: &Value) -> String {
    let mut out = String::new();
    write_go_json(v, &mut out);
    out
}

fn write_go_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&go_float(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => write_go_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_string(k, out);
                out.push(':');
                write_go_json(&map[k], out);
            }
            out.push('}');
        }
    }
}

/// A float64 as Go's JSON encoder writes it: plain decimals, except below 1e-6 or from
/// 1e21 on, where the exponent form is used (`1e-7`, `1e+21`).
fn go_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
            _ => s,
        }
    } else {
        format!("{f}")
    }
}

fn write_go_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Applies a Kubernetes JSONPath (`{$.data.ok}`, or without braces); the first match.
///
/// # Errors
/// A bad path, or no match.
pub(crate) fn pick(json: &Value, path: &str) -> Result<Value, String> {
    let p = path.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(p)
        .trim();
    let p = if p.starts_with('$') {
        p.to_owned()
    } else {
        format!(
            "${}",
            if p.starts_with('.') {
                p.to_owned()
            } else {
                format!(".{p}")
            }
        )
    };
    let compiled =
        serde_json_path::JsonPath::parse(&p).map_err(|e| format!("jsonPath {path:?}: {e}"))?;
    compiled
        .query(json)
        .all()
        .first()
        .map(|v| (*v).clone())
        .ok_or_else(|| format!("jsonPath {path:?} matched nothing"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_paths() {
        let doc =
            json!({"data": {"ok": true, "rate": 0.99, "list": [3, 4]}, "message": "It worked!"});
        assert_eq!(pick(&doc, "{$.data.ok}").unwrap(), json!(true));
        assert_eq!(pick(&doc, "{$.message}").unwrap(), json!("It worked!"));
        assert_eq!(pick(&doc, "{.data.rate}").unwrap(), json!(0.99));
        assert_eq!(pick(&doc, "{$.data.list[1]}").unwrap(), json!(4));
        assert_eq!(pick(&doc, "{$}").unwrap(), doc);
        assert!(pick(&doc, "{$.nothing}").is_err());
    }

    #[test]
    fn values_are_written_as_go_writes_them() {
        assert_eq!(go_json(&json!("1")), r#""1""#);
        assert_eq!(go_json(&json!(1.0)), "1");
        assert_eq!(go_json(&json!(-1.1)), "-1.1");
        assert_eq!(go_json(&json!(1e21)), "1e+21");
        assert_eq!(go_json(&json!(1e-7)), "1e-7");
        assert_eq!(go_json(&json!(123456789.0)), "123456789");
        assert_eq!(go_json(&json!(0.000001)), "0.000001");
        assert_eq!(
            go_json(&json!({"b": [1, true, null], "a": "x<y & \"z\"\n"})),
            r#"{"a":"x\u003cy \u0026 \"z\"\n","b":[1,true,null]}"#
        );
    }
}
