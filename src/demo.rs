//! `weir demo`: the whole story on one machine with nothing else installed. Two
//! revisions of an app (fake backends), weir itself with a Rollout in the seed's shape
//! (time compressed to seconds), and steady load; then the story: a healthy canary steps
//! up with analysis passing and is promoted; a broken one is caught and reverted, with
//! its blast radius shown.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weir_control::api::RolloutView;
use weir_control::state::{Reason, RolloutPhase};
use weir_fixtures::backend::{Behavior, FakeBackend};
use weir_fixtures::load::{LoadSpec, Mode, Report, run};

use crate::app::{App, ServeOptions};

/// Demo options.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Client listener port.
    pub port: u16,
    /// Admin (dashboard) port.
    pub admin_port: u16,
    /// Requests per second of the built-in load.
    pub rate: f64,
    /// Run the story once and exit (0 when it went as expected).
    pub once: bool,
}

const ROLLOUT: &str = "demo";

fn config(port: u16, admin: u16, image: &str, backends: &[(SocketAddr, &str)]) -> String {
    let mut eps = String::new();
    for (a, img) in backends {
        eps.push_str(&format!("    - {{address: \"{a}\", image: \"{img}\"}}\n"));
    }
    format!(
        r#"# Written by `weir demo`. The seed's canary, time compressed: minutes are seconds.
apiVersion: weir.dev/v1alpha1
kind: Proxy
metadata: {{name: demo}}
spec:
  listeners: [{{name: web, address: "127.0.0.1:{port}"}}]
  admin: {{address: "127.0.0.1:{admin}"}}
  routes: [{{name: demo, rollout: {ROLLOUT}}}]
---
apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {{name: {ROLLOUT}}}
spec:
  endpoints:
{eps}---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {{name: {ROLLOUT}}}
spec:
  selector: {{matchLabels: {{app: demo}}}}
  template:
    metadata: {{labels: {{app: demo}}}}
    spec: {{containers: [{{name: app, image: "{image}"}}]}}
  strategy:
    canary:
      canaryService: demo-canary
      stableService: demo-stable
      analysis:                       # the judge guards the whole update
        templates: [{{templateName: guard}}]
      steps:
        - setWeight: 5
        - pause: {{duration: 3}}
        - analysis: {{templates: [{{templateName: success-rate}}]}}
        - setWeight: 25
        - pause: {{duration: 3}}
        - analysis: {{templates: [{{templateName: success-rate}}]}}
        - setWeight: 75
        - pause: {{duration: 3}}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{name: success-rate}}
spec:
  metrics:
    - name: success-rate
      interval: 1s
      count: 3
      successCondition: result[0] >= 0.95
      failureLimit: 0
      provider:
        weir: {{metric: success-rate, window: 5s, minRequests: 20}}
    - name: latency-p99
      interval: 1s
      count: 3
      successCondition: result[0] < 0.25
      provider:
        weir: {{metric: latency, quantile: 0.99, window: 5s, minRequests: 20}}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{name: guard}}
spec:
  metrics:
    # The canary-vs-stable judge (docs/judge.md), every 100 ms: it compares the canary's
    # failures with the stable revision's at the share each one served, so at 5% of the
    # demo's 200 req/s a canary failing every request is caught after about 3 failures.
    # In the background it goes on judging until the update ends; "inconclusive" (no
    # verdict within maxWait) is not a failure here.
    - name: canary-vs-stable
      interval: 100ms
      successCondition: result != "fail"
      provider:
        weir: {{metric: canary-vs-stable}}
"#
    )
}

fn say(start: tokio::time::Instant, line: &str) {
    println!("[{:>5.1}s] {line}", start.elapsed().as_secs_f64());
}

/// Runs the demo. Returns whether the story went as expected.
///
/// # Errors
/// When weir cannot start (a port in use says so plainly).
pub async fn run_demo(opts: DemoOptions) -> anyhow::Result<bool> {
    let start = tokio::time::Instant::now();
    let v1 = FakeBackend::start("v1", Behavior::default()).await?;
    let v2 = FakeBackend::start("v2", Behavior::default()).await?;
    let v3 = FakeBackend::start(
        "v3",
        Behavior {
            status: 500,
            ..Behavior::default()
        },
    )
    .await?;
    let backends = [
        (v1.addr(), "demo:v1"),
        (v2.addr(), "demo:v2"),
        (v3.addr(), "demo:v3-broken"),
    ];
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("demo.yaml");
    let write = |image: &str| -> std::io::Result<()> {
        let tmp = dir.path().join(".demo.yaml.tmp");
        std::fs::write(&tmp, config(opts.port, opts.admin_port, image, &backends))?;
        std::fs::rename(&tmp, &path)
    };
    write("demo:v1")?;
    let model = weir_config::load(&path)?;
    let app = App::start(
        model,
        &ServeOptions {
            config: path.clone(),
            state_dir: dir.path().join("state"),
            workers: 2,
            measure: true,
            shutdown_grace: Duration::from_secs(5),
            watch: true,
            node: "demo".into(),
        },
    )
    .await
    .map_err(|e| match e {
        crate::app::StartError::Bind { address, .. } => anyhow::anyhow!(
            "port {} is taken: stop what uses it, or pick others with --port and --admin-port",
            address.port()
        ),
        other => other.into(),
    })?;
    let web = app
        .listener("web")
        .ok_or_else(|| anyhow::anyhow!("no listener named web"))?;
    let admin = app.admin();
    println!("weir demo: an app behind weir, rolled out the Argo Rollouts way.");
    println!(
        "  traffic:   http://{web}/   (demo-stable and demo-canary as Host reach each revision)"
    );
    println!("  dashboard: http://{admin}/");
    println!("  admin API: http://{admin}/api/v1/rollouts/{ROLLOUT}");
    println!("  watch it:  weir get rollout {ROLLOUT} -w --admin http://{admin}");
    println!("  config:    {}", path.display());
    println!();

    // Narrate the control loop's events as they happen.
    let mut events = app.controller.subscribe();
    let narrator = tokio::spawn(async move {
        while let Ok((_, e)) = events.recv().await {
            let mark = match e.reason {
                Reason::RolloutCompleted => "✔",
                Reason::RolloutAborted | Reason::AnalysisRunFailed | Reason::AnalysisRunError => {
                    "✖"
                }
                Reason::TrafficWeightUpdated => "→",
                Reason::RolloutPaused => "॥",
                _ => "·",
            };
            say(start, &format!("{mark} {}", e.message));
        }
    });

    let load = |rate: f64| {
        let stop = CancellationToken::new();
        let spec = LoadSpec {
            connections: 8,
            mode: Mode::Open { rate },
            duration: Duration::from_secs(3600),
            host: "demo.local".into(),
            ..LoadSpec::new(web)
        };
        let s = stop.clone();
        (stop, tokio::spawn(async move { run(spec, s).await }))
    };
    let state = || {
        let controller = app.controller.clone();
        async move { controller.get(ROLLOUT).await }
    };
    let wait_for = |want: &'static str, image: &'static str, within: Duration| async move {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(s) = state().await {
                let done = match want {
                    "promoted" => {
                        s.phase == Some(RolloutPhase::Healthy)
                            && s.stable_revision.as_deref() == Some(image)
                    }
                    _ => s.phase == Some(RolloutPhase::Degraded),
                };
                if done {
                    return Some(s);
                }
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    say(
        start,
        &format!("demo:v1 is stable; {} req/s of load begin", opts.rate),
    );
    let (stop, handle) = load(opts.rate);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Act 1: a healthy new version.
    println!();
    say(
        start,
        "Act 1: demo:v2, a healthy version. Editing the Rollout's image to demo:v2...",
    );
    write("demo:v2")?;
    let act1 = wait_for("promoted", "demo:v2", Duration::from_secs(90)).await;
    stop.cancel();
    let r1: Report = handle.await?;
    // A healthy update fails no request: not at start, not at any step, not at the
    // promotion.
    let ok1 = act1.is_some() && failed(&r1) == 0;
    say(
        start,
        &format!(
            "{} Act 1 {}: {} requests, {} failed",
            if ok1 { "✔" } else { "✖" },
            if act1.is_none() {
                "did not finish in time"
            } else if ok1 {
                "done, demo:v2 promoted"
            } else {
                "done, demo:v2 promoted, but requests failed on the way"
            },
            r1.requests,
            failed(&r1)
        ),
    );

    // Act 2: a broken version, caught and reverted.
    println!();
    say(
        start,
        "Act 2: demo:v3-broken, which answers every request with 500. Editing the image...",
    );
    let (stop, handle) = load(opts.rate);
    write("demo:v3-broken")?;
    let act2 = wait_for("aborted", "", Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let r2 = handle.await?;
    let at_risk = act2.as_ref().and_then(seconds_at_risk);
    let ok2 = act2.as_ref().is_some_and(|s| {
        s.aborted && s.canary_weight == 0.0 && s.stable_revision.as_deref() == Some("demo:v2")
    });
    say(
        start,
        &format!(
            "{} Act 2 {}: blast radius {} failed requests of {} ({:.2}%), {} at risk; demo:v2 kept serving",
            if ok2 { "✔" } else { "✖" },
            if ok2 {
                "done, demo:v3-broken reverted"
            } else {
                "did not go as expected"
            },
            failed(&r2),
            r2.requests,
            failed(&r2) as f64 * 100.0 / r2.requests.max(1) as f64,
            at_risk.map_or("?".to_owned(), |s| format!("{s:.1}s"))
        ),
    );
    println!();
    let ok = ok1 && ok2;
    if opts.once {
        narrator.abort();
        app.shutdown().await;
        return Ok(ok);
    }
    // Keep serving, with load, until Ctrl-C.
    say(
        start,
        &format!(
            "The story is told. weir keeps serving with load; the dashboard is at http://{admin}/ . Ctrl-C to stop."
        ),
    );
    say(
        start,
        &format!(
            "Try: weir promote / abort / retry {ROLLOUT} --admin http://{admin}, or edit {}",
            path.display()
        ),
    );
    let (stop, handle) = load(opts.rate);
    let _ = tokio::signal::ctrl_c().await;
    stop.cancel();
    let _ = handle.await;
    narrator.abort();
    app.shutdown().await;
    drop(dir);
    Ok(ok)
}

fn failed(r: &Report) -> u64 {
    r.errors
        + r.by_status
            .iter()
            .filter(|(s, _)| **s >= 500)
            .map(|(_, n)| n)
            .sum::<u64>()
}

/// Seconds from the canary first getting traffic to the abort, from the timeline.
fn seconds_at_risk(s: &RolloutView) -> Option<f64> {
    let events = &s.events;
    let updated = events
        .iter()
        .rposition(|e| e.reason == Reason::RolloutUpdated)?;
    let first = events[updated..]
        .iter()
        .find(|e| e.reason == Reason::TrafficWeightUpdated)?;
    let abort = events[updated..]
        .iter()
        .find(|e| e.reason == Reason::RolloutAborted)?;
    Some((abort.time as f64 - first.time as f64) / 1000.0)
}
