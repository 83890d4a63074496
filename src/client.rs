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
use weir_control::api::{AnalysisRunView, RevisionStats, RolloutView};
use weir_control::state::RolloutPhase;

/// Why a command could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `--admin` is not a URL.
    #[error("bad admin URL {base}: {source}")]
    BadUrl {
        /// The URL given.
        base: String,
        /// Why it does not parse.
        source: http::Error,
    },
    /// Nothing answered within 10 s.
    #[error("weir's admin API at {0} did not answer in 10s")]
    Timeout(String),
    /// Nothing listens there.
    #[error(
        "cannot reach weir's admin API at {0}: is `weir serve` running? (--admin URL picks another address)"
    )]
    Unreachable(String),
    /// The answer broke off.
    #[error("the admin API's answer broke off: {0}")]
    Body(#[source] hyper::Error),
    /// No rollout has that name.
    #[error("rollout {0:?} not found")]
    NotFound(String),
    /// weir refused the action, saying why (409: it does not apply now).
    #[error("{0}")]
    Refused(String),
    /// An answer that is not a rollout's state (another program on that port?).
    #[error("the admin API's answer is not a rollout's state: {0}")]
    Decode(#[source] serde_json::Error),
    /// Any other answer.
    #[error("the admin API answered {status}: {body}")]
    Unexpected {
        /// The HTTP status.
        status: u16,
        /// What it said.
        body: Value,
    },
}

/// A client of the admin API at `base` (e.g. `http://127.0.0.1:9901`).
pub struct AdminClient {
    base: String,
    token: Option<String>,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    /// A client for `base`, sending `token` (`Authorization: Bearer`) with actions.
    pub fn new(base: &str, token: Option<String>) -> Self {
        AdminClient {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn call(&self, method: http::Method, path: &str) -> Result<(u16, Value), ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = http::Request::builder().method(method.clone()).uri(&url);
        if method == http::Method::POST
            && let Some(t) = &self.token
        {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|source| ClientError::BadUrl {
                base: self.base.clone(),
                source,
            })?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.http.request(req))
            .await
            .map_err(|_| ClientError::Timeout(self.base.clone()))?
            .map_err(|_| ClientError::Unreachable(self.base.clone()))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(ClientError::Body)?
            .to_bytes();
        let v = serde_json::from_slice(&body)
            .unwrap_or(Value::String(String::from_utf8_lossy(&body).into_owned()));
        Ok((status, v))
    }

    /// One rollout's state.
    pub async fn get(&self, name: &str) -> Result<RolloutView, ClientError> {
        match self
            .call(http::Method::GET, &format!("/api/v1/rollouts/{name}"))
            .await?
        {
            (200, v) => serde_json::from_value(v).map_err(ClientError::Decode),
            (404, _) => Err(ClientError::NotFound(name.to_owned())),
            (status, body) => Err(ClientError::Unexpected { status, body }),
        }
    }

    /// Every rollout's state.
    pub async fn list(&self) -> Result<Vec<RolloutView>, ClientError> {
        match self.call(http::Method::GET, "/api/v1/rollouts").await? {
            (200, v @ Value::Array(_)) => serde_json::from_value(v).map_err(ClientError::Decode),
            (status, body) => Err(ClientError::Unexpected { status, body }),
        }
    }

    /// Runs an action (`promote`, `promote?full=true`, `abort`, ...).
    pub async fn act(&self, name: &str, action: &str) -> Result<RolloutView, ClientError> {
        match self
            .call(
                http::Method::POST,
                &format!("/api/v1/rollouts/{name}/{action}"),
            )
            .await?
        {
            (200, v) => serde_json::from_value(v).map_err(ClientError::Decode),
            (404, _) => Err(ClientError::NotFound(name.to_owned())),
            (401, _) => Err(ClientError::Refused(
                "weir wants the admin token: pass --token-file PATH or set WEIR_ADMIN_TOKEN".into(),
            )),
            (409, v) => Err(match v.get("error").and_then(Value::as_str) {
                Some(why) => ClientError::Refused(why.to_owned()),
                None => ClientError::Unexpected {
                    status: 409,
                    body: v,
                },
            }),
            (status, body) => Err(ClientError::Unexpected { status, body }),
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

fn phase_name(v: &RolloutView) -> &'static str {
    v.phase.map_or("", RolloutPhase::as_str)
}

fn pct(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("{p:.0}")
    } else {
        format!("{p}")
    }
}

fn stats_line(st: &RevisionStats) -> String {
    let sr = st
        .success_rate
        .map_or("-".to_owned(), |r| format!("{:.2}%", r * 100.0));
    let p99 = st
        .p99
        .map_or("-".to_owned(), |p| format!("{:.1}ms", p * 1000.0));
    format!("{:.1} req/s, success {sr}, p99 {p99}", st.rps)
}

/// Renders `get rollout` as `kubectl argo rollouts get rollout` does.
pub fn render_rollout(v: &RolloutView) -> String {
    let mut o = String::new();
    let phase = phase_name(v);
    let blue_green = v.strategy == "blueGreen";
    let _ = writeln!(o, "Name:            {}", v.name);
    let _ = writeln!(o, "Namespace:       default");
    let _ = writeln!(o, "Status:          {} {phase}", icon(phase));
    if !v.message.is_empty() {
        let _ = writeln!(o, "Message:         {}", v.message);
    }
    let _ = writeln!(
        o,
        "Strategy:        {}",
        if blue_green { "BlueGreen" } else { "Canary" }
    );
    if !blue_green {
        let step = v.current_step_index.unwrap_or(0);
        let count = v.step_count;
        let _ = writeln!(o, "  Step:          {}/{count}", step.min(count));
        let _ = writeln!(o, "  SetWeight:     {}", pct(v.set_weight));
        let _ = writeln!(o, "  ActualWeight:  {}", pct(v.actual_weight));
    }
    let stable = v.stable_revision.as_deref().unwrap_or("");
    let canary = v.canary_revision.as_deref().unwrap_or("");
    let (stable_tag, canary_tag) = if blue_green {
        ("active", "preview")
    } else {
        ("stable", "canary")
    };
    let _ = writeln!(o, "Images:          {stable} ({stable_tag})");
    if !canary.is_empty() {
        let _ = writeln!(o, "                 {canary} ({canary_tag})");
    }
    let stats = v.stats.as_ref();
    let _ = writeln!(o);
    let _ = writeln!(o, "{:<44} {:<12} {:<15} INFO", "NAME", "KIND", "STATUS");
    let _ = writeln!(
        o,
        "⟳ {:<42} {:<12} {} {:<13}",
        v.name,
        "Rollout",
        icon(phase),
        phase
    );
    let mut revs: Vec<(&str, &str, Option<&RevisionStats>)> = Vec::new();
    if !canary.is_empty() {
        revs.push((canary, canary_tag, stats.and_then(|s| s.canary.as_ref())));
    }
    revs.push((stable, stable_tag, stats.and_then(|s| s.stable.as_ref())));
    let nrev = revs.len();
    for (i, (image, tag, st)) in revs.iter().enumerate() {
        let last = i + 1 == nrev;
        let (branch, pad) = if last {
            ("└──", "   ")
        } else {
            ("├──", "│  ")
        };
        let number = v
            .revisions
            .iter()
            .find(|r| r.image == *image)
            .map_or(0, |r| r.number);
        let _ = writeln!(o, "{branch}# revision:{number}");
        // The runs that measured this revision (older revisions' runs are not shown).
        let run_lines: Vec<&AnalysisRunView> = v
            .analysis_runs
            .iter()
            .chain(v.past_analysis_runs.iter())
            .filter(|r| r.revision == Some(number))
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
                    st.map(|st| format!(", {}", stats_line(st)))
                        .unwrap_or_default()
                );
            } else {
                let r = run_lines[c - 1];
                let ph = r.phase.as_str();
                let info = format!(
                    "✔ {},✖ {},? {},⚠ {}{}",
                    r.successful,
                    r.failed,
                    r.inconclusive,
                    r.error,
                    r.waiting
                        .as_ref()
                        .map(|w| format!(" (waiting: {w})"))
                        .unwrap_or_default()
                );
                let _ = writeln!(
                    o,
                    "{pad}{twig}α {:<37} {:<12} {} {:<13} {info}",
                    r.name,
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
pub fn render_list(items: &[RolloutView]) -> String {
    let mut o = format!(
        "{:<24} {:<10} {:<12} {:<6} {:<10} {:<24} {}\n",
        "NAME", "STRATEGY", "STATUS", "STEP", "SET-WEIGHT", "STABLE", "CANARY"
    );
    for v in items {
        let canary = v.strategy != "blueGreen";
        let step = match v.current_step_index {
            Some(i) if canary => format!("{}/{}", i.min(v.step_count), v.step_count),
            _ => "-".into(),
        };
        let _ = writeln!(
            o,
            "{:<24} {:<10} {:<12} {:<6} {:<10} {:<24} {}",
            v.name,
            if canary { "Canary" } else { "BlueGreen" },
            phase_name(v),
            step,
            pct(v.set_weight),
            v.stable_revision.as_deref().unwrap_or(""),
            v.canary_revision.as_deref().unwrap_or("")
        );
    }
    o
}
