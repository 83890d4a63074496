//! The loop in cluster mode ([`crate::replica`]): the leader's turn is the single-node
//! turn with the store's fenced write in place of the state file, and traffic applied
//! only once the write succeeded; a follower's turn only routes by the committed
//! statuses (it runs no step and no measurement), and hands users' actions to the
//! leader.

use super::*;
use crate::replica::{ClusterLink, ClusterView, WriteError};

/// How long an action asked on a follower waits for the leader to apply it.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// How soon the leader tries again a write the store could not take.
const RETRY_MS: Ms = 250;
/// While a rollout is paused, the leader writes its status at least this often, so that
/// a new leader loses at most this much of the pause's elapsed time.
const CHECKPOINT_MS: Ms = 2_000;
/// The fast brake: a follower whose own canary requests (by the split) of the last
/// [`BRAKE_WINDOW`] all failed, at least this many, cuts its canary share at once and asks
/// the leader to abort.
const BRAKE_MIN_FAILED: u64 = 10;
const BRAKE_WINDOW: Duration = Duration::from_secs(10);

/// This replica's part in the cluster.
pub(super) struct Replica {
    pub(super) link: Arc<dyn ClusterLink>,
    pub(super) view: watch::Receiver<Arc<ClusterView>>,
    /// Whether the loop acts as the leader now (it follows `view.leader`).
    pub(super) leading: bool,
    /// Each rollout's status revision in the store, as last read or written.
    pub(super) revs: BTreeMap<String, i64>,
    /// Request keys applied in memory, not yet deleted by a write.
    pub(super) handled: BTreeMap<String, Vec<String>>,
    /// Actions asked here and handed to the leader, waiting to be applied.
    pub(super) asked: Vec<Asked>,
    /// The last committed status applied to traffic, kept in the state folder too, so
    /// that a restart while the store is unreachable serves the last weights.
    pub(super) cache: Option<Store>,
    pub(super) cached: BTreeMap<String, RolloutStatus>,
    /// The spec hashes last published.
    pub(super) published: BTreeMap<String, String>,
    /// Rollouts held because the replicas run different specs, with the message said.
    pub(super) skewed: BTreeMap<String, String>,
    /// After a write the store could not take: no turn before this (ms).
    pub(super) retry_at: Option<Ms>,
    /// Updates (rollout, when the canary began) this follower braked: its canary share
    /// stays cut until the committed status moves on.
    pub(super) braked: BTreeSet<(String, Ms)>,
}

pub(super) struct Asked {
    key: String,
    rollout: String,
    reply: oneshot::Sender<Result<RolloutView, ActionError>>,
    deadline: Instant,
}

/// A Rollout spec's hash, the same in every process of the same build: replicas compare
/// them to tell whether they run the same spec.
pub(crate) fn spec_hash(spec: &Rollout) -> String {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys (DefaultHasher::new): no per-process seed.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{spec:?}").hash(&mut h);
    format!("{:016x}", h.finish())
}

impl Replica {
    pub(super) fn new(link: Arc<dyn ClusterLink>, cache: Option<Store>) -> Replica {
        Replica {
            view: link.view(),
            link,
            leading: false,
            revs: BTreeMap::new(),
            handled: BTreeMap::new(),
            asked: Vec::new(),
            cache,
            cached: BTreeMap::new(),
            published: BTreeMap::new(),
            skewed: BTreeMap::new(),
            retry_at: None,
            braked: BTreeSet::new(),
        }
    }
}

impl Controller {
    /// Before a turn in cluster mode: publishes the specs this replica runs, follows the
    /// leadership, and answers the actions the leader has applied. Whether this replica
    /// leads (then the turn goes on as the leader's).
    pub(super) fn cluster_prepare(&mut self, model: &Model) -> bool {
        let now = self.clock.now();
        let Some(r) = self.cluster.as_mut() else {
            return true;
        };
        let specs: BTreeMap<String, String> = model
            .argo
            .rollouts
            .iter()
            .map(|(n, s)| (n.clone(), spec_hash(s)))
            .collect();
        if specs != r.published {
            r.link.publish_specs(specs.clone());
            r.published = specs;
        }
        let view = r.view.borrow_and_update().clone();
        if view.leader && !r.leading {
            // Taking over: from what the store has, never from what this replica
            // thought before.
            tracing::info!(node = %r.link.node(), "this replica leads the cluster now: it runs the rollouts");
            r.leading = true;
            r.handled.clear();
            self.saved.clear();
            for (name, c) in &view.statuses {
                let mut st = c.status.clone();
                for run in st.runs_mut() {
                    run.forget_in_flight(now);
                }
                // A pause's elapsed time is the old leader's, as of its last checkpoint,
                // measured on its own clock: moved onto this replica's clock, so that a
                // skew between the two never shortens a pause (it may run longer by the
                // time since the checkpoint and the takeover).
                if let Some(at) = st.checkpoint_ms {
                    for p in &mut st.pause_conditions {
                        let elapsed = at.saturating_sub(p.start_time);
                        p.start_time = now.saturating_sub(elapsed);
                    }
                }
                self.states.insert(name.clone(), st);
                self.saved.insert(name.clone(), c.status.clone());
                r.revs.insert(name.clone(), c.rev);
            }
        } else if !view.leader && r.leading {
            tracing::warn!(node = %r.link.node(), "this replica no longer leads the cluster: it follows the committed status");
            r.leading = false;
            self.stop_measuring.cancel();
            self.stop_measuring = CancellationToken::new();
            self.run_stops.clear();
            self.providers.judges.retain(|_, _| false);
        }
        r.leading
    }

    /// Answers the actions asked here that the leader has applied (their request is
    /// gone from the store), or that waited too long; after the turn has routed what
    /// the store has, so that the answer shows it.
    pub(super) fn answer_asked(&mut self, model: &Model) {
        let Some(r) = self.cluster.as_mut() else {
            return;
        };
        if r.asked.is_empty() {
            return;
        }
        let view = r.view.borrow().clone();
        let pending: BTreeSet<&str> = view.requests.iter().map(|q| q.key.as_str()).collect();
        let at = Instant::now();
        let (done, waiting): (Vec<Asked>, Vec<Asked>) = std::mem::take(&mut r.asked)
            .into_iter()
            .partition(|a| !pending.contains(a.key.as_str()) || at >= a.deadline);
        r.asked = waiting;
        for a in done {
            let applied = !pending.contains(a.key.as_str());
            let view = model.argo.rollouts.get(&a.rollout).map(|spec| {
                let st = view
                    .statuses
                    .get(&a.rollout)
                    .map(|c| c.status.clone())
                    .unwrap_or_else(|| RolloutStatus::new(&a.rollout));
                status_view(
                    &st,
                    spec,
                    self.applied.get(&a.rollout).and_then(Option::as_ref),
                )
            });
            let result = match (applied, view) {
                (_, None) => Err(ActionError::NoRollout(a.rollout.clone())),
                (true, Some(v)) => Ok(v),
                (false, Some(_)) => Err(ActionError::NotApplied(format!(
                    "handed to the cluster's leader, which has not applied it within {}s (is there a leader? see GET /api/v1/cluster); it stays asked",
                    ASK_TIMEOUT.as_secs()
                ))),
            };
            let _ = a.reply.send(result);
        }
    }

    /// The leader's part before its turn: the actions asked on other replicas, applied
    /// in memory (the turn's write commits them and deletes their requests).
    pub(super) fn apply_requests(&mut self, model: &Model) {
        let now = self.clock.now();
        let Some(r) = self.cluster.as_mut() else {
            return;
        };
        let view = r.view.borrow().clone();
        for q in &view.requests {
            if r.handled.values().flatten().any(|k| *k == q.key) {
                continue;
            }
            let handled = r.handled.entry(q.rollout.clone()).or_default();
            handled.push(q.key.clone());
            let (Some(spec), Some(st)) = (
                model.argo.rollouts.get(&q.rollout),
                self.states.get_mut(&q.rollout),
            ) else {
                tracing::warn!(rollout = %q.rollout, from = %q.from, "an action was asked for a rollout this replica does not run: dropped");
                continue;
            };
            match engine::act(st, spec, &q.action, now) {
                Ok(events) => {
                    tracing::info!(rollout = %q.rollout, from = %q.from, action = ?q.action, "applied an action asked on another replica");
                    self.pending
                        .extend(events.into_iter().map(|e| (q.rollout.clone(), e)));
                }
                Err(e) => {
                    tracing::warn!(rollout = %q.rollout, from = %q.from, action = ?q.action, "an action asked on another replica does not apply: {e}");
                }
            }
        }
    }

    /// Whether the leader holds `rollout` because the live replicas run different specs
    /// of it (a config deploy in progress): they must agree before a step is taken.
    pub(super) fn held_for_skew(&mut self, rollout: &str, spec: &Rollout) -> Option<String> {
        let r = self.cluster.as_mut()?;
        let view = r.view.borrow().clone();
        let mine = spec_hash(spec);
        let others: Vec<&String> = view
            .specs
            .get(rollout)
            .map(|m| {
                m.iter()
                    .filter(|(_, h)| **h != mine)
                    .map(|(node, _)| node)
                    .collect()
            })
            .unwrap_or_default();
        let held = (!others.is_empty()).then(|| {
            format!(
                "SpecSkew: held until every replica runs the same Rollout spec ({} differ{})",
                others
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if others.len() == 1 { "s" } else { "" }
            )
        });
        match (&held, r.skewed.get(rollout)) {
            (Some(m), None) => {
                tracing::warn!(rollout = %rollout, "{m}");
                r.skewed.insert(rollout.to_owned(), m.clone());
            }
            (None, Some(_)) => {
                tracing::info!(rollout = %rollout, "every replica runs the same spec again: the rollout goes on");
                r.skewed.remove(rollout);
            }
            _ => {}
        }
        held
    }

    /// The leader's write of `rollout`'s status, fenced. Whether it is committed (then
    /// its traffic may be applied).
    pub(super) async fn commit(&mut self, rollout: &str) -> bool {
        let Some(r) = self.cluster.as_mut() else {
            return true;
        };
        let now = self.clock.now();
        let Some(st) = self.states.get_mut(rollout) else {
            return true;
        };
        let consumed = r.handled.get(rollout).cloned().unwrap_or_default();
        let checkpoint_due = !st.pause_conditions.is_empty()
            && self
                .saved
                .get(rollout)
                .and_then(|s| s.checkpoint_ms)
                .is_none_or(|at| now.saturating_sub(at) >= CHECKPOINT_MS);
        if consumed.is_empty() && !checkpoint_due && !needs_save(self.saved.get(rollout), st) {
            return true;
        }
        st.checkpoint_ms = Some(now);
        let st = &*st;
        let rev = r.revs.get(rollout).copied().unwrap_or(0);
        match r.link.write(rollout, st, rev, &consumed).await {
            Ok(new) => {
                r.retry_at = None;
                r.revs.insert(rollout.to_owned(), new);
                r.handled.remove(rollout);
                self.saved.insert(rollout.to_owned(), st.clone());
                self.stats
                    .state_saves
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if self.unsaved.remove(rollout).is_some() {
                    tracing::info!(rollout = %rollout, "the rollout's status is written to the cluster's store again");
                }
                if let Some(cache) = &r.cache
                    && r.cached.get(rollout) != Some(st)
                    && cache.save(st).is_ok()
                {
                    r.cached.insert(rollout.to_owned(), st.clone());
                }
                true
            }
            Err(e) => {
                let view = r.view.borrow().clone();
                match &e {
                    WriteError::Fenced => {
                        tracing::warn!(rollout = %rollout, "status write fenced: this replica no longer leads");
                        r.leading = false;
                    }
                    WriteError::Raced => {
                        tracing::warn!(rollout = %rollout, "the status changed in the store since it was read: read again");
                    }
                    WriteError::Unavailable(_) => {}
                }
                if e != WriteError::Raced && self.unsaved.get(rollout) != Some(&e.to_string()) {
                    tracing::error!(rollout = %rollout, "cannot write the rollout's status (no step is applied until it is; retried on every turn): {e}");
                }
                if let WriteError::Unavailable(_) = e {
                    // Nothing moves while the store is out of reach: the rollout goes back
                    // to what was committed, and the next turn decides again from there
                    // (so a pause that ended meanwhile advances one step when the store
                    // is back, never several at once).
                    r.handled.remove(rollout);
                    r.retry_at = Some(self.clock.now() + RETRY_MS);
                    if let Some(st) = self.saved.get(rollout) {
                        self.states.insert(rollout.to_owned(), st.clone());
                    }
                }
                if matches!(e, WriteError::Raced | WriteError::Fenced) {
                    // Start again from what the store has.
                    r.handled.remove(rollout);
                    match view.statuses.get(rollout) {
                        Some(c) => {
                            self.states.insert(rollout.to_owned(), c.status.clone());
                            self.saved.insert(rollout.to_owned(), c.status.clone());
                            r.revs.insert(rollout.to_owned(), c.rev);
                        }
                        None => {
                            self.saved.remove(rollout);
                            r.revs.remove(rollout);
                        }
                    }
                }
                self.unsaved.insert(rollout.to_owned(), e.to_string());
                false
            }
        }
    }

    /// A follower's turn: each rollout routed by its committed status.
    pub(super) async fn follow(&mut self, model: &Model) {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.clock.now();
        let Some(r) = self.cluster.as_mut() else {
            return;
        };
        let view = r.view.borrow().clone();
        let mut changed = false;
        for (name, spec) in &model.argo.rollouts {
            let router = &*self.router;
            let endpoints = |image: &str| has_endpoints(model, router, name, image);
            let st = match view.statuses.get(name) {
                Some(c) => {
                    r.revs.insert(name.clone(), c.rev);
                    c.status.clone()
                }
                // Not written yet (a rollout new to the cluster), or the store is out of
                // reach: what this replica had (from its state folder after a restart),
                // else what a first sight serves.
                None => match self.states.remove(name) {
                    Some(st) => st,
                    None => {
                        let mut st = RolloutStatus::new(name);
                        let world = World {
                            now,
                            argo: &model.argo,
                            has_endpoints: &endpoints,
                        };
                        engine::reconcile(&mut st, spec, &world);
                        st
                    }
                },
            };
            let mut plan = engine::traffic(&st, spec, &endpoints);
            // The fast brake: moving toward stable is always allowed locally.
            if let (Some(p), Some(since), Some(cur)) =
                (plan.as_mut(), st.canary_since(), st.current.as_ref())
                && !st.aborted
                && p.canary_weight > weir_config::model::Weight::ZERO
            {
                let key = (name.clone(), since);
                if !r.braked.contains(&key) {
                    let seen = self.providers.metrics.sample(
                        name,
                        &cur.image,
                        Served::AsCanaryBySplit,
                        BRAKE_WINDOW,
                        Some(since),
                        0.99,
                    );
                    if seen.requests >= BRAKE_MIN_FAILED && seen.failures == seen.requests {
                        tracing::warn!(rollout = %name, failed = seen.failures, "fast brake: every one of this replica's last {} canary requests failed; its canary share is cut to 0 and the leader is asked to abort", seen.requests);
                        r.braked.insert(key.clone());
                        if let Err(e) = r.link.ask(name, &Action::Abort).await {
                            tracing::warn!(rollout = %name, "fast brake: cannot ask the leader to abort: {e}");
                        }
                    }
                }
                if r.braked.contains(&key) {
                    p.canary_weight = weir_config::model::Weight::ZERO;
                }
            }
            r.braked
                .retain(|(n, at)| n != name || st.canary_since() == Some(*at) && !st.aborted);
            if self.applied.get(name) != Some(&plan) {
                self.router.send(name, name, plan.clone());
                self.applied.insert(name.clone(), plan);
                changed = true;
            }
            if view.statuses.contains_key(name)
                && let Some(cache) = &r.cache
                && r.cached.get(name) != Some(&st)
                && cache.save(&st).is_ok()
            {
                r.cached.insert(name.clone(), st.clone());
            }
            self.states.insert(name.clone(), st);
        }
        let gone: Vec<String> = self
            .states
            .keys()
            .filter(|k| !model.argo.rollouts.contains_key(*k))
            .cloned()
            .collect();
        for name in gone {
            self.states.remove(&name);
            if self.applied.remove(&name).is_some() {
                self.router.apply(&name, &name, None).await;
            }
        }
        if changed {
            self.router.flush().await;
        }
        self.stats.turns.fetch_add(1, Relaxed);
        self.stats.heartbeat_ms.store(self.clock.now(), Relaxed);
    }

    /// An action asked on a follower: checked against the committed status here (so a
    /// refusal is said at once), then handed to the leader; the reply waits until the
    /// leader has applied it.
    pub(super) async fn ask_leader(
        &mut self,
        rollout: String,
        action: Action,
        spec: &Rollout,
        reply: oneshot::Sender<Result<RolloutView, ActionError>>,
    ) {
        let now = self.clock.now();
        let Some(st) = self.states.get(&rollout) else {
            let _ = reply.send(Err(ActionError::NoRollout(rollout)));
            return;
        };
        let mut probe = st.clone();
        if let Err(e) = engine::act(&mut probe, spec, &action, now) {
            let _ = reply.send(Err(ActionError::Refused(e)));
            return;
        }
        let Some(r) = self.cluster.as_mut() else {
            return;
        };
        match r.link.ask(&rollout, &action).await {
            Ok(key) => r.asked.push(Asked {
                key,
                rollout,
                reply,
                deadline: Instant::now() + ASK_TIMEOUT,
            }),
            Err(e) => {
                let _ = reply.send(Err(ActionError::NotApplied(format!(
                    "cannot hand the action to the cluster's leader: {e}"
                ))));
            }
        }
    }

    /// Whether the loop runs as a follower now.
    pub(super) fn following(&self) -> bool {
        self.cluster.as_ref().is_some_and(|r| !r.leading)
    }

    /// In cluster mode, the earliest the leader's next turn may be (after a write the
    /// store could not take), and whether `rollout` is held (its pauses and runs then do
    /// not wake the loop: nothing of it moves until the replicas agree).
    pub(super) fn cluster_wake(&self, rollout: &str) -> (Option<Ms>, bool) {
        match &self.cluster {
            Some(r) => (r.retry_at, r.skewed.contains_key(rollout)),
            None => (None, false),
        }
    }
}
