//! The Prometheus provider (argo-reference §4.1, §3.12): an instant or range query; a
//! vector is a list of numbers (labels dropped), a scalar a number, a range matrix one
//! flat list of every sample. An empty vector is an empty list, so `result[0]` makes the
//! measurement an Error, not a failure.

use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;
use weir_config::analysis::PrometheusProvider;

use super::HttpClient;
use crate::analysis::{Numbers, Outcome};

/// Takes one measurement.
pub async fn measure(client: &HttpClient, p: &PrometheusProvider) -> Outcome {
    let base = p.address.trim_end_matches('/');
    let mut params = vec![("query", p.query.clone())];
    let path = match &p.range {
        None => "/api/v1/query",
        Some((start, end, step)) => {
            let (s, e) = match (time_expr(start), time_expr(end)) {
                (Ok(s), Ok(e)) => (s, e),
                (Err(err), _) | (_, Err(err)) => return Outcome::Error(err),
            };
            params.push(("start", format!("{s:.3}")));
            params.push(("end", format!("{e:.3}")));
            params.push(("step", format!("{}", step.as_secs_f64())));
            "/api/v1/query_range"
        }
    };
    let query: String = params
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let url = format!("{base}{path}?{query}");
    let mut req = http::Request::builder().uri(&url);
    for (k, v) in &p.headers {
        req = req.header(k, v);
    }
    if let Some((u, pw)) = &p.basic_auth {
        use std::fmt::Write as _;
        let mut token = String::new();
        let _ = write!(token, "{u}:{pw}");
        req = req.header(
            http::header::AUTHORIZATION,
            format!("Basic {}", base64(token.as_bytes())),
        );
    }
    let req = match req.body(Full::new(Bytes::new())) {
        Ok(r) => r,
        Err(e) => return Outcome::Error(format!("bad Prometheus address {base:?}: {e}")),
    };
    let (status, body) = match client.send(req, p.timeout, p.insecure).await {
        Ok(r) => r,
        Err(e) => return Outcome::Error(format!("Prometheus at {base}: {e}")),
    };
    let json: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return Outcome::Error(format!(
                "Prometheus at {base} answered {status} with no JSON"
            ));
        }
    };
    if json.get("status").and_then(Value::as_str) != Some("success") {
        let err = json
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("query failed");
        return Outcome::Error(format!("Prometheus: {err}"));
    }
    shape(json.get("data").unwrap_or(&Value::Null))
}

/// Argo's `result` shapes, as numbers: NaN, +Inf and -Inf stay numbers (a sample whose
/// value is missing or not a number is NaN).
pub fn shape(data: &Value) -> Outcome {
    let num = |v: &Value| -> f64 {
        v.as_array()
            .and_then(|pair| pair.get(1))
            .and_then(Value::as_str)
            .and_then(|s| match s {
                "NaN" => Some(f64::NAN),
                "+Inf" | "Inf" => Some(f64::INFINITY),
                "-Inf" => Some(f64::NEG_INFINITY),
                s => s.parse().ok(),
            })
            .unwrap_or(f64::NAN)
    };
    let result = data.get("result");
    match data.get("resultType").and_then(Value::as_str) {
        Some("vector") => Outcome::Numbers(Numbers::List(
            result
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|s| num(s.get("value").unwrap_or(&Value::Null)))
                        .collect()
                })
                .unwrap_or_default(),
        )),
        Some("scalar") => Outcome::Numbers(Numbers::Scalar(num(result.unwrap_or(&Value::Null)))),
        Some("matrix") => Outcome::Numbers(Numbers::List(
            result
                .and_then(Value::as_array)
                .map(|series| {
                    series
                        .iter()
                        .flat_map(|s| {
                            s.get("values")
                                .and_then(Value::as_array)
                                .cloned()
                                .unwrap_or_default()
                        })
                        .map(|v| num(&v))
                        .collect()
                })
                .unwrap_or_default(),
        )),
        other => Outcome::Error(format!(
            "Prometheus gave a {} result, which has no number",
            other.unwrap_or("missing")
        )),
    }
}

/// `now() - duration("5m")` and the like, as Unix seconds.
fn time_expr(code: &str) -> Result<f64, String> {
    let v = crate::eval::evaluate(code).map_err(|e| format!("rangeQuery time {code:?}: {e}"))?;
    match v.as_datetime() {
        Some(t) => Ok(t.timestamp_millis() as f64 / 1000.0),
        None => Err(format!("rangeQuery time {code:?} is not a time")),
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn result_shapes() {
        let vector = json!({"resultType": "vector", "result": [
            {"metric": {"a": "1"}, "value": [1.0, "0.99"]},
            {"metric": {"a": "2"}, "value": [1.0, "0.97"]}]});
        let list = |v: &[f64]| Outcome::Numbers(Numbers::List(v.to_vec()));
        assert_eq!(shape(&vector), list(&[0.99, 0.97]));
        assert_eq!(
            shape(&json!({"resultType": "vector", "result": []})),
            list(&[])
        );
        assert_eq!(
            shape(&json!({"resultType": "scalar", "result": [1.0, "0.5"]})),
            Outcome::Numbers(Numbers::Scalar(0.5))
        );
        let matrix = json!({"resultType": "matrix", "result": [
            {"values": [[1, "1"], [2, "2"]]}, {"values": [[1, "3"]]}]});
        assert_eq!(shape(&matrix), list(&[1.0, 2.0, 3.0]));
        assert!(matches!(
            shape(&json!({"resultType": "string", "result": [1, "x"]})),
            Outcome::Error(_)
        ));
        // NaN and ±Inf are numbers, recorded as Prometheus writes them.
        let Outcome::Numbers(n) = shape(
            &json!({"resultType": "vector", "result": [{"value": [1, "NaN"]}, {"value": [1, "+Inf"]}, {"value": [1, "-Inf"]}, {"value": [1, "1"]}]}),
        ) else {
            panic!("numbers")
        };
        assert_eq!(n.render(), "[NaN,+Inf,-Inf,1.0]");
        let Numbers::List(l) = &n else {
            panic!("a list")
        };
        assert!(l[0].is_nan() && l[1] == f64::INFINITY && l[2] == f64::NEG_INFINITY);
    }

    #[test]
    fn helpers() {
        assert_eq!(urlencode("a b{c=\"d\"}"), "a%20b%7Bc%3D%22d%22%7D");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        let t = time_expr("now() - duration(\"5m\")").unwrap();
        assert!(t > 1.7e9);
    }
}
