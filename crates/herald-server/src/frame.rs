//! What is sent to one connection ([`Frame`]) and over which transport ([`Transport`]): the
//! words the broker, the queues, the encoders and the metrics share, below all of them.

use bytes::Bytes;
use herald_core::{ChannelName, ResetReason, StreamPosition, protocol::StreamPushKind};

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
    },
    /// Time for a heartbeat.
    Heartbeat,
}
