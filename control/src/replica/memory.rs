//! A [`ClusterLink`] over a store in memory, shared by the replicas of one process: the
//! same contract as etcd's (fenced writes, committed statuses seen by every replica,
//! requests), with the leadership set by hand. For tests of the control loop in cluster
//! mode in paused time, where real etcd has no place (its leases run on real time).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use super::{ActionRequest, ClusterLink, ClusterView, Committed, LinkFuture, WriteError};
use crate::engine::Action;
use crate::state::RolloutStatus;

/// The shared store.
#[derive(Debug, Default)]
struct Store {
    rev: i64,
    statuses: BTreeMap<String, Committed>,
    requests: BTreeMap<String, ActionRequest>,
    /// The leader and its term: a write is fenced by the term it was elected in.
    leader: Option<(String, u64)>,
    term: u64,
    /// Replicas cut off from the store: their calls fail, their views stop.
    cut: std::collections::BTreeSet<String>,
    specs: BTreeMap<String, BTreeMap<String, String>>,
    views: BTreeMap<String, watch::Sender<Arc<ClusterView>>>,
    /// Each replica's belief: whether it leads, and in which term. A replica that was
    /// deposed while cut off (frozen) keeps its belief until it hears from the store.
    believed: BTreeMap<String, Option<u64>>,
    writes: u64,
}

/// The store the replicas of a test share. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct MemoryCluster(Arc<Mutex<Store>>);

/// One replica's link to a [`MemoryCluster`].
#[derive(Debug)]
pub struct MemoryLink {
    node: String,
    cluster: MemoryCluster,
    rx: watch::Receiver<Arc<ClusterView>>,
}

impl MemoryCluster {
    /// An empty store.
    pub fn new() -> MemoryCluster {
        MemoryCluster::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A replica named `node` joins.
    pub fn join(&self, node: &str) -> Arc<MemoryLink> {
        let mut s = self.lock();
        let (tx, rx) = watch::channel(Arc::new(ClusterView::default()));
        s.views.insert(node.to_owned(), tx);
        s.believed.insert(node.to_owned(), None);
        s.publish();
        Arc::new(MemoryLink {
            node: node.to_owned(),
            cluster: self.clone(),
            rx,
        })
    }

    /// `node` wins an election (a new term); the former leader is told, unless it is cut
    /// off, in which case it believes it leads until it hears from the store.
    pub fn elect(&self, node: &str) {
        let mut s = self.lock();
        s.term += 1;
        let term = s.term;
        s.leader = Some((node.to_owned(), term));
        s.publish();
    }

    /// No replica leads (the leader's session lapsed, nobody elected yet).
    pub fn no_leader(&self) {
        let mut s = self.lock();
        s.leader = None;
        s.publish();
    }

    /// Cuts `node` off from the store (or reconnects it): its writes fail as
    /// unavailable and its view stops changing, its belief included.
    pub fn cut(&self, node: &str, cut: bool) {
        let mut s = self.lock();
        if cut {
            s.cut.insert(node.to_owned());
        } else {
            s.cut.remove(node);
        }
        s.publish();
    }

    /// A replica leaves (its process ended): its published specs go with it.
    pub fn leave(&self, node: &str) {
        let mut s = self.lock();
        s.views.remove(node);
        s.specs.remove(node);
        s.believed.remove(node);
        s.publish();
    }

    /// The committed status of `rollout`.
    pub fn status(&self, rollout: &str) -> Option<Committed> {
        self.lock().statuses.get(rollout).cloned()
    }

    /// Status writes that succeeded.
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }
}

impl Store {
    /// Tells every replica that can hear the store what it holds now.
    fn publish(&mut self) {
        let mut specs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (node, m) in &self.specs {
            for (rollout, hash) in m {
                specs
                    .entry(rollout.clone())
                    .or_default()
                    .insert(node.clone(), hash.clone());
            }
        }
        for (node, tx) in &self.views {
            if self.cut.contains(node) {
                continue;
            }
            let belief = match &self.leader {
                Some((n, term)) if n == node => Some(*term),
                _ => None,
            };
            self.believed.insert(node.clone(), belief);
            tx.send_replace(Arc::new(ClusterView {
                leader: belief.is_some(),
                statuses: self.statuses.clone(),
                requests: self
                    .requests
                    .iter()
                    .map(|(k, q)| ActionRequest {
                        key: k.clone(),
                        ..q.clone()
                    })
                    .collect(),
                specs: specs.clone(),
            }));
        }
    }
}

impl ClusterLink for MemoryLink {
    fn node(&self) -> &str {
        &self.node
    }

    fn view(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.rx.clone()
    }

    fn write<'a>(
        &'a self,
        rollout: &'a str,
        status: &'a RolloutStatus,
        rev: i64,
        consumed: &'a [String],
    ) -> LinkFuture<'a, Result<i64, WriteError>> {
        Box::pin(async move {
            let mut s = self.cluster.lock();
            if s.cut.contains(&self.node) {
                return Err(WriteError::Unavailable("cut off from the store".into()));
            }
            // The fencing token: the term this replica believes it leads in must be the
            // store's leader term, checked by the store in the same step as the write.
            let believed = s.believed.get(&self.node).copied().flatten();
            let fenced = match (&s.leader, believed) {
                (Some((n, term)), Some(mine)) => *n != self.node || *term != mine,
                _ => true,
            };
            if fenced {
                s.publish();
                return Err(WriteError::Fenced);
            }
            let current = s.statuses.get(rollout).map_or(0, |c| c.rev);
            if current != rev {
                s.publish();
                return Err(WriteError::Raced);
            }
            s.rev += 1;
            let new = s.rev;
            s.statuses.insert(
                rollout.to_owned(),
                Committed {
                    status: status.clone(),
                    rev: new,
                },
            );
            for k in consumed {
                s.requests.remove(k);
            }
            s.writes += 1;
            s.publish();
            Ok(new)
        })
    }

    fn ask<'a>(
        &'a self,
        rollout: &'a str,
        action: &'a Action,
    ) -> LinkFuture<'a, Result<String, WriteError>> {
        Box::pin(async move {
            let mut s = self.cluster.lock();
            if s.cut.contains(&self.node) {
                return Err(WriteError::Unavailable("cut off from the store".into()));
            }
            s.rev += 1;
            let key = format!("requests/{:020}", s.rev);
            s.requests.insert(
                key.clone(),
                ActionRequest {
                    key: key.clone(),
                    rollout: rollout.to_owned(),
                    action: action.clone(),
                    from: self.node.clone(),
                },
            );
            s.publish();
            Ok(key)
        })
    }

    fn publish_specs(&self, specs: BTreeMap<String, String>) {
        let mut s = self.cluster.lock();
        s.specs.insert(self.node.clone(), specs);
        s.publish();
    }
}
