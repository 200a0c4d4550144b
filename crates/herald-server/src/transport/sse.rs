//! Server-Sent Events (DESIGN.md 2.4): `GET /sse?channel=a&channel=b` and `GET /sse/{channel}`.
//!
//! The stream opens with a comment, a `retry:` and an `id:` holding the starting cursor, so a
//! client that drops before its first message still resumes without loss. Every message and
//! reset carries the cursor of *all* channels of the stream as its `id:`; only that line is
//! written per connection, the rest of the event is shared by every subscriber.

use std::{convert::Infallible, io::Write as _};

use axum::{
    body::{Body, Bytes},
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, header},
    response::Response,
};
use herald_core::{Cursor, DisconnectCode, ErrorCode, protocol::encode_reset};

use super::{StreamRequest, Subscriptions, advance_cursor};
use crate::{
    http::{ApiError, AppState},
    outbox::{Frame, Transport},
    registry::Registration,
};

/// `GET /sse?channel=…`.
pub async fn stream(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    open(&state, &headers, query.as_deref(), None).unwrap_or_else(axum::response::IntoResponse::into_response)
}

/// `GET /sse/{channel}`.
pub async fn stream_one(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    open(&state, &headers, query.as_deref(), Some(&channel)).unwrap_or_else(axum::response::IntoResponse::into_response)
}

struct SseStream {
    // Field order is drop order: unsubscribe before leaving the registry.
    subscriptions: Subscriptions,
    registration: Registration,
    cursor: Cursor,
    prelude: Option<Vec<u8>>,
    retry_ms: u64,
    done: bool,
}

fn open(state: &AppState, headers: &HeaderMap, query: Option<&str>, path: Option<&str>) -> Result<Response, ApiError> {
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let request = StreamRequest::parse(state, query, path, last_event_id)?;
    if state.registry.is_shutting_down() {
        return Err(ApiError::new(ErrorCode::ShuttingDown, "the server is shutting down; retry shortly"));
    }
    let registration = state.registry.register(Transport::Sse);
    let mut subscriptions = Subscriptions::new(state.broker.clone(), registration.outbox().clone());
    let cursor = subscriptions.add_stream(&request, usize::MAX);
    let retry_ms = state.config.sse_retry_ms;
    let prelude = format!(": herald\nretry: {retry_ms}\nid: {cursor}\n\n").into_bytes();
    let sse = SseStream { subscriptions, registration, cursor, prelude: Some(prelude), retry_ms, done: false };
    let body = futures_util::stream::unfold(sse, |mut sse| async move {
        let chunk = sse.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), sse))
    });
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

// === impl SseStream ===

impl SseStream {
    /// The next bytes to send, or `None` when the stream ends.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut out = self.prelude.take().unwrap_or_default();
        loop {
            if out.is_empty() {
                self.registration.outbox().ready().await;
            }
            let (batch, close) = self.registration.outbox().take();
            for frame in batch {
                advance_cursor(&mut self.cursor, &frame);
                write_frame(&mut out, &self.cursor, &frame);
            }
            if let Some(code) = close {
                self.done = true;
                // Unsubscribe now: the body may linger in hyper after its last chunk.
                self.subscriptions.clear();
                if code == DisconnectCode::SHUTDOWN {
                    let _ = write!(out, "retry: {}\n\n", self.retry_ms);
                } else {
                    let _ = write!(out, ": disconnect {}\n\n", code.reason);
                }
            }
            if !out.is_empty() {
                return Some(Bytes::from(out));
            }
        }
    }
}

fn write_frame(out: &mut Vec<u8>, cursor: &Cursor, frame: &Frame) {
    match frame {
        Frame::Message(m) => {
            let _ = writeln!(out, "id: {cursor}");
            out.extend_from_slice(m.sse_body());
        }
        Frame::Reset { channel, position, reason } => {
            let _ = write!(out, "id: {cursor}\nevent: reset\ndata: ");
            out.extend_from_slice(&encode_reset(channel, position, *reason));
            out.extend_from_slice(b"\n\n");
        }
        Frame::Heartbeat => out.extend_from_slice(b": ping\n\n"),
        Frame::Text(_) => {}
    }
}
