//! A channel's open streams: messages written a piece at a time — an AI answer token by token —
//! before they become one message of the channel.
//!
//! A stream holds text (an answer token by token), or JSON items (a JSON stream: tool calls,
//! structured output, one JSON value per append). A JSON stream keeps its items as lines of
//! compact JSON, so both kinds share the offsets below; pushes and the finished message carry
//! them as an array (`items`).
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

use std::{borrow::Cow, sync::Arc};

use serde_json::value::RawValue;

/// An open stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenStream {
    /// The stream's id, unique within its channel while it is open.
    pub id: Arc<str>,
    /// The event name of the message it becomes (`None`: a plain `message`).
    pub event: Option<Box<str>>,
    /// Whether it holds JSON items (one compact JSON line each) rather than text.
    pub json: bool,
    /// The text so far (a JSON stream: its items, each a line of compact JSON).
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
    /// The append is not of the stream's kind: JSON (`true`) or text.
    #[error("{}", if *.0 { "this is a JSON stream: append any JSON value, as {\"append\":<value>}" } else { "this is a text stream: append text (a JSON string, or a text body)" })]
    Kind(bool),
}

/// A piece to append, as a caller has it.
#[derive(Clone, Copy, Debug)]
pub enum Delta<'a> {
    /// Text (a text body).
    Text(&'a str),
    /// A JSON value: an item of a JSON stream, or, when it is a string, text.
    Json(&'a RawValue),
}

/// The wire error of a refused stream operation: an unknown stream is `not_found`, a text too
/// long `message_too_large`, a channel with too many open streams `rate_limited`, an append
/// of the wrong kind `bad_request`.
impl From<StreamError> for crate::ProtocolError {
    fn from(e: StreamError) -> Self {
        let code = match e {
            StreamError::Unknown(_) => crate::ErrorCode::NotFound,
            StreamError::TooLong(_) => crate::ErrorCode::MessageTooLarge,
            StreamError::TooMany(_) => crate::ErrorCode::RateLimited,
            StreamError::Kind(_) => crate::ErrorCode::BadRequest,
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

/// A stream's content in a push: text, or JSON items (lines of compact JSON, each ending with a
/// newline) carried as an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content<'a> {
    /// Text.
    Text(&'a str),
    /// JSON items, one line each.
    Items(&'a str),
}

/// JSON items (lines of compact JSON, each ending with a newline) as a JSON array.
pub fn items(lines: &str) -> String {
    let mut array = String::with_capacity(lines.len() + 2);
    array.push('[');
    for (i, line) in lines.lines().enumerate() {
        if i > 0 {
            array.push(',');
        }
        array.push_str(line);
    }
    array.push(']');
    array
}

/// `json` (valid JSON) without the whitespace outside its strings: one line. Not a round trip
/// through `serde_json::Value`, which would rewrite numbers (`1e2` as `100.0`, big integers as
/// floats): the item stays as its publisher wrote it.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            (escaped, in_string) = (!escaped && c == '\\', escaped || c != '"');
        } else if c.is_ascii_whitespace() {
            continue;
        } else {
            in_string = c == '"';
        }
        out.push(c);
    }
    out
}

// === impl Delta ===

impl<'a> Delta<'a> {
    /// The piece as a stream holds it: for a text stream (`json` false) the text, or a JSON
    /// string's value; for a JSON stream the value as a line of compact JSON. `Kind` when it
    /// cannot be: text for a JSON stream, JSON other than a string for a text stream.
    pub fn for_stream(self, json: bool) -> Result<Cow<'a, str>, StreamError> {
        match (self, json) {
            (Self::Text(text), false) => Ok(Cow::Borrowed(text)),
            (Self::Json(value), false) => {
                serde_json::from_str::<String>(value.get()).map(Cow::Owned).map_err(|_| StreamError::Kind(false))
            }
            (Self::Json(value), true) => Ok(Cow::Owned(compact(value.get()) + "\n")),
            (Self::Text(_), true) => Err(StreamError::Kind(true)),
        }
    }
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
        /// Whether it holds JSON items.
        json: bool,
    },
    /// Append number `seq` added `delta`.
    Append {
        /// The append's number.
        seq: u64,
        /// What it added, as the stream holds it (a JSON stream: a line of compact JSON).
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
    pub fn resumed(
        id: Arc<str>,
        event: Option<&str>,
        json: bool,
        text: String,
        ends: Vec<u32>,
        now_ms: u64,
    ) -> Option<Self> {
        let fits = ends.windows(2).all(|w| w[0] <= w[1])
            && ends.last().map_or(text.is_empty(), |&last| last as usize == text.len())
            && ends.iter().all(|&end| text.is_char_boundary(end as usize));
        let event = event.map(Box::from);
        fits.then_some(Self { id, event, json, seq: ends.len() as u64, text, touched_ms: now_ms, ends })
    }

    /// The data of the message a finished stream becomes: `{"stream":<id>,"text":<text>}`, or
    /// for a JSON stream `{"stream":<id>,"items":[<item>,…]}`.
    pub fn message_data(&self) -> Box<RawValue> {
        let id = serde_json::to_string(&*self.id).unwrap_or_default();
        let json = if self.json {
            format!("{{\"stream\":{id},\"items\":{}}}", items(&self.text))
        } else {
            format!("{{\"stream\":{id},\"text\":{}}}", serde_json::to_string(&self.text).unwrap_or_default())
        };
        RawValue::from_string(json).unwrap_or_else(|_| RawValue::NULL.to_owned())
    }

    /// What push bodies and messages carry of `content` (the whole text, or a part of it that
    /// ends with an append): for a text stream the text, for a JSON stream the array of its
    /// items.
    pub fn carried<'a>(&self, content: &'a str) -> Content<'a> {
        if self.json { Content::Items(content) } else { Content::Text(content) }
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
        json: bool,
        now_ms: u64,
        max_open: usize,
    ) -> Result<&OpenStream, StreamError> {
        if self.open.len() >= max_open {
            return Err(StreamError::TooMany(max_open));
        }
        let event = event.map(Box::from);
        let text = String::new();
        self.open.push(OpenStream { id, event, json, text, seq: 0, touched_ms: now_ms, ends: Vec::new() });
        Ok(&self.open[self.open.len() - 1])
    }

    /// Appends `delta` to stream `id`, unless its text would pass `max_bytes`; the stream after
    /// it (its `seq` numbers this append).
    pub fn append(
        &mut self,
        id: &str,
        delta: Delta<'_>,
        now_ms: u64,
        max_bytes: usize,
    ) -> Result<&OpenStream, StreamError> {
        let stream = self.find(id)?;
        let delta = delta.for_stream(stream.json)?;
        Self::add(stream, &delta, now_ms, max_bytes)
    }

    /// Adds `delta`, as the stream holds it, unless its text would pass `max_bytes`.
    fn add<'s>(
        stream: &'s mut OpenStream,
        delta: &str,
        now_ms: u64,
        max_bytes: usize,
    ) -> Result<&'s OpenStream, StreamError> {
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
            (Operation::Start { event, json }, None) => {
                let _ = self.start(Arc::from(id), event, json, now_ms, usize::MAX);
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
                    let _ = Self::add(&mut self.open[at], delta, now_ms, usize::MAX);
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

    /// How many streams are open.
    pub fn len(&self) -> usize {
        self.open.len()
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
        assert_eq!(streams.start(id("a"), Some("answer"), false, 0, 4).unwrap().seq, 0);
        let seqs: Vec<u64> =
            ["Hel", "lo", ", world"].iter().map(|d| streams.append("a", Delta::Text(d), 1, 100).unwrap().seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        let closed = streams.close("a").unwrap();
        assert_eq!((closed.text.as_str(), closed.event.as_deref(), closed.seq), ("Hello, world", Some("answer"), 3));
        assert!(streams.is_empty());
        assert_eq!(
            streams.append("a", Delta::Text("x"), 2, 100),
            Err(StreamError::Unknown(id("a"))),
            "closed: no more appends"
        );
        assert_eq!(streams.close("a"), Err(StreamError::Unknown(id("a"))), "closed once");
    }

    #[test]
    fn the_text_after_an_append_is_what_later_appends_added() {
        let mut streams = OpenStreams::default();
        streams.start(id("a"), None, false, 0, 4).unwrap();
        for piece in ["The ", "answer ", "is ", "42"] {
            streams.append("a", Delta::Text(piece), 0, 100).unwrap();
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
        streams.start(id("a"), None, false, 0, 2).unwrap();
        streams.start(id("b"), None, false, 0, 2).unwrap();
        assert_eq!(streams.start(id("c"), None, false, 0, 2).unwrap_err(), StreamError::TooMany(2));
        streams.append("a", Delta::Text("12345"), 0, 8).unwrap();
        assert_eq!(streams.append("a", Delta::Text("6789"), 0, 8).unwrap_err(), StreamError::TooLong(8));
        let a = streams.iter().find(|s| &*s.id == "a").unwrap();
        assert_eq!((a.text.as_str(), a.seq), ("12345", 1), "a refused append changes nothing");
    }

    #[test]
    fn a_copy_folds_each_operation_once_and_reports_what_does_not_follow() {
        let mut copy = OpenStreams::default();
        assert_eq!(copy.fold("a", Operation::Append { seq: 1, delta: "x" }, 0), Fold::OutOfLine, "unknown stream");
        assert_eq!(copy.fold("a", Operation::Start { event: Some("answer"), json: false }, 0), Fold::Applied);
        assert_eq!(copy.fold("a", Operation::Start { event: None, json: false }, 0), Fold::Known);
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
            copy.fold(name, Operation::Start { event: None, json: false }, 0);
        }
        copy.fold("kept", Operation::Append { seq: 1, delta: "ab" }, 0);
        let read =
            |id: &str, text: &str, ends: Vec<u32>| OpenStream::resumed(self::id(id), None, false, text.into(), ends, 0);
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
        let read = |text: &str, ends: Vec<u32>| OpenStream::resumed(id("a"), None, false, text.into(), ends, 0);
        assert!(read("", vec![]).is_some());
        assert!(read("ab", vec![1, 2]).is_some());
        assert!(read("ab", vec![]).is_none(), "text without appends");
        assert!(read("ab", vec![2, 1]).is_none(), "not increasing");
        assert!(read("ab", vec![1]).is_none(), "not ending with the text");
        assert!(read("é", vec![1, 2]).is_none(), "inside a character");
    }

    #[test]
    fn a_json_stream_holds_compact_items_and_finishes_as_an_array() {
        let mut streams = OpenStreams::default();
        streams.start(id("j"), None, true, 0, 4).unwrap();
        let raw = |json: &str| RawValue::from_string(json.to_string()).unwrap();
        let (call, text) = (raw("{ \"tool\": \"search\",\n  \"q\": \"a \\\" b\" }"), raw("\"a string item\""));
        streams.append("j", Delta::Json(&call), 0, 100).unwrap();
        streams.append("j", Delta::Json(&text), 0, 100).unwrap();
        assert_eq!(streams.append("j", Delta::Text("plain"), 0, 100).unwrap_err(), StreamError::Kind(true));
        let j = streams.iter().next().unwrap();
        assert_eq!(j.text, "{\"tool\":\"search\",\"q\":\"a \\\" b\"}\n\"a string item\"\n", "one compact line each");
        assert_eq!(j.carried(j.text_after(1).unwrap()), Content::Items("\"a string item\"\n"));
        let data: serde_json::Value = serde_json::from_str(j.message_data().get()).unwrap();
        assert_eq!(
            data,
            serde_json::json!({ "stream": "j", "items": [{ "tool": "search", "q": "a \" b" }, "a string item"] })
        );
        assert_eq!(items(""), "[]");
    }

    #[test]
    fn a_text_stream_takes_text_or_a_json_string() {
        let mut streams = OpenStreams::default();
        streams.start(id("t"), None, false, 0, 4).unwrap();
        let raw = |json: &str| RawValue::from_string(json.to_string()).unwrap();
        streams.append("t", Delta::Json(&raw("\"caf\\u00e9 \"")), 0, 100).unwrap();
        streams.append("t", Delta::Text("ok"), 0, 100).unwrap();
        assert_eq!(streams.append("t", Delta::Json(&raw("{\"a\":1}")), 0, 100).unwrap_err(), StreamError::Kind(false));
        let t = streams.iter().next().unwrap();
        assert_eq!((t.text.as_str(), t.seq), ("café ok", 2));
        let data: serde_json::Value = serde_json::from_str(t.message_data().get()).unwrap();
        assert_eq!(data, serde_json::json!({ "stream": "t", "text": "café ok" }));
    }

    #[test]
    fn idle_streams_expire_and_busy_ones_stay() {
        let mut streams = OpenStreams::default();
        for name in ["idle", "busy", "also-idle"] {
            streams.start(id(name), None, false, 0, 8).unwrap();
        }
        streams.append("busy", Delta::Text("x"), 9_000, 100).unwrap();
        let mut expired: Vec<String> = streams.expire(10_000, 5_000).into_iter().map(|s| s.id.to_string()).collect();
        expired.sort();
        assert_eq!(expired, ["also-idle", "idle"]);
        assert_eq!(streams.iter().map(|s| &*s.id).collect::<Vec<_>>(), ["busy"]);
    }
}
