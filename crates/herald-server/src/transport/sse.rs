//! Server-Sent Events (docs/protocol.md §4): `GET /sse?channel=a&channel=b` and `GET /sse/{channel}`.
//!
//! The stream opens with a comment, a `retry:` and an `id:` holding the starting cursor, so a
//! client that drops before its first message still resumes without loss. Every message and
//! reset carries the cursor of *all* channels of the stream as its `id:`; only that line (and
//! the chunk's size line) is written per connection, the rest of the event is shared by every
//! subscriber. After the response head the stream takes the socket over ([`Takeover`]):
//! events are written straight from the publisher (see [`crate::outbox`]), and the stream's
//! task only drains a backlog, notices a peer that went away, and ends the stream.

use std::{
    io::Write as _,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use axum::{
    Extension,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, header},
    response::Response,
};
use bytes::Bytes;
use herald_core::{Cursor, DisconnectCode, ErrorCode, protocol::encode_reset};
use tokio::net::TcpStream;

use super::{StreamRequest, Subscriptions, advance_cursor};
use crate::{
    frame::{Frame, Transport},
    guard::StreamPermit,
    http::response::{Takeover, chunk_size_line},
    outbox::{Outbox, Settled},
    registry::Registration,
    reply::ApiError,
    state::AppState,
    wire::{Encoder, Segments},
};

/// How long an ending stream waits for its backlog to drain.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// `GET /sse?channel=…`.
pub async fn stream(
    State(state): State<AppState>,
    Extension(peer): Extension<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    open(&state, peer.ip(), &headers, query.as_deref(), None)
        .await
        .unwrap_or_else(axum::response::IntoResponse::into_response)
}

/// `GET /sse/{channel}`.
pub async fn stream_one(
    State(state): State<AppState>,
    Extension(peer): Extension<SocketAddr>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    open(&state, peer.ip(), &headers, query.as_deref(), Some(&channel))
        .await
        .unwrap_or_else(axum::response::IntoResponse::into_response)
}

struct SseStream {
    // Field order is drop order: unsubscribe before leaving the registry.
    subscriptions: Subscriptions,
    registration: Registration,
    _permit: StreamPermit,
    cursor: Cursor,
    retry_ms: u64,
}

async fn open(
    state: &AppState,
    ip: IpAddr,
    headers: &HeaderMap,
    query: Option<&str>,
    path: Option<&str>,
) -> Result<Response, ApiError> {
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let mut request = StreamRequest::parse(state, query, path, last_event_id)?;
    let token = crate::auth::bearer_token(headers)?.or_else(|| request.token.clone());
    let identity = super::admit_stream(state, Transport::Sse, ip, headers, token.as_deref(), &mut request).await?;
    super::prepare_stream(state, &request).await?;
    if state.registry.is_shutting_down() {
        return Err(ApiError::new(ErrorCode::ShuttingDown, "the server is shutting down; retry shortly"));
    }
    let permit = state.guard.open_stream(ip)?;
    let registration = state.registry.register(Transport::Sse);
    let outbox = registration.outbox();
    let mut subscriptions = Subscriptions::new(state, outbox.clone());
    if let Some(identity) = &identity {
        // The stream ends when its token does; the client reconnects with a fresh one.
        outbox.set_expiry(identity.expires_at.saturating_mul(1000));
        outbox.set_user(&identity.user);
        subscriptions.set_identity(identity);
    }
    let cursor = subscriptions.add_stream(&request, usize::MAX);
    let retry_ms = state.config.sse_retry_ms;
    let sse = SseStream { subscriptions, registration, _permit: permit, cursor, retry_ms };
    let mut response = Response::new(axum::body::Body::empty());
    response.extensions_mut().insert(Takeover::new(move |stream, chunked| sse.run(stream, chunked)));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

// === impl SseStream ===

impl SseStream {
    /// Writes the stream to `stream` until the client goes away or the server ends it.
    async fn run(self, stream: TcpStream, chunked: bool) {
        let SseStream { mut subscriptions, registration, _permit, cursor, retry_ms } = self;
        let outbox = registration.outbox().clone();
        let socket = Arc::new(stream);
        let mut lead = Segments::default();
        event(chunked, Bytes::new(), &mut lead, |b| {
            let _ = write!(b, ": herald\nretry: {retry_ms}\nid: {cursor}\n\n");
        });
        outbox.attach(socket.clone(), Box::new(SseEncoder { cursor, chunked }), lead);
        let mut blocked = false;
        let close = loop {
            let gone = tokio::select! {
                () = outbox.ready() => false,
                _ = socket.writable(), if blocked => false,
                _ = socket.readable() => peer_gone(&socket),
            };
            if gone {
                break None;
            }
            match outbox.settle() {
                Settled::Open { blocked: full } => blocked = full,
                Settled::Closing(code) => break Some(code),
                Settled::Failed => break None,
            }
        };
        subscriptions.clear();
        if let Some(code) = close {
            let mut last = Segments::default();
            event(chunked, Bytes::new(), &mut last, |b| {
                let _ = if code == DisconnectCode::SHUTDOWN {
                    write!(b, "retry: {retry_ms}\n\n")
                } else {
                    write!(b, ": disconnect {}\n\n", code.reason)
                };
            });
            if chunked {
                last.push(Bytes::from_static(b"0\r\n\r\n"));
            }
            for part in last.into_parts() {
                outbox.write_raw(&part);
            }
            let _ = tokio::time::timeout(CLOSE_WAIT, drain(&outbox, &socket)).await;
        }
        outbox.detach();
        drop(registration);
    }
}

/// Writes what waits for `socket` until nothing does (or the socket fails).
async fn drain(outbox: &Outbox, socket: &TcpStream) {
    while let Ok(false) = outbox.flush() {
        if socket.writable().await.is_err() {
            return;
        }
    }
}

/// Whether a readable socket is at its end (or failed). Anything a client sends on an event
/// stream is read and ignored.
fn peer_gone(socket: &TcpStream) -> bool {
    let mut scratch = [0u8; 256];
    match socket.try_read(&mut scratch) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Appends one event: what `head` writes (per connection) then `body` (shared), as one chunk
/// when the response is chunked. The head and the chunk's size line share one allocation:
/// room for the size line is kept in front of the head and the slice starts where it begins.
fn event(chunked: bool, body: Bytes, out: &mut Segments, head: impl FnOnce(&mut Vec<u8>)) {
    const ROOM: usize = 18;
    let mut buf = Vec::with_capacity(ROOM + 96);
    if chunked {
        buf.resize(ROOM, 0);
    }
    head(&mut buf);
    if !chunked {
        out.push(Bytes::from(buf));
        out.push(body);
        return;
    }
    let mut size = [0u8; ROOM];
    let line = chunk_size_line(buf.len() - ROOM + body.len(), &mut size);
    let start = ROOM - line.len();
    buf[start..ROOM].copy_from_slice(line);
    out.push(Bytes::from(buf).slice(start..));
    out.push(body);
    out.push(Bytes::from_static(b"\r\n"));
}

/// Frames as SSE events, each with the stream's cursor after it as its `id:`.
struct SseEncoder {
    cursor: Cursor,
    chunked: bool,
}

impl Encoder for SseEncoder {
    fn encode(&mut self, frame: Frame, out: &mut Segments) {
        advance_cursor(&mut self.cursor, &frame);
        match frame {
            Frame::Message(m) => {
                let cursor = &self.cursor;
                event(self.chunked, m.sse_body().clone(), out, |b| {
                    let _ = writeln!(b, "id: {cursor}");
                });
            }
            Frame::Reset { channel, position, reason } => {
                let cursor = &self.cursor;
                event(self.chunked, Bytes::new(), out, |b| {
                    let _ = write!(b, "id: {cursor}\nevent: reset\ndata: ");
                    b.extend_from_slice(&encode_reset(&channel, &position, reason));
                    b.extend_from_slice(b"\n\n");
                });
            }
            // Stream pushes carry no `id:`: they hold no position (the stream's message will).
            Frame::Stream { kind, json, .. } => {
                event(self.chunked, json, out, |b| {
                    let _ = write!(b, "event: {}\ndata: ", kind.name());
                });
                out.push(Bytes::from_static(if self.chunked { b"2\r\n\n\n\r\n" } else { b"\n\n" }));
            }
            Frame::Heartbeat if self.chunked => out.push(Bytes::from_static(b"8\r\n: ping\n\n\r\n")),
            Frame::Heartbeat => out.push(Bytes::from_static(b": ping\n\n")),
            Frame::Text(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use bytes::Bytes;

    use super::event;
    use crate::wire::Segments;

    fn text(segments: Segments) -> String {
        segments.into_parts().map(|p| String::from_utf8_lossy(&p).into_owned()).collect()
    }

    #[test]
    fn an_event_is_one_chunk_with_its_size_line_or_plain_bytes() {
        let body = Bytes::from_static(b"event: message\ndata: {}\n\n");
        for id in ["a~e~1", &"x".repeat(300)] {
            let head = format!("id: {id}\n");
            let mut chunked = Segments::default();
            event(true, body.clone(), &mut chunked, |b| {
                let _ = write!(b, "{head}");
            });
            let len = head.len() + body.len();
            assert_eq!(text(chunked), format!("{len:x}\r\n{head}event: message\ndata: {{}}\n\n\r\n"));
            let mut plain = Segments::default();
            event(false, body.clone(), &mut plain, |b| {
                let _ = write!(b, "{head}");
            });
            assert_eq!(text(plain), format!("{head}event: message\ndata: {{}}\n\n"));
        }
    }
}
