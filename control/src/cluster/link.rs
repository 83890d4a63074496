//! [`EtcdLink`]: the control loop's [`ClusterLink`] over etcd. One background task keeps
//! this replica in the cluster: it connects (and keeps trying while etcd is out of
//! reach, while weir serves what it has), holds a session, registers the member,
//! campaigns for leadership, and watches everything under `<prefix>/v1/` to keep the
//! [`ClusterView`] the loop reads: the committed statuses, the requests, the members'
//! spec hashes, and whether this replica leads.
//!
//! This replica leads while its candidacy key is the oldest under `leader/` *and* its
//! session is live by its own clock: a leader whose renewals go unanswered stops at its
//! local deadline (before the lease can expire on the server), and every status write is
//! fenced on the key's create revision anyway.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::election::{Leadership, campaign};
use super::error::ClusterError;
use super::etcd::{Etcd, EtcdOptions, Kv};
use super::keys::Keys;
use super::members::{MemberInfo, register};
use super::session::{Session, SessionOptions, SessionState};
use super::status::{FencedWrite, WriteOutcome};
use super::watch::{Change, PrefixWatch, StartAt, WatchUpdate};
use crate::engine::Action;
use crate::replica::{ActionRequest, ClusterLink, ClusterView, Committed, LinkFuture, WriteError};
use crate::state::RolloutStatus;

/// weir's Rollouts have no namespace of their own: their keys use this one.
const NAMESPACE: &str = "default";
/// The longest pause between attempts to reach etcd.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What a member shows of itself and of the cluster, for `GET /api/v1/cluster`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReport {
    /// This replica's name.
    pub node: String,
    /// The leader's name, if one is known.
    pub leader: Option<String>,
    /// Whether this replica leads.
    pub leading: bool,
    /// Whether this replica has heard from etcd recently (false: it serves the last
    /// weights it applied, and takes no step).
    pub fresh: bool,
    /// This replica's session: `live`, `suspended`, `lost`, or `none` (not connected).
    pub session: String,
    /// The etcd member this replica talks to.
    pub etcd: Option<String>,
    /// Every registered member.
    pub members: Vec<MemberReport>,
    /// The last problem reaching etcd, if any.
    pub problem: Option<String>,
    /// Bytes of keys and values this replica has written to etcd (statuses, requests,
    /// its member record; lease renewals and reads not counted).
    pub bytes_written: u64,
}

/// One member in the [`ClusterReport`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberReport {
    /// Its name.
    pub node: String,
    /// Its admin API.
    pub admin: String,
    /// weir's version.
    pub version: String,
    /// Whether it leads.
    pub leader: bool,
    /// The hash of each Rollout spec it runs.
    pub spec_hashes: BTreeMap<String, String>,
}

/// What the background task knows, shared with the link's calls.
#[derive(Debug, Default)]
struct Shared {
    etcd: Option<Etcd>,
    leadership: Option<Leadership>,
    session: Option<SessionState>,
    /// Every key under `<prefix>/v1/`, as the watch last delivered it.
    kvs: BTreeMap<String, Kv>,
    fresh: bool,
    problem: Option<String>,
    /// The session's lease, while there is one.
    lease: Option<i64>,
    /// Bytes of keys and values written.
    written: u64,
}

/// A replica's link to the cluster through etcd.
#[derive(Debug)]
pub struct EtcdLink {
    node: String,
    keys: Keys,
    shared: Arc<Mutex<Shared>>,
    view: watch::Receiver<Arc<ClusterView>>,
    view_tx: Arc<watch::Sender<Arc<ClusterView>>>,
    report: watch::Receiver<ClusterReport>,
    specs: mpsc::UnboundedSender<BTreeMap<String, String>>,
    stop: CancellationToken,
    seq: std::sync::atomic::AtomicU64,
}

impl Drop for EtcdLink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl EtcdLink {
    /// Starts keeping replica `node` (whose admin API is at `admin`) in the cluster
    /// whose etcd members are `endpoints` (`host:port`), under `prefix`. Returns at once:
    /// etcd may be out of reach, and weir serves meanwhile.
    ///
    /// # Errors
    /// When `node` or `prefix` cannot be part of a key.
    pub fn start(
        endpoints: &[String],
        prefix: &str,
        node: &str,
        admin: SocketAddr,
    ) -> Result<Arc<EtcdLink>, ClusterError> {
        let keys = Keys::new(prefix)?;
        super::keys::check_name("node", node)?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (view_tx, view) = watch::channel(Arc::new(ClusterView::default()));
        let view_tx = Arc::new(view_tx);
        let (report_tx, report) = watch::channel(ClusterReport {
            node: node.to_owned(),
            session: "none".into(),
            ..ClusterReport::default()
        });
        let (specs, specs_rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let task = Task {
            node: node.to_owned(),
            admin: format!("http://{admin}"),
            keys: keys.clone(),
            options: EtcdOptions::new(endpoints.iter().map(|e| format!("http://{e}"))),
            shared: shared.clone(),
            view: view_tx.clone(),
            report: report_tx,
            specs: BTreeMap::new(),
            specs_rx,
            session: None,
        };
        tokio::spawn(task.run(stop.clone()));
        Ok(Arc::new(EtcdLink {
            node: node.to_owned(),
            keys,
            shared,
            view,
            view_tx,
            report,
            specs,
            stop,
            seq: Default::default(),
        }))
    }

    /// What this replica knows of the cluster, updated as it changes.
    pub fn report(&self) -> watch::Receiver<ClusterReport> {
        self.report.clone()
    }

    /// Bytes of keys and values this replica has written to etcd so far.
    pub fn bytes_written(&self) -> u64 {
        self.lock().written
    }

    /// Leaves the cluster at once (at shutdown): stops the background task and revokes
    /// the session's lease, so that this replica's keys go now and, if it led, another
    /// replica takes over in milliseconds rather than after the lease's TTL.
    pub async fn leave(&self) {
        self.stop.cancel();
        // The control loop stops leading now (its writes would be fenced anyway).
        self.view_tx.send_modify(|v| {
            let mut left = (**v).clone();
            left.leader = false;
            *v = Arc::new(left);
        });
        self.lock().leadership = None;
        let (etcd, lease) = {
            let s = self.lock();
            (s.etcd.clone(), s.lease)
        };
        if let (Some(etcd), Some(lease)) = (etcd, lease) {
            match etcd.lease_revoke(lease).await {
                Ok(()) => tracing::info!(node = %self.node, "left the cluster"),
                Err(e) => {
                    tracing::warn!(node = %self.node, "could not leave the cluster cleanly ({e}): its keys go when the session's lease expires")
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn unavailable(e: &ClusterError) -> WriteError {
    WriteError::Unavailable(e.to_string())
}

impl ClusterLink for EtcdLink {
    fn node(&self) -> &str {
        &self.node
    }

    fn view(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view.clone()
    }

    fn write<'a>(
        &'a self,
        rollout: &'a str,
        status: &'a RolloutStatus,
        rev: i64,
        consumed: &'a [String],
    ) -> LinkFuture<'a, Result<i64, WriteError>> {
        Box::pin(async move {
            let (etcd, leadership, session) = {
                let s = self.lock();
                (s.etcd.clone(), s.leadership.clone(), s.session)
            };
            let Some(etcd) = etcd else {
                return Err(WriteError::Unavailable("not connected to etcd".into()));
            };
            let Some(leadership) = leadership else {
                return Err(WriteError::Fenced);
            };
            if session != Some(SessionState::Live) {
                return Err(WriteError::Unavailable(
                    "this replica's session is not live (etcd is out of reach)".into(),
                ));
            }
            let key = self
                .keys
                .status(NAMESPACE, rollout)
                .map_err(|e| unavailable(&e))?;
            let value = serde_json::to_vec(status)
                .map_err(|e| WriteError::Unavailable(format!("cannot encode the status: {e}")))?;
            let size = key.len() + value.len() + consumed.iter().map(String::len).sum::<usize>();
            self.lock().written += size as u64;
            let mut w = FencedWrite::new(&leadership, key, rev, value);
            for k in consumed {
                w = w.also_delete(k.clone());
            }
            match w.send(&etcd).await {
                Ok(WriteOutcome::Written { revision }) => Ok(revision),
                Ok(WriteOutcome::Fenced) => {
                    let mut s = self.lock();
                    if s.leadership.as_ref() == Some(&leadership) {
                        s.leadership = None;
                    }
                    Err(WriteError::Fenced)
                }
                Ok(WriteOutcome::Raced { .. }) => Err(WriteError::Raced),
                Err(e) => Err(unavailable(&e)),
            }
        })
    }

    fn ask<'a>(
        &'a self,
        rollout: &'a str,
        action: &'a Action,
    ) -> LinkFuture<'a, Result<String, WriteError>> {
        Box::pin(async move {
            let Some(etcd) = self.lock().etcd.clone() else {
                return Err(WriteError::Unavailable("not connected to etcd".into()));
            };
            let prefix = self
                .keys
                .requests(NAMESPACE, rollout)
                .map_err(|e| unavailable(&e))?;
            let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            let key = format!("{prefix}{ms:013}-{}-{n}", self.node);
            let request = ActionRequest {
                key: key.clone(),
                rollout: rollout.to_owned(),
                action: action.clone(),
                from: self.node.clone(),
            };
            let value = serde_json::to_vec(&request)
                .map_err(|e| WriteError::Unavailable(format!("cannot encode the request: {e}")))?;
            self.lock().written += (key.len() + value.len()) as u64;
            etcd.put(&key, value, None)
                .await
                .map_err(|e| unavailable(&e))?;
            Ok(key)
        })
    }

    fn publish_specs(&self, specs: BTreeMap<String, String>) {
        let _ = self.specs.send(specs);
    }
}

/// The background task.
struct Task {
    node: String,
    admin: String,
    keys: Keys,
    options: EtcdOptions,
    shared: Arc<Mutex<Shared>>,
    view: Arc<watch::Sender<Arc<ClusterView>>>,
    report: watch::Sender<ClusterReport>,
    specs: BTreeMap<String, String>,
    specs_rx: mpsc::UnboundedReceiver<BTreeMap<String, String>>,
    /// The session of the connection in progress.
    session: Option<Arc<Session>>,
}

impl Task {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn run(mut self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let outcome = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.connected(&stop) => r,
            };
            if let Err(e) = outcome {
                tracing::warn!(node = %self.node, "cluster: {e}; trying again");
                self.lock().problem = Some(e.to_string());
            }
            {
                let mut s = self.lock();
                s.leadership = None;
                s.session = None;
                s.lease = None;
                s.fresh = false;
            }
            self.publish();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection's life: until the session is lost or a call fails for good.
    async fn connected(&mut self, stop: &CancellationToken) -> Result<(), ClusterError> {
        let etcd = Etcd::connect(&self.options).await?;
        let session = Session::start(&etcd, SessionOptions::default()).await?;
        let incarnation = format!("{:x}", session.lease());
        let (node, admin) = (self.node.clone(), self.admin.clone());
        let info = move |specs: &BTreeMap<String, String>| MemberInfo {
            node: node.clone(),
            admin: admin.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            spec_hashes: specs.clone(),
            incarnation: incarnation.clone(),
        };
        let first = info(&self.specs);
        self.lock().written += (self.keys.member(&self.node)?.len()
            + serde_json::to_vec(&first).map_or(0, |v| v.len()))
            as u64;
        register(&etcd, &self.keys, &session, &first).await?;
        {
            let mut s = self.lock();
            s.etcd = Some(etcd.clone());
            s.session = Some(session.state());
            s.lease = Some(session.lease());
            s.problem = None;
        }
        tracing::info!(node = %self.node, etcd = %etcd.pinned_url(), "joined the cluster");
        let mut watch = PrefixWatch::start(
            &etcd,
            format!("{}/v1/", self.keys.prefix()),
            StartAt::Snapshot,
        );
        let mut health = watch.subscribe_health();
        let mut states = session.subscribe();
        // The campaign waits until this replica leads; it runs beside the watch.
        let campaign_stop = stop.child_token();
        let (won_tx, mut won) = watch::channel(None::<Leadership>);
        {
            let etcd = etcd.clone();
            let keys = self.keys.clone();
            let node = self.node.clone();
            let session_lease = session.lease();
            let session_ref = Arc::new(session);
            let s2 = session_ref.clone();
            let token = campaign_stop.clone();
            tokio::spawn(async move {
                loop {
                    let r = tokio::select! {
                        _ = token.cancelled() => return,
                        r = campaign(&etcd, &keys, &s2, node.as_bytes()) => r,
                    };
                    match r {
                        Ok(l) => {
                            let _ = won_tx.send(Some(l));
                            return;
                        }
                        Err(ClusterError::LeaseLost(_)) => return,
                        Err(e) => {
                            tracing::debug!(lease = session_lease, "campaign: {e}; trying again");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            });
            // The session lives as long as this connection: dropped at its end.
            self.session = Some(session_ref);
            let result = self
                .follow(&mut watch, &mut health, &mut states, &mut won, &info)
                .await;
            campaign_stop.cancel();
            self.session = None;
            self.lock().lease = None;
            result
        }
    }

    /// Keeps the view up to date until the session is lost.
    async fn follow(
        &mut self,
        watch: &mut PrefixWatch,
        health: &mut watch::Receiver<super::watch::WatchHealth>,
        states: &mut watch::Receiver<SessionState>,
        won: &mut watch::Receiver<Option<Leadership>>,
        info: &(dyn Fn(&BTreeMap<String, String>) -> MemberInfo + Sync),
    ) -> Result<(), ClusterError> {
        let mut reregister = None::<BTreeMap<String, String>>;
        let mut campaign_over = false;
        loop {
            tokio::select! {
                u = watch.next() => {
                    let Some(u) = u else {
                        return Err(ClusterError::Protocol("the watch ended"));
                    };
                    let mut s = self.lock();
                    match u {
                        WatchUpdate::Snapshot { kvs, .. } => {
                            s.kvs = kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
                        }
                        WatchUpdate::Changes { changes, .. } => {
                            for c in changes {
                                match c {
                                    Change::Put(kv) => {
                                        s.kvs.insert(kv.key.clone(), kv);
                                    }
                                    Change::Delete { key, .. } => {
                                        s.kvs.remove(&key);
                                    }
                                }
                            }
                        }
                    }
                    s.fresh = !watch.health().stale;
                }
                r = health.changed() => {
                    if r.is_err() {
                        return Err(ClusterError::Protocol("the watch ended"));
                    }
                    let stale = health.borrow_and_update().stale;
                    self.lock().fresh = !stale;
                }
                r = states.changed() => {
                    if r.is_err() {
                        return Err(ClusterError::Protocol("the session ended"));
                    }
                    let st = *states.borrow_and_update();
                    self.lock().session = Some(st);
                    if st == SessionState::Lost {
                        self.publish();
                        return Err(ClusterError::Protocol("the session's lease is gone"));
                    }
                }
                // The campaign task ends once it has won (or its lease is gone): its
                // channel is then closed, and polled no more (a closed channel is
                // always ready: polling it would spin).
                r = won.changed(), if !campaign_over => {
                    match r {
                        Ok(()) => {
                            let l = won.borrow_and_update().clone();
                            if let Some(l) = &l {
                                tracing::info!(node = %self.node, token = l.rev, "won the election");
                            }
                            self.lock().leadership = l;
                        }
                        Err(_) => campaign_over = true,
                    }
                }
                Some(specs) = self.specs_rx.recv() => {
                    self.specs = specs.clone();
                    reregister = Some(specs);
                }
                _ = tokio::time::sleep(Duration::from_millis(500)), if reregister.is_some() => {}
            }
            if let Some(specs) = reregister.take() {
                let (etcd, lease_ok) = {
                    let s = self.lock();
                    (s.etcd.clone(), s.session == Some(SessionState::Live))
                };
                if let (Some(etcd), true) = (etcd, lease_ok) {
                    // The session itself is owned by the caller; registration needs only
                    // the lease, which the member key already carries: rewrite its value.
                    let key = self.keys.member(&self.node)?;
                    let value = serde_json::to_vec(&info(&specs)).map_err(|source| {
                        ClusterError::Decode {
                            key: key.clone(),
                            source,
                        }
                    })?;
                    let lease = self
                        .lock()
                        .kvs
                        .get(&key)
                        .map(|kv| kv.lease)
                        .filter(|l| *l != 0);
                    match lease {
                        Some(lease) => {
                            self.lock().written += (key.len() + value.len()) as u64;
                            if let Err(e) = etcd.put(&key, value, Some(lease)).await {
                                tracing::debug!(
                                    "cannot publish the spec hashes: {e}; trying again"
                                );
                                reregister = Some(specs);
                            }
                        }
                        None => reregister = Some(specs),
                    }
                } else {
                    reregister = Some(specs);
                }
            }
            self.publish();
        }
    }

    /// Builds the view and the report from what is known.
    fn publish(&self) {
        let s = self.lock();
        let leader_prefix = self.keys.leader();
        let leader_kv = s
            .kvs
            .values()
            .filter(|kv| kv.key.starts_with(&leader_prefix))
            .min_by_key(|kv| kv.create_revision);
        // Live by the session's own clock now, not only as last reported: a replica woken
        // from a freeze past its deadline does not say it leads for a moment.
        let live_now = self
            .session
            .as_ref()
            .is_some_and(|x| x.state() == SessionState::Live);
        let leading = s.session == Some(SessionState::Live)
            && live_now
            && match (&s.leadership, leader_kv) {
                (Some(l), Some(kv)) => kv.key == l.key && kv.create_revision == l.rev,
                _ => false,
            };
        let rollouts = self.keys.rollouts();
        let mut statuses = BTreeMap::new();
        let mut requests = Vec::new();
        for kv in s.kvs.values() {
            let Some(rest) = kv.key.strip_prefix(&rollouts) else {
                continue;
            };
            let mut parts = rest.splitn(4, '/');
            let (_ns, Some(name), Some(kind)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            match kind {
                "status" => match serde_json::from_slice::<RolloutStatus>(&kv.value) {
                    Ok(status) => {
                        statuses.insert(
                            name.to_owned(),
                            Committed {
                                status,
                                rev: kv.mod_revision,
                            },
                        );
                    }
                    Err(e) => {
                        tracing::warn!(key = %kv.key, "cannot read a rollout status from etcd: {e}")
                    }
                },
                "requests" => match serde_json::from_slice::<ActionRequest>(&kv.value) {
                    Ok(mut q) => {
                        q.key = kv.key.clone();
                        requests.push((kv.create_revision, q));
                    }
                    Err(e) => {
                        tracing::warn!(key = %kv.key, "cannot read an action request from etcd: {e}")
                    }
                },
                _ => {}
            }
        }
        requests.sort_by_key(|(rev, _)| *rev);
        let members_prefix = self.keys.members();
        let members: Vec<MemberInfo> = s
            .kvs
            .values()
            .filter(|kv| kv.key.starts_with(&members_prefix))
            .filter_map(|kv| serde_json::from_slice::<MemberInfo>(&kv.value).ok())
            .collect();
        let mut specs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for m in &members {
            for (rollout, hash) in &m.spec_hashes {
                specs
                    .entry(rollout.clone())
                    .or_default()
                    .insert(m.node.clone(), hash.clone());
            }
        }
        let leader_name = leader_kv.map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
        let view = ClusterView {
            leader: leading,
            statuses,
            requests: requests.into_iter().map(|(_, q)| q).collect(),
            specs,
        };
        // Sent only when it changed: every send wakes the control loop for a turn.
        self.view.send_if_modified(|v| {
            if **v == view {
                false
            } else {
                *v = Arc::new(view);
                true
            }
        });
        let report = ClusterReport {
            node: self.node.clone(),
            leader: leader_name.clone(),
            leading,
            fresh: s.fresh,
            session: match s.session {
                None => "none",
                Some(SessionState::Live) => "live",
                Some(SessionState::Suspended) => "suspended",
                Some(SessionState::Lost) => "lost",
            }
            .into(),
            etcd: s.etcd.as_ref().map(|e| e.pinned_url().to_owned()),
            members: members
                .iter()
                .map(|m| MemberReport {
                    node: m.node.clone(),
                    admin: m.admin.clone(),
                    version: m.version.clone(),
                    leader: leader_name.as_deref() == Some(m.node.as_str()),
                    spec_hashes: m.spec_hashes.clone(),
                })
                .collect(),
            problem: s.problem.clone(),
            bytes_written: s.written,
        };
        self.report.send_if_modified(|r| {
            if *r == report {
                false
            } else {
                *r = report;
                true
            }
        });
    }
}
