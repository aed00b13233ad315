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

    /// Makes room for one more key when the shard holds `capacity` keys:
    /// expired keys go first, then about an eighth of the shard, least
    /// recently used first. Evicting in batches keeps the cost per new key
    /// constant when a flood of new keys arrives.
    pub(super) fn make_room(&mut self, capacity: usize, now: UnixNanos) {
        if self.map.len() < capacity {
            return;
        }
        self.sweep(now);
        if self.map.len() < capacity {
            return;
        }
        let target = (capacity / 8).max(1);
        let mut touched: Vec<u32> = self.map.values().map(|e| e.touched).collect();
        let (_, &mut threshold, _) = touched.select_nth_unstable(target - 1);
        let mut removed = 0;
        self.map.retain(|_, entry| {
            if removed < target && entry.touched <= threshold {
                removed += 1;
                false
            } else {
                true
            }
        });
    }
}
