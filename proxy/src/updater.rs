//! The single writer of the routing snapshot. Config reloads and the control loop's
//! traffic decisions are messages to it; it rebuilds the table and stores it. One writer
//! rules out lost updates from two load-modify-store sequences, and gives one place to
//! log every change.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use weir_config::Model;

use crate::access_log::AccessLogSink;
use crate::conn::Shared;
use crate::error::BuildError;
use crate::routing::{BuildContext, RolloutTraffic, RouteTable, rebuild};

enum Command {
    Model(Arc<Model>),
    Traffic {
        rollout: String,
        traffic: Option<RolloutTraffic>,
        done: Option<oneshot::Sender<u64>>,
    },
    /// Answered once everything sent before it is live.
    Barrier(oneshot::Sender<u64>),
}

/// Sends changes to the updater. Cheap to clone.
#[derive(Clone, Debug)]
pub struct UpdaterHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Model(_) => f.write_str("Model"),
            Command::Traffic { rollout, .. } => write!(f, "Traffic({rollout})"),
            Command::Barrier(_) => f.write_str("Barrier"),
        }
    }
}

impl UpdaterHandle {
    /// A new configuration model.
    pub fn set_model(&self, model: Arc<Model>) {
        let _ = self.tx.send(Command::Model(model));
    }

    /// New traffic state for a Rollout (None: it is gone). Resolves with the generation
    /// of the first snapshot that carries it, once that snapshot is live.
    pub async fn set_traffic(&self, rollout: &str, traffic: Option<RolloutTraffic>) -> u64 {
        let (done, rx) = oneshot::channel();
        let _ = self.tx.send(Command::Traffic {
            rollout: rollout.to_owned(),
            traffic,
            done: Some(done),
        });
        rx.await.unwrap_or(0)
    }

    /// Resolves once everything sent before is live (with that snapshot's generation).
    pub async fn flush(&self) -> u64 {
        let (done, rx) = oneshot::channel();
        let _ = self.tx.send(Command::Barrier(done));
        rx.await.unwrap_or(0)
    }

    /// As [`Self::set_traffic`], without waiting.
    pub fn send_traffic(&self, rollout: &str, traffic: Option<RolloutTraffic>) {
        let _ = self.tx.send(Command::Traffic {
            rollout: rollout.to_owned(),
            traffic,
            done: None,
        });
    }
}

/// The updater task's state.
pub struct Updater {
    rx: mpsc::UnboundedReceiver<Command>,
    model: Arc<Model>,
    traffic: BTreeMap<String, RolloutTraffic>,
    ctx: BuildContext,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    /// The most client connections the open-files limit allows ([`crate::connection_budget`]).
    budget: usize,
}

impl std::fmt::Debug for Updater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updater").finish_non_exhaustive()
    }
}

impl Updater {
    pub(crate) fn new(
        model: Arc<Model>,
        ctx: BuildContext,
        shared: Arc<Shared>,
        limit: Arc<Semaphore>,
        budget: usize,
    ) -> (Updater, UpdaterHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Updater {
                rx,
                model,
                traffic: BTreeMap::new(),
                ctx,
                shared,
                limit,
                budget,
            },
            UpdaterHandle { tx },
        )
    }

    /// Runs until `shutdown` or until every handle is dropped.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return,
                c = self.rx.recv() => match c {
                    Some(c) => c,
                    None => return,
                },
            };
            // Take everything queued and build once.
            let mut batch = vec![first];
            while let Ok(c) = self.rx.try_recv() {
                batch.push(c);
            }
            let mut new_model = None;
            let mut acks = Vec::new();
            for c in batch {
                match c {
                    Command::Model(m) => new_model = Some(m),
                    Command::Traffic {
                        rollout,
                        traffic,
                        done,
                    } => {
                        match traffic {
                            Some(t) => {
                                if self.traffic.get(&rollout) != Some(&t) {
                                    log_traffic(&rollout, self.traffic.get(&rollout), &t);
                                }
                                self.traffic.insert(rollout, t);
                            }
                            None => {
                                self.traffic.remove(&rollout);
                            }
                        }
                        acks.extend(done);
                    }
                    Command::Barrier(done) => acks.push(done),
                }
            }
            let old_model = self.model.clone();
            let old_sink = self.ctx.access_log.clone();
            if let Some(m) = new_model {
                self.model = m;
                if old_model.proxy.access_log != self.model.proxy.access_log {
                    // Opened before the build, so that the new snapshot carries it.
                    match AccessLogSink::start(&self.model.proxy.access_log) {
                        Ok(sink) => self.ctx.access_log = sink.map(Arc::new),
                        Err(e) => tracing::error!("cannot open the access log: {e}"),
                    }
                }
            }
            // The build runs on the blocking pool: for 10,000 routes it takes long enough
            // to stall the requests queued on a runtime worker. The context goes with it
            // and comes back. It takes the last build's entries of unchanged routes.
            let placeholder = BuildContext::new(self.ctx.stats.clone(), self.ctx.upstreams.clone());
            let mut ctx = std::mem::replace(&mut self.ctx, placeholder);
            let (model, traffic) = (self.model.clone(), self.traffic.clone());
            let work = tokio::task::spawn_blocking(move || {
                let built = rebuild(&model, &traffic, &mut ctx);
                (built, ctx)
            });
            let (built, ctx) = match work.await {
                Ok(done) => done,
                // The build panicked: as though it had panicked here.
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            };
            self.ctx = ctx;
            match built {
                Ok(table) => {
                    let generation = table.generation;
                    if !Arc::ptr_eq(&old_model, &self.model) {
                        self.apply_model_side_effects(&old_model);
                    }
                    let old_table = self.shared.table.swap(Arc::new(table));
                    for a in acks {
                        let _ = a.send(generation);
                    }
                    if !Arc::ptr_eq(&old_model, &self.model) {
                        // Logged once the new table serves (for 10,000 routes the diff
                        // takes tens of milliseconds), before the next change is taken.
                        let new_model = self.model.clone();
                        let old = old_model.clone();
                        let _ =
                            tokio::task::spawn_blocking(move || log_model_diff(&old, &new_model))
                                .await;
                    }
                    weir_config::watch::drop_model((old_table, old_model, old_sink));
                }
                Err(e) => {
                    tracing::error!("cannot apply the new configuration, keeping the old one: {e}");
                    self.model = old_model;
                    self.ctx.access_log = old_sink;
                    let generation = self.shared.table.load().generation;
                    for a in acks {
                        let _ = a.send(generation);
                    }
                }
            }
        }
    }

    fn apply_model_side_effects(&mut self, old: &Model) {
        let new = &self.model;
        let (was, now) = (
            crate::effective_max_connections(old, self.budget, false),
            crate::effective_max_connections(new, self.budget, true),
        );
        if now > was {
            self.limit.add_permits(now - was);
        } else if was > now {
            let forgotten = self.limit.forget_permits(was - now);
            if forgotten < was - now {
                tracing::info!(
                    "maxConnections lowered to {now}; open connections above it are kept until they close"
                );
            }
        }
    }
}

impl Updater {
    /// Builds the first snapshot synchronously, before anything is served.
    ///
    /// # Errors
    /// When the model cannot be turned into a table (a TLS configuration rustls refuses).
    pub(crate) fn initial(
        model: &Arc<Model>,
        ctx: &mut BuildContext,
    ) -> Result<RouteTable, BuildError> {
        rebuild(model, &BTreeMap::new(), ctx)
    }
}

fn log_traffic(rollout: &str, old: Option<&RolloutTraffic>, new: &RolloutTraffic) {
    let old_w = old
        .map(|o| o.canary_weight.to_string())
        .unwrap_or_else(|| "-".into());
    tracing::info!(
        rollout,
        stable = %new.stable,
        canary = new.canary.as_deref().unwrap_or("-"),
        "traffic: canary weight {old_w} -> {}",
        new.canary_weight
    );
}

fn log_model_diff(old: &Model, new: &Model) {
    // By name, in maps: with tens of thousands of routes, scanning lists was quadratic
    // and held back every reload.
    fn by_name(m: &Model) -> std::collections::HashMap<&str, &Arc<weir_config::model::Route>> {
        m.proxy
            .routes
            .iter()
            .map(|r| (r.name.as_str(), r))
            .collect()
    }
    let (was, now) = (&old.proxy.routes, &new.proxy.routes);
    if was.len() == now.len()
        && was
            .iter()
            .zip(now)
            .all(|(a, b)| Arc::ptr_eq(a, b) || a.name == b.name)
    {
        // The same routes in the same places (a reload that changed a few): a route
        // validation kept is the same value.
        for (prev, r) in was.iter().zip(now) {
            if !Arc::ptr_eq(prev, r) && prev.target != r.target {
                tracing::info!(route = %r.name, "route target changed: {:?} -> {:?}", prev.target, r.target);
            }
        }
        log_other_diff(old, new);
        return;
    }
    let (o, n) = (by_name(old), by_name(new));
    for r in &new.proxy.routes {
        match o.get(r.name.as_str()) {
            None => tracing::info!(route = %r.name, "route added"),
            Some(prev) if !Arc::ptr_eq(prev, r) && prev.target != r.target => {
                tracing::info!(route = %r.name, "route target changed: {:?} -> {:?}", prev.target, r.target);
            }
            Some(_) => {}
        }
    }
    for r in &old.proxy.routes {
        if !n.contains_key(r.name.as_str()) {
            tracing::info!(route = %r.name, "route removed");
        }
    }
    log_other_diff(old, new);
}

/// The Services and certificates that changed.
fn log_other_diff(old: &Model, new: &Model) {
    for (name, s) in &new.services {
        match old.services.get(name) {
            None => tracing::info!(service = %name, "service added"),
            Some(p) if !Arc::ptr_eq(p, s) && p != s => {
                tracing::info!(service = %name, "service endpoints changed")
            }
            _ => {}
        }
    }
    for name in old
        .services
        .keys()
        .filter(|k| !new.services.contains_key(*k))
    {
        tracing::info!(service = %name, "service removed");
    }
    for l in &new.proxy.listeners {
        if let Some(o) = old.proxy.listeners.iter().find(|o| o.name == l.name)
            && o.tls != l.tls
        {
            tracing::info!(listener = %l.name, "TLS certificates reloaded");
        }
    }
}
