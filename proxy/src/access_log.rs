//! The access log: one JSON line per request, written by its own thread so that a slow
//! disk never stalls a worker. Off by default; when off the hot path only tests a bool.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use serde::Serialize;
use weir_config::model::AccessLog;

/// Lines queued at most; beyond it lines are dropped and counted.
const QUEUE: usize = 16 * 1024;

/// Where access log lines go.
#[derive(Debug)]
pub struct AccessLogSink {
    tx: mpsc::SyncSender<String>,
    /// Lines dropped because the writer fell behind.
    pub dropped: AtomicU64,
    /// What it writes to.
    pub target: AccessLog,
}

impl AccessLogSink {
    /// Starts a writer for `target`.
    ///
    /// # Errors
    /// When a file target cannot be opened.
    pub fn start(target: &AccessLog) -> std::io::Result<Option<AccessLogSink>> {
        let mut out: Box<dyn Write + Send> = match target {
            AccessLog::Off => return Ok(None),
            AccessLog::Stdout => Box::new(std::io::stdout()),
            AccessLog::Stderr => Box::new(std::io::stderr()),
            AccessLog::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        let (tx, rx) = mpsc::sync_channel::<String>(QUEUE);
        std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || {
                let mut buf = std::io::BufWriter::new(&mut out);
                while let Ok(line) = rx.recv() {
                    let _ = buf.write_all(line.as_bytes());
                    // Write what is queued, then flush once.
                    while let Ok(line) = rx.try_recv() {
                        let _ = buf.write_all(line.as_bytes());
                    }
                    let _ = buf.flush();
                }
            })?;
        Ok(Some(AccessLogSink {
            tx,
            dropped: AtomicU64::new(0),
            target: target.clone(),
        }))
    }

    /// Queues one entry.
    pub fn write(&self, entry: &Entry<'_>) {
        let mut line = match serde_json::to_string(entry) {
            Ok(l) => l,
            Err(_) => return,
        };
        line.push('\n');
        if self.tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One access log line.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    /// RFC 3339 time the request arrived.
    pub time: String,
    /// Client address.
    pub client: String,
    /// Host asked for.
    pub host: &'a str,
    /// Method.
    pub method: &'a str,
    /// Path and query.
    pub path: &'a str,
    /// Status sent.
    pub status: u16,
    /// Route name, if one matched.
    pub route: Option<&'a str>,
    /// Role of the backend.
    pub role: Option<&'a str>,
    /// Revision of the backend.
    pub revision: Option<&'a str>,
    /// The upstream endpoint.
    pub upstream: Option<String>,
    /// Seconds from arrival to the end of the response.
    pub duration: f64,
    /// The proxy's error, if it made the response.
    pub error: Option<&'a str>,
}

/// Formats a system time as RFC 3339 UTC with milliseconds, e.g. 2026-11-27T18:25:10.123Z.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
