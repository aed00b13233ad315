//! `RATELIMIT_*` environment overrides: `RATELIMIT_<FIELD>` for top-level
//! fields (`RATELIMIT_BACKEND`, `RATELIMIT_KEY_PREFIX`, ...) and
//! `RATELIMIT_<SECTION>_<FIELD>` for the sections (`RATELIMIT_REDIS_URL`,
//! `RATELIMIT_DATABASE_URL`, `RATELIMIT_CIRCUIT_BREAKER_FAILURE_THRESHOLD`).
//!
//! Values are read as TOML values (`6379`, `true`, `["/health"]`), and as
//! plain strings when they are not TOML or the field holds text. Variables
//! that name no known field or section are left alone: they may belong to
//! the application.

use super::SettingsError;

pub(super) const SECTIONS: [&str; 5] = ["circuit_breaker", "middleware", "database", "memory", "redis"];
pub(super) const TOP_LEVEL: [&str; 7] = [
    "backend",
    "algorithm",
    "key_prefix",
    "failure_mode",
    "multi_backend_strategy",
    "health_check_interval",
    "health_check_timeout",
];
/// Fields that hold text even when the value looks like a number.
const TEXT_FIELDS: [&str; 16] = [
    "url",
    "host",
    "username",
    "password",
    "sentinel_password",
    "service_name",
    "key_prefix",
    "table_prefix",
    "backend",
    "algorithm",
    "failure_mode",
    "multi_backend_strategy",
    "durability",
    "default_rate",
    "key",
    "tls_ca_cert",
];

/// Which variable set which field (`database.cleanup_threshold` ←
/// `RATELIMIT_DATABASE_CLEANUP_THRESHOLD`), so that an error in a value
/// from the environment names the variable, not the file.
#[derive(Debug, Default)]
pub(super) struct Origins(Vec<(String, String)>);

impl Origins {
    /// `error` blamed on the variable that set its field, if one did.
    pub(super) fn blame(&self, error: SettingsError) -> SettingsError {
        let field = error.field();
        let set_by = self.0.iter().find(|(path, _)| {
            field == path || field.strip_prefix(path.as_str()).is_some_and(|rest| rest.starts_with(['.', '[']))
        });
        match set_by {
            Some((_, variable)) => {
                SettingsError::new(&format!("environment variable {variable}"), field, error.message())
            }
            None => error,
        }
    }
}

/// Applies the overrides among `env` to `table`.
pub(super) fn apply(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    source: &str,
) -> Result<Origins, SettingsError> {
    let mut origins = Origins::default();
    let mut overrides: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with("RATELIMIT_")).collect();
    // A stable order, so a file plus the same environment always gives the same result.
    overrides.sort();
    for (name, raw) in overrides {
        let rest = name["RATELIMIT_".len()..].to_ascii_lowercase();
        let (section, field) = match SECTIONS.iter().find(|s| rest.starts_with(&format!("{s}_"))) {
            Some(section) => (Some(*section), rest[section.len() + 1..].to_owned()),
            None if TOP_LEVEL.contains(&rest.as_str()) => (None, rest),
            None => continue,
        };
        let value = parse(&field, &raw);
        let target = match section {
            Some(section) => {
                let entry = table.entry(section).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                match entry {
                    toml::Value::Table(inner) => inner,
                    _ => {
                        return Err(SettingsError::new(
                            source,
                            section,
                            format!("must be a table to take {name} from the environment"),
                        ));
                    }
                }
            }
            None => &mut *table,
        };
        let path = match section {
            Some(section) => format!("{section}.{field}"),
            None => field.clone(),
        };
        origins.0.push((path, name));
        target.insert(field, value);
    }
    Ok(origins)
}

fn parse(field: &str, raw: &str) -> toml::Value {
    if TEXT_FIELDS.contains(&field) {
        return toml::Value::String(raw.to_owned());
    }
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut parsed) => parsed.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

/// The `RATELIMIT_*` variables of this process. Other variables are never
/// read, so one that is not UTF-8 cannot stop the settings from loading; a
/// `RATELIMIT_*` one that is not UTF-8 is an error that names it.
pub(super) fn process_vars(source: &str) -> Result<Vec<(String, String)>, SettingsError> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        if !name.as_encoded_bytes().starts_with(b"RATELIMIT_") {
            continue;
        }
        let shown = name.to_string_lossy().into_owned();
        let name = name.into_string().map_err(|_| {
            SettingsError::new(source, &shown, "the environment variable's name is not valid UTF-8".to_owned())
        })?;
        let value = value.into_string().map_err(|_| {
            SettingsError::new(source, &name, format!("the environment variable {name} is not valid UTF-8"))
        })?;
        vars.push((name, value));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn sections_and_top_level_fields_are_overridden() {
        let mut table: toml::Table = toml::from_str("backend = \"memory\"\n[redis]\nport = 1").unwrap();
        let vars = env(&[
            ("RATELIMIT_BACKEND", "redis"),
            ("RATELIMIT_REDIS_PORT", "6380"),
            ("RATELIMIT_REDIS_PASSWORD", "12345"),
            ("RATELIMIT_CIRCUIT_BREAKER_FAILURE_THRESHOLD", "3"),
            ("RATELIMIT_APP_SECRET", "not ours"),
            ("PATH", "/bin"),
        ]);
        apply(&mut table, vars, "test").unwrap();
        assert_eq!(table["backend"].as_str(), Some("redis"));
        assert_eq!(table["redis"]["port"].as_integer(), Some(6380));
        assert_eq!(table["redis"]["password"].as_str(), Some("12345"));
        assert_eq!(table["circuit_breaker"]["failure_threshold"].as_integer(), Some(3));
        assert!(!table.contains_key("app_secret"));
    }
}
