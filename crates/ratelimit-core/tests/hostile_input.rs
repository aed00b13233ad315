//! Property tests over arbitrary input to what users and operators write:
//! rate strings, algorithm names, settings files, values of every setting
//! and `RATELIMIT_*` variables. Each is parsed or refused with an error
//! that says where; none panics. (Store replies are covered beside the
//! stores' parsers, in `redis` and `sql::decide`.)

#![cfg(all(feature = "redis", feature = "sql"))]

use std::str::FromStr;
use std::time::Duration;

use proptest::prelude::*;
use ratelimit_core::settings::{StoreRegistry, build_store};
use ratelimit_core::{Algorithm, MAX_LIMIT, MAX_PERIOD, Rate, Settings};

/// Text that looks like a rate often enough to reach the parser's deeper
/// branches, and arbitrary text besides.
fn rate_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ 0-9]{0,12}[/ ]{0,2}[0-9]{0,6}[a-zA-Z]{0,8}[ ]{0,2}",
        "[0-9]{1,25}/[0-9]{0,25}(s|m|h|d|ms|sec|second|minute|hour|day)?",
    ]
}

/// Every field of the settings file, as a dotted path.
const FIELDS: &[&str] = &[
    "backend",
    "algorithm",
    "key_prefix",
    "failure_mode",
    "multi_backend_strategy",
    "health_check_interval",
    "health_check_timeout",
    "memory.max_keys",
    "memory.cleanup_interval",
    "redis.url",
    "redis.host",
    "redis.port",
    "redis.db",
    "redis.username",
    "redis.password",
    "redis.socket_timeout",
    "redis.socket_connect_timeout",
    "redis.socket_keepalive",
    "redis.max_connections",
    "redis.retry_on_timeout",
    "redis.key_prefix",
    "redis.algorithm",
    "redis.startup_nodes",
    "redis.sentinels",
    "redis.service_name",
    "redis.sentinel_password",
    "redis.tls_ca_cert",
    "database.url",
    "database.max_connections",
    "database.connect_timeout",
    "database.timeout",
    "database.table_prefix",
    "database.migrate",
    "database.cleanup_threshold",
    "database.cleanup_batch_size",
    "database.durability",
    "circuit_breaker.failure_threshold",
    "circuit_breaker.recovery_timeout",
    "circuit_breaker.backoff_multiplier",
    "circuit_breaker.max_recovery_timeout",
    "middleware.default_rate",
    "middleware.key",
    "middleware.block",
    "middleware.skip_paths",
    "middleware.trusted_proxies",
    "middleware.rate_limits",
    "no_such_field",
];

/// Any TOML value, nested a little.
fn toml_value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        any::<String>().prop_map(toml::Value::String),
        rate_text().prop_map(toml::Value::String),
        any::<i64>().prop_map(toml::Value::Integer),
        prop_oneof![any::<f64>(), -1e20f64..1e20].prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::vec(("[a-z_/]{1,12}", inner), 0..4)
                .prop_map(|pairs| toml::Value::Table(pairs.into_iter().collect())),
        ]
    })
}

fn with_field(path: &str, value: toml::Value) -> String {
    let mut table = toml::Table::new();
    match path.split_once('.') {
        Some((section, field)) => {
            let mut inner = toml::Table::new();
            inner.insert(field.to_owned(), value);
            table.insert(section.to_owned(), toml::Value::Table(inner));
        }
        None => {
            table.insert(path.to_owned(), value);
        }
    }
    toml::to_string(&table).expect("any table serialises")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    /// A rate is parsed within its bounds, and prints as text that parses
    /// back to the same rate, or it is refused; no text panics.
    #[test]
    fn any_rate_text_parses_within_bounds_or_is_refused(text in rate_text()) {
        match Rate::from_str(&text) {
            Ok(rate) => {
                prop_assert!((1..=MAX_LIMIT).contains(&rate.limit()), "{}", rate);
                prop_assert!(rate.period() > Duration::ZERO && rate.period() <= MAX_PERIOD, "{}", rate);
                prop_assert_eq!(Rate::from_str(&rate.to_string()).ok(), Some(rate));
            }
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }

    #[test]
    fn any_algorithm_name_parses_or_is_refused(text in any::<String>()) {
        if let Ok(algorithm) = Algorithm::from_str(&text) {
            prop_assert_eq!(Algorithm::from_str(algorithm.as_str()).ok(), Some(algorithm));
        }
    }

    /// Arbitrary text as a settings file: read or refused with the file's
    /// name in the error.
    #[test]
    fn any_settings_text_is_read_or_refused(
        text in prop_oneof![
            any::<String>(),
            // Lines that are TOML often enough to reach the settings' own checks.
            prop::collection::vec(
                prop_oneof![
                    "\\[(redis|database|memory|middleware|circuit_breaker|[a-z]{1,8})\\]",
                    "[a-z_]{1,22} = (\"[ -~]{0,12}\"|-?[0-9]{1,12}|[0-9]{1,6}\\.[0-9]{1,3}|true|false|\\[\\])",
                ],
                0..10,
            )
            .prop_map(|lines| lines.join("\n")),
        ],
    ) {
        if let Err(error) = Settings::from_toml(&text, "limits.toml", []) {
            prop_assert!(error.to_string().starts_with("limits.toml: "), "{}", error);
        }
    }

    /// Any value in any field: read, or refused by an error that names
    /// the field (or its section).
    #[test]
    fn any_value_of_any_setting_is_read_or_refused_by_name(
        field in prop::sample::select(FIELDS),
        value in toml_value(),
    ) {
        let text = with_field(field, value);
        let section = field.split('.').next().unwrap_or(field);
        match Settings::from_toml(&text, "limits.toml", []) {
            Err(error) => {
                let message = error.to_string();
                prop_assert!(
                    error.field().starts_with(section) || message.contains(section),
                    "{field}: {message}\n{text}"
                );
            }
            Ok(settings) => {
                // The stores' own checks, which run when they are built.
                if let Err(error) = settings.redis.validate() {
                    prop_assert!(error.to_string().starts_with("redis."), "{}", error);
                }
                if let Err(error) = settings.database.validate() {
                    prop_assert!(error.to_string().starts_with("database."), "{}", error);
                }
                if settings.backend == "memory" {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    let built = runtime.block_on(build_store(&settings, &StoreRegistry::new(), "limits.toml"));
                    if let Err(error) = built {
                        prop_assert!(error.field().starts_with(section), "{field}: {error}\n{text}");
                    }
                }
            }
        }
    }

    /// Any `RATELIMIT_*` variable with any value: read or refused by name.
    #[test]
    fn any_environment_value_is_read_or_refused_by_name(
        field in prop::sample::select(FIELDS),
        value in prop_oneof![any::<String>(), rate_text(), "[0-9.eE+-]{1,12}", "\\[.{0,12}\\]"],
    ) {
        let name = format!("RATELIMIT_{}", field.replace('.', "_").to_ascii_uppercase());
        if let Err(error) = Settings::from_toml("", "environment", [(name.clone(), value)]) {
            let section = field.split('.').next().unwrap_or(field);
            let message = error.to_string();
            prop_assert!(
                error.field().starts_with(section) || message.contains(&name) || message.contains(section),
                "{name}: {message}"
            );
        }
    }
}
