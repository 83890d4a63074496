//! The job provider outside Kubernetes (argo-reference §4.3): the container's command
//! runs as a local process. Exit 0 is Successful; a failure is retried `backoffLimit`
//! times, then Failed. `http_proxy` points at weir, so that service names in the command
//! (`curl http://my-app-canary/health`) reach the right revision through the proxy.
//!
//! A job is a process group, and ends whole, as a Kubernetes Job's pod does: when its
//! command exits (what it left running in the background is killed), when its
//! measurement is dropped (the run was aborted or ended, weir stops) or times out, and
//! when weir dies. For that last case, on Unix, each job's group holds a watchdog, a
//! `sh` that waits on a pipe from weir: when weir's end closes, as it does however weir
//! ends (SIGKILL included), the watchdog kills the group. (Linux's `PR_SET_PDEATHSIG`
//! would need `unsafe` code in `pre_exec`, which the workspace denies, and would reach
//! the job's first process only.) A process that leaves the group (`setsid`) escapes
//! all of this, as it would escape a shell's job control.
//!
//! Only the last [`OUTPUT_KEPT`] bytes of each of the job's output streams are kept,
//! whatever it prints.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use weir_config::analysis::JobProvider;

use crate::analysis::Outcome;
use crate::eval::Verdict;

/// Longest a job may run before it counts as an Error.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(600);
/// The bytes kept of each of a job's output streams: the last ones.
pub const OUTPUT_KEPT: usize = 64 << 10;
/// After the job's command exits, how long what it printed may still take to arrive.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);
/// The characters of its output that a failed job's message shows: the last ones.
const MESSAGE_CHARS: usize = 300;

/// Runs the job.
pub async fn measure(j: &JobProvider, proxy_url: Option<&str>) -> Outcome {
    run(j, proxy_url, JOB_TIMEOUT).await
}

/// Runs the job, giving each attempt `timeout`.
pub(crate) async fn run(j: &JobProvider, proxy_url: Option<&str>, timeout: Duration) -> Outcome {
    let mut last = String::new();
    for attempt in 0..=j.backoff_limit {
        let group = Group::start();
        let mut cmd = tokio::process::Command::new(&j.argv[0]);
        cmd.args(&j.argv[1..]);
        cmd.kill_on_drop(true);
        cmd.stdin(std::process::Stdio::null());
        cmd.stdout(std::process::Stdio::piped());
        cmd.stderr(std::process::Stdio::piped());
        #[cfg(unix)]
        cmd.process_group(group.pgid());
        for (k, v) in &j.env {
            cmd.env(k, v);
        }
        if let Some(p) = proxy_url {
            cmd.env("http_proxy", p).env("HTTP_PROXY", p);
            cmd.env_remove("no_proxy").env_remove("NO_PROXY");
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return Outcome::Error(format!("cannot run {:?}: {e}", j.argv[0])),
        };
        let out = match tokio::time::timeout(timeout, finish(child, group)).await {
            // Dropping the attempt killed the job's group.
            Err(_) => {
                return Outcome::Error(format!(
                    "the job ({}) ran longer than {}s",
                    j.image,
                    timeout.as_secs()
                ));
            }
            Ok(Err(e)) => return Outcome::Error(format!("cannot run {:?}: {e}", j.argv[0])),
            Ok(Ok(o)) => o,
        };
        if out.status.success() {
            return Outcome::Decided(Verdict::Successful, None);
        }
        let tail = |t: &Tail| last_chars(String::from_utf8_lossy(&t.kept()).trim(), MESSAGE_CHARS);
        let (stderr, stdout) = (tail(&out.stderr), tail(&out.stdout));
        last = format!(
            "attempt {} of {} exited with {}{}",
            attempt + 1,
            j.backoff_limit + 1,
            out.status,
            match (stderr, stdout) {
                (e, _) if !e.is_empty() => format!(": {e}"),
                (_, o) if !o.is_empty() => format!(": {o}"),
                _ => String::new(),
            }
        );
        tracing::debug!(
            "job {}: {last} (printed {} bytes to stdout, {} to stderr)",
            j.image,
            out.stdout.total,
            out.stderr.total
        );
    }
    Outcome::Decided(Verdict::Failed, Some(last))
}

/// The last `n` characters of `s`.
fn last_chars(s: &str, n: usize) -> String {
    match s.char_indices().rev().nth(n.saturating_sub(1)) {
        Some((i, _)) if n > 0 => s[i..].to_owned(),
        _ if n == 0 => String::new(),
        _ => s.to_owned(),
    }
}

/// What a job's attempt ended with.
struct Finished {
    status: std::process::ExitStatus,
    stdout: Tail,
    stderr: Tail,
}

/// Waits for the job's command to exit while reading what it prints; then ends its
/// group, and collects the rest of its output.
async fn finish(mut child: tokio::process::Child, mut group: Group) -> std::io::Result<Finished> {
    let mut stdout = Tail::default();
    let mut stderr = Tail::default();
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let status = {
        let reading = async { tokio::join!(stdout.fill(out), stderr.fill(err)) };
        tokio::pin!(reading);
        let mut read_all = false;
        let status = loop {
            tokio::select! {
                s = child.wait() => break s?,
                _ = &mut reading, if !read_all => read_all = true,
            }
        };
        // What it left running ends with it, and so does its hold on the pipes.
        group.end();
        if !read_all {
            let _ = tokio::time::timeout(OUTPUT_GRACE, &mut reading).await;
        }
        status
    };
    Ok(Finished {
        status,
        stdout,
        stderr,
    })
}

/// The end of an output stream.
#[derive(Default)]
struct Tail {
    buf: VecDeque<u8>,
    /// Bytes read in all.
    total: u64,
}

impl Tail {
    /// Reads `from` to its end, keeping the last [`OUTPUT_KEPT`] bytes.
    async fn fill(&mut self, from: Option<impl AsyncRead + Unpin>) {
        let Some(mut from) = from else { return };
        let mut chunk = vec![0u8; 16 << 10];
        loop {
            match from.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    self.total += n as u64;
                    self.buf.extend(&chunk[..n]);
                    let over = self.buf.len().saturating_sub(OUTPUT_KEPT);
                    self.buf.drain(..over);
                }
            }
        }
    }

    fn kept(&self) -> Vec<u8> {
        self.buf.iter().copied().collect()
    }
}

/// The process group a job runs in, and its watchdog (see the module's documentation).
/// Dropping it ends the group.
struct Group {
    /// The watchdog, leader of the group; None where it could not be started (the job
    /// then leads a group of its own, and only its first process is killed).
    #[cfg(unix)]
    watchdog: Option<(tokio::process::Child, tokio::process::ChildStdin)>,
}

impl Group {
    /// A new group, with its watchdog.
    fn start() -> Group {
        #[cfg(unix)]
        {
            let mut w = tokio::process::Command::new("sh");
            // `read` returns when weir's end of the pipe closes; then the whole group,
            // the watchdog included, is killed.
            w.args(["-c", "read -r _; kill -9 0"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0);
            let watchdog = match w.spawn() {
                Ok(mut child) => child.stdin.take().map(|stdin| (child, stdin)),
                Err(e) => {
                    tracing::warn!(
                        "cannot start the watchdog of a job's process group (sh: {e}): should weir die, what the job started may keep running"
                    );
                    None
                }
            };
            Group { watchdog }
        }
        #[cfg(not(unix))]
        Group {}
    }

    /// The group to join (0: a new one).
    #[cfg(unix)]
    fn pgid(&self) -> i32 {
        self.watchdog
            .as_ref()
            .and_then(|(c, _)| c.id())
            .and_then(|id| i32::try_from(id).ok())
            .unwrap_or(0)
    }

    /// Kills every process of the group: closing the watchdog's pipe tells it to.
    fn end(&mut self) {
        #[cfg(unix)]
        if let Some((_child, stdin)) = self.watchdog.take() {
            drop(stdin);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_chars_cut_between_characters() {
        assert_eq!(last_chars("abc", 2), "bc");
        assert_eq!(last_chars("abc", 5), "abc");
        assert_eq!(last_chars("a€b", 2), "€b");
        assert_eq!(last_chars("abc", 0), "");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_job_that_runs_too_long_ends_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let j = JobProvider {
            image: "test".into(),
            argv: vec![
                "sh".into(),
                "-c".into(),
                format!("sleep 1000 & echo $! > {}; wait", pidfile.display()),
            ],
            env: Vec::new(),
            backoff_limit: 0,
        };
        let outcome = run(&j, None, Duration::from_millis(500)).await;
        assert!(
            matches!(&outcome, Outcome::Error(e) if e.contains("ran longer")),
            "{outcome:?}"
        );
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        for _ in 0..500 {
            let running = std::fs::read_to_string(&stat).is_ok_and(|s| {
                s.rsplit_once(") ")
                    .is_some_and(|(_, r)| !r.starts_with('Z'))
            });
            if !running {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the job's child still runs");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn what_a_finished_job_left_running_ends_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let j = JobProvider {
            image: "test".into(),
            argv: vec![
                "sh".into(),
                "-c".into(),
                format!("sleep 1000 & echo $! > {}; exit 0", pidfile.display()),
            ],
            env: Vec::new(),
            backoff_limit: 0,
        };
        // It does not wait for the background child, which holds its output open.
        let outcome = tokio::time::timeout(Duration::from_secs(10), run(&j, None, JOB_TIMEOUT))
            .await
            .expect("the job's end is its command's exit");
        assert_eq!(outcome, Outcome::Decided(Verdict::Successful, None));
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        for _ in 0..500 {
            let running = std::fs::read_to_string(&stat).is_ok_and(|s| {
                s.rsplit_once(") ")
                    .is_some_and(|(_, r)| !r.starts_with('Z'))
            });
            if !running {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the job's child still runs");
    }
}
