//! What the HTTP API and the transports answer with: JSON bodies and the JSON error
//! (`{"error":{"code":…,"message":…}}` with a matching status), shared below both.

use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use herald_core::{ChannelName, ErrorCode, ProtocolError};
use serde::Deserialize;

use crate::publication::Message;

/// An error answered as JSON with its status.
#[derive(Debug)]
pub struct ApiError(pub ProtocolError);

/// The encoded reply to a publish: `{"channel":…,"epoch":…,"offset":…}` (written by hand:
/// every publish answers one).
pub fn publish_body(channel: &ChannelName, offset: u64, epoch: &str) -> Vec<u8> {
    use herald_core::protocol::write_json_str;
    let mut out = Vec::with_capacity(48 + channel.as_str().len() + epoch.len());
    out.extend_from_slice(b"{\"channel\":");
    write_json_str(&mut out, channel.as_str());
    out.extend_from_slice(b",\"epoch\":");
    write_json_str(&mut out, epoch);
    out.extend_from_slice(b",\"offset\":");
    out.extend_from_slice(itoa::Buffer::new().format(offset).as_bytes());
    out.push(b'}');
    out
}

/// A `200` JSON response serializing `value`.
pub fn json_response<T: serde::Serialize + ?Sized>(value: &T) -> Response {
    json_ok(herald_core::protocol::encode(value))
}

/// A `200` JSON response from encoded bytes.
pub fn json_ok(body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Parses a JSON body into `T`, telling malformed JSON from a wrong shape.
pub fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let code = if e.is_data() { ErrorCode::BadRequest } else { ErrorCode::InvalidJson };
        ApiError::new(code, format!("cannot read request body: {e}"))
    })
}

/// `{"channel":…,"epoch":…,"offset":…,"messages":[…]}` with the shared envelopes spliced in.
pub fn history_body(channel: &ChannelName, position: &herald_core::StreamPosition, messages: &[Message]) -> Vec<u8> {
    // The head is a publish reply's fields.
    let mut out = publish_body(channel, position.offset, &position.epoch);
    out.pop(); // the closing brace
    out.extend_from_slice(b",\"messages\":");
    splice_envelopes(&mut out, messages);
    out.push(b'}');
    out
}

/// Writes `[env,env,…]` from the pre-encoded envelopes.
pub fn splice_envelopes<'m>(out: &mut Vec<u8>, messages: impl IntoIterator<Item = &'m Message>) {
    out.push(b'[');
    for (i, m) in messages.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(m.envelope());
    }
    out.push(b']');
}

// === impl ApiError ===

impl ApiError {
    /// An error with `code` and a human message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(ProtocolError::new(code, message))
    }
}

impl From<ProtocolError> for ApiError {
    fn from(e: ProtocolError) -> Self {
        Self(e)
    }
}

impl From<herald_core::InvalidChannel> for ApiError {
    fn from(e: herald_core::InvalidChannel) -> Self {
        Self(e.into())
    }
}

impl From<herald_core::InvalidCursor> for ApiError {
    fn from(e: herald_core::InvalidCursor) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = json_ok(self.0.to_http_body());
        *response.status_mut() = status;
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_publish_reply_is_what_serde_writes() {
        let channel = ChannelName::new("jobs:eu").expect("valid");
        assert_eq!(
            publish_body(&channel, 42, "k3j2"),
            herald_core::protocol::encode(&json!({ "channel": "jobs:eu", "offset": 42, "epoch": "k3j2" }))
        );
    }
}
