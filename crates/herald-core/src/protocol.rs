//! The wire vocabulary shared by every transport (docs/protocol.md §1, 2.3, 2.6): WebSocket
//! commands, error codes, disconnect codes, and the JSON of envelopes, resets and replies.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{ChannelName, HistoryQuery, StreamPosition, cursor::is_valid_epoch};

/// The longest event name, in bytes.
pub const MAX_EVENT_LEN: usize = 128;

/// A machine-readable error code, sent as `{"error":{"code":…,"message":…}}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed (missing field, wrong type).
    BadRequest,
    /// The body or frame is not valid JSON.
    InvalidJson,
    /// The WebSocket `op` is not one Herald knows.
    UnknownOp,
    /// A channel name breaks docs/protocol.md §1.
    InvalidChannel,
    /// An event name is empty, too long or holds control characters.
    InvalidEvent,
    /// A cursor, `Last-Event-ID` or `since` position cannot be parsed.
    InvalidCursor,
    /// The message or body is over the configured size limit.
    MessageTooLarge,
    /// No credentials, or wrong ones.
    Unauthorized,
    /// The token is malformed, wrongly signed, or lacks a required claim.
    InvalidToken,
    /// The token's `exp` has passed.
    TokenExpired,
    /// The credentials do not allow this.
    Forbidden,
    /// The request's `Origin` is not on the server's allow-list.
    OriginNotAllowed,
    /// A rate or count limit was hit (per IP or per connection); retry later.
    RateLimited,
    /// The server holds as many connections as it is configured for.
    TooManyConnections,
    /// No such route or resource.
    NotFound,
    /// The HTTP method is not allowed on this route.
    MethodNotAllowed,
    /// The connection already subscribes to the channel.
    AlreadySubscribed,
    /// The connection does not subscribe to the channel.
    NotSubscribed,
    /// Too many channels for one connection or request.
    TooManyChannels,
    /// The feature is not available on this server.
    NotAvailable,
    /// The server is shutting down.
    ShuttingDown,
    /// The shared engine (Redis) cannot be reached; retry shortly.
    EngineUnavailable,
    /// The request's head or body did not arrive within the server's deadline.
    RequestTimeout,
    /// Something failed inside the server.
    Internal,
}

/// A command or request the server refuses, with the command id when one was readable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ProtocolError {
    /// The `id` of the command, when it could be read.
    pub id: Option<u64>,
    /// What went wrong, for machines.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

/// Why the server ends a connection: the WebSocket close code and whether to reconnect.
/// Codes 4000–4499 mean "reconnect", 4500–4999 "do not reconnect" (docs/protocol.md §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisconnectCode {
    /// The WebSocket close code.
    pub code: u16,
    /// A short snake_case reason.
    pub reason: &'static str,
}

/// A WebSocket command (docs/protocol.md §6), validated.
#[derive(Debug)]
pub enum Command {
    /// Subscribe, optionally resuming from a position.
    Subscribe {
        /// The channel.
        channel: ChannelName,
        /// The last position the client has, if any.
        since: Option<StreamPosition>,
        /// Without `since`: how many of the latest messages come first (initial state; 0:
        /// none, the client starts live).
        last: usize,
    },
    /// Stop receiving a channel.
    Unsubscribe {
        /// The channel.
        channel: ChannelName,
    },
    /// Publish to a channel.
    Publish {
        /// The channel.
        channel: ChannelName,
        /// The message data, any JSON (a binary message's: its bytes in base64).
        data: Box<RawValue>,
        /// The event name, if any.
        event: Option<String>,
        /// Whether `data` is a binary message's bytes in base64 (`"encoding":"base64"`).
        binary: bool,
    },
    /// Read a channel's history.
    History {
        /// The channel.
        channel: ChannelName,
        /// Which messages (`limit`, `since`, `before`).
        query: HistoryQuery,
    },
    /// Read a channel's presence.
    Presence {
        /// The channel.
        channel: ChannelName,
    },
    /// Authenticate with a token.
    Auth {
        /// The token.
        token: String,
    },
}

/// A command with its id.
#[derive(Debug)]
pub struct Request {
    /// The client's id for the command, echoed in the reply.
    pub id: Option<u64>,
    /// The command.
    pub command: Command,
}

#[derive(Deserialize)]
struct RawCommand<'a> {
    #[serde(default)]
    id: Option<u64>,
    #[serde(borrow, default)]
    op: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    channel: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    since: Option<serde_json::Value>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    last: Option<usize>,
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    token: Option<String>,
}

/// A command's `id` alone, read when the rest of the command does not parse.
#[derive(Deserialize)]
struct IdOnly {
    #[serde(default)]
    id: Option<u64>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: ErrorCode,
    message: &'a str,
}

// === impl ErrorCode ===

impl ErrorCode {
    /// The HTTP status that goes with this code.
    pub const fn http_status(self) -> u16 {
        match self {
            Self::BadRequest
            | Self::InvalidJson
            | Self::UnknownOp
            | Self::InvalidChannel
            | Self::InvalidEvent
            | Self::InvalidCursor
            | Self::AlreadySubscribed
            | Self::NotSubscribed
            | Self::TooManyChannels => 400,
            Self::Unauthorized | Self::InvalidToken | Self::TokenExpired => 401,
            Self::Forbidden | Self::OriginNotAllowed => 403,
            Self::RateLimited => 429,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::MessageTooLarge => 413,
            Self::NotAvailable => 501,
            Self::ShuttingDown | Self::TooManyConnections | Self::EngineUnavailable => 503,
            Self::Internal => 500,
        }
    }
}

// === impl ProtocolError ===

impl ProtocolError {
    /// An error without a command id.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { id: None, code, message: message.into() }
    }

    /// The error object: `{"code":…,"message":…}`.
    pub fn to_error_object(&self) -> serde_json::Value {
        serde_json::json!({ "code": self.code, "message": self.message })
    }

    /// The HTTP body: `{"error":{"code":…,"message":…}}`.
    pub fn to_http_body(&self) -> Vec<u8> {
        encode(&serde_json::json!({ "error": ErrorBody { code: self.code, message: &self.message } }))
    }

    /// The WebSocket reply: `{"id":…,"error":{…}}` (`id` is null when unreadable).
    pub fn to_reply(&self) -> Vec<u8> {
        encode(&serde_json::json!({ "id": self.id, "error": ErrorBody { code: self.code, message: &self.message } }))
    }
}

impl From<crate::InvalidChannel> for ProtocolError {
    fn from(e: crate::InvalidChannel) -> Self {
        Self::new(ErrorCode::InvalidChannel, e.to_string())
    }
}

impl From<crate::InvalidCursor> for ProtocolError {
    fn from(e: crate::InvalidCursor) -> Self {
        Self::new(ErrorCode::InvalidCursor, e.to_string())
    }
}

// === impl DisconnectCode ===

impl DisconnectCode {
    /// The server is shutting down or restarting.
    pub const SHUTDOWN: Self = Self { code: 4001, reason: "shutdown" };
    /// The client did not keep up with its messages.
    pub const SLOW_CONSUMER: Self = Self { code: 4002, reason: "slow_consumer" };
    /// Nothing was heard from the client within the idle timeout.
    pub const STALE: Self = Self { code: 4003, reason: "stale" };
    /// The server asked the client to reconnect (e.g. an operator's disconnect).
    pub const FORCE_RECONNECT: Self = Self { code: 4004, reason: "force_reconnect" };
    /// The connection's token expired: fetch a fresh one and reconnect with it.
    pub const SESSION_EXPIRED: Self = Self { code: 4005, reason: "session_expired" };
    /// The client sent something that cannot be a Herald frame (binary, oversize).
    pub const BAD_FRAME: Self = Self { code: 4500, reason: "bad_frame" };
    /// The client's credentials are invalid.
    pub const INVALID_TOKEN: Self = Self { code: 4501, reason: "invalid_token" };
    /// The client presented an expired token (retrying it cannot succeed).
    pub const TOKEN_EXPIRED: Self = Self { code: 4502, reason: "token_expired" };
    /// An operator disconnected the user (`POST /api/disconnect`).
    pub const DISCONNECTED: Self = Self { code: 4504, reason: "disconnected" };
    /// The client is not allowed here.
    pub const FORBIDDEN: Self = Self { code: 4503, reason: "forbidden" };

    /// Whether a client should reconnect after this disconnect.
    pub const fn reconnect(self) -> bool {
        self.code < 4500
    }

    /// The push sent before the close: `{"type":"disconnect","code":N,"reason":…,"reconnect":…}`.
    pub fn to_push(self) -> Vec<u8> {
        encode(&serde_json::json!({
            "type": "disconnect", "code": self.code, "reason": self.reason, "reconnect": self.reconnect(),
        }))
    }
}

// === impl Request ===

impl Request {
    /// Parses and validates one WebSocket text frame.
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        // serde would also read a struct from a JSON array; a command is an object.
        if !text.trim_start().starts_with('{') && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
            return Err(ProtocolError::new(ErrorCode::BadRequest, "a command is a JSON object"));
        }
        let raw: RawCommand<'_> = serde_json::from_str(text).map_err(|e| {
            let code = if e.is_data() { ErrorCode::BadRequest } else { ErrorCode::InvalidJson };
            let mut error = ProtocolError::new(code, format!("cannot read command: {e}"));
            // A field of the wrong type (`"limit":-1`): the reply still carries the command's
            // id, so the client can tell which command failed.
            if e.is_data() {
                error.id = serde_json::from_str::<IdOnly>(text).ok().and_then(|c| c.id);
            }
            error
        })?;
        let id = raw.id;
        let command = Self::command(raw).map_err(|mut e| {
            e.id = id;
            e
        })?;
        Ok(Self { id, command })
    }

    fn command(raw: RawCommand<'_>) -> Result<Command, ProtocolError> {
        let op = raw.op.as_deref().ok_or_else(|| ProtocolError::new(ErrorCode::BadRequest, "missing \"op\""))?;
        let channel = || -> Result<ChannelName, ProtocolError> {
            let name = raw
                .channel
                .as_deref()
                .ok_or_else(|| ProtocolError::new(ErrorCode::BadRequest, "missing \"channel\""))?;
            Ok(ChannelName::new(name)?)
        };
        Ok(match op {
            "subscribe" => Command::Subscribe {
                channel: channel()?,
                since: parse_since_position(raw.since.as_ref())?,
                last: raw.last.unwrap_or(0),
            },
            "unsubscribe" => Command::Unsubscribe { channel: channel()? },
            "publish" => {
                let channel = channel()?;
                let data = raw.data.ok_or_else(|| ProtocolError::new(ErrorCode::BadRequest, "missing \"data\""))?;
                let binary = match raw.encoding.as_deref() {
                    None => false,
                    Some("base64") => true,
                    Some(_) => {
                        return Err(ProtocolError::new(ErrorCode::BadRequest, UNKNOWN_ENCODING));
                    }
                };
                Command::Publish { channel, data, event: validate_event(raw.event)?, binary }
            }
            "history" => {
                let since = match &raw.since {
                    None | Some(serde_json::Value::Null) => None,
                    Some(v) => Some(v.as_u64().ok_or_else(|| {
                        ProtocolError::new(
                            ErrorCode::BadRequest,
                            "\"since\" must be an offset (a non-negative integer)",
                        )
                    })?),
                };
                Command::History {
                    channel: channel()?,
                    query: HistoryQuery { since, before: raw.before, limit: raw.limit },
                }
            }
            "presence" => Command::Presence { channel: channel()? },
            "auth" => Command::Auth {
                token: raw.token.ok_or_else(|| ProtocolError::new(ErrorCode::BadRequest, "missing \"token\""))?,
            },
            other => return Err(ProtocolError::new(ErrorCode::UnknownOp, format!("unknown op {other:?}"))),
        })
    }
}

fn parse_since_position(since: Option<&serde_json::Value>) -> Result<Option<StreamPosition>, ProtocolError> {
    let bad = || ProtocolError::new(ErrorCode::InvalidCursor, "\"since\" must be {\"epoch\":\"…\",\"offset\":N}");
    match since {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => {
            let epoch = v.get("epoch").and_then(|e| e.as_str()).ok_or_else(bad)?;
            let offset = v.get("offset").and_then(serde_json::Value::as_u64).ok_or_else(bad)?;
            // An epoch not of the server's shape was never issued by it: a position all the
            // same, which recovers to a reset, as a foreign epoch does.
            match is_valid_epoch(epoch) {
                true => Ok(Some(StreamPosition { epoch: epoch.into(), offset })),
                false => Ok(Some(StreamPosition::unusable())),
            }
        }
    }
}

/// Validates an optional event name: 1–128 bytes, no control characters (it becomes an SSE
/// `event:` line, so a newline would let a publisher forge fields).
pub fn validate_event(event: Option<String>) -> Result<Option<String>, ProtocolError> {
    match event {
        None => Ok(None),
        Some(e) if e.is_empty() || e.len() > MAX_EVENT_LEN || e.chars().any(char::is_control) => {
            Err(ProtocolError::new(ErrorCode::InvalidEvent, "event must be 1-128 bytes without control characters"))
        }
        Some(e) => Ok(Some(e)),
    }
}

/// The fields of a message envelope.
#[derive(Serialize)]
pub struct Envelope<'a> {
    /// Always `"message"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The channel.
    pub channel: &'a str,
    /// The message's offset.
    pub offset: u64,
    /// The stream's epoch.
    pub epoch: &'a str,
    /// The event name, absent for plain messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<&'a str>,
    /// `"base64"` for a binary message (`data` is then its bytes in base64), absent for JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<&'static str>,
    /// The publisher's data.
    pub data: &'a RawValue,
    /// Publish time, ms since the Unix epoch.
    pub time: u64,
}

// === impl Envelope ===

impl Envelope<'_> {
    /// The envelope's JSON: the bytes [`encode`] writes, written by hand, since every publish
    /// encodes one (serde's map machinery and its escaping loop cost a few thousand
    /// instructions per message; this costs a few hundred).
    pub fn to_json(&self) -> Vec<u8> {
        let text_len = self.channel.len() + self.epoch.len() + self.event.map_or(0, str::len);
        let mut out = Vec::with_capacity(96 + text_len + self.data.get().len());
        out.extend_from_slice(b"{\"type\":");
        write_json_str(&mut out, self.kind);
        out.extend_from_slice(b",\"channel\":");
        write_json_str(&mut out, self.channel);
        out.extend_from_slice(b",\"offset\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.offset).as_bytes());
        out.extend_from_slice(b",\"epoch\":");
        write_json_str(&mut out, self.epoch);
        if let Some(event) = self.event {
            out.extend_from_slice(b",\"event\":");
            write_json_str(&mut out, event);
        }
        if let Some(encoding) = self.encoding {
            out.extend_from_slice(b",\"encoding\":");
            write_json_str(&mut out, encoding);
        }
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(self.data.get().as_bytes());
        out.extend_from_slice(b",\"time\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.time).as_bytes());
        out.push(b'}');
        out
    }
}

/// Appends `text` as a JSON string, escaped exactly as serde_json escapes it. Channel names,
/// epochs and nearly every event need no escaping and are copied as they are.
pub fn write_json_str(out: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(&encode(text));
    }
}

/// Encodes the envelope of docs/protocol.md §1 — the same bytes on every transport.
pub fn encode_envelope(
    channel: &ChannelName,
    at: &StreamPosition,
    event: Option<&str>,
    data: &RawValue,
    time_ms: u64,
) -> Vec<u8> {
    envelope(channel, at, event, data, time_ms).to_json()
}

/// The envelope of a message (JSON data; set `encoding` for a binary one).
pub fn envelope<'a>(
    channel: &'a ChannelName,
    at: &'a StreamPosition,
    event: Option<&'a str>,
    data: &'a RawValue,
    time_ms: u64,
) -> Envelope<'a> {
    Envelope {
        kind: "message",
        channel: channel.as_str(),
        offset: at.offset,
        epoch: &at.epoch,
        event,
        encoding: None,
        data,
        time: time_ms,
    }
}

/// What a publish whose `encoding` is neither absent nor `"base64"` is told.
pub const UNKNOWN_ENCODING: &str = "encoding must be \"base64\" (or absent: JSON)";

/// Encodes a reset: `{"type":"reset","channel":…,"epoch":…,"offset":N,"reason":…}`.
pub fn encode_reset(channel: &ChannelName, at: &StreamPosition, reason: crate::ResetReason) -> Vec<u8> {
    #[derive(Serialize)]
    struct Reset<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        channel: &'a str,
        epoch: &'a str,
        offset: u64,
        reason: &'static str,
    }
    encode(&Reset {
        kind: "reset",
        channel: channel.as_str(),
        epoch: &at.epoch,
        offset: at.offset,
        reason: reason.as_str(),
    })
}

/// What a push about an open stream says (docs/protocol.md §1, streams).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamPushKind {
    /// `"stream"`: the stream and its text so far (when it starts, and to a subscriber that
    /// joins or comes back while it is open).
    Snapshot,
    /// `"append"`: one piece added to the text.
    Append,
    /// `"abort"`: the stream ended without becoming a message.
    Abort,
}

impl StreamPushKind {
    /// The push's `type`, also its SSE event name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Snapshot => "stream",
            Self::Append => "append",
            Self::Abort => "abort",
        }
    }
}

/// A push about stream `stream` of `channel`:
/// `{"type":"stream"|"append"|"abort","channel","stream","event"?,"text"?,"seq","pieces"?}` —
/// `text` is the text so far (`stream`) or what was added (`append`) — for a JSON stream
/// `items`, the items so far or added, instead — `seq` the number of
/// appends it covers; an append that holds several (`pieces` > 1, for a connection that fell
/// behind) holds appends `seq - pieces + 1` to `seq`; an abort carries no text.
pub fn encode_stream_push(
    kind: StreamPushKind,
    channel: &ChannelName,
    stream: &str,
    event: Option<&str>,
    content: crate::streams::Content<'_>,
    seq: u64,
    pieces: u64,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Push<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        channel: &'a str,
        stream: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        event: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        items: Option<Box<serde_json::value::RawValue>>,
        seq: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        pieces: Option<u64>,
    }
    use crate::streams::Content;
    let (mut text, mut items) = (None, None);
    match content {
        _ if kind == StreamPushKind::Abort => {}
        Content::Text(t) => text = Some(t),
        Content::Items(lines) => items = serde_json::value::RawValue::from_string(crate::streams::items(lines)).ok(),
    }
    let pieces = (pieces > 1).then_some(pieces);
    encode(&Push { kind: kind.name(), channel: channel.as_str(), stream, event, text, items, seq, pieces })
}

/// Serializes a value that cannot fail to serialize (no maps with non-string keys).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| format!("{{\"error\":\"encoding failed: {e}\"}}").into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Request, ProtocolError> {
        Request::parse(s)
    }

    fn code(s: &str) -> (Option<u64>, ErrorCode) {
        let e = parse(s).expect_err("must fail");
        (e.id, e.code)
    }

    #[test]
    fn parses_every_op() {
        let r = parse(r#"{"id":1,"op":"subscribe","channel":"c","since":{"epoch":"ab","offset":3}}"#).expect("ok");
        assert_eq!(r.id, Some(1));
        let Command::Subscribe { channel, since, last: 0 } = r.command else { panic!("not a subscribe") };
        assert_eq!((channel.as_str(), since), ("c", Some(StreamPosition { epoch: "ab".into(), offset: 3 })));
        assert!(matches!(
            parse(r#"{"id":2,"op":"unsubscribe","channel":"c"}"#).map(|r| r.command),
            Ok(Command::Unsubscribe { .. })
        ));
        let Ok(Command::Publish { data, event, .. }) =
            parse(r#"{"id":3,"op":"publish","channel":"c","data":{"x":[1,2]},"event":"e"}"#).map(|r| r.command)
        else {
            panic!("publish did not parse");
        };
        assert_eq!((data.get(), event.as_deref()), (r#"{"x":[1,2]}"#, Some("e")));
        assert!(matches!(
            parse(r#"{"id":4,"op":"history","channel":"c","limit":5,"since":2}"#).map(|r| r.command),
            Ok(Command::History { query: HistoryQuery { limit: Some(5), since: Some(2), before: None }, .. })
        ));
        assert!(matches!(
            parse(r#"{"id":4,"op":"history","channel":"c","limit":5,"before":9}"#).map(|r| r.command),
            Ok(Command::History { query: HistoryQuery { limit: Some(5), since: None, before: Some(9) }, .. })
        ));
        assert!(matches!(
            parse(r#"{"id":1,"op":"subscribe","channel":"c","last":20}"#).map(|r| r.command),
            Ok(Command::Subscribe { since: None, last: 20, .. })
        ));
        assert!(matches!(
            parse(r#"{"id":5,"op":"presence","channel":"c"}"#).map(|r| r.command),
            Ok(Command::Presence { .. })
        ));
        assert!(matches!(parse(r#"{"id":6,"op":"auth","token":"t"}"#).map(|r| r.command), Ok(Command::Auth { .. })));
    }

    #[test]
    fn a_field_of_the_wrong_type_is_a_bad_request_with_the_commands_id() {
        assert_eq!(code(r#"{"id":7,"op":"subscribe","channel":"c","last":-1}"#), (Some(7), ErrorCode::BadRequest));
        assert_eq!(code(r#"{"id":8,"op":"history","channel":"c","before":"x"}"#), (Some(8), ErrorCode::BadRequest));
        assert_eq!(code(r#"{"id":"nine","op":"history"}"#), (None, ErrorCode::BadRequest));
    }

    #[test]
    fn bad_commands_get_codes_and_keep_their_id() {
        assert_eq!(code("{"), (None, ErrorCode::InvalidJson));
        assert_eq!(code("[1]"), (None, ErrorCode::BadRequest));
        assert_eq!(code(r#"{"id":7,"op":"dance"}"#), (Some(7), ErrorCode::UnknownOp));
        assert_eq!(code(r#"{"id":8,"op":"subscribe"}"#), (Some(8), ErrorCode::BadRequest));
        assert_eq!(code(r#"{"id":9,"op":"subscribe","channel":"a b"}"#), (Some(9), ErrorCode::InvalidChannel));
        // An epoch not of the server's shape is a position that recovers to a reset.
        let foreign =
            Request::parse(r#"{"id":11,"op":"subscribe","channel":"c","since":{"epoch":"no way!","offset":3}}"#);
        match foreign.map(|r| r.command) {
            Ok(Command::Subscribe { since: Some(since), .. }) => assert!(since.is_unusable()),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            code(r#"{"id":10,"op":"subscribe","channel":"c","since":{"epoch":"x"}}"#),
            (Some(10), ErrorCode::InvalidCursor)
        );
        assert_eq!(code(r#"{"id":11,"op":"publish","channel":"c"}"#), (Some(11), ErrorCode::BadRequest));
        assert_eq!(
            code(r#"{"id":12,"op":"publish","channel":"c","data":1,"event":"a\nb"}"#),
            (Some(12), ErrorCode::InvalidEvent)
        );
        assert_eq!(code(r#"{"op":"history","channel":"c","since":"x"}"#), (None, ErrorCode::BadRequest));
    }

    #[test]
    fn envelope_has_the_documented_shape() {
        let data = RawValue::from_string(r#"{"title":"x"}"#.into()).expect("json");
        let at = StreamPosition { epoch: "k3j2".into(), offset: 42 };
        let channel = ChannelName::new("jobs").expect("valid");
        let env = encode_envelope(&channel, &at, Some("new-job"), &data, 7);
        assert_eq!(
            String::from_utf8(env).expect("utf8"),
            r#"{"type":"message","channel":"jobs","offset":42,"epoch":"k3j2","event":"new-job","data":{"title":"x"},"time":7}"#
        );
        let env = encode_envelope(&channel, &at, None, &data, 7);
        assert!(!String::from_utf8(env).expect("utf8").contains("event"));
    }

    proptest::proptest! {
        /// The hand-written envelope is byte for byte what serde_json writes, escapes included.
        #[test]
        fn envelopes_are_written_as_serde_writes_them(
            event in proptest::option::of("\\PC{0,12}|[\"\\\\a\u{7f}\u{1}\n]{1,6}"),
            offset: u64,
            time: u64,
            binary: bool,
            data in "[a-z\"\\\\ ]{0,10}",
        ) {
            let data = RawValue::from_string(serde_json::to_string(&data).expect("a string")).expect("json");
            let envelope = Envelope {
                kind: "message",
                channel: "jobs:eu-1",
                offset,
                epoch: "k3j2",
                event: event.as_deref(),
                encoding: binary.then_some("base64"),
                data: &data,
                time,
            };
            proptest::prop_assert_eq!(envelope.to_json(), encode(&envelope));
        }
    }

    #[test]
    fn disconnect_codes_say_whether_to_reconnect() {
        assert!(DisconnectCode::SHUTDOWN.reconnect() && DisconnectCode::SLOW_CONSUMER.reconnect());
        assert!(!DisconnectCode::INVALID_TOKEN.reconnect() && !DisconnectCode::BAD_FRAME.reconnect());
        let push: serde_json::Value = serde_json::from_slice(&DisconnectCode::SHUTDOWN.to_push()).expect("json");
        assert_eq!(push, serde_json::json!({"type":"disconnect","code":4001,"reason":"shutdown","reconnect":true}));
    }
}
