//! Memory per connection: a proxy's resident set size (`VmRSS`) idle, then with N
//! established keep-alive client connections that have each carried one request; the
//! difference divided by N. For weir, and optionally nginx and HAProxy with the configs in
//! `bench/peers/` (summed over each one's process tree).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::tree_rss_kb;
use super::{ChildGuard, KeepAlive, WeirOptions, WeirProcess, free_port, proxy_yaml, service_yaml};
use weir_fixtures::{Behavior, FakeBackend};

/// Connections being opened at once.
const BATCH: usize = 200;
/// File descriptors kept free for everything but the client connections.
const SPARE_FDS: u64 = 256;
/// Longest time one connection may take to connect and get its response.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(20);
/// Wait with all connections open before measuring.
const SETTLE: Duration = Duration::from_secs(1);

const NGINX_CONF: &str = include_str!("../../peers/nginx.conf");
const HAPROXY_CFG: &str = include_str!("../../peers/haproxy.cfg");

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryOptions {
    /// Client connections to open.
    pub connections: usize,
    /// Also measure nginx and HAProxy when they are installed.
    pub peers: bool,
    /// The weir to run.
    pub weir: WeirOptions,
}

/// One proxy's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryRow {
    /// `weir`, `nginx` or `haproxy`.
    pub proxy: String,
    /// Processes summed (the proxy and its descendants).
    pub processes: usize,
    /// RSS once up and after one request, in kB.
    pub idle_kb: u64,
    /// RSS with every connection open, in kB.
    pub loaded_kb: u64,
    /// Connections open while measuring.
    pub connections: usize,
    /// `(loaded - idle) / connections`, in bytes.
    pub bytes_per_connection: f64,
}

/// What the scenario saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryResult {
    /// Connections asked for.
    pub requested_connections: usize,
    /// This process's open-files limit after raising it.
    pub nofile_limit: u64,
    /// One row per proxy measured.
    pub rows: Vec<MemoryRow>,
    /// Things worth knowing (limits, peers skipped).
    pub notes: Vec<String>,
}

/// Runs the scenario.
pub async fn run(opts: &MemoryOptions) -> Result<MemoryResult> {
    let mut notes = Vec::new();
    let nofile_limit =
        rlimit::increase_nofile_limit(u64::MAX).context("raising the open-files limit")?;
    let mut connections = opts.connections.max(1);
    let fit = nofile_limit.saturating_sub(SPARE_FDS);
    if (connections as u64) > fit {
        notes.push(format!(
            "the open-files limit ({nofile_limit}) is too low for {connections} connections; using {fit} (raise it with ulimit -n)"
        ));
        connections = usize::try_from(fit).unwrap_or(usize::MAX).max(1);
    }
    let backend = FakeBackend::start("app", Behavior::default()).await?;

    let mut rows = Vec::new();
    {
        let weir = WeirProcess::start(&opts.weir, false, |web, admin| {
            proxy_yaml(
                web,
                admin,
                "    - name: app\n      backends: [{service: app}]\n",
            ) + &service_yaml("app", backend.addr())
        })
        .await?;
        let row = measure("weir", weir.pid(), weir.web(), connections).await;
        let exit = weir.stop().await?;
        if exit != Some(0) {
            notes.push(format!("weir exited with {exit:?} after SIGTERM"));
        }
        rows.push(row?);
    }

    if opts.peers {
        for peer in ["nginx", "haproxy"] {
            let Some(binary) = find_binary(peer) else {
                notes.push(format!("{peer}: not installed, skipped"));
                continue;
            };
            let mut peer_connections = connections;
            if peer == "haproxy" {
                let fit = haproxy_maxconn(connections, nofile_limit).saturating_sub(16) as usize;
                if fit < connections {
                    notes.push(format!(
                        "haproxy: {fit} connections only: it reserves two descriptors per connection (maxconn) and the open-files limit is {nofile_limit}"
                    ));
                    peer_connections = fit.max(1);
                }
            }
            match measure_peer(
                peer,
                &binary,
                backend.addr(),
                peer_connections,
                nofile_limit,
            )
            .await
            {
                Ok(row) => rows.push(row),
                Err(e) => notes.push(format!("{peer}: {e:#}")),
            }
        }
    }
    Ok(MemoryResult {
        requested_connections: opts.connections,
        nofile_limit,
        rows,
        notes,
    })
}

/// Measures the proxy `pid` (with its descendants) serving on `addr`.
async fn measure(name: &str, pid: u32, addr: SocketAddr, connections: usize) -> Result<MemoryRow> {
    // Serve one request, on a connection closed again.
    let mut warm = KeepAlive::new(addr, "x");
    let (status, _) = warm.get("/").await.context("the first request")?;
    if !status.is_success() {
        bail!("{name} answered the first request with {status}");
    }
    drop(warm);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle_kb = tree_rss_kb(pid)?;

    let streams = open_connections(addr, connections)
        .await
        .with_context(|| format!("opening {connections} connections to {name}"))?;
    tokio::time::sleep(SETTLE).await;
    let loaded_kb = tree_rss_kb(pid)?;
    let processes = super::process_tree(pid).len();
    drop(streams);
    Ok(MemoryRow {
        proxy: name.to_owned(),
        processes,
        idle_kb,
        loaded_kb,
        connections,
        bytes_per_connection: (loaded_kb as f64 - idle_kb as f64) * 1024.0 / connections as f64,
    })
}

/// Opens `n` connections, `BATCH` at a time, each carrying one request whose response is
/// read whole; returns them, still open.
async fn open_connections(addr: SocketAddr, n: usize) -> Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(n);
    let mut opened = futures_util::stream::iter(0..n)
        .map(|_| async move {
            tokio::time::timeout(CONNECTION_TIMEOUT, one_request(addr))
                .await
                .unwrap_or_else(|_| bail!("no response within {CONNECTION_TIMEOUT:?}"))
        })
        .buffer_unordered(BATCH);
    while let Some(stream) = opened.next().await {
        streams.push(stream.with_context(|| format!("after {} connections", streams.len()))?);
    }
    Ok(streams)
}

/// Connects, sends `GET /` and reads the response (headers and a `Content-Length` body).
async fn one_request(addr: SocketAddr) -> Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            bail!("the connection closed before a whole response");
        }
        buf.extend_from_slice(&chunk[..read]);
        if let Some(done) = response_complete(&buf)? {
            if !(200..300).contains(&done) {
                bail!("status {done}");
            }
            return Ok(stream);
        }
    }
}

/// The status, once `buf` holds a whole response with a `Content-Length` body (or none).
fn response_complete(buf: &[u8]) -> Result<Option<u16>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            bail!("response headers over 64 KiB");
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).context("response headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .context("no status line")?;
    let mut length = 0usize;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().context("bad Content-Length")?;
            } else if name.trim().eq_ignore_ascii_case("transfer-encoding") {
                bail!("chunked responses are not supported here");
            }
        }
    }
    Ok((buf.len() >= end + 4 + length).then_some(status))
}

/// HAProxy's `maxconn` for `connections`: room for them and some, but no more than the
/// open-files limit allows (HAProxy refuses to start when `2 * maxconn` descriptors exceed it).
fn haproxy_maxconn(connections: usize, nofile_limit: u64) -> u64 {
    (connections as u64 + 1000)
        .max(8000)
        .min(nofile_limit.saturating_sub(64) / 2)
}

/// `name` on `PATH` (or in the usual sbin folders, where nginx and HAProxy live).
fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Starts `peer` as `bench/compare.sh` does (the configs of `bench/peers/`, HTTP/1.1, limits
/// raised to fit `connections`) and measures it.
async fn measure_peer(
    peer: &str,
    binary: &std::path::Path,
    backend: SocketAddr,
    connections: usize,
    nofile_limit: u64,
) -> Result<MemoryRow> {
    let dir = tempfile::Builder::new()
        .prefix("weir-bench-peer-")
        .tempdir()?;
    let port = free_port()?;
    let d = dir.path();
    let mut command = Command::new(binary);
    match peer {
        "nginx" => {
            let conf = NGINX_CONF
                .replace("__PORT__", &port.to_string())
                .replace("__BACKEND__", &backend.to_string())
                .replace("__DIR__", &d.display().to_string())
                .replace("__H2__", "")
                .replace(
                    "worker_connections 20000",
                    &format!(
                        "worker_connections {}",
                        (2 * connections + 1000).max(20_000)
                    ),
                );
            std::fs::write(d.join("nginx.conf"), conf)?;
            command
                .arg("-c")
                .arg(d.join("nginx.conf"))
                .arg("-e")
                .arg(d.join("error.log"));
        }
        "haproxy" => {
            let cfg = HAPROXY_CFG
                .replace("__PORT__", &port.to_string())
                .replace("__BACKEND__", &backend.to_string())
                .replace("__H2__", "")
                .replace(
                    "maxconn 8000",
                    &format!("maxconn {}", haproxy_maxconn(connections, nofile_limit)),
                );
            std::fs::write(d.join("haproxy.cfg"), cfg)?;
            command.arg("-f").arg(d.join("haproxy.cfg")).arg("-db");
        }
        other => bail!("unknown peer {other}"),
    }
    let log = std::fs::File::create(d.join("out.log"))?;
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let mut child = ChildGuard::spawn(peer, &mut command)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let give_up = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_err() {
        if let Some(status) = child.try_exited() {
            let out = std::fs::read_to_string(d.join("out.log")).unwrap_or_default();
            bail!("exited at start ({status}): {}", out.trim());
        }
        if Instant::now() >= give_up {
            bail!("not listening on {addr} within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let row = measure(peer, child.pid(), addr, connections).await;
    child.stop().await?;
    drop(dir);
    row
}

impl fmt::Display for MemoryResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RSS with idle keep-alive client connections (open-files limit {}):\n  {:<8} {:>5} {:>12} {:>12} {:>12} {:>10}",
            self.nofile_limit, "proxy", "procs", "idle kB", "loaded kB", "connections", "B/conn"
        )?;
        for r in &self.rows {
            write!(
                f,
                "\n  {:<8} {:>5} {:>12} {:>12} {:>12} {:>10.0}",
                r.proxy, r.processes, r.idle_kb, r.loaded_kb, r.connections, r.bytes_per_connection
            )?;
        }
        for note in &self.notes {
            write!(f, "\nnote: {note}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_complete_with_their_body() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-backend: a\r\n\r\n";
        assert_eq!(response_complete(&head[..10]).unwrap(), None);
        assert_eq!(response_complete(head).unwrap(), None);
        let mut whole = head.to_vec();
        whole.extend_from_slice(b"aa");
        assert_eq!(response_complete(&whole).unwrap(), Some(200));
        assert_eq!(
            response_complete(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap(),
            Some(204)
        );
        assert!(
            response_complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err()
        );
    }

    #[test]
    fn peer_configs_have_their_placeholders() {
        for p in ["__PORT__", "__BACKEND__"] {
            assert!(NGINX_CONF.contains(p) && HAPROXY_CFG.contains(p));
        }
        assert!(NGINX_CONF.contains("worker_connections 20000"));
        assert!(HAPROXY_CFG.contains("maxconn 8000"));
    }
}
