//! Cluster mode's measurements: analysis judges the sum of every replica's requests.
//!
//! Each replica keeps ten minutes of its own per-second counts and latencies (the
//! proxy's stats) and serves the closed seconds of a service on its admin API
//! (`GET /api/v1/cluster/seconds?service=S&from=N`). The leader pulls them from every
//! member every half second, asking only for the seconds it does not have yet, and
//! [`ClusterMetrics`] answers the control loop's reads with its own measurements plus
//! everything pulled: counts are summed, latency quantiles come from the merged
//! histograms (never an average of quantiles), and the canary-vs-stable judge gets the
//! cluster's per-second tallies.
//!
//! Why a pull over HTTP rather than publishing into etcd: the data is already kept where
//! it is recorded, etcd is meant for small metadata (10 KB a second per replica per
//! rollout would be most of its write traffic), and a new leader gets the whole history
//! at once instead of what is left in the watch's history. etcd still says who the
//! members are and where their admin APIs listen.
//!
//! A member that dies keeps counting: what was pulled from it stays until it is older
//! than the history. Its last half second or so is lost, and so are the seconds a member
//! that cannot be reached holds (it is tried again on the next pull). A member's open
//! second is read a second after it has ended (when every cell has surely closed it), so
//! the cluster's view trails a replica's own by one to two seconds. Cuts (`begin`) apply to the leader's own cells; other replicas'
//! seconds count from the second the update began in.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weir_control::cluster::EtcdLink;
use weir_control::{MetricsSource, Sample, Served, Tally};
use weir_proxy::{Role, SecondCounts, WindowSample};

use crate::wiring::{ProxyMetrics, add_at, roles_of};

/// How often the leader pulls.
const PULL_EVERY: Duration = Duration::from_millis(500);
/// How long one member may take to answer a pull (a busy replica's admin API may be
/// slow to answer; the pull is off every request's path).
const PULL_TIMEOUT: Duration = Duration::from_millis(2500);
/// Seconds of history kept per member (as the proxy's own).
const HISTORY: u64 = 600;
/// Each pull asks again for this many seconds before the last one it has: a second is
/// closed by a tick that a busy replica may run late, in one cell before another, so a
/// second first seen in part is read again whole (each second read replaces the one
/// kept, so nothing counts twice).
const OVERLAP: u64 = 10;

/// One member's seconds of one service: by (role, revision), then by second.
type Cells = BTreeMap<(Role, String), BTreeMap<u64, SecondCounts>>;

/// What was pulled from the other members.
#[derive(Debug, Default)]
struct Pulled {
    /// By member, then by service.
    members: BTreeMap<String, HashMap<String, Cells>>,
}

/// The answer of `GET /api/v1/cluster/seconds`: one cell's closed seconds.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CellSeconds {
    /// The role the requests were served in.
    pub role: Role,
    /// The revision (image).
    pub revision: String,
    /// Its closed seconds with requests.
    pub seconds: Vec<SecondCounts>,
}

/// The control loop's measurements in cluster mode: this replica's plus the others'.
pub struct ClusterMetrics {
    local: ProxyMetrics,
    pulled: Arc<Mutex<Pulled>>,
}

impl ClusterMetrics {
    /// Starts pulling the others' seconds (while this replica leads) through `link`'s
    /// member list; `services` says which services to pull (the Rollouts configured).
    pub fn start(
        local: ProxyMetrics,
        link: Arc<EtcdLink>,
        services: tokio::sync::watch::Receiver<Arc<weir_config::Model>>,
        stop: CancellationToken,
    ) -> ClusterMetrics {
        let pulled = Arc::new(Mutex::new(Pulled::default()));
        tokio::spawn(pull_loop(link, services, pulled.clone(), stop));
        ClusterMetrics { local, pulled }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pulled> {
        self.pulled.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every pulled second of `service`'s `revision` served in one of `roles`, from
    /// `first` on.
    fn each(
        &self,
        service: &str,
        revision: &str,
        roles: &[Role],
        first: u64,
        mut f: impl FnMut(&SecondCounts),
    ) {
        let p = self.lock();
        for services in p.members.values() {
            let Some(cells) = services.get(service) else {
                continue;
            };
            for role in roles {
                if let Some(seconds) = cells.get(&(*role, revision.to_owned())) {
                    for (_, s) in seconds.range(first..) {
                        f(s);
                    }
                }
            }
        }
    }
}

async fn pull_loop(
    link: Arc<EtcdLink>,
    models: tokio::sync::watch::Receiver<Arc<weir_config::Model>>,
    pulled: Arc<Mutex<Pulled>>,
    stop: CancellationToken,
) {
    let http = admin_client();
    let report = link.report();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(PULL_EVERY) => {}
        }
        let r = report.borrow().clone();
        if !r.leading {
            continue;
        }
        let services: Vec<String> = models.borrow().argo.rollouts.keys().cloned().collect();
        let now = weir_proxy::epoch_second();
        for m in r.members.iter().filter(|m| m.node != r.node) {
            for service in &services {
                let from = {
                    let p = pulled.lock().unwrap_or_else(PoisonError::into_inner);
                    p.members
                        .get(&m.node)
                        .and_then(|s| s.get(service))
                        .and_then(|cells| {
                            cells
                                .values()
                                .filter_map(|s| s.keys().next_back())
                                .max()
                                .copied()
                        })
                        .map_or(now.saturating_sub(HISTORY), |last| {
                            last.saturating_sub(OVERLAP)
                        })
                };
                let url = format!(
                    "{}/api/v1/cluster/seconds?service={service}&from={from}",
                    m.admin.trim_end_matches('/')
                );
                let got =
                    tokio::time::timeout(PULL_TIMEOUT, fetch_json::<Vec<CellSeconds>>(&http, &url))
                        .await;
                let Ok(Some(cells)) = got else {
                    tracing::warn!(member = %m.node, "cannot pull measurements from {url}: the analysis misses that replica's requests until a pull succeeds");
                    continue;
                };
                let mut p = pulled.lock().unwrap_or_else(PoisonError::into_inner);
                let entry = p
                    .members
                    .entry(m.node.clone())
                    .or_default()
                    .entry(service.clone())
                    .or_default();
                for c in cells {
                    let seconds = entry.entry((c.role, c.revision)).or_default();
                    for s in c.seconds {
                        seconds.insert(s.second, s);
                    }
                }
            }
        }
        // Forget what is older than the history.
        let oldest = now.saturating_sub(HISTORY);
        let mut p = pulled.lock().unwrap_or_else(PoisonError::into_inner);
        for services in p.members.values_mut() {
            for cells in services.values_mut() {
                for seconds in cells.values_mut() {
                    *seconds = seconds.split_off(&oldest);
                }
                cells.retain(|_, s| !s.is_empty());
            }
            services.retain(|_, c| !c.is_empty());
        }
        p.members.retain(|_, s| !s.is_empty());
    }
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Empty<bytes::Bytes>,
>;

/// A plain HTTP/1.1 client for the pulls (the admin APIs are plain HTTP).
fn admin_client() -> HttpClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http()
}

async fn fetch_json<T: serde::de::DeserializeOwned>(http: &HttpClient, url: &str) -> Option<T> {
    let uri: http::Uri = url.parse().ok()?;
    let resp = http.get(uri).await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .ok()?
        .to_bytes();
    serde_json::from_slice(&body).ok()
}

impl MetricsSource for ClusterMetrics {
    fn sample(
        &self,
        service: &str,
        revision: &str,
        served: Served,
        window: Duration,
        since: Option<u64>,
        quantile: f64,
    ) -> Sample {
        let secs = window.as_secs().clamp(1, HISTORY);
        let mut total = self
            .local
            .window(service, revision, served, secs, since)
            .unwrap_or_else(|| WindowSample::empty(secs));
        let now = weir_proxy::epoch_second();
        let mut first = (now + 1).saturating_sub(secs);
        if let Some(since) = since {
            first = first.max(since / 1000);
        }
        self.each(service, revision, roles_of(served), first, |s| {
            total.add_second(s);
        });
        Sample {
            requests: total.requests,
            failures: total.failures,
            latency: total.quantile(quantile),
            seconds: secs as f64,
        }
    }

    fn tallies(
        &self,
        service: &str,
        revision: &str,
        served: Served,
        since: Option<u64>,
        from_second: u64,
        slow_above_us: Option<u64>,
    ) -> Option<Vec<(u64, Tally)>> {
        let mut out =
            self.local
                .tallies(service, revision, served, since, from_second, slow_above_us)?;
        let Some(first) = out.first().map(|(s, _)| *s) else {
            return Some(out);
        };
        let first = match since {
            Some(since) => first.max(since / 1000),
            None => first,
        };
        self.each(service, revision, roles_of(served), first, |s| {
            let mut t = weir_proxy::stats::Tally::default();
            t.add_second(s, slow_above_us);
            add_at(&mut out, s.second, t);
        });
        Some(out)
    }

    fn begin(&self, service: &str, revision: &str, since: u64) {
        self.local.begin(service, revision, since);
    }

    fn series(
        &self,
        service: &str,
        revision: &str,
        points: usize,
        step: Duration,
        quantile: f64,
    ) -> Vec<Sample> {
        self.local.series(service, revision, points, step, quantile)
    }
}
