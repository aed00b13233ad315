//! `ratelimit peek`, `check` and `reset`: one key's state, for operators.

use std::path::PathBuf;
use std::process::ExitCode;

use ratelimit_core::settings::{StoreRegistry, build_store};
use ratelimit_core::{Algorithm, CheckRequest, Limit, LimitCheck, Rate, Settings, SharedStore, Store};

/// The limit a key is read under.
#[derive(Debug, clap::Args)]
pub(crate) struct LimitArgs {
    /// The settings file (TOML); `RATELIMIT_*` variables override it.
    #[arg(long, short)]
    config: PathBuf,
    /// The key's rate, e.g. `100/m`.
    #[arg(long)]
    rate: Rate,
    /// The key's algorithm; when left out, the settings' default (the
    /// store's own `algorithm`, else the top-level one).
    #[arg(long)]
    algorithm: Option<Algorithm>,
}

async fn open(args: &LimitArgs) -> Result<(SharedStore, Limit), String> {
    let settings = Settings::from_file(&args.config).map_err(|e| e.to_string())?;
    let source = args.config.display().to_string();
    let built = build_store(&settings, &StoreRegistry::new(), &source).await.map_err(|e| e.to_string())?;
    let limit = Limit::new(args.rate, args.algorithm.unwrap_or_else(|| settings.default_algorithm()));
    Ok((built.store, limit))
}

pub(crate) async fn peek(key: &str, args: &LimitArgs) -> ExitCode {
    let (store, limit) = match open(args).await {
        Ok(opened) => opened,
        Err(error) => return fail(&error),
    };
    let checks = [LimitCheck { key, limit: &limit }];
    match store.peek(CheckRequest::new(&checks, 1)).await {
        Ok(decisions) => {
            let d = &decisions[0];
            println!("key: {key}");
            println!("limit: {} ({})", limit.rate(), limit.algorithm());
            println!("next request: {}", if d.allowed { "allowed" } else { "denied" });
            println!("remaining after it: {}", d.remaining);
            println!("full again in: {:.3} s", d.reset_after.as_secs_f64());
            if let Some(retry) = d.retry_after {
                println!("retry after: {:.3} s", retry.as_secs_f64());
            }
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error.to_string()),
    }
}

pub(crate) async fn check(key: &str, times: u32, args: &LimitArgs) -> ExitCode {
    let (store, limit) = match open(args).await {
        Ok(opened) => opened,
        Err(error) => return fail(&error),
    };
    let checks = [LimitCheck { key, limit: &limit }];
    let mut admitted = 0;
    for _ in 0..times {
        match store.check(CheckRequest::new(&checks, 1)).await {
            Ok(decisions) if decisions.all_allowed() => admitted += 1,
            Ok(_) => {}
            Err(error) => return fail(&error.to_string()),
        }
    }
    println!("admitted {admitted} of {times}");
    ExitCode::SUCCESS
}

pub(crate) async fn reset(keys: &[String], args: &LimitArgs) -> ExitCode {
    let (store, limit) = match open(args).await {
        Ok(opened) => opened,
        Err(error) => return fail(&error),
    };
    for key in keys {
        if let Err(error) = store.reset(LimitCheck { key, limit: &limit }).await {
            return fail(&format!("{key}: {error}"));
        }
        println!("reset {key}");
    }
    ExitCode::SUCCESS
}

fn fail(error: &str) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(2)
}
