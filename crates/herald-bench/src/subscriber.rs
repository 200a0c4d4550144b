//! Subscriber tasks: one per simulated client, over WebSocket, SSE or long polling, against
//! Herald or Nchan. Each counts what it receives (see [`crate::tracker`]), remembers where to
//! resume, and on command drops its connection and comes back from where it was.

use std::{
    fmt::Write as _,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use http_body_util::BodyExt as _;
use hyper::{StatusCode, header};
use memchr::memmem::{self, Finder, FinderRev};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{
    Message, client::IntoClientRequest as _, http::HeaderValue, protocol::WebSocketConfig,
};

use crate::{
    deflate::{self, WsIo},
    net::{Connector, now_us},
    poll_client::{Answer, PollClient},
    target::{ServerKind, Target, Transport},
    tracker::{Latencies, Receipt, Receipts, markers, new_histogram},
};

/// What the orchestrator tells every subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Stay connected (or connect).
    Run,
    /// Drop the connection now, stay away for the duration, then resume (the number tells one
    /// drop from the next).
    Drop(u32, Duration),
    /// Disconnect and end.
    Stop,
}

/// What all subscribers of a run share.
pub struct Fleet {
    /// The server.
    pub target: Target,
    /// The transport.
    pub transport: Transport,
    /// Opens the connections.
    pub connector: Arc<Connector>,
    /// Delivery latencies.
    pub latencies: Arc<Latencies>,
    /// Connect (until subscribed) times in µs.
    pub connect_times: Mutex<Histogram<u64>>,
    /// Failed connection attempts.
    pub connect_failures: AtomicU64,
    /// Connections the server ended on its own.
    pub disconnects: AtomicU64,
    /// Subscribers currently subscribed.
    pub subscribed: AtomicUsize,
    /// Long-poll timeout asked of the server, in seconds.
    pub poll_timeout_secs: u64,
    /// What the WebSocket subscribers ask for in their handshake.
    pub ws_offer: WsOffer,
}

/// What a WebSocket subscriber asks for beyond a plain connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WsOffer {
    /// Offer permessage-deflate ([`deflate::OFFER`]); a server that does not agree fails the
    /// connection, so that a compressed measurement is never a plain one.
    pub deflate: bool,
    /// Ask Herald for its compact envelope (the `herald.compact` subprotocol).
    pub compact: bool,
}

/// One simulated client.
pub struct Subscriber {
    /// Its index in the run.
    pub index: usize,
    /// The index of its channel.
    pub channel: u32,
    /// The channel's name.
    pub channel_name: Arc<str>,
    /// What it received.
    pub receipts: Mutex<Receipts>,
    resume: Mutex<Resume>,
    /// Herald long polling: the open streams it holds and how far (`streams=`), so that each
    /// answer carries only what it lacks.
    held_streams: Mutex<Vec<(String, u64)>>,
}

/// Where a subscriber resumes after a reconnect.
#[derive(Clone, Debug, Default)]
enum Resume {
    #[default]
    Live,
    /// Herald WebSocket: the last message's epoch and offset.
    Position { epoch: String, offset: u64 },
    /// SSE `id:` or Herald's poll cursor.
    Id(String),
    /// Nchan long poll: the last response's `Last-Modified` and `Etag`.
    Nchan { last_modified: String, etag: String },
}

enum Ended {
    /// The orchestrator asked.
    Asked(Control),
    /// The connection ended on its own.
    Lost,
}

// === impl Fleet ===

impl Fleet {
    /// A fleet for `transport` against `target`; its WebSocket subscribers ask for `ws_offer`.
    pub fn new(target: Target, transport: Transport, connector: Arc<Connector>, ws_offer: WsOffer) -> Arc<Self> {
        Arc::new(Self {
            target,
            transport,
            connector,
            latencies: Latencies::new(),
            connect_times: Mutex::new(new_histogram()),
            connect_failures: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            subscribed: AtomicUsize::new(0),
            poll_timeout_secs: 25,
            ws_offer,
        })
    }
}

// === impl Subscriber ===

impl Subscriber {
    /// Subscriber `index` of channel `channel` named `channel_name`.
    pub fn new(index: usize, channel: u32, channel_name: Arc<str>) -> Arc<Self> {
        let (receipts, resume, held_streams) = (Mutex::default(), Mutex::default(), Mutex::default());
        Arc::new(Self { index, channel, channel_name, receipts, resume, held_streams })
    }

    /// Runs until told to stop: connects, counts, and on a `Drop` comes back after the pause.
    pub async fn run(self: Arc<Self>, fleet: Arc<Fleet>, mut control: watch::Receiver<Control>) {
        loop {
            let started = Instant::now();
            let ended = match self.connect_and_read(&fleet, &mut control, started).await {
                Ok(ended) => ended,
                Err(e) => {
                    tracing::debug!(index = self.index, error = %e, "subscriber connection failed");
                    fleet.connect_failures.fetch_add(1, Ordering::Relaxed);
                    Ended::Lost
                }
            };
            match ended {
                Ended::Asked(Control::Stop) => return,
                Ended::Asked(Control::Drop(_, pause)) => tokio::time::sleep(pause).await,
                Ended::Asked(Control::Run) | Ended::Lost => {
                    if *control.borrow() == Control::Stop {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    fn subscribed(&self, fleet: &Fleet, started: Instant) {
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        fleet.connect_times.lock().saturating_record(us.max(1));
        fleet.subscribed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the markers in `bytes`.
    pub fn receive(&self, fleet: &Fleet, bytes: &[u8]) {
        let now = now_us();
        let mut receipts = self.receipts.lock();
        for marker in markers(bytes) {
            if marker.channel != self.channel {
                continue;
            }
            if receipts.record(marker.seq) != Receipt::Duplicate {
                fleet.latencies.record(self.index, (marker.channel, marker.seq), now.saturating_sub(marker.sent_us));
            }
        }
    }

    async fn connect_and_read(
        &self,
        fleet: &Fleet,
        control: &mut watch::Receiver<Control>,
        started: Instant,
    ) -> anyhow::Result<Ended> {
        let result = match fleet.transport {
            Transport::Ws => self.websocket(fleet, control, started).await,
            Transport::Sse => self.event_stream(fleet, control, started).await,
            Transport::Poll => self.long_poll(fleet, control, started).await,
        };
        result.map(|(ended, was_subscribed)| {
            if was_subscribed {
                fleet.subscribed.fetch_sub(1, Ordering::Relaxed);
                if matches!(ended, Ended::Lost) {
                    fleet.disconnects.fetch_add(1, Ordering::Relaxed);
                }
            }
            ended
        })
    }

    async fn websocket(
        &self,
        fleet: &Fleet,
        control: &mut watch::Receiver<Control>,
        started: Instant,
    ) -> anyhow::Result<(Ended, bool)> {
        let target = &fleet.target;
        let stream = fleet.connector.connect().await?;
        let url = format!("ws://{}{}", target.addr, target.subscribe_path(Transport::Ws, &self.channel_name));
        let mut request = url.into_client_request()?;
        let offer = fleet.ws_offer;
        if offer.deflate {
            request.headers_mut().insert(header::SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static(deflate::OFFER));
        }
        if offer.compact && target.kind == ServerKind::Herald {
            request.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("herald.compact"));
        }
        // tungstenite zeroes this much before every read: a small buffer keeps the bench's
        // own CPU per message low (it shares the machine with the server it measures).
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        let io = WsIo::new(stream, offer.deflate);
        let (mut ws, answer) = tokio_tungstenite::client_async_with_config(request, io, Some(config)).await?;
        let extensions = answer.headers().get(header::SEC_WEBSOCKET_EXTENSIONS).and_then(|v| v.to_str().ok());
        if offer.deflate && !deflate::agreed(extensions) {
            bail!("the server did not agree to permessage-deflate");
        }
        if target.kind == ServerKind::Herald {
            let since = match &*self.resume.lock() {
                Resume::Position { epoch, offset } => {
                    format!(",\"since\":{{\"epoch\":\"{epoch}\",\"offset\":{offset}}}")
                }
                _ => String::new(),
            };
            let command = format!("{{\"id\":1,\"op\":\"subscribe\",\"channel\":\"{}\"{since}}}", self.channel_name);
            ws.send(Message::text(command)).await?;
            loop {
                let reply = ws.next().await.context("closed before the subscribe reply")??;
                let text = reply.into_data();
                if memmem::find(&text, b"\"error\"").is_some() {
                    bail!("subscribe refused: {}", String::from_utf8_lossy(&text));
                }
                if memmem::find(&text, b"\"result\"").is_some() {
                    break;
                }
                self.receive_herald_ws(fleet, &text);
            }
        }
        self.subscribed(fleet, started);
        loop {
            tokio::select! {
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => match target.kind {
                        ServerKind::Herald => self.receive_herald_ws(fleet, text.as_bytes()),
                        ServerKind::Nchan => self.receive(fleet, text.as_bytes()),
                    },
                    Some(Ok(Message::Binary(data))) => self.receive(fleet, &data),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Ok((Ended::Lost, true)),
                },
                asked = departure(control) => return Ok((Ended::Asked(asked), true)),
            }
        }
    }

    fn receive_herald_ws(&self, fleet: &Fleet, text: &[u8]) {
        if let (Some(epoch), Some(offset)) = (json_str(text, &EPOCH), json_u64(text, &OFFSET))
            && (TYPE_MESSAGE.find(text).is_some() || TYPE_RESET.find(text).is_some())
        {
            let mut resume = self.resume.lock();
            match &mut *resume {
                Resume::Position { epoch: held, offset: at } if held == epoch => *at = offset,
                other => *other = Resume::Position { epoch: epoch.to_string(), offset },
            }
        }
        self.receive(fleet, text);
    }

    async fn event_stream(
        &self,
        fleet: &Fleet,
        control: &mut watch::Receiver<Control>,
        started: Instant,
    ) -> anyhow::Result<(Ended, bool)> {
        let target = &fleet.target;
        let mut sender = fleet.connector.http1().await?;
        let last_id = match &*self.resume.lock() {
            Resume::Id(id) => Some(id.clone()),
            _ => None,
        };
        let mut headers = vec![(header::ACCEPT.as_str(), "text/event-stream")];
        if let Some(id) = &last_id {
            headers.push(("last-event-id", id));
        }
        let request = target.get(&target.subscribe_path(Transport::Sse, &self.channel_name), &headers);
        let response = sender.send_request(request).await?;
        if response.status() != StatusCode::OK {
            bail!("SSE answered {}", response.status());
        }
        self.subscribed(fleet, started);
        let mut body = response.into_body();
        let mut pending: Vec<u8> = Vec::new();
        loop {
            tokio::select! {
                frame = body.frame() => match frame {
                    Some(Ok(frame)) => {
                        let Ok(data) = frame.into_data() else { continue };
                        pending.extend_from_slice(&data);
                        self.take_events(fleet, &mut pending);
                    }
                    Some(Err(_)) | None => return Ok((Ended::Lost, true)),
                },
                asked = departure(control) => return Ok((Ended::Asked(asked), true)),
            }
        }
    }

    /// Handles every complete event in `pending` and keeps the incomplete rest.
    fn take_events(&self, fleet: &Fleet, pending: &mut Vec<u8>) {
        let Some(end) = EVENT_END.rfind(pending.as_slice()) else { return };
        let complete = &pending[..end + 2];
        if let Some(id) = last_sse_id(complete) {
            self.resume_at(id);
        }
        self.receive(fleet, complete);
        pending.drain(..end + 2);
    }

    async fn long_poll(
        &self,
        fleet: &Fleet,
        control: &mut watch::Receiver<Control>,
        started: Instant,
    ) -> anyhow::Result<(Ended, bool)> {
        let target = &fleet.target;
        let mut client = PollClient::new(fleet.connector.connect().await?, target.addr.to_string());
        let base = target.subscribe_path(Transport::Poll, &self.channel_name);
        let mut was_subscribed = false;
        // Herald's request path, rebuilt in place for every poll.
        let mut herald_path = String::new();
        loop {
            let nchan_resume;
            let (path, validators) = match target.kind {
                ServerKind::Herald => {
                    self.herald_poll_path(&base, fleet.poll_timeout_secs, &mut herald_path);
                    (&herald_path, None)
                }
                ServerKind::Nchan => {
                    nchan_resume = self.resume.lock().clone();
                    match &nchan_resume {
                        Resume::Nchan { last_modified, etag } => (
                            &base,
                            Some([("if-modified-since", last_modified.as_str()), ("if-none-match", etag.as_str())]),
                        ),
                        _ => (&base, None),
                    }
                }
            };
            if target.kind == ServerKind::Nchan && !was_subscribed {
                // Nchan registers the poll when it arrives; there is no reply to wait for.
                self.subscribed(fleet, started);
                was_subscribed = true;
            }
            let exchange = client.get(path, validators.as_ref().map_or(&[], |v| &v[..]));
            let answer = tokio::select! {
                result = exchange => match result {
                    Ok(answer) => answer,
                    Err(_) => return Ok((Ended::Lost, was_subscribed)),
                },
                asked = departure(control) => return Ok((Ended::Asked(asked), was_subscribed)),
            };
            self.poll_answered(fleet, target.kind, answer)?;
            if !was_subscribed {
                self.subscribed(fleet, started);
                was_subscribed = true;
            }
        }
    }

    fn poll_answered(&self, fleet: &Fleet, kind: ServerKind, answer: Answer<'_>) -> anyhow::Result<()> {
        let Answer { status, last_modified, etag, body } = answer;
        match kind {
            ServerKind::Herald => {
                if status != 200 {
                    bail!("poll answered {status}: {}", String::from_utf8_lossy(body));
                }
                let cursor = json_str(body, &CURSOR).context("poll answer without a cursor")?;
                self.resume_at(cursor);
                if STREAMS.find(body).is_some() {
                    self.hold_streams(body);
                }
            }
            ServerKind::Nchan => {
                if status == 200 {
                    *self.resume.lock() = Resume::Nchan {
                        last_modified: last_modified.unwrap_or_default(),
                        etag: etag.unwrap_or_default(),
                    };
                } else if status != 304 && status != 408 {
                    bail!("Nchan poll answered {status}");
                }
            }
        }
        self.receive(fleet, body);
        Ok(())
    }

    /// Writes into `path` the next Herald poll: from the cursor held, with the open streams
    /// held, or (the first poll) only to fetch the current cursor, so that nothing published
    /// after it is lost.
    fn herald_poll_path(&self, base: &str, timeout_secs: u64, path: &mut String) {
        path.clear();
        path.push_str(base);
        let Resume::Id(cursor) = &*self.resume.lock() else {
            path.push_str("&timeout=0");
            return;
        };
        let _ = write!(path, "&cursor={cursor}&timeout={timeout_secs}&streams=");
        for (i, (id, seq)) in self.held_streams.lock().iter().enumerate() {
            let _ = write!(path, "{}{id}.{seq}", if i == 0 { "" } else { "," });
        }
    }

    /// Resumes at the SSE event id or poll cursor `id`, reusing the string held so far.
    fn resume_at(&self, id: &str) {
        match &mut *self.resume.lock() {
            Resume::Id(held) => {
                held.clear();
                held.push_str(id);
            }
            other => *other = Resume::Id(id.to_string()),
        }
    }
}

// === impl Subscriber: token streams ===

impl Subscriber {
    /// Notes how far a long poll's answer brought each open stream (an abort forgets one).
    fn hold_streams(&self, body: &[u8]) {
        let Ok(answer) = serde_json::from_slice::<serde_json::Value>(body) else { return };
        let mut held = self.held_streams.lock();
        for push in answer["streams"].as_array().into_iter().flatten() {
            let (Some(id), Some(seq)) = (push["stream"].as_str(), push["seq"].as_u64()) else { continue };
            held.retain(|(held_id, _)| held_id != id);
            if push["type"] != "abort" {
                held.push((id.to_string(), seq));
            }
        }
    }
}

/// Waits for an order other than [`Control::Run`]; a dropped sender counts as `Stop`.
/// Cancel-safe: no order is lost when another branch wins a `select!`.
async fn departure(control: &mut watch::Receiver<Control>) -> Control {
    loop {
        if control.changed().await.is_err() {
            return Control::Stop;
        }
        let asked = *control.borrow();
        if asked != Control::Run {
            return asked;
        }
    }
}

/// The value of the last `id:` line in complete SSE events.
fn last_sse_id(events: &[u8]) -> Option<&str> {
    let at = ID_LINE.rfind(events).filter(|&at| at == 0 || events[at - 1] == b'\n')?;
    let rest = &events[at + 4..];
    let end = memchr::memchr(b'\n', rest)?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// The read buffer of a WebSocket subscriber, in bytes: a few messages of the `compression`
/// scenario's size.
const READ_BUFFER: usize = 4 * 1024;

/// The needles searched in every message, built once: building a searcher costs more than
/// searching a message of a few hundred bytes.
static EPOCH: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"epoch\":\""));
static OFFSET: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"offset\":"));
static CURSOR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"cursor\":\""));
static TYPE_MESSAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"type\":\"message\""));
static TYPE_RESET: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"type\":\"reset\""));
static STREAMS: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"streams\":["));
static EVENT_END: LazyLock<FinderRev<'static>> = LazyLock::new(|| FinderRev::new(b"\n\n"));
static ID_LINE: LazyLock<FinderRev<'static>> = LazyLock::new(|| FinderRev::new(b"id: "));

/// The string value after the first `"key":"` (`key`'s needle) in `json` (no escapes expected).
fn json_str<'a>(json: &'a [u8], key: &Finder<'_>) -> Option<&'a str> {
    let at = key.find(json)? + key.needle().len();
    let end = memchr::memchr(b'"', &json[at..])?;
    std::str::from_utf8(&json[at..at + end]).ok()
}

/// The number value after the first `"key":` (`key`'s needle) in `json`.
fn json_u64(json: &[u8], key: &Finder<'_>) -> Option<u64> {
    let at = key.find(json)? + key.needle().len();
    let digits = json[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&json[at..at + digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_resume_positions() {
        let envelope = br#"{"type":"message","channel":"c","offset":42,"epoch":"k3j2","data":{}}"#;
        assert_eq!(json_str(envelope, &EPOCH), Some("k3j2"));
        assert_eq!(json_u64(envelope, &OFFSET), Some(42));
        let events = b": herald\nretry: 2000\nid: c~e~1\n\nid: c~e~2\nevent: message\ndata: {}\n\n";
        assert_eq!(last_sse_id(events), Some("c~e~2"));
        assert_eq!(last_sse_id(b"data: {\"id: x\"}\n\n"), None);
    }

    #[test]
    fn a_herald_poll_resumes_from_its_last_cursor_with_the_streams_it_holds() {
        let subscriber = Subscriber::new(0, 0, Arc::from("c"));
        let mut path = String::from("left over");
        subscriber.herald_poll_path("/poll?channel=c", 30, &mut path);
        assert_eq!(path, "/poll?channel=c&timeout=0");
        subscriber.resume_at("c~e~1");
        subscriber.resume_at("c~e~2");
        subscriber.held_streams.lock().extend([("s1".to_string(), 3), ("s2".to_string(), 5)]);
        subscriber.herald_poll_path("/poll?channel=c", 30, &mut path);
        assert_eq!(path, "/poll?channel=c&cursor=c~e~2&timeout=30&streams=s1.3,s2.5");
    }
}
