//! Settings errors that name the file and the field, with a suggestion
//! when an unknown name is close to a known one.

use serde::de::DeserializeOwned;

/// A settings file or environment variable that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {}{message}", field_prefix(.field))]
pub struct SettingsError {
    source_name: String,
    field: String,
    message: String,
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() { String::new() } else { format!("{field}: ") }
}

impl SettingsError {
    /// An error in `source` (a file name, `environment` or `settings`) at `field`.
    pub fn new(source: &str, field: &str, message: impl Into<String>) -> Self {
        Self { source_name: source.to_owned(), field: field.to_owned(), message: message.into() }
    }

    /// The file (or `environment`) the error is in.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// The dotted path of the field, e.g. `redis.socket_timeout`; empty
    /// for errors about the whole file.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A TOML syntax error: the file, line and column, the offending line
/// (with the value masked when its key names a secret or a URL), and a
/// hint when the text is Python rather than TOML.
pub(crate) fn syntax(source: &str, text: &str, error: &toml::de::Error) -> SettingsError {
    let at = error.span().map_or(0, |span| span.start).min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line_number = text[..at].matches('\n').count() + 1;
    let column = text[line_start..at].chars().count() + 1;
    let line = shown_line(&text[line_start..line_end]);
    let reason = error.message().trim_end_matches('\n');
    let mut message = format!("not valid TOML at line {line_number}, column {column}: {reason}: `{line}`");
    if let Some(hint) = python_hint(&text[line_start..line_end]) {
        message.push_str("; ");
        message.push_str(hint);
    }
    SettingsError::new(source, "", message)
}

/// The line as written, unless it may hold a secret: a secret or URL key,
/// an inline table (which may hold either), or anything with `@` or
/// `://` (a URL with credentials, or part of one inside a multi-line
/// string). Then only what comes before the first `=` is shown.
fn shown_line(line: &str) -> String {
    let trimmed = line.trim();
    let risky = trimmed.contains(['{', '@']) || trimmed.contains("://");
    match trimmed.split_once('=') {
        Some((key, _)) if risky || is_secret_key(key) => format!("{} = ***", key.trim()),
        None if risky => "***".to_owned(),
        _ => trimmed.to_owned(),
    }
}

fn is_secret_key(key: &str) -> bool {
    let key = key.trim().trim_matches(['"', '\'']).to_ascii_lowercase();
    crate::secret::names_a_secret(&key) || key.contains("url")
}

/// Python spellings that settings copied from `settings.py` carry.
fn python_hint(line: &str) -> Option<&'static str> {
    let value = line.split_once('=').map_or(line, |(_, value)| value).trim();
    let word = value.trim_end_matches(',');
    if word == "None" {
        Some("`None` is Python: leave the key out to keep its default")
    } else if word == "True" || word == "False" {
        Some("TOML writes booleans in lower case: `true`, `false`")
    } else if value.starts_with('{') && value.contains(':') {
        Some("TOML inline tables use `=`: `{ max_connections = 50 }`, not `{'max_connections': 50}`")
    } else if value.trim_start_matches(['[', ' ']).starts_with('(') {
        Some("TOML has no tuples: write an array, `[\"host\", 26379]`")
    } else {
        None
    }
}

/// Deserializes with the path of the failing field and a "did you mean".
pub(crate) fn deserialize<T: DeserializeOwned>(value: toml::Value, source: &str) -> Result<T, SettingsError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let full = error.into_inner().to_string();
        // The TOML decoder appends "in `section`"; the path says it already.
        let message = full.lines().next().unwrap_or_default();
        let mut message = with_suggestion(message);
        if path.starts_with("backends[") && message.contains("unknown field") && is_top_level(&message) {
            message.push_str(
                "; in TOML a key after a [[backends]] entry belongs to that entry: move top-level keys above the first section",
            );
        }
        SettingsError::new(source, &path, message)
    })
}

/// Adds "did you mean `x`?" to serde's `unknown field`/`unknown variant`
/// messages when one of the expected names is close.
pub(crate) fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `").or_else(|| message.strip_prefix("unknown variant `"))
    else {
        return message.to_owned();
    };
    let Some((unknown, expected)) = rest.split_once('`') else { return message.to_owned() };
    let candidates = expected.split('`').skip(1).step_by(2);
    match closest(unknown, candidates) {
        Some(best) => format!("{message}; did you mean `{best}`?"),
        None => message.to_owned(),
    }
}

/// The candidate nearest to `word` by edit distance, if near enough to be
/// a typo (a third of the word's length, at least 2; 1 for words of up to
/// three letters).
pub(crate) fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let length = word.chars().count();
    let limit = if length <= 3 { 1 } else { (length / 3).max(2) };
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word.to_lowercase(), c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

fn is_top_level(message: &str) -> bool {
    ["multi_backend_strategy", "health_check_interval", "health_check_timeout"]
        .iter()
        .any(|name| message.contains(&format!("`{name}`")))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_known_name() {
        let message = "unknown field `bakend`, expected one of `backend`, `algorithm`, `key_prefix`";
        assert!(with_suggestion(message).ends_with("did you mean `backend`?"));
        let far = "unknown field `zzzzzz`, expected one of `backend`, `algorithm`";
        assert_eq!(with_suggestion(far), far);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
