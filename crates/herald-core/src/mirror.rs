//! A node's copy of a stream that lives elsewhere (the Redis engine's): folding in messages as
//! they arrive over pub/sub, and catching up from a snapshot of the shared stream when they
//! arrive out of line (a gap, another epoch) or after an outage.
//!
//! Guarantees, given the shared stream's own (gap-free offsets per epoch):
//! - [`merge`] appends only the next message; duplicates are dropped and anything else is
//!   reported, never appended;
//! - [`catch_up`] leaves the copy at the snapshot's position (or further, when the copy was
//!   already ahead) and returns either every message the copy lacked, in order, or a reset
//!   naming where the copy restarts — never a silent gap.

use std::sync::Arc;

use crate::stream::{ChannelStream, ResetReason, StreamPosition};

/// What [`merge`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// It was the next message and is now the copy's latest.
    Appended,
    /// The copy already has it.
    Duplicate,
    /// It does not follow the copy's latest (a message is missing, or the epoch differs): the
    /// copy needs a [`catch_up`].
    OutOfLine,
}

/// The shared stream as read at one instant: its position and its latest messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot<T> {
    /// The shared stream's epoch and latest offset.
    pub position: StreamPosition,
    /// Its latest messages as `(offset, time_ms, message)`, oldest first, contiguous and ending
    /// at `position.offset` (empty when it keeps no history).
    pub entries: Vec<(u64, u64, T)>,
    /// The epoch the shared stream's took over from when the engine lost writes, and the last
    /// offset of it that still holds (see [`ChannelStream::continue_in`]); `None` when the
    /// epoch began afresh.
    pub predecessor: Option<(Arc<str>, u64)>,
}

/// What [`catch_up`] changed.
#[derive(Debug, PartialEq, Eq)]
pub enum CatchUp<T> {
    /// The copy continues: these messages (possibly none) were appended, oldest first.
    Appended(Vec<T>),
    /// The copy could not continue and restarted; subscribers continue from `position`, and
    /// `appended` follow it.
    Reset {
        /// Where subscribers continue from (the copy's history may reach further back, for
        /// clients that recover).
        position: StreamPosition,
        /// Why it could not continue.
        reason: ResetReason,
        /// Messages appended after the restart, oldest first.
        appended: Vec<T>,
    },
}

/// Folds the message at `position` (published at `time_ms`) into `copy`.
pub fn merge<T: Clone>(copy: &mut ChannelStream<T>, position: &StreamPosition, time_ms: u64, item: T) -> Merge {
    if position.epoch != *copy.epoch() {
        return Merge::OutOfLine;
    }
    if position.offset <= copy.offset() {
        return Merge::Duplicate;
    }
    if copy.push_next(position.offset, time_ms, item) { Merge::Appended } else { Merge::OutOfLine }
}

/// Brings `copy` in line with `snapshot`.
///
/// A copy in the snapshot's predecessor epoch, at or before the offset of it that holds, is in
/// line: it continues in the new epoch without a reset.
pub fn catch_up<T: Clone>(copy: &mut ChannelStream<T>, snapshot: Snapshot<T>) -> CatchUp<T> {
    let Snapshot { position, entries, predecessor } = snapshot;
    if let Some((epoch, through)) = &predecessor
        && copy.epoch() == epoch
        && copy.offset() <= *through
    {
        copy.take_over(Arc::clone(&position.epoch), (Arc::clone(epoch), *through));
    }
    // A copy past the cut lost only what followed it: it restarts there.
    let cut = predecessor.as_ref().filter(|(epoch, _)| copy.epoch() == epoch).map(|(_, through)| *through);
    let caught_up = in_line(copy, position, entries, cut);
    // The copy now is in the snapshot's epoch: clients of its predecessor resume from it too.
    if let Some(predecessor) = predecessor {
        copy.set_predecessor(predecessor);
    }
    caught_up
}

/// Brings `copy` in line with the shared stream at `position` (with its latest `entries`),
/// restarting it at `cut` when that is where the copy's epoch broke and `entries` go on from it.
fn in_line<T: Clone>(
    copy: &mut ChannelStream<T>,
    position: StreamPosition,
    entries: Vec<(u64, u64, T)>,
    cut: Option<u64>,
) -> CatchUp<T> {
    let same_epoch = position.epoch == *copy.epoch();
    if same_epoch && position.offset >= copy.offset() {
        let missing = copy.offset() + 1;
        let covered = position.offset == copy.offset() || entries.first().is_some_and(|(first, ..)| *first <= missing);
        if covered {
            return CatchUp::Appended(append_after(copy, entries, 0));
        }
    }
    let reason = if !same_epoch {
        ResetReason::EpochChanged
    } else if position.offset < copy.offset() {
        // The shared stream went back within its epoch (it lost writes): what the copy has
        // beyond it was never kept.
        ResetReason::OffsetAhead
    } else {
        ResetReason::HistoryExceeded
    };
    // Subscribers of a copy past the cut continue from the cut: what they had up to it holds.
    let from = match (cut, entries.first()) {
        (Some(cut), Some((first, ..))) if *first <= cut + 1 => Some(cut),
        (Some(cut), None) if cut == position.offset => Some(cut),
        _ => None,
    };
    let start = entries.first().map_or(position.offset, |(first, ..)| first - 1);
    copy.restart(Arc::clone(&position.epoch), start);
    let from = from.unwrap_or(start);
    let appended = append_after(copy, entries, from);
    CatchUp::Reset { position: StreamPosition { epoch: position.epoch, offset: from }, reason, appended }
}

/// Appends the entries past the copy's latest, in order, and returns those past `reported_after`.
fn append_after<T: Clone>(copy: &mut ChannelStream<T>, entries: Vec<(u64, u64, T)>, reported_after: u64) -> Vec<T> {
    let mut appended = Vec::new();
    for (offset, time_ms, item) in entries {
        if offset > copy.offset() && copy.push_next(offset, time_ms, item.clone()) && offset > reported_after {
            appended.push(item);
        }
    }
    appended
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{HistoryLimits, HistoryQuery, Recovery};

    const LIMITS: HistoryLimits = HistoryLimits { size: 10, ttl_ms: 0 };

    fn pos(epoch: &str, offset: u64) -> StreamPosition {
        StreamPosition { epoch: Arc::from(epoch), offset }
    }

    fn snapshot(epoch: &str, offsets: std::ops::RangeInclusive<u64>) -> Snapshot<u64> {
        Snapshot {
            position: pos(epoch, *offsets.end()),
            entries: offsets.map(|o| (o, 0, o)).collect(),
            predecessor: None,
        }
    }

    fn copy_at(epoch: &str, offset: u64) -> ChannelStream<u64> {
        ChannelStream::resume(Arc::from(epoch), offset, LIMITS)
    }

    #[test]
    fn merge_appends_the_next_drops_duplicates_and_reports_gaps_and_epochs() {
        let mut copy = copy_at("e", 3);
        assert_eq!(merge(&mut copy, &pos("e", 4), 0, 4), Merge::Appended);
        assert_eq!(merge(&mut copy, &pos("e", 4), 0, 4), Merge::Duplicate);
        assert_eq!(merge(&mut copy, &pos("e", 2), 0, 2), Merge::Duplicate);
        assert_eq!(merge(&mut copy, &pos("e", 6), 0, 6), Merge::OutOfLine);
        assert_eq!(merge(&mut copy, &pos("f", 5), 0, 5), Merge::OutOfLine);
        assert_eq!(copy.position(), pos("e", 4));
        assert_eq!(copy.history(&HistoryQuery { limit: Some(10), ..HistoryQuery::default() }, 0), vec![4]);
    }

    #[test]
    fn catch_up_appends_exactly_what_the_copy_lacks() {
        let mut copy = copy_at("e", 5);
        assert_eq!(catch_up(&mut copy, snapshot("e", 2..=9)), CatchUp::Appended(vec![6, 7, 8, 9]));
        assert_eq!(copy.position(), pos("e", 9));
        // An older snapshot than the copy changes nothing.
        assert_eq!(catch_up(&mut copy, snapshot("e", 1..=9)), CatchUp::Appended(vec![]));
        assert_eq!(copy.position(), pos("e", 9));
    }

    #[test]
    fn catch_up_resets_when_history_no_longer_covers_the_gap() {
        let mut copy = copy_at("e", 5);
        let outcome = catch_up(&mut copy, snapshot("e", 8..=9));
        assert_eq!(
            outcome,
            CatchUp::Reset { position: pos("e", 7), reason: ResetReason::HistoryExceeded, appended: vec![8, 9] }
        );
        assert_eq!(copy.position(), pos("e", 9));
    }

    #[test]
    fn catch_up_resets_on_a_new_epoch_or_a_stream_that_went_back() {
        let mut copy = copy_at("e", 5);
        let outcome = catch_up(&mut copy, snapshot("f", 1..=2));
        assert_eq!(
            outcome,
            CatchUp::Reset { position: pos("f", 0), reason: ResetReason::EpochChanged, appended: vec![1, 2] }
        );
        let mut copy = copy_at("e", 5);
        let empty = Snapshot { position: pos("e", 3), entries: Vec::new(), predecessor: None };
        assert_eq!(
            catch_up(&mut copy, empty),
            CatchUp::Reset { position: pos("e", 3), reason: ResetReason::OffsetAhead, appended: vec![] }
        );
    }

    /// A simulated network: messages reach the copy late, twice, or not at all; catching up
    /// whenever one arrives out of line, the copy's subscriber sees every message once, in
    /// order, or an explicit reset.
    /// The shared stream lost writes after offset 10 of `e` and took over in `f` (as the Redis
    /// engine records it), then went on to 15.
    fn after_lost_writes() -> Snapshot<u64> {
        Snapshot { predecessor: Some((Arc::from("e"), 10)), ..snapshot("f", 6..=15) }
    }

    #[test]
    fn a_copy_within_what_held_of_the_lost_epoch_continues_without_a_reset() {
        let mut copy = copy_at("e", 8);
        assert_eq!(catch_up(&mut copy, after_lost_writes()), CatchUp::Appended((9..=15).collect()));
        assert_eq!(copy.position(), pos("f", 15));
        let from_old = copy.recover(Some(&pos("e", 9)), 0, 100);
        assert!(matches!(from_old, Recovery::Recovered { messages, .. } if messages == (10..=15).collect::<Vec<_>>()));
    }

    #[test]
    fn a_copy_past_what_held_resets_and_clients_within_it_still_resume() {
        let mut copy = copy_at("e", 12);
        let CatchUp::Reset { position, reason, .. } = catch_up(&mut copy, after_lost_writes()) else {
            panic!("the copy saw 11 and 12, which were lost");
        };
        assert_eq!((position, reason), (pos("f", 10), ResetReason::EpochChanged), "11 and 12 were lost, not 6 to 10");
        let within = copy.recover(Some(&pos("e", 7)), 0, 100);
        assert!(matches!(within, Recovery::Recovered { messages, .. } if messages == (8..=15).collect::<Vec<_>>()));
        let lost = copy.recover(Some(&pos("e", 11)), 0, 100);
        assert!(matches!(lost, Recovery::Reset { reason: ResetReason::EpochChanged, .. }));
    }

    #[test]
    fn a_lossy_feed_plus_catch_up_never_gaps_or_duplicates() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut shared: ChannelStream<u64> = ChannelStream::new(Arc::from("e"), LIMITS);
        let mut copy = copy_at("e", 0);
        let mut seen: Vec<u64> = Vec::new();
        for _ in 0..2_000 {
            let item = shared.append(0, |p| p.offset);
            let mut snap = || Snapshot {
                position: shared.position(),
                entries: shared.history(&HistoryQuery::default(), 0).into_iter().map(|o| (o, 0, o)).collect(),
                predecessor: None,
            };
            let deliveries = match next() % 10 {
                0 => 0, // lost
                1 => 2, // delivered twice
                _ => 1,
            };
            for _ in 0..deliveries {
                match merge(&mut copy, &pos("e", item), 0, item) {
                    Merge::Appended => seen.push(item),
                    Merge::Duplicate => {}
                    Merge::OutOfLine => match catch_up(&mut copy, snap()) {
                        CatchUp::Appended(items) => seen.extend(items),
                        CatchUp::Reset { position, appended, .. } => {
                            seen.clear();
                            assert!(position.offset < item);
                            seen.extend(appended);
                        }
                    },
                }
            }
            if deliveries == 0 {
                continue;
            }
            let last = *seen.last().unwrap_or(&0);
            assert_eq!(last, copy.offset());
            assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "no gap, no duplicate");
        }
    }
}
