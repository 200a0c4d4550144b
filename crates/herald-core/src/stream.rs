//! One channel's stream: its epoch, gap-free offsets, the bounded history window, and the
//! recovery decision of docs/protocol.md §2.
//!
//! Guarantees:
//! - offsets are assigned 1, 2, 3 … within an epoch, without gaps;
//! - history keeps at most [`HistoryLimits::size`] entries, none older than
//!   [`HistoryLimits::ttl_ms`] at the `now` of the latest call;
//! - [`ChannelStream::recover`] either yields *every* entry after a position (in order), or a
//!   [`Recovery::Reset`] naming the current position — never a silent gap.

use std::{collections::VecDeque, sync::Arc};

/// Where a client is in a channel's stream: the epoch and the offset of the last message it has.
/// Offset 0 means "before the first message". The empty epoch is no stream's: it stands for a
/// position the client presented but the server cannot read ([`StreamPosition::unusable`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StreamPosition {
    /// The stream's epoch; offsets are only comparable within one epoch.
    pub epoch: Arc<str>,
    /// The offset of the last message seen (0: none).
    pub offset: u64,
}

// === impl StreamPosition ===

impl StreamPosition {
    /// The position of a client that presented one the server cannot read (a malformed
    /// `Last-Event-ID` or cursor, an epoch not of the server's shape). Recovering from it is a
    /// reset ([`ResetReason::MalformedPosition`]), not an error: a browser's `EventSource`
    /// stops reconnecting for good after an error status, and the client did have a position,
    /// so starting it live without a word would be a silent gap.
    pub fn unusable() -> Self {
        Self { epoch: Arc::from(""), offset: 0 }
    }

    /// Whether this is [`StreamPosition::unusable`].
    pub fn is_unusable(&self) -> bool {
        self.epoch.is_empty()
    }
}

/// How much history a channel keeps. The zero value keeps nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Most entries kept.
    pub size: usize,
    /// Longest an entry is kept, in milliseconds; 0 means no age limit.
    pub ttl_ms: u64,
}

/// Why a recovery was not possible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetReason {
    /// The position's epoch is not the stream's (the stream was lost and recreated).
    EpochChanged,
    /// Messages after the position have left the history window.
    HistoryExceeded,
    /// The position is ahead of the stream: it was never issued by this stream.
    OffsetAhead,
    /// The client presented a position the server cannot read ([`StreamPosition::unusable`]).
    MalformedPosition,
}

/// Where a subscriber starts reading a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start<'a> {
    /// From now: live messages only.
    Live,
    /// The latest `n` messages that history holds, then live ones: initial state for a client
    /// with no position (a dashboard opening, a chat showing its last lines).
    Latest(usize),
    /// After a position the client holds: recovery (docs/protocol.md §2).
    After(&'a StreamPosition),
}

/// Which part of a channel's history a read wants: the messages after offset `since` and
/// before offset `before`, at most `limit` of them, the newest ones. They come oldest first;
/// with `before` (paging backwards from the newest) they come newest first. The zero value
/// (`HistoryQuery::default()`) is the whole window, oldest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only messages after this offset.
    pub since: Option<u64>,
    /// Only messages before this offset; the page comes newest first.
    pub before: Option<u64>,
    /// At most this many messages (`None`: no limit).
    pub limit: Option<usize>,
}

/// What a client starting at some position receives.
#[derive(Debug, PartialEq, Eq)]
pub enum Recovery<T> {
    /// No position was given: the client starts live after `position`.
    Live {
        /// The stream's current position.
        position: StreamPosition,
    },
    /// Every message after the given position, oldest first (possibly none).
    Recovered {
        /// The stream's current position.
        position: StreamPosition,
        /// The missed entries, oldest first.
        messages: Vec<T>,
        /// True when `messages` was cut at the requested limit and more follow.
        truncated: bool,
    },
    /// Recovery is impossible; the client continues live after `position`.
    Reset {
        /// The stream's current position.
        position: StreamPosition,
        /// Why.
        reason: ResetReason,
    },
}

struct Entry<T> {
    offset: u64,
    time_ms: u64,
    item: T,
}

/// One channel's stream. `T` is the stored message (the server keeps its pre-encoded frames).
pub struct ChannelStream<T> {
    epoch: Arc<str>,
    offset: u64,
    limits: HistoryLimits,
    history: VecDeque<Entry<T>>,
    /// The epoch this one took over from when the engine lost data
    /// ([`ChannelStream::continue_in`]), and the last offset of it that still holds.
    predecessor: Option<(Arc<str>, u64)>,
}

// === impl ResetReason ===

impl ResetReason {
    /// The snake_case reason sent to clients in `reset` pushes.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EpochChanged => "epoch_changed",
            Self::HistoryExceeded => "history_exceeded",
            Self::OffsetAhead => "offset_ahead",
            Self::MalformedPosition => "malformed_position",
        }
    }
}

// === impl Start ===

impl<'a> Start<'a> {
    /// From `since` when the client holds a position; else the latest `latest` messages (0:
    /// live only).
    pub fn new(since: Option<&'a StreamPosition>, latest: usize) -> Self {
        match (since, latest) {
            (Some(since), _) => Self::After(since),
            (None, 0) => Self::Live,
            (None, n) => Self::Latest(n),
        }
    }

    /// The client's own position, if it gave one.
    pub fn since(self) -> Option<&'a StreamPosition> {
        match self {
            Self::After(since) => Some(since),
            Self::Live | Self::Latest(_) => None,
        }
    }
}

// === impl HistoryQuery ===

impl HistoryQuery {
    /// Whether the page comes newest first (it pages backwards with `before`).
    pub fn newest_first(&self) -> bool {
        self.before.is_some()
    }

    /// Picks this query's messages from `entries`, `(offset, message)` in offset order.
    pub fn pick<T>(&self, entries: impl DoubleEndedIterator<Item = (u64, T)>) -> Vec<T> {
        let (after, before) = (self.since.unwrap_or(0), self.before.unwrap_or(u64::MAX));
        let mut page: Vec<T> = entries
            .rev()
            .skip_while(|(offset, _)| *offset >= before)
            .take_while(|(offset, _)| *offset > after)
            .take(self.limit.unwrap_or(usize::MAX))
            .map(|(_, item)| item)
            .collect();
        if !self.newest_first() {
            page.reverse();
        }
        page
    }
}

// === impl Recovery ===

impl<T> Recovery<T> {
    /// The stream's current position, whatever the outcome.
    pub fn position(&self) -> &StreamPosition {
        match self {
            Self::Live { position } | Self::Recovered { position, .. } | Self::Reset { position, .. } => position,
        }
    }
}

// === impl ChannelStream ===

impl<T: Clone> ChannelStream<T> {
    /// A new, empty stream in `epoch` (the caller picks a fresh random epoch).
    pub fn new(epoch: Arc<str>, limits: HistoryLimits) -> Self {
        Self::resume(epoch, 0, limits)
    }

    /// A stream restored at `epoch` and `offset` (the last message's), with no history yet:
    /// the durable store rebuilds streams from disk with it, then appends what it kept.
    pub fn resume(epoch: Arc<str>, offset: u64, limits: HistoryLimits) -> Self {
        Self { epoch, offset, limits, history: VecDeque::new(), predecessor: None }
    }

    /// Moves the stream to `epoch` at its current offset, for an engine that lost messages
    /// after it (a log tail cut on start, a Redis that went back): the engine will issue the
    /// next offsets again, so positions past the current one in the old epoch name messages
    /// that are gone. Positions of the old epoch up to the current offset still resume
    /// (history is kept); later ones get a reset ([`ResetReason::EpochChanged`]).
    pub fn continue_in(&mut self, epoch: Arc<str>) {
        let predecessor = (Arc::clone(&self.epoch), self.offset);
        self.take_over(epoch, predecessor);
    }

    /// Moves the stream to `epoch`, which took over from `predecessor`: an epoch and the last
    /// offset of it that holds (at or past the stream's own), as the shared engine recorded it
    /// when it lost writes.
    pub fn take_over(&mut self, epoch: Arc<str>, predecessor: (Arc<str>, u64)) {
        self.epoch = epoch;
        self.set_predecessor(predecessor);
    }

    /// Records that the stream's epoch took over from `predecessor` (an epoch, and the last
    /// offset of it that holds): positions of it up to that offset resume in this epoch.
    pub fn set_predecessor(&mut self, predecessor: (Arc<str>, u64)) {
        self.predecessor = Some(predecessor);
    }

    /// The offsets of the oldest and newest messages in history, if any.
    pub fn history_range(&self) -> Option<(u64, u64)> {
        Some((self.history.front()?.offset, self.history.back()?.offset))
    }

    /// The current position: the epoch and the offset of the latest message.
    pub fn position(&self) -> StreamPosition {
        StreamPosition { epoch: self.epoch.clone(), offset: self.offset }
    }

    /// The stream's epoch.
    pub fn epoch(&self) -> &Arc<str> {
        &self.epoch
    }

    /// The offset of the latest message (0: none yet).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Entries currently in the history window.
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// Time of the newest entry in history, if any.
    pub fn newest_time_ms(&self) -> Option<u64> {
        self.history.back().map(|e| e.time_ms)
    }

    /// Assigns the next offset, builds the message with `make(position)` and appends it to
    /// history. Returns a clone of the stored message.
    pub fn append(&mut self, now_ms: u64, make: impl FnOnce(&StreamPosition) -> T) -> T {
        let position = StreamPosition { epoch: self.epoch.clone(), offset: self.offset + 1 };
        let item = make(&position);
        self.push_next(position.offset, now_ms, item.clone());
        self.expire(now_ms);
        item
    }

    /// Appends `item`, published elsewhere at `offset` and `time_ms`, when it is the next
    /// message of this stream (`offset` is one past the current one); otherwise leaves the
    /// stream as it is and returns false. Mirrors of a shared stream use it (see
    /// [`crate::mirror`]).
    pub fn push_next(&mut self, offset: u64, time_ms: u64, item: T) -> bool {
        if offset != self.offset + 1 {
            return false;
        }
        self.offset = offset;
        if self.limits.size > 0 {
            if self.history.len() == self.limits.size {
                self.history.pop_front();
            }
            self.history.push_back(Entry { offset, time_ms, item });
        }
        true
    }

    /// Starts the stream again at `epoch` and `offset`, with no history.
    pub fn restart(&mut self, epoch: Arc<str>, offset: u64) {
        self.epoch = epoch;
        self.offset = offset;
        self.history.clear();
        self.predecessor = None;
    }

    /// Drops history entries older than the age limit.
    pub fn expire(&mut self, now_ms: u64) {
        if self.limits.ttl_ms == 0 {
            return;
        }
        let oldest_kept = now_ms.saturating_sub(self.limits.ttl_ms);
        while self.history.front().is_some_and(|e| e.time_ms < oldest_kept) {
            self.history.pop_front();
        }
    }

    /// The position a client that asks for the latest `n` messages ([`Start::Latest`]) reads
    /// from: `n` back from the newest, as far as history holds them.
    pub fn latest_start(&mut self, n: usize, now_ms: u64) -> StreamPosition {
        self.expire(now_ms);
        let back = n.min(self.history.len()) as u64;
        StreamPosition { epoch: self.epoch.clone(), offset: self.offset - back }
    }

    /// Decides what a client at `since` receives (docs/protocol.md §2), returning at most `limit`
    /// messages (`truncated` tells when more follow; the client then continues from the last
    /// one it got).
    pub fn recover(&mut self, since: Option<&StreamPosition>, now_ms: u64, limit: usize) -> Recovery<T> {
        self.expire(now_ms);
        let position = self.position();
        let Some(since) = since else {
            return Recovery::Live { position };
        };
        if since.is_unusable() {
            return Recovery::Reset { position, reason: ResetReason::MalformedPosition };
        }
        let from_predecessor =
            self.predecessor.as_ref().is_some_and(|(epoch, through)| since.epoch == *epoch && since.offset <= *through);
        if since.epoch != self.epoch && !from_predecessor {
            return Recovery::Reset { position, reason: ResetReason::EpochChanged };
        }
        if since.offset > self.offset {
            return Recovery::Reset { position, reason: ResetReason::OffsetAhead };
        }
        if since.offset == self.offset {
            return Recovery::Recovered { position, messages: Vec::new(), truncated: false };
        }
        // Entries are contiguous, so the oldest one tells whether everything after `since` is here.
        let first_needed = since.offset + 1;
        match self.history.front() {
            Some(oldest) if oldest.offset <= first_needed => {
                let skip = usize::try_from(first_needed - oldest.offset).unwrap_or(usize::MAX);
                let available = self.history.len().saturating_sub(skip);
                let take = available.min(limit);
                let messages = self.history.iter().skip(skip).take(take).map(|e| e.item.clone()).collect();
                Recovery::Recovered { position, messages, truncated: take < available }
            }
            _ => Recovery::Reset { position, reason: ResetReason::HistoryExceeded },
        }
    }

    /// [`ChannelStream::recover`] for a latest-only (conflated) channel: a client at `since` in
    /// this epoch gets only the newest message after it (none when it is up to date), and no
    /// reset for the ones it skips — skipping is the channel's declared behaviour. A reset
    /// still comes for another epoch, a position ahead, an unusable one, or when no message is
    /// left in history to give.
    pub fn recover_latest(&mut self, since: Option<&StreamPosition>, now_ms: u64) -> Recovery<T> {
        match self.recover(since, now_ms, usize::MAX) {
            Recovery::Recovered { position, mut messages, .. } => {
                Recovery::Recovered { position, messages: messages.pop().into_iter().collect(), truncated: false }
            }
            Recovery::Reset { position, reason: ResetReason::HistoryExceeded } if !self.history.is_empty() => {
                let newest = self.history.back().map(|e| e.item.clone()).into_iter().collect();
                Recovery::Recovered { position, messages: newest, truncated: false }
            }
            other => other,
        }
    }

    /// The messages of `query` (see [`HistoryQuery`]). For the history API: no epoch check
    /// and no reset.
    pub fn history(&mut self, query: &HistoryQuery, now_ms: u64) -> Vec<T> {
        self.expire(now_ms);
        query.pick(self.history.iter().map(|e| (e.offset, e.item.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HistoryLimits = HistoryLimits { size: 5, ttl_ms: 1_000 };

    fn stream() -> ChannelStream<u64> {
        ChannelStream::new(Arc::from("e1"), LIMITS)
    }

    fn pos(epoch: &str, offset: u64) -> StreamPosition {
        StreamPosition { epoch: Arc::from(epoch), offset }
    }

    fn publish(s: &mut ChannelStream<u64>, n: u64, now: u64) {
        for _ in 0..n {
            s.append(now, |p| p.offset);
        }
    }

    #[test]
    fn a_resumed_stream_continues_its_offsets_and_recovers_what_it_was_given() {
        let mut s = ChannelStream::resume(Arc::from("e1"), 40, LIMITS);
        assert_eq!((s.position(), s.history_range()), (pos("e1", 40), None));
        publish(&mut s, 2, 0);
        assert_eq!(s.history_range(), Some((41, 42)));
        let recovery = s.recover(Some(&pos("e1", 40)), 0, usize::MAX);
        assert_eq!(recovery, Recovery::Recovered { position: pos("e1", 42), messages: vec![41, 42], truncated: false });
        let lost = s.recover(Some(&pos("e1", 39)), 0, usize::MAX);
        assert!(matches!(lost, Recovery::Reset { reason: ResetReason::HistoryExceeded, .. }));
    }

    #[test]
    fn offsets_are_gap_free_from_one() {
        let mut s = stream();
        let got: Vec<u64> = (0..7).map(|_| s.append(0, |p| p.offset)).collect();
        assert_eq!(got, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(s.position(), pos("e1", 7));
        assert_eq!(s.history_len(), 5);
    }

    #[test]
    fn no_position_starts_live() {
        let mut s = stream();
        publish(&mut s, 3, 0);
        assert_eq!(s.recover(None, 0, 100), Recovery::Live { position: pos("e1", 3) });
    }

    #[test]
    fn recovers_exactly_what_was_missed() {
        let mut s = stream();
        publish(&mut s, 4, 0);
        let r = s.recover(Some(&pos("e1", 2)), 0, 100);
        assert_eq!(r, Recovery::Recovered { position: pos("e1", 4), messages: vec![3, 4], truncated: false });
        let r = s.recover(Some(&pos("e1", 4)), 0, 100);
        assert_eq!(r, Recovery::Recovered { position: pos("e1", 4), messages: vec![], truncated: false });
        let r = s.recover(Some(&pos("e1", 0)), 0, 100);
        assert_eq!(r, Recovery::Recovered { position: pos("e1", 4), messages: vec![1, 2, 3, 4], truncated: false });
    }

    #[test]
    fn a_stream_that_lost_data_continues_in_a_new_epoch() {
        let mut s = stream();
        publish(&mut s, 3, 0);
        // The engine lost what came after 3 (a client may have seen a 4 that is gone).
        s.continue_in(Arc::from("e2"));
        publish(&mut s, 1, 0);
        assert_eq!(s.position(), pos("e2", 4), "4 is issued again, in the new epoch");
        // Positions of the old epoch up to 3 resume; the new 4 follows.
        let r = s.recover(Some(&pos("e1", 2)), 0, 100);
        assert_eq!(r, Recovery::Recovered { position: pos("e2", 4), messages: vec![3, 4], truncated: false });
        // One that saw the lost 4 gets a reset, never the new 4 as if it were the old one.
        let r = s.recover(Some(&pos("e1", 4)), 0, 100);
        assert_eq!(r, Recovery::Reset { position: pos("e2", 4), reason: ResetReason::EpochChanged });
        let r = s.recover(Some(&pos("e2", 3)), 0, 100);
        assert_eq!(r, Recovery::Recovered { position: pos("e2", 4), messages: vec![4], truncated: false });
    }

    #[test]
    fn an_unusable_position_resets_to_the_current_one() {
        let mut s = stream();
        publish(&mut s, 3, 0);
        let r = s.recover(Some(&StreamPosition::unusable()), 0, 100);
        assert_eq!(r, Recovery::Reset { position: pos("e1", 3), reason: ResetReason::MalformedPosition });
        assert_eq!(ResetReason::MalformedPosition.as_str(), "malformed_position");
    }

    #[test]
    fn recovery_respects_the_limit() {
        let mut s = stream();
        publish(&mut s, 5, 0);
        let r = s.recover(Some(&pos("e1", 1)), 0, 2);
        assert_eq!(r, Recovery::Recovered { position: pos("e1", 5), messages: vec![2, 3], truncated: true });
    }

    #[test]
    fn resets_when_history_no_longer_covers_the_gap() {
        let mut s = stream();
        publish(&mut s, 8, 0); // history holds 4..=8
        assert_eq!(
            s.recover(Some(&pos("e1", 2)), 0, 100),
            Recovery::Reset { position: pos("e1", 8), reason: ResetReason::HistoryExceeded }
        );
        let r = s.recover(Some(&pos("e1", 3)), 0, 100);
        assert_eq!(r, Recovery::Recovered { position: pos("e1", 8), messages: vec![4, 5, 6, 7, 8], truncated: false });
    }

    #[test]
    fn resets_on_another_epoch_or_a_position_ahead() {
        let mut s = stream();
        publish(&mut s, 2, 0);
        assert_eq!(
            s.recover(Some(&pos("old", 1)), 0, 100),
            Recovery::Reset { position: pos("e1", 2), reason: ResetReason::EpochChanged }
        );
        assert_eq!(
            s.recover(Some(&pos("e1", 9)), 0, 100),
            Recovery::Reset { position: pos("e1", 2), reason: ResetReason::OffsetAhead }
        );
    }

    #[test]
    fn expired_history_forces_a_reset_but_an_up_to_date_client_recovers() {
        let mut s = stream();
        publish(&mut s, 2, 0);
        publish(&mut s, 1, 600);
        // At 1_300 the two entries from t=0 are older than the 1 s ttl.
        assert_eq!(
            s.recover(Some(&pos("e1", 1)), 1_300, 100),
            Recovery::Reset { position: pos("e1", 3), reason: ResetReason::HistoryExceeded }
        );
        let r = s.recover(Some(&pos("e1", 2)), 1_300, 100);
        assert_eq!(r, Recovery::Recovered { position: pos("e1", 3), messages: vec![3], truncated: false });
        let r = s.recover(Some(&pos("e1", 3)), 10_000, 100);
        assert_eq!(r, Recovery::Recovered { position: pos("e1", 3), messages: vec![], truncated: false });
    }

    #[test]
    fn without_history_only_an_up_to_date_client_recovers() {
        let mut s = ChannelStream::new(Arc::from("e"), HistoryLimits { size: 0, ttl_ms: 0 });
        publish(&mut s, 3, 0);
        assert_eq!(s.history_len(), 0);
        assert!(matches!(s.recover(Some(&pos("e", 2)), 0, 10), Recovery::Reset { .. }));
        assert!(matches!(s.recover(Some(&pos("e", 3)), 0, 10), Recovery::Recovered { .. }));
    }

    fn query(since: Option<u64>, before: Option<u64>, limit: usize) -> HistoryQuery {
        HistoryQuery { since, before, limit: Some(limit) }
    }

    #[test]
    fn history_returns_the_latest_after_since() {
        let mut s = stream();
        publish(&mut s, 5, 0);
        assert_eq!(s.history(&query(None, None, 2), 0), vec![4, 5]);
        assert_eq!(s.history(&query(Some(2), None, 100), 0), vec![3, 4, 5]);
        assert_eq!(s.history(&query(Some(2), None, 1), 0), vec![5]);
        assert_eq!(s.history(&query(Some(5), None, 10), 0), Vec::<u64>::new());
        assert_eq!(s.history(&HistoryQuery::default(), 0), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn history_pages_backwards_newest_first_and_the_pages_join_without_gap() {
        let mut s = ChannelStream::new(Arc::from("e"), HistoryLimits { size: 100, ttl_ms: 0 });
        publish(&mut s, 10, 0);
        assert_eq!(s.history(&query(None, Some(8), 3), 0), vec![7, 6, 5]);
        assert_eq!(s.history(&query(Some(5), Some(8), 10), 0), vec![7, 6], "between since and before");
        assert_eq!(s.history(&query(None, Some(1), 10), 0), Vec::<u64>::new(), "nothing before the first");
        // Paging from past the newest: each page's last offset is the next page's `before`.
        let (mut pages, mut before) = (Vec::new(), 11);
        loop {
            let page = s.history(&query(None, Some(before), 4), 0);
            let Some(&last) = page.last() else { break };
            pages.extend(page);
            before = last;
        }
        assert_eq!(pages, (1..=10).rev().collect::<Vec<u64>>());
    }

    #[test]
    fn a_latest_only_recovery_gives_the_newest_message_and_resets_only_when_nothing_is_left() {
        let mut s = stream(); // keeps 5 for 1 s
        publish(&mut s, 8, 0);
        let newest = |r: Recovery<u64>| match r {
            Recovery::Recovered { messages, truncated: false, .. } => messages,
            other => panic!("not recovered: {other:?}"),
        };
        assert_eq!(newest(s.recover_latest(Some(&pos("e1", 6)), 0)), vec![8], "skips 7");
        assert_eq!(newest(s.recover_latest(Some(&pos("e1", 1)), 0)), vec![8], "past history: still the newest");
        assert_eq!(newest(s.recover_latest(Some(&pos("e1", 8)), 0)), Vec::<u64>::new(), "up to date");
        assert!(matches!(
            s.recover_latest(Some(&pos("old", 8)), 0),
            Recovery::Reset { reason: ResetReason::EpochChanged, .. }
        ));
        assert!(matches!(
            s.recover_latest(Some(&pos("e1", 9)), 0),
            Recovery::Reset { reason: ResetReason::OffsetAhead, .. }
        ));
        assert!(matches!(s.recover_latest(None, 0), Recovery::Live { .. }));
        // Once history is empty there is nothing to give: an explicit reset.
        assert!(matches!(
            s.recover_latest(Some(&pos("e1", 6)), 5_000),
            Recovery::Reset { reason: ResetReason::HistoryExceeded, .. }
        ));
    }

    #[test]
    fn the_latest_n_start_as_far_back_as_history_holds() {
        let mut s = stream(); // keeps 5
        assert_eq!(s.latest_start(3, 0), pos("e1", 0), "an empty stream starts at 0");
        publish(&mut s, 8, 0);
        assert_eq!(s.latest_start(3, 0), pos("e1", 5));
        assert_eq!(s.latest_start(50, 0), pos("e1", 3), "history holds 4..=8");
        let from = s.latest_start(3, 0);
        assert_eq!(
            s.recover(Some(&from), 0, 100),
            Recovery::Recovered { position: pos("e1", 8), messages: vec![6, 7, 8], truncated: false }
        );
        // Past the age limit nothing is left: the start is the newest position.
        assert_eq!(s.latest_start(3, 5_000), pos("e1", 8));
        assert_eq!(Start::new(None, 0), Start::Live);
        assert_eq!(Start::new(None, 4), Start::Latest(4));
        assert_eq!(Start::new(Some(&from), 4), Start::After(&from), "a held position wins");
    }

    /// A simulated client that disconnects at random points and resumes from its position
    /// always ends with every offset exactly once, or an explicit reset.
    #[test]
    fn simulated_reconnects_never_gap_or_duplicate() {
        let mut s = ChannelStream::new(Arc::from("e"), HistoryLimits { size: 16, ttl_ms: 0 });
        let mut seen: Vec<u64> = Vec::new();
        let mut resets = 0;
        let mut at = s.position();
        let mut seed = 0x2545_f491_u64;
        for round in 0..500u64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            publish(&mut s, seed % 20, round);
            match s.recover(Some(&at), round, 8) {
                Recovery::Recovered { messages, .. } => {
                    for m in messages {
                        assert_eq!(m, at.offset + 1, "gap or duplicate");
                        seen.push(m);
                        at.offset = m;
                    }
                }
                Recovery::Reset { position, .. } => {
                    resets += 1;
                    at = position;
                }
                Recovery::Live { .. } => unreachable!("a position was given"),
            }
        }
        assert!(resets > 0 && !seen.is_empty());
    }
}
