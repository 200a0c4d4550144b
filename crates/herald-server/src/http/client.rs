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

use super::api::{HistoryQuery, body_bytes, history_json};
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
    let bytes = body_bytes(body)?;
    let identity = state.auth.identify(&headers, query.as_deref())?;
    let accepted = publish_json(&state, &bytes, |channel| {
        crate::auth::check(&state.config, identity.as_ref(), channel, Action::Publish)?;
        Ok(state.guard.client_publish(peer.ip(), None)?)
    })?;
    Ok(json_ok(durable_reply(&state, accepted).await?))
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
