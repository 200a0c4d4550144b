//! A channel's open streams: messages written a piece at a time — an AI answer token by token —
//! before they become one message of the channel.
//!
//! A stream is started, appended to, and finished or aborted. While it is open it has no offset:
//! its appends are numbered (`seq` 1, 2, 3 …) within the stream, and a subscriber that joins or
//! comes back mid-stream is given the text so far with the `seq` it covers, then the appends
//! after it. Finishing it publishes the whole text as one message, which takes the channel's
//! next offset like any other: history and recovery (docs/protocol.md §2) never see the
//! pieces. Guarantees:
//! - appends are applied in call order, and `seq` counts them without gaps;
//! - a stream's text is at most the limit given to [`OpenStreams::append`];
//! - a channel holds at most the number of open streams given to [`OpenStreams::start`];
//! - a stream left without an append for longer than the idle limit is aborted by
//!   [`OpenStreams::expire`], so a backend that died mid-answer leaves nothing open.

use std::sync::Arc;

/// An open stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenStream {
    /// The stream's id, unique within its channel while it is open.
    pub id: Arc<str>,
    /// The event name of the message it becomes (`None`: a plain `message`).
    pub event: Option<Box<str>>,
    /// The text so far.
    pub text: String,
    /// How many appends the text holds.
    pub seq: u64,
    /// When it was started or last appended to, ms since the Unix epoch.
    pub touched_ms: u64,
    /// Where each append ends in `text`, in bytes (the `seq`-th at index `seq - 1`).
    ends: Vec<u32>,
}

/// Why a stream operation was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// No open stream has this id in the channel (never started, finished, aborted, or idle
    /// too long).
    #[error("no open stream {0:?} in this channel")]
    Unknown(Arc<str>),
    /// The append would make the text longer than the limit, in bytes.
    #[error("the stream's text would pass {0} bytes")]
    TooLong(usize),
    /// The channel has as many open streams as it may.
    #[error("the channel has {0} open streams already")]
    TooMany(usize),
}

/// The wire error of a refused stream operation: an unknown stream is `not_found`, a text too
/// long `message_too_large`, a channel with too many open streams `rate_limited`.
impl From<StreamError> for crate::ProtocolError {
    fn from(e: StreamError) -> Self {
        let code = match e {
            StreamError::Unknown(_) => crate::ErrorCode::NotFound,
            StreamError::TooLong(_) => crate::ErrorCode::MessageTooLarge,
            StreamError::TooMany(_) => crate::ErrorCode::RateLimited,
        };
        Self::new(code, e.to_string())
    }
}

/// What [`OpenStreams::fold`] did with an operation made elsewhere (a node's copy of streams
/// that live in a shared engine: every operation arrives numbered, and may arrive twice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fold {
    /// It was the next operation of its stream and is applied.
    Applied,
    /// The copy already has it (a start of a stream it holds, an append it holds, the close of
    /// a stream it does not hold).
    Known,
    /// It does not follow what the copy holds (an append to a stream it does not hold, or past
    /// a missing one): the copy needs a snapshot ([`OpenStreams::replace`]).
    OutOfLine,
}

/// What [`OpenStreams::replace`] changed.
#[derive(Debug, PartialEq, Eq)]
pub struct Replaced {
    /// Streams the copy now holds further than before (or newly): their subscribers need the
    /// text so far.
    pub ahead: Vec<Arc<str>>,
    /// Streams the copy held that are gone: finished or aborted meanwhile.
    pub gone: Vec<OpenStream>,
}

/// An operation on a stream made elsewhere, as [`OpenStreams::fold`] takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation<'a> {
    /// The stream was opened (for a message of `event`).
    Start {
        /// The event of the message it becomes.
        event: Option<&'a str>,
    },
    /// Append number `seq` added `delta`.
    Append {
        /// The append's number.
        seq: u64,
        /// The text it added.
        delta: &'a str,
    },
    /// The stream was closed (finished or aborted).
    Close,
}

/// The open streams of one channel. The zero value (`OpenStreams::default()`) holds none and
/// allocates nothing.
#[derive(Debug, Default)]
pub struct OpenStreams {
    open: Vec<OpenStream>,
}

// === impl OpenStream ===

impl OpenStream {
    /// A stream read back as it stands elsewhere: its text and where each of its appends ends
    /// in it, in bytes (so its `seq` is `ends.len()`). `None` when the ends do not fit the text
    /// (not increasing, or not ending where it does, or not on character boundaries).
    pub fn resumed(id: Arc<str>, event: Option<&str>, text: String, ends: Vec<u32>, now_ms: u64) -> Option<Self> {
        let fits = ends.windows(2).all(|w| w[0] <= w[1])
            && ends.last().map_or(text.is_empty(), |&last| last as usize == text.len())
            && ends.iter().all(|&end| text.is_char_boundary(end as usize));
        fits.then(|| Self { id, event: event.map(Box::from), seq: ends.len() as u64, text, touched_ms: now_ms, ends })
    }

    /// The data of the message a finished stream becomes: `{"stream":<id>,"text":<text>}`.
    pub fn message_data(&self) -> Box<serde_json::value::RawValue> {
        #[derive(serde::Serialize)]
        struct Finished<'a> {
            stream: &'a str,
            text: &'a str,
        }
        // Two strings: serializing cannot fail.
        serde_json::value::to_raw_value(&Finished { stream: &self.id, text: &self.text })
            .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned())
    }

    /// The text added after append `seq` (all of it after 0); `None` when `seq` is past the
    /// stream's (a client that holds more than the stream has is not this stream's).
    pub fn text_after(&self, seq: u64) -> Option<&str> {
        let from = match seq {
            0 => 0,
            s => *self.ends.get(usize::try_from(s - 1).ok()?)? as usize,
        };
        self.text.get(from..)
    }
}

// === impl OpenStreams ===

impl OpenStreams {
    /// Opens stream `id` (for an `event`), unless the channel already holds `max_open` streams.
    pub fn start(
        &mut self,
        id: Arc<str>,
        event: Option<&str>,
        now_ms: u64,
        max_open: usize,
    ) -> Result<&OpenStream, StreamError> {
        if self.open.len() >= max_open {
            return Err(StreamError::TooMany(max_open));
        }
        let event = event.map(Box::from);
        self.open.push(OpenStream { id, event, text: String::new(), seq: 0, touched_ms: now_ms, ends: Vec::new() });
        Ok(&self.open[self.open.len() - 1])
    }

    /// Appends `delta` to stream `id`, unless its text would pass `max_bytes`; the stream after
    /// it (its `seq` numbers this append).
    pub fn append(&mut self, id: &str, delta: &str, now_ms: u64, max_bytes: usize) -> Result<&OpenStream, StreamError> {
        let stream = self.find(id)?;
        if stream.text.len() + delta.len() > max_bytes {
            return Err(StreamError::TooLong(max_bytes));
        }
        stream.text.push_str(delta);
        stream.ends.push(u32::try_from(stream.text.len()).unwrap_or(u32::MAX));
        stream.seq += 1;
        stream.touched_ms = now_ms;
        Ok(stream)
    }

    /// Closes stream `id` and hands it back, to finish (publish its text) or abort.
    pub fn close(&mut self, id: &str) -> Result<OpenStream, StreamError> {
        let at = self.open.iter().position(|s| &*s.id == id).ok_or_else(|| StreamError::Unknown(Arc::from(id)))?;
        Ok(self.open.swap_remove(at))
    }

    /// Closes every stream not touched for `idle_ms` at `now_ms` and hands them back (to be
    /// aborted).
    pub fn expire(&mut self, now_ms: u64, idle_ms: u64) -> Vec<OpenStream> {
        let mut expired = Vec::new();
        let mut i = 0;
        while i < self.open.len() {
            if now_ms.saturating_sub(self.open[i].touched_ms) >= idle_ms {
                expired.push(self.open.swap_remove(i));
            } else {
                i += 1;
            }
        }
        expired
    }

    /// Folds `operation` on stream `id`, made elsewhere, into this copy (no limits: the place
    /// that made it applied them).
    pub fn fold(&mut self, id: &str, operation: Operation<'_>, now_ms: u64) -> Fold {
        let held = self.open.iter().position(|s| &*s.id == id);
        match (operation, held) {
            (Operation::Start { .. }, Some(_)) | (Operation::Close, None) => Fold::Known,
            (Operation::Start { event }, None) => {
                let _ = self.start(Arc::from(id), event, now_ms, usize::MAX);
                Fold::Applied
            }
            (Operation::Close, Some(at)) => {
                self.open.swap_remove(at);
                Fold::Applied
            }
            (Operation::Append { .. }, None) => Fold::OutOfLine,
            (Operation::Append { seq, delta }, Some(at)) => match seq.cmp(&(self.open[at].seq + 1)) {
                std::cmp::Ordering::Less => Fold::Known,
                std::cmp::Ordering::Greater => Fold::OutOfLine,
                std::cmp::Ordering::Equal => {
                    let _ = self.append(id, delta, now_ms, usize::MAX);
                    Fold::Applied
                }
            },
        }
    }

    /// Makes this copy hold exactly `streams`, as read elsewhere at one instant. Returns what
    /// changed for subscribers: the streams now ahead of what the copy held (new ones, or
    /// with more appends: they get the text so far), and the streams the copy held that are
    /// gone (finished or aborted meanwhile).
    pub fn replace(&mut self, streams: Vec<OpenStream>) -> Replaced {
        let mut held = std::mem::take(&mut self.open);
        let mut ahead = Vec::new();
        for stream in streams {
            match held.iter().position(|h| h.id == stream.id) {
                // One held further (an append folded in after the snapshot was read) keeps
                // what it holds.
                Some(at) if held[at].seq >= stream.seq => self.open.push(held.swap_remove(at)),
                at => {
                    if let Some(at) = at {
                        held.swap_remove(at);
                    }
                    ahead.push(Arc::clone(&stream.id));
                    self.open.push(stream);
                }
            }
        }
        Replaced { ahead, gone: held }
    }

    /// The open streams, oldest first unless some were closed in between.
    pub fn iter(&self) -> impl Iterator<Item = &OpenStream> {
        self.open.iter()
    }

    /// Whether no stream is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    fn find(&mut self, id: &str) -> Result<&mut OpenStream, StreamError> {
        self.open.iter_mut().find(|s| &*s.id == id).ok_or_else(|| StreamError::Unknown(Arc::from(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn appends_build_the_text_and_number_themselves() {
        let mut streams = OpenStreams::default();
        assert_eq!(streams.start(id("a"), Some("answer"), 0, 4).unwrap().seq, 0);
        let seqs: Vec<u64> =
            ["Hel", "lo", ", world"].iter().map(|d| streams.append("a", d, 1, 100).unwrap().seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        let closed = streams.close("a").unwrap();
        assert_eq!((closed.text.as_str(), closed.event.as_deref(), closed.seq), ("Hello, world", Some("answer"), 3));
        assert!(streams.is_empty());
        assert_eq!(streams.append("a", "x", 2, 100), Err(StreamError::Unknown(id("a"))), "closed: no more appends");
        assert_eq!(streams.close("a"), Err(StreamError::Unknown(id("a"))), "closed once");
    }

    #[test]
    fn the_text_after_an_append_is_what_later_appends_added() {
        let mut streams = OpenStreams::default();
        streams.start(id("a"), None, 0, 4).unwrap();
        for piece in ["The ", "answer ", "is ", "42"] {
            streams.append("a", piece, 0, 100).unwrap();
        }
        let a = streams.iter().next().unwrap();
        assert_eq!(a.text_after(0), Some("The answer is 42"));
        assert_eq!(a.text_after(2), Some("is 42"));
        assert_eq!(a.text_after(4), Some(""), "up to date");
        assert_eq!(a.text_after(5), None, "ahead of the stream");
    }

    #[test]
    fn the_limits_refuse_and_leave_the_stream_as_it_was() {
        let mut streams = OpenStreams::default();
        streams.start(id("a"), None, 0, 2).unwrap();
        streams.start(id("b"), None, 0, 2).unwrap();
        assert_eq!(streams.start(id("c"), None, 0, 2).unwrap_err(), StreamError::TooMany(2));
        streams.append("a", "12345", 0, 8).unwrap();
        assert_eq!(streams.append("a", "6789", 0, 8).unwrap_err(), StreamError::TooLong(8));
        let a = streams.iter().find(|s| &*s.id == "a").unwrap();
        assert_eq!((a.text.as_str(), a.seq), ("12345", 1), "a refused append changes nothing");
    }

    #[test]
    fn a_copy_folds_each_operation_once_and_reports_what_does_not_follow() {
        let mut copy = OpenStreams::default();
        assert_eq!(copy.fold("a", Operation::Append { seq: 1, delta: "x" }, 0), Fold::OutOfLine, "unknown stream");
        assert_eq!(copy.fold("a", Operation::Start { event: Some("answer") }, 0), Fold::Applied);
        assert_eq!(copy.fold("a", Operation::Start { event: None }, 0), Fold::Known);
        assert_eq!(copy.fold("a", Operation::Append { seq: 1, delta: "Hel" }, 0), Fold::Applied);
        assert_eq!(copy.fold("a", Operation::Append { seq: 1, delta: "Hel" }, 0), Fold::Known, "twice");
        assert_eq!(copy.fold("a", Operation::Append { seq: 3, delta: "!" }, 0), Fold::OutOfLine, "2 is missing");
        assert_eq!(copy.fold("a", Operation::Append { seq: 2, delta: "lo" }, 0), Fold::Applied);
        let a = copy.iter().next().unwrap();
        assert_eq!(
            (a.text.as_str(), a.seq, a.event.as_deref(), a.text_after(1)),
            ("Hello", 2, Some("answer"), Some("lo"))
        );
        assert_eq!(copy.fold("a", Operation::Close, 0), Fold::Applied);
        assert_eq!(copy.fold("a", Operation::Close, 0), Fold::Known);
        assert!(copy.is_empty());
    }

    #[test]
    fn a_snapshot_replaces_the_copy_and_says_what_moved_and_what_went() {
        let mut copy = OpenStreams::default();
        for name in ["kept", "behind", "gone"] {
            copy.fold(name, Operation::Start { event: None }, 0);
        }
        copy.fold("kept", Operation::Append { seq: 1, delta: "ab" }, 0);
        let read = |id: &str, text: &str, ends: Vec<u32>| OpenStream::resumed(self::id(id), None, text.into(), ends, 0);
        let snapshot = vec![
            read("kept", "ab", vec![2]).unwrap(),
            read("behind", "xyz", vec![1, 3]).unwrap(),
            read("new", "", vec![]).unwrap(),
        ];
        let replaced = copy.replace(snapshot);
        assert_eq!(replaced.ahead, [id("behind"), id("new")]);
        assert_eq!(replaced.gone.iter().map(|s| &*s.id).collect::<Vec<_>>(), ["gone"]);
        let behind = copy.iter().find(|s| &*s.id == "behind").unwrap();
        assert_eq!((behind.seq, behind.text_after(1)), (2, Some("yz")), "its ends come with it");
        assert_eq!(copy.fold("behind", Operation::Append { seq: 3, delta: "!" }, 0), Fold::Applied);
    }

    #[test]
    fn a_stream_read_back_must_fit_its_ends() {
        let read = |text: &str, ends: Vec<u32>| OpenStream::resumed(id("a"), None, text.into(), ends, 0);
        assert!(read("", vec![]).is_some());
        assert!(read("ab", vec![1, 2]).is_some());
        assert!(read("ab", vec![]).is_none(), "text without appends");
        assert!(read("ab", vec![2, 1]).is_none(), "not increasing");
        assert!(read("ab", vec![1]).is_none(), "not ending with the text");
        assert!(read("é", vec![1, 2]).is_none(), "inside a character");
    }

    #[test]
    fn idle_streams_expire_and_busy_ones_stay() {
        let mut streams = OpenStreams::default();
        for name in ["idle", "busy", "also-idle"] {
            streams.start(id(name), None, 0, 8).unwrap();
        }
        streams.append("busy", "x", 9_000, 100).unwrap();
        let mut expired: Vec<String> = streams.expire(10_000, 5_000).into_iter().map(|s| s.id.to_string()).collect();
        expired.sort();
        assert_eq!(expired, ["also-idle", "idle"]);
        assert_eq!(streams.iter().map(|s| &*s.id).collect::<Vec<_>>(), ["busy"]);
    }
}
