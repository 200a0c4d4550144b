//! Binary messages: raw bytes published with `Content-Type: application/octet-stream` (or
//! `"encoding":"base64"` in JSON). They keep every guarantee of JSON messages — offsets,
//! history, recovery, idempotency — because inside Herald their data is the JSON string of
//! their bytes in base64. Subscribers see them as:
//! - WebSocket: one binary frame, `[u16 big-endian header length][header JSON][the bytes]`, the
//!   header being the envelope without `data` (docs/protocol.md);
//! - SSE, long polls, history: the envelope with `"encoding":"base64"` and `data` the base64
//!   text.
//!
//! Engines and stores carry a message's event name as it is, so a binary message travels with
//! its event behind a U+0001 mark ([`mark`]): a client's event can never hold it (events refuse
//! control characters), and [`crate::publication::Publication`] takes it off ([`unmark`])
//! before anything is encoded for clients.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde_json::value::RawValue;

/// What a publish whose data is not base64 is told.
pub const NOT_BASE64: &str = "with \"encoding\":\"base64\", data must be a base64 string";

/// The mark before a binary message's event inside Herald.
const MARK: char = '\u{1}';

/// The event a binary message with `event` travels with inside Herald.
pub fn mark(event: Option<&str>) -> String {
    let mut marked = String::with_capacity(1 + event.map_or(0, str::len));
    marked.push(MARK);
    marked.push_str(event.unwrap_or(""));
    marked
}

/// A stored event as clients see it, and whether its message is binary.
pub fn unmark(stored: Option<&str>) -> (Option<&str>, bool) {
    match stored.and_then(|e| e.strip_prefix(MARK)) {
        Some("") => (None, true),
        Some(event) => (Some(event), true),
        None => (stored, false),
    }
}

/// The event a publish of `data` with `encoding` (a publish's field) travels with inside
/// Herald: `event` for JSON data, marked for `"base64"`, whose data must then decode; what
/// is wrong otherwise.
pub fn event_for(
    encoding: Option<&str>,
    data: &RawValue,
    event: Option<String>,
) -> Result<Option<String>, &'static str> {
    match encoding {
        None => Ok(event),
        Some("base64") if bytes_of(data).is_some() => Ok(Some(mark(event.as_deref()))),
        Some("base64") => Err(NOT_BASE64),
        Some(_) => Err(herald_core::protocol::UNKNOWN_ENCODING),
    }
}

/// `bytes` as the data of a binary message: the JSON string of their base64.
pub fn data_of(bytes: &[u8]) -> Box<RawValue> {
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4 + 2);
    text.push('"');
    STANDARD.encode_string(bytes, &mut text);
    text.push('"');
    // Base64 between quotes is a JSON string.
    RawValue::from_string(text).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// The bytes of a binary message's data (a JSON string of base64); `None` when it is not one.
pub fn bytes_of(data: &RawValue) -> Option<Vec<u8>> {
    let text = data.get().strip_prefix('"')?.strip_suffix('"')?;
    STANDARD.decode(text).ok()
}

/// The payload of a binary message's WebSocket frame: the header's length (u16, big-endian),
/// the header, the bytes.
pub fn ws_payload(header: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(2 + header.len() + bytes.len());
    payload.extend_from_slice(&u16::try_from(header.len()).unwrap_or(u16::MAX).to_be_bytes());
    payload.extend_from_slice(header);
    payload.extend_from_slice(bytes);
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_event_reads_back_and_a_plain_one_is_untouched() {
        assert_eq!(unmark(Some(&mark(Some("frame")))), (Some("frame"), true));
        assert_eq!(unmark(Some(&mark(None))), (None, true));
        assert_eq!(unmark(Some("frame")), (Some("frame"), false));
        assert_eq!(unmark(None), (None, false));
    }

    #[test]
    fn bytes_survive_the_base64_data() {
        let bytes = [0u8, 255, 1, 2, 3, b'"', b'\\'];
        let data = data_of(&bytes);
        assert_eq!(data.get(), "\"AP8BAgMiXA==\"");
        assert_eq!(bytes_of(&data).expect("base64"), bytes);
        let not_base64 = RawValue::from_string("\"***\"".into()).expect("JSON");
        assert!(bytes_of(&not_base64).is_none());
        let not_a_string = RawValue::from_string("12".into()).expect("JSON");
        assert!(bytes_of(&not_a_string).is_none());
    }

    #[test]
    fn the_frame_payload_starts_with_the_headers_length() {
        assert_eq!(ws_payload(b"{}", &[9, 8]), [0, 2, b'{', b'}', 9, 8]);
    }
}
