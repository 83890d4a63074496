//! Measurement providers: weir's own measurements, Prometheus, an HTTP request (web), and
//! a local command (Argo's job). Each turns one metric into an [`Outcome`].

mod http;
pub mod job;
pub mod prometheus;
pub mod web;

use std::sync::Arc;

use weir_config::analysis::{Provider, WeirMetric, WeirProvider};

use crate::analysis::Outcome;
use crate::ports::MetricsSource;

pub use http::HttpClient;

/// What providers need from outside.
#[derive(Clone)]
pub struct Providers {
    /// The data plane's measurements.
    pub metrics: Arc<dyn MetricsSource>,
    /// HTTP(S) client for prometheus and web.
    pub http: HttpClient,
    /// `http://host:port` of a plain listener of weir, given to jobs as `http_proxy` so
    /// that service names (`my-app-canary`) reach the right revision.
    pub proxy_url: Option<String>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("proxy_url", &self.proxy_url)
            .finish_non_exhaustive()
    }
}

/// Which revisions a measurement is about: the Rollout (= Service) name and the images
/// of the canary (new) and stable revisions.
#[derive(Clone, Debug)]
pub struct Subject {
    /// The Rollout's name.
    pub service: String,
    /// The new revision's image.
    pub canary: String,
    /// The stable revision's image.
    pub stable: String,
}

impl Providers {
    /// Takes one measurement.
    pub async fn measure(&self, provider: &Provider, subject: &Subject) -> Outcome {
        match provider {
            Provider::Weir(w) => weir(self.metrics.as_ref(), w, subject),
            Provider::Prometheus(p) => prometheus::measure(&self.http, p).await,
            Provider::Web(w) => web::measure(&self.http, w).await,
            Provider::Job(j) => job::measure(j, self.proxy_url.as_deref()).await,
        }
    }
}

/// The built-in provider: a window of the data plane's own measurements. Below
/// `minRequests` it gives no verdict and says what it waits for.
pub fn weir(metrics: &dyn MetricsSource, w: &WeirProvider, s: &Subject) -> Outcome {
    let revision = if w.canary { &s.canary } else { &s.stable };
    let sample = metrics.sample(&s.service, revision, w.window, w.quantile);
    let value = match w.metric {
        WeirMetric::Requests => sample.requests as f64,
        WeirMetric::RequestRate => sample.requests as f64 / sample.seconds.max(1.0),
        _ if sample.requests < w.min_requests => {
            return Outcome::Wait(format!(
                "{} of {} requests to {} {revision} in the last {}s",
                sample.requests,
                w.min_requests,
                if w.canary { "canary" } else { "stable" },
                w.window.as_secs()
            ));
        }
        WeirMetric::SuccessRate => {
            (sample.requests - sample.failures) as f64 / sample.requests as f64
        }
        WeirMetric::ErrorRate => sample.failures as f64 / sample.requests as f64,
        WeirMetric::Latency => match sample.latency {
            Some(l) => l,
            None => return Outcome::Wait(format!("no requests to {revision} yet")),
        },
    };
    Outcome::Value(serde_json::json!([value]))
}
