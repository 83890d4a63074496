//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// weir: an edge proxy that runs Argo Rollouts canaries itself.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, long_about = None)]
pub struct Cli {
    /// Log level: error, warn, info, debug, trace, or a RUST_LOG-style filter
    /// (default: $RUST_LOG, else info).
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// weir's admin API, for the commands that talk to a running weir (before or after
    /// the command name).
    #[arg(long, global = true, default_value = "http://127.0.0.1:9901")]
    pub admin: String,
    /// A file holding the admin token (`spec.admin.tokenFile`), sent with actions; the
    /// environment variable WEIR_ADMIN_TOKEN holds the token itself instead.
    #[arg(long, global = true)]
    pub token_file: Option<std::path::PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy, the control loop and the admin listener.
    Serve(ServeArgs),
    /// Validate a configuration: exit 0 when valid, else print every error and exit 1.
    Check(CheckArgs),
    /// The whole story on this machine: a healthy canary promoted, a broken one reverted.
    Demo(DemoArgs),
    /// Show a rollout (`get rollout NAME [-w]`).
    Get(GetArgs),
    /// One line per rollout (`list rollouts`).
    List(ListArgs),
    /// Wait until a rollout is Healthy (exit 0) or Degraded (exit 1).
    Status(StatusArgs),
    /// Move past the current pause or step; `--full` skips every remaining step.
    Promote(PromoteArgs),
    /// Abort the update in progress: the canary's weight goes to 0.
    Abort(NameArgs),
    /// Start an aborted update again from step 0 (`retry NAME` or `retry rollout NAME`).
    Retry(RetryArgs),
    /// Pause a rollout.
    Pause(NameArgs),
    /// Resume a paused rollout.
    Resume(NameArgs),
    /// Roll back to the previous revision, or to `--to-revision N`.
    Undo(UndoArgs),
}

/// `weir get rollout NAME`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// What to get: `rollout`.
    pub kind: String,
    /// The rollout's name.
    pub name: String,
    /// Keep watching, redrawing on every change.
    #[arg(short, long)]
    pub watch: bool,
}

/// `weir list rollouts`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// What to list: `rollouts`.
    pub kind: String,
}

/// `weir status NAME`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The rollout's name.
    pub name: String,
    /// Give up after this long (exit 1).
    #[arg(short, long, value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
}

/// `weir promote NAME [--full]`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The rollout's name.
    pub name: String,
    /// Skip every remaining step.
    #[arg(long)]
    pub full: bool,
}

/// A command on one rollout.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The rollout's name.
    pub name: String,
}

/// `weir retry [rollout] NAME`.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// `rollout NAME`, or just `NAME`.
    #[arg(num_args = 1..=2, required = true)]
    pub words: Vec<String>,
}

/// `weir undo NAME [--to-revision N]`.
#[derive(Debug, Args)]
pub struct UndoArgs {
    /// The rollout's name.
    pub name: String,
    /// The revision to go back to (default: the previous one).
    #[arg(long)]
    pub to_revision: Option<u64>,
}

/// `weir serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A YAML file or a folder of them (read recursively).
    #[arg(short, long)]
    pub config: PathBuf,
    /// Where rollout state is kept across restarts.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Worker threads (default: the CPUs this process may run on).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Time in-flight requests get to finish after SIGTERM or SIGINT.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: std::time::Duration,
    /// Do not watch the config files (reload on SIGHUP only).
    #[arg(long)]
    pub no_watch: bool,
    /// Turn measurement off (only to measure what it costs; analysis needs it).
    #[arg(long, hide = true)]
    pub no_measure: bool,
    /// This replica's name in a cluster (`spec.cluster`); the host name by default.
    #[arg(long)]
    pub node: Option<String>,
}

/// `weir check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A YAML file or a folder of them (read recursively).
    #[arg(short, long)]
    pub config: PathBuf,
    /// Also print notices (skipped kinds, fields without meaning outside Kubernetes);
    /// warnings (things that will go wrong at run time) are always printed.
    #[arg(short, long)]
    pub verbose: bool,
}

/// Where rollout state is kept unless `--state-dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = ".weir-state";

/// Parses `30s`, `5m`, `1h30m`.
pub fn parse_duration(
    s: &str,
) -> Result<std::time::Duration, weir_config::duration::DurationError> {
    weir_config::duration::parse_go(s)
}

/// `weir demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Port for the app's traffic.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Port for the admin API and the dashboard.
    #[arg(long, default_value_t = 9901)]
    pub admin_port: u16,
    /// Requests per second of the built-in load.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Tell the story once and exit: 0 when it went as expected.
    #[arg(long)]
    pub once: bool,
}
