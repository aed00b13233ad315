//! One decision over an open transaction, the same on every engine.
//!
//! The engine locks the counter rows of the request's keys (creating the
//! missing ones), so concurrent decisions on one key queue on its row lock
//! and never read-then-write the same state. The algorithms are the shared
//! pure functions; only the state's storage differs per engine.

use std::future::Future;

use smallvec::SmallVec;

use super::state;
use crate::algorithm::sliding_log::SlidingLog;
use crate::algorithm::{fixed_window, sliding_counter, token_bucket};
use crate::clock::UnixNanos;
use crate::store::CheckRequest;
use crate::{Algorithm, Decision, Decisions, Limit};

/// A counter row as read under the lock. The fixed window keeps its count
/// in `count` and its window end in `expires_at`; the token bucket its
/// theoretical arrival time in `expires_at`: both fit plain integer
/// columns, which lets one upsert statement decide them
/// ([`single_statement`]). The sliding counter keeps its state as text in
/// `data`.
#[derive(Clone, Debug, Default)]
pub(super) struct Row {
    pub(super) data: String,
    pub(super) count: i64,
    pub(super) expires_at: i64,
}

/// Rounds of "create the missing rows, lock them" before a decision gives
/// up; each round is lost only to a reset or cleanup deleting a row between
/// the two statements, so this is never reached in practice.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(super) const MAX_LOCK_TRIES: u32 = 5;

/// The error of a decision whose rows were deleted under it every round:
/// it fails rather than decide without the rows' state and time.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(super) fn rows_kept_vanishing() -> sqlx::Error {
    sqlx::Error::Protocol("the counter rows were deleted between creating and locking them".to_owned())
}

/// What a decision needs from one engine's open transaction.
pub(super) trait Txn: Send {
    /// Reads the counter rows of `keys` (sorted, distinct) in that order,
    /// `None` where missing, and the database's clock. With `exclusive`,
    /// the rows are locked until commit, created first where missing.
    fn rows(
        &mut self,
        keys: &[&str],
        exclusive: bool,
    ) -> impl Future<Output = Result<(Vec<Option<Row>>, UnixNanos), sqlx::Error>> + Send;
    /// The sliding-log entries (time, cost) of `key` admitted after `after`, oldest first.
    fn entries(&mut self, key: &str, after: i64) -> impl Future<Output = Result<Vec<(i64, i64)>, sqlx::Error>> + Send;
    /// Writes a counter row.
    fn put(
        &mut self,
        key: &str,
        data: &str,
        count: i64,
        expires_at: i64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// Deletes the sliding-log entries of `key` admitted at or before `upto`.
    fn prune(&mut self, key: &str, upto: i64) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// Appends a sliding-log entry.
    fn append(
        &mut self,
        key: &str,
        at: i64,
        cost: i64,
        expires_at: i64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

/// The state of one limit as read, ready for its algorithm.
enum Current {
    Window(Option<fixed_window::WindowState>),
    Counter(Option<sliding_counter::CounterState>),
    Bucket(Option<token_bucket::BucketState>),
    Log(SlidingLog),
}

/// Decides `request` inside `txn` and, when `charge` and every limit admits
/// it, writes the new state. `keys[i]` is the stored key of limit `i`.
/// Returns the decisions and the number of rows written.
pub(super) async fn decide<T: Txn>(
    txn: &mut T,
    request: &CheckRequest<'_>,
    keys: &[&str],
    charge: bool,
) -> Result<(Decisions, u64), sqlx::Error> {
    let mut locked: SmallVec<[&str; 2]> = keys.iter().copied().collect();
    // One lock order for every decision, so multi-limit checks never wait
    // on each other in a cycle.
    locked.sort_unstable();
    locked.dedup();
    let (rows, db_now) = txn.rows(&locked, charge).await?;
    let now = request.at.unwrap_or(db_now);
    let mut currents: SmallVec<[Current; 2]> = SmallVec::new();
    for (check, key) in request.limits.iter().zip(keys) {
        let row = locked.binary_search(key).ok().and_then(|i| rows[i].as_ref());
        // An expired row that cleanup has not reached yet counts as absent.
        let live = row.filter(|r| nanos(r.expires_at) > now);
        let current = match check.limit.algorithm() {
            Algorithm::FixedWindow => Current::Window(
                live.map(|r| fixed_window::WindowState { end: nanos(r.expires_at), count: nanos(r.count) }),
            ),
            Algorithm::SlidingWindowCounter => Current::Counter(live.and_then(|r| state::counter(&r.data))),
            Algorithm::TokenBucket => {
                Current::Bucket(live.map(|r| token_bucket::BucketState { tat: nanos(r.expires_at) }))
            }
            Algorithm::SlidingLog => {
                let period = check.limit.period_nanos();
                let after = signed(now.saturating_sub(period));
                let entries = txn.entries(key, after).await?;
                Current::Log(SlidingLog::from_entries(
                    entries.into_iter().map(|(at, cost)| (nanos(at), nanos(cost))),
                    period,
                ))
            }
        };
        currents.push(current);
    }
    let mut decisions = Decisions::new();
    for (check, current) in request.limits.iter().zip(&mut currents) {
        decisions.push(evaluate(current, now, check.limit, request.cost));
    }
    if !decisions.all_allowed() {
        // Nothing is charged: limits that would have admitted the request
        // report themselves as they stand.
        for (i, (check, current)) in request.limits.iter().zip(&mut currents).enumerate() {
            if let Some(decision) = decisions.get_mut(i).filter(|d| d.allowed) {
                *decision = evaluate(current, now, check.limit, 0);
            }
        }
    }
    let mut written = 0;
    if charge && request.cost > 0 && decisions.all_allowed() {
        for ((check, key), current) in request.limits.iter().zip(keys).zip(currents) {
            written += write(txn, key, check.limit, current, now, request.cost).await?;
        }
    }
    Ok((decisions, written))
}

fn evaluate(current: &mut Current, now: UnixNanos, limit: &Limit, cost: u64) -> Decision {
    match current {
        Current::Window(s) => fixed_window::decide(*s, now, limit, cost).0,
        Current::Counter(s) => sliding_counter::decide(*s, now, limit, cost).0,
        Current::Bucket(s) => token_bucket::decide(*s, now, limit, cost).0,
        Current::Log(log) => log.decide(now, limit, cost, false),
    }
}

/// Writes the charged state of one limit; returns the rows written.
async fn write<T: Txn>(
    txn: &mut T,
    key: &str,
    limit: &Limit,
    current: Current,
    now: UnixNanos,
    cost: u64,
) -> Result<u64, sqlx::Error> {
    let period = limit.period_nanos();
    match current {
        Current::Window(s) => {
            let next = fixed_window::decide(s, now, limit, cost).1;
            txn.put(key, "", signed(next.count), signed(next.expires_at())).await?;
        }
        Current::Counter(s) => {
            let next = sliding_counter::decide(s, now, limit, cost).1;
            txn.put(key, &state::counter_text(&next), 0, signed(next.expires_at(period))).await?;
        }
        Current::Bucket(s) => {
            let next = token_bucket::decide(s, now, limit, cost).1;
            txn.put(key, "", 0, signed(next.expires_at())).await?;
        }
        Current::Log(mut log) => {
            log.decide(now, limit, cost, true);
            let Some((at, cost)) = log.newest() else { return Ok(0) };
            let expires_at = signed(log.expires_at());
            txn.prune(key, signed(now.saturating_sub(period))).await?;
            txn.append(key, signed(at), signed(cost), expires_at).await?;
            // The counter row is the key's lock; it lives as long as the log.
            txn.put(key, "", 0, expires_at).await?;
            return Ok(2);
        }
    }
    Ok(1)
}

/// The cases one upsert statement decides: a single fixed-window or
/// token-bucket limit, charged, with a cost it can ever grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SingleStatement {
    Window,
    Bucket,
}

/// Whether `request` is one of the [`SingleStatement`] cases.
pub(super) fn single_statement(request: &CheckRequest<'_>, charge: bool) -> Option<SingleStatement> {
    let [check] = request.limits else { return None };
    let cost = request.cost;
    if !charge || cost == 0 || cost > check.limit.capacity() {
        return None;
    }
    match check.limit.algorithm() {
        Algorithm::FixedWindow => Some(SingleStatement::Window),
        Algorithm::TokenBucket => Some(SingleStatement::Bucket),
        _ => None,
    }
}

/// The numbers the single-statement upserts bind: for the window the
/// period, for the bucket the emission interval, and the capacity (in
/// units for the window, in nanoseconds of tolerance for the bucket).
pub(super) fn single_statement_params(kind: SingleStatement, limit: &Limit) -> (i64, i64) {
    match kind {
        SingleStatement::Window => (signed(limit.period_nanos()), signed(limit.capacity())),
        SingleStatement::Bucket => {
            let interval = token_bucket::emission_interval(limit);
            (signed(interval), signed(interval.saturating_mul(limit.capacity())))
        }
    }
}

/// The decision of an admitted single-statement upsert, from the row it
/// wrote and the time it used.
pub(super) fn single_statement_decision(
    kind: SingleStatement,
    limit: &Limit,
    count: i64,
    expires_at: i64,
    now: UnixNanos,
) -> Decision {
    let capacity = limit.capacity();
    let until = nanos(expires_at).saturating_sub(now);
    match kind {
        SingleStatement::Window => Decision::admitted(capacity, capacity.saturating_sub(nanos(count)), until),
        SingleStatement::Bucket => {
            let interval = token_bucket::emission_interval(limit);
            let tolerance = interval.saturating_mul(capacity);
            Decision::admitted(capacity, tolerance.saturating_sub(until) / interval, until)
        }
    }
}

/// Database integers are signed; times until 2262 and costs up to the
/// rate bound fit.
pub(super) fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn nanos(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// What the database answers is read defensively: rows and log entries
/// with any values (corrupt, from an older schema, or written by hand)
/// give a decision per limit within its bounds, never a panic.
#[cfg(test)]
mod hostile_replies {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::store::LimitCheck;
    use crate::{Algorithm, Rate};

    /// A transaction that answers whatever the test gives it.
    struct Replies {
        rows: Vec<Option<Row>>,
        now: UnixNanos,
        entries: Vec<(i64, i64)>,
    }

    impl Txn for Replies {
        async fn rows(&mut self, keys: &[&str], _: bool) -> Result<(Vec<Option<Row>>, UnixNanos), sqlx::Error> {
            Ok((self.rows.iter().cycle().take(keys.len()).cloned().collect(), self.now))
        }
        async fn entries(&mut self, _: &str, _: i64) -> Result<Vec<(i64, i64)>, sqlx::Error> {
            Ok(self.entries.clone())
        }
        async fn put(&mut self, _: &str, _: &str, _: i64, _: i64) -> Result<(), sqlx::Error> {
            Ok(())
        }
        async fn prune(&mut self, _: &str, _: i64) -> Result<(), sqlx::Error> {
            Ok(())
        }
        async fn append(&mut self, _: &str, _: i64, _: i64, _: i64) -> Result<(), sqlx::Error> {
            Ok(())
        }
    }

    fn row() -> impl Strategy<Value = Option<Row>> {
        let data = prop_oneof![any::<String>(), "[0-9]{1,20}:[0-9]{1,20}:[0-9]{1,20}"];
        prop::option::of((data, any::<i64>(), any::<i64>()).prop_map(|(data, count, expires_at)| Row {
            data,
            count,
            expires_at,
        }))
    }

    fn algorithm() -> impl Strategy<Value = Algorithm> {
        prop_oneof![
            Just(Algorithm::FixedWindow),
            Just(Algorithm::SlidingLog),
            Just(Algorithm::SlidingWindowCounter),
            Just(Algorithm::TokenBucket),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn any_stored_state_gives_a_bounded_decision(
            rows in prop::collection::vec(row(), 1..3),
            entries in prop::collection::vec((any::<i64>(), any::<i64>()), 0..40),
            now in any::<u64>(),
            algorithms in prop::collection::vec(algorithm(), 1..3),
            limit in 1u64..=1_000,
            period in 1u64..=86_400,
            cost in 0u64..=2_000,
            charge in any::<bool>(),
        ) {
            let limits: Vec<Limit> = algorithms
                .iter()
                .map(|&a| Limit::new(Rate::new(limit, Duration::from_secs(period)).unwrap(), a))
                .collect();
            let keys: Vec<String> = (0..limits.len()).map(|i| format!("k{i}")).collect();
            let checks: Vec<LimitCheck<'_>> =
                limits.iter().zip(&keys).map(|(limit, key)| LimitCheck { key, limit }).collect();
            let request = CheckRequest::new(&checks, cost);
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let mut txn = Replies { rows, now, entries };
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (decisions, _) = runtime.block_on(decide(&mut txn, &request, &keys, charge)).unwrap();
            prop_assert_eq!(decisions.len(), limits.len());
            for (decision, limit) in decisions.as_slice().iter().zip(&limits) {
                prop_assert_eq!(decision.limit, limit.capacity());
                prop_assert!(decision.remaining <= decision.limit, "{:?}", decision);
            }
        }

        #[test]
        fn any_counter_text_reads_as_a_state_or_as_absent(
            text in prop_oneof![any::<String>(), "[0-9]{1,21}:[0-9]{1,21}:[0-9]{1,21}", "[0-9:+-]{0,30}"],
        ) {
            if let Some(state) = state::counter(&text) {
                prop_assert_eq!(state::counter(&state::counter_text(&state)), Some(state));
            }
        }

        #[test]
        fn any_upsert_row_gives_a_bounded_decision(
            bucket in any::<bool>(),
            count in any::<i64>(),
            expires_at in any::<i64>(),
            now in any::<u64>(),
            limit in 1u64..=1_000_000,
        ) {
            let algorithm = if bucket { Algorithm::TokenBucket } else { Algorithm::FixedWindow };
            let limit = Limit::new(Rate::per_minute(limit).unwrap(), algorithm);
            let kind = if bucket { SingleStatement::Bucket } else { SingleStatement::Window };
            let decision = single_statement_decision(kind, &limit, count, expires_at, now);
            prop_assert!(decision.remaining <= decision.limit, "{:?}", decision);
        }
    }
}
