//! The text form of the sliding counter's state in the `data` column:
//! decimal integers joined by `:`, nanoseconds since the epoch for times.

use crate::algorithm::sliding_counter::CounterState;

fn numbers<const N: usize>(text: &str) -> Option<[u64; N]> {
    let mut out = [0u64; N];
    let mut parts = text.split(':');
    for slot in &mut out {
        *slot = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// `window_end:previous:current`.
pub(super) fn counter(text: &str) -> Option<CounterState> {
    numbers(text).map(|[window_end, previous, current]| CounterState { window_end, previous, current })
}

pub(super) fn counter_text(state: &CounterState) -> String {
    format!("{}:{}:{}", state.window_end, state.previous, state.current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_garbage_reads_as_absent() {
        let c = CounterState { window_end: 1_700_000_060_000_000_000, previous: 3, current: 4 };
        assert_eq!(counter(&counter_text(&c)), Some(c));
        for garbage in ["", "1", "1:2", "1:2:3:4", "a:b:c", "1:-2:3", "1:2:"] {
            assert_eq!(counter(garbage), None, "{garbage:?}");
        }
    }
}
