//! WebSocket (DESIGN.md 2.6): `GET /ws`, one JSON object per text frame.
//!
//! One task per connection reads commands and writes what its queue holds. Replies go through
//! the queue too, so a subscribe reply always precedes the recovered messages, which precede
//! live ones. Buffers are sized on purpose: a 4 KiB read buffer (tungstenite's default is
//! 128 KiB) and a write buffer that grows only while a batch is written.

use std::{collections::VecDeque, sync::Arc};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use herald_core::{
    Command, DisconnectCode, ErrorCode, ProtocolError, Request,
    protocol::{encode, encode_reset},
};
use serde_json::json;
use tokio::{io::AsyncWriteExt as _, net::TcpStream};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Message, Utf8Bytes,
        handshake::derive_accept_key,
        protocol::{CloseFrame, Role, WebSocketConfig, frame::coding::CloseCode},
    },
};

use super::Subscriptions;
use crate::{
    broker::Subscribed,
    http::{
        ApiError, AppState,
        api::{history_body, publish_one, published},
        conn::{Head, write_response},
    },
    now_ms,
    outbox::{Frame, Outbox, Transport},
};

/// Bytes read from the socket at a time; larger frames grow the buffer while they are read.
const READ_BUFFER: usize = 512;
const WRITE_BUFFER: usize = 8 * 1024;
const PING_PUSH: &str = r#"{"type":"ping"}"#;

type WebSocket = WebSocketStream<TcpStream>;

/// `GET /ws`: checks the upgrade request, answers `101` and runs the connection (or answers a
/// JSON error and closes).
pub async fn accept(stream: TcpStream, head: Head, leftover: BytesMut, state: AppState) {
    // The head, its buffer and the handshake's strings are gone before the connection runs.
    if let Some(socket) = handshake(stream, head, leftover, &state).await {
        run(state, socket).await;
    }
}

async fn handshake(mut stream: TcpStream, head: Head, leftover: BytesMut, state: &AppState) -> Option<WebSocket> {
    let checked = match handshake_key(&head) {
        Err(message) => Err(ApiError::new(ErrorCode::BadRequest, format!("/ws needs a WebSocket upgrade: {message}"))),
        Ok(_) if state.registry.is_shutting_down() => {
            Err(ApiError::new(ErrorCode::ShuttingDown, "the server is shutting down; retry shortly"))
        }
        Ok(key) => Ok(key),
    };
    let key = match checked {
        Ok(key) => key,
        Err(error) => {
            let response = axum::response::IntoResponse::into_response(error);
            let _ = write_response(&mut stream, response, &head.method, head.version, false).await;
            return None;
        }
    };
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    stream.write_all(answer.as_bytes()).await.ok()?;
    // Frames a bit over the message limit still parse, so an oversize publish gets a clear reply.
    let frame_limit = state.config.max_message_bytes.saturating_mul(2) + 4096;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(frame_limit))
        .max_frame_size(Some(frame_limit));
    let socket = if leftover.is_empty() {
        WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await
    } else {
        WebSocketStream::from_partially_read(stream, leftover.to_vec(), Role::Server, Some(config)).await
    };
    Some(socket)
}

/// The `Sec-WebSocket-Key` of a valid upgrade request, or what is wrong with it.
fn handshake_key(head: &Head) -> Result<String, &'static str> {
    let header = |name: &str| head.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let has_token = |name: &str, token: &str| header(name).split(',').any(|t| t.trim().eq_ignore_ascii_case(token));
    if head.method != axum::http::Method::GET {
        return Err("use GET");
    }
    if !has_token("connection", "upgrade") || !header("upgrade").eq_ignore_ascii_case("websocket") {
        return Err("Connection: upgrade and Upgrade: websocket are required");
    }
    if header("sec-websocket-version") != "13" {
        return Err("Sec-WebSocket-Version must be 13");
    }
    match header("sec-websocket-key") {
        "" => Err("Sec-WebSocket-Key is missing"),
        key => Ok(key.to_string()),
    }
}

/// What woke the connection.
enum Wake {
    /// The queue has frames or a close.
    Queue,
    /// The peer sent something (or went away).
    Peer(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
}

async fn run(state: AppState, mut socket: WebSocket) {
    let registration = state.registry.register(Transport::Ws);
    let outbox = registration.outbox().clone();
    let mut subscriptions = Subscriptions::new(state.broker.clone(), outbox.clone());
    // One socket, no split halves: reading and writing take turns in this one task.
    let close = loop {
        let wake = tokio::select! {
            () = outbox.ready() => Wake::Queue,
            incoming = socket.next() => Wake::Peer(incoming),
        };
        match wake {
            Wake::Queue => {
                let (batch, close) = outbox.take();
                if !write_batch(&mut socket, batch).await {
                    break None;
                }
                if close.is_some() {
                    break close;
                }
            }
            Wake::Peer(incoming) => {
                outbox.touch(now_ms());
                match incoming {
                    Some(Ok(Message::Text(text))) => handle(&state, &outbox, &mut subscriptions, &text),
                    Some(Ok(Message::Binary(_))) => {
                        let e = ProtocolError::new(
                            ErrorCode::BadRequest,
                            "binary frames are not supported; send JSON text",
                        );
                        outbox.push(Frame::Text(Bytes::from(e.to_reply())));
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Err(e)) => {
                        tracing::debug!(id = outbox.id(), error = %e, "websocket read failed");
                        break is_bad_frame(e).then_some(DisconnectCode::BAD_FRAME);
                    }
                }
            }
        }
    };
    subscriptions.clear();
    if let Some(code) = close {
        let push = Message::Text(Utf8Bytes::try_from(code.to_push()).unwrap_or_default());
        let frame = CloseFrame { code: CloseCode::from(code.code), reason: Utf8Bytes::from_static(code.reason) };
        let _ = socket.send(push).await;
        let _ = socket.send(Message::Close(Some(frame))).await;
        // Let the peer answer the close before the socket drops.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            while let Some(Ok(m)) = socket.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    drop(registration);
}

/// Writes every frame of `batch` and flushes once; false when the socket failed.
async fn write_batch(socket: &mut WebSocket, batch: VecDeque<Frame>) -> bool {
    for frame in batch {
        for message in ws_messages(frame) {
            if socket.feed(message).await.is_err() {
                return false;
            }
        }
    }
    socket.flush().await.is_ok()
}

/// Whether a read error is the peer's fault (an oversize, malformed or non-UTF-8 frame) rather
/// than a lost connection: such a peer is told not to reconnect.
fn is_bad_frame(e: tokio_tungstenite::tungstenite::Error) -> bool {
    use tokio_tungstenite::tungstenite::error::{Error, ProtocolError};
    match e {
        Error::Capacity(_) | Error::Utf8(_) => true,
        Error::Protocol(p) => !matches!(p, ProtocolError::ResetWithoutClosingHandshake),
        _ => false,
    }
}

/// The WebSocket messages of one queued frame.
fn ws_messages(frame: Frame) -> impl Iterator<Item = Message> {
    let (first, second) = match frame {
        Frame::Message(m) => (Message::Text(m.ws_text()), None),
        Frame::Reset { channel, position, reason } => {
            (Message::Text(text(encode_reset(&channel, &position, reason))), None)
        }
        Frame::Text(bytes) => (Message::Text(Utf8Bytes::try_from(bytes).unwrap_or_default()), None),
        Frame::Heartbeat => (Message::Ping(Bytes::new()), Some(Message::Text(Utf8Bytes::from_static(PING_PUSH)))),
    };
    std::iter::once(first).chain(second)
}

fn text(bytes: Vec<u8>) -> Utf8Bytes {
    Utf8Bytes::try_from(bytes).unwrap_or_default()
}

/// `{"id":…,"result":<result>}` around an already encoded result.
fn reply_raw(id: Option<u64>, result: &[u8]) -> Frame {
    let mut out = Vec::with_capacity(result.len() + 32);
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(&encode(&id));
    out.extend_from_slice(b",\"result\":");
    out.extend_from_slice(result);
    out.push(b'}');
    Frame::Text(Bytes::from(out))
}

fn reply(id: Option<u64>, result: &serde_json::Value) -> Frame {
    reply_raw(id, &encode(result))
}

fn handle(state: &AppState, outbox: &Arc<Outbox>, subscriptions: &mut Subscriptions, text: &str) {
    let request = match Request::parse(text) {
        Ok(request) => request,
        Err(e) => {
            outbox.push(Frame::Text(Bytes::from(e.to_reply())));
            return;
        }
    };
    let id = request.id;
    if let Err(mut e) = execute(state, outbox, subscriptions, request) {
        e.id = id;
        outbox.push(Frame::Text(Bytes::from(e.to_reply())));
    }
}

fn execute(
    state: &AppState,
    outbox: &Arc<Outbox>,
    subscriptions: &mut Subscriptions,
    request: Request,
) -> Result<(), ProtocolError> {
    let id = request.id;
    match request.command {
        Command::Subscribe { channel, since } => {
            if subscriptions.contains(&channel) {
                return Err(ProtocolError::new(
                    ErrorCode::AlreadySubscribed,
                    format!("already subscribed to {channel}"),
                ));
            }
            let limit = state.config.max_channels_per_connection;
            if subscriptions.len() >= limit {
                return Err(ProtocolError::new(ErrorCode::TooManyChannels, format!("at most {limit} channels")));
            }
            subscriptions.add(&channel, since.as_ref(), usize::MAX, |s: &Subscribed| {
                let mut result = json!({
                    "channel": channel.as_str(), "epoch": &*s.position.epoch, "offset": s.position.offset,
                });
                if let Some(recovered) = s.recovered {
                    result["recovered"] = json!(recovered);
                }
                Some(reply(id, &result))
            });
        }
        Command::Unsubscribe { channel } => {
            if !subscriptions.remove(&channel) {
                return Err(ProtocolError::new(ErrorCode::NotSubscribed, format!("not subscribed to {channel}")));
            }
            outbox.push(reply(id, &json!({ "channel": channel.as_str() })));
        }
        Command::Publish { channel, data, event } => {
            let message = publish_one(state, &channel, &data, event.as_deref()).map_err(|e| e.0)?;
            outbox.push(reply(id, &published(&message)));
        }
        Command::History { channel, limit, since } => {
            let (position, messages) = state.broker.history(&channel, since, limit.unwrap_or(usize::MAX));
            outbox.push(reply_raw(id, &history_body(&channel, &position, &messages)));
        }
        Command::Presence { .. } | Command::Auth { .. } => {
            return Err(ProtocolError::new(
                ErrorCode::NotAvailable,
                "presence and auth are not available in this version",
            ));
        }
    }
    Ok(())
}
