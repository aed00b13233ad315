//! `ratelimit`: the operator's tool for the rate limiter's stores.
//!
//! ```text
//! ratelimit health --config limits.toml [--verbose] [--json]
//! ratelimit peek KEY --rate 100/m [--algorithm sliding_window] --config limits.toml
//! ratelimit check KEY --rate 100/m [--times N] --config limits.toml
//! ratelimit reset KEY [KEY ...] --rate 100/m [--algorithm ...] --config limits.toml
//! ```

mod health;
mod keys;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Operate the rate limiter's stores.
#[derive(Debug, Parser)]
#[command(name = "ratelimit", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Probe every configured store now. Exit code 0: all healthy;
    /// 1: degraded (a multi-store still has a healthy store); 2: no store
    /// can serve, or the settings are invalid.
    Health {
        /// The settings file (TOML); `RATELIMIT_*` variables override it.
        #[arg(long, short)]
        config: PathBuf,
        /// Add each store's details (Cluster nodes, pool usage, key counts).
        #[arg(long, short)]
        verbose: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show a key's state without charging it.
    Peek {
        /// The full store key, as logged, e.g. `ratelimit:api:fixed_window:{203.0.113.9}`.
        key: String,
        #[command(flatten)]
        limit: keys::LimitArgs,
    },
    /// Charge a key `--times` times (one request each) and print how many
    /// were admitted: for trying a limit against the real store.
    Check {
        /// The full store key.
        key: String,
        /// How many requests to make.
        #[arg(long, default_value_t = 1)]
        times: u32,
        #[command(flatten)]
        limit: keys::LimitArgs,
    },
    /// Forget the state of one or more keys.
    Reset {
        /// Full store keys.
        #[arg(required = true)]
        keys: Vec<String>,
        #[command(flatten)]
        limit: keys::LimitArgs,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Health { config, verbose, json } => health::run(&config, verbose, json).await,
        Command::Peek { key, limit } => keys::peek(&key, &limit).await,
        Command::Check { key, times, limit } => keys::check(&key, times, &limit).await,
        Command::Reset { keys, limit } => keys::reset(&keys, &limit).await,
    }
}
