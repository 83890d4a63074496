//! The `weir` binary: parse the command line, set up logging, then hand over to the
//! library. Exit codes: 0 ok, 1 start-up failure (or `check` found errors), 64 invalid
//! configuration at `serve`.

use std::process::ExitCode;

use clap::Parser;
use weir::app::{App, ServeOptions};
use weir::cli::{CheckArgs, Cli, Command, LogFormat, ServeArgs};

const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level.as_deref(), cli.log_format);
    match cli.command {
        Command::Check(args) => check(&args),
        Command::Serve(args) => serve(args),
    }
}

fn init_logging(level: Option<&str>, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).unwrap_or_else(|_| EnvFilter::new("info")),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
                if args.verbose {
                    println!("notice: {n}");
                }
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

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn serve(args: ServeArgs) -> ExitCode {
    let model = match weir_config::load(&args.config) {
        Ok(m) => m,
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
        tracing::info!("{n}");
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
    };
    runtime.block_on(async move {
        let app = match App::start(model, &opts).await {
            Ok(app) => app,
            Err(e) => {
                eprintln!("weir did not start: {e}");
                return ExitCode::from(1);
            }
        };
        for (name, addr) in &app.listeners {
            tracing::info!(listener = %name, "serving on {addr}");
        }
        tracing::info!("admin API on http://{}", app.admin);
        wait_for_signal(&app).await;
        tracing::info!("shutting down: no new connections; finishing requests in flight");
        if app.shutdown().await {
            tracing::info!("stopped");
        }
        ExitCode::SUCCESS
    })
}

/// Returns on SIGINT or SIGTERM; SIGHUP reloads the configuration.
async fn wait_for_signal(app: &App) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
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
