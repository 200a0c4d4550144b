//! What is sent to one connection ([`Frame`]) and over which transport ([`Transport`]): the
//! words the broker, the queues, the encoders and the metrics share, below all of them.

use std::sync::Arc;

use bytes::Bytes;
use herald_core::{
    ChannelName, ResetReason, StreamPosition,
    protocol::{StreamPushKind, encode_stream_push},
    streams::Content,
};

use crate::publication::Message;

/// Which transport a connection uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// WebSocket.
    Ws,
    /// Server-Sent Events.
    Sse,
    /// Long polling (one request).
    Poll,
}

impl Transport {
    /// `ws`, `sse` or `poll`, as metrics and `/api/info` name it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ws => "ws",
            Self::Sse => "sse",
            Self::Poll => "poll",
        }
    }
}

/// Something to send to one connection.
#[derive(Clone)]
pub enum Frame {
    /// A channel message.
    Message(Message),
    /// A channel's stream could not be recovered; the client continues from `position`.
    Reset {
        /// The channel.
        channel: ChannelName,
        /// The stream's current position.
        position: StreamPosition,
        /// Why.
        reason: ResetReason,
    },
    /// A reply or push already encoded for this connection (WebSocket JSON text).
    Text(Bytes),
    /// A push about an open stream, encoded once and shared by every subscriber: `json` is
    /// what [`herald_core::protocol::encode_stream_push`] made of it.
    Stream {
        /// What the push says (its `type`, the SSE event name).
        kind: StreamPushKind,
        /// The push's JSON.
        json: Bytes,
        /// An append's piece, so that a connection behind on its socket can merge
        /// consecutive appends of one stream into one push (`None` for other pushes).
        piece: Option<Arc<Piece>>,
    },
    /// Time for a heartbeat.
    Heartbeat,
}

/// One append to an open stream, as [`Frame::Stream`] carries it.
#[derive(Debug)]
pub struct Piece {
    /// The stream's channel.
    pub channel: ChannelName,
    /// The stream's id.
    pub stream: Arc<str>,
    /// The event of the message the stream becomes.
    pub event: Option<Box<str>>,
    /// The text added (a JSON stream: its items, a line each).
    pub text: String,
    /// Whether the stream holds JSON items.
    pub json: bool,
    /// The number of the (last) append it holds.
    pub seq: u64,
    /// How many appends it holds (1, or more once merged).
    pub pieces: u64,
}

// === impl Piece ===

impl Piece {
    /// The append push of this piece.
    pub fn frame(self: Arc<Self>) -> Frame {
        let json = encode_stream_push(
            StreamPushKind::Append,
            &self.channel,
            &self.stream,
            self.event.as_deref(),
            if self.json { Content::Items(&self.text) } else { Content::Text(&self.text) },
            self.seq,
            self.pieces,
        );
        Frame::Stream { kind: StreamPushKind::Append, json: Bytes::from(json), piece: Some(self) }
    }

    /// Whether `next` is the append that follows this one in the same stream (its first piece
    /// is the one after this one's last).
    pub fn is_followed_by(&self, next: &Piece) -> bool {
        next.seq.checked_sub(next.pieces) == Some(self.seq)
            && next.stream == self.stream
            && next.channel == self.channel
    }

    /// This piece and `next` as one append holding both (a client applies it in one step).
    pub fn merged(&self, next: &Piece) -> Piece {
        Piece {
            channel: self.channel.clone(),
            stream: Arc::clone(&self.stream),
            event: self.event.clone(),
            text: format!("{}{}", self.text, next.text),
            json: self.json,
            seq: next.seq,
            pieces: self.pieces + next.pieces,
        }
    }
}
