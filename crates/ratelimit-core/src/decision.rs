//! The answer to a check.

use std::time::Duration;

/// What a store decided for one limit.
///
/// Being limited is a normal value (`allowed == false`), never an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed; if so its cost has been charged.
    pub allowed: bool,
    /// The limit's capacity (units per period, or the bucket size).
    pub limit: u64,
    /// Units still available right after this decision.
    pub remaining: u64,
    /// Time until the key is back to full capacity (or its window ends).
    pub reset_after: Duration,
    /// For a denied request: the time after which the same request would
    /// pass. `None` when allowed, and also when the cost exceeds the
    /// capacity so that it can never pass (see [`Decision::can_never_succeed`]).
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// True when the request was denied because its cost is larger than the
    /// limit's whole capacity: waiting will not help.
    pub fn can_never_succeed(&self) -> bool {
        !self.allowed && self.retry_after.is_none()
    }

    pub(crate) fn admitted(limit: u64, remaining: u64, reset_after: u64) -> Self {
        Self { allowed: true, limit, remaining, reset_after: Duration::from_nanos(reset_after), retry_after: None }
    }

    pub(crate) fn denied(limit: u64, remaining: u64, reset_after: u64, retry_after: Option<u64>) -> Self {
        Self {
            allowed: false,
            limit,
            remaining,
            reset_after: Duration::from_nanos(reset_after),
            retry_after: retry_after.map(Duration::from_nanos),
        }
    }
}

/// The decisions for every limit of one check, in the order the limits were given.
///
/// A check with several limits is all-or-nothing: the request passes only
/// when every limit admits it ([`Decisions::all_allowed`]), and then it is
/// charged on all of them; otherwise on none. Each decision reports its own
/// limit: when another limit denies the request, a limit that would have
/// admitted it says so (`allowed`) and reports its units and reset as they
/// stand, since nothing was charged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decisions {
    items: smallvec::SmallVec<[Decision; 2]>,
}

impl Decisions {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the decision for the next limit.
    pub fn push(&mut self, decision: Decision) {
        self.items.push(decision);
    }

    #[cfg(any(feature = "memory", feature = "sql"))]
    pub(crate) fn get_mut(&mut self, index: usize) -> Option<&mut Decision> {
        self.items.get_mut(index)
    }

    /// Whether every limit admitted the request.
    pub fn all_allowed(&self) -> bool {
        self.items.iter().all(|d| d.allowed)
    }

    /// The decisions, one per limit.
    pub fn as_slice(&self) -> &[Decision] {
        &self.items
    }

    /// The number of decisions.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The decision that binds the request: for a denied request the
    /// denying limit with the longest wait (one that can never succeed
    /// counts as longest); for an allowed one the limit with the fewest
    /// units left.
    pub fn most_restrictive(&self) -> Option<&Decision> {
        self.binding_index().map(|i| &self.items[i])
    }

    /// The position of [`most_restrictive`](Self::most_restrictive).
    pub fn binding_index(&self) -> Option<usize> {
        let indexed = self.items.iter().enumerate();
        if self.all_allowed() {
            indexed.min_by_key(|(_, d)| (d.remaining, std::cmp::Reverse(d.reset_after))).map(|(i, _)| i)
        } else {
            indexed
                .filter(|(_, d)| !d.allowed)
                .max_by_key(|(_, d)| d.retry_after.unwrap_or(Duration::MAX))
                .map(|(i, _)| i)
        }
    }
}

impl std::ops::Index<usize> for Decisions {
    type Output = Decision;
    fn index(&self, index: usize) -> &Decision {
        &self.items[index]
    }
}

impl<'a> IntoIterator for &'a Decisions {
    type Item = &'a Decision;
    type IntoIter = std::slice::Iter<'a, Decision>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}
