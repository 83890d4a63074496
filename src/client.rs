//! The commands that talk to a running weir through its admin API: `get rollout`,
//! `list rollouts`, `status`, and the actions. Output follows `kubectl argo rollouts`.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// A client of the admin API at `base` (e.g. `http://127.0.0.1:9901`).
pub struct AdminClient {
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    /// A client for `base`.
    pub fn new(base: &str) -> Self {
        AdminClient {
            base: base.trim_end_matches('/').to_owned(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn call(&self, method: http::Method, path: &str) -> Result<(u16, Value), String> {
        let url = format!("{}{path}", self.base);
        let req = http::Request::builder()
            .method(method)
            .uri(&url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("bad admin URL {}: {e}", self.base))?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.http.request(req))
            .await
            .map_err(|_| format!("weir's admin API at {} did not answer in 10s", self.base))?
            .map_err(|_| {
                format!(
                    "cannot reach weir's admin API at {}: is `weir serve` running? (--admin URL picks another address)",
                    self.base
                )
            })?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let v = serde_json::from_slice(&body)
            .unwrap_or(Value::String(String::from_utf8_lossy(&body).into_owned()));
        Ok((status, v))
    }

    /// One rollout's state.
    pub async fn get(&self, name: &str) -> Result<Value, String> {
        match self
            .call(http::Method::GET, &format!("/api/v1/rollouts/{name}"))
            .await?
        {
            (200, v) => Ok(v),
            (404, _) => Err(format!("rollout {name:?} not found")),
            (s, v) => Err(format!("the admin API answered {s}: {v}")),
        }
    }

    /// Every rollout's state.
    pub async fn list(&self) -> Result<Vec<Value>, String> {
        match self.call(http::Method::GET, "/api/v1/rollouts").await? {
            (200, Value::Array(a)) => Ok(a),
            (s, v) => Err(format!("the admin API answered {s}: {v}")),
        }
    }

    /// Runs an action (`promote`, `promote?full=true`, `abort`, ...).
    pub async fn act(&self, name: &str, action: &str) -> Result<Value, String> {
        match self
            .call(
                http::Method::POST,
                &format!("/api/v1/rollouts/{name}/{action}"),
            )
            .await?
        {
            (200, v) => Ok(v),
            (404, _) => Err(format!("rollout {name:?} not found")),
            (_, v) => Err(v
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string())),
        }
    }
}

fn icon(status: &str) -> &'static str {
    match status {
        "Healthy" | "Successful" => "✔",
        "Progressing" | "Running" => "◌",
        "Paused" => "॥",
        "Degraded" | "Failed" => "✖",
        "Error" => "⚠",
        "Inconclusive" => "?",
        "Pending" => "◷",
        _ => "•",
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn pct(v: Option<f64>) -> String {
    match v {
        Some(p) if p.fract() == 0.0 => format!("{p:.0}"),
        Some(p) => format!("{p}"),
        None => "-".into(),
    }
}

fn stats_line(st: Option<&Value>) -> String {
    let Some(st) = st else { return String::new() };
    let rps = st.get("rps").and_then(Value::as_f64).unwrap_or(0.0);
    let sr = st
        .get("successRate")
        .and_then(Value::as_f64)
        .map_or("-".to_owned(), |r| format!("{:.2}%", r * 100.0));
    let p99 = st
        .get("p99")
        .and_then(Value::as_f64)
        .map_or("-".to_owned(), |p| format!("{:.1}ms", p * 1000.0));
    format!("{rps:.1} req/s, success {sr}, p99 {p99}")
}

/// Renders `get rollout` as `kubectl argo rollouts get rollout` does.
pub fn render_rollout(v: &Value) -> String {
    let mut o = String::new();
    let phase = s(v, "phase");
    let strategy = s(v, "strategy");
    let _ = writeln!(o, "Name:            {}", s(v, "name"));
    let _ = writeln!(o, "Namespace:       default");
    let _ = writeln!(o, "Status:          {} {phase}", icon(phase));
    if !s(v, "message").is_empty() {
        let _ = writeln!(o, "Message:         {}", s(v, "message"));
    }
    let _ = writeln!(
        o,
        "Strategy:        {}",
        if strategy == "blueGreen" {
            "BlueGreen"
        } else {
            "Canary"
        }
    );
    if strategy == "canary" {
        let step = v
            .get("currentStepIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let count = v.get("stepCount").and_then(Value::as_u64).unwrap_or(0);
        let _ = writeln!(o, "  Step:          {}/{count}", step.min(count));
        let _ = writeln!(
            o,
            "  SetWeight:     {}",
            pct(v.get("setWeight").and_then(Value::as_f64))
        );
        let _ = writeln!(
            o,
            "  ActualWeight:  {}",
            pct(v.get("actualWeight").and_then(Value::as_f64))
        );
    }
    let stable = s(v, "stableRevision");
    let canary = s(v, "canaryRevision");
    let (stable_tag, canary_tag) = if strategy == "blueGreen" {
        ("active", "preview")
    } else {
        ("stable", "canary")
    };
    let _ = writeln!(o, "Images:          {stable} ({stable_tag})");
    if !canary.is_empty() {
        let _ = writeln!(o, "                 {canary} ({canary_tag})");
    }
    let stats = v.get("stats");
    let _ = writeln!(o);
    let _ = writeln!(o, "{:<44} {:<12} {:<15} INFO", "NAME", "KIND", "STATUS");
    let _ = writeln!(
        o,
        "⟳ {:<42} {:<12} {} {:<13}",
        s(v, "name"),
        "Rollout",
        icon(phase),
        phase
    );
    let runs: Vec<&Value> = v
        .get("analysisRuns")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let past: Vec<&Value> = v
        .get("pastAnalysisRuns")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let mut revs: Vec<(String, &str, Option<&Value>)> = Vec::new();
    if !canary.is_empty() {
        revs.push((
            canary.to_owned(),
            canary_tag,
            stats.and_then(|s| s.get("canary")),
        ));
    }
    revs.push((
        stable.to_owned(),
        stable_tag,
        stats.and_then(|s| s.get("stable")),
    ));
    let nrev = revs.len();
    for (i, (image, tag, st)) in revs.iter().enumerate() {
        let last = i + 1 == nrev;
        let (branch, pad) = if last {
            ("└──", "   ")
        } else {
            ("├──", "│  ")
        };
        let number = v
            .get("revisions")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|r| s(r, "image") == image))
            .and_then(|r| r.get("number"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let _ = writeln!(o, "{branch}# revision:{number}");
        // The runs that measured this revision (older revisions' runs are not shown).
        let run_lines: Vec<&&Value> = runs
            .iter()
            .chain(past.iter())
            .filter(|r| r.get("revision").and_then(Value::as_u64) == Some(number))
            .collect();
        let children = 1 + run_lines.len();
        for c in 0..children {
            let twig = if c + 1 == children {
                "└──"
            } else {
                "├──"
            };
            if c == 0 {
                let _ = writeln!(
                    o,
                    "{pad}{twig}⧉ {:<37} {:<12} {} {:<13} {tag}{}",
                    image,
                    "Revision",
                    icon("Healthy"),
                    "Healthy",
                    if st.is_some() {
                        format!(", {}", stats_line(*st))
                    } else {
                        String::new()
                    }
                );
            } else {
                let r = run_lines[c - 1];
                let ph = s(r, "phase");
                let info = format!(
                    "✔ {},✖ {},? {},⚠ {}{}",
                    r.get("successful").and_then(Value::as_u64).unwrap_or(0),
                    r.get("failed").and_then(Value::as_u64).unwrap_or(0),
                    r.get("inconclusive").and_then(Value::as_u64).unwrap_or(0),
                    r.get("error").and_then(Value::as_u64).unwrap_or(0),
                    r.get("waiting")
                        .and_then(Value::as_str)
                        .map(|w| format!(" (waiting: {w})"))
                        .unwrap_or_default()
                );
                let _ = writeln!(
                    o,
                    "{pad}{twig}α {:<37} {:<12} {} {:<13} {info}",
                    s(r, "name"),
                    "AnalysisRun",
                    icon(ph),
                    ph
                );
            }
        }
    }
    o
}

/// One line per rollout, as `kubectl argo rollouts list rollouts`.
pub fn render_list(items: &[Value]) -> String {
    let mut o = format!(
        "{:<24} {:<10} {:<12} {:<6} {:<10} {:<24} {}\n",
        "NAME", "STRATEGY", "STATUS", "STEP", "SET-WEIGHT", "STABLE", "CANARY"
    );
    for v in items {
        let strategy = if s(v, "strategy") == "blueGreen" {
            "BlueGreen"
        } else {
            "Canary"
        };
        let step = match (
            v.get("currentStepIndex").and_then(Value::as_u64),
            v.get("stepCount").and_then(Value::as_u64),
        ) {
            (Some(i), Some(n)) if strategy == "Canary" => format!("{}/{n}", i.min(n)),
            _ => "-".into(),
        };
        let _ = writeln!(
            o,
            "{:<24} {:<10} {:<12} {:<6} {:<10} {:<24} {}",
            s(v, "name"),
            strategy,
            s(v, "phase"),
            step,
            pct(v.get("setWeight").and_then(Value::as_f64)),
            s(v, "stableRevision"),
            s(v, "canaryRevision")
        );
    }
    o
}
