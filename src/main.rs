//! The `weir` binary: parse the command line, set up logging, then hand over to the
//! library. Exit codes: 0 ok, 1 start-up failure (or `check` found errors), 64 invalid
//! configuration at `serve`.

use std::process::ExitCode;

use clap::Parser;
use weir::app::{App, ServeOptions};
use weir::cli::{CheckArgs, Cli, Command, LogFormat, ServeArgs};
use weir::client::{AdminClient, render_list, render_rollout};
use weir_control::state::RolloutPhase;

const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    // First, while the process has one thread: it edits the environment.
    let inherited = weir::sockets::inherit_from_env();
    let cli = Cli::parse();
    // The demo narrates on stdout; its logs only say what goes wrong.
    let level = match (&cli.log_level, &cli.command) {
        (None, Command::Demo(_)) if std::env::var_os("RUST_LOG").is_none() => Some("warn"),
        (l, _) => l.as_deref(),
    };
    init_logging(level, cli.log_format);
    for addr in inherited {
        tracing::info!("inherited a listening socket on {addr}");
    }
    match cli.command {
        Command::Check(args) => check(&args),
        Command::Serve(args) => serve(args),
        Command::Demo(args) => demo(args),
        other => match admin_token(cli.token_file.as_deref()) {
            Ok(token) => remote(other, &cli.admin, token),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
    }
}

/// The admin token for actions: the file given, else `WEIR_ADMIN_TOKEN`.
fn admin_token(file: Option<&std::path::Path>) -> Result<Option<String>, String> {
    if let Some(f) = file {
        let t = std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read the token file {}: {e}", f.display()))?;
        return Ok(Some(t.trim().to_owned()));
    }
    Ok(std::env::var("WEIR_ADMIN_TOKEN")
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty()))
}

/// Commands that talk to a running weir.
fn remote(cmd: Command, admin: &str, token: Option<String>) -> ExitCode {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("cannot start the runtime");
        return ExitCode::from(1);
    };
    rt.block_on(async move {
        let result: anyhow::Result<ExitCode> = async {
            match cmd {
                Command::Get(a) => {
                    if a.kind != "rollout" && a.kind != "rollouts" && a.kind != "ro" {
                        anyhow::bail!("weir get {}: only `get rollout NAME` is known", a.kind);
                    }
                    let c = AdminClient::new(admin, token.clone());
                    if !a.watch {
                        print!("{}", render_rollout(&c.get(&a.name).await?));
                        return Ok(ExitCode::SUCCESS);
                    }
                    let mut last = String::new();
                    loop {
                        let text = render_rollout(&c.get(&a.name).await?);
                        if text != last {
                            // Clear the screen and draw again, as kubectl's watch does.
                            print!("\x1b[2J\x1b[H{text}");
                            last = text;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                }
                Command::List(a) => {
                    if a.kind != "rollouts" && a.kind != "rollout" && a.kind != "ro" {
                        anyhow::bail!("weir list {}: only `list rollouts` is known", a.kind);
                    }
                    print!(
                        "{}",
                        render_list(&AdminClient::new(admin, token.clone()).list().await?)
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Command::Status(a) => {
                    let c = AdminClient::new(admin, token.clone());
                    let deadline = a.timeout.map(|t| tokio::time::Instant::now() + t);
                    let mut last = String::new();
                    loop {
                        let v = c.get(&a.name).await?;
                        let phase = v.phase.map_or("", RolloutPhase::as_str);
                        let line = if v.message.is_empty() {
                            phase.to_owned()
                        } else {
                            format!("{phase} - {}", v.message)
                        };
                        if line != last {
                            println!("{line}");
                            last = line;
                        }
                        match v.phase {
                            Some(RolloutPhase::Healthy) => return Ok(ExitCode::SUCCESS),
                            Some(RolloutPhase::Degraded) => return Ok(ExitCode::from(1)),
                            _ => {}
                        }
                        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                            eprintln!("timed out: rollout {:?} is {phase}, not Healthy", a.name);
                            return Ok(ExitCode::from(1));
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                }
                Command::Promote(a) => {
                    let c = AdminClient::new(admin, token.clone());
                    c.act(
                        &a.name,
                        if a.full {
                            "promote?full=true"
                        } else {
                            "promote"
                        },
                    )
                    .await?;
                    println!(
                        "rollout '{}' {}",
                        a.name,
                        if a.full { "fully promoted" } else { "promoted" }
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Command::Abort(a) => {
                    Ok(simple(admin, token.clone(), &a.name, "abort", "aborted").await?)
                }
                Command::Pause(a) => {
                    Ok(simple(admin, token.clone(), &a.name, "pause", "paused").await?)
                }
                Command::Resume(a) => {
                    Ok(simple(admin, token.clone(), &a.name, "resume", "resumed").await?)
                }
                Command::Retry(a) => {
                    let name = match a.words.as_slice() {
                        [n] => n.clone(),
                        [kind, n] if kind == "rollout" || kind == "ro" => n.clone(),
                        _ => anyhow::bail!("usage: weir retry [rollout] NAME"),
                    };
                    Ok(simple(admin, token.clone(), &name, "retry", "retried").await?)
                }
                Command::Undo(a) => {
                    let action = match a.to_revision {
                        Some(n) => format!("undo?toRevision={n}"),
                        None => "undo".into(),
                    };
                    let c = AdminClient::new(admin, token.clone());
                    c.act(&a.name, &action).await?;
                    println!("rollout '{}' undo", a.name);
                    Ok(ExitCode::SUCCESS)
                }
                Command::Check(_) | Command::Serve(_) | Command::Demo(_) => {
                    unreachable!("handled above")
                }
            }
        }
        .await;
        match result {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        }
    })
}

async fn simple(
    admin: &str,
    token: Option<String>,
    name: &str,
    action: &str,
    done: &str,
) -> Result<ExitCode, weir::client::ClientError> {
    AdminClient::new(admin, token).act(name, action).await?;
    println!("rollout '{name}' {done}");
    Ok(ExitCode::SUCCESS)
}

fn init_logging(level: Option<&str>, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).unwrap_or_else(|_| EnvFilter::new("info")),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn check(args: &CheckArgs) -> ExitCode {
    match weir_config::load(&args.config) {
        Ok(model) => {
            for n in &model.notices {
                if n.warning {
                    println!("warning: {n}");
                } else if args.verbose {
                    println!("notice: {n}");
                }
            }
            if args.verbose {
                print_gateway_status(&model);
            }
            println!(
                "{}: valid ({} route{}, {} service{})",
                args.config.display(),
                model.proxy.routes.len(),
                plural(model.proxy.routes.len()),
                model.services.len(),
                plural(model.services.len()),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

/// Each Gateway API object's conditions, as a Kubernetes controller would write them:
/// the object's, then each listener's (with its attached routes) or each parent's.
fn print_gateway_status(model: &weir_config::Model) {
    for s in &model.gateway_status {
        println!("{} {}/{}:", s.kind, s.namespace, s.name);
        for c in &s.conditions {
            println!("  {c}");
        }
        for sec in &s.sections {
            let what = match sec.attached_routes {
                Some(n) => format!(
                    "listener {} ({n} route{} attached)",
                    sec.name,
                    plural(n as usize)
                ),
                None => format!("parent {}", sec.name),
            };
            println!("  {what}:");
            for c in &sec.conditions {
                println!("    {c}");
            }
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn serve(args: ServeArgs) -> ExitCode {
    let model = match weir_config::load(&args.config) {
        Ok(m) => m,
        Err(e @ weir_config::ConfigError::Io { .. }) => {
            eprintln!("weir did not start: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "weir did not start: fix the configuration and run `weir check -c {}`",
                args.config.display()
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for n in &model.notices {
        if n.warning {
            tracing::warn!("{n}");
        } else {
            tracing::info!("{n}");
        }
    }
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!("cannot raise the open-files limit: {e}");
    }
    // One worker: a current-thread runtime, which skips the work-stealing machinery.
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let runtime = match builder.thread_name("weir-worker").enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = ServeOptions {
        config: args.config,
        state_dir: args.state_dir,
        workers,
        measure: !args.no_measure,
        shutdown_grace: args.shutdown_grace,
        watch: !args.no_watch,
        node: args.node.unwrap_or_else(weir::app::host_name),
    };
    runtime.block_on(async move {
        // The handlers go in before anything is served: a SIGTERM that comes as soon as
        // the listeners answer must drain, not kill (its default action).
        let signals = Signals::install();
        let app = match App::start(model, &opts).await {
            Ok(app) => app,
            Err(e) => {
                eprintln!("weir did not start: {e}");
                return ExitCode::from(1);
            }
        };
        for (name, addr) in &app.listeners() {
            tracing::info!(listener = %name, "serving on {addr}");
        }
        tracing::info!("admin API on http://{}", app.admin());
        if !app.admin().ip().is_loopback() && app.model.borrow().proxy.admin_token.is_none() {
            tracing::warn!(
                "the admin API listens on {} beyond this machine without spec.admin.tokenFile: its state and metrics are open to the network, and changes are taken from loopback clients only",
                app.admin()
            );
        }
        wait_for_signal(&app, signals).await;
        tracing::info!("shutting down: no new connections; finishing requests in flight");
        if app.shutdown().await {
            tracing::info!("stopped");
        }
        ExitCode::SUCCESS
    })
}

/// SIGTERM, SIGINT and SIGHUP, caught from the moment they are installed.
struct Signals(
    Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
);

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(t), Ok(i), Ok(h)) => Signals(Some((t, i, h))),
            _ => Signals(None),
        }
    }
}

/// Returns on SIGINT or SIGTERM; SIGHUP reloads the configuration.
async fn wait_for_signal(app: &App, signals: Signals) {
    let Some((mut term, mut int, mut hup)) = signals.0 else {
        tracing::error!("cannot install signal handlers; stopping");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                app.reload.notify_one();
            }
        }
    }
}

fn demo(args: weir::cli::DemoArgs) -> ExitCode {
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        eprintln!("cannot start the runtime");
        return ExitCode::from(1);
    };
    let opts = weir::demo::DemoOptions {
        port: args.port,
        admin_port: args.admin_port,
        rate: args.rate,
        once: args.once,
    };
    match rt.block_on(weir::demo::run_demo(opts)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("the demo did not go as expected");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("weir demo: {e}");
            ExitCode::from(1)
        }
    }
}
