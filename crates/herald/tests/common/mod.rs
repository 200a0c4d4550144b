//! Black-box test support: a real `herald serve` process on 127.0.0.1 and small clients for
//! the three transports, written against the public contract (docs/protocol.md).

#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

pub mod consumers;
pub mod proxy;
pub mod receiver;
pub mod redis;
pub mod sources;
pub mod streams;

pub const API_KEY: &str = "test-key";
/// The HS256 secret of servers started with [`TestServer::with_tokens`].
pub const TOKEN_SECRET: &str = "a-test-secret-of-enough-length";
pub const WAIT: Duration = Duration::from_secs(10);

/// How many times a server the tests start (a source, a `redis-server`) is tried, each on
/// fresh ports: a port found free ([`free_port`]) can be taken (an outgoing connection's local
/// port) before the server binds it, and the server then exits.
pub const FRESH_TRIES: usize = 3;

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running server; killed on drop.
pub struct TestServer {
    pub child: Child,
    pub base: String,
    /// `https://…` when the server was started with `tls_cert`.
    pub tls_base: Option<String>,
    pub http: reqwest::Client,
}

impl TestServer {
    /// Starts `herald serve` with `--set field=value` pairs.
    pub fn start(settings: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
        command.args(["serve", "--listen", "127.0.0.1:0", "--api-key", API_KEY]);
        for s in settings {
            command.args(["--set", s]);
        }
        let mut child = command
            .env_remove("HERALD_API_KEY")
            .env("HERALD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("herald starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("reads the listening line");
        let base = line.trim().strip_prefix("herald listening on ").expect("listening line").to_string();
        let tls_base = settings.iter().any(|s| s.starts_with("tls_cert=")).then(|| {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("reads the TLS listening line");
            let rest = line.trim().strip_prefix("herald listening on ").expect("TLS listening line");
            rest.split(' ').next().unwrap_or_default().to_string()
        });
        Self { child, base, tls_base, http: reqwest::Client::new() }
    }

    /// Starts a server that verifies HS256 tokens signed with [`TOKEN_SECRET`].
    pub fn with_tokens(settings: &[&str]) -> Self {
        let secret = format!("token_hs256_secret={TOKEN_SECRET}");
        let all: Vec<&str> = std::iter::once(secret.as_str()).chain(settings.iter().copied()).collect();
        Self::start(&all)
    }

    pub fn ws_url(&self) -> String {
        format!("{}/ws", self.base.replacen("http", "ws", 1))
    }

    /// `POST /api/publish`; returns the reply.
    pub async fn publish(&self, channel: &str, data: Value) -> Value {
        self.publish_body(json!({ "channel": channel, "data": data })).await
    }

    pub async fn publish_body(&self, body: Value) -> Value {
        let response =
            self.http.post(format!("{}/api/publish", self.base)).bearer_auth(API_KEY).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200, "publish failed");
        response.json().await.unwrap()
    }

    /// `GET` an `/api` route with the key; asserts 200 and returns the body.
    pub async fn api_get(&self, path: &str) -> Value {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(API_KEY).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.unwrap()
    }

    /// Waits until `/api/info` reports `want` open connections of `transport` (`ws`, `sse`,
    /// `poll`); panics after [`WAIT`].
    pub async fn wait_for_connections(&self, transport: &str, want: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let info = self.api_get("/api/info").await;
            if info["connections"][transport] == want {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "never saw {want} {transport} connections: {info}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A raw TCP connection to the server, for requests written byte by byte.
    pub async fn connect(&self) -> tokio::net::TcpStream {
        tokio::net::TcpStream::connect(self.base.trim_start_matches("http://")).await.expect("connects")
    }

    /// `GET /poll` with raw query; returns (status, body).
    pub async fn poll(&self, query: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}/poll?{query}", self.base)).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    pub async fn sse(&self, query: &str, last_event_id: Option<&str>) -> SseClient {
        SseClient::connect(&self.http, &format!("{}/sse?{query}", self.base), last_event_id).await
    }

    pub async fn ws(&self) -> WsClient {
        WsClient::connect(&self.ws_url()).await
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One SSE event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

/// A streaming SSE reader.
pub struct SseClient {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: Vec<u8>,
    pub last_id: Option<String>,
    pub retry: Option<u64>,
    /// How many `retry:` fields arrived (the prelude has one; a shutdown sends another).
    pub retries_seen: usize,
    pub headers: reqwest::header::HeaderMap,
    pub ended: bool,
}

impl SseClient {
    pub async fn connect(http: &reqwest::Client, url: &str, last_event_id: Option<&str>) -> Self {
        let mut request = http.get(url);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "SSE refused");
        let headers = response.headers().clone();
        Self {
            body: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
            last_id: None,
            retry: None,
            retries_seen: 0,
            headers,
            ended: false,
        }
    }

    /// The next event with data (comments and id-only blocks update `last_id` and are skipped).
    pub async fn next(&mut self) -> Option<SseEvent> {
        tokio::time::timeout(WAIT, self.next_inner()).await.expect("SSE event in time")
    }

    async fn next_inner(&mut self) -> Option<SseEvent> {
        let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
        loop {
            while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let line = String::from_utf8(line).unwrap();
                let line = line.trim_end_matches('\n');
                if line.is_empty() {
                    if let Some(i) = id.take() {
                        self.last_id = Some(i);
                    }
                    if !data.is_empty() {
                        let data = serde_json::from_str(&data).expect("data is JSON");
                        return Some(SseEvent { id: self.last_id.clone(), event, data });
                    }
                    event = String::from("message");
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                } else if let Some(v) = line.strip_prefix("retry: ") {
                    self.retry = v.parse().ok();
                    self.retries_seen += 1;
                }
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                _ => {
                    self.ended = true;
                    return None;
                }
            }
        }
    }
}

/// A WebSocket client speaking Herald's JSON commands.
pub struct WsClient {
    pub socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
    /// Pushes that arrived while waiting for a reply, handed out by `next` first.
    pub pending: std::collections::VecDeque<Value>,
}

impl WsClient {
    pub async fn connect(url: &str) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        Self::from_socket(socket)
    }

    pub fn from_socket(
        socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    ) -> Self {
        Self { socket, next_id: 1, pending: Default::default() }
    }

    pub async fn send(&mut self, command: Value) {
        self.socket.send(Message::text(command.to_string())).await.unwrap();
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.socket.send(Message::text(text)).await.unwrap();
    }

    /// Sends a command with a fresh id and returns its reply (pushes before it are kept out).
    pub async fn request(&mut self, mut command: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        command["id"] = json!(id);
        self.send(command).await;
        loop {
            let frame = self.next_from_socket().await.expect("a reply");
            if frame["id"] == json!(id) {
                return frame;
            }
            self.pending.push_back(frame);
        }
    }

    /// The next JSON frame, skipping `ping` pushes; `None` when the socket closed. A binary
    /// message's frame comes as its header with its bytes under `"bytes"` (an array).
    pub async fn next(&mut self) -> Option<Value> {
        if let Some(frame) = self.pending.pop_front() {
            return Some(frame);
        }
        self.next_from_socket().await
    }

    async fn next_from_socket(&mut self) -> Option<Value> {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.socket.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(&t).expect("frame is JSON");
                        if v["type"] != "ping" {
                            return Some(v);
                        }
                    }
                    Some(Ok(Message::Binary(b))) => return Some(binary_frame(&b)),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await
        .expect("websocket frame in time")
    }

    /// Reads until the server closes: the `disconnect` push before the close, and the close
    /// frame's code.
    pub async fn disconnect(&mut self) -> (Option<Value>, Option<u16>) {
        let mut push = None;
        let read = async {
            loop {
                match self.socket.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(&t).expect("frame is JSON");
                        if v["type"] == "disconnect" {
                            push = Some(v);
                        }
                    }
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                    None | Some(Err(_)) => return None,
                    Some(Ok(_)) => {}
                }
            }
        };
        let code = tokio::time::timeout(WAIT, read).await.expect("the server closes in time");
        (push, code)
    }

    /// Subscribes and returns the reply.
    pub async fn subscribe(&mut self, channel: &str, since: Option<Value>) -> Value {
        let mut command = json!({ "op": "subscribe", "channel": channel });
        if let Some(since) = since {
            command["since"] = since;
        }
        let reply = self.request(command).await;
        assert!(reply.get("result").is_some(), "subscribe failed: {reply}");
        reply
    }
}

/// A binary message's WebSocket frame (docs/protocol.md): `[u16 header length][header JSON]
/// [bytes]`, as the header with `"bytes":[…]`.
pub fn binary_frame(payload: &[u8]) -> Value {
    let length = usize::from(u16::from_be_bytes([payload[0], payload[1]]));
    let mut header: Value = serde_json::from_slice(&payload[2..2 + length]).expect("the header is JSON");
    header["bytes"] = json!(payload[2 + length..]);
    header
}

/// A token for `user` signed with [`TOKEN_SECRET`], valid for `ttl_secs` (negative: expired),
/// granting `channels` to subscribe and `publish` to publish.
pub fn token(user: &str, ttl_secs: i64, channels: &[&str], publish: &[&str]) -> String {
    token_with_subs(user, ttl_secs, channels, publish, &[])
}

/// [`token`] with server-side subscriptions (`subs`).
pub fn token_with_subs(user: &str, ttl_secs: i64, channels: &[&str], publish: &[&str], subs: &[&str]) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = herald_auth::Claims {
        sub: user.to_string(),
        exp: now.saturating_add_signed(ttl_secs),
        channels: channels.iter().map(|c| c.to_string()).collect(),
        publish: publish.iter().map(|c| c.to_string()).collect(),
        info: Some(json!({ "name": user })),
        subs: subs.iter().map(|c| c.to_string()).collect(),
    };
    herald_auth::mint_hs256(TOKEN_SECRET, &claims).unwrap()
}

/// Opens a WebSocket to `url` with extra request `headers`: the client, or the refusal's
/// status and JSON body.
pub async fn ws_handshake(url: &str, headers: &[(&str, &str)]) -> Result<WsClient, (u16, Value)> {
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest as _, http::HeaderValue};
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().insert(name, HeaderValue::from_str(value).unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(WsClient::from_socket(socket)),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().map(|b| serde_json::from_slice(b).unwrap()).unwrap_or(Value::Null);
            Err((response.status().as_u16(), body))
        }
        Err(e) => panic!("websocket handshake failed: {e}"),
    }
}

/// Checks an envelope's fields.
pub fn assert_envelope(env: &Value, channel: &str, offset: u64, epoch: &str, data: &Value) {
    assert_eq!(env["type"], "message", "{env}");
    assert_eq!(env["channel"], channel, "{env}");
    assert_eq!(env["offset"], offset, "{env}");
    assert_eq!(env["epoch"], epoch, "{env}");
    assert_eq!(&env["data"], data, "{env}");
    assert!(env["time"].as_u64().is_some_and(|t| t > 1_600_000_000_000), "{env}");
}

/// A raw TCP connection that has sent a WebSocket upgrade request to `/ws` (no WebSocket
/// library: nothing is read, and no ping is answered, unless the test does it).
pub async fn raw_ws(base: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let mut socket = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    socket
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    socket
}

/// A masked client text frame carrying `payload`.
pub fn masked_text(payload: &[u8]) -> Vec<u8> {
    masked_frame(0x81, payload)
}

/// A masked client frame whose first byte (FIN, RSV, opcode) is `first`.
pub fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![first];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// The frames a server sent on a raw WebSocket connection, after the `101` head: each
/// (opcode, payload), and how many bytes were left after the last whole frame.
pub fn server_frames(bytes: &[u8]) -> (Vec<(u8, Vec<u8>)>, usize) {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]);
    assert!(text.starts_with("HTTP/1.1 101"), "a 101 answer: {text}");
    let mut bytes = &bytes[text.find("\r\n\r\n").unwrap() + 4..];
    let mut frames = Vec::new();
    loop {
        if bytes.len() < 2 {
            break;
        }
        assert_eq!(bytes[1] & 0x80, 0, "server frames are not masked");
        let (len, at) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 if bytes.len() >= 10 => {
                (usize::try_from(u64::from_be_bytes(bytes[2..10].try_into().unwrap())).unwrap(), 10)
            }
            126 | 127 => break,
            n => (usize::from(n), 2),
        };
        if bytes.len() < at + len {
            break;
        }
        frames.push((bytes[0] & 0x0f, bytes[at..at + len].to_vec()));
        bytes = &bytes[at + len..];
    }
    (frames, bytes.len())
}

/// Reads `socket` into `bytes` (everything it sent so far) until `done` says they hold
/// everything wanted.
pub async fn read_until(socket: &mut tokio::net::TcpStream, bytes: &mut Vec<u8>, done: impl Fn(&[u8]) -> bool) {
    let mut buf = vec![0; 1 << 16];
    while !done(bytes) {
        let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(socket, &mut buf))
            .await
            .expect("bytes in time")
            .unwrap();
        let tail = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(300)..]).into_owned();
        assert!(n > 0, "the server ended the connection: {tail}");
        bytes.extend_from_slice(&buf[..n]);
    }
}

/// The JSON text frames of a raw WebSocket connection's bytes (none before the whole head).
pub fn ws_texts(bytes: &[u8]) -> Vec<Value> {
    if !bytes.windows(4).any(|w| w == b"\r\n\r\n") {
        return Vec::new();
    }
    let (frames, _) = server_frames(bytes);
    frames.iter().filter(|(opcode, _)| *opcode == 0x1).map(|(_, p)| serde_json::from_slice(p).unwrap()).collect()
}

/// Reads until `want` responses (by their complete Content-Length bodies) have arrived.
pub async fn read_responses(stream: &mut tokio::net::TcpStream, want: usize) -> Vec<(String, String)> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let length: usize = head
                    .lines()
                    .filter_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                    })
                    .map(|v| v.parse().expect("numeric length"))
                    .next()
                    .unwrap_or(0);
                if buf.len() < end + 4 + length {
                    break;
                }
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).to_string();
                buf.drain(..end + 4 + length);
                out.push((head, body));
            }
            if out.len() >= want {
                return;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::io::AsyncReadExt::read(stream, &mut chunk).await.expect("reads");
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("responses arrive");
    out
}
