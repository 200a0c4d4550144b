//! WebSocket (docs/protocol.md §6): `GET /ws`, one JSON object per text frame.
//!
//! One task per connection reads commands; frames are written straight to the socket by
//! whoever pushes them (see [`crate::outbox`]), and the task writes only the backlog a full
//! socket leaves. Replies go through the outbox too, so a subscribe reply always precedes the
//! recovered messages, which precede live ones. tungstenite reads and checks the client's
//! frames (a 512-byte read buffer); its own writes — pongs, the close handshake — go through
//! the outbox as well, so nothing interleaves with a message on the wire.

use std::{
    io,
    net::IpAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::http::{HeaderName, header};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use herald_auth::{Action, Identity};
use herald_core::{
    ChannelName, Command, DisconnectCode, ErrorCode, ProtocolError, Request, Start, TokenBucket,
    protocol::{encode, encode_reset},
};
use herald_http1::{Head, RequestHeaders as _};
use serde_json::json;
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf},
    net::TcpStream,
};
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
    engine::Answer,
    frame::{Frame, Transport},
    guard::Limit,
    http::{
        origin::{self, OriginCheck},
        response::write_response,
    },
    now_ms,
    outbox::{Outbox, Settled},
    publication::WsForm,
    publish::{Accepted, durable_reply, publish_one},
    reply::{ApiError, history_body},
    state::AppState,
    wire::{Encoder, Segments},
    ws_frames::{self, ws_text_header},
};

/// Bytes read from the socket at a time; larger frames grow the buffer while they are read.
const READ_BUFFER: usize = 512;
const PING_PUSH: &[u8] = br#"{"type":"ping"}"#;
/// A ping control frame with no payload.
const PING_FRAME: &[u8] = &[0x89, 0x00];
/// How long a closing connection waits for its backlog to drain and the peer's close.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

type WebSocket = WebSocketStream<SocketIo>;

/// `GET /ws`: checks the upgrade request (its origin and token among it), answers `101` and
/// starts the connection's task (or answers a JSON error and closes).
pub async fn accept(mut stream: TcpStream, ip: IpAddr, head: Head, leftover: BytesMut, state: AppState) {
    if let Some((identity, agreed)) = Box::pin(handshake(&mut stream, ip, head, &state)).await {
        // A task of its own, holding only the connection's state: the request head and the
        // handshake's would stay in this future's state for the connection's life (0.6 KiB).
        tokio::spawn(run(state, stream, ip, leftover, identity, agreed));
    }
}

/// Who connects, once the handshake is done: the token's identity, and the positions its
/// server-side subscriptions resume from (the `cursor` query parameter, as SSE and long
/// polling carry it).
struct Connecting {
    identity: Identity,
    cursor: herald_core::Cursor,
    /// Who the connection is to the subscribe hook's cache ([`crate::hooks`]).
    hook_key: u64,
}

/// The upgrade URL's `cursor` (empty when absent or malformed).
fn cursor_param(head: &Head) -> herald_core::Cursor {
    head.query()
        .and_then(|q| herald_http1::query::find(q, "cursor"))
        .and_then(|text| herald_core::Cursor::parse(&text).ok())
        .unwrap_or_else(|| herald_core::Cursor::with_capacity(0))
}

/// What the handshake agreed besides the upgrade.
#[derive(Clone, Copy, Debug, Default)]
struct Agreed {
    /// permessage-deflate.
    deflate: bool,
    /// The compact envelope: the subprotocol `herald.compact` (docs/protocol.md §6).
    compact: bool,
}

/// The subprotocol of the compact envelope.
const COMPACT: &str = "herald.compact";

/// Answers the upgrade request: `Some((who, agreed))` once the `101` is written (`None` for
/// who: anonymous).
async fn handshake(
    stream: &mut TcpStream,
    ip: IpAddr,
    head: Head,
    state: &AppState,
) -> Option<(Option<Box<Connecting>>, Agreed)> {
    let started = std::time::Instant::now();
    let checked = handshake_key(&head)
        .map_err(|message| ApiError::new(ErrorCode::BadRequest, format!("/ws needs a WebSocket upgrade: {message}")))
        .and_then(|key| {
            if origin::check(&state.config, &head) == OriginCheck::Refused {
                state.guard.hit(Limit::Origin, Some(ip), "a WebSocket upgrade from an origin not allowed");
                return Err(ApiError::new(ErrorCode::OriginNotAllowed, "this origin is not in allowed_origins"));
            }
            if state.registry.is_shutting_down() {
                return Err(ApiError::new(ErrorCode::ShuttingDown, "the server is shutting down; retry shortly"));
            }
            let identity = state.auth.identify(&head, head.query())?;
            let connecting = identity.map(|identity| {
                let cursor = cursor_param(&head);
                Box::new(Connecting { identity, cursor, hook_key: 0 })
            });
            Ok((key, connecting))
        });
    // The connect hook, when configured, decides who the connection is.
    let checked = match (checked, &state.hooks) {
        (Ok((key, connecting)), Some(hooks)) => {
            let (identity, cursor) = match connecting {
                Some(c) => (Some(c.identity), Some(c.cursor)),
                None => (None, None),
            };
            match hooks.connect(Transport::Ws.name(), ip, &head, identity).await {
                Ok(admitted) => Ok((
                    key,
                    admitted.identity.map(|identity| {
                        let cursor = cursor.unwrap_or_else(|| cursor_param(&head));
                        Box::new(Connecting { identity, cursor, hook_key: admitted.key })
                    }),
                )),
                Err(e) => Err(ApiError::from(e)),
            }
        }
        (checked, _) => checked,
    };
    let status = checked.as_ref().map_or_else(|e| e.0.code.http_status(), |_| 101);
    state.metrics.http_request(crate::routes::Route::Ws, status, started.elapsed().as_secs_f64());
    let (key, identity) = match checked {
        Ok(checked) => checked,
        Err(error) => {
            let response = axum::response::IntoResponse::into_response(error);
            let _ = write_response(stream, response, &head.method, false).await;
            return None;
        }
    };
    let deflate = state.config.ws_compression
        && head
            .all(&header::SEC_WEBSOCKET_EXTENSIONS)
            .any(|offer| std::str::from_utf8(offer).is_ok_and(ws_frames::accepts_offer));
    let compact = head
        .all(&header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|value| std::str::from_utf8(value).ok())
        .any(|value| value.split(',').any(|p| p.trim() == COMPACT));
    let mut agreed = String::new();
    if deflate {
        agreed.push_str(&format!("sec-websocket-extensions: {}\r\n", ws_frames::AGREED));
    }
    if compact {
        agreed.push_str(&format!("sec-websocket-protocol: {COMPACT}\r\n"));
    }
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {}\r\n{agreed}\r\n",
        derive_accept_key(key.as_bytes())
    );
    stream.write_all(answer.as_bytes()).await.ok().map(|()| (identity, Agreed { deflate, compact }))
}

/// The `Sec-WebSocket-Key` of a valid upgrade request, or what is wrong with it.
fn handshake_key(head: &Head) -> Result<String, &'static str> {
    let header = |name: &HeaderName| head.first_str(name).unwrap_or("");
    if head.method != axum::http::Method::GET {
        return Err("use GET");
    }
    if !head.has_token(&header::CONNECTION, "upgrade") || !header(&header::UPGRADE).eq_ignore_ascii_case("websocket") {
        return Err("Connection: upgrade and Upgrade: websocket are required");
    }
    if header(&header::SEC_WEBSOCKET_VERSION) != "13" {
        return Err("Sec-WebSocket-Version must be 13");
    }
    match header(&header::SEC_WEBSOCKET_KEY) {
        "" => Err("Sec-WebSocket-Key is missing"),
        key => Ok(key.to_string()),
    }
}

/// What a connection's commands are checked against: who it is and its publish budget.
struct Session {
    /// Boxed: most connections have none, and every open connection's task carries the slot.
    identity: Option<Box<Identity>>,
    publishes: TokenBucket,
    ip: IpAddr,
    /// Who the connection is to the subscribe hook's cache.
    /// What the hooks said, with hooks configured. Boxed: most servers have none, and every
    /// open connection's task carries the slot.
    hooked: Option<Box<Hooked>>,
}

/// A connection's standing with the backend's hooks.
#[derive(Default)]
struct Hooked {
    /// Who the connection is to the subscribe hook's cache.
    key: u64,
    /// The channel the subscribe or publish hook allowed for the command being run: its allow
    /// stands in for the namespace's rules.
    allowed: Option<ChannelName>,
}

async fn run(
    state: AppState,
    stream: TcpStream,
    ip: IpAddr,
    leftover: BytesMut,
    connecting: Option<Box<Connecting>>,
    agreed: Agreed,
) {
    let Agreed { deflate, compact } = agreed;
    let registration = state.registry.register(Transport::Ws);
    let outbox = registration.outbox().clone();
    let socket = Arc::new(stream);
    let form = WsForm { deflate_from: deflate.then_some(state.config.ws_compression_min_bytes), compact };
    outbox.attach(socket.clone(), Box::new(WsEncoder { form }), Segments::default());
    // Frames a bit over the message limit still parse, so an oversize publish gets a clear reply.
    let frame_limit = state.config.max_message_bytes.saturating_mul(2) + 4096;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(frame_limit))
        .max_frame_size(Some(frame_limit))
        // Inflated messages come to tungstenite unmasked.
        .accept_unmasked_frames(deflate);
    let (io, early) = socket_io(&socket, &outbox, leftover, deflate.then_some(frame_limit));
    let mut ws = WebSocketStream::from_partially_read(io, early, Role::Server, Some(config)).await;
    // Boxed: run once, its state is not carried by every open connection's task.
    let (mut subscriptions, mut session) = Box::pin(open_session(&state, &outbox, ip, connecting)).await;
    // Whether the socket is full and the task waits for it to drain.
    let mut blocked = false;
    let close = loop {
        let incoming = tokio::select! {
            () = outbox.ready() => None,
            _ = socket.writable(), if blocked => None,
            incoming = ws.next() => Some(incoming),
        };
        // A command that waits for the Redis engine to mirror its channel first.
        let mut deferred = None;
        if let Some(incoming) = incoming {
            outbox.touch(now_ms());
            match incoming {
                // With hooks, a command waits for them first.
                Some(Ok(Message::Text(text))) if state.hooks.is_some() => deferred = Some((text, None)),
                Some(Ok(Message::Text(text))) => {
                    deferred = handle(&state, &outbox, &mut subscriptions, &mut session, &text, false)
                        .map(|wanted| (text, Some(wanted)));
                }
                // A binary publish: its command, then what it runs as the text path does.
                Some(Ok(Message::Binary(payload))) => match binary_command(&payload) {
                    Ok(text) if state.hooks.is_some() => deferred = Some((text, None)),
                    Ok(text) => {
                        deferred = handle(&state, &outbox, &mut subscriptions, &mut session, &text, false)
                            .map(|wanted| (text, Some(wanted)));
                    }
                    Err(e) => {
                        outbox.push(Frame::Text(Bytes::from(e.to_reply())));
                    }
                },
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => break None,
                Some(Err(e)) => {
                    tracing::debug!(id = outbox.id(), error = %e, "websocket read failed");
                    if !is_bad_frame(e) {
                        break None;
                    }
                    // Closed like every other server-side close: after the backlog, counted.
                    outbox.close(DisconnectCode::BAD_FRAME);
                }
            }
        }
        if let Some((text, wanted)) = deferred {
            // Boxed, and owning what it needs: a connection's task carries only the pointer.
            Box::pin(run_later(&state, &outbox, &mut subscriptions, &mut session, text, wanted)).await;
        }
        match outbox.settle() {
            Settled::Open { blocked: full } => blocked = full,
            Settled::Closing(code) => break Some(code),
            Settled::Failed => break None,
        }
    };
    subscriptions.clear();
    if let Some(code) = close {
        // Boxed: the goodbye's state is not carried by every open connection's task.
        Box::pin(close_with(&mut ws, &outbox, &socket, code)).await;
    } else {
        // A close reply tungstenite wrote may still wait.
        let _ = outbox.flush();
    }
    outbox.detach();
    drop(registration);
}

/// Runs a command that had to wait: for the Redis engine to mirror `wanted`, or (`None`) for
/// the backend's hooks, and then perhaps for the mirror.
async fn run_later(
    state: &AppState,
    outbox: &Arc<Outbox>,
    subscriptions: &mut Subscriptions,
    session: &mut Session,
    text: Utf8Bytes,
    wanted: Option<Mirror>,
) {
    // The text parsed before it was deferred: these parse again.
    let Ok(mut request) = Request::parse(&text) else { return };
    if let Some(wanted) = wanted {
        return mirror_then_run(state, outbox, subscriptions, session, wanted, request).await;
    }
    let Some(hooks) = &state.hooks else { return };
    if let Err(e) = ask_hooks(hooks, session, &mut request).await {
        return push_error(outbox, request.id, e);
    }
    if let Some(wanted) = run_command(state, outbox, subscriptions, session, request, false)
        && let Ok(again) = Request::parse(&text)
    {
        mirror_then_run(state, outbox, subscriptions, session, wanted, again).await;
    }
}

/// Asks the backend's hooks about `request` before it runs: the subscribe hook about a
/// subscribe, the publish hook about a publish (whose data it may change in place). An allow
/// stands in for the namespace's rules ([`Hooked::allowed`]); a refusal is the error.
async fn ask_hooks(
    hooks: &crate::hooks::Hooks,
    session: &mut Session,
    request: &mut Request,
) -> Result<(), ProtocolError> {
    let key = session.hooked.as_ref().map_or(0, |h| h.key);
    let identity = session.identity.as_deref();
    let allowed = match &mut request.command {
        Command::Subscribe { channel, .. } => (hooks.subscribe(Transport::Ws.name(), key, identity, channel).await?
            == Some(true))
        .then(|| channel.clone()),
        Command::Publish { channel, data, event, .. } if hooks.asks_publish() => {
            if let Some(changed) = hooks.publish(identity, channel, data, event.as_deref()).await? {
                *data = changed;
            }
            Some(channel.clone())
        }
        _ => None,
    };
    session.hooked.get_or_insert_with(Box::default).allowed = allowed;
    Ok(())
}

/// The connection's subscriptions and session as it opens: who it is (`connecting`), and its
/// server-side subscriptions made.
async fn open_session(
    state: &AppState,
    outbox: &Arc<Outbox>,
    ip: IpAddr,
    connecting: Option<Box<Connecting>>,
) -> (Subscriptions, Session) {
    let mut subscriptions = Subscriptions::new(state, outbox.clone());
    let (identity, cursor, hook_key) = match connecting {
        Some(connecting) => {
            let Connecting { identity, cursor, hook_key } = *connecting;
            (Some(Box::new(identity)), Some(cursor), hook_key)
        }
        None => (None, None, 0),
    };
    if let Some(identity) = &identity {
        outbox.set_expiry(identity.expires_at.saturating_mul(1000));
        outbox.set_user(&identity.user);
        subscriptions.set_identity(identity);
    }
    let hooked = state.hooks.is_some().then(|| Box::new(Hooked { key: hook_key, allowed: None }));
    let mut session = Session { identity, publishes: state.guard.publish_bucket(), ip, hooked };
    if let Some(cursor) = cursor {
        subscribe_server_side(state, outbox, &mut subscriptions, &mut session, cursor).await;
    }
    (subscriptions, session)
}

/// Subscribes the connection to its token's server-side subscriptions (`subs`), each from its
/// position in `cursor` when it has one, as a `subscribe` command without an id would: each
/// is confirmed by a reply with `"id":null`, and recovered messages follow it.
async fn subscribe_server_side(
    state: &AppState,
    outbox: &Arc<Outbox>,
    subscriptions: &mut Subscriptions,
    session: &mut Session,
    cursor: herald_core::Cursor,
) {
    let subs: Vec<String> = session.identity.as_ref().map(|i| i.subs().to_vec()).unwrap_or_default();
    for name in subs {
        let channel = match ChannelName::new(&name) {
            Ok(channel) => channel,
            Err(e) => {
                push_error(outbox, None, e.into());
                continue;
            }
        };
        let since = cursor.get(&channel).cloned();
        let subscribe = || Request {
            id: None,
            command: Command::Subscribe { channel: channel.clone(), since: since.clone(), last: 0 },
        };
        if let Some(wanted) = run_command(state, outbox, subscriptions, session, subscribe(), false) {
            mirror_then_run(state, outbox, subscriptions, session, wanted, subscribe()).await;
        }
    }
}

/// Sends the disconnect push and a close frame with `code` after the backlog, then waits (a
/// bounded time) for the backlog to drain and the peer to answer the close.
async fn close_with(ws: &mut WebSocket, outbox: &Outbox, socket: &TcpStream, code: DisconnectCode) {
    let push = Message::Text(Utf8Bytes::try_from(code.to_push()).unwrap_or_default());
    let frame = CloseFrame { code: CloseCode::from(code.code), reason: Utf8Bytes::from_static(code.reason) };
    let _ = ws.send(push).await;
    let _ = ws.send(Message::Close(Some(frame))).await;
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        loop {
            let Ok(drained) = outbox.flush() else { return };
            tokio::select! {
                _ = socket.writable(), if !drained => {}
                incoming = ws.next() => match incoming {
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                    Some(Ok(_)) => {}
                },
            }
        }
    })
    .await;
}

/// The socket as tungstenite will read it, and the bytes read with the request head (for
/// tungstenite; with permessage-deflate, the inflater takes them, limited to `inflate_limit`).
fn socket_io(
    socket: &Arc<TcpStream>,
    outbox: &Arc<Outbox>,
    leftover: BytesMut,
    inflate_limit: Option<usize>,
) -> (SocketIo, Vec<u8>) {
    // `leftover` shares the request head's read buffer: copy the few bytes out and free it.
    let early = leftover.to_vec();
    drop(leftover);
    let inflating = inflate_limit.map(|limit| Box::new(ws_frames::Inflating::new(limit)));
    let mut io = SocketIo { socket: socket.clone(), outbox: outbox.clone(), inflating };
    match &mut io.inflating {
        Some(inflating) if !early.is_empty() => {
            if inflating.feed(&early).is_err() {
                outbox.close(DisconnectCode::BAD_FRAME);
            }
            (io, Vec::new())
        }
        _ => (io, early),
    }
}

/// The socket as tungstenite sees it: reads come from the socket (through the inflater, with
/// permessage-deflate); writes (pongs, the close handshake) go through the outbox, behind any
/// frame already written or waiting.
struct SocketIo {
    socket: Arc<TcpStream>,
    outbox: Arc<Outbox>,
    /// With permessage-deflate: the inflater of the client's frames (its buffers are freed
    /// whenever tungstenite has taken what it made, so an idle connection holds none).
    inflating: Option<Box<ws_frames::Inflating>>,
}

impl AsyncRead for SocketIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if let Some(inflating) = &mut this.inflating {
                let n = inflating.take(buf.initialize_unfilled());
                if n > 0 {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
            }
            ready!(this.socket.poll_read_ready(cx))?;
            let mut chunk = [0; READ_BUFFER];
            let read = match this.inflating {
                Some(_) => this.socket.try_read(&mut chunk),
                None => this.socket.try_read(buf.initialize_unfilled()),
            };
            match (read, &mut this.inflating) {
                (Ok(0), _) => return Poll::Ready(Ok(())),
                (Ok(n), Some(inflating)) => {
                    inflating.feed(&chunk[..n]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                }
                (Ok(n), None) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                (Err(e), _) if e.kind() == io::ErrorKind::WouldBlock => {}
                (Err(e), _) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SocketIo {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // tungstenite hands over whole frames; the outbox writes or keeps them in order.
        self.outbox.write_raw(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Frames as WebSocket frames: messages in the connection's form (the frame encoded at publish
/// time, or its compact or compressed form, each made once per message), replies and resets
/// as text frames, heartbeats as a ping frame plus a `{"type":"ping"}` push.
struct WsEncoder {
    form: WsForm,
}

impl Encoder for WsEncoder {
    fn encode(&mut self, frame: Frame, out: &mut Segments) {
        match frame {
            Frame::Message(m) => out.push(m.ws_frame_in(self.form)),
            Frame::Reset { channel, position, reason } => {
                text_frame(Bytes::from(encode_reset(&channel, &position, reason)), out);
            }
            Frame::Text(bytes) | Frame::Stream { json: bytes, .. } => text_frame(bytes, out),
            Frame::Heartbeat => {
                out.push(Bytes::from_static(PING_FRAME));
                text_frame(Bytes::from_static(PING_PUSH), out);
            }
        }
    }
}

fn text_frame(payload: Bytes, out: &mut Segments) {
    out.push(Bytes::from(ws_text_header(payload.len())));
    out.push(payload);
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

/// A client's binary frame — `[u16 big-endian header length][header JSON][bytes]`, the header a
/// `publish` command without `data` — as the JSON command it stands for (`data` the bytes in
/// base64, `"encoding":"base64"`).
fn binary_command(payload: &[u8]) -> Result<Utf8Bytes, ProtocolError> {
    let bad = |what: &str| ProtocolError::new(ErrorCode::BadRequest, format!("a binary frame {what}"));
    let length =
        payload.get(..2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))).ok_or_else(|| bad("needs a header"))?;
    let header = payload.get(2..2 + length).ok_or_else(|| bad("is shorter than its header"))?;
    let mut command: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|_| bad("header must be a JSON object"))?;
    if command.get("op").and_then(|op| op.as_str()) != Some("publish") {
        return Err(bad("must be a publish (\"op\":\"publish\")"));
    }
    let data = crate::binary::data_of(&payload[2 + length..]);
    command.insert("data".into(), serde_json::from_str(data.get()).unwrap_or_default());
    command.insert("encoding".into(), "base64".into());
    Ok(Utf8Bytes::from(serde_json::Value::Object(command).to_string()))
}

/// Channels the Redis engine must mirror (in line with a position) before a command runs.
type Mirror = Vec<(ChannelName, Option<herald_core::StreamPosition>)>;

/// Parses and runs one command, pushing its reply or error (see [`run_command`]).
fn handle(
    state: &AppState,
    outbox: &Arc<Outbox>,
    subscriptions: &mut Subscriptions,
    session: &mut Session,
    text: &str,
    mirrored: bool,
) -> Option<Mirror> {
    match Request::parse(text) {
        Ok(request) => run_command(state, outbox, subscriptions, session, request, mirrored),
        Err(e) => {
            outbox.push(Frame::Text(Bytes::from(e.to_reply())));
            None
        }
    }
}

/// Runs one command, pushing its reply or error. Returns what must be mirrored first when the
/// command cannot run yet (unless `mirrored`): the caller mirrors it and runs the command
/// again ([`mirror_then_run`]).
fn run_command(
    state: &AppState,
    outbox: &Arc<Outbox>,
    subscriptions: &mut Subscriptions,
    session: &mut Session,
    request: Request,
    mirrored: bool,
) -> Option<Mirror> {
    let id = request.id;
    match execute(state, outbox, subscriptions, session, request, mirrored) {
        Ok(mirror) => mirror,
        Err(e) => {
            push_error(outbox, id, e);
            None
        }
    }
}

/// Has the Redis engine mirror `wanted`, then runs `again` (the command that asked for it).
async fn mirror_then_run(
    state: &AppState,
    outbox: &Arc<Outbox>,
    subscriptions: &mut Subscriptions,
    session: &mut Session,
    wanted: Mirror,
    again: Request,
) {
    match state.engine.prepare(wanted).get().await {
        Ok(()) => {
            run_command(state, outbox, subscriptions, session, again, true);
        }
        Err(e) => push_error(outbox, again.id, e),
    }
}

fn push_error(outbox: &Outbox, id: Option<u64>, mut e: ProtocolError) {
    e.id = id;
    outbox.push(Frame::Text(Bytes::from(e.to_reply())));
    // A token that does not verify ends the connection, in the do-not-reconnect range.
    match e.code {
        ErrorCode::InvalidToken => outbox.close(DisconnectCode::INVALID_TOKEN),
        ErrorCode::TokenExpired => outbox.close(DisconnectCode::TOKEN_EXPIRED),
        _ => {}
    }
}

/// Pushes the reply `answer` resolves to (or its error) once it does; other commands go on
/// meanwhile.
fn reply_later(
    outbox: &Arc<Outbox>,
    id: Option<u64>,
    answer: impl Future<Output = Result<Vec<u8>, herald_core::ProtocolError>> + Send + 'static,
) {
    let outbox = outbox.clone();
    tokio::spawn(async move {
        match answer.await {
            Ok(body) => {
                outbox.push(reply_raw(id, &body));
            }
            Err(e) => push_error(&outbox, id, e),
        }
    });
}

fn execute(
    state: &AppState,
    outbox: &Arc<Outbox>,
    subscriptions: &mut Subscriptions,
    session: &mut Session,
    request: Request,
    mirrored: bool,
) -> Result<Option<Mirror>, ProtocolError> {
    let id = request.id;
    let allow = |channel: &ChannelName, action: Action| {
        crate::auth::check(&state.config, session.identity.as_deref(), channel, action)
    };
    match request.command {
        Command::Subscribe { channel, since, last } => {
            if session.hooked.as_ref().is_none_or(|h| h.allowed.as_ref() != Some(&channel)) {
                allow(&channel, Action::Subscribe)?;
            }
            let server_side = session.identity.as_ref().is_some_and(|i| i.subs().iter().any(|c| c == channel.as_str()));
            if subscriptions.contains(&channel) && !server_side {
                return Err(ProtocolError::new(
                    ErrorCode::AlreadySubscribed,
                    format!("already subscribed to {channel}"),
                ));
            }
            let limit = state.config.max_channels_per_connection;
            if subscriptions.len() >= limit {
                state.guard.hit(Limit::ChannelsPerConnection, Some(session.ip), "a WebSocket over the channel limit");
                return Err(ProtocolError::new(ErrorCode::TooManyChannels, format!("at most {limit} channels")));
            }
            if !mirrored && !state.engine.in_line(&channel, since.as_ref()) {
                return Ok(Some(vec![(channel, since)]));
            }
            // A client subscribing to a server-side subscription takes it over from its own
            // position: what it already has comes again and is dropped by its offsets.
            if server_side {
                subscriptions.remove(&channel);
            }
            subscriptions.add(&channel, Start::new(since.as_ref(), last), usize::MAX, |s: &Subscribed| {
                let mut result = json!({
                    "channel": channel.as_str(), "epoch": &*s.position.epoch, "offset": s.position.offset,
                });
                if let Some(recovered) = s.recovered {
                    result["recovered"] = json!(recovered);
                }
                if s.conflated {
                    result["conflated"] = json!(true);
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
        Command::Publish { channel, data, event, binary } => {
            let event = crate::binary::event_for(binary.then_some("base64"), &data, event)
                .map_err(|e| ProtocolError::new(ErrorCode::BadRequest, e))?;
            if session.hooked.as_ref().is_none_or(|h| h.allowed.as_ref() != Some(&channel)) {
                allow(&channel, Action::Publish)?;
            }
            state.guard.client_publish(session.ip, Some(&mut session.publishes))?;
            match publish_one(state, &channel, &data, event.as_deref(), None).map_err(|e| e.0)? {
                Accepted::Local { body, seq: 0 } => {
                    outbox.push(reply_raw(id, &body));
                }
                // The reply waits until the publish is durable, or Redis has answered.
                accepted => {
                    let state = state.clone();
                    reply_later(outbox, id, async move { durable_reply(&state, accepted).await.map_err(|e| e.0) });
                }
            }
        }
        Command::History { channel, query } => {
            allow(&channel, Action::History)?;
            match state.engine.history(&channel, &query) {
                Answer::Ready(answer) => {
                    let (position, messages) = answer?;
                    outbox.push(reply_raw(id, &history_body(&channel, &position, &messages)));
                }
                Answer::Later(answer) => reply_later(outbox, id, async move {
                    let (position, messages) = answer.await?;
                    Ok(history_body(&channel, &position, &messages))
                }),
            }
        }
        Command::Presence { channel } => {
            allow(&channel, Action::Presence)?;
            match state.engine.presence(&channel) {
                Answer::Ready(answer) => {
                    outbox.push(reply(id, &answer?));
                }
                Answer::Later(answer) => reply_later(outbox, id, async move { Ok(encode(&answer.await?)) }),
            }
        }
        Command::Auth { token } => {
            let identity = state.auth.verify(&token)?;
            if let Some(current) = &session.identity
                && current.user != identity.user
            {
                return Err(ProtocolError::new(
                    ErrorCode::Forbidden,
                    "a connection keeps its user; open a new connection for another one",
                ));
            }
            outbox.set_expiry(identity.expires_at.saturating_mul(1000));
            outbox.set_user(&identity.user);
            subscriptions.set_identity(&identity);
            outbox.push(reply(id, &json!({ "user": identity.user, "expires_at": identity.expires_at })));
            session.identity = Some(Box::new(identity));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::run;

    /// Every open WebSocket is one task holding this future, most of an idle connection's
    /// memory (the budget is 4 KiB per connection, the performance budget in BENCHMARKS.md). The handshake's future
    /// around it, request head included, made it 1,680 bytes when it ran in the same task.
    #[tokio::test]
    async fn a_websocket_task_stays_small() {
        let (server, stream, peer, _client) = crate::server::Server::with_connection_for_tests().await;
        // With permessage-deflate: its inflater is boxed and holds nothing while idle.
        let agreed = super::Agreed { deflate: true, compact: true };
        let connection = run(server.state().clone(), stream, peer.ip(), bytes::BytesMut::new(), None, agreed);
        let size = std::mem::size_of_val(&connection);
        assert!(size <= 1_200, "a WebSocket's task is {size} bytes: keep large state out of it (box it)");
    }
}
