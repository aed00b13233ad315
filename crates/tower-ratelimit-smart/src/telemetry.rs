//! Metrics counters and their labels, built once per policy.

use metrics::{Key, Label, Level, Metadata};

use crate::config::Mode;

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Counter names, each labelled with `policy`.
pub const ALLOWED: &str = "ratelimit_allowed_total";
/// Requests over the limit, labelled with the layer's `mode` (`enforce`
/// answered 429; `shadow` and `annotate` let them through).
pub const LIMITED: &str = "ratelimit_limited_total";
/// Checks the store could not answer.
pub const ERRORS: &str = "ratelimit_store_errors_total";

#[derive(Clone, Copy)]
pub(crate) enum Outcome {
    Allowed,
    Limited(Mode),
    StoreError,
}

/// Pre-built metric keys, so recording a decision allocates nothing.
pub(crate) struct Telemetry {
    allowed: Key,
    limited: [Key; 3],
    errors: Key,
}

impl Telemetry {
    pub(crate) fn new(policy: &str) -> Self {
        let label = || Label::new("policy", policy.to_owned());
        Self {
            allowed: Key::from_parts(ALLOWED, vec![label()]),
            limited: ["enforce", "shadow", "annotate"]
                .map(|mode| Key::from_parts(LIMITED, vec![label(), Label::from_static_parts("mode", mode)])),
            errors: Key::from_parts(ERRORS, vec![label()]),
        }
    }

    pub(crate) fn record(&self, outcome: Outcome) {
        let key = match outcome {
            Outcome::Allowed => &self.allowed,
            Outcome::Limited(Mode::Shadow) => &self.limited[1],
            Outcome::Limited(Mode::Annotate) => &self.limited[2],
            Outcome::Limited(_) => &self.limited[0],
            Outcome::StoreError => &self.errors,
        };
        metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA).increment(1));
    }
}
