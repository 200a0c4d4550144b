//! A published message, encoded once and shared by every subscriber, every transport and the
//! history window.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use herald_core::{ChannelName, StreamPosition, protocol::encode_envelope};
use serde_json::value::RawValue;

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
    /// When it was published, ms since the Unix epoch.
    pub time_ms: u64,
    /// A WebSocket text frame holding the envelope JSON of docs/protocol.md §1: the header, then the
    /// envelope (which history, long polls and SSE use on its own).
    ws_frame: Bytes,
    /// Where the envelope starts in `ws_frame`.
    envelope_at: usize,
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
        let mut ws_frame = ws_text_header(envelope.len());
        let envelope_at = ws_frame.len();
        ws_frame.reserve_exact(envelope.len());
        ws_frame.extend_from_slice(&envelope);
        Arc::new(Self {
            channel,
            offset: position.offset,
            epoch: position.epoch.clone(),
            event: event.map(Box::from),
            time_ms,
            ws_frame: Bytes::from(ws_frame),
            envelope_at,
            sse_body: OnceLock::new(),
        })
    }

    /// The whole WebSocket text frame carrying the envelope (cheap to clone).
    pub fn ws_frame(&self) -> &Bytes {
        &self.ws_frame
    }

    /// The envelope JSON bytes.
    pub fn envelope(&self) -> &[u8] {
        &self.ws_frame[self.envelope_at..]
    }

    /// The SSE event after the `id:` line: `event: …\ndata: <envelope>\n\n`.
    pub fn sse_body(&self) -> &Bytes {
        self.sse_body.get_or_init(|| {
            let event = self.event.as_deref().unwrap_or("message");
            let envelope = self.envelope();
            let mut out = Vec::with_capacity(event.len() + envelope.len() + 16);
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(event.as_bytes());
            out.extend_from_slice(b"\ndata: ");
            out.extend_from_slice(envelope);
            out.extend_from_slice(b"\n\n");
            Bytes::from(out)
        })
    }

    /// The size the message counts for in a connection's queue.
    pub fn weight(&self) -> usize {
        self.ws_frame.len() - self.envelope_at
    }
}

/// The header of an unmasked, final WebSocket text frame (server to client, RFC 6455 5.2)
/// with a payload of `len` bytes.
pub fn ws_text_header(len: usize) -> Vec<u8> {
    ws_frame_header(0x81, len)
}

/// The header of an unmasked, final WebSocket frame whose first byte is `first` (FIN and
/// opcode) with a payload of `len` bytes.
pub fn ws_frame_header(first: u8, len: usize) -> Vec<u8> {
    let mut header = Vec::with_capacity(10);
    header.push(first);
    match len {
        0..=125 => header.push(len as u8),
        126..=65_535 => {
            header.push(126);
            header.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            header.push(127);
            header.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    header
}

#[cfg(test)]
mod tests {
    use super::ws_frame_header;

    #[test]
    fn frame_headers_use_the_shortest_length_form() {
        assert_eq!(ws_frame_header(0x81, 0), [0x81, 0]);
        assert_eq!(ws_frame_header(0x81, 125), [0x81, 125]);
        assert_eq!(ws_frame_header(0x81, 126), [0x81, 126, 0, 126]);
        assert_eq!(ws_frame_header(0x81, 65_535), [0x81, 126, 0xff, 0xff]);
        assert_eq!(ws_frame_header(0x89, 65_536), [0x89, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }
}
