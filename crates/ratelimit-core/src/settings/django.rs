//! Settings ported from django-smart-ratelimit, read as they are written
//! there where that is unambiguous: its nested Redis options
//! (`connection_pool_kwargs`, `sentinel_kwargs`, `socket_keepalive_options`)
//! are moved to our flat fields, its Python-only options are refused with
//! the reason they are not needed, and its `RATELIMIT_*` and flattened
//! names (`RATELIMIT_BACKEND`, `[RATELIMIT_REDIS]`,
//! `database_cleanup_threshold`) are refused with the name to write here.
//!
//! This runs on the raw TOML table, before it is read into [`Settings`],
//! so the typed settings have one spelling of each field.
//!
//! [`Settings`]: super::Settings

use super::SettingsError;
use super::env::{SECTIONS, TOP_LEVEL};

/// Rewrites django-smart-ratelimit's forms in `table` into ours, or
/// refuses them with an error that says what to write.
pub(super) fn adapt(table: &mut toml::Table, source: &str) -> Result<(), SettingsError> {
    for key in table.keys() {
        if let Some(ours) = our_name(key) {
            return Err(SettingsError::new(
                source,
                key,
                format!("django-smart-ratelimit's name; did you mean {ours}?"),
            ));
        }
    }
    class_path(table.get("backend"), source, "backend")?;
    if let Some(toml::Value::Array(backends)) = table.get("backends") {
        for (i, entry) in backends.iter().enumerate() {
            class_path(entry.get("backend"), source, &format!("backends[{i}].backend"))?;
        }
    }
    if let Some(toml::Value::Table(redis)) = table.get_mut("redis") {
        adapt_redis(redis, source, "redis")?;
    }
    if let Some(toml::Value::Array(backends)) = table.get_mut("backends") {
        for (i, entry) in backends.iter_mut().enumerate() {
            let toml::Value::Table(entry) = entry else { continue };
            if entry.get("backend").and_then(toml::Value::as_str) != Some("redis") {
                continue;
            }
            if let Some(toml::Value::Table(config)) = entry.get_mut("config") {
                adapt_redis(config, source, &format!("backends[{i}].config"))?;
            }
        }
    }
    Ok(())
}

/// Refuses django-smart-ratelimit's dotted class paths for a backend,
/// naming the store to write instead.
fn class_path(backend: Option<&toml::Value>, source: &str, field: &str) -> Result<(), SettingsError> {
    let Some(path) = backend.and_then(toml::Value::as_str) else { return Ok(()) };
    if !path.starts_with("django_smart_ratelimit.") {
        return Ok(());
    }
    let lower = path.to_ascii_lowercase();
    let ours = ["redis", "database", "memory", "multi", "mongodb"].into_iter().find(|name| lower.contains(name));
    let hint = match ours {
        Some("mongodb") => "this library has no MongoDB store yet".to_owned(),
        Some(name) => format!("did you mean `{name}`?"),
        None => "use memory, redis, database, multi or a store registered in code".to_owned(),
    };
    Err(SettingsError::new(source, field, format!("django-smart-ratelimit's class path; {hint}")))
}

/// Our spelling of a top-level key written django-smart-ratelimit's way:
/// `RATELIMIT_BACKEND` → `backend`, `RATELIMIT_REDIS` → `[redis]`,
/// `database_cleanup_threshold` → `cleanup_threshold` in `[database]`.
fn our_name(key: &str) -> Option<String> {
    let lower = key.to_ascii_lowercase();
    let prefixed = lower.strip_prefix("ratelimit_");
    let rest = prefixed.unwrap_or(&lower);
    if prefixed.is_some() {
        if rest == "backends" {
            return Some("`[[backends]]`".to_owned());
        }
        if SECTIONS.contains(&rest) {
            return Some(format!("`[{rest}]`"));
        }
        if TOP_LEVEL.contains(&rest) {
            return Some(format!("`{rest}`"));
        }
    }
    let (section, field) = SECTIONS.iter().find_map(|s| Some((*s, rest.strip_prefix(s)?.strip_prefix('_')?)))?;
    if field.is_empty() {
        return None;
    }
    Some(format!("`{field}` in `[{section}]`"))
}

/// Moves django-smart-ratelimit's nested Redis options to our fields.
fn adapt_redis(redis: &mut toml::Table, source: &str, path: &str) -> Result<(), SettingsError> {
    for (option, why) in [
        ("decode_responses", "not needed: the store reads Redis's replies itself, so there is nothing to decode"),
        (
            "skip_full_coverage_check",
            "not needed: the Cluster client never runs the CONFIG check this option skips, so it works on managed Redis as it is",
        ),
    ] {
        if redis.contains_key(option) {
            return Err(SettingsError::new(source, &format!("{path}.{option}"), why));
        }
    }
    if let Some(options) = redis.remove("socket_keepalive_options") {
        let empty = matches!(&options, toml::Value::Table(t) if t.is_empty());
        if !empty {
            return Err(SettingsError::new(
                source,
                &format!("{path}.socket_keepalive_options"),
                "not supported: keepalive probes use the system's timers; set socket_keepalive = true or false",
            ));
        }
    }
    for (nested, moves) in [
        (
            "connection_pool_kwargs",
            &[("max_connections", "max_connections"), ("retry_on_timeout", "retry_on_timeout")][..],
        ),
        ("sentinel_kwargs", &[("password", "sentinel_password")][..]),
    ] {
        let Some(value) = redis.remove(nested) else { continue };
        let toml::Value::Table(options) = value else {
            return Err(SettingsError::new(source, &format!("{path}.{nested}"), "must be a table"));
        };
        for (name, value) in options {
            let field = format!("{path}.{nested}.{name}");
            let Some(&(_, ours)) = moves.iter().find(|(theirs, _)| *theirs == name) else {
                let known: Vec<&str> = moves.iter().map(|(theirs, _)| *theirs).collect();
                return Err(SettingsError::new(
                    source,
                    &field,
                    format!("not supported here; {nested} may hold {}", known.join(", ")),
                ));
            };
            match redis.get(ours) {
                Some(flat) if *flat != value => {
                    return Err(SettingsError::new(
                        source,
                        &field,
                        format!("disagrees with {path}.{ours}; write it once, as {ours}"),
                    ));
                }
                _ => {
                    redis.insert(ours.to_owned(), value);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn django_names_point_to_ours() {
        for (theirs, ours) in [
            ("RATELIMIT_BACKEND", "`backend`"),
            ("RATELIMIT_REDIS", "`[redis]`"),
            ("RATELIMIT_BACKENDS", "`[[backends]]`"),
            ("database_cleanup_threshold", "`cleanup_threshold` in `[database]`"),
            ("RATELIMIT_MEMORY_MAX_KEYS", "`max_keys` in `[memory]`"),
        ] {
            assert_eq!(our_name(theirs).as_deref(), Some(ours), "{theirs}");
        }
        for ours in ["backend", "redis", "backends", "key_prefix", "health_check_interval"] {
            assert_eq!(our_name(ours), None, "{ours}");
        }
    }
}
