//! Positions of channels an engine forgot: what lets a quiet channel keep its epoch.
//!
//! An engine forgets a channel that has no subscribers and nothing left in history, so that
//! short-lived channels do not pile up. Forgetting the channel must not forget its position:
//! a client that saw offset 5 and comes back after the channel was forgotten and published to
//! again must get message 6, not a reset (and never messages of a new life under old offsets).
//! So the engine keeps each forgotten channel's epoch and offset here, a few dozen bytes
//! instead of a whole channel, and a channel it creates again continues from them.
//!
//! Guarantees:
//! - [`ForgottenPositions::revive`] gives back exactly the position [`ForgottenPositions::forget`]
//!   kept, so a revived channel continues its epoch with the next offset;
//! - a channel with no kept position starts at offset 0 in the *fresh epoch*, and the fresh
//!   epoch changes whenever a kept position of that epoch is dropped (too old, or over the
//!   count limit): a channel whose position was dropped can never come back in an epoch a
//!   client of its earlier life holds, so that client gets an `epoch_changed` reset, not a
//!   silent gap. Positions of older epochs drop without that, so the fresh epoch changes about
//!   once per age limit, and a client at offset 0 of a channel that never had a message (kept
//!   as nothing) resumes unless such a change came while it was away.
//!
//! No clock and no randomness: the caller passes the time and makes new epochs.

use std::{collections::HashMap, sync::Arc};

use crate::{ChannelName, StreamPosition};

/// How long positions are kept, and how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepPositions {
    /// Longest a forgotten channel's position is kept, in milliseconds.
    pub ttl_ms: u64,
    /// Most positions kept; past it the oldest are dropped. 0 keeps none.
    pub max: usize,
}

/// The kept positions of one part of an engine (a shard), and its fresh epoch.
#[derive(Debug)]
pub struct ForgottenPositions {
    kept: HashMap<ChannelName, Kept>,
    fresh_epoch: Arc<str>,
    limits: KeepPositions,
}

/// One kept position.
#[derive(Debug)]
struct Kept {
    epoch: Arc<str>,
    offset: u64,
    /// When the channel was forgotten, in ms since the Unix epoch.
    since_ms: u64,
}

// === impl ForgottenPositions ===

impl ForgottenPositions {
    /// Nothing kept yet; new channels start in `fresh_epoch`.
    pub fn new(fresh_epoch: Arc<str>, limits: KeepPositions) -> Self {
        Self { kept: HashMap::new(), fresh_epoch, limits }
    }

    /// Keeps `channel`'s `position` as it is forgotten at `now_ms`. A position at offset 0 in
    /// the fresh epoch is what a new channel gets anyway: nothing to keep.
    pub fn forget(&mut self, channel: ChannelName, position: StreamPosition, now_ms: u64) {
        if self.limits.max == 0 || (position.offset == 0 && position.epoch == self.fresh_epoch) {
            return;
        }
        self.kept.insert(channel, Kept { epoch: position.epoch, offset: position.offset, since_ms: now_ms });
    }

    /// The position a channel created again starts at: the one kept for it (no longer kept),
    /// or offset 0 in the fresh epoch.
    pub fn revive(&mut self, channel: &ChannelName) -> StreamPosition {
        match self.kept.remove(channel) {
            Some(kept) => StreamPosition { epoch: kept.epoch, offset: kept.offset },
            None => StreamPosition { epoch: self.fresh_epoch.clone(), offset: 0 },
        }
    }

    /// The position kept for `channel`, if any.
    pub fn get(&self, channel: &ChannelName) -> Option<StreamPosition> {
        self.kept.get(channel).map(|kept| StreamPosition { epoch: kept.epoch.clone(), offset: kept.offset })
    }

    /// Drops positions kept for longer than the limit's age, then the oldest past its count;
    /// when one of the fresh epoch is dropped, the fresh epoch becomes `new_epoch()`. Returns
    /// how many were dropped.
    pub fn expire(&mut self, now_ms: u64, new_epoch: impl FnOnce() -> Arc<str>) -> usize {
        let before = self.kept.len();
        let ttl_ms = self.limits.ttl_ms;
        let fresh = self.fresh_epoch.clone();
        let mut fresh_dropped = false;
        let mut keep = |kept: &Kept, keeps: bool| {
            fresh_dropped |= !keeps && kept.epoch == fresh;
            keeps
        };
        self.kept.retain(|_, kept| keep(kept, now_ms.saturating_sub(kept.since_ms) < ttl_ms));
        if self.kept.len() > self.limits.max {
            let mut ages: Vec<u64> = self.kept.values().map(|kept| kept.since_ms).collect();
            let excess = self.kept.len() - self.limits.max;
            let (_, cut, _) = ages.select_nth_unstable(excess - 1);
            let cut = *cut;
            // Everything forgotten at or before the cut goes (ties may take a few more).
            self.kept.retain(|_, kept| keep(kept, kept.since_ms > cut));
        }
        if fresh_dropped {
            self.fresh_epoch = new_epoch();
        }
        before - self.kept.len()
    }

    /// How many positions are kept.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// The epoch a channel with no kept position starts in.
    pub fn fresh_epoch(&self) -> &Arc<str> {
        &self.fresh_epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> ChannelName {
        ChannelName::new(text).expect("a channel name")
    }

    fn pos(epoch: &str, offset: u64) -> StreamPosition {
        StreamPosition { epoch: Arc::from(epoch), offset }
    }

    fn positions(max: usize) -> ForgottenPositions {
        ForgottenPositions::new(Arc::from("fresh1"), KeepPositions { ttl_ms: 1000, max })
    }

    #[test]
    fn a_forgotten_channel_continues_where_it_was() {
        let mut kept = positions(10);
        kept.forget(name("user:42"), pos("e1", 5), 0);
        assert_eq!(kept.get(&name("user:42")), Some(pos("e1", 5)));
        assert_eq!(kept.revive(&name("user:42")), pos("e1", 5));
        assert!(kept.is_empty(), "revived: kept by the channel again");
        assert_eq!(kept.revive(&name("other")), pos("fresh1", 0), "never seen: the fresh epoch");
    }

    #[test]
    fn dropping_a_position_changes_the_fresh_epoch() {
        let mut kept = positions(10);
        kept.forget(name("a"), pos("fresh1", 3), 0);
        kept.forget(name("b"), pos("fresh1", 4), 600);
        assert_eq!(kept.expire(999, || Arc::from("never")), 0);
        assert_eq!(kept.fresh_epoch().as_ref(), "fresh1");
        assert_eq!(kept.expire(1000, || Arc::from("fresh2")), 1, "a is older than the ttl");
        // `a` comes back in another epoch: its old clients get epoch_changed, never a gap.
        assert_eq!(kept.revive(&name("a")), pos("fresh2", 0));
        assert_eq!(kept.revive(&name("b")), pos("fresh1", 4));
        // A position of an older epoch drops without a change: no channel can come back in it.
        kept.forget(name("c"), pos("e0", 2), 2000);
        assert_eq!(kept.expire(3000, || Arc::from("never")), 1);
        assert_eq!(kept.fresh_epoch().as_ref(), "fresh2");
    }

    #[test]
    fn the_oldest_go_past_the_count() {
        let mut kept = positions(2);
        for (i, channel) in ["a", "b", "c", "d"].into_iter().enumerate() {
            kept.forget(name(channel), pos(if i < 2 { "fresh1" } else { "e" }, 1), i as u64);
        }
        assert_eq!(kept.expire(10, || Arc::from("fresh2")), 2);
        assert_eq!((kept.get(&name("a")), kept.get(&name("b"))), (None, None));
        assert_eq!((kept.get(&name("c")), kept.get(&name("d"))), (Some(pos("e", 1)), Some(pos("e", 1))));
        assert_eq!(kept.fresh_epoch().as_ref(), "fresh2");
    }

    #[test]
    fn a_channel_that_never_published_costs_nothing() {
        let mut kept = positions(10);
        kept.forget(name("quiet"), pos("fresh1", 0), 0);
        assert!(kept.is_empty());
        let mut none = positions(0);
        none.forget(name("a"), pos("e", 9), 0);
        assert!(none.is_empty(), "max 0 keeps nothing");
    }
}
