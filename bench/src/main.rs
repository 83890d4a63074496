//! `weir-bench`: run a fake backend, put load on an HTTP server, or run one of the benchmark
//! scenarios against a weir binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use weir_bench::scenarios::blast::BlastOptions;
use weir_bench::scenarios::canary::Guard;
use weir_bench::scenarios::cluster::{ClusterOptions, Phases};
use weir_bench::scenarios::control_loop::ControlLoopOptions;
use weir_bench::scenarios::false_rollbacks::FalseRollbacksOptions;
use weir_bench::scenarios::gateway::GatewayRoutesOptions;
use weir_bench::scenarios::gateway_reload::{Change, GatewayReloadOptions};
use weir_bench::scenarios::judge::JudgeOptions;
use weir_bench::scenarios::memory::MemoryOptions;
use weir_bench::scenarios::micro::MicroOptions;
use weir_bench::scenarios::reload::ReloadOptions;
use weir_bench::scenarios::split::SplitOptions;
use weir_bench::scenarios::{
    WeirOptions, blast, cluster, control_loop, false_rollbacks, gateway, gateway_reload, judge,
    memory, micro, reload, split,
};
use weir_fixtures::{Behavior, FakeBackend, Latency, LoadSpec, Mode};

/// weir's fake backend and load generator.
#[derive(Debug, Parser)]
#[command(name = "weir-bench", version, about)]
struct Cli {
    /// Runtime worker threads (default: one per core).
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a fake backend until Ctrl-C. Its behaviour can be changed while it runs with
    /// `curl -X PUT --data '{"status":503}' http://ADDR/__weir_bench/behavior`.
    Backend(BackendArgs),
    /// Send load to a URL and print what came back.
    Load(LoadArgs),
    /// Split precision: a 100-c/c split under closed-loop load, worst deviation over every
    /// window of 10, 100 and 1000 requests in weir's split order. Fails above 1.
    Split(SplitArgs),
    /// Reload latency: flip a route between two backends by renaming a new config over the
    /// watched one, time until the new backend answers; no request may fail meanwhile.
    Reload(ReloadArgs),
    /// Memory per idle keep-alive client connection (VmRSS), for weir and optionally nginx
    /// and HAProxy.
    Memory(MemoryArgs),
    /// In-process nanoseconds per call of stats recording, split pick and route lookup.
    Micro(MicroArgs),
    /// In-process, a Gateway with N HTTPRoutes over N hostnames (three rules each) and their
    /// Services and EndpointSlices: config load and table build in ms, and route lookup ns
    /// (exact host first and last rule, wildcard host, miss) next to a table of one route.
    GatewayRoutes(GatewayRoutesArgs),
    /// The same config served by weir under open-loop load over many hostnames, rewritten N
    /// times (one route changed each): rename to first new response, where the time goes
    /// (from weir's log), and no failed request.
    GatewayReload(GatewayReloadArgs),
    /// Blast radius of a broken canary (100% 500s) under open-loop load: failed requests and
    /// seconds until weir's own analysis aborts it, and the decision latency. Fails when a run
    /// fails more than 25 requests or for more than 2 s.
    Blast(BlastArgs),
    /// Healthy-but-noisy updates (both images fail 1%) under load: counts those weir's
    /// analysis wrongly aborts. Fails on any.
    FalseRollbacks(FalseRollbacksArgs),
    /// The canary-vs-stable judge in weir's control loop against a simulated data plane,
    /// in paused time: time to abort bad canaries, false rollbacks of healthy ones.
    /// Fails when a goal is missed.
    Judge(JudgeArgs),
    /// weir's CPU, RSS and control-loop turns with N Rollouts, idle and paused mid-update,
    /// and the time to start an update on all N at once.
    ControlLoop(ControlLoopArgs),
    /// Cluster mode with a real 3-member etcd and three weir replicas: takeover time after
    /// the leader is killed (-9) or frozen (SIGSTOP) mid-pause, status-to-every-replica
    /// latency, bytes each replica writes to etcd, and the control loop's CPU with many
    /// rollouts.
    Cluster(ClusterArgs),
}

/// The weir binary the scenarios start.
#[derive(Debug, Args)]
struct WeirArgs {
    /// The weir binary.
    #[arg(
        long = "weir",
        value_name = "PATH",
        default_value = "target/release/weir"
    )]
    binary: PathBuf,
    /// weir's --workers (default: its own, one per core).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

impl WeirArgs {
    fn options(&self) -> WeirOptions {
        WeirOptions {
            binary: self.binary.clone(),
            workers: self.workers,
        }
    }
}

#[derive(Debug, Args)]
struct SplitArgs {
    /// Concurrent keep-alive client connections.
    #[arg(long, short = 'c', default_value_t = 64)]
    connections: usize,
    /// Responses to collect.
    #[arg(long, short = 'n', default_value_t = 200_000)]
    requests: u64,
    /// The canary's weight in percent (steps of 0.01); the stable gets the rest.
    #[arg(long, default_value_t = 5.0)]
    canary: f64,
    #[command(flatten)]
    weir: WeirArgs,
}

#[derive(Debug, Args)]
struct ReloadArgs {
    /// Config changes to make.
    #[arg(long, default_value_t = 100)]
    reloads: usize,
    /// Connections of the background load.
    #[arg(long, short = 'c', default_value_t = 16)]
    connections: usize,
    /// Pause after each reload took effect.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pause: Duration,
    #[command(flatten)]
    weir: WeirArgs,
}

#[derive(Debug, Args)]
struct MemoryArgs {
    /// Client connections to hold open.
    #[arg(long, short = 'c', default_value_t = 10_000)]
    connections: usize,
    /// Also measure nginx and HAProxy (those on PATH), with bench/peers' configs.
    #[arg(long)]
    peers: bool,
    #[command(flatten)]
    weir: WeirArgs,
}

/// The analysis guarding the update (an AnalysisTemplate measured by weir's provider).
#[derive(Debug, Args)]
struct GuardArgs {
    /// successCondition: result[0] >= this canary success rate.
    #[arg(long, default_value_t = 0.8)]
    success_at_least: f64,
    /// The provider's window, seconds.
    #[arg(long, default_value_t = 10)]
    window: u64,
    /// The provider's minRequests.
    #[arg(long, default_value_t = 10)]
    min_requests: u64,
    /// Seconds between measurements.
    #[arg(long, default_value_t = 1)]
    interval: u64,
}

impl GuardArgs {
    fn guard(&self) -> Guard {
        Guard {
            interval_secs: self.interval,
            success_at_least: self.success_at_least,
            window_secs: self.window,
            min_requests: self.min_requests,
        }
    }
}

#[derive(Debug, Args)]
struct BlastArgs {
    /// Open-loop load, requests per second.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Broken updates to make.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    #[command(flatten)]
    guard: GuardArgs,
    #[command(flatten)]
    weir: WeirArgs,
}

#[derive(Debug, Args)]
struct JudgeArgs {
    /// Updates with a canary failing every request (5% of 200 rps).
    #[arg(long, default_value_t = 100)]
    broken: usize,
    /// Updates with the canary's errors doubled, 1% -> 2% (5% of 1,000 rps).
    #[arg(long, default_value_t = 100)]
    doubled: usize,
    /// Updates with the canary 50 ms slower (5% of 1,000 rps).
    #[arg(long, default_value_t = 100)]
    slower: usize,
    /// Healthy updates, both revisions at 1% errors (5% of 1,000 rps).
    #[arg(long, default_value_t = 1000)]
    healthy: usize,
    /// Healthy updates through 10 s of 20% errors on both revisions.
    #[arg(long, default_value_t = 100)]
    incident: usize,
    /// Simulations run side by side.
    #[arg(long, default_value_t = 2)]
    parallel: usize,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct FalseRollbacksArgs {
    /// Updates to make (alternating v1 -> v2, v2 -> v1).
    #[arg(long, default_value_t = 100)]
    runs: usize,
    /// Open-loop load, requests per second.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Share of requests (0..1) both images answer with 500.
    #[arg(long, default_value_t = 0.01)]
    error_rate: f64,
    #[command(flatten)]
    guard: GuardArgs,
    #[command(flatten)]
    weir: WeirArgs,
}

#[derive(Debug, Args)]
struct ControlLoopArgs {
    /// Rollouts in the config.
    #[arg(long, default_value_t = 1000)]
    rollouts: usize,
    /// Seconds of each measured phase (idle, paused).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[command(flatten)]
    weir: WeirArgs,
}

#[derive(Debug, Args)]
struct ClusterArgs {
    /// Takeover runs of each kind (leader killed -9, leader frozen with SIGSTOP).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Weight changes timed from the leader to every replica (1..=98).
    #[arg(long, default_value_t = 50)]
    changes: usize,
    /// Seconds of each measured interval of bytes written to etcd (idle, rollout).
    #[arg(long, default_value_t = 30)]
    bytes_seconds: u64,
    /// Rollouts of the CPU phase.
    #[arg(long, default_value_t = 100)]
    rollouts: usize,
    /// Seconds of each measured CPU interval (idle, paused).
    #[arg(long, default_value_t = 20)]
    cpu_seconds: u64,
    /// Phases to run, comma-separated: takeover, status, bytes, cpu (or all).
    #[arg(long, default_value = "all")]
    phases: String,
    /// The etcd binary (default: $WEIR_ETCD, etcd on PATH, /usr/bin/etcd).
    #[arg(long, value_name = "PATH")]
    etcd: Option<PathBuf>,
    #[command(flatten)]
    weir: WeirArgs,
}

#[derive(Debug, Args)]
struct MicroArgs {
    /// Calls per timed round (three rounds per operation; the fastest counts).
    #[arg(long, default_value_t = 5_000_000)]
    iterations: u64,
    /// CPU µs per proxied request, to express the measurement cost as a share of it.
    #[arg(long, default_value_t = 28.0)]
    per_request_us: f64,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

/// The generated Gateway API config.
#[derive(Debug, Args)]
struct RouteSetArgs {
    /// HTTPRoutes, each with its own hostname.
    #[arg(long, default_value_t = 10_000)]
    routes: usize,
    /// How many of the hostnames are wildcards (`*.wild-I.bench.example`).
    #[arg(long, default_value_t = 100)]
    wildcards: usize,
    /// Kubernetes Services, each with an EndpointSlice (even).
    #[arg(long, default_value_t = 1000)]
    services: usize,
}

#[derive(Debug, Args)]
struct GatewayRoutesArgs {
    #[command(flatten)]
    set: RouteSetArgs,
    /// Config loads and table builds to time.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Lookups per timed round.
    #[arg(long, default_value_t = 2_000_000)]
    iterations: u64,
    /// Timed rounds per lookup.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct GatewayReloadArgs {
    #[command(flatten)]
    set: RouteSetArgs,
    /// Config rewrites.
    #[arg(long, default_value_t = 20)]
    reloads: usize,
    /// What each rewrite changes: `weight` (flip one route's split) or `add` (a new
    /// HTTPRoute and hostname).
    #[arg(long, default_value = "weight", value_parser = ["weight", "add"])]
    change: String,
    /// Open-loop load, requests per second in total.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Hostnames the load is spread over (one connection each).
    #[arg(long, default_value_t = 100)]
    hosts: usize,
    /// Load before the first reload.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Pause after each reload took effect.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pause: Duration,
    /// Between polls for the change.
    #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
    #[command(flatten)]
    weir: WeirArgs,
}

#[derive(Debug, Args)]
struct BackendArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Name sent in every response's x-backend header.
    #[arg(long)]
    name: String,
    /// Status of normal answers.
    #[arg(long, default_value_t = 200)]
    status: u16,
    /// Share of requests (0..1) answered with --error-status instead.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Status of error answers.
    #[arg(long, default_value_t = 500)]
    error_status: u16,
    /// Fixed delay before each answer, in milliseconds.
    #[arg(long, default_value_t = 0.0)]
    latency_ms: f64,
    /// Response body size in bytes.
    #[arg(long, default_value_t = 2)]
    body_size: usize,
    /// A whole behaviour as JSON (e.g. '{"latency":{"kind":"logNormal","medianMs":5,"p99Ms":80}}');
    /// replaces the flags above.
    #[arg(long, value_name = "JSON", conflicts_with_all = ["status", "error_rate", "error_status", "latency_ms", "body_size"])]
    behavior: Option<String>,
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// Target, e.g. http://127.0.0.1:8080/path (plain http only).
    #[arg(long)]
    url: String,
    /// Host header (default: the URL's authority).
    #[arg(long)]
    host: Option<String>,
    /// Extra request header, `Name: value`; repeatable.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Concurrent keep-alive connections.
    #[arg(long, short = 'c', default_value_t = 64)]
    connections: usize,
    /// How long to send, e.g. 10s, 500ms, 2m.
    #[arg(long, short = 'd', default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Open loop at this total rate (requests per second); closed loop without it.
    #[arg(long)]
    rate: Option<f64>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.threads {
        if threads == 0 {
            bail!("--threads must be at least 1");
        }
        builder.worker_threads(threads);
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Backend(args) => backend(args).await,
            Command::Load(args) => load(args).await,
            Command::Split(args) => {
                let opts = SplitOptions {
                    connections: args.connections,
                    requests: args.requests,
                    canary_percent: args.canary,
                    weir: args.weir.options(),
                };
                let result = interruptible(split::run(&opts)).await?;
                print(&result, args.weir.json)?;
                passed(result.passed, "split")
            }
            Command::Reload(args) => {
                let opts = ReloadOptions {
                    reloads: args.reloads,
                    connections: args.connections,
                    pause: args.pause,
                    weir: args.weir.options(),
                };
                let result = interruptible(reload::run(&opts)).await?;
                print(&result, args.weir.json)?;
                passed(result.passed, "reload")
            }
            Command::Memory(args) => {
                let opts = MemoryOptions {
                    connections: args.connections,
                    peers: args.peers,
                    weir: args.weir.options(),
                };
                let result = interruptible(memory::run(&opts)).await?;
                print(&result, args.weir.json)
            }
            Command::Micro(args) => {
                let opts = MicroOptions {
                    iterations: args.iterations,
                    per_request_us: args.per_request_us,
                };
                let result = tokio::task::spawn_blocking(move || micro::run(&opts)).await??;
                print(&result, args.json)
            }
            Command::GatewayRoutes(args) => {
                let opts = GatewayRoutesOptions {
                    routes: args.set.routes,
                    wildcards: args.set.wildcards,
                    services: args.set.services,
                    runs: args.runs,
                    iterations: args.iterations,
                    rounds: args.rounds,
                };
                let result = tokio::task::spawn_blocking(move || gateway::run(&opts)).await??;
                print(&result, args.json)
            }
            Command::GatewayReload(args) => {
                let opts = GatewayReloadOptions {
                    routes: args.set.routes,
                    wildcards: args.set.wildcards,
                    services: args.set.services,
                    reloads: args.reloads,
                    change: if args.change == "add" {
                        Change::Add
                    } else {
                        Change::Weight
                    },
                    rate: args.rate,
                    hosts: args.hosts,
                    warmup: args.warmup,
                    pause: args.pause,
                    poll_interval: args.poll_interval,
                    weir: args.weir.options(),
                };
                let result = interruptible(gateway_reload::run(&opts)).await?;
                print(&result, args.weir.json)?;
                passed(result.passed, "gateway-reload")
            }
            Command::Blast(args) => {
                let opts = BlastOptions {
                    rate: args.rate,
                    runs: args.runs,
                    guard: args.guard.guard(),
                    weir: args.weir.options(),
                };
                let result = interruptible(blast::run(&opts)).await?;
                print(&result, args.weir.json)?;
                passed(result.passed, "blast")
            }
            Command::FalseRollbacks(args) => {
                let opts = FalseRollbacksOptions {
                    runs: args.runs,
                    rate: args.rate,
                    error_rate: args.error_rate,
                    guard: args.guard.guard(),
                    weir: args.weir.options(),
                };
                let result = interruptible(false_rollbacks::run(&opts)).await?;
                print(&result, args.weir.json)?;
                passed(result.passed, "false-rollbacks")
            }
            Command::Judge(args) => {
                let opts = JudgeOptions {
                    broken: args.broken,
                    doubled: args.doubled,
                    slower: args.slower,
                    healthy: args.healthy,
                    incident: args.incident,
                    threads: args.parallel,
                };
                let result = tokio::task::spawn_blocking(move || judge::run(&opts)).await??;
                print(&result, args.json)?;
                passed(result.passed, "judge")
            }
            Command::ControlLoop(args) => {
                let opts = ControlLoopOptions {
                    rollouts: args.rollouts,
                    seconds: Duration::from_secs(args.seconds),
                    weir: args.weir.options(),
                };
                let result = interruptible(control_loop::run(&opts)).await?;
                print(&result, args.weir.json)
            }
            Command::Cluster(args) => {
                let opts = ClusterOptions {
                    runs: args.runs,
                    changes: args.changes,
                    bytes_seconds: Duration::from_secs(args.bytes_seconds),
                    rollouts: args.rollouts,
                    cpu_seconds: Duration::from_secs(args.cpu_seconds),
                    phases: Phases::parse(&args.phases)?,
                    etcd: args.etcd,
                    weir: args.weir.options(),
                };
                let result = interruptible(cluster::run(&opts)).await?;
                print(&result, args.weir.json)
            }
        }
    })
}

/// Runs a scenario until it ends or this process gets SIGINT or SIGTERM; then the scenario
/// is dropped, which stops the processes it started.
async fn interruptible<T>(scenario: impl Future<Output = Result<T>>) -> Result<T> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    tokio::select! {
        result = scenario => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        _ = term.recv() => bail!("terminated"),
    }
}

/// Prints a scenario's result, as text or as one JSON object.
fn print<T: std::fmt::Display + serde::Serialize>(result: &T, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(result)?);
    } else {
        println!("{result}");
    }
    Ok(())
}

fn passed(ok: bool, what: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        bail!("{what} failed (see the report above)")
    }
}

async fn backend(args: BackendArgs) -> Result<()> {
    let behavior = match &args.behavior {
        Some(json) => serde_json::from_str(json).context("parsing --behavior")?,
        None => Behavior {
            status: args.status,
            error_rate: args.error_rate,
            error_status: args.error_status,
            latency: Latency::fixed_ms(args.latency_ms),
            body_size: args.body_size,
        },
    };
    behavior.validate().context("invalid behaviour")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let backend = FakeBackend::serve(&args.name, listener, behavior).await;
    println!("backend {} listening on {}", backend.name(), backend.addr());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    backend.shutdown();
    backend.closed().await;
    println!(
        "backend {} answered {} requests",
        backend.name(),
        backend.hits()
    );
    Ok(())
}

async fn load(args: LoadArgs) -> Result<()> {
    let uri: http::Uri = args.url.parse().context("parsing --url")?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => bail!("--url: scheme {other} is not supported, use http"),
        None => bail!("--url must be absolute, e.g. http://127.0.0.1:8080/"),
    }
    let authority = uri.authority().context("--url has no host")?;
    let port = authority.port_u16().unwrap_or(80);
    let addr = tokio::net::lookup_host((authority.host(), port))
        .await
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} resolves to no address"))?;
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
    let headers = args
        .headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                .with_context(|| format!("--header {h:?} is not `Name: value`"))
        })
        .collect::<Result<Vec<_>>>()?;
    let spec = LoadSpec {
        addr,
        host: args.host.unwrap_or_else(|| authority.to_string()),
        path,
        headers,
        connections: args.connections.max(1),
        mode: match args.rate {
            Some(rate) if rate.is_finite() && rate > 0.0 => Mode::Open { rate },
            Some(rate) => bail!("--rate {rate} must be a positive number"),
            None => Mode::Closed,
        },
        duration: args.duration,
        record_sequence: false,
        max_requests: None,
    };
    let stop = CancellationToken::new();
    let on_ctrl_c = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    let report = weir_fixtures::run(spec, stop).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.summary())?);
    } else {
        println!("{report}");
    }
    Ok(())
}
