//! Measurement providers: weir's own measurements, Prometheus, an HTTP request (web), and
//! a local command (Argo's job). Each turns one metric into an [`Outcome`].

mod http;
pub mod job;
pub mod judge;
pub mod prometheus;
pub mod web;

use std::sync::Arc;

use weir_config::analysis::{Provider, WeirMetric, WeirProvider};

use crate::analysis::Outcome;
use crate::ports::{MetricsSource, Served};

pub use http::HttpClient;
pub use judge::{Judges, RunRef};

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
    /// The canary-vs-stable judges of the runs in progress.
    pub judges: Judges,
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
    /// When the new revision was made (ms): its measurements do not look back past it.
    pub canary_since: Option<u64>,
    /// Now (ms), on the control loop's clock.
    pub now: u64,
    /// Blue-green: the new revision serves as preview, then as active, in one update,
    /// so its requests count whatever role they were served under.
    pub blue_green: bool,
}

impl Providers {
    /// Takes one measurement of metric `run.metric` of a run.
    pub async fn measure(&self, provider: &Provider, subject: &Subject, run: &RunRef) -> Outcome {
        match provider {
            Provider::Weir(w) if w.metric == WeirMetric::CanaryVsStable => {
                judge::measure(self.metrics.as_ref(), &self.judges, w, subject, run)
            }
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
    // The canary's window starts no earlier than its revision: traffic the same image
    // had before (as stable, or in an earlier update) says nothing about this update.
    // The data plane counts in whole wall-clock seconds, the current one included, so the
    // window is the seconds from the one the update began in to the current one: a
    // window of `now - since` rounded up would miss the part of the first second after
    // `since` whenever the two are not aligned (and wait one interval more for data).
    let window = match s.canary_since {
        Some(since) if w.canary && since <= s.now => w.window.min(std::time::Duration::from_secs(
            s.now / 1000 - since / 1000 + 1,
        )),
        _ => w.window,
    };
    // A canary is judged on what it served as the canary: the same image's requests as
    // the stable revision (just before this update, say) are another population.
    let served = match (s.blue_green, w.canary) {
        (true, _) => Served::Any,
        (false, true) => Served::AsCanary,
        (false, false) => Served::AsStable,
    };
    let since = if w.canary { s.canary_since } else { None };
    let sample = metrics.sample(&s.service, revision, served, window, since, w.quantile);
    let value = match w.metric {
        WeirMetric::CanaryVsStable => {
            return Outcome::Error(
                "canary-vs-stable is measured with its run's evidence (Providers::measure)".into(),
            );
        }
        WeirMetric::Requests => sample.requests as f64,
        WeirMetric::RequestRate => sample.requests as f64 / sample.seconds.max(1.0),
        _ if sample.requests < w.min_requests => {
            return Outcome::Wait(format!(
                "{} of {} requests to {} {revision} in the last {}s",
                sample.requests,
                w.min_requests,
                if w.canary { "canary" } else { "stable" },
                window.as_secs()
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use weir_config::analysis::{WeirMetric, WeirProvider};

    use super::*;
    use crate::ports::Sample;

    /// Answers 1 request per second of window, all successful, and records the windows
    /// asked for.
    #[derive(Default)]
    struct Fake(Mutex<Vec<(String, Served, Duration)>>);

    impl MetricsSource for Fake {
        fn sample(
            &self,
            _: &str,
            revision: &str,
            served: Served,
            window: Duration,
            _: Option<u64>,
            _: f64,
        ) -> Sample {
            self.0
                .lock()
                .unwrap()
                .push((revision.to_owned(), served, window));
            Sample {
                requests: window.as_secs(),
                failures: 0,
                latency: Some(0.01),
                seconds: window.as_secs_f64(),
            }
        }
    }

    fn provider(canary: bool) -> WeirProvider {
        WeirProvider {
            metric: WeirMetric::SuccessRate,
            quantile: 0.99,
            canary,
            window: Duration::from_secs(60),
            min_requests: 20,
            judge: weir_config::analysis::decode_metric(
                &serde_json::json!({"name": "m", "provider": {"weir": {"metric": "canary-vs-stable"}}}),
                false,
            )
            .ok()
            .and_then(|m| match m.provider {
                weir_config::analysis::Provider::Weir(w) => Some(w.judge),
                _ => None,
            })
            .expect("the judge's defaults"),
        }
    }

    #[test]
    fn the_canary_window_starts_at_its_revision() {
        let subject = Subject {
            service: "app".into(),
            canary: "app:v2".into(),
            stable: "app:v1".into(),
            canary_since: Some(100_000),
            now: 112_500,
            blue_green: false,
        };
        let m = Fake::default();
        // 12.5 s since the revision was made: a 13 s window, below minRequests.
        let out = weir(&m, &provider(true), &subject);
        assert_eq!(
            out,
            Outcome::Wait("13 of 20 requests to canary app:v2 in the last 13s".into())
        );
        // The stable revision keeps the whole window.
        assert_eq!(
            weir(&m, &provider(false), &subject),
            Outcome::Value(serde_json::json!([1.0]))
        );
        // Long after the revision was made, the configured window.
        let later = Subject {
            now: 1_000_000,
            ..subject
        };
        assert_eq!(
            weir(&m, &provider(true), &later),
            Outcome::Value(serde_json::json!([1.0]))
        );
        // Blue-green counts the new revision's requests in either role.
        let bg = Subject {
            blue_green: true,
            ..later.clone()
        };
        weir(&m, &provider(true), &bg);
        let asked: Vec<(String, Served, u64)> =
            m.0.lock()
                .unwrap()
                .iter()
                .map(|(r, s, w)| (r.clone(), *s, w.as_secs()))
                .collect();
        assert_eq!(
            asked,
            vec![
                ("app:v2".into(), Served::AsCanary, 13),
                ("app:v1".into(), Served::AsStable, 60),
                ("app:v2".into(), Served::AsCanary, 60),
                ("app:v2".into(), Served::Any, 60),
            ]
        );
    }

    #[test]
    fn the_canary_window_covers_the_whole_second_its_revision_began_in() {
        // The revision began at 100.7 s; at 101.3 s, 0.6 s later, the canary's requests
        // are in the data plane's seconds 100 and 101: a 2 s window, not 1 s.
        let subject = Subject {
            service: "app".into(),
            canary: "app:v2".into(),
            stable: "app:v1".into(),
            canary_since: Some(100_700),
            now: 101_300,
            blue_green: false,
        };
        let m = Fake::default();
        weir(&m, &provider(true), &subject);
        let asked = m.0.lock().unwrap()[0].2;
        assert_eq!(asked, Duration::from_secs(2));
    }
}
