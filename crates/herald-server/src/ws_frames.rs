//! WebSocket frames as Herald writes them — their headers — and permessage-deflate.
//!
//! permessage-deflate (RFC 7692) is negotiated as `server_no_context_takeover;
//! client_no_context_takeover`: every message is compressed on its own, so
//! - a published message is compressed **once** and the same frame goes to every subscriber
//!   that negotiated it ([`compressed_frame`], kept by the publication);
//! - a connection keeps no compression state: nothing per idle connection, and a client's
//!   compressed message is inflated with a fresh inflater ([`Inflating`]) that lives while
//!   that message is read.
//!
//! Only messages of at least `ws_compression_min_bytes` are compressed (and only when that
//! makes them smaller); replies, pings and stream pushes stay plain, as RFC 7692 allows.
//!
//! tungstenite reads the client's frames and knows nothing of compression: [`Inflating`]
//! stands between the socket and it, passes plain frames through and hands it each
//! compressed message as one plain, unmasked frame.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The tail a sync flush leaves, which the sender drops and the receiver adds back.
const SYNC_TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// What the server answers to an acceptable offer.
pub const AGREED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// Whether a `Sec-WebSocket-Extensions` header offers permessage-deflate in a form Herald
/// takes: any offer, unless it limits the server's window below 15 bits.
pub fn accepts_offer(header: &str) -> bool {
    header.split(',').any(|offer| {
        let mut parts = offer.split(';').map(str::trim);
        parts.next().is_some_and(|name| name.eq_ignore_ascii_case("permessage-deflate"))
            && parts.all(|param| {
                let (name, value) = param.split_once('=').map_or((param, ""), |(n, v)| (n.trim(), v.trim()));
                !name.eq_ignore_ascii_case("server_max_window_bits") || value.trim_matches('"') == "15"
            })
    })
}

/// `frame` (a whole, unmasked server frame) compressed, when its payload has at least
/// `min_bytes` and compressing makes it smaller.
pub fn compressed(frame: &[u8], min_bytes: usize) -> Option<Vec<u8>> {
    let (header, length) = parse_header(frame)?;
    (length >= min_bytes).then(|| compressed_frame(frame[0], &frame[header.len..]))?
}

/// The compressed frame of a message whose uncompressed frame starts with `first` (FIN and
/// opcode) and carries `payload`; `None` when compressing does not make it smaller.
fn compressed_frame(first: u8, payload: &[u8]) -> Option<Vec<u8>> {
    thread_local! {
        // A deflate stream holds a few hundred KiB of window and tables: one per thread, reset
        // for each message (no context takeover), instead of one allocated per message.
        static COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Compression::default(), false));
    }
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    COMPRESSOR.with_borrow_mut(|compressor| {
        compressor.reset();
        loop {
            let consumed = usize::try_from(compressor.total_in()).ok()?;
            out.reserve(payload.len().saturating_sub(consumed) / 2 + 64);
            compressor.compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync).ok()?;
            if usize::try_from(compressor.total_in()).ok()? == payload.len() && out.ends_with(&SYNC_TAIL) {
                return Some(());
            }
        }
    })?;
    out.truncate(out.len() - SYNC_TAIL.len());
    if out.len() + 4 >= payload.len() {
        return None;
    }
    // RSV1 marks the message compressed.
    let mut frame = ws_frame_header(first | 0x40, out.len());
    frame.extend_from_slice(&out);
    Some(frame)
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

/// Inflates one compressed message (its payload with the sync tail dropped), refusing to
/// grow past `limit` bytes.
fn inflate(compressed: &[u8], limit: usize) -> Result<Vec<u8>, &'static str> {
    const TOO_LARGE: &str = "a compressed message inflates past the message size limit";
    let mut inflater = Decompress::new(false);
    let input = [compressed, &SYNC_TAIL].concat();
    let mut out = Vec::with_capacity((compressed.len() * 4).clamp(1024, limit.max(1024)));
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.len().max(1024));
        }
        let (read, written) = (inflater.total_in(), inflater.total_out());
        let consumed = usize::try_from(read).map_err(|_| TOO_LARGE)?;
        let status = inflater
            .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            .map_err(|_| "a compressed message does not inflate")?;
        if out.len() > limit {
            return Err(TOO_LARGE);
        }
        let all_read = usize::try_from(inflater.total_in()).map_err(|_| TOO_LARGE)? == input.len();
        if status == Status::StreamEnd || (all_read && out.len() < out.capacity()) {
            return Ok(out);
        }
        if (read, written) == (inflater.total_in(), inflater.total_out()) && out.len() < out.capacity() {
            return Err("a compressed message does not inflate");
        }
    }
}

/// The client's frames as tungstenite reads them: plain frames as they came, and each
/// compressed message inflated into one plain, unmasked frame. Holds bytes only while a frame
/// is being read: idle, it is its own few words and no buffer.
#[derive(Default)]
pub struct Inflating {
    /// The most a message may hold, compressed or inflated.
    limit: usize,
    /// Bytes read from the socket, not yet whole frames.
    input: Vec<u8>,
    /// Frames ready for tungstenite.
    output: Vec<u8>,
    /// How far tungstenite has taken `output`.
    taken: usize,
    /// The compressed message being gathered across frames: its opcode and payload.
    message: Option<(u8, Vec<u8>)>,
}

// === impl Inflating ===

impl Inflating {
    /// An inflater whose messages may hold at most `limit` bytes, compressed or inflated.
    pub fn new(limit: usize) -> Self {
        Self { limit, ..Self::default() }
    }

    /// Takes bytes read from the socket; turns every whole frame among them into output.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        let limit = self.limit;
        self.input.extend_from_slice(bytes);
        let mut at = 0;
        while let Some((header, length)) = parse_header(&self.input[at..]) {
            if length > limit {
                return Err("a frame over the message size limit");
            }
            let total = header.len + length;
            if self.input.len() - at < total {
                break;
            }
            let frame = &self.input[at..at + total];
            let (first, payload) = (frame[0], &frame[header.len..]);
            let compressed = first & 0x40 != 0;
            let continuation = first & 0x0f == 0;
            match (&mut self.message, compressed, continuation) {
                (None, true, false) => {
                    self.message = Some((first & 0x0f, unmasked(payload, header.mask)));
                }
                (Some((_, gathered)), false, true) => {
                    gathered.extend_from_slice(&unmasked(payload, header.mask));
                    if gathered.len() > limit {
                        return Err("a message over the message size limit");
                    }
                }
                (None, false, _) | (Some(_), false, false) => self.output.extend_from_slice(frame),
                _ => return Err("a compressed frame out of place"),
            }
            if first & 0x80 != 0
                && first & 0x08 == 0
                && let Some((opcode, gathered)) = self.message.take_if(|_| compressed || continuation)
            {
                let inflated = inflate(&gathered, limit)?;
                self.output.extend_from_slice(&ws_frame_header(0x80 | opcode, inflated.len()));
                self.output.extend_from_slice(&inflated);
            }
            at += total;
        }
        self.input.drain(..at);
        if self.input.is_empty() {
            self.input = Vec::new();
        }
        Ok(())
    }

    /// Moves output into `buf`; how many bytes.
    pub fn take(&mut self, buf: &mut [u8]) -> usize {
        let n = (self.output.len() - self.taken).min(buf.len());
        buf[..n].copy_from_slice(&self.output[self.taken..self.taken + n]);
        self.taken += n;
        if self.taken == self.output.len() {
            // Nothing held once tungstenite took it all.
            self.output = Vec::new();
            self.taken = 0;
        }
        n
    }
}

/// A frame header's length and mask.
struct Header {
    len: usize,
    mask: Option<[u8; 4]>,
}

/// The header of the frame `bytes` start with and its payload length, once the header is whole.
fn parse_header(bytes: &[u8]) -> Option<(Header, usize)> {
    let second = *bytes.get(1)?;
    let masked = second & 0x80 != 0;
    let (length, at) = match second & 0x7f {
        126 => (usize::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?])), 4),
        127 => (usize::try_from(u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?)).ok()?, 10),
        n => (usize::from(n), 2),
    };
    let mask = if masked { Some(bytes.get(at..at + 4)?.try_into().ok()?) } else { None };
    Some((Header { len: at + if masked { 4 } else { 0 }, mask }, length))
}

fn unmasked(payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    match mask {
        Some(mask) => payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect(),
        None => payload.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers_use_the_shortest_length_form() {
        assert_eq!(ws_frame_header(0x81, 0), [0x81, 0]);
        assert_eq!(ws_frame_header(0x81, 125), [0x81, 125]);
        assert_eq!(ws_frame_header(0x81, 126), [0x81, 126, 0, 126]);
        assert_eq!(ws_frame_header(0x81, 65_535), [0x81, 126, 0xff, 0xff]);
        assert_eq!(ws_frame_header(0x89, 65_536), [0x89, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    /// A client frame: masked, `first` as given.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut frame = ws_frame_header(first, payload.len());
        frame[1] |= 0x80;
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    fn deflated(payload: &[u8]) -> Vec<u8> {
        let frame = compressed_frame(0x81, payload).expect("compresses");
        let (header, _) = parse_header(&frame).expect("a header");
        frame[header.len..].to_vec()
    }

    #[test]
    fn offers_are_taken_unless_they_shrink_the_servers_window() {
        assert!(accepts_offer("permessage-deflate; client_max_window_bits"));
        assert!(accepts_offer("x-webkit-deflate-frame, permessage-deflate"));
        assert!(accepts_offer("permessage-deflate; server_max_window_bits=15"));
        assert!(!accepts_offer("permessage-deflate; server_max_window_bits=10"));
        assert!(!accepts_offer("x-webkit-deflate-frame"));
    }

    #[test]
    fn a_message_compresses_once_into_a_frame_that_inflates_back() {
        let text = br#"{"type":"message","data":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#;
        let frame = compressed_frame(0x81, text).expect("smaller");
        assert_eq!(frame[0], 0xc1, "FIN, RSV1, text");
        assert!(frame.len() < text.len());
        assert_eq!(inflate(&deflated(text), 1 << 20).expect("inflates"), text);
        assert_eq!(compressed_frame(0x81, b"{}"), None, "not smaller: sent plain");
        let mut plain = ws_text_header(text.len());
        plain.extend_from_slice(text);
        assert_eq!(compressed(&plain, 16), Some(frame));
        assert_eq!(compressed(&plain, 4096), None, "under the threshold");
    }

    #[test]
    fn compressed_client_messages_become_plain_frames_and_plain_ones_pass() {
        let command = br#"{"op":"subscribe","channel":"jobs","id":1}"#.repeat(4);
        let mut inflating = Inflating::new(1 << 20);
        let compressed = client_frame(0xc1, &deflated(&command));
        let plain = client_frame(0x81, b"{}");
        let mut wire = compressed.clone();
        wire.extend_from_slice(&plain);
        // Fed a byte at a time: frames are whole before anything comes out.
        for byte in &wire {
            inflating.feed(std::slice::from_ref(byte)).expect("valid");
        }
        let mut out = vec![0; 4096];
        let n = inflating.take(&mut out);
        let mut want = ws_frame_header(0x81, command.len());
        want.extend_from_slice(&command);
        want.extend_from_slice(&plain);
        assert_eq!(&out[..n], want.as_slice());
        assert_eq!((inflating.input.capacity(), inflating.output.capacity()), (0, 0), "nothing held");
    }

    #[test]
    fn a_fragmented_compressed_message_and_a_ping_between_its_fragments() {
        let command = br#"{"op":"publish","channel":"c","data":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
        let body = deflated(command);
        let (one, two) = body.split_at(body.len() / 2);
        let mut wire = client_frame(0x41, one); // RSV1, text, not final
        wire.extend(client_frame(0x89, b"")); // a ping in between
        wire.extend(client_frame(0x80, two)); // final continuation
        let mut inflating = Inflating::new(1 << 20);
        inflating.feed(&wire).expect("valid");
        let mut out = vec![0; 4096];
        let n = inflating.take(&mut out);
        let ping = client_frame(0x89, b"");
        assert_eq!(&out[..ping.len()], ping.as_slice());
        let mut want = ws_frame_header(0x81, command.len());
        want.extend_from_slice(command);
        assert_eq!(&out[ping.len()..n], want.as_slice());
    }

    #[test]
    fn a_bomb_is_refused() {
        let zeros = vec![b'0'; 1 << 20];
        let frame = client_frame(0xc1, &deflated(&zeros));
        assert!(Inflating::new(64 * 1024).feed(&frame).is_err());
        let garbage = client_frame(0xc1, &[0xff, 0xff, 0xff]);
        assert!(Inflating::new(1 << 20).feed(&garbage).is_err());
    }
}
