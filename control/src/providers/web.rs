//! The web provider (argo-reference §4.2): an HTTP request; the body's JSON, picked by a
//! k8s-style JSONPath, is the result; a body that is not JSON is the result as text.
//! A status outside 2xx is an Error, not a failure.

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
    match &w.json_path {
        None => Outcome::Value(json),
        Some(p) => match pick(&json, p) {
            Ok(v) => Outcome::Value(v),
            Err(e) => Outcome::Error(e),
        },
    }
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
}
