//! Cluster mode (issue 14): a real 3-member etcd on loopback ([`EtcdCluster`]) and three
//! real weir processes (`weir serve --node nI`), each with its own config, state folder and
//! log file in a temporary folder, and its listening sockets bound here and handed over
//! (`LISTEN_FDS`), so that a replica restarted after a kill gets the same ports. Four
//! phases, each on a fresh cluster (etcd and weirs), so that one cannot disturb another:
//!
//! 1. **Takeover.** Rollout `app`: `setWeight: 10`, `pause: {duration: 3s}`,
//!    `setWeight: 20`, `pause: {}`. Each run starts an update (a config rewrite on every
//!    replica), waits until the leader shows weight 10 (the pause began), and 2 s into the
//!    3 s pause kills the leader with SIGKILL (or freezes it with SIGSTOP). Every 20 ms both
//!    survivors' `GET /api/v1/cluster` and `GET /api/v1/rollouts/app` are read: the time
//!    from the signal until one says `leading: true`, and until both show weight 20 (the
//!    next step; it was due 1 s after the signal, so a takeover that restarted the pause's
//!    clock would show as 3 s more). A frozen leader then gets SIGCONT and is read every
//!    20 ms until it says `leading: false`, names the successor and shows weight 20 (and
//!    for how long it still said `leading: true`); a killed one is started again and must do
//!    the same. `promote?full=true` ends the update; the next run goes back the other way.
//! 2. **Status to every replica.** Rollout `app` with `setWeight: 1`, `pause: {}`,
//!    `setWeight: 2`, `pause: {}`, ...; N times, `POST /api/v1/rollouts/app/promote` on the
//!    leader while a task per replica reads its `GET /api/v1/rollouts/app` in a loop (one
//!    keep-alive connection, 2 ms sleep between reads) until `canaryWeight` is the next
//!    weight. The latency is from the POST's response (it can be negative: a replica may show
//!    the weight before the response has reached the bench) and from the POST's sending; the
//!    polling adds up to its interval plus one read.
//! 3. **Bytes written to etcd.** Rollout `app` with a background analysis (weir's
//!    `success-rate`, every 1 s) and `setWeight: 20`, `pause: {}`, under 20 requests/s of
//!    open-loop load on each replica. Each replica's `weir_cluster_etcd_bytes_written_total`
//!    (keys and values written; lease renewals and reads not counted) over a measured
//!    interval, first with the rollout Healthy (idle), then paused at 20% with the analysis
//!    running. etcd's own counters over the same interval, for the whole cluster: gRPC bytes
//!    received from clients (every member summed: everything the weirs send, renewals and
//!    reads too) and puts/deletes/txns (from one member: each applies every write).
//! 4. **Control loop CPU.** 100 Rollouts (`app-I`, each with its Service and a route on host
//!    `app-I.bench`), `setWeight: 10`, `pause: {}`; no traffic. utime and stime of each weir
//!    (and of each etcd member) from `/proc/PID/stat` over a measured interval, with every
//!    Rollout Healthy, then after one rewrite with every Rollout paused at 10%.
//!
//! Every replica logs at `info` to `nI/weir.log`; when a phase fails, its folder is kept
//! and the error says where. Everything started is stopped when the scenario ends, on error
//! or panic too (the replicas are woken with SIGCONT first).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use command_fds::{CommandFdExt, FdMapping};
use rustix::process::Signal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use weir_fixtures::{Behavior, EtcdCluster, FakeBackend, LoadSpec, Mode};

use super::canary::{
    ControlMetrics, Guard, RolloutView, Spread, image_service_yaml, prometheus_value, rollout_yaml,
};
use super::{ChildGuard, KeepAlive, WeirOptions, quantile_sorted};

const STABLE: &str = "app:v1";
const CANARY: &str = "app:v2";
/// The replicas' names.
const NODES: [&str; 3] = ["n1", "n2", "n3"];
/// How long one admin API read may take (a frozen replica never answers).
const READ_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a replica may take to answer `/healthz` after its start.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the cluster may take to agree on a leader, or to reach a state waited for.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Between reads while waiting for a state (not a measured wait).
const WAIT_POLL: Duration = Duration::from_millis(50);
/// Between reads in the takeover runs.
const TAKEOVER_POLL: Duration = Duration::from_millis(20);
/// The takeover rollout's pause, and how far into it the leader is killed or frozen.
const TAKEOVER_PAUSE: Duration = Duration::from_secs(3);
const TAKEOVER_AT: Duration = Duration::from_secs(2);
/// Between reads in the status-latency phase.
const STATUS_POLL: Duration = Duration::from_millis(2);
/// Open-loop load on each replica in the bytes phase, requests per second.
const BYTES_RATE: f64 = 20.0;
/// Quiet time before a measured interval.
const SETTLE: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterOptions {
    /// Takeover runs of each kind (SIGKILL, SIGSTOP).
    pub runs: usize,
    /// Weight changes timed to every replica.
    pub changes: usize,
    /// Length of each measured interval of the bytes phase (idle, rollout).
    pub bytes_seconds: Duration,
    /// Rollouts of the CPU phase.
    pub rollouts: usize,
    /// Length of each measured interval of the CPU phase (idle, paused).
    pub cpu_seconds: Duration,
    /// Which phases to run.
    pub phases: Phases,
    /// The etcd binary (`None`: `$WEIR_ETCD`, `etcd` on `PATH`, `/usr/bin/etcd`).
    pub etcd: Option<PathBuf>,
    /// The weir to run.
    pub weir: WeirOptions,
}

/// Which phases run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    /// Takeover after SIGKILL and SIGSTOP of the leader.
    pub takeover: bool,
    /// Status-to-every-replica latency.
    pub status: bool,
    /// Bytes written to etcd.
    pub bytes: bool,
    /// Control loop CPU with many rollouts.
    pub cpu: bool,
}

impl Phases {
    /// Every phase.
    pub const ALL: Phases = Phases {
        takeover: true,
        status: true,
        bytes: true,
        cpu: true,
    };

    /// The phases named in a comma-separated list (`takeover,status,bytes,cpu`).
    pub fn parse(list: &str) -> Result<Phases> {
        let mut p = Phases {
            takeover: false,
            status: false,
            bytes: false,
            cpu: false,
        };
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "takeover" => p.takeover = true,
                "status" => p.status = true,
                "bytes" => p.bytes = true,
                "cpu" => p.cpu = true,
                "all" => p = Phases::ALL,
                other => bail!("unknown phase {other:?} (takeover, status, bytes, cpu, all)"),
            }
        }
        Ok(p)
    }
}

/// One takeover: the leader killed or frozen 2 s into a 3 s pause.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TakeoverRun {
    /// `KILL` or `STOP`.
    pub signal: String,
    /// The leader that got the signal.
    pub leader: String,
    /// The replica that took over.
    pub successor: String,
    /// From the signal until a survivor said `leading: true`, in seconds.
    pub to_leading_s: f64,
    /// From the signal until both survivors showed the next step (weight 20).
    pub to_next_step_s: f64,
    /// How late the next step was on both survivors against when the pause was due to end.
    pub step_late_s: f64,
    /// The lowest canary weight a survivor showed meanwhile (10 unless a weight was lowered).
    pub lowest_weight: f64,
    /// From SIGCONT (or from the restart of a killed leader) until it said `leading: false`,
    /// named the successor and showed weight 20.
    pub back_following_s: f64,
    /// When the woken (or restarted) replica said `leading: true` before it followed: from
    /// SIGCONT (or the restart) until the last read that said so, in ms (reads every 20 ms).
    pub claimed_leading_ms: Option<f64>,
}

/// One replica's latency in the status phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaLatency {
    /// The replica.
    pub node: String,
    /// Whether it led (it took the POSTs).
    pub leader: bool,
    /// From the POST's response until the replica showed the new weight, in ms (p50,
    /// p99, max).
    pub from_response_ms: [f64; 3],
    /// From sending the POST, in ms (p50, p99, max).
    pub from_send_ms: [f64; 3],
}

/// The status phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusLatency {
    /// Weight changes timed.
    pub changes: usize,
    /// The POST's round trip on the leader, in ms (p50, p99, max).
    pub post_ms: [f64; 3],
    /// Per replica.
    pub replicas: Vec<ReplicaLatency>,
}

/// One replica's writes to etcd over an interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeBytes {
    /// The replica.
    pub node: String,
    /// Whether it led.
    pub leader: bool,
    /// `weir_cluster_etcd_bytes_written_total` per second.
    pub bytes_per_second: f64,
}

/// etcd's own counters over an interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdTraffic {
    /// `etcd_network_client_grpc_received_bytes_total`, summed over the members, per second.
    pub grpc_received_per_second: f64,
    /// `etcd_mvcc_put_total` on one member, per second.
    pub puts_per_second: f64,
    /// `etcd_mvcc_delete_total` on one member, per second.
    pub deletes_per_second: f64,
    /// `etcd_mvcc_txn_total` on one member, per second.
    pub txns_per_second: f64,
}

/// One interval of the bytes phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BytesInterval {
    /// Wall-clock length, in seconds.
    pub seconds: f64,
    /// Per replica.
    pub replicas: Vec<NodeBytes>,
    /// etcd's counters.
    pub etcd: EtcdTraffic,
    /// The rollout at the end: phase, weight, analysis runs (`-` idle).
    pub rollout: String,
}

/// The bytes phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BytesResult {
    /// The rollout Healthy.
    pub idle: BytesInterval,
    /// The rollout paused at 20% with its analysis measuring every second.
    pub rollout: BytesInterval,
    /// Requests answered by the replicas over both intervals, and those that failed.
    pub requests: u64,
    /// Failed requests (transport errors and statuses other than 200).
    pub failed: u64,
}

/// One process's CPU over an interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessCpu {
    /// `n1`..`n3` for the weirs, `etcd-m1`.. for etcd.
    pub name: String,
    /// Whether it led (weirs only).
    pub leader: bool,
    /// utime, in % of one core.
    pub user_percent: f64,
    /// stime, in % of one core.
    pub system_percent: f64,
    /// VmRSS at the end, in kB.
    pub rss_kb: u64,
    /// Control-loop turns per second (`weir_control_turns_total`; weirs only).
    pub turns_per_second: Option<f64>,
}

/// One interval of the CPU phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuInterval {
    /// Wall-clock length, in seconds.
    pub seconds: f64,
    /// Each weir, then each etcd member.
    pub processes: Vec<ProcessCpu>,
}

/// The CPU phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuResult {
    /// Rollouts in the config.
    pub rollouts: usize,
    /// From starting the replicas until every replica listed every Rollout Healthy.
    pub start_to_all_healthy_s: f64,
    /// Every Rollout Healthy.
    pub idle: CpuInterval,
    /// From the rewrite until every replica listed every Rollout at weight 10.
    pub rewrite_to_all_at_weight_s: f64,
    /// Every Rollout paused at weight 10.
    pub paused: CpuInterval,
}

/// What the scenario saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterResult {
    /// The takeover runs, SIGKILL first.
    pub takeovers: Vec<TakeoverRun>,
    /// The status phase.
    pub status: Option<StatusLatency>,
    /// The bytes phase.
    pub bytes: Option<BytesResult>,
    /// The CPU phase.
    pub cpu: Option<CpuResult>,
}

/// Runs the scenario.
pub async fn run(opts: &ClusterOptions) -> Result<ClusterResult> {
    if !opts.weir.binary.is_file() {
        bail!(
            "no weir binary at {}: build it with `cargo build --release -p weir` or pass --weir PATH",
            opts.weir.binary.display()
        );
    }
    let etcd = match &opts.etcd {
        Some(path) => path.clone(),
        None => weir_fixtures::etcd::etcd_binary()
            .context("no etcd (apt-get install etcd-server, or pass --etcd PATH)")?,
    };
    if opts.changes == 0 || opts.changes > 98 {
        bail!("--changes must be 1..=98 (one weight step each)");
    }
    let v1 = FakeBackend::start("v1", Behavior::default()).await?;
    let v2 = FakeBackend::start("v2", Behavior::default()).await?;
    let eps = [(v1.addr(), STABLE), (v2.addr(), CANARY)];
    let mut result = ClusterResult {
        takeovers: Vec::new(),
        status: None,
        bytes: None,
        cpu: None,
    };
    if opts.phases.takeover && opts.runs > 0 {
        let docs = |image: &str| single_rollout(image, &eps, &takeover_steps(), None);
        let mut c = Cluster::start(opts, &etcd, "takeover", &docs).await?;
        let outcome = takeover_phase(&mut c, opts.runs, &docs).await;
        result.takeovers = c.finish(outcome).await?;
    }
    if opts.phases.status {
        let steps = status_steps(opts.changes);
        let docs = |image: &str| single_rollout(image, &eps, &steps, None);
        let mut c = Cluster::start(opts, &etcd, "status", &docs).await?;
        let outcome = status_phase(&mut c, opts.changes, &docs).await;
        result.status = Some(c.finish(outcome).await?);
    }
    if opts.phases.bytes {
        let steps = ["{setWeight: 20}", "{pause: {}}"];
        let guard = Guard::default();
        let docs = |image: &str| single_rollout(image, &eps, &steps, Some(&guard));
        let mut c = Cluster::start(opts, &etcd, "bytes", &docs).await?;
        let outcome = bytes_phase(&mut c, opts.bytes_seconds, &docs).await;
        result.bytes = Some(c.finish(outcome).await?);
    }
    if opts.phases.cpu {
        let n = opts.rollouts.max(1);
        let docs = |image: &str| many_rollouts(image, &eps, n);
        let started = Instant::now();
        let mut c = Cluster::start(opts, &etcd, "cpu", &docs).await?;
        let outcome = cpu_phase(&mut c, n, opts.cpu_seconds, started, &docs).await;
        result.cpu = Some(c.finish(outcome).await?);
    }
    Ok(result)
}

// ---- the configs ----

fn takeover_steps() -> Vec<String> {
    vec![
        "{setWeight: 10}".to_owned(),
        format!("{{pause: {{duration: {}s}}}}", TAKEOVER_PAUSE.as_secs()),
        "{setWeight: 20}".to_owned(),
        "{pause: {}}".to_owned(),
    ]
}

/// `setWeight: 1`, `pause: {}`, ... `setWeight: changes + 1`, `pause: {}`.
fn status_steps(changes: usize) -> Vec<String> {
    (1..=changes + 1)
        .flat_map(|w| [format!("{{setWeight: {w}}}"), "{pause: {}}".to_owned()])
        .collect()
}

/// Routes (YAML list items) and the other documents of a config.
struct Docs {
    routes: String,
    rest: String,
}

fn single_rollout<S: AsRef<str>>(
    image: &str,
    eps: &[(SocketAddr, &str)],
    steps: &[S],
    guard: Option<&Guard>,
) -> Docs {
    let steps: Vec<&str> = steps.iter().map(AsRef::as_ref).collect();
    let mut rest = image_service_yaml("app", eps)
        + &rollout_yaml("app", image, &steps, guard.map(|_| "guard"));
    if let Some(g) = guard {
        rest += &g.template_yaml("guard");
    }
    Docs {
        routes: "    - {name: app, rollout: app}\n".to_owned(),
        rest,
    }
}

fn many_rollouts(image: &str, eps: &[(SocketAddr, &str)], n: usize) -> Docs {
    let mut routes = String::new();
    let mut rest = String::new();
    for i in 0..n {
        let name = format!("app-{i}");
        routes +=
            &format!("    - {{name: {name}, match: {{host: {name}.bench}}, rollout: {name}}}\n");
        rest += &image_service_yaml(&name, eps);
        rest += &rollout_yaml(&name, image, &["{setWeight: 10}", "{pause: {}}"], None);
    }
    Docs { routes, rest }
}

/// A replica's whole config: its Proxy (its listeners, the etcd endpoints) and `docs`.
fn replica_config(web: SocketAddr, admin: SocketAddr, etcd: &[String], docs: &Docs) -> String {
    let endpoints = etcd
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {{name: bench}}\nspec:\n  listeners:\n    - {{name: web, address: \"{web}\"}}\n  admin: {{address: \"{admin}\"}}\n  cluster:\n    etcd:\n      endpoints: [{endpoints}]\n  routes:\n{}{}",
        docs.routes, docs.rest
    )
}

// ---- the processes ----

/// One weir replica: its folder, its listening sockets (kept here, so that a restart gets
/// the same ports) and, while it runs, its process.
struct Replica {
    name: String,
    dir: PathBuf,
    web: TcpListener,
    admin: TcpListener,
    web_addr: SocketAddr,
    admin_addr: SocketAddr,
    child: Option<ChildGuard>,
    frozen: bool,
}

impl Replica {
    fn new(name: &str, root: &Path) -> Result<Replica> {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let web = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
        let admin = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
        Ok(Replica {
            name: name.to_owned(),
            web_addr: web.local_addr()?,
            admin_addr: admin.local_addr()?,
            dir,
            web,
            admin,
            child: None,
            frozen: false,
        })
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("weir.log")
    }

    /// Writes the config the way editors do (a temporary file renamed over it).
    fn write_config(&self, yaml: &str) -> Result<()> {
        let tmp = self.dir.join(".weir.yaml.tmp");
        std::fs::write(&tmp, yaml).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, self.dir.join("weir.yaml"))
            .with_context(|| format!("renaming over {}/weir.yaml", self.dir.display()))
    }

    fn spawn(&mut self, weir: &WeirOptions) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .with_context(|| format!("opening {}", self.log_path().display()))?;
        let mut command = Command::new(&weir.binary);
        command
            .arg("serve")
            .arg("-c")
            .arg(self.dir.join("weir.yaml"))
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .args(["--node", &self.name])
            .args(["--log-level", "info", "--shutdown-grace", "1s"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(workers) = weir.workers {
            command.arg("--workers").arg(workers.to_string());
        }
        command
            .fd_mappings(vec![
                FdMapping {
                    parent_fd: self.web.try_clone()?.into(),
                    child_fd: 3,
                },
                FdMapping {
                    parent_fd: self.admin.try_clone()?.into(),
                    child_fd: 4,
                },
            ])
            .context("passing the listening sockets")?
            .env("LISTEN_FDS", "2")
            .env_remove("LISTEN_PID");
        self.child = Some(ChildGuard::spawn(
            &format!("weir {}", self.name),
            &mut command,
        )?);
        self.frozen = false;
        Ok(())
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::pid)
    }

    fn signal(&mut self, signal: Signal) {
        if let Some(c) = &self.child {
            c.signal(signal);
            self.frozen = signal == Signal::STOP;
        }
    }

    fn kill(&mut self) -> Result<()> {
        if let Some(c) = self.child.take() {
            c.kill()?;
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        if self.frozen {
            self.signal(Signal::CONT);
        }
        if let Some(c) = self.child.take() {
            let status = c.stop().await?;
            if !status.success() {
                bail!(
                    "weir {} exited with {status} (log: {})",
                    self.name,
                    self.log_path().display()
                );
            }
        }
        Ok(())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        // A frozen replica cannot act on SIGTERM: it is woken first (ChildGuard's drop then
        // stops it).
        if self.child.is_some() {
            self.signal(Signal::CONT);
        }
    }
}

/// An admin API client that gives up on a read after [`READ_TIMEOUT`] (and then opens a
/// new connection for the next one).
struct Node {
    addr: SocketAddr,
    conn: KeepAlive,
}

/// The fields of `GET /api/v1/cluster` the scenario looks at.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ClusterView {
    node: String,
    leader: Option<String>,
    leading: bool,
    fresh: bool,
    members: Vec<serde_json::Value>,
    problem: Option<String>,
}

impl Node {
    fn new(addr: SocketAddr) -> Node {
        Node {
            addr,
            conn: KeepAlive::new(addr, "127.0.0.1"),
        }
    }

    async fn call(&mut self, post: bool, path: &str) -> Result<(http::StatusCode, bytes::Bytes)> {
        let call = async {
            if post {
                self.conn.post_body(path).await
            } else {
                self.conn.get_body(path).await
            }
        };
        match tokio::time::timeout(READ_TIMEOUT, call).await {
            Ok(r) => r,
            Err(_) => {
                self.conn = KeepAlive::new(self.addr, "127.0.0.1");
                bail!("{path} on {} took over {READ_TIMEOUT:?}", self.addr)
            }
        }
    }

    async fn json<T: DeserializeOwned>(&mut self, path: &str) -> Result<T> {
        let (status, body) = self.call(false, path).await?;
        if !status.is_success() {
            bail!(
                "GET {path} on {} answered {status}: {}",
                self.addr,
                String::from_utf8_lossy(&body)
            );
        }
        serde_json::from_slice(&body).with_context(|| format!("parsing GET {path}"))
    }

    async fn cluster(&mut self) -> Result<ClusterView> {
        self.json("/api/v1/cluster").await
    }

    async fn rollout(&mut self) -> Result<RolloutView> {
        self.json("/api/v1/rollouts/app").await
    }

    async fn rollouts(&mut self) -> Result<Vec<RolloutView>> {
        self.json("/api/v1/rollouts").await
    }

    async fn metrics(&mut self) -> Result<String> {
        let (status, body) = self.call(false, "/metrics").await?;
        if !status.is_success() {
            bail!("GET /metrics on {} answered {status}", self.addr);
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    async fn bytes_written(&mut self) -> Result<f64> {
        let text = self.metrics().await?;
        prometheus_value(&text, "weir_cluster_etcd_bytes_written_total")
            .context("no weir_cluster_etcd_bytes_written_total in /metrics (not in cluster mode?)")
    }

    /// POSTs an action on rollout `app`; fails unless it answers 200.
    async fn act(&mut self, action: &str) -> Result<()> {
        let path = format!("/api/v1/rollouts/app/{action}");
        let (status, body) = self.call(true, &path).await?;
        if status != http::StatusCode::OK {
            bail!(
                "POST {path} on {} answered {status}: {}",
                self.addr,
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    }
}

/// etcd, three replicas, their clients and the folder with their configs and logs.
struct Cluster<'a> {
    // Dropped in this order: the weirs (woken, then stopped), then etcd, then the folder.
    replicas: Vec<Replica>,
    nodes: Vec<Node>,
    etcd: EtcdCluster,
    dir: Option<tempfile::TempDir>,
    opts: &'a ClusterOptions,
    phase: &'static str,
}

impl<'a> Cluster<'a> {
    /// Starts etcd and three replicas on the config `docs(STABLE)`, and waits until one
    /// leads, every one names it and every one shows every Rollout Healthy on `STABLE`.
    async fn start(
        opts: &'a ClusterOptions,
        etcd_bin: &Path,
        phase: &'static str,
        docs: &dyn Fn(&str) -> Docs,
    ) -> Result<Cluster<'a>> {
        let etcd = EtcdCluster::start(etcd_bin, 3)
            .await
            .with_context(|| format!("starting a 3-member etcd with {}", etcd_bin.display()))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("weir-bench-cluster-{phase}-"))
            .tempdir()
            .context("creating a temporary folder")?;
        let replicas = NODES
            .iter()
            .map(|n| Replica::new(n, dir.path()))
            .collect::<Result<Vec<_>>>()?;
        let nodes = replicas.iter().map(|r| Node::new(r.admin_addr)).collect();
        let mut c = Cluster {
            replicas,
            nodes,
            etcd,
            dir: Some(dir),
            opts,
            phase,
        };
        let started = async {
            c.write_all(&docs(STABLE))?;
            for i in 0..c.replicas.len() {
                c.replicas[i].spawn(&opts.weir)?;
            }
            for i in 0..c.replicas.len() {
                c.wait_ready(i).await?;
            }
            c.wait_leader(&[0, 1, 2]).await?;
            c.wait_all_healthy(STABLE).await
        }
        .await;
        match started {
            Ok(()) => Ok(c),
            Err(e) => Err(c.keep_logs(e)),
        }
    }

    fn write_all(&self, docs: &Docs) -> Result<()> {
        let endpoints = self.etcd.endpoints();
        for r in &self.replicas {
            r.write_config(&replica_config(r.web_addr, r.admin_addr, &endpoints, docs))?;
        }
        Ok(())
    }

    async fn wait_ready(&mut self, i: usize) -> Result<()> {
        let give_up = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.replicas[i]
                .child
                .as_mut()
                .and_then(ChildGuard::try_exited)
            {
                bail!("weir {} exited at start ({status})", self.replicas[i].name);
            }
            if let Ok((http::StatusCode::OK, _)) = self.nodes[i].call(false, "/healthz").await {
                return Ok(());
            }
            if Instant::now() >= give_up {
                bail!(
                    "weir {} not ready within {START_TIMEOUT:?}",
                    self.replicas[i].name
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The replica among `live` that leads, once exactly one says so and every one in
    /// `live` names it.
    async fn leader(&mut self, live: &[usize]) -> Option<usize> {
        let mut leading = Vec::new();
        let mut named = Vec::new();
        for &i in live {
            let v = self.nodes[i].cluster().await.ok()?;
            if v.leading {
                leading.push(i);
            }
            named.push(v.leader);
        }
        let [one] = leading[..] else { return None };
        let name = &self.replicas[one].name;
        named
            .iter()
            .all(|n| n.as_deref() == Some(name.as_str()))
            .then_some(one)
    }

    async fn wait_leader(&mut self, live: &[usize]) -> Result<usize> {
        let give_up = Instant::now() + WAIT_TIMEOUT;
        loop {
            if let Some(l) = self.leader(live).await {
                return Ok(l);
            }
            if Instant::now() >= give_up {
                let mut views = String::new();
                for &i in live {
                    views += &format!(
                        "\n{}: {:?}",
                        self.replicas[i].name,
                        self.nodes[i].cluster().await
                    );
                }
                bail!("no single leader among {live:?} within {WAIT_TIMEOUT:?}:{views}");
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }

    /// Waits until every replica lists every Rollout as `done` says.
    async fn wait_all(&mut self, what: &str, done: impl Fn(&RolloutView) -> bool) -> Result<()> {
        let give_up = Instant::now() + WAIT_TIMEOUT * 2;
        'poll: loop {
            let mut last = String::new();
            let mut ok = true;
            for i in 0..self.nodes.len() {
                match self.nodes[i].rollouts().await {
                    Ok(list) if !list.is_empty() && list.iter().all(&done) => {}
                    Ok(list) => {
                        ok = false;
                        let off = list.iter().find(|v| !done(v));
                        last = format!(
                            "{}: {} rollouts, e.g. {:?}",
                            self.replicas[i].name,
                            list.len(),
                            off.map(|v| (&v.name, &v.phase, v.canary_weight, v.message_or_dash()))
                        );
                        break;
                    }
                    Err(e) => {
                        ok = false;
                        last = format!("{}: {e:#}", self.replicas[i].name);
                        break;
                    }
                }
            }
            if ok {
                break 'poll Ok(());
            }
            if Instant::now() >= give_up {
                bail!("not every replica showed every rollout {what} (last: {last})");
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }

    async fn wait_all_healthy(&mut self, image: &str) -> Result<()> {
        self.wait_all(&format!("Healthy on {image}"), |v| v.is_healthy_on(image))
            .await
    }

    async fn wait_all_at(&mut self, weight: f64) -> Result<()> {
        self.wait_all(&format!("at canaryWeight {weight}"), |v| {
            (v.canary_weight - weight).abs() < 1e-9
        })
        .await
    }

    /// Keeps the folder (configs, logs) and says where it is.
    fn keep_logs(&mut self, e: anyhow::Error) -> anyhow::Error {
        let Some(dir) = self.dir.take() else {
            return e;
        };
        let path = dir.keep();
        let logs: Vec<String> = self
            .replicas
            .iter()
            .map(|r| format!("  {}", path.join(&r.name).join("weir.log").display()))
            .collect();
        e.context(format!(
            "cluster phase {:?} failed; the replicas' logs are kept:\n{}",
            self.phase,
            logs.join("\n")
        ))
    }

    /// Stops every replica (SIGTERM, then wait) and etcd, keeping the logs when the phase
    /// failed.
    async fn finish<T>(mut self, outcome: Result<T>) -> Result<T> {
        let mut stopped = Ok(());
        for r in &mut self.replicas {
            if let Err(e) = r.stop().await {
                eprintln!("weir-bench: {e:#}");
                stopped = Err(e);
            }
        }
        match (outcome, stopped) {
            (Ok(v), Ok(())) => Ok(v),
            (Ok(_), Err(e)) | (Err(e), _) => Err(self.keep_logs(e)),
        }
    }
}

// ---- phase 1: takeover ----

async fn takeover_phase(
    c: &mut Cluster<'_>,
    runs: usize,
    docs: &dyn Fn(&str) -> Docs,
) -> Result<Vec<TakeoverRun>> {
    let mut out = Vec::new();
    let mut image = STABLE;
    for signal in [Signal::KILL, Signal::STOP] {
        for _ in 0..runs {
            let next = if image == STABLE { CANARY } else { STABLE };
            let run = takeover_run(c, signal, next, docs).await?;
            eprintln!(
                "cluster: {} {} -> {} leads after {:.3}s, next step after {:.3}s",
                if signal == Signal::KILL {
                    "kill -9"
                } else {
                    "SIGSTOP"
                },
                run.leader,
                run.successor,
                run.to_leading_s,
                run.to_next_step_s
            );
            out.push(run);
            image = next;
        }
    }
    Ok(out)
}

async fn takeover_run(
    c: &mut Cluster<'_>,
    signal: Signal,
    image: &str,
    docs: &dyn Fn(&str) -> Docs,
) -> Result<TakeoverRun> {
    let leader = c.wait_leader(&[0, 1, 2]).await?;
    c.write_all(&docs(image))?;
    // The pause begins when the leader shows weight 10.
    let give_up = Instant::now() + WAIT_TIMEOUT;
    let pause_began = loop {
        if let Ok(v) = c.nodes[leader].rollout().await
            && v.canary_revision.as_deref() == Some(image)
            && (v.canary_weight - 10.0).abs() < 1e-9
        {
            break Instant::now();
        }
        if Instant::now() >= give_up {
            bail!("the update to {image} did not reach weight 10 on the leader");
        }
        tokio::time::sleep(TAKEOVER_POLL).await;
    };
    tokio::time::sleep_until(pause_began + TAKEOVER_AT).await;
    let due = pause_began + TAKEOVER_PAUSE;
    // Still the leader?
    if c.leader(&[0, 1, 2]).await != Some(leader) {
        bail!("the leader changed by itself during the pause");
    }
    let signalled = Instant::now();
    if signal == Signal::KILL {
        c.replicas[leader].kill()?;
    } else {
        c.replicas[leader].signal(Signal::STOP);
    }
    let live: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let mut leading_at: Option<(Instant, usize)> = None;
    let mut at_20 = vec![None; 3];
    let mut lowest_weight = f64::INFINITY;
    let mut tick = tokio::time::interval(TAKEOVER_POLL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let give_up = signalled + WAIT_TIMEOUT;
    loop {
        tick.tick().await;
        for &i in &live {
            if leading_at.is_none()
                && let Ok(v) = c.nodes[i].cluster().await
                && v.leading
            {
                leading_at = Some((Instant::now(), i));
            }
            if at_20[i].is_none()
                && let Ok(v) = c.nodes[i].rollout().await
            {
                lowest_weight = lowest_weight.min(v.canary_weight);
                if (v.canary_weight - 20.0).abs() < 1e-9 {
                    at_20[i] = Some(Instant::now());
                }
            }
        }
        if leading_at.is_some() && live.iter().all(|i| at_20[*i].is_some()) {
            break;
        }
        if Instant::now() >= give_up {
            bail!(
                "after the leader {} got SIG{signal:?}: leading {:?}, at weight 20 {:?}",
                c.replicas[leader].name,
                leading_at.map(|(t, i)| (t - signalled, i)),
                at_20
            );
        }
    }
    let Some((leading_at, successor)) = leading_at else {
        bail!("no successor");
    };
    let step_at = live
        .iter()
        .filter_map(|i| at_20[*i])
        .max()
        .unwrap_or(leading_at);
    // The old leader comes back: woken, or started again.
    let back = Instant::now();
    if signal == Signal::KILL {
        c.replicas[leader].spawn(&c.opts.weir)?;
        c.wait_ready(leader).await?;
    } else {
        c.replicas[leader].signal(Signal::CONT);
    }
    let successor_name = c.replicas[successor].name.clone();
    let mut claimed_leading = None;
    let give_up = Instant::now() + WAIT_TIMEOUT;
    let following_at = loop {
        let view = c.nodes[leader].cluster().await;
        if let Ok(v) = &view
            && v.leading
        {
            claimed_leading = Some((Instant::now() - back).as_secs_f64() * 1000.0);
        }
        if let Ok(v) = &view
            && !v.leading
            && v.fresh
            && v.leader.as_deref() == Some(successor_name.as_str())
            && let Ok(r) = c.nodes[leader].rollout().await
            && (r.canary_weight - 20.0).abs() < 1e-9
        {
            break Instant::now();
        }
        if Instant::now() >= give_up {
            bail!(
                "{} did not follow {successor_name} after coming back: {view:?}",
                c.replicas[leader].name
            );
        }
        tokio::time::sleep(TAKEOVER_POLL).await;
    };
    // The update is ended, and the next run starts from a Healthy cluster.
    let now_leader = c.wait_leader(&[0, 1, 2]).await?;
    c.nodes[now_leader].act("promote?full=true").await?;
    c.wait_all_healthy(image).await?;
    Ok(TakeoverRun {
        signal: if signal == Signal::KILL {
            "KILL"
        } else {
            "STOP"
        }
        .to_owned(),
        leader: c.replicas[leader].name.clone(),
        successor: successor_name,
        to_leading_s: (leading_at - signalled).as_secs_f64(),
        to_next_step_s: (step_at - signalled).as_secs_f64(),
        step_late_s: secs_between(due, step_at),
        lowest_weight,
        back_following_s: (following_at - back).as_secs_f64(),
        claimed_leading_ms: claimed_leading,
    })
}

/// `b - a` in seconds, negative when `b` is earlier.
fn secs_between(a: Instant, b: Instant) -> f64 {
    if b >= a {
        (b - a).as_secs_f64()
    } else {
        -(a - b).as_secs_f64()
    }
}

// ---- phase 2: status to every replica ----

async fn status_phase(
    c: &mut Cluster<'_>,
    changes: usize,
    docs: &dyn Fn(&str) -> Docs,
) -> Result<StatusLatency> {
    c.write_all(&docs(CANARY))?;
    c.wait_all_at(1.0).await?;
    let leader = c.wait_leader(&[0, 1, 2]).await?;
    let mut post_ms = Vec::new();
    let mut from_response: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut from_send: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for k in 0..changes {
        let target = (k + 2) as f64;
        let stop = CancellationToken::new();
        let mut watchers = Vec::new();
        for r in &c.replicas {
            let mut node = Node::new(r.admin_addr);
            let stop = stop.clone();
            watchers.push(tokio::spawn(async move {
                // Connected before the POST, so that the first read costs no connect.
                let _ = node.rollout().await;
                let give_up = Instant::now() + Duration::from_secs(10);
                loop {
                    if let Ok(v) = node.rollout().await
                        && (v.canary_weight - target).abs() < 1e-9
                    {
                        return Some(Instant::now());
                    }
                    if stop.is_cancelled() || Instant::now() >= give_up {
                        return None;
                    }
                    tokio::time::sleep(STATUS_POLL).await;
                }
            }));
        }
        // Let the watchers connect and read once.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let sent = Instant::now();
        let posted = c.nodes[leader].act("promote").await;
        let responded = Instant::now();
        if let Err(e) = posted {
            stop.cancel();
            return Err(e.context(format!("promote to weight {target}")));
        }
        post_ms.push((responded - sent).as_secs_f64() * 1000.0);
        for (i, w) in watchers.into_iter().enumerate() {
            let seen = w.await.context("a watcher failed")?.with_context(|| {
                format!(
                    "{} did not show weight {target} within 10 s",
                    c.replicas[i].name
                )
            })?;
            from_response[i].push(secs_between(responded, seen) * 1000.0);
            from_send[i].push((seen - sent).as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(StatusLatency {
        changes,
        post_ms: p50_p99_max(post_ms),
        replicas: (0..3)
            .map(|i| ReplicaLatency {
                node: c.replicas[i].name.clone(),
                leader: i == leader,
                from_response_ms: p50_p99_max(std::mem::take(&mut from_response[i])),
                from_send_ms: p50_p99_max(std::mem::take(&mut from_send[i])),
            })
            .collect(),
    })
}

fn p50_p99_max(mut xs: Vec<f64>) -> [f64; 3] {
    xs.sort_by(f64::total_cmp);
    [
        quantile_sorted(&xs, 0.5),
        quantile_sorted(&xs, 0.99),
        xs.last().copied().unwrap_or_default(),
    ]
}

// ---- phase 3: bytes written to etcd ----

async fn bytes_phase(
    c: &mut Cluster<'_>,
    seconds: Duration,
    docs: &dyn Fn(&str) -> Docs,
) -> Result<BytesResult> {
    // Load on every replica for the whole phase.
    let stop = CancellationToken::new();
    let loads: Vec<_> = c
        .replicas
        .iter()
        .map(|r| {
            let spec = LoadSpec {
                host: "app.test".to_owned(),
                connections: 2,
                mode: Mode::Open { rate: BYTES_RATE },
                duration: Duration::from_secs(3600),
                ..LoadSpec::new(r.web_addr)
            };
            tokio::spawn(weir_fixtures::run(spec, stop.clone()))
        })
        .collect();
    let measured = async {
        tokio::time::sleep(SETTLE).await;
        let idle = bytes_interval(c, seconds).await?;
        c.write_all(&docs(CANARY))?;
        c.wait_all_at(20.0).await?;
        // A few analysis measurements in before the interval.
        tokio::time::sleep(SETTLE * 2).await;
        let rollout = bytes_interval(c, seconds).await?;
        let v = c.nodes[0].rollout().await?;
        if v.aborted || (v.canary_weight - 20.0).abs() > 1e-9 {
            bail!(
                "the rollout did not stay paused at 20% during the interval: {} at {}% ({})",
                v.phase,
                v.canary_weight,
                v.message_or_dash()
            );
        }
        Ok((idle, rollout))
    }
    .await;
    stop.cancel();
    let mut requests = 0;
    let mut failed = 0;
    for l in loads {
        let report = l.await.context("a load task failed")?;
        requests += report.requests;
        failed += report.errors
            + report
                .by_status
                .iter()
                .filter(|(s, _)| **s != 200)
                .map(|(_, n)| n)
                .sum::<u64>();
    }
    let (idle, rollout) = measured?;
    Ok(BytesResult {
        idle,
        rollout,
        requests,
        failed,
    })
}

/// etcd's counters: gRPC bytes received summed over the members; puts, deletes, txns from
/// member 0.
async fn etcd_counters(c: &Cluster<'_>) -> Result<[f64; 4]> {
    let mut out = [0.0; 4];
    for (i, endpoint) in c.etcd.endpoints().iter().enumerate() {
        let addr: SocketAddr = endpoint
            .trim_start_matches("http://")
            .parse()
            .with_context(|| format!("etcd endpoint {endpoint}"))?;
        let mut node = Node::new(addr);
        let text = node.metrics().await?;
        let value = |name: &str| {
            prometheus_value(&text, name).with_context(|| format!("no {name} in etcd's /metrics"))
        };
        // The counter is labelled by gRPC type (unary, stream): every sample is summed.
        out[0] += text
            .lines()
            .filter(|l| l.starts_with("etcd_network_client_grpc_received_bytes_total"))
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .sum::<f64>();
        if i == 0 {
            out[1] = value("etcd_mvcc_put_total")?;
            out[2] = value("etcd_mvcc_delete_total")?;
            out[3] = value("etcd_mvcc_txn_total")?;
        }
    }
    Ok(out)
}

async fn bytes_interval(c: &mut Cluster<'_>, seconds: Duration) -> Result<BytesInterval> {
    let leader = c.wait_leader(&[0, 1, 2]).await?;
    let mut before = Vec::new();
    for n in &mut c.nodes {
        before.push(n.bytes_written().await?);
    }
    let e0 = etcd_counters(c).await?;
    let t0 = Instant::now();
    tokio::time::sleep(seconds).await;
    let mut after = Vec::new();
    for n in &mut c.nodes {
        after.push(n.bytes_written().await?);
    }
    let e1 = etcd_counters(c).await?;
    let wall = t0.elapsed().as_secs_f64();
    if c.leader(&[0, 1, 2]).await != Some(leader) {
        bail!("the leader changed during the interval");
    }
    let v = c.nodes[leader].rollout().await?;
    let rollout = format!(
        "{} at {}% ({})",
        v.phase,
        v.canary_weight,
        v.message_or_dash()
    );
    let rate = |i: usize| (e1[i] - e0[i]) / wall;
    Ok(BytesInterval {
        seconds: wall,
        replicas: (0..3)
            .map(|i| NodeBytes {
                node: c.replicas[i].name.clone(),
                leader: i == leader,
                bytes_per_second: (after[i] - before[i]) / wall,
            })
            .collect(),
        etcd: EtcdTraffic {
            grpc_received_per_second: rate(0),
            puts_per_second: rate(1),
            deletes_per_second: rate(2),
            txns_per_second: rate(3),
        },
        rollout,
    })
}

// ---- phase 4: control loop CPU ----

async fn cpu_phase(
    c: &mut Cluster<'_>,
    n: usize,
    seconds: Duration,
    started: Instant,
    docs: &dyn Fn(&str) -> Docs,
) -> Result<CpuResult> {
    // Cluster::start waited for every replica to list every rollout Healthy; check the count.
    let listed = c.nodes[0].rollouts().await?.len();
    if listed != n {
        bail!("{listed} rollouts listed, {n} configured");
    }
    let start_to_all_healthy_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let idle = cpu_interval(c, seconds).await?;
    let rewrite = Instant::now();
    c.write_all(&docs(CANARY))?;
    c.wait_all_at(10.0).await?;
    let rewrite_to_all_at_weight_s = rewrite.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let paused = cpu_interval(c, seconds).await?;
    let list = c.nodes[0].rollouts().await?;
    let paused_count = list.iter().filter(|v| v.phase == "Paused").count();
    if paused_count != n {
        bail!("{paused_count} of {n} rollouts in phase Paused after the interval");
    }
    Ok(CpuResult {
        rollouts: n,
        start_to_all_healthy_s,
        idle,
        rewrite_to_all_at_weight_s,
        paused,
    })
}

/// (utime, stime) in seconds of process `pid`, from `/proc/PID/stat`.
fn user_system_seconds(pid: u32) -> Result<(f64, f64)> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_user_system(&stat).with_context(|| format!("no utime/stime in {path}"))
}

fn parse_user_system(stat: &str) -> Option<(f64, f64)> {
    // After the command name in parentheses come fields 3 (state) onwards; utime and stime
    // are fields 14 and 15.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let hz = rustix::param::clock_ticks_per_second().max(1) as f64;
    Some((utime as f64 / hz, stime as f64 / hz))
}

async fn cpu_interval(c: &mut Cluster<'_>, seconds: Duration) -> Result<CpuInterval> {
    let leader = c.wait_leader(&[0, 1, 2]).await?;
    let mut procs: Vec<(String, bool, u32)> = Vec::new();
    for (i, r) in c.replicas.iter().enumerate() {
        let pid = r
            .pid()
            .with_context(|| format!("{} is not running", r.name))?;
        procs.push((r.name.clone(), i == leader, pid));
    }
    for i in 0..c.etcd.len() {
        let pid = c.etcd.pid(i).context("an etcd member is not running")?;
        procs.push((format!("etcd-m{}", i + 1), false, pid));
    }
    // The turn counters are read outside the CPU window.
    let mut turns0 = Vec::new();
    for n in &mut c.nodes {
        turns0.push(ControlMetrics::parse(&n.metrics().await?)?.turns);
    }
    let before = procs
        .iter()
        .map(|(_, _, pid)| user_system_seconds(*pid))
        .collect::<Result<Vec<_>>>()?;
    let t0 = Instant::now();
    tokio::time::sleep(seconds).await;
    let after = procs
        .iter()
        .map(|(_, _, pid)| user_system_seconds(*pid))
        .collect::<Result<Vec<_>>>()?;
    let wall = t0.elapsed().as_secs_f64();
    let mut turns = Vec::new();
    for (i, n) in c.nodes.iter_mut().enumerate() {
        let t1 = ControlMetrics::parse(&n.metrics().await?)?.turns;
        turns.push((t1 - turns0[i]) / t0.elapsed().as_secs_f64());
    }
    if c.leader(&[0, 1, 2]).await != Some(leader) {
        bail!("the leader changed during the interval");
    }
    let mut processes = Vec::new();
    for (k, (name, leader, pid)) in procs.into_iter().enumerate() {
        processes.push(ProcessCpu {
            name,
            leader,
            user_percent: (after[k].0 - before[k].0) / wall * 100.0,
            system_percent: (after[k].1 - before[k].1) / wall * 100.0,
            rss_kb: super::rss_kb(pid)?,
            turns_per_second: turns.get(k).copied(),
        });
    }
    Ok(CpuInterval {
        seconds: wall,
        processes,
    })
}

// ---- the report ----

fn role(leader: bool) -> &'static str {
    if leader { "leader" } else { "follower" }
}

impl fmt::Display for ClusterResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "cluster mode: 3-member etcd (--heartbeat-interval=10 --election-timeout=100, data on /dev/shm) and 3 weir replicas on loopback; lease TTL 3 s"
        )?;
        if !self.takeovers.is_empty() {
            writeln!(
                f,
                "\n== takeover: leader signalled {}s into a {}s pause; survivors read every {} ms",
                TAKEOVER_AT.as_secs(),
                TAKEOVER_PAUSE.as_secs(),
                TAKEOVER_POLL.as_millis()
            )?;
            writeln!(
                f,
                "signal  leader -> successor  to leading:true  to next step on both  step late vs due  lowest weight  back & following  claimed leading"
            )?;
            for r in &self.takeovers {
                writeln!(
                    f,
                    "{:<6}  {:>6} -> {:<9}  {:>14.3}s  {:>19.3}s  {:>16.3}s  {:>13}  {:>15.3}s  {}",
                    r.signal,
                    r.leader,
                    r.successor,
                    r.to_leading_s,
                    r.to_next_step_s,
                    r.step_late_s,
                    r.lowest_weight,
                    r.back_following_s,
                    r.claimed_leading_ms
                        .map_or_else(|| "no".to_owned(), |ms| format!("YES, until {ms:.0} ms"))
                )?;
            }
            for signal in ["KILL", "STOP"] {
                let runs: Vec<&TakeoverRun> = self
                    .takeovers
                    .iter()
                    .filter(|r| r.signal == signal)
                    .collect();
                if runs.is_empty() {
                    continue;
                }
                let lead = Spread::of(runs.iter().map(|r| r.to_leading_s));
                let step = Spread::of(runs.iter().map(|r| r.to_next_step_s));
                let back = Spread::of(runs.iter().map(|r| r.back_following_s));
                writeln!(
                    f,
                    "SIG{signal} ({} runs), s: to leading {}; to next step {}; {} to following {}",
                    runs.len(),
                    lead.show(3),
                    step.show(3),
                    if signal == "KILL" {
                        "restart"
                    } else {
                        "SIGCONT"
                    },
                    back.show(3)
                )?;
            }
        }
        if let Some(s) = &self.status {
            writeln!(
                f,
                "\n== status to every replica: {} promotes on the leader; each replica's GET /api/v1/rollouts/app read in a loop (2 ms sleep + one read) until the new canaryWeight",
                s.changes
            )?;
            writeln!(
                f,
                "POST promote round trip: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
                s.post_ms[0], s.post_ms[1], s.post_ms[2]
            )?;
            for r in &s.replicas {
                writeln!(
                    f,
                    "{} ({:<8}) from the response: p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms | from sending: p50 {:>6.2} ms  p99 {:>6.2} ms",
                    r.node,
                    role(r.leader),
                    r.from_response_ms[0],
                    r.from_response_ms[1],
                    r.from_response_ms[2],
                    r.from_send_ms[0],
                    r.from_send_ms[1]
                )?;
            }
        }
        if let Some(b) = &self.bytes {
            writeln!(
                f,
                "\n== bytes written to etcd (weir_cluster_etcd_bytes_written_total: keys and values; renewals and reads not counted); {BYTES_RATE} req/s on each replica throughout; {} requests, {} failed",
                b.requests, b.failed
            )?;
            for (name, i) in [
                ("idle (Healthy)", &b.idle),
                ("rollout (paused at 20%, analysis every 1 s)", &b.rollout),
            ] {
                writeln!(f, "{name}, {:.1}s: {}", i.seconds, i.rollout)?;
                for r in &i.replicas {
                    writeln!(
                        f,
                        "  {} ({:<8}) {:>9.1} B/s",
                        r.node,
                        role(r.leader),
                        r.bytes_per_second
                    )?;
                }
                writeln!(
                    f,
                    "  etcd: gRPC received from clients {:.0} B/s (all members); {:.2} puts/s, {:.2} deletes/s, {:.2} txns/s",
                    i.etcd.grpc_received_per_second,
                    i.etcd.puts_per_second,
                    i.etcd.deletes_per_second,
                    i.etcd.txns_per_second
                )?;
            }
        }
        if let Some(c) = &self.cpu {
            writeln!(
                f,
                "\n== control loop CPU with {} rollouts, no traffic (utime/stime from /proc/PID/stat, % of one core; 1 tick = {} ms); all Healthy {:.2}s after starting etcd",
                c.rollouts,
                1000 / rustix::param::clock_ticks_per_second().max(1),
                c.start_to_all_healthy_s
            )?;
            for (name, i) in [
                ("idle (all Healthy)", &c.idle),
                ("paused (all at 10%)", &c.paused),
            ] {
                writeln!(f, "{name}, {:.1}s:", i.seconds)?;
                for p in &i.processes {
                    writeln!(
                        f,
                        "  {:<8} {:<8} user {:>6.2}%  system {:>6.2}%  total {:>6.2}%  RSS {:.1} MB{}",
                        p.name,
                        if p.name.starts_with("etcd") {
                            ""
                        } else {
                            role(p.leader)
                        },
                        p.user_percent,
                        p.system_percent,
                        p.user_percent + p.system_percent,
                        p.rss_kb as f64 / 1024.0,
                        p.turns_per_second
                            .map_or_else(String::new, |t| format!("  {t:.1} turns/s"))
                    )?;
                }
            }
            write!(
                f,
                "rewrite -> all {} at canaryWeight 10 on every replica: {:.3}s",
                c.rollouts, c.rewrite_to_all_at_weight_s
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_validate() {
        let eps: [(SocketAddr, &str); 2] = [
            ("127.0.0.1:9001".parse().unwrap(), STABLE),
            ("127.0.0.1:9002".parse().unwrap(), CANARY),
        ];
        let web: SocketAddr = "127.0.0.1:18080".parse().unwrap();
        let admin: SocketAddr = "127.0.0.1:18081".parse().unwrap();
        let etcd = ["http://127.0.0.1:2379".to_owned()];
        let guard = Guard::default();
        let docs = [
            single_rollout(CANARY, &eps, &takeover_steps(), None),
            single_rollout(CANARY, &eps, &status_steps(50), None),
            single_rollout(
                CANARY,
                &eps,
                &["{setWeight: 20}", "{pause: {}}"],
                Some(&guard),
            ),
            many_rollouts(CANARY, &eps, 3),
        ];
        for d in &docs {
            let yaml = replica_config(web, admin, &etcd, d);
            weir_config::load_str(Path::new("/bench/weir.yaml"), &yaml)
                .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        }
    }

    #[test]
    fn phases_parse() {
        assert_eq!(Phases::parse("all").unwrap(), Phases::ALL);
        let p = Phases::parse("takeover,cpu").unwrap();
        assert!(p.takeover && p.cpu && !p.status && !p.bytes);
        assert!(Phases::parse("nope").is_err());
    }

    #[test]
    fn user_and_system_apart() {
        let stat =
            "1234 (weir (x) y) S 1 1234 1234 0 -1 4194560 500 0 0 0 17 4 0 0 20 0 3 0 100 1000 200";
        let hz = rustix::param::clock_ticks_per_second() as f64;
        assert_eq!(parse_user_system(stat), Some((17.0 / hz, 4.0 / hz)));
    }
}
