//! `ratelimit`: the operator's tool for the rate limiter's stores.
//!
//! ```text
//! ratelimit health --config limits.toml [--verbose] [--json]
//! ratelimit peek --key ip:203.0.113.9 [--path /auth/login] --config limits.toml
//! ratelimit check --key h:demo --policy api --rate 100/m [--times N] --config limits.toml
//! ratelimit reset --key u:alice [--path ...] [--policy NAME --rate R] --config limits.toml
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
    /// Show a client's state under a policy without charging it.
    Peek {
        #[command(flatten)]
        args: keys::KeyArgs,
    },
    /// Charge a client `--times` times (one request each) and print how
    /// many were admitted: for trying a limit against the real store.
    Check {
        /// How many requests to make.
        #[arg(long, default_value_t = 1)]
        times: u32,
        #[command(flatten)]
        args: keys::KeyArgs,
    },
    /// Forget a client's state under a policy.
    Reset {
        #[command(flatten)]
        args: keys::KeyArgs,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Health { config, verbose, json } => health::run(&config, verbose, json).await,
        Command::Peek { args } => keys::peek(&args).await,
        Command::Check { times, args } => keys::check(times, &args).await,
        Command::Reset { args } => keys::reset(&args).await,
    }
}
