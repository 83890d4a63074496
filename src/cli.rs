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
}

/// `weir check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A YAML file or a folder of them (read recursively).
    #[arg(short, long)]
    pub config: PathBuf,
    /// Also print notices (skipped kinds, fields without meaning outside Kubernetes).
    #[arg(short, long)]
    pub verbose: bool,
}

/// Where rollout state is kept unless `--state-dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = ".weir-state";

/// Parses `30s`, `5m`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    weir_config::duration::parse_go(s)
}
