//! One shard of the memory store: a map from key hashes to states.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::state::Entry;
use crate::clock::UnixNanos;

/// Keys are hashed once with the store's keyed hasher; the map reuses that
/// hash as is instead of hashing it again.
#[derive(Default)]
pub(super) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are ever hashed; fold anything else in defensively.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

pub(super) type Map = HashMap<u64, Entry, BuildHasherDefault<PassThrough>>;

#[derive(Default)]
pub(super) struct Shard {
    pub(super) map: Map,
}

impl Shard {
    /// Removes expired entries; returns how many went.
    pub(super) fn sweep(&mut self, now: UnixNanos) -> usize {
        let before = self.map.len();
        self.map.retain(|_, entry| entry.state.expires_at() > now);
        before - self.map.len()
    }

    /// Makes room for one more key when the shard holds `capacity` keys.
    ///
    /// It frees at least an eighth of the shard at once, so the scans below
    /// cost a constant amount per new key however fast new keys arrive.
    /// What carries no information goes first: every expired key, whose
    /// state decides exactly like an absent key (each state's expiry is the
    /// instant it becomes so: a full bucket, a passed window, an empty
    /// log). Then the least recently used; a key over its limit only when
    /// no other key is left, as evicting it hands its client a fresh
    /// allowance.
    pub(super) fn make_room(&mut self, capacity: usize, now: UnixNanos, now_secs: u32) {
        if self.map.len() < capacity {
            return;
        }
        let target = (capacity / 8).max(1);
        let before = self.map.len();
        let mut ranks: Vec<u64> = Vec::with_capacity(before);
        self.map.retain(|_, entry| {
            let live = entry.state.expires_at() > now;
            if live {
                ranks.push(entry.eviction_rank(now_secs));
            }
            live
        });
        let wanted = target.saturating_sub(before - self.map.len()).min(ranks.len());
        if wanted == 0 {
            return;
        }
        let (lower, &mut threshold, _) = ranks.select_nth_unstable(wanted - 1);
        // Ties at the threshold may sit on either side of it: take every
        // key strictly below it, and only as many at it as are still wanted.
        let mut at_threshold = wanted - lower.iter().filter(|&&rank| rank < threshold).count();
        self.map.retain(|_, entry| {
            let rank = entry.eviction_rank(now_secs);
            if rank < threshold {
                return false;
            }
            if rank == threshold && at_threshold > 0 {
                at_threshold -= 1;
                return false;
            }
            true
        });
    }
}
