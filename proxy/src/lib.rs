//! weir's data plane: an L7 HTTP proxy that splits traffic exactly and measures it.
//!
//! Place in the data flow: the binary hands it a validated config [`Model`]; the
//! [`updater`] (the only writer) builds a [`routing::RouteTable`] snapshot and stores it
//! behind one `ArcSwap`; each request goes through one protocol-neutral core (`request`:
//! one snapshot load picks a route, a split leg and an endpoint), is forwarded through a
//! pooled [`upstream`] connection by its protocol (`h1`, `h2`), and has its outcome
//! recorded in [`stats`]. The control loop reads those stats through the
//! binary's adapters and sends traffic decisions back to the updater.
//!
//! Libraries never bind sockets: [`Proxy::serve_listener`] and [`admin::Admin::serve`]
//! take bound listeners, so tests use `127.0.0.1:0`.

pub mod access_log;
pub mod admin;
pub mod admission;
mod codec;
pub mod conn;
pub mod error;
mod h1;
mod h2;
pub mod metrics;
mod request;
pub mod routing;
pub mod server;
pub mod stats;
pub mod tls;
pub mod updater;
pub mod upstream;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weir_config::Model;
use weir_config::watch::ReloadStats;

use crate::access_log::AccessLogSink;
use crate::admin::{LegStats, RouteStats, StatsReport};
use crate::conn::{ProxyCounters, Shared};
use crate::error::BuildError;
use crate::routing::{BuildContext, Target};
use crate::server::ServerSettings;
use crate::stats::Stats;
use crate::updater::{Updater, UpdaterHandle};
use crate::upstream::Upstreams;

pub use routing::{HeaderRoute, MirrorRoute, RolloutTraffic};
pub use stats::{CellKey, Role, SecondCounts, WindowSample};

/// Options fixed for the life of the process.
#[derive(Clone, Copy, Debug)]
pub struct ProxyOptions {
    /// Worker threads (stats shards).
    pub worker_threads: usize,
    /// Record measurements (on in production; off only to measure their cost).
    pub measure: bool,
    /// The process's open-files limit, when known: `maxConnections` is held below what
    /// it allows ([`connection_budget`]).
    pub max_open_files: Option<u64>,
}

/// Files kept aside from the client connections' share: listeners, the admin listener and
/// its connections, state and log files, DNS, analysis jobs.
const RESERVED_FILES: u64 = 512;

/// The most client connections `open_files` descriptors can carry: each may need an
/// upstream connection too, so half of what is left after [`RESERVED_FILES`].
pub fn connection_budget(open_files: u64) -> usize {
    usize::try_from(open_files.saturating_sub(RESERVED_FILES) / 2)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// `spec.limits.maxConnections`, held within `budget`; says so (once per model, when
/// `warn`) when it had to.
pub(crate) fn effective_max_connections(model: &Model, budget: usize, warn: bool) -> usize {
    let configured = model.proxy.limits.max_connections as usize;
    if configured > budget {
        if warn {
            tracing::warn!(
                "spec.limits.maxConnections is {configured}, but the open-files limit allows {budget} client connections (each may need an upstream connection too); serving at most {budget}: raise the limit (ulimit -n, LimitNOFILE=) to allow more"
            );
        }
        budget
    } else {
        configured
    }
}

/// The data plane, ready to serve listeners.
pub struct Proxy {
    /// What requests share.
    pub shared: Arc<Shared>,
    /// Measurements.
    pub stats: Arc<Stats>,
    /// Connection pools.
    pub upstreams: Arc<Upstreams>,
    /// Sends changes to the single writer.
    pub updater: UpdaterHandle,
    admission: Arc<admission::Admission>,
    drain: server::Drain,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

impl Proxy {
    /// Builds the data plane for `model`. Returns the proxy and the updater task, which
    /// the caller spawns.
    ///
    /// # Errors
    /// When the first snapshot cannot be built, or the access log cannot be opened.
    pub fn new(model: Arc<Model>, opts: ProxyOptions) -> Result<(Proxy, Updater), BuildError> {
        let stats = Arc::new(Stats::new(opts.worker_threads, opts.measure));
        let upstreams = Arc::new(Upstreams::default());
        let mut ctx = BuildContext::new(stats.clone(), upstreams.clone());
        ctx.access_log = AccessLogSink::start(&model.proxy.access_log)
            .map_err(BuildError::AccessLog)?
            .map(Arc::new);
        let table = Updater::initial(&model, &mut ctx)?;
        let drain = server::Drain::default();
        let shared = Arc::new(Shared {
            table: Arc::new(ArcSwap::from_pointee(table)),
            counters: Arc::new(ProxyCounters::default()),
            tasks: drain.tracker.clone(),
        });
        let budget = opts.max_open_files.map_or(usize::MAX, connection_budget);
        let admission = Arc::new(admission::Admission::new(effective_max_connections(
            &model, budget, true,
        )));
        let (updater, handle) =
            Updater::new(model, ctx, shared.clone(), admission.limit.clone(), budget);
        Ok((
            Proxy {
                shared,
                stats,
                upstreams,
                updater: handle,
                admission,
                drain,
            },
            updater,
        ))
    }

    /// Serves client connections on `listener` (the listener named `name` in the config)
    /// until `shutdown`.
    pub async fn serve_listener(
        &self,
        name: &str,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) {
        let limits = {
            let table = self.shared.table.load();
            table.limits
        };
        let settings = ServerSettings {
            max_header_bytes: limits.max_header_bytes as usize,
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
            body_timeout: limits.body_timeout,
            min_body_rate: limits.min_body_rate,
            send_timeout: limits.send_timeout,
        };
        server::serve(
            self.shared.clone(),
            Arc::from(name),
            listener,
            self.admission.clone(),
            settings,
            self.drain.clone(),
            shutdown,
        )
        .await;
    }

    /// Once a second: closes the stats second, prunes idle upstream connections. Runs
    /// until `shutdown`.
    pub async fn maintenance(&self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_second = 0;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.upstreams.health_checks(&self.shared.tasks);
            let now = epoch_second();
            if now != last_second {
                self.stats.tick(now);
                last_second = now;
                let idle = self.shared.table.load().upstream.idle_timeout;
                self.upstreams.prune(idle);
            }
        }
    }

    /// Registers the proxy's collectors.
    ///
    /// # Errors
    /// When a collector's names clash with one already registered.
    pub fn register_metrics(
        &self,
        registry: &prometheus::Registry,
        reloads: Arc<ReloadStats>,
    ) -> prometheus::Result<()> {
        registry.register(Box::new(metrics::StatsCollector::new(self.stats.clone())))?;
        let shared = self.shared.clone();
        registry.register(Box::new(metrics::ProxyCollector::new(
            self.shared.counters.clone(),
            self.shared.table.clone(),
            self.upstreams.clone(),
            reloads,
            Box::new(move || {
                shared
                    .table
                    .load()
                    .access_log
                    .as_ref()
                    .map_or(0, |s| s.dropped.load(Ordering::Relaxed))
            }),
        )))?;
        Ok(())
    }

    /// Waits for open connections to finish their requests and close, up to `grace`.
    /// Call after the listeners stopped accepting. True when all finished in time.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.drain.token.cancel();
        self.drain.tracker.close();
        tokio::time::timeout(grace, self.drain.tracker.wait())
            .await
            .is_ok()
    }

    /// Per route: live weights, achieved split and the window's numbers for each leg.
    pub fn stats_report(&self, window_seconds: u64) -> StatsReport {
        let now = epoch_second();
        let table = self.shared.table.load();
        let routes = table
            .routes()
            .iter()
            .filter_map(|r| match &r.target {
                Target::Split(t) => {
                    let samples: Vec<_> = t
                        .legs
                        .iter()
                        .map(|b| b.stats.window(now, window_seconds))
                        .collect();
                    let total: u64 = samples.iter().map(|s| s.requests).sum();
                    Some(RouteStats {
                        name: r.name.to_string(),
                        legs: t
                            .legs
                            .iter()
                            .zip(t.weights.iter())
                            .zip(samples.iter())
                            .map(|((b, w), s)| LegStats {
                                service: b.key.service.to_string(),
                                role: b.key.role.to_string(),
                                revision: b.key.revision.to_string(),
                                weight: w.percent(),
                                actual_weight: (total > 0)
                                    .then(|| s.requests as f64 * 100.0 / total as f64),
                                window: s.summary(),
                            })
                            .collect(),
                    })
                }
                Target::Unavailable { .. } | Target::Redirect(_) => None,
            })
            .collect();
        StatsReport {
            window_seconds,
            routes,
        }
    }

    /// A window of one (service, role, revision), or None if it never had traffic.
    pub fn window(&self, key: &CellKey, window_seconds: u64) -> Option<WindowSample> {
        self.window_since(key, window_seconds, None)
    }

    /// [`Proxy::window`], counting only requests after the cut named `since`
    /// ([`Proxy::cut`]), or, without that cut, from the second `since` (milliseconds
    /// since the epoch) falls in.
    pub fn window_since(
        &self,
        key: &CellKey,
        window_seconds: u64,
        since: Option<u64>,
    ) -> Option<WindowSample> {
        self.stats
            .get(key)
            .map(|c| c.window_since(epoch_second(), window_seconds, since))
    }

    /// Starts a new population for one (service, role, revision) now, named `id`:
    /// windows asked for with `since: Some(id)` leave out everything recorded before.
    /// An update calls it when its canary revision begins, so that what the same image
    /// served earlier (in an update aborted a moment ago, say) is not judged again.
    pub fn cut(&self, key: &CellKey, id: u64) {
        if let Some(c) = self.stats.get(key) {
            c.cut(id, epoch_second());
        }
    }

    /// One (service, role, revision)'s requests second by second from `from_second` to
    /// now ([`Cell::tallies`]), or None if it never had traffic.
    pub fn tallies(
        &self,
        key: &CellKey,
        from_second: u64,
        since: Option<u64>,
        slow_above_us: Option<u64>,
    ) -> Option<Vec<(u64, stats::Tally)>> {
        self.stats
            .get(key)
            .map(|c| c.tallies(epoch_second(), from_second, since, slow_above_us))
    }

    /// The closed seconds since `from_second` of every cell of `service`, by role and
    /// revision: what another replica of a cluster merges with its own.
    pub fn closed_seconds(
        &self,
        service: &str,
        from_second: u64,
    ) -> Vec<(CellKey, Vec<stats::SecondCounts>)> {
        let now = epoch_second();
        self.stats
            .cells()
            .into_iter()
            .filter(|c| &*c.key().service == service)
            .map(|c| (c.key().clone(), c.closed_seconds(now, from_second)))
            .filter(|(_, s)| !s.is_empty())
            .collect()
    }

    /// `points` windows of `step` seconds of one (service, role, revision), oldest first,
    /// the last ending now; None if it never had traffic.
    pub fn series(&self, key: &CellKey, points: usize, step: u64) -> Option<Vec<WindowSample>> {
        self.stats
            .get(key)
            .map(|c| c.series(epoch_second(), points, step))
    }
}

/// Seconds since the Unix epoch, the stats' clock.
pub fn epoch_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
