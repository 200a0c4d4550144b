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
    /// The other WebSocket forms of the message (compressed, compact), made on first delivery
    /// to a connection that wants one and shared by all such connections. Boxed: most
    /// messages never need one, and history holds many messages.
    ws_forms: OnceLock<Box<WsForms>>,
}

/// The WebSocket forms of a message besides its plain frame.
#[derive(Default)]
struct WsForms {
    /// The permessage-deflate frame (`None`: compressing does not make it smaller).
    deflated: OnceLock<Option<Bytes>>,
    /// The compact frame (docs/protocol.md §6; `None`: a binary message, which has none).
    compact: OnceLock<Option<Bytes>>,
    /// The compact frame, compressed.
    compact_deflated: OnceLock<Option<Bytes>>,
}

/// Which WebSocket form of a message a connection takes.
#[derive(Clone, Copy, Debug, Default)]
pub struct WsForm {
    /// permessage-deflate agreed: compress frames whose payload has at least this many bytes.
    pub deflate_from: Option<usize>,
    /// The compact envelope agreed (subprotocol `herald.compact`).
    pub compact: bool,
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
                let json = envelope.to_json();
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
                let json = envelope.to_json();
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
            ws_forms: OnceLock::new(),
        })
    }

    /// The whole WebSocket frame carrying the message (cheap: it shares the encoding).
    pub fn ws_frame(&self) -> Bytes {
        self.encoded.slice(..self.frame_end as usize)
    }

    /// The message's WebSocket frame in `form`: compact when agreed (a binary message has no
    /// compact form), then compressed when agreed and its payload has at least `deflate_from`
    /// bytes (and compressing helps). Each form is made once and shared.
    pub fn ws_frame_in(&self, form: WsForm) -> Bytes {
        if !form.compact && form.deflate_from.is_none() {
            return self.ws_frame();
        }
        let forms = self.ws_forms.get_or_init(Box::default);
        let compact = form.compact.then(|| forms.compact.get_or_init(|| self.compact_frame()).clone()).flatten();
        let (frame, deflated) = match &compact {
            Some(compact) => (compact.clone(), &forms.compact_deflated),
            None => (self.ws_frame(), &forms.deflated),
        };
        match form.deflate_from {
            Some(min_bytes) if frame.len() >= min_bytes => {
                let deflated =
                    deflated.get_or_init(|| crate::ws_frames::compressed(&frame, min_bytes).map(Bytes::from));
                deflated.clone().unwrap_or(frame)
            }
            _ => frame,
        }
    }

    /// The compact frame: `[offset,"channel","epoch",time,data]`, with `,"event"` before the
    /// `]` when there is one (`None` for a binary message).
    fn compact_frame(&self) -> Option<Bytes> {
        #[derive(serde::Deserialize)]
        struct Parsed<'a> {
            #[serde(borrow)]
            data: &'a RawValue,
            #[serde(default)]
            encoding: Option<&'a str>,
        }
        let parsed: Parsed<'_> = serde_json::from_slice(self.envelope()).ok()?;
        if parsed.encoding.is_some() {
            return None;
        }
        let (offset, epoch, time) = (self.offset, &*self.epoch, self.time_ms);
        let compact = match self.event.as_deref() {
            Some(event) => protocol::encode(&(offset, self.channel.as_str(), epoch, time, parsed.data, event)),
            None => protocol::encode(&(offset, self.channel.as_str(), epoch, time, parsed.data)),
        };
        let mut frame = ws_text_header(compact.len());
        frame.extend_from_slice(&compact);
        Some(Bytes::from(frame))
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
