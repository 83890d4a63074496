//! The job provider outside Kubernetes (argo-reference §4.3): the container's command
//! runs as a local process. Exit 0 is Successful; a failure is retried `backoffLimit`
//! times, then Failed. `http_proxy` points at weir, so that service names in the command
//! (`curl http://my-app-canary/health`) reach the right revision through the proxy.

use std::time::Duration;

use weir_config::analysis::JobProvider;

use crate::analysis::Outcome;
use crate::eval::Verdict;

/// Longest a job may run before it counts as an Error.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs the job.
pub async fn measure(j: &JobProvider, proxy_url: Option<&str>) -> Outcome {
    let mut last = String::new();
    for attempt in 0..=j.backoff_limit {
        let mut cmd = tokio::process::Command::new(&j.argv[0]);
        cmd.args(&j.argv[1..]);
        cmd.kill_on_drop(true);
        cmd.stdin(std::process::Stdio::null());
        for (k, v) in &j.env {
            cmd.env(k, v);
        }
        if let Some(p) = proxy_url {
            cmd.env("http_proxy", p).env("HTTP_PROXY", p);
            cmd.env_remove("no_proxy").env_remove("NO_PROXY");
        }
        let out = match tokio::time::timeout(JOB_TIMEOUT, cmd.output()).await {
            Err(_) => {
                return Outcome::Error(format!(
                    "the job ({}) ran longer than {}s",
                    j.image,
                    JOB_TIMEOUT.as_secs()
                ));
            }
            Ok(Err(e)) => return Outcome::Error(format!("cannot run {:?}: {e}", j.argv[0])),
            Ok(Ok(o)) => o,
        };
        if out.status.success() {
            return Outcome::Decided(Verdict::Successful, None);
        }
        let tail = |b: &[u8]| {
            let s = String::from_utf8_lossy(b);
            let s = s.trim();
            s[s.len().saturating_sub(300)..].to_owned()
        };
        last = format!(
            "attempt {} of {} exited with {}{}",
            attempt + 1,
            j.backoff_limit + 1,
            out.status,
            match (tail(&out.stderr), tail(&out.stdout)) {
                (e, _) if !e.is_empty() => format!(": {e}"),
                (_, o) if !o.is_empty() => format!(": {o}"),
                _ => String::new(),
            }
        );
        tracing::debug!("job {}: {last}", j.image);
    }
    Outcome::Decided(Verdict::Failed, Some(last))
}
