//! The stream API (token streams, docs/protocol.md §3): a backend opens a stream in a channel,
//! appends text to it piece by piece — subscribers see each piece at once, and a subscriber
//! that joins mid-stream gets the text so far — then finishes it, which publishes the whole
//! text as one message, or aborts it.
//!
//! - `POST /api/channels/{channel}/streams` `{"event":"e"?}` → `{"channel","stream"}`;
//! - `POST /api/channels/{channel}/streams/{stream}` with `{"append":"text"}` (or a non-JSON
//!   body: its text) → `{"channel","stream","seq"}`; `{"finish":true}` → the publish answer
//!   with `"stream"`; `{"abort":true}` → `{"channel","stream","aborted":true}`.

use axum::{
    extract::{Path, State, rejection::BytesRejection},
    http::HeaderMap,
    response::Response,
};
use bytes::Bytes;
use herald_core::{ChannelName, ErrorCode, protocol::validate_event, streams::StreamError};
use serde::Deserialize;
use serde_json::{json, value::RawValue};

use super::api::{body_bytes, is_json};
use crate::{
    publish::{durable_reply, publish_one},
    reply::{ApiError, json_ok, json_response, parse_json},
    state::AppState,
};

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    #[serde(default)]
    event: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OperationBody {
    #[serde(default)]
    append: Option<String>,
    #[serde(default)]
    finish: bool,
    #[serde(default)]
    abort: bool,
}

/// What a request does to an open stream.
enum Operation {
    Append(String),
    Finish,
    Abort,
}

/// `POST /api/channels/{channel}/streams`: opens a stream.
pub async fn start(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let channel = channel_of(&state, &channel)?;
    let bytes = body_bytes(body)?;
    let body: StartBody = if bytes.is_empty() { StartBody::default() } else { parse_json(&bytes)? };
    let event = validate_event(body.event)?;
    let id = state.broker.stream_start(&channel, event.as_deref())?;
    Ok(json_response(&json!({ "channel": channel.as_str(), "stream": &*id })))
}

/// `POST /api/channels/{channel}/streams/{stream}`: appends to, finishes or aborts a stream.
pub async fn operate(
    State(state): State<AppState>,
    Path((channel, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let channel = channel_of(&state, &channel)?;
    let bytes = body_bytes(body)?;
    let (stream, channel_name) = (id.as_str(), channel.as_str());
    match operation(&headers, &bytes)? {
        Operation::Append(text) => {
            let seq = state.broker.stream_append(&channel, stream, &text)?;
            Ok(json_response(&json!({ "channel": channel_name, "stream": stream, "seq": seq })))
        }
        Operation::Abort => {
            state.broker.stream_abort(&channel, stream)?;
            Ok(json_response(&json!({ "channel": channel_name, "stream": stream, "aborted": true })))
        }
        Operation::Finish => {
            let open = state.broker.stream_finish(&channel, stream)?;
            let data = serde_json::to_string(&json!({ "stream": stream, "text": open.text })).unwrap_or_default();
            let data = RawValue::from_string(data).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
            let accepted = publish_one(&state, &channel, &data, open.event.as_deref(), None)?;
            let reply = durable_reply(&state, accepted).await?;
            // The publish answer, with the stream it finished.
            let mut reply: serde_json::Value = serde_json::from_slice(&reply).unwrap_or_default();
            reply["stream"] = json!(stream);
            Ok(json_ok(herald_core::protocol::encode(&reply)))
        }
    }
}

/// The channel of a stream request, once the engine can hold streams.
fn channel_of(state: &AppState, name: &str) -> Result<ChannelName, ApiError> {
    if !state.engine.holds_streams() {
        return Err(ApiError::new(
            ErrorCode::NotAvailable,
            "streams need the memory or disk engine; the Redis engine does not hold them yet",
        ));
    }
    Ok(ChannelName::new(name)?)
}

/// Reads what a request does: a JSON body names one operation; any other body is text to
/// append.
fn operation(headers: &HeaderMap, bytes: &[u8]) -> Result<Operation, ApiError> {
    if !is_json(headers) {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ApiError::new(ErrorCode::BadRequest, "a non-JSON body must be UTF-8 text"))?;
        return Ok(Operation::Append(text.to_string()));
    }
    let body: OperationBody = parse_json(bytes)?;
    match (body.append, body.finish, body.abort) {
        (Some(text), false, false) => Ok(Operation::Append(text)),
        (None, true, false) => Ok(Operation::Finish),
        (None, false, true) => Ok(Operation::Abort),
        _ => Err(ApiError::new(
            ErrorCode::BadRequest,
            "name one operation: {\"append\":\"text\"}, {\"finish\":true} or {\"abort\":true}",
        )),
    }
}

/// The answer to a refused stream operation.
impl From<StreamError> for ApiError {
    fn from(e: StreamError) -> Self {
        let code = match e {
            StreamError::Unknown(_) => ErrorCode::NotFound,
            StreamError::TooLong(_) => ErrorCode::MessageTooLarge,
            StreamError::TooMany(_) => ErrorCode::RateLimited,
        };
        ApiError::new(code, e.to_string())
    }
}
