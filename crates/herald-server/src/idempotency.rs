//! The idempotency window of the engines that do not keep keys themselves (memory, durable):
//! the answers of recent publishes made with an `idempotency_key`, so that a retry gets the
//! first answer and publishes nothing.

use std::collections::HashMap;

use herald_core::ChannelName;
use parking_lot::Mutex;

use crate::reply::publish_body;

/// Remembered results of publishes made with an `idempotency_key`, per channel and key.
#[derive(Default)]
pub struct IdempotencyCache {
    /// By channel and key. Held across a keyed publish, so that two concurrent retries
    /// publish once ([`crate::publish::publish_json`]).
    pub(crate) entries: Mutex<HashMap<(ChannelName, String), Remembered>>,
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
            entries.insert((channel, key.clone()), (reply, record.time_ms + window_ms, 0));
        }
    }
}
