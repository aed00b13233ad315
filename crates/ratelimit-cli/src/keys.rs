//! `ratelimit peek`, `check` and `reset`: one client's state under one
//! policy, for operators. The client and the policy are given as a user
//! knows them (`--key ip:203.0.113.9`, and a request path under the
//! settings' `[middleware]` rules or a policy built in code), and the
//! store keys are computed by the layer's own code, so they are the keys
//! the layer writes.

use std::path::PathBuf;
use std::process::ExitCode;

use ratelimit_core::settings::{StoreRegistry, build_store};
use ratelimit_core::{Algorithm, CheckRequest, Limit, LimitCheck, Rate, Settings, SharedStore, Store};
use tower_ratelimit_smart::RateLimitConfig;

/// Whose state, under which policy.
#[derive(Debug, clap::Args)]
pub(crate) struct KeyArgs {
    /// The settings file (TOML); `RATELIMIT_*` variables override it.
    #[arg(long, short)]
    config: PathBuf,
    /// The client as the keys write it: `ip:203.0.113.9` (an IPv6 address
    /// is grouped as the policy groups it), `h:<header value>`,
    /// `u:<user id>`, `global`.
    #[arg(long)]
    key: String,
    /// The request path whose `[middleware]` rule applies.
    #[arg(long, default_value = "/")]
    path: String,
    /// A policy built in code rather than the settings' rules: its name
    /// (as given to `.policy(...)`); needs `--rate`.
    #[arg(long, requires = "rate")]
    policy: Option<String>,
    /// The rates of a policy built in code, e.g. `--rate 10/s --rate 1000/h`.
    #[arg(long)]
    rate: Vec<Rate>,
    /// The algorithm of a policy built in code; the settings' default when
    /// left out.
    #[arg(long)]
    algorithm: Option<Algorithm>,
}

/// The store and the (key, limit) pairs `args` name.
async fn open(args: &KeyArgs) -> Result<(SharedStore, Vec<(String, Limit)>), String> {
    let settings = Settings::from_file(&args.config).map_err(|e| e.to_string())?;
    let source = args.config.display().to_string();
    let built = build_store(&settings, &StoreRegistry::new(), &source).await.map_err(|e| e.to_string())?;
    let config = if args.rate.is_empty() {
        RateLimitConfig::from_settings(&settings, &built.store).map_err(|e| e.to_string())?
    } else {
        let mut builder = RateLimitConfig::builder()
            .algorithm(args.algorithm.unwrap_or(settings.default_algorithm()))
            .key_prefix(settings.default_key_prefix())
            .store(built.store.clone());
        if let Some(policy) = &args.policy {
            builder = builder.policy(policy);
        }
        for rate in &args.rate {
            builder = builder.rate(*rate);
        }
        builder.build().map_err(|e| e.to_string())?
    };
    let keys = config
        .store_keys(&args.path, &args.key)
        .ok_or_else(|| format!("no rule checks the path {:?}: it is skipped or no rule covers it", args.path))?;
    Ok((built.store, keys))
}

fn checks(keys: &[(String, Limit)]) -> Vec<LimitCheck<'_>> {
    keys.iter().map(|(key, limit)| LimitCheck { key, limit }).collect()
}

pub(crate) async fn peek(args: &KeyArgs) -> ExitCode {
    let (store, keys) = match open(args).await {
        Ok(opened) => opened,
        Err(error) => return fail(&error),
    };
    match store.peek(CheckRequest::new(&checks(&keys), 1)).await {
        Ok(decisions) => {
            println!("next request: {}", if decisions.all_allowed() { "allowed" } else { "denied" });
            for ((key, limit), d) in keys.iter().zip(decisions.as_slice()) {
                println!("key: {key}");
                println!("  limit: {} ({})", limit.rate(), limit.algorithm());
                println!("  remaining after it: {}", d.remaining);
                println!("  full again in: {:.3} s", d.reset_after.as_secs_f64());
                if let Some(retry) = d.retry_after {
                    println!("  retry after: {:.3} s", retry.as_secs_f64());
                }
            }
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error.to_string()),
    }
}

pub(crate) async fn check(times: u32, args: &KeyArgs) -> ExitCode {
    let (store, keys) = match open(args).await {
        Ok(opened) => opened,
        Err(error) => return fail(&error),
    };
    let checks = checks(&keys);
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

pub(crate) async fn reset(args: &KeyArgs) -> ExitCode {
    let (store, keys) = match open(args).await {
        Ok(opened) => opened,
        Err(error) => return fail(&error),
    };
    for (key, limit) in &keys {
        if let Err(error) = store.reset(LimitCheck { key, limit }).await {
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
