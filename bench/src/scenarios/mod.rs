//! End-to-end scenarios against a real weir process, for the `weir-bench` subcommands.
//!
//! - [`split`]: split precision under concurrent load, in weir's split order.
//! - [`reload`]: how fast a config change takes effect, and that no request fails meanwhile.
//! - [`memory`]: resident memory per idle keep-alive client connection (optionally for nginx
//!   and HAProxy too).
//! - [`micro`]: in-process nanoseconds per operation of weir's hot-path pieces.
//! - [`gateway`]: in-process, a Gateway with 10,000 HTTPRoutes: config load and table build
//!   times, and route lookup nanoseconds next to a table of one route.
//! - [`gateway_reload`]: the same config served by weir under load, one route changed per
//!   reload: time to apply, and that no request fails meanwhile.
//! - [`blast`]: how many requests a broken canary fails, and for how long, before weir's own
//!   analysis aborts it.
//! - [`false_rollbacks`]: how often a healthy-but-noisy canary is wrongly aborted.
//! - [`judge`]: in-process, weir's control loop with the canary-vs-stable judge against a
//!   simulated data plane in paused time: time to abort a broken, erroring or slow canary,
//!   and false rollbacks over 1,000 healthy updates.
//! - [`control_loop`]: weir's CPU, memory and control-loop turns with many Rollouts, idle and
//!   paused mid-update, and how long starting an update on all of them takes.
//!
//! - [`cluster`]: cluster mode (issue 14) with a real 3-member etcd and three weir replicas:
//!   takeover time after the leader is killed or frozen, status-to-every-replica latency,
//!   bytes written to etcd, and the control loop's CPU with 100 rollouts.
//!
//! [`canary`] holds what the last three share: the Rollout config, an admin API client, and
//! readings of `/metrics` and `/proc`.
//!
//! Every scenario but [`micro`] and [`gateway`] starts the weir binary ([`WeirProcess`]) with
//! a config in a temporary folder and fake backends ([`weir_fixtures::FakeBackend`]) in this
//! process, and stops it again (SIGTERM, then wait) when done, on error too: [`ChildGuard`]
//! does it on drop.
//! Unlike the rest of the crate, these spawn processes and bind fixed (freshly picked) ports,
//! so they are for the command line, not for tests.

pub mod blast;
pub mod canary;
pub mod cluster;
pub mod control_loop;
pub mod false_rollbacks;
pub mod gateway;
pub mod gateway_reload;
pub mod judge;
pub mod memory;
pub mod micro;
pub mod reload;
pub mod split;

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use command_fds::{CommandFdExt, FdMapping};
use http::header::HeaderMap;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long a started process may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a process may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Which weir binary to run, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeirOptions {
    /// The weir binary, e.g. `target/release/weir`.
    pub binary: PathBuf,
    /// `--workers` for weir (its default, one per core, when `None`).
    pub workers: Option<usize>,
}

/// A child process that is stopped (SIGTERM, then a wait of up to 15 s, then SIGKILL) when
/// dropped, unless [`ChildGuard::stop`] already did.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Spawns `command`, calling the process `name` in messages.
    pub fn spawn(name: &str, command: &mut Command) -> Result<ChildGuard> {
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
        Ok(ChildGuard {
            name: name.to_owned(),
            child: Some(child),
        })
    }

    /// The process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The exit status, if the process has exited.
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the process while it runs.
    pub fn signal(&self, signal: rustix::process::Signal) {
        if let Some(pid) = self
            .child
            .as_ref()
            .and_then(|c| rustix::process::Pid::from_raw(c.id() as i32))
        {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    /// Kills the process with SIGKILL at once and reaps it (it cannot clean up: a crash);
    /// returns its exit status.
    pub fn kill(mut self) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} was already stopped", self.name);
        };
        child.kill()?;
        Ok(child.wait()?)
    }

    /// Sends SIGTERM and waits (without blocking the runtime) for the process to exit; kills it
    /// when it takes longer than 15 s. Returns its exit status.
    pub async fn stop(mut self) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} was already stopped", self.name);
        };
        terminate(&child);
        let give_up = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= give_up {
                let _ = child.kill();
                let status = child.wait()?;
                bail!(
                    "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM; killed ({status})",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        terminate(&child);
        // Blocking waits are fine here: this only runs when a scenario is abandoned.
        let give_up = std::time::SystemTime::now() + STOP_TIMEOUT;
        while std::time::SystemTime::now() < give_up {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn terminate(child: &Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

/// A weir process serving a config in its own temporary folder.
#[derive(Debug)]
pub struct WeirProcess {
    // Dropped first: the process stops before its folder goes.
    child: ChildGuard,
    dir: tempfile::TempDir,
    config: PathBuf,
    web: SocketAddr,
    admin: SocketAddr,
}

impl WeirProcess {
    /// Binds sockets for the `web` listener and the admin API on 127.0.0.1:0, writes the config that
    /// `yaml(web_port, admin_port)` returns to `weir.yaml` in a new temporary folder, starts
    /// weir on it (watching the file when `watch`), and waits until `/healthz` answers 200 and
    /// the web listener accepts connections.
    pub async fn start(
        opts: &WeirOptions,
        watch: bool,
        yaml: impl FnOnce(u16, u16) -> String,
    ) -> Result<WeirProcess> {
        Self::start_logging(opts, watch, "warn", yaml).await
    }

    /// [`WeirProcess::start`] with weir's `--log-level` (a level or a `RUST_LOG`-style
    /// filter) instead of `warn`; [`WeirProcess::log`] reads what it wrote.
    pub async fn start_logging(
        opts: &WeirOptions,
        watch: bool,
        log_level: &str,
        yaml: impl FnOnce(u16, u16) -> String,
    ) -> Result<WeirProcess> {
        if !opts.binary.is_file() {
            bail!(
                "no weir binary at {}: build it with `cargo build --release -p weir` or pass --weir PATH",
                opts.binary.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("weir-bench-")
            .tempdir()
            .context("creating a temporary folder")?;
        // weir gets its sockets bound already, as systemd socket activation hands them
        // over: no port is picked, freed and hoped for.
        let web_socket = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("binding the web listener on 127.0.0.1:0")?;
        let admin_socket = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("binding the admin listener on 127.0.0.1:0")?;
        let (web_port, admin_port) = (
            web_socket.local_addr()?.port(),
            admin_socket.local_addr()?.port(),
        );
        let config = dir.path().join("weir.yaml");
        std::fs::write(&config, yaml(web_port, admin_port))
            .with_context(|| format!("writing {}", config.display()))?;
        let log = dir.path().join("weir.log");
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(&opts.binary);
        command
            .arg("serve")
            .arg("-c")
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--log-level", log_level, "--shutdown-grace", "5s"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        if !watch {
            command.arg("--no-watch");
        }
        if let Some(workers) = opts.workers {
            command.arg("--workers").arg(workers.to_string());
        }
        command
            .fd_mappings(vec![
                FdMapping {
                    parent_fd: web_socket.into(),
                    child_fd: 3,
                },
                FdMapping {
                    parent_fd: admin_socket.into(),
                    child_fd: 4,
                },
            ])
            .context("passing the listening sockets")?
            .env("LISTEN_FDS", "2")
            .env_remove("LISTEN_PID");
        let child = ChildGuard::spawn("weir", &mut command)?;
        // The sockets are weir's alone now: once it exits, nothing listens.
        drop(command);
        let mut weir = WeirProcess {
            child,
            dir,
            config,
            web: SocketAddr::from((Ipv4Addr::LOCALHOST, web_port)),
            admin: SocketAddr::from((Ipv4Addr::LOCALHOST, admin_port)),
        };
        weir.wait_ready().await?;
        Ok(weir)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let give_up = Instant::now() + START_TIMEOUT;
        let mut admin = KeepAlive::new(self.admin, "127.0.0.1");
        loop {
            if let Some(status) = self.child.try_exited() {
                bail!("weir exited at start ({status}):\n{}", self.log_tail());
            }
            if let Ok((StatusCode::OK, _)) = admin.get("/healthz").await
                && TcpStream::connect(self.web).await.is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= give_up {
                bail!(
                    "weir did not become ready within {START_TIMEOUT:?}:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The `web` listener's address.
    pub fn web(&self) -> SocketAddr {
        self.web
    }

    /// The admin API's address.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The config file weir serves (and, when started with `watch`, watches).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Replaces the config file the way editors do: writes a temporary file in the same
    /// folder, then renames it over the config. Calls `before_rename` just before renaming.
    pub fn replace_config(&self, yaml: &str, before_rename: impl FnOnce()) -> Result<()> {
        let tmp = self.dir.path().join(".weir.yaml.tmp");
        std::fs::write(&tmp, yaml).with_context(|| format!("writing {}", tmp.display()))?;
        before_rename();
        std::fs::rename(&tmp, &self.config)
            .with_context(|| format!("renaming over {}", self.config.display()))
    }

    /// Everything weir logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weir.log")).unwrap_or_default()
    }

    /// The last lines weir logged.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("weir.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops weir (SIGTERM, then wait) and returns its exit code (`None` when killed by a
    /// signal).
    pub async fn stop(self) -> Result<Option<i32>> {
        let tail = self.log_tail();
        let status = self.child.stop().await?;
        if !status.success() {
            eprintln!("weir-bench: weir exited with {status}; its last log lines:\n{tail}");
        }
        Ok(status.code())
    }
}

/// A port that was free a moment ago (bound on 127.0.0.1:0, then closed): only for the
/// peers (nginx, HAProxy) of the memory scenario, which take a port number, not a socket.
/// A peer that then fails to bind says so, and the run stops.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The Proxy document of a scenario: `debugHeaders` on, a `web` listener and the admin API
/// on 127.0.0.1, and `routes` (YAML list items indented by four spaces).
pub fn proxy_yaml(web_port: u16, admin_port: u16, routes: &str) -> String {
    format!(
        "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {{name: bench}}\nspec:\n  debugHeaders: true\n  listeners:\n    - {{name: web, address: \"127.0.0.1:{web_port}\"}}\n  admin: {{address: \"127.0.0.1:{admin_port}\"}}\n  routes:\n{routes}"
    )
}

/// A Service document with one endpoint.
pub fn service_yaml(name: &str, endpoint: SocketAddr) -> String {
    format!(
        "---\napiVersion: weir.dev/v1alpha1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{endpoints: [\"{endpoint}\"]}}\n"
    )
}

/// One HTTP/1.1 keep-alive connection, opened on first use and again after a failure.
#[derive(Debug)]
pub struct KeepAlive {
    addr: SocketAddr,
    host: String,
    sender: Option<http1::SendRequest<Empty<Bytes>>>,
}

impl KeepAlive {
    /// A client for `addr` that sends `Host: host`; connects on the first request.
    pub fn new(addr: SocketAddr, host: &str) -> Self {
        Self {
            addr,
            host: host.to_owned(),
            sender: None,
        }
    }

    /// `GET path`, reading the body to its end; returns the status and the headers.
    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, HeaderMap)> {
        self.get_with_body(path, false)
            .await
            .map(|(status, headers, _)| (status, headers))
    }

    /// `GET path`; returns the status and the whole body.
    pub async fn get_body(&mut self, path: &str) -> Result<(StatusCode, Bytes)> {
        self.get_with_body(path, true)
            .await
            .map(|(status, _, body)| (status, body))
    }

    /// `POST path` with an empty body; returns the status and the whole body.
    pub async fn post_body(&mut self, path: &str) -> Result<(StatusCode, Bytes)> {
        self.send(Method::POST, path, true)
            .await
            .map(|(status, _, body)| (status, body))
    }

    async fn get_with_body(
        &mut self,
        path: &str,
        keep_body: bool,
    ) -> Result<(StatusCode, HeaderMap, Bytes)> {
        self.send(Method::GET, path, keep_body).await
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        keep_body: bool,
    ) -> Result<(StatusCode, HeaderMap, Bytes)> {
        let result = self.try_send(method, path, keep_body).await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn try_send(
        &mut self,
        method: Method,
        path: &str,
        keep_body: bool,
    ) -> Result<(StatusCode, HeaderMap, Bytes)> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(self.addr).await?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        let Some(sender) = self.sender.as_mut() else {
            bail!("no connection");
        };
        sender.ready().await?;
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.host)
            .body(Empty::new())?;
        let response = sender.send_request(request).await?;
        let (parts, mut body) = response.into_parts();
        let mut kept = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            if keep_body && let Some(data) = frame.data_ref() {
                kept.extend_from_slice(data);
            }
        }
        Ok((parts.status, parts.headers, Bytes::from(kept)))
    }
}

/// `VmRSS` of process `pid`, in kB, from `/proc/PID/status`.
pub fn rss_kb(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))
}

/// `pid` and all its descendants, from `/proc/*/stat`.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(p) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // After the command name in parentheses: state, then the parent's pid.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|s| s.parse().ok());
            if let Some(ppid) = ppid {
                parents.push((p, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// The sum of `VmRSS` (kB) over `pid` and its descendants.
pub fn tree_rss_kb(pid: u32) -> Result<u64> {
    let mut sum = 0;
    for p in process_tree(pid) {
        // A child may exit between listing and reading; only the root must be readable.
        match rss_kb(p) {
            Ok(kb) => sum += kb,
            Err(e) if p == pid => return Err(e),
            Err(_) => {}
        }
    }
    Ok(sum)
}

/// The `q` quantile (0..=1, nearest rank) of sorted values; 0 when empty.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Formats `(key, value)` pairs as `k=v k=v`, or `-` when empty.
/// The last lines of a scenario's report: weir's exit code after SIGTERM, then `pass`
/// or `fail`.
pub(crate) fn write_verdict(
    f: &mut std::fmt::Formatter<'_>,
    weir_exit: Option<i32>,
    passed: bool,
    pass: &str,
    fail: &str,
) -> std::fmt::Result {
    let exit = weir_exit.map_or_else(|| "killed by a signal".to_owned(), |c| c.to_string());
    write!(f, "weir exit: {exit}\n{}", if passed { pass } else { fail })
}

pub(crate) fn pairs<K: std::fmt::Display, V: std::fmt::Display>(
    items: impl IntoIterator<Item = (K, V)>,
) -> String {
    let mut out = String::new();
    for (k, v) in items {
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{k}={v}");
    }
    if out.is_empty() { "-".to_owned() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let xs: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quantile_sorted(&xs, 0.0), 1.0);
        assert_eq!(quantile_sorted(&xs, 0.5), 5.0);
        assert_eq!(quantile_sorted(&xs, 0.9), 9.0);
        assert_eq!(quantile_sorted(&xs, 0.99), 10.0);
        assert_eq!(quantile_sorted(&xs, 1.0), 10.0);
        assert_eq!(quantile_sorted(&[], 0.5), 0.0);
    }

    #[test]
    fn own_process_is_measurable() {
        let me = std::process::id();
        assert!(rss_kb(me).unwrap() > 0);
        assert!(process_tree(me).contains(&me));
        assert!(tree_rss_kb(me).unwrap() >= rss_kb(me).unwrap() / 2);
    }

    #[test]
    fn yaml_helpers() {
        let y = proxy_yaml(1, 2, "    - name: app\n")
            + &service_yaml("a", "127.0.0.1:9".parse().unwrap());
        assert!(
            y.contains("127.0.0.1:1") && y.contains("127.0.0.1:2"),
            "{y}"
        );
        assert!(y.contains("endpoints: [\"127.0.0.1:9\"]"), "{y}");
        assert_eq!(pairs([("a", 1), ("b", 2)]), "a=1 b=2");
        assert_eq!(pairs(Vec::<(u8, u8)>::new()), "-");
    }
}
