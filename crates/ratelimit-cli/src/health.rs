//! `ratelimit health`: live probes of every configured store.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use ratelimit_core::settings::{BuiltStore, StoreRegistry, build_store};
use ratelimit_core::store::Store;
use ratelimit_core::store::multi::Strategy;
use ratelimit_core::{Settings, StoreError};
use serde::Serialize;

/// The JSON report; `docs/health.md` documents it.
#[derive(Debug, Serialize)]
struct Report {
    healthy: bool,
    status: Status,
    backend: String,
    strategy: Option<String>,
    stores: Vec<StoreReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    /// No store is down, but one is still making its connection.
    Connecting,
    Degraded,
    Down,
}

impl Status {
    fn exit_code(self) -> ExitCode {
        match self {
            Status::Ok => ExitCode::from(0),
            Status::Connecting | Status::Degraded => ExitCode::from(1),
            Status::Down => ExitCode::from(2),
        }
    }
}

#[derive(Debug, Serialize)]
struct StoreReport {
    name: String,
    kind: String,
    healthy: bool,
    /// `up`, `connecting` or `down`.
    state: &'static str,
    latency_ms: Option<f64>,
    circuit: Option<String>,
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<serde_json::Map<String, serde_json::Value>>,
}

pub(crate) async fn run(config: &Path, verbose: bool, json: bool) -> ExitCode {
    let report = match load(config).await {
        Ok((settings, built)) => probe(&settings, &built, verbose).await,
        Err(error) => Report {
            healthy: false,
            status: Status::Down,
            backend: String::new(),
            strategy: None,
            stores: Vec::new(),
            error: Some(error),
        },
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        print_text(&report);
    }
    report.status.exit_code()
}

async fn load(config: &Path) -> Result<(Settings, BuiltStore), String> {
    let settings = Settings::from_file(config).map_err(|e| e.to_string())?;
    let source = config.display().to_string();
    let built = build_store(&settings, &StoreRegistry::new(), &source).await.map_err(|e| e.to_string())?;
    Ok((settings, built))
}

async fn probe(settings: &Settings, built: &BuiltStore, verbose: bool) -> Report {
    let probe_timeout = settings.health_check_timeout.max(Duration::from_millis(100));
    let mut stores = Vec::new();
    for member in &built.members {
        // The store started connecting when it was built, a moment ago: the
        // probe waits for that attempt as a request would, then probes.
        let timeout = probe_timeout + member.connect_timeout.unwrap_or_default();
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(timeout, member.store.health()).await;
        let latency = started.elapsed();
        let mut report = StoreReport {
            name: member.name.clone(),
            kind: member.kind.clone(),
            healthy: false,
            state: "down",
            latency_ms: None,
            circuit: None,
            error: None,
            details: None,
        };
        match outcome {
            Ok(Ok(health)) => {
                report.healthy = true;
                report.state = "up";
                report.latency_ms = Some((health.latency.as_secs_f64() * 1e6).round() / 1e3);
                report.circuit = health.details.iter().find(|(k, _)| k == "circuit").map(|(_, v)| v.clone());
                if verbose {
                    report.details = Some(
                        health.details.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect(),
                    );
                }
            }
            Ok(Err(error)) => {
                if matches!(error, StoreError::Connecting { .. }) {
                    report.state = "connecting";
                }
                report.latency_ms = Some((latency.as_secs_f64() * 1e6).round() / 1e3);
                report.error = Some(error.to_string());
            }
            Err(_) => report.error = Some(format!("no answer within {timeout:?}")),
        }
        stores.push(report);
    }
    let up = stores.iter().filter(|s| s.healthy).count();
    let connecting = stores.iter().filter(|s| s.state == "connecting").count();
    let status = match (up, built.strategy) {
        (n, _) if n == stores.len() => Status::Ok,
        (n, _) if n + connecting == stores.len() => Status::Connecting,
        (0, _) => Status::Down,
        (_, Some(_)) => Status::Degraded,
        (_, None) => Status::Down,
    };
    Report {
        healthy: status == Status::Ok,
        status,
        backend: settings.backend.clone(),
        strategy: built.strategy.map(|s| {
            match s {
                Strategy::FirstHealthy => "first_healthy",
                Strategy::RoundRobin => "round_robin",
            }
            .to_owned()
        }),
        stores,
        error: None,
    }
}

fn print_text(report: &Report) {
    let status = match report.status {
        Status::Ok => "ok",
        Status::Connecting => "connecting",
        Status::Degraded => "degraded",
        Status::Down => "down",
    };
    match &report.strategy {
        Some(strategy) => println!("status: {status} (backend {}, strategy {strategy})", report.backend),
        None if report.backend.is_empty() => println!("status: {status}"),
        None => println!("status: {status} (backend {})", report.backend),
    }
    if let Some(error) = &report.error {
        println!("error: {error}");
    }
    for store in &report.stores {
        let health = match store.state {
            "up" => "healthy",
            "connecting" => "connecting",
            _ => "UNHEALTHY",
        };
        let latency = store.latency_ms.map(|ms| format!("{ms:.3} ms")).unwrap_or_else(|| "-".into());
        let circuit = store.circuit.as_deref().unwrap_or("-");
        println!("  {:<16} {:<10} {:<10} latency {latency:<12} circuit {circuit}", store.name, store.kind, health);
        if let Some(error) = &store.error {
            println!("    error: {error}");
        }
        for (key, value) in store.details.iter().flatten() {
            println!("    {key}: {}", value.as_str().unwrap_or_default());
        }
    }
}
