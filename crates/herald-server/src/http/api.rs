//! The server API for backends (docs/protocol.md §3), guarded by the API key.

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Query, Request, State, rejection::BytesRejection},
    http::HeaderMap,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use herald_core::{ChannelName, DisconnectCode, ErrorCode, protocol::validate_event};
use serde::Deserialize;
use serde_json::{json, value::RawValue};

use super::request::{body_bytes, check_api_key, is_binary, is_json};
use crate::{
    publish::{Accepted, check_size, durable_reply, publish_json, publish_one},
    reply::{ApiError, history_body, json_ok, json_response, parse_json},
    routes::Route,
    state::AppState,
};

#[derive(Deserialize)]
struct BroadcastBody {
    channels: Vec<String>,
    data: Box<RawValue>,
    #[serde(default)]
    event: Option<String>,
}

/// The query of a history request (see [`herald_core::HistoryQuery`]).
#[derive(Deserialize)]
pub struct HistoryQuery {
    /// At most this many messages (the latest).
    pub limit: Option<usize>,
    /// Only messages after this offset.
    pub since: Option<u64>,
    /// Only messages before this offset, newest first: paging backwards.
    pub before: Option<u64>,
}

/// The `/api` routes, behind the API key.
pub fn router(state: AppState) -> Router<AppState> {
    let body_limit = body_limit(&state.config);
    Router::new()
        .route(Route::ApiPublish.template(), post(publish))
        .route(Route::ApiPublishTo.template(), post(publish_to))
        .route(Route::ApiBroadcast.template(), post(broadcast))
        .route(Route::ApiChannels.template(), get(channels))
        .route(Route::ApiHistory.template(), get(history))
        .route(Route::ApiPresence.template(), get(presence))
        .route(Route::ApiStreams.template(), post(super::streams::start))
        .route(Route::ApiStream.template(), post(super::streams::operate))
        .route(Route::ApiDisconnect.template(), post(disconnect))
        .route(Route::ApiInfo.template(), get(info))
        .layer(DefaultBodyLimit::max(body_limit))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_api_key))
        .with_state(state)
}

/// The largest request body an `/api` route reads.
pub fn body_limit(config: &crate::Config) -> usize {
    config.max_message_bytes.saturating_mul(2) + 64 * 1024
}

async fn require_api_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match check_api_key(&state.config, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// `POST /api/publish` (docs/protocol.md §3).
pub async fn publish(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let accepted = publish_json(&state, &body_bytes(body)?, |_| Ok(()))?;
    Ok(json_ok(durable_reply(&state, accepted).await?))
}

async fn publish_to(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let bytes = body_bytes(body)?;
    let channel = ChannelName::new(&channel)?;
    if is_binary(&headers) {
        let accepted =
            publish_one(&state, &channel, &crate::binary::data_of(&bytes), Some(&crate::binary::mark(None)), None)?;
        return Ok(json_ok(durable_reply(&state, accepted).await?));
    }
    let data: Box<RawValue> = if is_json(&headers) {
        parse_json(&bytes)?
    } else {
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| ApiError::new(ErrorCode::BadRequest, "a non-JSON body must be UTF-8 text"))?;
        RawValue::from_string(serde_json::to_string(text).unwrap_or_default())
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
    };
    let accepted = publish_one(&state, &channel, &data, None, None)?;
    Ok(json_ok(durable_reply(&state, accepted).await?))
}

async fn broadcast(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let bytes = body_bytes(body)?;
    let body: BroadcastBody = parse_json(&bytes)?;
    if body.channels.is_empty() || body.channels.len() > state.config.max_channels_per_connection {
        return Err(ApiError::new(
            ErrorCode::TooManyChannels,
            format!("channels must list 1-{} channels", state.config.max_channels_per_connection),
        ));
    }
    let event = validate_event(body.event)?;
    check_size(&state, &body.data)?;
    let accepted: Vec<(&String, Result<Accepted, ApiError>)> = body
        .channels
        .iter()
        .map(|name| {
            let accepted = ChannelName::new(name)
                .map_err(ApiError::from)
                .and_then(|channel| publish_one(&state, &channel, &body.data, event.as_deref(), None));
            (name, accepted)
        })
        .collect();
    // `{"results":[…]}` with each publish's encoded reply spliced in.
    let mut out = b"{\"results\":[".to_vec();
    for (i, (name, accepted)) in accepted.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let reply = match accepted {
            Ok(accepted) => durable_reply(&state, accepted).await,
            Err(e) => Err(e),
        };
        match reply {
            Ok(body) => out.extend_from_slice(&body),
            Err(e) => {
                let failed = json!({ "channel": name, "error": e.0.to_error_object() });
                out.extend_from_slice(&herald_core::protocol::encode(&failed));
            }
        }
    }
    out.extend_from_slice(b"]}");
    Ok(json_ok(out))
}

async fn channels(State(state): State<AppState>) -> Response {
    json_response(&json!({ "channels": state.broker.channels() }))
}

/// `GET /api/channels/{channel}/history` (the same history a WebSocket `history` command and
/// the clients' `GET /history/{channel}` read).
pub async fn history(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let channel = ChannelName::new(&channel)?;
    let Query(query) = query.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    Ok(json_ok(history_json(&state, &channel, &query).await?))
}

/// The history answer for `channel` and `query` (from Redis with the Redis engine).
pub async fn history_json(state: &AppState, channel: &ChannelName, query: &HistoryQuery) -> Result<Vec<u8>, ApiError> {
    let query = herald_core::HistoryQuery { since: query.since, before: query.before, limit: query.limit };
    let (position, messages) = state.engine.history(channel, &query).get().await?;
    Ok(history_body(channel, &position, &messages))
}

async fn info(State(state): State<AppState>) -> Response {
    let counts = state.registry.counts();
    let (published, delivered) = state.metrics.totals();
    let engine = state.engine.describe();
    let body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs(),
        "engine": engine["engine"],
        "store": engine["store"],
        "redis": engine["redis"],
        "connections": { "ws": counts.ws, "sse": counts.sse, "poll": counts.poll, "total": state.registry.total() },
        "channels": state.broker.channel_count(),
        "forgotten_positions": state.broker.forgotten_count(),
        "open_streams": state.broker.open_stream_count(),
        "messages": { "published": published, "delivered": delivered },
        "limits": state.guard.counts(),
        "process": crate::process::sample(None).ok().map(|p| json!({ "rss_bytes": p.rss_bytes, "cpu_seconds": p.cpu_secs })),
    });
    json_response(&body)
}

#[derive(Deserialize)]
struct DisconnectBody {
    user: String,
    /// Whether the user's clients may reconnect (close 4004) or not (4504, the default).
    #[serde(default)]
    reconnect: bool,
}

/// `POST /api/disconnect` `{"user":"u","reconnect":false}`: closes every connection of the
/// user on this node (WebSocket: a `disconnect` push and a close; SSE: the stream ends).
async fn disconnect(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body: DisconnectBody = parse_json(&body_bytes(body)?)?;
    if body.user.is_empty() {
        return Err(ApiError::new(ErrorCode::BadRequest, "user must not be empty"));
    }
    let code = if body.reconnect { DisconnectCode::FORCE_RECONNECT } else { DisconnectCode::DISCONNECTED };
    let closed = state.registry.disconnect_user(&body.user, code);
    Ok(json_response(&json!({ "user": body.user, "disconnected": closed })))
}

/// `GET /api/channels/{channel}/presence`: every connection subscribed to the channel, where
/// its namespace keeps presence.
async fn presence(State(state): State<AppState>, Path(channel): Path<String>) -> Result<Response, ApiError> {
    let channel = ChannelName::new(&channel)?;
    if !state.config.rules(&channel).presence {
        return Err(ApiError::new(ErrorCode::NotAvailable, format!("presence is off for {channel}'s namespace")));
    }
    Ok(json_response(&read_presence(&state, &channel).await?))
}

/// The presence answer for `channel`: every node's members with the Redis engine, else this
/// node's.
pub async fn read_presence(state: &AppState, channel: &ChannelName) -> Result<serde_json::Value, ApiError> {
    Ok(state.engine.presence(channel).get().await?)
}
