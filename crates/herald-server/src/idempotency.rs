//! The idempotency window of the engines that do not keep keys themselves (memory, durable):
//! the answers of recent publishes made with an `idempotency_key`, so that a retry gets the
//! first answer and publishes nothing.

use std::collections::{HashMap, VecDeque};

use herald_core::ChannelName;
use parking_lot::Mutex;

use crate::reply::publish_body;

/// Remembered results of publishes made with an `idempotency_key`, per channel and key.
#[derive(Default)]
pub struct IdempotencyCache {
    /// By channel and key. Held across a keyed publish, so that two concurrent retries
    /// publish once ([`crate::publish::publish_json`]).
    pub(crate) entries: Mutex<Window>,
}

/// A channel and an idempotency key.
type Key = (ChannelName, String);

/// The remembered publishes, and the order they are forgotten in.
#[derive(Default)]
pub(crate) struct Window {
    remembered: HashMap<Key, Remembered>,
    /// Keys by when they are forgotten, soonest first (the window is the same for every key,
    /// so insertion order is expiry order; restored keys come first, oldest first). Dropping
    /// the expired ones from the front costs nothing per publish that keeps in the window —
    /// unlike a scan of every key, which a consumer's keyed publishes paid on each publish.
    order: VecDeque<(u64, Key)>,
}

/// A remembered publish: its encoded reply, when it is forgotten (ms) and its store sequence.
pub(crate) type Remembered = (Vec<u8>, u64, u64);

// === impl IdempotencyCache ===

impl IdempotencyCache {
    /// Remembers the keyed publishes among `records` (replayed from the store) made within
    /// the last `window_ms` before `now_ms`: a retry after a restart gets the original answer.
    pub fn restore(&self, records: &[crate::store::Record], window_ms: u64, now_ms: u64) {
        let mut entries = self.entries.lock();
        for record in records.iter().filter(|r| r.time_ms + window_ms > now_ms) {
            let (Some(key), Ok(channel)) = (&record.key, ChannelName::new(&record.channel)) else { continue };
            let reply = publish_body(&channel, record.offset, &record.epoch);
            entries.insert((channel, key.clone()), (reply, record.time_ms + window_ms, 0), now_ms);
        }
    }
}

// === impl Window ===

impl Window {
    /// The publish remembered for `key`, unless forgotten by `now_ms`.
    pub(crate) fn get(&self, key: &Key, now_ms: u64) -> Option<&Remembered> {
        self.remembered.get(key).filter(|(_, expires, _)| *expires > now_ms)
    }

    /// Remembers a publish for `key` (its expiry in `remembered`), first forgetting every
    /// publish expired by `now_ms`.
    pub(crate) fn insert(&mut self, key: Key, remembered: Remembered, now_ms: u64) {
        while let Some((expires, _)) = self.order.front()
            && *expires <= now_ms
        {
            if let Some((expires, old)) = self.order.pop_front()
                && self.remembered.get(&old).is_some_and(|(_, e, _)| *e == expires)
            {
                self.remembered.remove(&old);
            }
        }
        self.order.push_back((remembered.1, key.clone()));
        self.remembered.insert(key, remembered);
    }

    /// Publishes remembered (expired ones not yet dropped included).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.remembered.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        (ChannelName::new("c").expect("a channel"), name.to_owned())
    }

    #[test]
    fn expired_publishes_are_forgotten_as_new_ones_come_and_a_repeat_keeps_its_latest() {
        let mut window = Window::default();
        window.insert(key("a"), (b"1".to_vec(), 100, 1), 0);
        window.insert(key("b"), (b"2".to_vec(), 150, 2), 50);
        assert_eq!(window.get(&key("a"), 99).map(|r| r.2), Some(1));
        assert!(window.get(&key("a"), 100).is_none(), "expired, though still held");
        // Re-remembered after it expired: the old entry's expiry must not drop the new one.
        window.insert(key("a"), (b"3".to_vec(), 220, 3), 120);
        assert_eq!(window.len(), 2, "a: the new one; b: not yet expired");
        window.insert(key("c"), (b"4".to_vec(), 260, 4), 160);
        assert_eq!((window.len(), window.get(&key("a"), 160).map(|r| r.2)), (2, Some(3)), "b forgotten");
    }
}
