//! The cursor of an SSE or long-poll stream: one string that resumes *every* channel of the
//! stream (docs/protocol.md §4, 2.5).
//!
//! Third-party clients treat it as opaque. Its form is `channel~epoch~offset` per channel,
//! joined by `,` (neither `~` nor `,` can appear in a channel name or an epoch), so it survives
//! URLs and HTTP headers without escaping and stays readable in logs. Herald's own clients (the
//! demo page, and the TypeScript client to come) build it from the per-channel positions they
//! keep, to resume on SSE or long polling after using another transport: changing the form is a
//! change for them too. Positions are kept in the order of first insertion.

use std::{fmt, sync::Arc};

use crate::{ChannelName, StreamPosition};

/// The longest epoch accepted in a cursor, in bytes.
pub const MAX_EPOCH_LEN: usize = 32;

/// Positions for the channels of one stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    positions: Vec<(ChannelName, StreamPosition)>,
}

/// Why a string is not a cursor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor: {0}")]
pub struct InvalidCursor(&'static str);

/// Whether `epoch` has the form of an epoch Herald issues: 1–32 ASCII letters or digits.
pub fn is_valid_epoch(epoch: &str) -> bool {
    !epoch.is_empty() && epoch.len() <= MAX_EPOCH_LEN && epoch.bytes().all(|b| b.is_ascii_alphanumeric())
}

// === impl Cursor ===

impl Cursor {
    /// An empty cursor.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cursor with room for `channels` positions.
    pub fn with_capacity(channels: usize) -> Self {
        Self { positions: Vec::with_capacity(channels) }
    }

    /// The position recorded for `channel`.
    pub fn get(&self, channel: &ChannelName) -> Option<&StreamPosition> {
        self.positions.iter().find(|(c, _)| c == channel).map(|(_, p)| p)
    }

    /// Records `position` for `channel`, replacing an earlier one.
    pub fn set(&mut self, channel: &ChannelName, position: StreamPosition) {
        match self.positions.iter_mut().find(|(c, _)| c == channel) {
            Some((_, p)) => *p = position,
            None => self.positions.push((channel.clone(), position)),
        }
    }

    /// Advances `channel` to `offset` in its recorded epoch, when the channel is recorded.
    pub fn advance(&mut self, channel: &ChannelName, offset: u64) {
        if let Some((_, p)) = self.positions.iter_mut().find(|(c, _)| c == channel) {
            p.offset = offset;
        }
    }

    /// The recorded positions, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&ChannelName, &StreamPosition)> {
        self.positions.iter().map(|(c, p)| (c, p))
    }

    /// Whether no position is recorded.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Parses a cursor issued by [`Cursor::to_string`]. An empty string is an empty cursor.
    pub fn parse(text: &str) -> Result<Self, InvalidCursor> {
        Self::parse_known(text, &[])
    }

    /// [`Cursor::parse`], sharing the names in `known` (the stream's channels, already checked)
    /// for the entries that name them: such an entry is neither checked nor copied again. The
    /// cursor is the same as `parse` gives.
    pub fn parse_known<'a>(text: &'a str, known: &[ChannelName]) -> Result<Self, InvalidCursor> {
        if text.is_empty() {
            return Ok(Self::new());
        }
        // Byte searches: a cursor is short, and `str::split` costs more in setting up its
        // searcher than in searching it (every long poll parses one).
        let entries = text.bytes().filter(|b| *b == b',').count() + 1;
        let mut cursor = Self::with_capacity(entries);
        let split_last = |s: &'a str| {
            let at = s.bytes().rposition(|b| b == b'~')?;
            Some((&s[..at], &s[at + 1..]))
        };
        for entry in crate::list::comma_items(text) {
            let malformed = InvalidCursor("expected channel~epoch~offset");
            let (rest, offset) = split_last(entry).ok_or(malformed.clone())?;
            let (channel, epoch) = split_last(rest).ok_or(malformed)?;
            let offset = offset.parse::<u64>().map_err(|_| InvalidCursor("offset is not a number"))?;
            if !is_valid_epoch(epoch) {
                return Err(InvalidCursor("malformed epoch"));
            }
            let position = StreamPosition { epoch: Arc::from(epoch), offset };
            match known.iter().find(|name| name.as_str() == channel) {
                Some(name) => cursor.set(name, position),
                None => {
                    let name = ChannelName::new(channel).map_err(|_| InvalidCursor("malformed channel name"))?;
                    cursor.set(&name, position);
                }
            }
        }
        Ok(cursor)
    }

    /// How long the cursor's text is, at most (what [`Cursor::write_to`] appends).
    pub fn text_len(&self) -> usize {
        // An offset takes at most 20 digits; two `~` and a `,` around it.
        self.positions.iter().map(|(channel, p)| channel.as_str().len() + p.epoch.len() + 23).sum()
    }

    /// Appends the cursor's text (what [`Cursor::to_string`] gives) to `out`. The text is
    /// ASCII and never needs escaping in JSON strings, URLs or HTTP headers: channel names and
    /// epochs cannot hold a quote, a backslash, a control character or a space.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for (i, (channel, p)) in self.positions.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(channel.as_str().as_bytes());
            out.push(b'~');
            out.extend_from_slice(p.epoch.as_bytes());
            out.push(b'~');
            out.extend_from_slice(itoa::Buffer::new().format(p.offset).as_bytes());
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = Vec::new();
        self.write_to(&mut text);
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(s: &str) -> ChannelName {
        ChannelName::new(s).expect("valid channel")
    }

    fn pos(epoch: &str, offset: u64) -> StreamPosition {
        StreamPosition { epoch: Arc::from(epoch), offset }
    }

    #[test]
    fn round_trips_every_channel() {
        let mut c = Cursor::new();
        c.set(&ch("jobs"), pos("k3j2", 42));
        c.set(&ch("chat:room/1=@x.y-z_"), pos("A9", 0));
        c.set(&ch("jobs"), pos("k3j2", 43));
        let text = c.to_string();
        assert_eq!(text, "jobs~k3j2~43,chat:room/1=@x.y-z_~A9~0");
        assert_eq!(Cursor::parse(&text), Ok(c));
    }

    #[test]
    fn text_len_bounds_the_text() {
        let mut c = Cursor::new();
        assert_eq!(c.text_len(), 0);
        c.set(&ch("a"), pos("e", u64::MAX));
        c.set(&ch("chat:room/1"), pos("k3j2", 0));
        let written = c.to_string().len();
        assert!(c.text_len() >= written && c.text_len() <= written + 2 * 23, "{} for {written}", c.text_len());
    }

    #[test]
    fn advance_moves_only_a_recorded_channel() {
        let mut c = Cursor::new();
        c.set(&ch("a"), pos("e", 1));
        c.advance(&ch("a"), 5);
        c.advance(&ch("b"), 9);
        assert_eq!(c.get(&ch("a")), Some(&pos("e", 5)));
        assert_eq!(c.get(&ch("b")), None);
    }

    #[test]
    fn rejects_garbage() {
        for bad in
            ["x", "a~b", "a~e~-1", "a~e~1x", "a~~1", "a b~e~1", "a~e!~1", "a~e~1,", "~e~1", "a~e~99999999999999999999"]
        {
            assert!(Cursor::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(Cursor::parse(""), Ok(Cursor::new()));
    }
}
