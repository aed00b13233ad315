//! The Redis store: standalone, Cluster and Sentinel.
//!
//! Every decision, with all the limits of one request, is one `EVALSHA` of
//! one Lua script (`decide.lua`), which reads the server's `TIME`, runs the
//! algorithm and writes the new state only when every limit admits the
//! request. Requests travel over multiplexed connections: each carries any
//! number of concurrent requests pipelined, so a few connections serve a
//! busy process without a pool's checkout and hand-back on every decision.

mod connection;
mod settings;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::Script;

use self::connection::Backend;
pub use self::connection::CredentialsRefused;
pub use self::settings::{Deployment, NodeAddr, RedisSettings, RedisSettingsError};
use crate::store::{CheckRequest, Health, LimitCheck, Store};
use crate::{Algorithm, Decision, Decisions, StoreError};

const SCRIPT: &str = include_str!("decide.lua");
const STORE: &str = "redis";

/// A rate-limit store in Redis. Clones share the connections.
///
/// ```no_run
/// use ratelimit_core::redis::{RedisSettings, RedisStore};
/// # async fn run() -> Result<(), ratelimit_core::StoreError> {
/// let store = RedisStore::connect(RedisSettings::from_url("redis://127.0.0.1:6379")).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    script: Script,
    settings: RedisSettings,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("deployment", &self.inner.settings.deployment()).finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Validates the settings and connects.
    pub async fn connect(settings: RedisSettings) -> Result<Self, StoreError> {
        settings.validate()?;
        let backend = Backend::connect(&settings).await?;
        let script = Script::new(SCRIPT);
        // Loaded now (on every primary of a Cluster), so the first burst of
        // decisions does not each meet NOSCRIPT and send the whole script.
        let load = ::redis::cmd("SCRIPT").arg("LOAD").arg(SCRIPT).clone();
        match backend.query::<::redis::Value>(&load, settings.socket_connect_timeout.max(settings.socket_timeout)).await
        {
            // A server whose ACL refuses SCRIPT LOAD still runs the script
            // (EVALSHA falls back to EVAL), so only a failure to answer is
            // a failed connection.
            Err(StoreError::Backend { source, .. })
                if source
                    .downcast_ref::<::redis::RedisError>()
                    .is_some_and(|e| matches!(e.kind(), ::redis::ErrorKind::Server(_))) => {}
            other => drop(other?),
        }
        Ok(Self { inner: Arc::new(Inner { backend, script, settings }) })
    }

    /// The settings in use.
    pub fn settings(&self) -> &RedisSettings {
        &self.inner.settings
    }

    /// Runs any command over the store's connections, with its timeout:
    /// for diagnostics and for comparing against raw commands.
    pub async fn query<T: ::redis::FromRedisValue>(&self, cmd: &::redis::Cmd) -> Result<T, StoreError> {
        self.inner.backend.query(cmd, self.inner.settings.socket_timeout).await
    }

    /// The SHA-1 the script is invoked by.
    pub fn script_hash(&self) -> &str {
        self.inner.script.get_hash()
    }

    async fn decide(&self, request: CheckRequest<'_>, charge: bool) -> Result<Decisions, StoreError> {
        request.validate()?;
        let inner = &self.inner;
        let mut invocation = inner.script.prepare_invoke();
        for check in request.limits {
            invocation.key(self.full_key(check.key).as_ref());
        }
        match request.at {
            Some(at) => invocation.arg(at / 1_000),
            None => invocation.arg(""),
        };
        invocation.arg(request.cost).arg(if charge { "1" } else { "0" });
        for check in request.limits {
            let limit = check.limit;
            invocation
                .arg(code(limit.algorithm()))
                .arg(limit.rate().limit())
                .arg(limit.period_nanos() / 1_000)
                .arg(limit.capacity());
        }
        // A decision is sent again only when the first try is known not to
        // have run: a script whose reply was merely late may have charged,
        // and a second run would charge twice.
        let mut redirects = 0;
        let mut refused_retry = inner.settings.retry_on_timeout;
        let values: Vec<i64> = loop {
            let outcome = inner.backend.invoke(&invocation, inner.settings.socket_timeout).await;
            match outcome.as_ref().err().and_then(never_ran) {
                Some(NeverRan::Redirected) if redirects < MAX_REDIRECTS => {
                    redirects += 1;
                    // The client refreshes its slot map in the background.
                    tokio::time::sleep(REDIRECT_PAUSE).await;
                }
                Some(NeverRan::Refused) if refused_retry => refused_retry = false,
                _ => break outcome?,
            }
        };
        parse(&values, request.limits)
    }

    /// The key in Redis: borrowed as it is when the store adds no prefix
    /// (always, for a store built from settings).
    fn full_key<'k>(&self, key: &'k str) -> std::borrow::Cow<'k, str> {
        let prefix = &self.inner.settings.key_prefix;
        if prefix.is_empty() {
            return std::borrow::Cow::Borrowed(key);
        }
        std::borrow::Cow::Owned(format!("{prefix}{key}"))
    }
}

fn code(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::FixedWindow => "fw",
        Algorithm::SlidingLog => "sw",
        Algorithm::SlidingWindowCounter => "swc",
        Algorithm::TokenBucket => "tb",
    }
}

/// Redirections of one decision followed before giving up: a Cluster
/// whose slots are moving answers `MOVED` or `TRYAGAIN` for a moment.
const MAX_REDIRECTS: u32 = 2;
const REDIRECT_PAUSE: Duration = Duration::from_millis(10);

/// Failures after which the script is known not to have run.
enum NeverRan {
    /// The connection was refused: nothing was sent.
    Refused,
    /// A Cluster node answered that another node owns the key, or that
    /// the cluster cannot serve it now: the script was not run.
    Redirected,
}

fn never_ran(error: &StoreError) -> Option<NeverRan> {
    use ::redis::{ErrorKind, ServerErrorKind};
    let StoreError::Backend { source, .. } = error else { return None };
    let error = source.downcast_ref::<::redis::RedisError>()?;
    if error.is_connection_refusal() {
        return Some(NeverRan::Refused);
    }
    match error.kind() {
        ErrorKind::ClusterConnectionNotFound => Some(NeverRan::Refused),
        ErrorKind::Server(
            ServerErrorKind::Moved
            | ServerErrorKind::Ask
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::BusyLoading,
        ) => Some(NeverRan::Redirected),
        _ => None,
    }
}

fn micros(value: i64) -> Duration {
    Duration::from_micros(u64::try_from(value).unwrap_or(0))
}

fn parse(values: &[i64], limits: &[LimitCheck<'_>]) -> Result<Decisions, StoreError> {
    if values.len() != limits.len() * 4 {
        return Err(StoreError::backend(
            STORE,
            format!("the script answered {} values for {} limits", values.len(), limits.len()),
        ));
    }
    let mut decisions = Decisions::new();
    for (chunk, check) in values.chunks_exact(4).zip(limits) {
        let retry_after = match chunk[3] {
            -2 | -1 => None,
            wait => Some(micros(wait)),
        };
        decisions.push(Decision {
            allowed: chunk[0] == 1,
            limit: check.limit.capacity(),
            // Clamped: a reply is outside input, whatever the script meant.
            remaining: u64::try_from(chunk[1]).unwrap_or(0).min(check.limit.capacity()),
            reset_after: micros(chunk[2]),
            retry_after,
        });
    }
    Ok(decisions)
}

impl Store for RedisStore {
    async fn check<'a>(&'a self, request: CheckRequest<'a>) -> Result<Decisions, StoreError> {
        self.decide(request, true).await
    }

    async fn peek<'a>(&'a self, request: CheckRequest<'a>) -> Result<Decisions, StoreError> {
        self.decide(request, false).await
    }

    async fn reset<'a>(&'a self, limit: LimitCheck<'a>) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(self.full_key(limit.key).as_ref());
        self.inner.backend.query::<i64>(&cmd, self.inner.settings.socket_timeout).await.map(drop)
    }

    async fn health(&self) -> Result<Health, StoreError> {
        let started = Instant::now();
        let ping = ::redis::cmd("PING");
        let timeout = self.inner.settings.socket_timeout;
        let pong: String = match self.inner.backend.query(&ping, timeout).await {
            Ok(pong) => pong,
            // A connection that broke while the server was away fails its
            // first command and is replaced in the background: replace
            // every one and ask once more, so a server that is back
            // reports healthy now rather than one health interval later.
            Err(StoreError::Backend { .. }) => {
                self.inner.backend.revive(timeout).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                self.inner.backend.query(&ping, timeout).await?
            }
            Err(error) => return Err(error),
        };
        let latency = started.elapsed();
        let mut details = vec![
            ("deployment".to_owned(), format!("{:?}", self.inner.settings.deployment()).to_lowercase()),
            ("ping".to_owned(), pong),
        ];
        details.extend(self.inner.backend.details(self.inner.settings.socket_timeout).await);
        Ok(Health { store: STORE, latency, details })
    }
}

/// Replies are read defensively: any value Redis (or something speaking
/// its protocol) sends back is a decision per limit within its bounds, or
/// an error; never a panic.
#[cfg(test)]
mod hostile_replies {
    use std::time::Duration;

    use ::redis::Value;
    use proptest::prelude::*;

    use super::*;
    use crate::{Limit, Rate};

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<i64>().prop_map(Value::Int),
            prop::collection::vec(any::<u8>(), 0..24).prop_map(Value::BulkString),
            "[-0-9]{0,20}".prop_map(|s| Value::BulkString(s.into_bytes())),
            any::<String>().prop_map(Value::SimpleString),
            any::<f64>().prop_map(Value::Double),
            any::<bool>().prop_map(Value::Boolean),
        ];
        leaf.prop_recursive(3, 24, 8, |inner| prop::collection::vec(inner, 0..10).prop_map(Value::Array))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3_000))]

        #[test]
        fn any_reply_is_a_bounded_decision_or_an_error(reply in value(), limits in 1usize..4) {
            let limit = Limit::new(Rate::new(10, Duration::from_secs(60)).unwrap(), Algorithm::FixedWindow);
            let checks: Vec<LimitCheck<'_>> = (0..limits).map(|_| LimitCheck { key: "k", limit: &limit }).collect();
            // The conversion the store's script invocation makes, then its parse.
            let Ok(values) = ::redis::from_redis_value::<Vec<i64>>(reply) else { return Ok(()) };
            match parse(&values, &checks) {
                Ok(decisions) => {
                    prop_assert_eq!(values.len(), limits * 4);
                    prop_assert_eq!(decisions.len(), limits);
                    for decision in &decisions {
                        prop_assert!(decision.remaining <= decision.limit, "{:?}", decision);
                    }
                }
                Err(error) => prop_assert!(error.to_string().contains("values for"), "{}", error),
            }
        }

        #[test]
        fn any_numbers_parse_by_count(
            values in prop_oneof![
                prop::collection::vec(any::<i64>(), 0..20),
                // Replies of the right length, so the parse's bounds are reached.
                (1usize..4).prop_flat_map(|n| prop::collection::vec(any::<i64>(), n * 4)),
            ],
            limits in 1usize..4,
        ) {
            let limit = Limit::new(Rate::new(10, Duration::from_secs(60)).unwrap(), Algorithm::TokenBucket);
            let checks: Vec<LimitCheck<'_>> = (0..limits).map(|_| LimitCheck { key: "k", limit: &limit }).collect();
            let parsed = parse(&values, &checks);
            prop_assert_eq!(parsed.is_ok(), values.len() == limits * 4);
            for decision in parsed.iter().flatten() {
                prop_assert!(decision.remaining <= decision.limit, "{:?}", decision);
            }
        }
    }
}
