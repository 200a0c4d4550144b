//! A published message, encoded once and shared by every subscriber, every transport and the
//! history window.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use herald_core::{ChannelName, StreamPosition, protocol};

use crate::ws_frames::{ws_frame_header, ws_text_header};
use serde_json::value::RawValue;

/// One message of a channel, with its envelope serialized once at publish time.
pub struct Publication {
    /// The channel.
    pub channel: ChannelName,
    /// The message's offset in its stream.
    pub offset: u64,
    /// The stream's epoch.
    pub epoch: Arc<str>,
    /// The event name as clients see it (`None`: a plain `message`).
    pub event: Option<Box<str>>,
    /// When it was published, ms since the Unix epoch.
    pub time_ms: u64,
    /// The WebSocket frame and the envelope JSON of docs/protocol.md §1 (which history, long
    /// polls and SSE use). A JSON message's frame is a text frame holding the envelope, so the
    /// envelope is its tail; a binary message's is a binary frame, followed by the envelope.
    encoded: Bytes,
    /// Where the WebSocket frame ends in `encoded`.
    frame_end: u32,
    /// Where the envelope starts in `encoded`.
    envelope_at: u32,
    /// `event: …\ndata: <envelope>\n\n`, built on first SSE delivery.
    sse_body: OnceLock<Bytes>,
    /// The permessage-deflate frame (`None`: compressing does not make it smaller), built on
    /// first delivery to a WebSocket that negotiated it and shared by all of them.
    ws_deflated: OnceLock<Option<Bytes>>,
}

/// A shared publication.
pub type Message = Arc<Publication>;

// === impl Publication ===

impl Publication {
    /// Encodes a message published at `position` and `time_ms`. `event` is the event as
    /// engines and stores keep it: a binary message's is marked ([`crate::binary`]).
    pub fn new(
        channel: ChannelName,
        position: &StreamPosition,
        event: Option<&str>,
        data: &RawValue,
        time_ms: u64,
    ) -> Message {
        let (event, binary) = crate::binary::unmark(event);
        let mut envelope = protocol::envelope(&channel, position, event, data, time_ms);
        let (encoded, frame_end, envelope_at) = match binary.then(|| crate::binary::bytes_of(data)).flatten() {
            Some(bytes) => {
                envelope.encoding = Some("base64");
                let json = protocol::encode(&envelope);
                let header = protocol::encode(&MessageHeader(&envelope));
                let payload = crate::binary::ws_payload(&header, &bytes);
                let mut encoded = ws_frame_header(0x82, payload.len());
                encoded.reserve_exact(payload.len() + json.len());
                encoded.extend_from_slice(&payload);
                let frame_end = encoded.len();
                encoded.extend_from_slice(&json);
                (encoded, frame_end, frame_end)
            }
            None => {
                let json = protocol::encode(&envelope);
                let mut encoded = ws_text_header(json.len());
                let envelope_at = encoded.len();
                encoded.reserve_exact(json.len());
                encoded.extend_from_slice(&json);
                let frame_end = encoded.len();
                (encoded, frame_end, envelope_at)
            }
        };
        let position_of = |at: usize| u32::try_from(at).unwrap_or(u32::MAX);
        Arc::new(Self {
            channel,
            offset: position.offset,
            epoch: position.epoch.clone(),
            event: event.map(Box::from),
            time_ms,
            frame_end: position_of(frame_end),
            envelope_at: position_of(envelope_at),
            encoded: Bytes::from(encoded),
            sse_body: OnceLock::new(),
            ws_deflated: OnceLock::new(),
        })
    }

    /// The whole WebSocket frame carrying the message (cheap: it shares the encoding).
    pub fn ws_frame(&self) -> Bytes {
        self.encoded.slice(..self.frame_end as usize)
    }

    /// The WebSocket frame for a connection that negotiated permessage-deflate: compressed
    /// once, on first use, when its payload has at least `min_bytes` (and compressing helps);
    /// else the plain frame.
    pub fn ws_frame_deflated(&self, min_bytes: usize) -> Bytes {
        let frame = &self.encoded[..self.frame_end as usize];
        if frame.len() < min_bytes {
            return self.ws_frame();
        }
        let deflated = self.ws_deflated.get_or_init(|| crate::ws_frames::compressed(frame, min_bytes).map(Bytes::from));
        deflated.clone().unwrap_or_else(|| self.ws_frame())
    }

    /// The envelope JSON bytes.
    pub fn envelope(&self) -> &[u8] {
        &self.encoded[self.envelope_at as usize..]
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
        self.encoded.len() - self.envelope_at as usize
    }
}

/// A binary message's header in its WebSocket frame: its envelope without `data` and
/// `encoding`.
struct MessageHeader<'a>(&'a protocol::Envelope<'a>);

impl serde::Serialize for MessageHeader<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let e = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", e.kind)?;
        map.serialize_entry("channel", e.channel)?;
        map.serialize_entry("offset", &e.offset)?;
        map.serialize_entry("epoch", e.epoch)?;
        if let Some(event) = e.event {
            map.serialize_entry("event", event)?;
        }
        map.serialize_entry("time", &e.time)?;
        map.end()
    }
}
