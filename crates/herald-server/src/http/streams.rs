//! The stream API (token streams, docs/protocol.md §3): a backend opens a stream in a channel,
//! appends text to it piece by piece — subscribers see each piece at once, and a subscriber
//! that joins mid-stream gets the text so far — then finishes it, which publishes the whole
//! text as one message, or aborts it.
//!
//! - `POST /api/channels/{channel}/streams` `{"event":"e"?}` → `{"channel","stream"}`;
//! - `POST /api/channels/{channel}/streams/{stream}` with `{"append":"text"}` (or a non-JSON
//!   body: its text) → `{"channel","stream","seq"}`; `{"finish":true}` → the publish answer
//!   with `"stream"`; `{"abort":true}` → `{"channel","stream","aborted":true}`;
//! - `PUT /api/channels/{channel}/streams?event=e` pipes its body ([`pipe`]): one request per
//!   stream, each piece of the body appended as it arrives (`curl -T -` from a model's output).

use axum::{
    extract::{Path, State, rejection::BytesRejection},
    http::HeaderMap,
    response::Response,
};
use bytes::{Bytes, BytesMut};
use herald_core::{
    ChannelName, ErrorCode, ProtocolError,
    protocol::validate_event,
    streams::{Delta, StreamError},
};
use herald_http1::{BodyFraming, Head};
use serde::Deserialize;
use serde_json::{json, value::RawValue};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

use super::{
    body::{Pieces, Refused},
    request::{body_bytes, is_json},
};
use crate::{
    publish::{accepted, durable_reply, refuse_while_shutting_down},
    reply::{ApiError, json_ok, json_response, parse_json},
    state::AppState,
};

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    #[serde(default)]
    event: Option<String>,
    /// A stream of JSON items rather than text.
    #[serde(default)]
    json: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OperationBody {
    /// Present whatever its value, `null` included (an item of a JSON stream).
    #[serde(default, deserialize_with = "present")]
    append: Option<Box<RawValue>>,
    #[serde(default)]
    finish: bool,
    #[serde(default)]
    abort: bool,
}

/// A field's value, `null` included, as present.
fn present<'de, D: serde::Deserializer<'de>>(value: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(value).map(Some)
}

/// What an append request carries.
enum Appended {
    /// A JSON value (`{"append":…}`).
    Json(Box<RawValue>),
    /// A text body.
    Text(String),
}

impl Appended {
    fn delta(&self) -> Delta<'_> {
        match self {
            Self::Json(value) => Delta::Json(value),
            Self::Text(text) => Delta::Text(text),
        }
    }
}

/// What a request does to an open stream.
enum Operation {
    Append(Appended),
    Finish,
    Abort,
}

/// `POST /api/channels/{channel}/streams`: opens a stream.
pub async fn start(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let channel = ChannelName::new(&channel)?;
    let bytes = body_bytes(body)?;
    let body: StartBody = if bytes.is_empty() { StartBody::default() } else { parse_json(&bytes)? };
    let event = validate_event(body.event)?;
    let id = state.engine.stream_start(&channel, event.as_deref(), body.json).get().await?;
    Ok(json_response(&json!({ "channel": channel.as_str(), "stream": &*id })))
}

/// `POST /api/channels/{channel}/streams/{stream}`: appends to, finishes or aborts a stream.
pub async fn operate(
    State(state): State<AppState>,
    Path((channel, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let channel = ChannelName::new(&channel)?;
    let bytes = body_bytes(body)?;
    let (stream, channel_name) = (id.as_str(), channel.as_str());
    // Herald's stream ids are alphanumerics: anything else names no stream (and never reaches
    // an engine's key names).
    if stream.is_empty() || stream.len() > 64 || !stream.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ProtocolError::from(StreamError::Unknown(Arc::from(stream))).into());
    }
    match operation(&headers, &bytes)? {
        Operation::Append(appended) => {
            let seq = state.engine.stream_append(&channel, stream, appended.delta()).get().await?;
            Ok(json_response(&json!({ "channel": channel_name, "stream": stream, "seq": seq })))
        }
        Operation::Abort => {
            state.engine.stream_abort(&channel, stream).get().await?;
            Ok(json_response(&json!({ "channel": channel_name, "stream": stream, "aborted": true })))
        }
        Operation::Finish => Ok(json_ok(finish(&state, &channel, stream).await?)),
    }
}

/// Finishes stream `id` of `channel`: publishes its whole text as one message and answers as
/// a publish does, with the stream's id.
async fn finish(state: &AppState, channel: &ChannelName, id: &str) -> Result<Vec<u8>, ApiError> {
    refuse_while_shutting_down(state)?;
    let accepted = accepted(channel, state.engine.stream_finish(channel, id))?;
    let mut reply = durable_reply(state, accepted).await?;
    // The publish answer is a JSON object; the stream's id (checked: alphanumerics) goes in
    // before its closing brace.
    reply.pop();
    reply.extend_from_slice(format!(",\"stream\":\"{id}\"}}").as_bytes());
    Ok(reply)
}

/// `PUT /api/channels/{channel}/streams?event=e`: opens a stream, appends each piece of the
/// request body as it arrives (text split anywhere, even inside a UTF-8 character), and
/// finishes the stream when the body ends; the answer is the finish's. A body that stops
/// (the client went away or stalled past `http_body_timeout_secs`), is not UTF-8, or passes
/// `max_message_bytes` aborts the stream. The outer error is the connection's; the inner one
/// the answer, after which the connection closes (the body may not have been read).
pub(super) async fn pipe(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    head: &Head,
    state: &AppState,
) -> Result<Result<Vec<u8>, ApiError>, Refused> {
    let cap = state.config.max_message_bytes;
    let framing = BodyFraming::of(head, cap).map_err(Refused::Answer)?;
    let opened = super::request::check_api_key(&state.config, head).and_then(|()| {
        let path = head.path().strip_prefix("/api/channels/").and_then(|p| p.strip_suffix("/streams")).unwrap_or("");
        let channel = ChannelName::new(&percent_encoding::percent_decode_str(path).decode_utf8_lossy())?;
        let event = head.query().and_then(|q| herald_http1::query::find(q, "event")).map(|e| e.into_owned());
        Ok((channel, validate_event(event)?))
    });
    let (channel, event) = match opened {
        Ok(opened) => opened,
        Err(e) => return Ok(Err(e)),
    };
    let id = match state.engine.stream_start(&channel, event.as_deref(), false).get().await {
        Ok(id) => id,
        Err(e) => return Ok(Err(e.into())),
    };
    super::body::send_continue(stream, buf, head, framing).await?;
    let progress = Duration::from_secs(state.config.http_body_timeout_secs);
    let mut pieces = Pieces::new(stream, buf, framing, cap, progress);
    // The bytes of a character split between two pieces wait for the rest of it.
    let mut split_char = Vec::new();
    let appended = loop {
        let piece = match pieces.next().await {
            Ok(Some(piece)) => piece,
            Ok(None) if split_char.is_empty() => break Ok(()),
            Ok(None) => break Err(ApiError::new(ErrorCode::BadRequest, "the body ends inside a UTF-8 character")),
            Err(refused) => {
                let _ = state.engine.stream_abort(&channel, &id).get().await;
                return Err(refused);
            }
        };
        split_char.extend_from_slice(&piece);
        let valid = match std::str::from_utf8(&split_char) {
            Ok(text) => text.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => break Err(ApiError::new(ErrorCode::BadRequest, "a piped stream's body must be UTF-8 text")),
        };
        let text = std::str::from_utf8(&split_char[..valid]).unwrap_or_default();
        if !text.is_empty()
            && let Err(e) = state.engine.stream_append(&channel, &id, Delta::Text(text)).get().await
        {
            break Err(e.into());
        }
        split_char.drain(..valid);
    };
    Ok(match appended {
        Ok(()) => finish(state, &channel, &id).await,
        Err(e) => {
            let _ = state.engine.stream_abort(&channel, &id).get().await;
            Err(e)
        }
    })
}

/// Reads what a request does: a JSON body names one operation; any other body is text to
/// append.
fn operation(headers: &HeaderMap, bytes: &[u8]) -> Result<Operation, ApiError> {
    if !is_json(headers) {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ApiError::new(ErrorCode::BadRequest, "a non-JSON body must be UTF-8 text"))?;
        return Ok(Operation::Append(Appended::Text(text.to_string())));
    }
    let body: OperationBody = parse_json(bytes)?;
    match (body.append, body.finish, body.abort) {
        (Some(value), false, false) => Ok(Operation::Append(Appended::Json(value))),
        (None, true, false) => Ok(Operation::Finish),
        (None, false, true) => Ok(Operation::Abort),
        _ => Err(ApiError::new(
            ErrorCode::BadRequest,
            "name one operation: {\"append\":\"text\"} (any JSON value for a JSON stream), {\"finish\":true} or {\"abort\":true}",
        )),
    }
}
