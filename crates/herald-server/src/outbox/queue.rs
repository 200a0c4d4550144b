//! One connection's outgoing state as a state machine with no I/O, no clock and no lock: the
//! queue and its bounds, the slow-consumer rule, the encoder's state and the bytes the socket
//! has not taken yet.
//!
//! It works in the manner of quinn-proto's `poll_transmit`: it never touches a socket, it hands
//! out the bytes to write. A push to a connection whose socket has nothing waiting hands the
//! frame's bytes to the caller's `transmit` (which writes what the socket takes now and gives
//! back the rest, in the same call: no bytes travel back and forth on the delivery path). What
//! the socket did not take waits in the backlog ([`Queue::backlog`]) for the connection's task
//! to write when the socket drains. Everything else — a long poll's queue, the bounds, the
//! close — is decided here. [`super::Outbox`] holds a `Queue` under its lock with the socket
//! beside it, so the one write happens under the same lock as the decision, and frames leave
//! in push order.

use std::{collections::VecDeque, sync::Arc};

use bytes::Bytes;
use herald_core::DisconnectCode;

use crate::{
    frame::Frame,
    publication::Message,
    wire::{Encoder, Segments, Unsent},
};

/// Bounds of one queue. The zero value disconnects on the first frame.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    /// Most frames queued.
    pub frames: usize,
    /// Most bytes queued (message bytes in a queue, wire bytes unsent to a socket).
    pub bytes: usize,
}

/// What a [`Queue::push`] did.
#[must_use]
#[derive(Clone, Copy, Debug)]
pub enum Push {
    /// Taken: handed to `transmit` (what the socket did not take now waits in the backlog), or
    /// kept in the queue (no socket yet) or behind the backlog. `bytes`: the wire bytes the
    /// frame became (0 while it waits unencoded); `wake`: the connection's task has something
    /// new to do.
    Taken {
        /// Wire bytes of the frame, once encoded.
        bytes: usize,
        /// Whether the connection's task must be woken.
        wake: bool,
    },
    /// Not taken: the connection is closing.
    Refused,
    /// Not taken: it would pass the bounds, so the connection now closes as a slow consumer
    /// (the caller counts the disconnect and wakes the task).
    Overflowed,
}

/// What a [`Queue::push_messages`] asks of the caller.
#[must_use]
pub enum Batch {
    /// Nothing waits for the socket: write these bytes now (one `writev`), then hand back the
    /// rest with [`Queue::unwritten_batch`].
    Transmit(Unsent),
    /// A queue or a backlog already: push the messages one by one, so the bounds apply to each.
    OneByOne,
    /// Not taken: the connection is closing.
    Refused,
}

/// What a [`Queue::push_raw`] asks of the caller.
#[must_use]
pub enum Raw {
    /// Nothing waits: write the bytes now, and hand back what the socket did not take.
    Transmit,
    /// Kept behind the backlog.
    Kept,
    /// Dropped: no socket is attached, or past the bounds of a connection already closing.
    Dropped,
    /// Dropped: past the bounds; the connection now closes as a slow consumer.
    Overflowed,
}

/// The outgoing state of one connection. Its zero value ([`Queue::new`] with the limits) is an
/// open, empty, unattached queue.
pub struct Queue {
    limits: QueueLimits,
    /// Frames waiting unencoded: a long poll's, or a stream's before it attaches. Once
    /// attached: the newest message of each latest-only channel, held while a backlog waits
    /// for the socket ([`Queue::push_latest`]); they follow the backlog, before any later frame.
    frames: VecDeque<Frame>,
    /// What `frames` counts toward the byte bound: a queue's message bytes, or — attached —
    /// the text of the held appends.
    weight: usize,
    /// Wire bytes the socket has not taken, oldest first.
    unsent: Unsent,
    /// How frames become bytes, once a socket is attached.
    encoder: Option<Box<dyn Encoder>>,
    /// Frames put in the backlog since it last drained; bounds the backlog's frames.
    backlog_frames: usize,
    close: Option<DisconnectCode>,
}

// === impl Queue ===

impl Queue {
    /// An open, empty queue bounded by `limits`, with no socket attached.
    pub fn new(limits: QueueLimits) -> Self {
        Self {
            limits,
            frames: VecDeque::new(),
            weight: 0,
            unsent: Unsent::default(),
            encoder: None,
            backlog_frames: 0,
            close: None,
        }
    }

    /// Takes `frame`: to `transmit` now (when nothing waits for the socket, it gets the
    /// frame's bytes and returns those the socket did not take), to keep, or not at all (see
    /// [`Push`]).
    pub fn push(&mut self, frame: Frame, transmit: impl FnOnce(Segments) -> Segments) -> Push {
        if self.close.is_some() {
            return Push::Refused;
        }
        if self.encoder.is_some() {
            self.release_held();
        }
        if let Some(encoder) = self.encoder.as_mut() {
            let mut segments = Segments::default();
            encoder.encode(frame, &mut segments);
            let bytes = segments.len();
            if self.unsent.is_empty() {
                let rest = transmit(segments);
                let wake = !rest.is_empty();
                if wake {
                    self.backlog_frames = 1;
                    self.unsent.extend(rest);
                }
                return Push::Taken { bytes, wake };
            }
            if self.backlog_frames >= self.limits.frames || self.unsent.bytes() + bytes > self.limits.bytes {
                // The backlog stays (it may end mid-frame) and drains before the close.
                let _ = self.overflow();
                return Push::Overflowed;
            }
            self.backlog_frames += 1;
            self.unsent.extend(segments);
            return Push::Taken { bytes, wake: false };
        }
        let weight = frame_weight(&frame);
        if self.frames.len() >= self.limits.frames || self.weight + weight > self.limits.bytes {
            self.frames = VecDeque::new();
            self.weight = 0;
            let _ = self.overflow();
            return Push::Overflowed;
        }
        self.weight += weight;
        self.frames.push_back(frame);
        Push::Taken { bytes: 0, wake: self.frames.len() == 1 }
    }

    /// Takes the newest message of a latest-only (conflated) channel. With nothing waiting for
    /// the socket it goes out as [`Queue::push`] sends a frame. Behind a backlog it is held,
    /// replacing one of the same channel held before, and follows the backlog; in a queue (a
    /// long poll's) it replaces the queued message of its channel. Either way the connection
    /// gets the newest message instead of every one in between, and holds at most one per
    /// channel: a latest-only channel never makes a slow consumer.
    pub fn push_latest(&mut self, message: Message, transmit: impl FnOnce(Segments) -> Segments) -> Push {
        if self.close.is_some() {
            return Push::Refused;
        }
        let attached = self.encoder.is_some();
        if attached && self.unsent.is_empty() {
            return self.push(Frame::Message(message), transmit);
        }
        let same_channel = |f: &Frame| matches!(f, Frame::Message(m) if m.channel == message.channel);
        if let Some(slot) = self.frames.iter_mut().rev().find(|f| same_channel(f)) {
            if !attached {
                self.weight = self.weight - frame_weight(slot) + message.weight();
            }
            *slot = Frame::Message(message);
            return Push::Taken { bytes: 0, wake: false };
        }
        if attached {
            self.frames.push_back(Frame::Message(message));
            return Push::Taken { bytes: 0, wake: false };
        }
        self.push(Frame::Message(message), transmit)
    }

    /// Takes an append to an open stream (a [`Frame::Stream`] with its piece). With nothing
    /// waiting for the socket it goes out as [`Queue::push`] sends a frame. Behind a backlog it
    /// is held and merged into the held append of its stream before it: a connection that fell
    /// behind gets the text in fewer, larger pieces and loses none. Held appends count toward
    /// the byte bound.
    pub fn push_append(&mut self, frame: Frame, transmit: impl FnOnce(Segments) -> Segments) -> Push {
        if self.close.is_some() {
            return Push::Refused;
        }
        let behind = self.encoder.is_some() && !(self.unsent.is_empty() && self.frames.is_empty());
        let Frame::Stream { piece: Some(next), .. } = &frame else { return self.push(frame, transmit) };
        if !behind {
            return self.push(frame, transmit);
        }
        let added = next.text.len();
        if self.unsent.bytes() + self.weight + added > self.limits.bytes {
            let _ = self.overflow();
            return Push::Overflowed;
        }
        self.weight += added;
        let same_stream = |f: &Frame| matches!(f, Frame::Stream { piece: Some(p), .. } if p.stream == next.stream && p.channel == next.channel);
        let merged = self.frames.iter().rposition(same_stream).and_then(|at| match &self.frames[at] {
            Frame::Stream { piece: Some(before), .. } if before.is_followed_by(next) => Some((at, before.merged(next))),
            _ => None,
        });
        match merged {
            Some((at, merged)) => self.frames[at] = Arc::new(merged).frame(),
            None => self.frames.push_back(frame),
        }
        Push::Taken { bytes: 0, wake: false }
    }

    /// Encodes the held frames (the newest messages of latest-only channels, merged appends)
    /// behind the backlog.
    fn release_held(&mut self) {
        self.weight = 0;
        let Some(encoder) = self.encoder.as_mut() else { return };
        for frame in self.frames.drain(..) {
            let mut segments = Segments::default();
            encoder.encode(frame, &mut segments);
            self.unsent.extend(segments);
            self.backlog_frames += 1;
        }
    }

    /// Takes messages of one channel, in order: with a socket attached and nothing waiting,
    /// they come back encoded as one transmit (see [`Batch`]).
    pub fn push_messages(&mut self, messages: &[Message]) -> Batch {
        if self.close.is_some() {
            return Batch::Refused;
        }
        let Some(encoder) = self.encoder.as_mut().filter(|_| self.unsent.is_empty()) else {
            return Batch::OneByOne;
        };
        let mut batch = Unsent::default();
        for m in messages {
            let mut segments = Segments::default();
            encoder.encode(Frame::Message(m.clone()), &mut segments);
            batch.extend(segments);
        }
        Batch::Transmit(batch)
    }

    /// Hands back what the socket did not take of a [`Batch::Transmit`] of `frames` messages
    /// (`drained`: it took everything). Returns whether the connection's task must be woken.
    pub fn unwritten_batch(&mut self, rest: Unsent, drained: bool, frames: usize) -> bool {
        if drained {
            return false;
        }
        self.backlog_frames = frames;
        self.unsent = rest;
        true
    }

    /// Takes `len` bytes of whole protocol frames (a WebSocket pong or close) to go behind
    /// everything already written; accepted even while closing (see [`Raw`]).
    pub fn push_raw(&mut self, len: usize) -> Raw {
        if self.encoder.is_none() {
            return Raw::Dropped;
        }
        self.release_held();
        if self.unsent.is_empty() {
            return Raw::Transmit;
        }
        if self.unsent.bytes() + len > self.limits.bytes {
            return if self.overflow() { Raw::Overflowed } else { Raw::Dropped };
        }
        Raw::Kept
    }

    /// Keeps raw bytes behind the backlog: after [`Raw::Kept`], or the part of a
    /// [`Raw::Transmit`] the socket did not take. Returns whether the task must be woken.
    pub fn keep_raw(&mut self, rest: Bytes) -> bool {
        if rest.is_empty() {
            return false;
        }
        let wake = self.unsent.is_empty();
        let mut segments = Segments::default();
        segments.push(rest);
        self.unsent.extend(segments);
        wake
    }

    /// Closes as a slow consumer; returns whether this is the first close (an earlier close
    /// keeps its code).
    fn overflow(&mut self) -> bool {
        let first = self.close.is_none();
        self.close.get_or_insert(DisconnectCode::SLOW_CONSUMER);
        first
    }

    /// From now on frames are encoded by `encoder`: first `lead`, then the frames queued
    /// before, go to the backlog for the task's next [`backlog`](Queue::backlog) write.
    pub fn attach(&mut self, mut encoder: Box<dyn Encoder>, lead: Segments) {
        self.unsent.extend(lead);
        let mut backlog_frames = 0;
        for frame in std::mem::take(&mut self.frames) {
            let mut segments = Segments::default();
            encoder.encode(frame, &mut segments);
            self.unsent.extend(segments);
            backlog_frames += 1;
        }
        self.weight = 0;
        self.backlog_frames = backlog_frames;
        self.encoder = Some(encoder);
    }

    /// The bytes waiting for the attached socket, to write as far as it takes them; `None`
    /// when no socket is attached. Call [`Queue::drained`] once it took everything.
    pub fn backlog(&mut self) -> Option<&mut Unsent> {
        self.encoder.as_ref()?;
        Some(&mut self.unsent)
    }

    /// The socket took the whole backlog. Returns whether more now waits: the newest messages
    /// of latest-only channels held meanwhile, encoded into the backlog to write next.
    pub fn drained(&mut self) -> bool {
        self.backlog_frames = 0;
        self.release_held();
        !self.unsent.is_empty()
    }

    /// The socket is gone: drops the encoder and the backlog, and refuses every later push.
    pub fn detach(&mut self) {
        self.encoder = None;
        self.frames = VecDeque::new();
        self.unsent = Unsent::default();
        self.close.get_or_insert(DisconnectCode::SHUTDOWN);
    }

    /// Asks for a close with `code` after what is already queued. Returns whether this is the
    /// first close asked (the one that counts).
    pub fn close(&mut self, code: DisconnectCode) -> bool {
        if self.close.is_some() {
            return false;
        }
        self.close = Some(code);
        true
    }

    /// The close code, once the connection is closing.
    pub fn closing(&self) -> Option<DisconnectCode> {
        self.close
    }

    /// Takes every queued frame, leaving no queue allocated (an idle connection holds no queue
    /// memory), and the close code once closing (it follows the last frames).
    pub fn take(&mut self) -> (VecDeque<Frame>, Option<DisconnectCode>) {
        self.weight = 0;
        (std::mem::take(&mut self.frames), self.close)
    }

    /// Whether every queued frame is a message.
    pub fn only_messages(&self) -> bool {
        self.frames.iter().all(|frame| matches!(frame, Frame::Message(_)))
    }

    /// Whether frames are waiting or the connection is closing.
    pub fn is_ready(&self) -> bool {
        !self.frames.is_empty() || self.close.is_some()
    }
}

/// What a frame counts for in an unattached queue's byte bound.
fn frame_weight(frame: &Frame) -> usize {
    match frame {
        Frame::Message(m) => m.weight(),
        Frame::Text(b) | Frame::Stream { json: b, .. } => b.len(),
        Frame::Reset { .. } | Frame::Heartbeat => 0,
    }
}

#[cfg(test)]
pub(super) mod tests {
    //! The queue against a simulated socket that takes a given number of bytes per write.

    use super::*;

    /// Encodes a text frame as its bytes, a heartbeat as `.` and a message as `<channel><offset>`.
    struct Plain;

    impl Encoder for Plain {
        fn encode(&mut self, frame: Frame, out: &mut Segments) {
            match frame {
                Frame::Text(b) => out.push(b),
                Frame::Heartbeat => out.push(Bytes::from_static(b".")),
                Frame::Message(m) => out.push(Bytes::from(format!("{}{}", m.channel, m.offset))),
                Frame::Stream { json, .. } => out.push(json),
                Frame::Reset { .. } => {}
            }
        }
    }

    /// Message `offset` of `channel`.
    pub(in crate::outbox) fn message(channel: &str, offset: u64) -> Message {
        let channel = herald_core::ChannelName::new(channel).expect("a valid name");
        let position = herald_core::StreamPosition { epoch: std::sync::Arc::from("e"), offset };
        let data = serde_json::value::RawValue::from_string("1".to_string()).expect("JSON");
        crate::publication::Publication::new(channel, &position, None, &data, 0)
    }

    fn text(s: &str) -> Frame {
        Frame::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// The transmit of a push that must not reach the socket (queued, refused, over a bound).
    fn unreachable(_: Segments) -> Segments {
        panic!("nothing is transmitted here")
    }

    /// A socket that takes at most `room` bytes per write, and what it took.
    #[derive(Default)]
    struct Socket {
        room: usize,
        taken: Vec<u8>,
    }

    impl Socket {
        fn take(&mut self, segments: Segments) -> Segments {
            let n = segments.len().min(self.room);
            let all: Vec<u8> = segments.parts().flat_map(|p| p.to_vec()).collect();
            self.taken.extend_from_slice(&all[..n]);
            segments.after(n)
        }

        /// Pushes the newest message of a latest-only channel.
        fn push_latest(&mut self, queue: &mut Queue, message: Message) -> bool {
            matches!(queue.push_latest(message, |segments| self.take(segments)), Push::Taken { .. })
        }

        /// What the connection's task does when the socket is writable; returns whether
        /// nothing waits any more.
        fn drain(&mut self, queue: &mut Queue) -> bool {
            loop {
                let Some(backlog) = queue.backlog() else { return true };
                let n = backlog.bytes().min(self.room);
                let all: Vec<u8> = backlog.parts().flat_map(|p| p.to_vec()).collect();
                self.taken.extend_from_slice(&all[..n]);
                backlog.advance(n);
                if !backlog.is_empty() {
                    return false;
                }
                if !queue.drained() {
                    return true;
                }
            }
        }

        /// Pushes `frame` with this socket as the transmit; returns whether it was taken.
        fn push(&mut self, queue: &mut Queue, frame: Frame) -> bool {
            matches!(queue.push(frame, |segments| self.take(segments)), Push::Taken { .. })
        }
    }

    fn attached(limits: QueueLimits) -> Queue {
        let mut queue = Queue::new(limits);
        queue.attach(Box::new(Plain), Segments::default());
        queue
    }

    #[test]
    fn bytes_leave_in_push_order_however_the_socket_splits_them() {
        for room in [1, 2, 3, 5, 64] {
            let mut queue = attached(QueueLimits { frames: 100, bytes: 1_000 });
            let mut socket = Socket { room, ..Socket::default() };
            let mut expected = String::new();
            for i in 0..20 {
                let frame = format!("<{i}>");
                assert!(socket.push(&mut queue, text(&frame)), "room {room}: frame {i} taken");
                expected.push_str(&frame);
                if i % 3 == 0 {
                    socket.drain(&mut queue);
                }
            }
            while !socket.drain(&mut queue) {}
            assert_eq!(String::from_utf8_lossy(&socket.taken), expected, "room {room}");
        }
    }

    #[test]
    fn a_backlog_past_its_bounds_closes_as_slow_consumer_and_still_drains() {
        let mut queue = attached(QueueLimits { frames: 3, bytes: 1_000 });
        let mut socket = Socket { room: 0, ..Socket::default() };
        // The first push goes to the socket (which takes nothing): the backlog holds 1 frame.
        assert!(socket.push(&mut queue, text("a")));
        assert!(socket.push(&mut queue, text("b")) && socket.push(&mut queue, text("c")));
        assert!(matches!(queue.push(text("d"), unreachable), Push::Overflowed), "a fourth frame passes the bound");
        assert_eq!(queue.closing(), Some(DisconnectCode::SLOW_CONSUMER));
        assert!(matches!(queue.push(text("e"), unreachable), Push::Refused), "nothing after the close");
        socket.room = 100;
        assert!(socket.drain(&mut queue));
        assert_eq!(socket.taken, b"abc", "what was taken before the close still leaves");
    }

    #[test]
    fn the_byte_bound_counts_unsent_wire_bytes() {
        let mut queue = attached(QueueLimits { frames: 100, bytes: 5 });
        let mut socket = Socket { room: 1, ..Socket::default() };
        assert!(socket.push(&mut queue, text("abcd")), "written in part: 3 bytes wait");
        assert!(socket.push(&mut queue, text("ef")), "5 bytes wait");
        assert!(matches!(queue.push(text("g"), unreachable), Push::Overflowed));
    }

    #[test]
    fn frames_queued_before_the_attach_follow_the_lead() {
        let mut queue = Queue::new(QueueLimits { frames: 10, bytes: 100 });
        assert!(
            matches!(queue.push(text("1"), unreachable), Push::Taken { bytes: 0, wake: true }),
            "the first frame wakes"
        );
        assert!(matches!(queue.push(text("2"), unreachable), Push::Taken { bytes: 0, wake: false }));
        let mut lead = Segments::default();
        lead.push(Bytes::from_static(b"hello:"));
        queue.attach(Box::new(Plain), lead);
        let mut socket = Socket { room: 100, ..Socket::default() };
        assert!(socket.drain(&mut queue));
        assert!(socket.push(&mut queue, Frame::Heartbeat));
        assert_eq!(socket.taken, b"hello:12.");
    }

    #[test]
    fn an_unattached_queue_overflows_by_frames_and_bytes_and_frees_its_memory() {
        let mut queue = Queue::new(QueueLimits { frames: 2, bytes: 100 });
        assert!(matches!(queue.push(text("a"), unreachable), Push::Taken { .. }));
        assert!(matches!(queue.push(text("b"), unreachable), Push::Taken { .. }));
        assert!(matches!(queue.push(text("c"), unreachable), Push::Overflowed));
        let (frames, close) = queue.take();
        assert!(frames.is_empty() && frames.capacity() == 0, "the overflowed queue is dropped");
        assert_eq!(close, Some(DisconnectCode::SLOW_CONSUMER));

        let mut queue = Queue::new(QueueLimits { frames: 10, bytes: 3 });
        assert!(matches!(queue.push(text("ab"), unreachable), Push::Taken { .. }));
        assert!(matches!(queue.push(text("cd"), unreachable), Push::Overflowed), "byte bound");
    }

    #[test]
    fn raw_bytes_go_behind_the_backlog_even_while_closing_and_the_first_close_wins() {
        let mut queue = attached(QueueLimits { frames: 10, bytes: 4 });
        let mut socket = Socket { room: 0, ..Socket::default() };
        assert!(socket.push(&mut queue, text("ab")));
        assert!(queue.close(DisconnectCode::SHUTDOWN));
        assert!(!queue.close(DisconnectCode::STALE), "a second close does not count");
        assert!(matches!(queue.push_raw(2), Raw::Kept), "a close frame still goes out");
        assert!(!queue.keep_raw(Bytes::from_static(b"zz")), "behind a backlog: no new wake-up");
        assert!(matches!(queue.push_raw(1), Raw::Dropped), "past the bound while closing");
        assert_eq!(queue.closing(), Some(DisconnectCode::SHUTDOWN), "the first close keeps its code");
        socket.room = 10;
        assert!(socket.drain(&mut queue));
        assert_eq!(socket.taken, b"abzz");
    }

    #[test]
    fn a_full_socket_gets_the_newest_message_of_a_latest_only_channel_after_its_backlog() {
        let mut queue = attached(QueueLimits { frames: 3, bytes: 1_000 });
        let mut socket = Socket { room: 0, ..Socket::default() };
        assert!(socket.push(&mut queue, text("a|")), "the socket is full: a backlog");
        // Far more than the frame bound, and never a slow consumer: one held per channel.
        for offset in 1..=50 {
            assert!(socket.push_latest(&mut queue, message("x", offset)));
            assert!(socket.push_latest(&mut queue, message("y", offset * 10)));
        }
        assert_eq!(queue.closing(), None);
        socket.room = 1_000;
        assert!(socket.drain(&mut queue));
        assert_eq!(String::from_utf8_lossy(&socket.taken), "a|x50y500", "the backlog, then the newest of each");
        // A socket that keeps up gets every message.
        assert!(socket.push_latest(&mut queue, message("x", 51)) && socket.push_latest(&mut queue, message("x", 52)));
        assert_eq!(String::from_utf8_lossy(&socket.taken), "a|x50y500x51x52");
    }

    #[test]
    fn a_later_frame_or_close_goes_after_the_held_messages() {
        let mut queue = attached(QueueLimits { frames: 10, bytes: 1_000 });
        let mut socket = Socket { room: 0, ..Socket::default() };
        assert!(socket.push(&mut queue, text("a|")));
        assert!(socket.push_latest(&mut queue, message("x", 1)));
        assert!(socket.push(&mut queue, text("|b|")), "a reply after a held message");
        assert!(socket.push_latest(&mut queue, message("x", 2)));
        assert!(matches!(queue.push_raw(5), Raw::Kept));
        assert!(!queue.keep_raw(Bytes::from_static(b"|bye")));
        socket.room = 1_000;
        assert!(socket.drain(&mut queue));
        assert_eq!(String::from_utf8_lossy(&socket.taken), "a|x1|b|x2|bye", "push order kept around the held ones");
    }

    #[test]
    fn a_long_polls_queue_keeps_the_newest_message_of_a_latest_only_channel() {
        let mut queue = Queue::new(QueueLimits { frames: 3, bytes: 10_000 });
        for offset in 1..=20 {
            assert!(matches!(queue.push_latest(message("x", offset), unreachable), Push::Taken { .. }));
        }
        assert!(matches!(queue.push(text("t"), unreachable), Push::Taken { .. }));
        assert!(matches!(queue.push_latest(message("y", 7), unreachable), Push::Taken { .. }));
        let (frames, close) = queue.take();
        let got: Vec<String> = frames
            .iter()
            .map(|f| match f {
                Frame::Message(m) => format!("{}{}", m.channel, m.offset),
                _ => "t".to_string(),
            })
            .collect();
        assert_eq!((got, close), (vec!["x20".to_string(), "t".to_string(), "y7".to_string()], None));
    }

    /// Append `seq` of stream `s1` in `chat`, holding `text`.
    fn append(seq: u64, text: &str) -> Frame {
        let piece = crate::frame::Piece {
            channel: herald_core::ChannelName::new("chat").expect("a valid name"),
            stream: std::sync::Arc::from("s1"),
            event: None,
            text: text.to_string(),
            json: false,
            seq,
            pieces: 1,
        };
        std::sync::Arc::new(piece).frame()
    }

    /// The JSON pushes among `bytes` (the plain encoder writes frames as they are).
    fn pushes(bytes: &[u8]) -> Vec<serde_json::Value> {
        serde_json::Deserializer::from_slice(bytes).into_iter().filter_map(Result::ok).collect()
    }

    #[test]
    fn appends_behind_a_full_socket_merge_into_one_push_that_loses_no_piece() {
        let mut queue = attached(QueueLimits { frames: 2, bytes: 10_000 });
        let mut socket = Socket { room: 0, ..Socket::default() };
        assert!(socket.push(&mut queue, text("{}")), "the socket is full: a backlog");
        for seq in 1..=50 {
            assert!(matches!(
                queue.push_append(append(seq, &format!("{seq},")), |s| socket.take(s)),
                Push::Taken { .. }
            ));
        }
        assert_eq!(queue.closing(), None, "fifty appends, no slow consumer: they merged");
        socket.room = 100_000;
        assert!(socket.drain(&mut queue));
        let out = pushes(&socket.taken);
        assert_eq!(out.len(), 2, "{out:?}");
        let expected: String = (1..=50).map(|seq| format!("{seq},")).collect();
        assert_eq!(
            (out[1]["text"].as_str(), out[1]["seq"].as_u64(), out[1]["pieces"].as_u64()),
            (Some(expected.as_str()), Some(50), Some(50))
        );
        // Keeping up again: one push per append.
        assert!(matches!(queue.push_append(append(51, "z"), |s| socket.take(s)), Push::Taken { .. }));
        let out = pushes(&socket.taken);
        assert_eq!((out.len(), out[2]["seq"].as_u64(), out[2].get("pieces")), (3, Some(51), None));
    }

    #[test]
    fn held_appends_count_toward_the_byte_bound() {
        let mut queue = attached(QueueLimits { frames: 100, bytes: 40 });
        let mut socket = Socket { room: 0, ..Socket::default() };
        assert!(socket.push(&mut queue, text("{}")));
        assert!(matches!(queue.push_append(append(1, &"x".repeat(30)), unreachable), Push::Taken { .. }));
        assert!(matches!(queue.push_append(append(2, &"y".repeat(30)), unreachable), Push::Overflowed));
        assert_eq!(queue.closing(), Some(DisconnectCode::SLOW_CONSUMER));
    }

    #[test]
    fn a_detached_queue_refuses_everything() {
        let mut queue = attached(QueueLimits { frames: 10, bytes: 100 });
        queue.detach();
        assert!(matches!(queue.push(text("a"), unreachable), Push::Refused));
        assert!(matches!(queue.push_raw(1), Raw::Dropped));
        assert!(queue.backlog().is_none());
        assert_eq!(queue.closing(), Some(DisconnectCode::SHUTDOWN));
    }
}
