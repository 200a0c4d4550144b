//! A published message, encoded once and shared by every subscriber, every transport and the
//! history window.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use herald_core::{ChannelName, StreamPosition, protocol::encode_envelope};
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One message of a channel, with its envelope serialized once at publish time.
pub struct Publication {
    /// The channel.
    pub channel: ChannelName,
    /// The message's offset in its stream.
    pub offset: u64,
    /// The stream's epoch.
    pub epoch: Arc<str>,
    /// The event name (`None`: a plain `message`).
    pub event: Option<Box<str>>,
    /// The envelope JSON of DESIGN.md 2.1; also the WebSocket text frame.
    envelope: Utf8Bytes,
    /// `event: …\ndata: <envelope>\n\n`, built on first SSE delivery.
    sse_body: OnceLock<Bytes>,
}

/// A shared publication.
pub type Message = Arc<Publication>;

// === impl Publication ===

impl Publication {
    /// Encodes a message published at `position` and `time_ms`.
    pub fn new(
        channel: ChannelName,
        position: &StreamPosition,
        event: Option<&str>,
        data: &RawValue,
        time_ms: u64,
    ) -> Message {
        let envelope = encode_envelope(&channel, position, event, data, time_ms);
        Arc::new(Self {
            channel,
            offset: position.offset,
            epoch: position.epoch.clone(),
            event: event.map(Box::from),
            envelope: Utf8Bytes::try_from(envelope).unwrap_or_else(|_| Utf8Bytes::from_static("{}")),
            sse_body: OnceLock::new(),
        })
    }

    /// The envelope JSON, as a WebSocket text payload (cheap to clone).
    pub fn ws_text(&self) -> Utf8Bytes {
        self.envelope.clone()
    }

    /// The envelope JSON bytes.
    pub fn envelope(&self) -> &[u8] {
        self.envelope.as_bytes()
    }

    /// The SSE event after the `id:` line: `event: …\ndata: <envelope>\n\n`.
    pub fn sse_body(&self) -> &Bytes {
        self.sse_body.get_or_init(|| {
            let event = self.event.as_deref().unwrap_or("message");
            let mut out = Vec::with_capacity(event.len() + self.envelope.len() + 16);
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(event.as_bytes());
            out.extend_from_slice(b"\ndata: ");
            out.extend_from_slice(self.envelope.as_bytes());
            out.extend_from_slice(b"\n\n");
            Bytes::from(out)
        })
    }

    /// The size the message counts for in a connection's queue.
    pub fn weight(&self) -> usize {
        self.envelope.len()
    }
}
