//! A Rust client for Herald, used by the `herald` CLI: publish over the server API, and
//! subscribe over WebSocket, SSE or long polling with resume after a reconnect.
//!
//! [`Client::subscribe`] hands every push — message envelopes and resets, the same JSON on
//! every transport — to a callback, and on a dropped connection reconnects from the last
//! position it saw, so nothing is lost while history covers the gap.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A transport to subscribe over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket (`/ws`).
    Ws,
    /// Server-Sent Events (`/sse`).
    Sse,
    /// Long polling (`/poll`).
    Poll,
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP request failed.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The WebSocket failed.
    #[error("websocket: {0}")]
    Ws(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    /// The server answered with an error.
    #[error("server said {status}: {body}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// The body (Herald's JSON error).
        body: String,
    },
    /// The server closed the stream and asked not to reconnect.
    #[error("disconnected: {0}")]
    Disconnected(String),
}

/// A Herald client.
#[derive(Clone)]
pub struct Client {
    base: String,
    api_key: Option<String>,
    http: reqwest::Client,
}

// === impl Client ===

impl Client {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, api_key: Option<String>) -> Self {
        Self { base: base.trim_end_matches('/').to_string(), api_key, http: reqwest::Client::new() }
    }

    /// Publishes `data` to `channel`; returns the server's reply (`channel`, `offset`, `epoch`).
    pub async fn publish(&self, channel: &str, data: &Value, event: Option<&str>) -> Result<Value, Error> {
        let mut body = json!({ "channel": channel, "data": data });
        if let Some(event) = event {
            body["event"] = json!(event);
        }
        let mut request = self.http.post(format!("{}/api/publish", self.base)).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let text = success(request.send().await?).await?.text().await?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Subscribes to `channels` and calls `on_push` with every message envelope and reset,
    /// reconnecting (after `retry`) from the last position on a dropped connection. Returns
    /// when `on_push` returns false or the server says not to reconnect.
    pub async fn subscribe(
        &self,
        transport: Transport,
        channels: &[String],
        retry: Duration,
        mut on_push: impl FnMut(&Value) -> bool,
    ) -> Result<(), Error> {
        let mut cursor = String::new();
        let mut positions: Vec<(String, Value)> = Vec::new();
        loop {
            let ended = match transport {
                Transport::Ws => self.ws_session(channels, &mut positions, &mut on_push).await,
                Transport::Sse => self.sse_session(channels, &mut cursor, &mut on_push).await,
                Transport::Poll => self.poll_session(channels, &mut cursor, &mut on_push).await,
            };
            match ended {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e @ (Error::Disconnected(_) | Error::Server { .. })) => return Err(e),
                Err(e) => eprintln!("herald: connection lost ({e}); reconnecting"),
            }
            tokio::time::sleep(retry).await;
        }
    }

    fn stream_url(&self, path: &str, channels: &[String], cursor_key: &str, cursor: &str) -> String {
        let mut url = format!("{}{path}?", self.base);
        let mut query = form_urlencoded::Serializer::new(String::new());
        for c in channels {
            query.append_pair("channel", c);
        }
        if !cursor.is_empty() {
            query.append_pair(cursor_key, cursor);
        }
        url.push_str(&query.finish());
        url
    }

    /// One SSE connection; `Ok(true)` when the caller asked to stop.
    async fn sse_session(
        &self,
        channels: &[String],
        cursor: &mut String,
        on_push: &mut impl FnMut(&Value) -> bool,
    ) -> Result<bool, Error> {
        let url = self.stream_url("/sse", channels, "last_event_id", cursor);
        let mut body = success(self.http.get(url).send().await?).await?.bytes_stream();
        let mut buffer: Vec<u8> = Vec::new();
        let mut data = String::new();
        while let Some(chunk) = body.next().await {
            buffer.extend_from_slice(&chunk?);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    if !data.is_empty() {
                        let value: Value = serde_json::from_str(&data).unwrap_or(Value::String(data.clone()));
                        data.clear();
                        if !on_push(&value) {
                            return Ok(true);
                        }
                    }
                } else if let Some(id) = line.strip_prefix("id:") {
                    *cursor = id.trim_start().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.strip_prefix(' ').unwrap_or(d));
                }
            }
        }
        Ok(false)
    }

    /// Long polls until the caller asks to stop.
    async fn poll_session(
        &self,
        channels: &[String],
        cursor: &mut String,
        on_push: &mut impl FnMut(&Value) -> bool,
    ) -> Result<bool, Error> {
        loop {
            let mut url = self.stream_url("/poll", channels, "cursor", cursor);
            // Without a cursor, ask for one at once (timeout=0), so that nothing published
            // before the first long wait begins is missed.
            if cursor.is_empty() {
                url.push_str("&timeout=0");
            }
            let body: Value = success(self.http.get(url).send().await?).await?.json().await?;
            let pushes = body["resets"].as_array().into_iter().chain(body["messages"].as_array()).flatten();
            for push in pushes {
                if !on_push(push) {
                    return Ok(true);
                }
            }
            if let Some(next) = body["cursor"].as_str() {
                *cursor = next.to_string();
            }
        }
    }

    /// One WebSocket connection, resubscribing from `positions`.
    async fn ws_session(
        &self,
        channels: &[String],
        positions: &mut Vec<(String, Value)>,
        on_push: &mut impl FnMut(&Value) -> bool,
    ) -> Result<bool, Error> {
        let url = format!("{}/ws", self.base.replacen("http", "ws", 1));
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.map_err(Box::new)?;
        for (i, channel) in channels.iter().enumerate() {
            let mut command = json!({ "id": i + 1, "op": "subscribe", "channel": channel });
            if let Some((_, since)) = positions.iter().find(|(c, _)| c == channel) {
                command["since"] = since.clone();
            }
            socket.send(Message::text(command.to_string())).await.map_err(Box::new)?;
        }
        while let Some(frame) = socket.next().await {
            let Message::Text(text) = frame.map_err(Box::new)? else { continue };
            let push: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let channel = push["channel"].as_str().unwrap_or_default().to_string();
            let position = json!({ "epoch": push["epoch"], "offset": push["offset"] });
            match push["type"].as_str() {
                Some("message" | "reset") => {
                    set_position(positions, channel, position);
                    if !on_push(&push) {
                        return Ok(true);
                    }
                }
                Some("disconnect") if push["reconnect"] == json!(false) => {
                    return Err(Error::Disconnected(push["reason"].as_str().unwrap_or("unknown").to_string()));
                }
                _ if push.get("error").is_some() => eprintln!("herald: {push}"),
                // A subscribe reply: live from here when no position was known.
                _ if push["result"]["epoch"].is_string() => {
                    let result = &push["result"];
                    let channel = result["channel"].as_str().unwrap_or_default().to_string();
                    if !positions.iter().any(|(c, _)| *c == channel) {
                        let position = json!({ "epoch": result["epoch"], "offset": result["offset"] });
                        set_position(positions, channel, position);
                    }
                }
                _ => {}
            }
        }
        Ok(false)
    }
}

/// The response when its status is a success, else [`Error::Server`] with the body.
async fn success(response: reqwest::Response) -> Result<reqwest::Response, Error> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    Err(Error::Server { status, body: response.text().await.unwrap_or_default() })
}

fn set_position(positions: &mut Vec<(String, Value)>, channel: String, position: Value) {
    match positions.iter_mut().find(|(c, _)| *c == channel) {
        Some((_, p)) => *p = position,
        None => positions.push((channel, position)),
    }
}
