//! Which channels the node mirrors, and when a client last needed each: a table cut into
//! [`SLICES`] shards, so that the idle sweep walks one shard per tick instead of every
//! mirror at once, and request paths on different channels rarely share a lock.

use std::{
    collections::HashMap,
    hash::BuildHasher,
    time::{Duration, Instant},
};

use herald_core::ChannelName;
use parking_lot::Mutex;

use crate::slice::{SLICES, Slice};

/// The mirrored channels, by slice.
pub(super) struct Mirrors {
    shards: Box<[Mutex<HashMap<ChannelName, Instant>>]>,
    hasher: foldhash::fast::RandomState,
}

// === impl Mirrors ===

impl Mirrors {
    /// No mirrors.
    pub(super) fn new() -> Self {
        Self { shards: (0..SLICES).map(|_| Mutex::default()).collect(), hasher: Default::default() }
    }

    fn shard(&self, channel: &ChannelName) -> &Mutex<HashMap<ChannelName, Instant>> {
        &self.shards[(self.hasher.hash_one(channel) as usize) % SLICES]
    }

    /// Whether `channel` is mirrored.
    pub(super) fn contains(&self, channel: &ChannelName) -> bool {
        self.shard(channel).lock().contains_key(channel)
    }

    /// Marks `channel` mirrored and used at `now`.
    pub(super) fn insert(&self, channel: ChannelName, now: Instant) {
        self.shard(&channel).lock().insert(channel, now);
    }

    /// Marks `channel` used now, if it is mirrored; returns whether it is.
    pub(super) fn touch(&self, channel: &ChannelName) -> bool {
        match self.shard(channel).lock().get_mut(channel) {
            Some(last_used) => {
                *last_used = Instant::now();
                true
            }
            None => false,
        }
    }

    /// How many channels are mirrored.
    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().len()).sum()
    }

    /// Every mirrored channel.
    pub(super) fn channels(&self) -> Vec<ChannelName> {
        self.shards.iter().flat_map(|shard| shard.lock().keys().cloned().collect::<Vec<_>>()).collect()
    }

    /// Removes the channels of `slice` unused for longer than `idle` at `now` for which
    /// `forget` agrees (it is asked under the shard's lock, so no request touches the channel
    /// meanwhile), and returns them.
    pub(super) fn sweep(
        &self,
        slice: Slice,
        idle: Duration,
        now: Instant,
        mut forget: impl FnMut(&ChannelName) -> bool,
    ) -> Vec<ChannelName> {
        let mut removed = Vec::new();
        self.shards[slice.0].lock().retain(|channel, last_used| {
            let drop = now.duration_since(*last_used) > idle && forget(channel);
            if drop {
                removed.push(channel.clone());
            }
            !drop
        });
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sweep_of_every_slice_drops_each_idle_mirror_once_and_keeps_the_used() {
        let mirrors = Mirrors::new();
        let start = Instant::now();
        for i in 0..500 {
            mirrors.insert(ChannelName::new(&format!("idle:{i}")).unwrap(), start);
        }
        let later = start + Duration::from_secs(60);
        let kept = ChannelName::new("used").unwrap();
        mirrors.insert(kept.clone(), later);
        let mut dropped = Vec::new();
        let mut largest_slice = 0;
        for index in 0..SLICES {
            let swept = mirrors.sweep(Slice(index), Duration::from_secs(30), later, |_| true);
            largest_slice = largest_slice.max(swept.len());
            dropped.extend(swept);
        }
        dropped.sort();
        dropped.dedup();
        assert_eq!(dropped.len(), 500, "every idle mirror is dropped by exactly one slice");
        assert!(largest_slice < 500 / 4, "one tick walks a slice, not the whole table ({largest_slice})");
        assert_eq!(mirrors.channels(), std::slice::from_ref(&kept));
        assert!(mirrors.touch(&kept) && mirrors.contains(&kept));
        assert_eq!(mirrors.len(), 1);
    }

    #[test]
    fn a_mirror_the_broker_keeps_is_not_dropped() {
        let mirrors = Mirrors::new();
        let start = Instant::now();
        let channel = ChannelName::new("busy").unwrap();
        mirrors.insert(channel.clone(), start);
        let later = start + Duration::from_secs(60);
        for index in 0..SLICES {
            assert!(mirrors.sweep(Slice(index), Duration::from_secs(30), later, |_| false).is_empty());
        }
        assert!(mirrors.contains(&channel));
    }
}
