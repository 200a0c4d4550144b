//! Long polling (docs/protocol.md §5): `GET /poll?channel=a&channel=b&cursor=…&timeout=…`.
//!
//! No session lives on the server between polls: each request subscribes from its cursor
//! (recovering what it missed, atomically with registering for live messages), answers as soon
//! as anything is queued or the timeout passes, and unsubscribes. The cursor it returns
//! resumes every channel on any node.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use axum::{
    Extension,
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use herald_core::{ErrorCode, protocol::encode_reset};

use herald_core::Cursor;

use super::{StreamRequest, Subscriptions, advance_cursor, authorize_stream};
use crate::{
    frame::{Frame, Transport},
    guard::StreamPermit,
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
        Ok(bearer) => wait(&state, query.as_deref(), bearer.as_deref(), peer.ip()).await,
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
    query: Option<&str>,
    bearer: Option<&str>,
    ip: IpAddr,
) -> Result<Vec<u8>, ApiError> {
    let waiting = if state.engine.mirrors() {
        mirror_and_start(state, query, bearer.map(str::to_string), ip).await?
    } else {
        start(state, &request(state, query, bearer)?, ip)?
    };
    Ok(waiting.finish().await)
}

/// [`request`] and [`start`], with the Redis engine mirroring the poll's channels in between.
pub async fn mirror_and_start(
    state: &AppState,
    query: Option<&str>,
    bearer: Option<String>,
    ip: IpAddr,
) -> Result<Waiting, ApiError> {
    let request = request(state, query, bearer.as_deref())?;
    super::prepare_stream(state, &request).await?;
    start(state, &request, ip)
}

/// A long poll that is subscribed and waits: only what the wait needs, so that a waiting poll
/// holds as little memory as possible (the request is gone by then).
pub struct Waiting {
    // Field order is drop order: unsubscribe before leaving the registry.
    subscriptions: Subscriptions,
    registration: Registration,
    _permit: StreamPermit,
    cursor: Cursor,
    timeout: Duration,
}

/// Reads and checks `GET /poll?<query>` with the request's `bearer` token (else the query's).
pub fn request(state: &AppState, query: Option<&str>, bearer: Option<&str>) -> Result<StreamRequest, ApiError> {
    let request = StreamRequest::parse(state, query, None, None)?;
    authorize_stream(state, bearer.or(request.token.as_deref()), &request.channels)?;
    Ok(request)
}

/// Subscribes the poll `request` from `ip` (recovering what it missed, atomically with
/// registering for live messages).
pub fn start(state: &AppState, request: &StreamRequest, ip: IpAddr) -> Result<Waiting, ApiError> {
    if state.registry.is_shutting_down() {
        return Err(ApiError::new(ErrorCode::ShuttingDown, "the server is shutting down; retry shortly"));
    }
    let permit = state.guard.open_stream(ip)?;
    let timeout =
        request.timeout_secs.unwrap_or(state.config.poll_timeout_secs).min(state.config.poll_max_timeout_secs);
    let registration = state.registry.register(Transport::Poll);
    let mut subscriptions = Subscriptions::new(state.broker.clone(), registration.outbox().clone());
    let cursor = subscriptions.add_stream(request, POLL_BATCH);
    Ok(Waiting { subscriptions, registration, _permit: permit, cursor, timeout: Duration::from_secs(timeout) })
}

// === impl Waiting ===

impl Waiting {
    /// How long the poll waits at most.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Waits until anything is queued (messages, a reset, a close), without a timeout.
    pub async fn ready(&self) {
        let outbox = self.registration.outbox();
        if !outbox.is_ready() {
            outbox.ready().await;
        }
    }

    /// Waits until anything is queued or the timeout passes, unsubscribes, and returns the
    /// answer's body.
    pub async fn finish(self) -> Vec<u8> {
        let _ = tokio::time::timeout(self.timeout, self.ready()).await;
        self.answer()
    }

    /// Unsubscribes and returns the answer's body: what is queued now (possibly nothing).
    pub fn answer(self) -> Vec<u8> {
        let Waiting { subscriptions, registration, _permit, mut cursor, timeout: _ } = self;
        drop(subscriptions);
        let (frames, _) = registration.outbox().take();
        drop(registration);
        drop(_permit);
        answer_body(&mut cursor, &frames)
    }
}

/// The JSON body of a poll's answer: the messages and resets of `frames`, and `cursor` moved
/// past them.
fn answer_body(cursor: &mut Cursor, frames: &std::collections::VecDeque<Frame>) -> Vec<u8> {
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
            Frame::Text(_) | Frame::Heartbeat => {}
        }
    }
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
    body.extend_from_slice(b"]}");
    body
}
