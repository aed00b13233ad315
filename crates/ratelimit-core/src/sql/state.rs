//! The text form of the fixed-size algorithm states in the `data` column:
//! decimal integers joined by `:`, nanoseconds since the epoch for times.

use crate::algorithm::fixed_window::WindowState;
use crate::algorithm::sliding_counter::CounterState;
use crate::algorithm::token_bucket::BucketState;

fn numbers<const N: usize>(text: &str) -> Option<[u64; N]> {
    let mut out = [0u64; N];
    let mut parts = text.split(':');
    for slot in &mut out {
        *slot = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// `end:count`.
pub(super) fn window(text: &str) -> Option<WindowState> {
    numbers(text).map(|[end, count]| WindowState { end, count })
}

pub(super) fn window_text(state: &WindowState) -> String {
    format!("{}:{}", state.end, state.count)
}

/// `window_end:previous:current`.
pub(super) fn counter(text: &str) -> Option<CounterState> {
    numbers(text).map(|[window_end, previous, current]| CounterState { window_end, previous, current })
}

pub(super) fn counter_text(state: &CounterState) -> String {
    format!("{}:{}:{}", state.window_end, state.previous, state.current)
}

/// The theoretical arrival time.
pub(super) fn bucket(text: &str) -> Option<BucketState> {
    numbers(text).map(|[tat]| BucketState { tat })
}

pub(super) fn bucket_text(state: &BucketState) -> String {
    state.tat.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_garbage_reads_as_absent() {
        let w = WindowState { end: 1_700_000_060_000_000_000, count: 7 };
        assert_eq!(window(&window_text(&w)), Some(w));
        let c = CounterState { window_end: 60, previous: 3, current: 4 };
        assert_eq!(counter(&counter_text(&c)), Some(c));
        let b = BucketState { tat: 42 };
        assert_eq!(bucket(&bucket_text(&b)), Some(b));
        for garbage in ["", "1", "1:2:3", "a:b", "1:-2", "1:2:"] {
            assert_eq!(window(garbage), None, "{garbage:?}");
        }
    }
}
