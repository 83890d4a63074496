//! Issue 10, item 7: what a measurement may cost. A job runs in its own process group,
//! which ends with its measurement (an abort, a timeout, weir stopping or being killed);
//! the output kept of it is bounded; what a measurement records (a web body, say) is
//! bounded too.

#![cfg(unix)]

mod common;

use common::serve_once;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{canary, start};
use weir_config::analysis::{JobProvider, Provider, decode_metric};
use weir_control::Action;
use weir_control::analysis::Verdict;
use weir_control::analysis::{AnalysisRun, Outcome, Phase};
use weir_control::providers::{HttpClient, job, web};
use weir_control::state::RolloutPhase;

fn sh(script: &str) -> JobProvider {
    JobProvider {
        image: "test".into(),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: Vec::new(),
        backoff_limit: 0,
    }
}

/// A job that starts a child that would run for long, writes its pid to `pidfile` and
/// waits for it.
fn long_job(pidfile: &Path) -> String {
    format!("sleep 1000 & echo $! > {}; wait", pidfile.display())
}

/// Whether process `pid` runs (a zombie does not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// The pid written to `file`, once it is there (real time, 10 s at most).
async fn pid_in(file: &Path) -> u32 {
    for _ in 0..500 {
        if let Ok(s) = std::fs::read_to_string(file)
            && let Ok(pid) = s.trim().parse()
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no pid in {}", file.display());
}

/// Waits (real time, 10 s at most) for process `pid` to end.
async fn ends(pid: u32) {
    for _ in 0..500 {
        if !alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("process {pid} still runs");
}

#[tokio::test]
async fn a_dropped_measurement_ends_the_job_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let j = sh(&long_job(&pidfile));
    let task = tokio::spawn(async move { job::measure(&j, None).await });
    let pid = pid_in(&pidfile).await;
    assert!(alive(pid));
    task.abort();
    let _ = task.await;
    ends(pid).await;
}

/// Run by [`a_job_ends_when_weir_is_killed`] in a process of its own: takes a job's
/// measurement and never returns. Does nothing in a normal test run.
#[test]
fn job_child_process() {
    let Some(pidfile) = std::env::var_os("WEIR_TEST_JOB_PIDFILE") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let j = sh(&long_job(Path::new(&pidfile)));
        job::measure(&j, None).await;
        std::future::pending::<()>().await;
    });
}

#[tokio::test]
async fn a_job_ends_when_weir_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile: PathBuf = dir.path().join("pid");
    let mut weir = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["job_child_process", "--exact", "--nocapture"])
        .env("WEIR_TEST_JOB_PIDFILE", &pidfile)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = pid_in(&pidfile).await;
    assert!(alive(pid));
    weir.kill().unwrap(); // SIGKILL: nothing of it runs any more
    weir.wait().unwrap();
    ends(pid).await;
}

/// VmHWM of this process, in bytes.
fn peak_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// Run by [`the_output_kept_of_a_job_is_bounded`] in a process of its own, so that no
/// other test's memory counts: runs a job that prints 200 MB, and prints how much this
/// process's peak memory grew and what the measurement said. Does nothing in a normal
/// test run.
#[test]
fn job_output_child_process() {
    if std::env::var_os("WEIR_TEST_JOB_OUTPUT").is_none() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let before = peak_memory();
    let j = sh("head -c 200000000 /dev/zero | tr '\\0' x; echo; echo last words; exit 3");
    let outcome = rt.block_on(job::measure(&j, None));
    let grew = peak_memory().saturating_sub(before);
    let Outcome::Decided(Verdict::Failed, Some(msg)) = &outcome else {
        panic!("{outcome:?}")
    };
    println!(
        "\nGREW {grew} LEN {} ENDS {}",
        msg.len(),
        msg.ends_with("last words")
    );
}

#[test]
fn the_output_kept_of_a_job_is_bounded() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["job_output_child_process", "--exact", "--nocapture"])
        .env("WEIR_TEST_JOB_OUTPUT", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("GREW "))
        .unwrap_or_else(|| panic!("{stdout}{}", String::from_utf8_lossy(&out.stderr)));
    let words: Vec<&str> = line.split(' ').collect();
    let grew: u64 = words[1].parse().unwrap();
    let len: usize = words[3].parse().unwrap();
    assert!(grew < 32 << 20, "memory grew by {grew} bytes");
    assert!(len < 4096, "a message of {len} bytes");
    assert_eq!(
        words[5], "true",
        "the message ends with the last words printed"
    );
}

#[tokio::test]
async fn a_job_output_cut_inside_a_character_is_no_panic() {
    // 299 bytes then a 3-byte character: the last 300 bytes start inside it.
    let j = sh(
        "printf 'x%.0s' $(seq 1 400); printf '\\342\\202\\254'; printf 'y%.0s' $(seq 1 298); exit 1",
    );
    let outcome = job::measure(&j, None).await;
    assert!(
        matches!(outcome, Outcome::Decided(Verdict::Failed, Some(_))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_large_web_body_is_not_recorded_whole() {
    let body = vec![b'x'; 20 << 20];
    let url = format!("{}/", serve_once(body, None).await);
    let metric = serde_json::json!({"name": "m", "successCondition": "len(result) > 0",
        "provider": {"web": {"url": url}}});
    let spec = decode_metric(&metric, false).expect("valid metric");
    let Provider::Web(w) = &spec.provider else {
        panic!("a web metric")
    };
    let outcome = web::measure(&HttpClient::new(), w).await;
    let mut run = AnalysisRun::new("r".into(), vec![(metric, spec.clone())], &[], &[], 0);
    run.begin(0);
    run.record(0, outcome, 0, 1);
    let m = &run.metrics[0].measurements[0];
    assert_eq!(
        m.phase,
        Phase::Successful,
        "the condition saw the whole body"
    );
    let value = m.value.as_deref().unwrap();
    assert!(value.len() <= 4200, "{} bytes recorded", value.len());
    assert!(value.starts_with("xxxx"));
    assert!(
        value.contains("truncated"),
        "{}",
        &value[value.len() - 100..]
    );
    let saved = serde_json::to_vec(&run).unwrap();
    assert!(saved.len() < 16 << 10, "{} bytes saved", saved.len());
}

const SMOKE: &str = r#"
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: smoke}
spec:
  metrics:
    - name: smoke
      provider:
        job:
          spec:
            template:
              spec:
                containers:
                  - name: smoke
                    image: busybox
                    command: [sh, -c]
                    args: ["SCRIPT"]
"#;

#[tokio::test]
async fn an_abort_ends_the_job_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let template = SMOKE.replace("SCRIPT", &long_job(&pidfile));
    let steps = "[{setWeight: 10}, {analysis: {templates: [{templateName: smoke}]}}]";
    let h = start(canary("v1", steps, &template), None);
    h.until(Duration::from_secs(10), |v| {
        v.phase == Some(RolloutPhase::Healthy)
    })
    .await;
    h.tx.send(canary("v2", steps, &template)).unwrap();
    let pid = pid_in(&pidfile).await;
    assert!(alive(pid));
    h.handle.act("app", Action::Abort).await.unwrap();
    ends(pid).await;
    h.stop().await;
}
