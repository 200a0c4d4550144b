//! One HTTP/1.1 connection: request heads, bodies, responses and the WebSocket upgrade,
//! written for small idle connections.
//!
//! Why not hyper: hyper keeps about 16 KiB of buffers for the life of every HTTP/1 connection
//! (an 8 KiB header write buffer allocated up front and an 8 KiB read buffer), which is four
//! times the memory budget of an idle SSE stream or long poll (the performance budget in BENCHMARKS.md). Here the
//! read buffer exists only while a head or body is being read, and is freed before a handler
//! waits; responses are written straight from the handler's bytes. Heads are parsed by
//! `httparse` (the parser hyper uses); requests are answered by the same axum [`Router`].
//!
//! Guarantees: requests on a connection are answered in order (pipelining is served one at a
//! time); a malformed head gets `400`, an oversize one `431`, an oversize body `413`, each as a
//! JSON error, and the connection closes; bodies may be `Content-Length` or chunked, and
//! `Expect: 100-continue` is honoured; routed responses go out whole with a `Content-Length`.
//! An idle keep-alive connection closes after [`IDLE_TIMEOUT`] or when shutdown starts; a
//! long poll whose client closes the connection is dropped (unsubscribed, its socket closed)
//! as soon as the close arrives, not at its timeout. A response carrying a [`Takeover`] (an
//! SSE stream) gets its head written here, then the connection belongs to the takeover's task.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::Poll,
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    http::{HeaderName, HeaderValue, Method, Response, StatusCode, Version, header},
};
use bytes::{Bytes, BytesMut};
use herald_core::ErrorCode;
use herald_http1::{BodyFraming, Refusal, RequestHeaders as _};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};
use tower::ServiceExt as _;

use super::{
    body::Refused,
    origin::{self, OriginCheck},
    response::{Takeover, TakeoverFn, error_bytes, response_head, write_answer, write_response},
};
use crate::transport::poll;
use crate::{guard::Limit, reply::ApiError, routes::Route, state::AppState};
pub use herald_http1::Head;

/// How long a keep-alive connection may sit between requests before it closes.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// [`write_answer`], and whether the connection stays open as an [`After`].
async fn answer(
    stream: &mut TcpStream,
    answer: Result<Vec<u8>, ApiError>,
    extra: &[u8],
    keep_alive: bool,
    status: &mut u16,
) -> After {
    if write_answer(stream, answer, extra, keep_alive, status).await { After::KeepAlive } else { After::Close }
}

/// What happens to a connection after a response.
enum After {
    /// It waits for the next request.
    KeepAlive,
    /// It waits for the next request, holding a long poll's subscription for it.
    Parked(Box<poll::Parked>),
    /// It closes.
    Close,
    /// A [`Takeover`] writes the rest (the head is written); `bool`: chunked.
    Takeover(TakeoverFn, bool),
}

/// Where a connection comes from.
#[derive(Clone)]
pub enum Via {
    /// Straight from the client.
    Direct,
    /// From the in-process TLS front ([`crate::tls`]): each request names the client's
    /// address in `x-herald-peer`, vouched for by `x-herald-bridge` carrying this secret.
    TlsBridge(Arc<str>),
}

/// The header the TLS front names the client's address in.
pub const PEER_HEADER: &str = "x-herald-peer";
/// The header carrying the TLS front's secret.
pub const BRIDGE_HEADER: &str = "x-herald-bridge";

/// Serves `stream` until the peer closes, asks to close, or shutdown starts.
pub async fn serve(mut stream: TcpStream, mut peer: SocketAddr, via: Via, state: AppState, router: Router) {
    let mut buf = BytesMut::new();
    let head_timeout = Duration::from_secs(state.config.http_head_timeout_secs);
    if matches!(via, Via::Direct) && state.proxies.expects_proxy_header(peer.ip()) {
        match Box::pin(crate::proxy::read_proxy_header(&mut stream, &mut buf, peer, head_timeout)).await {
            Ok(Some(client)) => {
                // The connection budget of the client, now that it is known.
                if let Err(limited) = state.guard.admit_rate(client.ip()).map_err(|e| error_bytes(&e)) {
                    let _ = stream.try_write(&limited);
                    return;
                }
                peer = client;
            }
            Ok(None) => return,
            Err(refusal) => {
                let _ = Box::pin(write_error(&mut stream, refusal)).await;
                return;
            }
        }
    }
    let mut shutdown = shutdown_wait(&state);
    // Shared only with a waiting long poll's outbox, whose pusher may answer the poll
    // (`outbox::PollAnswer`): every other use has it to itself.
    let mut shared = Arc::new(stream);
    // One timer for the connection's life: a waiting long poll's deadline, between requests
    // the idle deadline, and while a head arrives its deadline. Polls with the same timeout
    // only move it later, which does not touch the timer wheel (an earlier deadline, as for a
    // shorter timeout, does); the idle deadline is set only when the timer fires before it.
    let mut timer = Box::pin(tokio::time::sleep(head_timeout));
    let mut first = true;
    // The last long poll's subscription, until the next request (see `poll::Parked`).
    let mut parked: Option<Box<poll::Parked>> = None;
    loop {
        let mut status = 0;
        // The request's exchange — serving it, or answering a refused head — built in a block
        // so that nothing of reading the head stays in this loop's state while it runs: a
        // waiting long poll holds only boxed futures.
        let (exchanging, route, began): (Pin<Box<dyn Future<Output = After> + Send + '_>>, _, _) = 'next: {
            let waits = HeadWaits { first: std::mem::take(&mut first), head_timeout };
            // A long poll's wait ends with its outbox's share of the socket dropped.
            let Some(stream) = Arc::get_mut(&mut shared) else { return };
            let Some(head) = next_head(stream, &mut buf, timer.as_mut(), &mut shutdown, waits, &mut parked).await
            else {
                return;
            };
            // Only the poll that comes next may continue it; any other request drops it here.
            let parked = parked.take();
            let forwarded = head.and_then(|mut head| match &via {
                Via::Direct => {
                    let client = state.proxies.client(&head, peer);
                    Ok((head, client))
                }
                Via::TlsBridge(secret) => forwarded_peer(&mut head, secret).map(|peer| (head, peer)),
            });
            let (head, peer) = match forwarded {
                Ok(forwarded) => forwarded,
                Err(Refused::Gone) => return,
                Err(Refused::Stalled(limit)) => return stalled(stream, &state, peer, limit, !buf.is_empty()),
                Err(Refused::Answer(refusal)) => {
                    let refuse = async move {
                        let _ = write_error(stream, refusal).await;
                        After::Close
                    };
                    break 'next (Box::pin(refuse), Route::Other, Instant::now());
                }
            };
            let route = Route::of(head.path());
            if route == Route::Ws && !matches!(BodyFraming::of(&head, 0), Ok(BodyFraming::None)) {
                // An upgrade has no body: bytes after its head are WebSocket frames, and a
                // body there would be read as frames by one side and as a body by another.
                let refuse = async move {
                    let _ = write_error(stream, Refusal::bad("a WebSocket upgrade request has no body")).await;
                    After::Close
                };
                break 'next (Box::pin(refuse), route, Instant::now());
            }
            if route == Route::Ws {
                // The handshake in a task of its own (which starts the connection's), so this
                // loop's state is freed for the life of the WebSocket.
                let leftover = std::mem::take(&mut buf);
                let Ok(stream) = Arc::try_unwrap(shared) else { return };
                tokio::spawn(crate::transport::ws::accept(stream, peer.ip(), head, leftover, state));
                return;
            }
            let began = Instant::now();
            if route == Route::Poll
                && head.method == Method::GET
                && matches!(BodyFraming::of(&head, 0), Ok(BodyFraming::None))
            {
                // The route most requests take, and the one that waits: one future from the
                // head to the answer, without the router (a poll with a body takes the router's).
                free_idle_buffer(&mut buf);
                let polling = poll_exchange(&mut shared, head, peer, &state, timer.as_mut(), &mut status, parked);
                break 'next (polling, route, began);
            }
            (Box::pin(exchange(stream, &mut buf, head, peer, &state, &router, &mut status)), route, began)
        };
        let after = exchanging.await;
        if status != 0 {
            state.metrics.http_request(route, status, began.elapsed().as_secs_f64());
        }
        match after {
            After::KeepAlive => {}
            After::Parked(poll) => parked = Some(poll),
            After::Close => return,
            After::Takeover(body, chunked) => {
                // Its own task too: nothing of this loop lives as long as the stream.
                let Ok(stream) = Arc::try_unwrap(shared) else { return };
                tokio::spawn(body(stream, chunked));
                return;
            }
        }
    }
}

/// What [`next_head`] waits for: whether this is the connection's first request, and the
/// head deadline (`http_head_timeout_secs`).
struct HeadWaits {
    first: bool,
    head_timeout: Duration,
}

/// Reads the next request head from `stream` (bytes after it stay in `buf`). `None`: close
/// without answering — the peer left, or the connection sat idle for [`IDLE_TIMEOUT`] between
/// requests, or the shutdown started before a request began to arrive (one that has begun is
/// read and answered). A head must be all in within the head timeout of its first byte (the
/// first request's, of the connection's start): `Stalled` otherwise. Deadlines are kept on
/// `timer`, the connection's. A `parked` long poll's subscription ends when the timer passes
/// that poll's deadline first.
async fn next_head(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    mut timer: Pin<&mut tokio::time::Sleep>,
    shutdown: &mut ShutdownWait,
    waits: HeadWaits,
    parked: &mut Option<Box<poll::Parked>>,
) -> Option<Result<Head, Refused>> {
    let mut started = !buf.is_empty();
    let now = tokio::time::Instant::now();
    // The deadline in force: the idle one until a head begins, then the head's.
    let mut limit = now + if waits.first || started { waits.head_timeout } else { IDLE_TIMEOUT };
    loop {
        if !buf.is_empty() {
            match Head::parse(buf) {
                Ok(Some(head)) => return Some(Ok(head)),
                // The timer may run to a later deadline (the idle one, or a poll's): bring it
                // forward only now, when a head is known to be slow, not for every request.
                Ok(None) if timer.deadline() > limit => timer.as_mut().reset(limit),
                Ok(None) => {}
                Err(refusal) => return Some(Err(Refused::Answer(refusal))),
            }
        }
        buf.reserve(1024);
        // Biased, in this order: a wake-up for bytes (most of them) reads without polling the
        // other two, and bytes that came in are read even when a deadline or the shutdown came too.
        let woke = tokio::select! {
            biased;
            read = stream.read_buf(buf) => Woke::Read(read.unwrap_or(0)),
            () = timer.as_mut() => Woke::Timer,
            () = std::future::poll_fn(|cx| match shutdown {
                Some(wait) => wait.poll_started(cx),
                None => Poll::Pending,
            }), if shutdown.is_some() => Woke::Shutdown,
        };
        match woke {
            Woke::Read(0) => return None,
            Woke::Read(_) if !started => {
                started = true;
                limit = limit.min(tokio::time::Instant::now() + waits.head_timeout);
            }
            Woke::Read(_) => {}
            // It may have run to an earlier deadline (the last poll's): its parked subscription
            // ends there (no other timer is needed for it), and the timer runs on to the limit.
            Woke::Timer if timer.deadline() < limit => {
                *parked = None;
                timer.as_mut().reset(limit);
            }
            Woke::Timer if started || waits.first => return Some(Err(Refused::Stalled(Limit::HeadTimeout))),
            Woke::Timer => return None,
            Woke::Shutdown => {
                *shutdown = None;
                if !started {
                    return None;
                }
            }
        }
    }
}

/// What woke [`next_head`].
enum Woke {
    /// Bytes read (0: the peer closed, or the read failed).
    Read(usize),
    /// The connection's timer.
    Timer,
    /// The shutdown started.
    Shutdown,
}

/// Closes a connection that stalled (a head or body not in by its deadline): counted as the
/// `limit` hit, and answered `408` when it sent part of a request (`partial`), without waiting
/// for the write.
fn stalled(stream: &TcpStream, state: &AppState, peer: SocketAddr, limit: Limit, partial: bool) {
    state.guard.hit(limit, Some(peer.ip()), "a request not sent within its deadline");
    state.metrics.http_request(Route::Other, 408, 0.0);
    if partial {
        let timeout = herald_core::ProtocolError::new(ErrorCode::RequestTimeout, "request not sent in time");
        let _ = stream.try_write(&error_bytes(&timeout));
    }
}

/// Ends once the shutdown starts; `None` once it has (it is then polled no more).
type ShutdownWait = Option<ShutdownStart>;

/// The connection's wait for the shutdown: made once and kept across its requests, since
/// joining the watch's waiters anew before every request costs every long poll; keeping it
/// costs an idle connection a few dozen bytes (both measured in BENCHMARKS.md).
fn shutdown_wait(state: &AppState) -> ShutdownWait {
    let mut signal = state.registry.shutdown_signal();
    let wait = Box::pin(async move {
        let _ = signal.wait_for(|down| *down).await;
    });
    Some(ShutdownStart { wait, registry: state.registry.clone(), registered: None })
}

/// A connection's wait for the shutdown, polled before every request head.
struct ShutdownStart {
    wait: Pin<Box<dyn Future<Output = ()> + Send>>,
    registry: Arc<crate::registry::Registry>,
    /// The waker the wait holds: while it is this task's, polling the wait again would only
    /// take the watch's lock (shared by every connection) to find it unchanged.
    registered: Option<std::task::Waker>,
}

// === impl ShutdownStart ===

impl ShutdownStart {
    /// Ready once the shutdown has started (the registry's flag is set before the watch
    /// wakes its waiters).
    fn poll_started(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if !self.registry.is_shutting_down() && self.registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let started = self.wait.as_mut().poll(cx);
        if started.is_pending() {
            self.registered = Some(cx.waker().clone());
        }
        started
    }
}

/// The client address the TLS front names in `head` (removing its headers), if the front's
/// `secret` vouches for it.
fn forwarded_peer(head: &mut Head, secret: &str) -> Result<SocketAddr, Refused> {
    let vouched = head.remove(&HeaderName::from_static(BRIDGE_HEADER)).is_some_and(|v| v == secret.as_bytes());
    let peer = head.remove(&HeaderName::from_static(PEER_HEADER));
    let peer = peer.and_then(|v| std::str::from_utf8(&v).ok()?.parse::<SocketAddr>().ok());
    match peer {
        Some(peer) if vouched => Ok(peer),
        _ => Err(Refused::Answer(Refusal {
            status: StatusCode::FORBIDDEN,
            message: "this listener serves the TLS front only",
        })),
    }
}

/// Reads the body of the request `head` opens, answers it (setting `status` to the answer's
/// status), and tells what becomes of the connection.
async fn exchange(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    head: Head,
    peer: SocketAddr,
    state: &AppState,
    router: &Router,
    status: &mut u16,
) -> After {
    if head.method == Method::PUT && Route::of(head.path()) == Route::ApiStreams {
        // A piped stream reads its body as it comes: not here, and not through the router.
        return Box::pin(pipe(stream, buf, head, peer, state, status)).await;
    }
    let body = match BodyFraming::of(&head, body_cap(state)) {
        // Most requests (every long poll) have no body: no read to box.
        Ok(BodyFraming::None) => Ok(Bytes::new()),
        Ok(framing) => {
            let progress = Duration::from_secs(state.config.http_body_timeout_secs);
            Box::pin(super::body::read_body(stream, buf, &head, framing, body_cap(state), progress)).await
        }
        Err(refusal) => Err(Refused::Answer(refusal)),
    };
    let body = match body {
        Ok(body) => body,
        Err(refused) => return close_refused(stream, state, peer, refused, status).await,
    };
    free_idle_buffer(buf);
    let keep_alive = wants_keep_alive(&head);
    let method = head.method.clone();
    let served = Route::of(head.path());
    let cors = match cross_origin(state, &head, served, peer) {
        Ok(cors) => cors,
        Err(refused) => return answer(stream, Err(refused), b"", keep_alive, status).await,
    };
    if served.is_cross_origin() && method == Method::OPTIONS {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        *status = 204;
        if let Some(origin) = &cors {
            origin::add_cors_headers(response.headers_mut(), origin);
            origin::add_preflight_headers(response.headers_mut());
        }
        return match Box::pin(write_response(stream, response, &method, keep_alive)).await {
            Ok(true) => After::KeepAlive,
            _ => After::Close,
        };
    }
    if method == Method::POST && served == Route::ApiPublish {
        // The API's hottest route, served without the router: the same key check, body limit
        // and publish the router's `/api/publish` runs.
        let accepted = super::request::check_api_key(&state.config, &head).and_then(|()| {
            match body.len() > super::api::body_limit(&state.config) {
                true => Err(ApiError::new(ErrorCode::MessageTooLarge, "request body is over the size limit")),
                false => crate::publish::publish_json(state, &body, |_| Ok(())),
            }
        });
        drop(head);
        let published = match accepted {
            Ok(accepted) => Box::pin(crate::publish::durable_reply(state, accepted)).await,
            Err(e) => Err(e),
        };
        return answer(stream, published, b"", keep_alive, status).await;
    }
    // Its own future, boxed: the router's state would otherwise make every exchange's future
    // larger (over 1 KiB, where the allocator's aligned path turns slow).
    let routed = Routed { head, body, peer, cors, keep_alive };
    Box::pin(route(stream, routed, router, status)).await
}

/// Serves `GET /poll` whose `head` has no body, on the connection's loop and without the
/// router: continues the connection's `parked` poll or starts the poll (subscribes), and returns
/// the future that waits for its answer (on `timer`, the connection's) and writes it (setting
/// `status`). The request's head is gone while the poll waits, and the future is the only
/// block a poll allocates on the way. The caller frees its idle read buffer first.
fn poll_exchange<'a>(
    stream: &'a mut Arc<TcpStream>,
    head: Head,
    peer: SocketAddr,
    state: &'a AppState,
    timer: Pin<&'a mut tokio::time::Sleep>,
    status: &'a mut u16,
    parked: Option<Box<poll::Parked>>,
) -> Pin<Box<dyn Future<Output = After> + Send + 'a>> {
    use futures_util::FutureExt as _;
    let keep_alive = wants_keep_alive(&head);
    let cors = match cross_origin(state, &head, Route::Poll, peer) {
        Ok(cors) => cors,
        Err(refused) => {
            let Some(stream) = Arc::get_mut(stream) else { return Box::pin(std::future::ready(After::Close)) };
            return Box::pin(answer(stream, Err(refused), b"", keep_alive, status));
        }
    };
    // Closes without an answer when the client left meanwhile.
    let after = |answered| match answered {
        poll::Answered::Close => After::Close,
        poll::Answered::KeepAlive(None) => After::KeepAlive,
        poll::Answered::KeepAlive(Some(parked)) => After::Parked(parked),
    };
    if !poll::starts_at_once(state) {
        return Box::pin(async move {
            // Boxed on its own: the hooks' and the mirroring's state is gone while the poll
            // waits, instead of widening this future for the wait's whole length.
            let waiting = Box::pin(poll::start_admitted(state, &head, peer.ip())).await;
            drop(head);
            // The hooks are asked again for every poll: nothing is parked.
            let started = poll::Started::new(waiting, cors, keep_alive, false);
            after(poll::answer(stream, started, timer, status).await)
        });
    }
    let started = poll::Started::new(poll::start_at_once(state, &head, peer.ip(), parked), cors, keep_alive, true);
    drop(head);
    Box::pin(poll::answer(stream, started, timer, status).map(after))
}

/// Frees the read buffer when nothing is pipelined in it, before a handler waits (long polls,
/// SSE).
fn free_idle_buffer(buf: &mut BytesMut) {
    if buf.is_empty() {
        *buf = BytesMut::new();
    }
}

/// The CORS origin to echo for a request of `route` from a browser on another origin (`None`:
/// same site, or a route that is not cross-origin); an error (counted against `peer`) when the
/// origin is not allowed.
fn cross_origin(
    state: &AppState,
    head: &Head,
    route: Route,
    peer: SocketAddr,
) -> Result<Option<HeaderValue>, ApiError> {
    if !route.is_cross_origin() {
        return Ok(None);
    }
    match origin::check(&state.config, head) {
        OriginCheck::SameSite => Ok(None),
        OriginCheck::Allowed(origin) => Ok(Some(origin)),
        OriginCheck::Refused => {
            state.guard.hit(Limit::Origin, Some(peer.ip()), "a cross-origin request from an origin not allowed");
            Err(ApiError::new(ErrorCode::OriginNotAllowed, "this origin is not in allowed_origins"))
        }
    }
}

/// Answers a piped stream ([`super::streams::pipe`]) once its body has ended; a failed one
/// closes the connection.
async fn pipe(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    head: Head,
    peer: SocketAddr,
    state: &AppState,
    status: &mut u16,
) -> After {
    let keep_alive = wants_keep_alive(&head);
    match super::streams::pipe(stream, buf, &head, state).await {
        Ok(answered) => {
            let keep_alive = keep_alive && answered.is_ok();
            answer(stream, answered, b"", keep_alive, status).await
        }
        Err(refused) => close_refused(stream, state, peer, refused, status).await,
    }
}

/// Closes a connection whose request body could not be read, answering when there is
/// something to say (see [`Refused`]).
async fn close_refused(
    stream: &mut TcpStream,
    state: &AppState,
    peer: SocketAddr,
    refused: Refused,
    status: &mut u16,
) -> After {
    match refused {
        Refused::Gone => {}
        Refused::Stalled(limit) => stalled(stream, state, peer, limit, true),
        Refused::Answer(refusal) => {
            if refusal.status == StatusCode::PAYLOAD_TOO_LARGE {
                state.guard.hit(Limit::MessageSize, Some(peer.ip()), "a request body over the size limit");
            }
            *status = refusal.status.as_u16();
            let _ = Box::pin(write_error(stream, refusal)).await;
        }
    }
    After::Close
}

/// A request for the router, with what [`exchange`] learned of it.
struct Routed {
    head: Head,
    body: Bytes,
    peer: SocketAddr,
    cors: Option<HeaderValue>,
    keep_alive: bool,
}

/// Answers `routed` by the router: a whole response, or a stream's head before its
/// [`Takeover`] gets the connection.
async fn route(stream: &mut TcpStream, routed: Routed, router: &Router, status: &mut u16) -> After {
    let Routed { head, body, peer, cors, keep_alive } = routed;
    let (method, version) = (head.method.clone(), head.version);
    let mut request = match head.into_request(Body::from(body)) {
        Ok(request) => request,
        Err(refusal) => {
            *status = refusal.status.as_u16();
            let _ = Box::pin(write_error(stream, refusal)).await;
            return After::Close;
        }
    };
    // Handlers that need the client address take `Extension<SocketAddr>`.
    request.extensions_mut().insert(peer);
    let mut response = match Box::pin(router.clone().oneshot(request)).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if let Some(origin) = &cors {
        origin::add_cors_headers(response.headers_mut(), origin);
    }
    *status = response.status().as_u16();
    if let Some(takeover) = response.extensions_mut().remove::<Takeover>() {
        let chunked = version == Version::HTTP_11;
        let (parts, _) = response.into_parts();
        let head = response_head(&parts, None, chunked, false);
        drop(parts);
        let body = takeover.take().filter(|_| method != Method::HEAD);
        let written = stream.write_all(&head).await.is_ok();
        return match body {
            Some(body) if written => After::Takeover(body, chunked),
            _ => After::Close,
        };
    }
    match Box::pin(write_response(stream, response, &method, keep_alive)).await {
        Ok(true) => After::KeepAlive,
        _ => After::Close,
    }
}

/// The largest body read into memory; the API's own limit (a JSON `413`) is lower.
fn body_cap(state: &AppState) -> usize {
    state.config.max_message_bytes.saturating_mul(4) + 1024 * 1024
}

fn wants_keep_alive(head: &Head) -> bool {
    match head.version {
        Version::HTTP_11 => !head.has_token(&header::CONNECTION, "close"),
        _ => head.has_token(&header::CONNECTION, "keep-alive"),
    }
}

/// How long a refused connection's remaining input is read and dropped before it closes.
const LINGER: Duration = Duration::from_millis(500);
/// The most of a refused connection's remaining input read before it closes.
const LINGER_BYTES: usize = 64 * 1024;

/// Answers `refusal` as a JSON error and closes the connection the way nginx's lingering close
/// does: the answer, then a FIN, then what the client still sends (the rest of a refused body)
/// is read and dropped for up to [`LINGER`]. Closing with unread input would send a reset,
/// which can destroy the answer before the client reads it.
async fn write_error(stream: &mut TcpStream, refusal: Refusal) -> std::io::Result<bool> {
    let code = match refusal.status {
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::MessageTooLarge,
        StatusCode::NOT_IMPLEMENTED => ErrorCode::NotAvailable,
        _ => ErrorCode::BadRequest,
    };
    let mut response = axum::response::IntoResponse::into_response(ApiError::new(code, refusal.message));
    *response.status_mut() = refusal.status;
    write_response(stream, response, &Method::GET, false).await?;
    stream.shutdown().await?;
    let drain = async {
        let (mut dropped, mut sink) = (0, [0u8; 4096]);
        while dropped < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => dropped += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::{Via, serve};

    /// Every open HTTP connection, and so every waiting long poll, is one task holding this
    /// future: its size is most of a waiting poll's memory (the budget is 4 KiB per connection,
    /// the performance budget in BENCHMARKS.md): large state stays out of the loop, boxed.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let (server, stream, peer, _client) = crate::server::Server::with_connection_for_tests().await;
        let state = server.state().clone();
        let connection = serve(stream, peer, Via::Direct, state.clone(), crate::http::router(state));
        let size = std::mem::size_of_val(&connection);
        assert!(size <= 832, "a connection's task is {size} bytes: keep large state out of the loop (box it)");
    }

    /// Every request boxes its exchange (a long poll's from its head to its answer): mimalloc
    /// serves blocks up to 1 KiB on its fast path and larger ones on a slower one.
    #[tokio::test]
    async fn a_request_boxes_less_than_a_kib() {
        let (server, mut stream, peer, _client) = crate::server::Server::with_connection_for_tests().await;
        let state = server.state().clone();
        let router = crate::http::router(state.clone());
        let head = || {
            let head = super::Head::parse(&mut bytes::BytesMut::from("GET /poll HTTP/1.1\r\n\r\n"));
            head.ok().flatten().expect("a whole head")
        };
        let (mut buf, mut status) = (bytes::BytesMut::new(), 0);
        let exchange = super::exchange(&mut stream, &mut buf, head(), peer, &state, &router, &mut status);
        let size = std::mem::size_of_val(&exchange);
        assert!(size <= 1024, "an exchange's future is {size} bytes");
        drop(exchange);
        let mut timer = Box::pin(tokio::time::sleep(super::IDLE_TIMEOUT));
        let mut stream = std::sync::Arc::new(stream);
        let poll = super::poll_exchange(&mut stream, head(), peer, &state, timer.as_mut(), &mut status, None);
        let size = std::mem::size_of_val(&*poll);
        assert!(size <= 1024, "a long poll's future is {size} bytes");
    }
}
