//! The HTTP routes for browsers and apps, without the API key: `POST /publish` and
//! `GET /history/{channel}` — what a WebSocket client does with `publish` and `history`, for
//! SSE and long-poll clients, under the same token, namespace rules and limits.

use std::net::SocketAddr;

use axum::{
    Extension,
    body::Bytes,
    extract::{Path, Query, RawQuery, State, rejection::BytesRejection},
    http::HeaderMap,
    response::Response,
};
use herald_auth::Action;
use herald_core::ChannelName;

use super::{
    api::{HistoryQuery, history_json},
    request::body_bytes,
};
use crate::{
    publish::{durable_reply, publish_json},
    reply::{ApiError, json_ok},
    state::AppState,
};

/// `POST /publish` `{"channel","data","event"?}`: allowed where the request's token grants the
/// channel or its namespace allows anonymous publishing, within the per-IP publish rate.
pub async fn publish(
    State(state): State<AppState>,
    Extension(peer): Extension<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut bytes = body_bytes(body)?;
    let mut identity = state.auth.identify(&headers, query.as_deref())?;
    let mut hook_allowed = false;
    if let Some(hooks) = state.hooks.clone() {
        identity = hooks.connect("http", peer.ip(), &headers, identity).await?.identity;
        if hooks.asks_publish() {
            bytes = ask_publish_hook(&hooks, identity.as_ref(), &bytes).await?;
            hook_allowed = true;
        }
    }
    let accepted = publish_json(&state, &bytes, |channel| {
        if !hook_allowed {
            crate::auth::check(&state.config, identity.as_ref(), channel, Action::Publish)?;
        }
        Ok(state.guard.client_publish(peer.ip(), None)?)
    })?;
    Ok(json_ok(durable_reply(&state, accepted).await?))
}

/// Asks the publish hook about the publish `body` (`{"channel","data","event"?}`) as
/// `identity`: the body to publish (its data changed when the hook says so), or the refusal.
async fn ask_publish_hook(
    hooks: &crate::hooks::Hooks,
    identity: Option<&herald_auth::Identity>,
    body: &[u8],
) -> Result<Bytes, ApiError> {
    #[derive(serde::Deserialize)]
    struct Publish {
        channel: String,
        data: Box<serde_json::value::RawValue>,
        #[serde(default)]
        event: Option<String>,
    }
    let publish: Publish = crate::reply::parse_json(body)?;
    let channel = ChannelName::new(&publish.channel)?;
    let Some(data) = hooks.publish(identity, &channel, &publish.data, publish.event.as_deref()).await? else {
        return Ok(Bytes::copy_from_slice(body));
    };
    let mut changed: serde_json::Map<String, serde_json::Value> = crate::reply::parse_json(body)?;
    changed.insert("data".into(), serde_json::to_value(&data).unwrap_or_default());
    Ok(Bytes::from(serde_json::to_vec(&changed).unwrap_or_default()))
}

/// `GET /history/{channel}?limit=N&since=<offset>`: allowed where the request may subscribe.
pub async fn history(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let channel = ChannelName::new(&channel)?;
    let Query(query) = query.map_err(|e| ApiError::new(herald_core::ErrorCode::BadRequest, e.body_text()))?;
    let identity = state.auth.identify(&headers, raw.as_deref())?;
    crate::auth::check(&state.config, identity.as_ref(), &channel, Action::History)?;
    Ok(json_ok(history_json(&state, &channel, &query).await?))
}
