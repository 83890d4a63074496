//! The async shell around the pure core: it owns the clock, the timers, the measurement
//! tasks, persistence and the ports. Each turn reconciles every Rollout, applies the
//! traffic that changed, starts the measurements that are due, and saves what changed.
//! Measurement results and user actions wake it at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use weir_config::Model;
use weir_config::rollout::{Rollout, Step, Strategy};

use crate::analysis::{Ms, Outcome};
use crate::api::{
    HistoryView, LiveStats, PointView, RevisionStats, RolloutView, SeriesView, status_view,
};
pub use crate::clock::Clock;
use crate::engine::{self, Action, TrafficPlan, World};
use crate::ports::{MetricsSource, Served, TrafficRouter};
use crate::providers::{HttpClient, Providers, RunRef, Subject};
use crate::state::{Event, PauseReason, Reason, Revision, RolloutStatus};
use crate::store::{Loaded, Store};

mod cluster;
mod events;
mod handle;
mod requests;

use cluster::Replica;

use events::EVENT_BATCHES;
pub use events::EventStream;
pub(crate) use events::Events;
pub use handle::{ActionError, ControllerHandle};

/// The longest the loop sleeps: phases and messages (time left in a pause) refresh at
/// least this often.
const MAX_SLEEP_MS: Ms = 1_000;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// Where rollout state is saved; None keeps it in memory.
    pub state_dir: Option<PathBuf>,
    /// `http://host:port` of a plain listener, for jobs' `http_proxy`.
    pub proxy_url: Option<String>,
    /// Cluster mode: the store the replicas share. The state folder then only keeps the
    /// last committed status this replica applied (served after a restart while the
    /// store is out of reach).
    pub cluster: Option<Arc<dyn crate::replica::ClusterLink>>,
}

enum Request {
    Act {
        rollout: String,
        action: Action,
        reply: oneshot::Sender<Result<RolloutView, ActionError>>,
    },
    Get {
        rollout: String,
        reply: oneshot::Sender<Option<RolloutView>>,
    },
    List {
        reply: oneshot::Sender<Vec<RolloutView>>,
    },
    History {
        rollout: String,
        points: usize,
        step: Duration,
        reply: oneshot::Sender<Option<HistoryView>>,
    },
}

/// How fast decisions reach the data plane, and what a turn costs.
#[derive(Debug)]
pub struct LoopStats {
    /// Traffic changes applied after a measurement result.
    pub decisions: std::sync::atomic::AtomicU64,
    /// Sum of microseconds from a measurement result arriving to the data plane serving
    /// the traffic it led to.
    pub decision_us_sum: std::sync::atomic::AtomicU64,
    /// The largest such time.
    pub decision_us_max: std::sync::atomic::AtomicU64,
    /// Turns over every rollout.
    pub turns: std::sync::atomic::AtomicU64,
    /// Microseconds spent in turns.
    pub turn_us_sum: std::sync::atomic::AtomicU64,
    /// When the loop last finished a turn, in milliseconds since the Unix epoch (0
    /// before the first). A live loop turns at least once a second.
    pub heartbeat_ms: std::sync::atomic::AtomicU64,
    /// Saves of a rollout's state that succeeded.
    pub state_saves: std::sync::atomic::AtomicU64,
    /// Saves of a rollout's state that failed (each is retried on later turns).
    pub state_save_failures: std::sync::atomic::AtomicU64,
    /// False while some rollout's latest state could not be saved.
    pub storage_healthy: std::sync::atomic::AtomicBool,
}

impl Default for LoopStats {
    fn default() -> Self {
        LoopStats {
            decisions: Default::default(),
            decision_us_sum: Default::default(),
            decision_us_max: Default::default(),
            turns: Default::default(),
            turn_us_sum: Default::default(),
            heartbeat_ms: Default::default(),
            state_saves: Default::default(),
            state_save_failures: Default::default(),
            storage_healthy: std::sync::atomic::AtomicBool::new(true),
        }
    }
}

struct MeasureResult {
    rollout: String,
    run: String,
    metric: usize,
    started: Ms,
    outcome: Outcome,
}

/// The control loop.
pub struct Controller {
    model: watch::Receiver<Arc<Model>>,
    router: Arc<dyn TrafficRouter>,
    providers: Providers,
    store: Option<Store>,
    rx: mpsc::Receiver<Request>,
    events: Events,
    /// Events of the turn in progress, published together at its end.
    pending: Vec<(String, Event)>,
    /// Rollouts whose saved state could not be read, and why: the first turn that sees
    /// them in the configuration decides what to serve (`engine::recover`).
    recover: BTreeMap<String, String>,
    /// Rollouts whose latest state could not be saved, and why.
    unsaved: BTreeMap<String, String>,
    states: BTreeMap<String, RolloutStatus>,
    /// Rollouts that left the configuration, with their state (kept on disk too): one that
    /// comes back resumes where it was, never as if seen for the first time (which would
    /// make its image stable at once).
    retired: BTreeMap<String, RolloutStatus>,
    applied: BTreeMap<String, Option<TrafficPlan>>,
    /// Per Rollout, the start of the update last announced to the metrics source
    /// ([`MetricsSource::begin`]).
    begun: BTreeMap<String, u64>,
    /// What was last written for each rollout: a turn that changed nothing writes nothing
    /// (compared as values, which costs far less than serializing every rollout).
    saved: BTreeMap<String, RolloutStatus>,
    clock: Clock,
    results_tx: mpsc::UnboundedSender<MeasureResult>,
    results_rx: mpsc::UnboundedReceiver<MeasureResult>,
    stats: Arc<LoopStats>,
    /// When the measurement result that this turn reacts to arrived.
    result_at: Option<Instant>,
    /// Measurements in flight; cancelled and awaited when the loop stops.
    measuring: TaskTracker,
    /// Cancels the measurements in flight.
    stop_measuring: CancellationToken,
    /// Cancels the measurements of one run, by (rollout, run): once the run has ended or
    /// is gone (an abort, a promotion), what it still measures is stopped (a job is
    /// killed), as Argo terminates a run's jobs.
    run_stops: BTreeMap<(String, String), CancellationToken>,
    /// Cluster mode: this replica's part.
    cluster: Option<Replica>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").finish_non_exhaustive()
    }
}

/// Whether `service` has an endpoint running `image` that can serve: with a
/// `healthCheck`, one whose check the data plane says passes.
fn has_endpoints(model: &Model, router: &dyn TrafficRouter, service: &str, image: &str) -> bool {
    model.services.get(service).is_some_and(|s| {
        s.endpoints.iter().any(|e| {
            e.image.as_deref() == Some(image)
                && (s.health.is_none() || router.endpoint_up(e.address) == Some(true))
        })
    })
}

impl Controller {
    /// A controller over `model`, measuring through `metrics` and routing through
    /// `router`. Saved state is loaded from the state folder.
    ///
    /// # Errors
    /// When the state folder cannot be created.
    pub fn new(
        model: watch::Receiver<Arc<Model>>,
        metrics: Arc<dyn MetricsSource>,
        router: Arc<dyn TrafficRouter>,
        opts: ControllerOptions,
    ) -> std::io::Result<(Controller, ControllerHandle)> {
        let store = match &opts.state_dir {
            Some(d) => Some(Store::open(d)?),
            None => None,
        };
        let clock = Clock::system();
        let now = clock.now();
        let mut states = BTreeMap::new();
        let mut saved = BTreeMap::new();
        let mut recover = BTreeMap::new();
        let mut pending = Vec::new();
        for (name, loaded) in store.as_ref().map(Store::load_all).unwrap_or_default() {
            let mut st = match loaded {
                Loaded::Saved(st) => {
                    saved.insert(name.clone(), st.clone());
                    st
                }
                Loaded::Previous {
                    mut status,
                    problem,
                } => {
                    let e = status.event(
                        now,
                        Reason::StateUnreadable,
                        format!(
                            "The saved state could not be read ({problem}); the previous state saved was restored: what happened since may be done again"
                        ),
                    );
                    pending.push((name.clone(), e));
                    status
                }
                Loaded::Lost {
                    stable,
                    history,
                    next_number,
                    problem,
                } => {
                    let mut st = RolloutStatus::new(&name);
                    let highest = history
                        .iter()
                        .chain(stable.iter())
                        .map(|r| r.number)
                        .max()
                        .unwrap_or(0);
                    st.next_number = next_number.unwrap_or(0).max(highest + 1);
                    st.stable = stable;
                    st.history = history;
                    // The configured revision is needed to decide: the first turn does.
                    recover.insert(name.clone(), problem);
                    st
                }
            };
            tracing::info!(rollout = %name, phase = ?st.phase, step = ?st.current_step_index, "restored rollout state");
            for run in st.runs_mut() {
                run.forget_in_flight(now);
            }
            states.insert(name, st);
        }
        // In cluster mode what was saved is a cache of the store's, not the record: the
        // store's statuses are what counts as saved.
        let (store, cluster) = match opts.cluster {
            Some(link) => {
                saved.clear();
                (None, Some(Replica::new(link, store)))
            }
            None => (store, None),
        };
        let (tx, rx) = mpsc::channel(64);
        let events = Events::new(EVENT_BATCHES);
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(LoopStats::default());
        Ok((
            Controller {
                model,
                router,
                providers: Providers {
                    metrics,
                    http: HttpClient::new(),
                    proxy_url: opts.proxy_url,
                    judges: Default::default(),
                },
                store,
                rx,
                events: events.clone(),
                pending,
                recover,
                unsaved: BTreeMap::new(),
                states,
                retired: BTreeMap::new(),
                applied: BTreeMap::new(),
                begun: BTreeMap::new(),
                saved,
                clock,
                results_tx,
                results_rx,
                stats: stats.clone(),
                result_at: None,
                measuring: TaskTracker::new(),
                stop_measuring: CancellationToken::new(),
                run_stops: BTreeMap::new(),
                cluster,
            },
            ControllerHandle { tx, events, stats },
        ))
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let model = self.model.borrow_and_update().clone();
            self.turn(&model).await;
            let wake = self.next_wakeup(&model);
            // A clone has seen what the loop's receiver has (the turn marks it seen).
            let mut view = self.cluster.as_ref().map(|r| r.view.clone());
            let view_changed = async {
                match view.as_mut() {
                    Some(v) => {
                        if v.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(res) = self.results_rx.recv() => {
                    self.result_at = Some(Instant::now());
                    self.record(res);
                    while let Ok(res) = self.results_rx.try_recv() {
                        self.record(res);
                    }
                }
                Some(req) = self.rx.recv() => self.request(req, &model).await,
                r = self.model.changed() => {
                    if r.is_err() {
                        break;
                    }
                }
                _ = view_changed => {}
                _ = tokio::time::sleep_until(self.clock.instant_at(wake)) => {}
            }
        }
        if let Some(store) = &self.store {
            for st in self.states.values() {
                if self.saved.get(&st.name) != Some(st) {
                    save(store, &mut self.saved, &mut self.unsaved, &self.stats, st);
                }
            }
        }
        // Measurements in flight are dropped (their runs resume from the saved state).
        self.stop_measuring.cancel();
        self.measuring.close();
        self.measuring.wait().await;
    }

    fn record(&mut self, res: MeasureResult) {
        let now = self.clock.now();
        if let Some(st) = self.states.get_mut(&res.rollout) {
            for run in st.runs_mut() {
                if run.name == res.run {
                    run.record(res.metric, res.outcome, res.started, now);
                    return;
                }
            }
        }
    }

    /// One turn over every Rollout.
    async fn turn(&mut self, model: &Model) {
        use std::sync::atomic::Ordering::Relaxed;
        let began = Instant::now();
        if self.cluster.is_some() {
            if !self.cluster_prepare(model) {
                self.follow(model).await;
                self.answer_asked(model);
                return;
            }
            self.apply_requests(model);
        }
        let clustered = self.cluster.is_some();
        let result_at = self.result_at.take();
        let now = self.clock.now();
        let mut changed = false;
        for (name, spec) in &model.argo.rollouts {
            let held = self.held_for_skew(name, spec);
            let st = self.states.entry(name.clone()).or_insert_with(|| {
                match self.retired.remove(name) {
                    Some(mut st) => {
                        for run in st.runs_mut() {
                            run.forget_in_flight(now);
                        }
                        let e = st.event(
                            now,
                            Reason::RolloutResumed,
                            "The Rollout is back in the configuration: its saved state is resumed".into(),
                        );
                        self.pending.push((name.clone(), e));
                        tracing::info!(rollout = %name, phase = ?st.phase, step = ?st.current_step_index, "rollout back in the configuration: its state is resumed");
                        st
                    }
                    None => RolloutStatus::new(name),
                }
            });
            let router = &*self.router;
            let endpoints = |image: &str| has_endpoints(model, router, name, image);
            let world = World {
                now,
                argo: &model.argo,
                has_endpoints: &endpoints,
            };
            if let Some(problem) = self.recover.remove(name) {
                let events = engine::recover(st, spec, &problem, now);
                self.pending
                    .extend(events.into_iter().map(|e| (name.clone(), e)));
            }
            let events = match &held {
                // Replicas disagree on the spec: nothing moves until they agree.
                Some(why) => {
                    st.message = why.clone();
                    Vec::new()
                }
                None => engine::reconcile(st, spec, &world),
            };
            let plan = engine::traffic(st, spec, &endpoints);
            // A new update: the metrics source starts counting its canary afresh, before
            // any of its traffic is routed.
            if let (Some(rev), Some(since)) = (st.current.as_ref(), st.canary_since())
                && self.begun.get(name) != Some(&since)
            {
                self.providers.metrics.begin(name, &rev.image, since);
                self.begun.insert(name.clone(), since);
            }
            self.pending
                .extend(events.into_iter().map(|e| (name.clone(), e)));
            // In cluster mode traffic follows the status once it is committed (below).
            if !clustered && self.applied.get(name) != Some(&plan) {
                // Queued at once, so that the data plane takes the change as soon as it
                // can; the turn waits for all of its changes together below (one routing
                // build for many Rollouts, not one each).
                self.router.send(name, name, plan.clone());
                self.applied.insert(name.clone(), plan);
                changed = true;
            }
            // Measurements that are due.
            let subject = Subject {
                service: name.clone(),
                canary: st
                    .current
                    .as_ref()
                    .map(|r| r.image.clone())
                    .unwrap_or_default(),
                stable: st
                    .stable
                    .as_ref()
                    .map(|r| r.image.clone())
                    .unwrap_or_default(),
                canary_since: st.canary_since(),
                now,
                blue_green: matches!(spec.strategy, Strategy::BlueGreen(_)),
            };
            for run in st.runs_mut().filter(|_| held.is_none()) {
                for i in run.due(now) {
                    let Some(metric) = run.metrics[i].metric() else {
                        continue;
                    };
                    run.begin(i);
                    let tx = self.results_tx.clone();
                    let providers = self.providers.clone();
                    let subject = subject.clone();
                    let run_name = run.name.clone();
                    let rollout = name.clone();
                    let run_ref = RunRef {
                        rollout: name.clone(),
                        run: run.name.clone(),
                        metric: i,
                        started_at: run.started_at,
                    };
                    let stop = self
                        .run_stops
                        .entry((name.clone(), run.name.clone()))
                        .or_insert_with(|| self.stop_measuring.child_token())
                        .clone();
                    self.measuring.spawn(async move {
                        // In a task of its own, so that a provider that panics fails its
                        // measurement and nothing else; aborted with this one.
                        let measure = AbortOnDropHandle::new(tokio::spawn(async move {
                            providers.measure(&metric.provider, &subject, &run_ref).await
                        }));
                        let outcome = tokio::select! {
                            _ = stop.cancelled() => return,
                            o = measure => o.unwrap_or_else(|e| {
                                tracing::error!(rollout = %rollout, run = %run_name, "a measurement failed: {e}");
                                Outcome::Error(format!("the measurement failed: {e}"))
                            }),
                        };
                        let _ = tx.send(MeasureResult {
                            rollout,
                            run: run_name,
                            metric: i,
                            started: now,
                            outcome,
                        });
                    });
                }
            }
            if let Some(store) = &self.store
                && needs_save(self.saved.get(name), st)
            {
                save(store, &mut self.saved, &mut self.unsaved, &self.stats, st);
            }
        }
        if clustered {
            // The leader's writes, each fenced; the traffic of what was committed.
            for (name, spec) in &model.argo.rollouts {
                if !self.commit(name).await || !self.cluster.as_ref().is_some_and(|r| r.leading) {
                    continue;
                }
                let Some(st) = self.states.get(name) else {
                    continue;
                };
                let router = &*self.router;
                let endpoints = |image: &str| has_endpoints(model, router, name, image);
                let plan = engine::traffic(st, spec, &endpoints);
                if self.applied.get(name) != Some(&plan) {
                    self.router.send(name, name, plan.clone());
                    self.applied.insert(name.clone(), plan);
                    changed = true;
                }
            }
        }
        if changed {
            self.router.flush().await;
            if let Some(at) = result_at {
                let us = at.elapsed().as_micros() as u64;
                self.stats.decisions.fetch_add(1, Relaxed);
                self.stats.decision_us_sum.fetch_add(us, Relaxed);
                self.stats.decision_us_max.fetch_max(us, Relaxed);
            }
        }
        self.stop_ended_runs();
        self.answer_asked(model);
        self.events.publish(std::mem::take(&mut self.pending));
        self.stats.turns.fetch_add(1, Relaxed);
        self.stats.heartbeat_ms.store(self.clock.now(), Relaxed);
        self.stats
            .turn_us_sum
            .fetch_add(began.elapsed().as_micros() as u64, Relaxed);
        // Rollouts that left the configuration.
        let gone: Vec<String> = self
            .states
            .keys()
            .filter(|k| !model.argo.rollouts.contains_key(*k))
            .cloned()
            .collect();
        for name in gone {
            // Its state stays, in memory and on disk, should it come back; what its
            // saved state could not tell (`recover`) is decided then.
            if let Some(st) = self.states.remove(&name) {
                self.retired.insert(name.clone(), st);
            }
            self.saved.remove(&name);
            if self.unsaved.remove(&name).is_some() && self.unsaved.is_empty() {
                self.stats.storage_healthy.store(true, Relaxed);
            }
            self.begun.remove(&name);
            if self.applied.remove(&name).is_some() {
                self.router.apply(&name, &name, None).await;
            }
            tracing::info!(rollout = %name, "rollout removed from the configuration; its state is kept should it come back");
        }
    }

    /// Stops the measurements of runs that have ended or are gone.
    fn stop_ended_runs(&mut self) {
        let states = &self.states;
        let judges = &self.providers.judges;
        self.run_stops.retain(|(rollout, run), stop| {
            let live = states
                .get(rollout)
                .is_some_and(|st| st.runs().any(|r| &r.name == run && !r.is_done()));
            if !live {
                stop.cancel();
            }
            live
        });
        // A judge lives as long as its run (a measurement in flight when the run ended
        // may have made one after the run's stop).
        judges.retain(|rollout, run| {
            states
                .get(rollout)
                .is_some_and(|st| st.runs().any(|r| r.name == run && !r.is_done()))
        });
    }

    /// The earliest moment something is due: a measurement, the end of a timed pause,
    /// an auto-promotion, a deadline; at most a second away.
    fn next_wakeup(&self, model: &Model) -> Ms {
        let now = self.clock.now();
        let mut wake = now + MAX_SLEEP_MS;
        // A follower runs no step: the store's changes wake it.
        if self.following() {
            return wake;
        }
        for (name, st) in &self.states {
            if self.cluster_wake(name).1 {
                continue;
            }
            for run in st.runs() {
                if let Some(t) = run.next_wakeup() {
                    wake = wake.min(t);
                }
            }
            let Some(spec) = model.argo.rollouts.get(name) else {
                continue;
            };
            for p in &st.pause_conditions {
                let d = match (&spec.strategy, p.reason) {
                    (Strategy::Canary(c), PauseReason::CanaryPauseStep) => {
                        match st.current_step_index.and_then(|i| c.steps.get(i)) {
                            Some(Step::Pause(Some(d))) => Some(*d),
                            _ => None,
                        }
                    }
                    (Strategy::BlueGreen(b), PauseReason::BlueGreenPause) => {
                        b.auto_promotion_seconds
                    }
                    _ => None,
                };
                if let Some(d) = d {
                    wake = wake.min(crate::analysis::after(p.start_time, d));
                }
            }
        }
        let not_before = self.cluster_wake("").0.unwrap_or(now);
        wake.max(now).max(not_before)
    }
}

/// Whether `st` differs from what was saved in more than what a measurement in progress
/// changes many times a second (in flight, what it waits for, when it tries again, and
/// the rollout's message, which quotes it): the
/// canary-vs-stable judge measures every 100 ms and waits most of the time, and a file
/// rewritten (and fsynced) on each of those turns would cost the disk for nothing. A
/// restart loses none of it that matters: measurements in flight are taken again, and a
/// wait is tried again. The shutdown save writes whatever differs at all.
fn needs_save(saved: Option<&RolloutStatus>, st: &RolloutStatus) -> bool {
    let Some(saved) = saved else { return true };
    if saved == st {
        return false;
    }
    let settled = |st: &RolloutStatus| {
        let mut st = st.clone();
        for run in st.runs_mut() {
            run.settle_transient();
        }
        // Said again on every turn, from the rest (it quotes what a measurement waits
        // for).
        st.message.clear();
        st
    };
    settled(saved) != settled(st)
}

/// Writes a rollout's status and remembers it as saved; a failure is counted, keeps the
/// rollout in `unsaved` (its next turn tries again) and marks the storage unhealthy.
fn save(
    store: &Store,
    saved: &mut BTreeMap<String, RolloutStatus>,
    unsaved: &mut BTreeMap<String, String>,
    stats: &LoopStats,
    st: &RolloutStatus,
) {
    use std::sync::atomic::Ordering::Relaxed;
    match store.save(st) {
        Ok(()) => {
            stats.state_saves.fetch_add(1, Relaxed);
            saved.insert(st.name.clone(), st.clone());
            if unsaved.remove(&st.name).is_some() {
                tracing::info!(rollout = %st.name, "the rollout's state is saved again");
                if unsaved.is_empty() {
                    stats.storage_healthy.store(true, Relaxed);
                }
            }
        }
        Err(e) => {
            stats.state_save_failures.fetch_add(1, Relaxed);
            stats.storage_healthy.store(false, Relaxed);
            let reason = e.to_string();
            // Said once per fault, not on every turn that retries.
            if unsaved.get(&st.name) != Some(&reason) {
                tracing::error!(rollout = %st.name, "cannot save the rollout state (retried on every turn; a restart now would lose what changed): {reason}");
            }
            unsaved.insert(st.name.clone(), reason);
        }
    }
}

/// Names of rollouts in a model, for callers that list them.
pub fn rollout_names(model: &Model) -> BTreeSet<String> {
    model.argo.rollouts.keys().cloned().collect()
}
