//! Long polling (docs/protocol.md §5): `GET /poll?channel=a&channel=b&cursor=…&timeout=…`.
//!
//! Each request subscribes from its cursor (recovering what it missed, atomically with
//! registering for live messages) and answers as soon as anything is queued or the timeout
//! passes. The cursor it returns resumes every channel on any node.
//!
//! On a keep-alive connection, the answered poll's subscription stays [`Parked`] until the
//! connection's next request: a poll that comes back from the answer's cursor, for the same
//! channels and identity, continues it, and finds queued what was published in between. Any
//! other request drops it, and so do the connection's end and the answered poll's deadline
//! (on the connection's timer: no timer of its own). This spares the usual case — a client
//! polling again at once — subscribing and leaving each channel on every message.
//!
//! While such a poll waits, its answer is armed on its outbox ([`PollAnswer`]): the fan-out
//! that brings messages writes the whole HTTP answer itself, and the connection's task wakes
//! only for the client's next request. Anything else a poll can be answered with (a reset, an
//! open stream's snapshot, a close) is answered by the connection's task as before.

use std::{
    borrow::Cow,
    collections::VecDeque,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    task::Poll,
    time::Duration,
};

use axum::{
    Extension,
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use herald_core::{
    ErrorCode,
    protocol::{StreamPushKind, encode_reset},
};

use herald_auth::Identity;
use herald_core::Cursor;
use herald_http1::Head;
use tokio::{
    io::{AsyncWriteExt as _, Interest},
    net::TcpStream,
};

use super::{StreamRequest, Subscriptions, advance_cursor, authorize_stream};
use crate::{
    frame::{Frame, Transport},
    guard::StreamPermit,
    http::response::write_answer,
    outbox::PollAnswer,
    registry::Registration,
    reply::{ApiError, json_ok, splice_envelopes},
    state::AppState,
};

/// Most messages recovered per channel in one poll; the client's next poll gets the rest.
const POLL_BATCH: usize = 1000;

/// `GET /poll` through the router (the connection loop calls [`wait`] directly).
pub async fn poll(
    State(state): State<AppState>,
    Extension(peer): Extension<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let answer = match crate::auth::bearer_token(&headers) {
        Ok(bearer) => wait(&state, &headers, query.as_deref(), bearer.as_deref(), peer.ip()).await,
        Err(e) => Err(e.into()),
    };
    match answer {
        Ok(body) => {
            let mut response = json_ok(body);
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => e.into_response(),
    }
}

/// Waits for `GET /poll?<query>` from `ip` with the request's `bearer` token and returns its
/// JSON body (messages, resets and the next cursor), to be sent with `Cache-Control: no-store`.
pub async fn wait(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
    bearer: Option<&str>,
    ip: IpAddr,
) -> Result<Vec<u8>, ApiError> {
    let waiting = if starts_at_once(state) {
        start(state, request(state, query, bearer)?, ip)?
    } else {
        admit_and_start(state, headers, query, bearer.map(str::to_string), ip).await?
    };
    Ok(waiting.finish().await)
}

/// A long poll as the connection loop starts it: subscribed (or refused), the CORS origin to
/// echo, and whether the connection stays open.
pub struct Started {
    waiting: Result<Waiting, ApiError>,
    cors: Option<HeaderValue>,
    keep_alive: bool,
    parks: bool,
}

// === impl Started ===

impl Started {
    /// A started poll: `waiting` (or why it was refused), the allowed `cors` origin,
    /// `keep_alive`. With `parks`, a keep-alive connection keeps the poll's subscription
    /// for its next poll ([`Parked`]).
    pub fn new(waiting: Result<Waiting, ApiError>, cors: Option<HeaderValue>, keep_alive: bool, parks: bool) -> Self {
        Self { waiting, cors, keep_alive, parks }
    }
}

/// Whether a poll starts without waiting: no hooks to ask and no channels to mirror first.
pub fn starts_at_once(state: &AppState) -> bool {
    !(state.engine.mirrors() || state.hooks.is_some())
}

/// Starts `GET /poll` on the connection's own loop, without the router, when it
/// [`starts_at_once`]: reads the token, the channels and the cursor from `head`, continues
/// the connection's `parked` subscription when the request picks up where it left off, and
/// subscribes otherwise. Nothing of the request is kept while the poll waits.
pub fn start_at_once(
    state: &AppState,
    head: &Head,
    ip: IpAddr,
    parked: Option<Box<Parked>>,
) -> Result<Waiting, ApiError> {
    let bearer = crate::auth::bearer_token(head)?;
    let request = request(state, head.query(), bearer.as_deref())?;
    let Some(parked) = parked else { return start(state, request, ip) };
    match (*parked).resume(state, request) {
        Ok(waiting) => Ok(waiting),
        // The parked subscription is dropped (unsubscribed) before this one subscribes.
        Err(request) => start(state, *request, ip),
    }
}

/// [`start_at_once`] for a poll that does not: asks the backend's hooks first, and with Redis
/// has the node mirror the poll's channels ([`admit_and_start`]).
pub async fn start_admitted(state: &AppState, head: &Head, ip: IpAddr) -> Result<Waiting, ApiError> {
    let bearer = crate::auth::bearer_token(head)?;
    admit_and_start(state, head, head.query(), bearer, ip).await
}

/// What a connection does after a poll's answer.
pub enum Answered {
    /// It closes.
    Close,
    /// It waits for the next request, with the poll's subscription [`Parked`] when it can be
    /// continued.
    KeepAlive(Option<Box<Parked>>),
}

/// Waits for a started poll's answer (on `timer`, the connection's) and writes it (setting
/// `status`), unless a pusher wrote it (see [`PollAnswer`]; it counted the request then). A
/// client that left meanwhile gets no answer, and nothing of the poll is kept. The `stream` is
/// shared with the poll's outbox only while the poll waits.
pub async fn answer(
    stream: &mut Arc<TcpStream>,
    started: Started,
    timer: Pin<&mut tokio::time::Sleep>,
    status: &mut u16,
) -> Answered {
    let Started { waiting, cors, keep_alive, parks } = started;
    let (body, parked) = match waiting {
        Ok(waiting) => match wait_poll(stream, waiting, timer, (keep_alive && parks).then_some(&cors)).await {
            Waited::Gone => return Answered::Close,
            Waited::Body(body, parked) => (Ok(body), parked),
            Waited::Answered { rest, parked } => {
                let Some(stream) = Arc::get_mut(stream) else { return Answered::Close };
                return match rest {
                    Some(rest) if stream.write_all(&rest).await.is_err() => Answered::Close,
                    _ => Answered::KeepAlive(parked),
                };
            }
        },
        Err(e) => (Err(e), None),
    };
    let Some(stream) = Arc::get_mut(stream) else { return Answered::Close };
    match write_answer(stream, body, &extra_lines(cors.as_ref()), keep_alive, status).await {
        true => Answered::KeepAlive(parked),
        false => Answered::Close,
    }
}

/// The header lines a poll's answer carries besides its framing: `Cache-Control: no-store`, and
/// the CORS headers for the allowed `cors` origin.
fn extra_lines(cors: Option<&HeaderValue>) -> Cow<'static, [u8]> {
    const NO_STORE: &[u8] = b"cache-control: no-store\r\n";
    match cors {
        None => Cow::Borrowed(NO_STORE),
        Some(origin) => Cow::Owned([NO_STORE, &crate::http::origin::cors_header_lines(origin)].concat()),
    }
}

/// How a long poll's wait ended.
enum Waited {
    /// The peer closed the connection.
    Gone,
    /// The answer's body, for the connection's task to write.
    Body(Vec<u8>, Option<Box<Parked>>),
    /// A pusher answered, leaving `rest` (what the socket did not take) to write.
    Answered { rest: Option<Bytes>, parked: Option<Box<Parked>> },
}

/// Waits for the answer to a long poll: until anything is queued for it or its timeout passes
/// (on `timer`, the connection's). `Gone` when the peer closes the connection meanwhile: the
/// poll then unsubscribes at once instead of holding its socket until the timeout. With
/// `park` (the answer's CORS origin, if any), the subscription is kept for the connection's
/// next poll, and a pusher may answer the poll itself ([`PollAnswer`]): the wait then ends
/// when the next request comes (or the poll's deadline passes).
async fn wait_poll(
    stream: &Arc<TcpStream>,
    mut waiting: Waiting,
    mut timer: Pin<&mut tokio::time::Sleep>,
    park: Option<&Option<HeaderValue>>,
) -> Waited {
    timer.as_mut().reset(tokio::time::Instant::now() + waiting.timeout());
    // The socket may still be marked readable from reading the request: forget that without a
    // system call, so that only a new event (the peer's FIN, or a pipelined request) wakes the
    // watch below. An event that came in between is missed, and the poll then simply runs to
    // its end.
    let _ = stream.try_io(Interest::READABLE, || Err::<(), _>(std::io::ErrorKind::WouldBlock.into()));
    let armed = match park {
        Some(cors) if waiting.answerable => {
            let cursor = std::mem::take(&mut waiting.cursor);
            let answer = PollAnswer::new(Arc::clone(stream), cursor, respond, extra_lines(cors.as_ref()));
            match waiting.subscribed.registration.outbox().arm(answer) {
                Ok(()) => true,
                Err(answer) => {
                    waiting.cursor = answer.into_cursor();
                    false
                }
            }
        }
        _ => false,
    };
    let outbox = waiting.subscribed.registration.outbox();
    let left = std::future::poll_fn(|cx| {
        // Something came in (or the socket failed). After a pusher answered, it is the next
        // request (or the close, which the connection's read finds): the wait is over, with
        // no system call here. Before that, a look at it tells.
        if stream.poll_read_ready(cx).is_pending() {
            return Poll::Pending;
        }
        if armed && outbox.hold_answer() {
            return Poll::Ready(false);
        }
        let mut byte = [0u8; 1];
        let mut peeked = tokio::io::ReadBuf::new(&mut byte);
        match stream.poll_peek(cx, &mut peeked) {
            // End of stream or a failed socket: the peer is gone.
            Poll::Ready(Ok(0) | Err(_)) => Poll::Ready(true),
            // A pipelined request waits for its turn (the answer is this task's now).
            Poll::Ready(Ok(_)) | Poll::Pending => Poll::Pending,
        }
    });
    let gone = tokio::select! {
        biased;
        () = waiting.ready() => false,
        () = timer => false,
        gone = left => gone,
    };
    let answered = match armed.then(|| waiting.subscribed.registration.outbox().disarm()).flatten() {
        Some(answer) => {
            let rest = answer.answered().map(|rest| rest.cloned());
            waiting.cursor = answer.into_cursor();
            rest
        }
        None => None,
    };
    match answered {
        _ if gone => Waited::Gone,
        Some(rest) => {
            let closing = waiting.subscribed.registration.outbox().closing();
            Waited::Answered { rest, parked: waiting.park(closing) }
        }
        None => {
            let (body, parked) = waiting.answer(park.is_some());
            Waited::Body(body, parked)
        }
    }
}

/// The whole response a pusher writes for a long poll (see [`PollAnswer`]): the messages of
/// `frames`, and `cursor` moved past them. Only a poll with no open stream to carry is armed.
fn respond(cursor: &mut Cursor, frames: &VecDeque<Frame>, extra: &[u8]) -> Vec<u8> {
    crate::http::response::json_ok_bytes(&answer_body(cursor, frames, &[]), extra, true)
}

/// [`request`] and [`start`], asking the backend's hooks ([`super::admit_stream`]) and having
/// the Redis engine mirror the poll's channels in between.
pub async fn admit_and_start(
    state: &AppState,
    headers: &(impl herald_http1::RequestHeaders + Sync),
    query: Option<&str>,
    bearer: Option<String>,
    ip: IpAddr,
) -> Result<Waiting, ApiError> {
    let mut request = StreamRequest::parse(state, query, None, None)?;
    let token = bearer.or_else(|| request.token.clone());
    let identity = super::admit_stream(state, Transport::Poll, ip, headers, token.as_deref(), &mut request).await?;
    request.identity = identity.map(Box::new);
    super::prepare_stream(state, &request).await?;
    start(state, request, ip)
}

/// A long poll that is subscribed and waits: only what the wait needs, so that a waiting poll
/// holds as little memory as possible (the request is gone by then).
pub struct Waiting {
    subscribed: Subscribed,
    cursor: Cursor,
    /// How long it waits at most, in seconds (at most `poll_max_timeout_secs`); 4 bytes, not a
    /// `Duration`'s 16: a poll's boxed future stays under 1 KiB (`a_request_boxes_less_than_a_kib`).
    timeout_secs: u32,
    /// The open streams the client holds (see [`StreamRequest::held`]).
    held: Option<Box<[super::Held]>>,
    /// A stream is ahead of what the client holds: answer at once.
    ahead: bool,
    /// A pusher may answer it: no stream was open anywhere when it started, so its answer has
    /// no stream snapshots to carry (one opened later reaches it as a frame, which the
    /// connection's task answers).
    answerable: bool,
}

/// A long poll's standing in the server: its subscriptions, its queue and its permit.
struct Subscribed {
    // Field order is drop order: unsubscribe before leaving the registry.
    subscriptions: Subscriptions,
    registration: Registration,
    _permit: StreamPermit,
    /// Who the poll's token names (compared with the next poll's before it continues).
    identity: Option<Box<Identity>>,
}

/// An answered poll's subscription, kept on its keep-alive connection for the next poll (see
/// the module's docs). Messages published meanwhile wait in its queue, within the queue's
/// bounds; a queue that passed them is closed, and the next poll subscribes anew from its
/// cursor.
pub struct Parked {
    subscribed: Subscribed,
    /// The answer's cursor: the position the subscription stands at.
    cursor: Cursor,
}

/// Reads and checks `GET /poll?<query>` with the request's `bearer` token (else the query's).
pub fn request(state: &AppState, query: Option<&str>, bearer: Option<&str>) -> Result<StreamRequest, ApiError> {
    let mut request = StreamRequest::parse(state, query, None, None)?;
    let token = bearer.map(str::to_string).or_else(|| request.token.clone());
    let identity = authorize_stream(state, token.as_deref(), &mut request)?;
    request.identity = identity.map(Box::new);
    Ok(request)
}

/// Subscribes the poll `request` from `ip` (recovering what it missed, atomically with
/// registering for live messages).
pub fn start(state: &AppState, mut request: StreamRequest, ip: IpAddr) -> Result<Waiting, ApiError> {
    if state.registry.is_shutting_down() {
        return Err(ApiError::new(ErrorCode::ShuttingDown, "the server is shutting down; retry shortly"));
    }
    let permit = state.guard.open_stream(ip)?;
    let registration = state.registry.register(Transport::Poll);
    let mut subscriptions = Subscriptions::new(state, registration.outbox().clone());
    if let Some(identity) = &request.identity {
        subscriptions.set_identity(identity);
    }
    let cursor = subscriptions.add_stream(&request, POLL_BATCH);
    let identity = request.identity.take();
    let subscribed = Subscribed { subscriptions, registration, _permit: permit, identity };
    Ok(Waiting::new(state, subscribed, cursor, request))
}

// === impl Parked ===

impl Parked {
    /// The poll `request`, continuing this subscription when it picks up where the answer left
    /// it: the answer's cursor, the same channels and identity, a queue not closing, and no
    /// shutdown under way. Otherwise the request back, this subscription dropped.
    fn resume(self, state: &AppState, request: StreamRequest) -> Result<Waiting, Box<StreamRequest>> {
        let Parked { subscribed, cursor } = self;
        let continues = request.cursor == cursor
            && request.channels == subscribed.subscriptions.channels()
            && request.identity == subscribed.identity
            && subscribed.registration.outbox().closing().is_none()
            && !state.registry.is_shutting_down();
        if !continues {
            return Err(Box::new(request));
        }
        Ok(Waiting::new(state, subscribed, cursor, request))
    }
}

// === impl Waiting ===

impl Waiting {
    /// The wait of `request`, subscribed (`subscribed`, standing at `cursor`): its timeout and
    /// the open streams it holds, taken from the request.
    fn new(state: &AppState, subscribed: Subscribed, cursor: Cursor, mut request: StreamRequest) -> Self {
        let secs =
            request.timeout_secs.unwrap_or(state.config.poll_timeout_secs).min(state.config.poll_max_timeout_secs);
        let held = request.held.take();
        let ahead = held.as_deref().is_some_and(|held| state.broker.streams_ahead(&request.channels, held));
        let answerable = !ahead && state.broker.open_stream_count() == 0;
        let timeout_secs = u32::try_from(secs).unwrap_or(u32::MAX);
        Waiting { subscribed, cursor, timeout_secs, held, ahead, answerable }
    }

    /// How long the poll waits at most.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.into())
    }

    /// Waits until anything is queued (messages, a reset, a close), without a timeout.
    pub async fn ready(&self) {
        if self.ahead {
            return;
        }
        let outbox = self.subscribed.registration.outbox();
        if !outbox.is_ready() {
            outbox.ready().await;
        }
    }

    /// Waits until anything is queued or the timeout passes, unsubscribes, and returns the
    /// answer's body.
    pub async fn finish(self) -> Vec<u8> {
        let _ = tokio::time::timeout(self.timeout(), self.ready()).await;
        self.answer(false).0
    }

    /// Returns the answer's body — what is queued now (possibly nothing) — and, with `park`,
    /// the subscription [`Parked`] for the connection's next poll when it can continue;
    /// otherwise unsubscribes.
    pub fn answer(self, park: bool) -> (Vec<u8>, Option<Box<Parked>>) {
        // What the client lacks of each stream: an append that comes after this look is in
        // the next poll's.
        let snapshots = self.subscribed.subscriptions.stream_snapshots(self.held.as_deref());
        if !park {
            let Waiting { subscribed, mut cursor, .. } = self;
            // Unsubscribed before the queue is taken, so that nothing comes after it.
            let Subscribed { subscriptions, registration, .. } = subscribed;
            drop(subscriptions);
            let (frames, _) = registration.outbox().take_answer();
            return (answer_body(&mut cursor, &frames, &snapshots), None);
        }
        let mut waiting = self;
        let (frames, closing) = waiting.subscribed.registration.outbox().take_answer();
        let body = answer_body(&mut waiting.cursor, &frames, &snapshots);
        (body, waiting.park(closing))
    }

    /// Its subscription [`Parked`] at its cursor, once its answer's frames are taken, unless
    /// the connection is `closing`. A push from now on is for the next poll, which sees it
    /// queued before it waits.
    fn park(self, closing: Option<herald_core::DisconnectCode>) -> Option<Box<Parked>> {
        let Waiting { subscribed, cursor, .. } = self;
        subscribed.registration.outbox().forget_wakeup();
        closing.is_none().then(|| Box::new(Parked { subscribed, cursor }))
    }
}

/// The JSON body of a poll's answer: the messages and resets of `frames`, `cursor` moved past
/// them, and — when there are any — the `snapshots` of the channels' open streams and the
/// aborts among `frames` (the appends only ended the wait: the snapshots hold them).
fn answer_body(cursor: &mut Cursor, frames: &std::collections::VecDeque<Frame>, snapshots: &[Bytes]) -> Vec<u8> {
    let mut resets = Vec::new();
    for frame in frames {
        advance_cursor(cursor, frame);
    }
    let mut length = 64 + cursor.text_len();
    for frame in frames {
        match frame {
            Frame::Message(m) => length += m.envelope().len() + 1,
            Frame::Reset { channel, position, reason } => {
                let reset = encode_reset(channel, position, *reason);
                length += reset.len() + 1;
                resets.push(reset);
            }
            Frame::Stream { json, .. } => length += json.len() + 1,
            Frame::Text(_) | Frame::Heartbeat => {}
        }
    }
    let aborts = frames.iter().filter_map(|frame| match frame {
        Frame::Stream { kind: StreamPushKind::Abort, json, .. } => Some(json),
        _ => None,
    });
    let streams: Vec<&Bytes> = snapshots.iter().chain(aborts).collect();
    let mut body = Vec::with_capacity(length);
    body.extend_from_slice(b"{\"messages\":");
    let messages = frames.iter().filter_map(|frame| match frame {
        Frame::Message(m) => Some(m),
        _ => None,
    });
    splice_envelopes(&mut body, messages);
    // A cursor's text needs no escaping in a JSON string (see `Cursor::write_to`).
    body.extend_from_slice(b",\"cursor\":\"");
    cursor.write_to(&mut body);
    body.extend_from_slice(b"\",\"resets\":[");
    body.extend_from_slice(&resets.join(&b","[..]));
    body.push(b']');
    if !streams.is_empty() {
        body.extend_from_slice(b",\"streams\":[");
        for (i, json) in streams.into_iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(json);
        }
        body.push(b']');
    }
    body.push(b'}');
    body
}
