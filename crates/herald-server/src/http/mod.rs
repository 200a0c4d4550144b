//! The HTTP surface: the router, the server API, health endpoints and the demo page. Every
//! error is `{"error":{"code":…,"message":…}}` with a matching status ([`crate::reply`]).

pub mod api;
mod body;
pub mod client;
pub mod conn;
pub mod origin;
pub mod request;
pub mod response;
pub mod streams;

use axum::{
    Router,
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};
use herald_core::ErrorCode;

use crate::{
    reply::{ApiError, json_ok},
    routes::Route,
    state::AppState,
    transport,
};
pub use herald_http1::head;

const DEMO_PAGE: &str = include_str!("../../../../web/index.html");
/// The admin page (`/admin`): it asks for the admin password and reads the API with it.
const ADMIN_PAGE: &str = include_str!("../../../../web/admin.html");
/// The TypeScript client (`clients/js`), bundled into one ES module (`npm run build` there).
const CLIENT_BUNDLE: &str = include_str!("../../../../clients/js/dist/herald.js");

/// Builds the router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(Route::Demo.template(), get(demo_page))
        .route(Route::Client.template(), get(client_bundle))
        .route(Route::Healthz.template(), get(|| async { json_ok(br#"{"status":"ok"}"#.to_vec()) }))
        .route(Route::Readyz.template(), get(readyz))
        .route(Route::Metrics.template(), get(metrics))
        .route(Route::Admin.template(), get(admin_page))
        .route(Route::Sse.template(), get(transport::sse::stream))
        .route(Route::SseChannel.template(), get(transport::sse::stream_one))
        .route(Route::Poll.template(), get(transport::poll::poll))
        // For browsers and apps, no API key: what a WebSocket client can do with `publish` and
        // `history`, for SSE and long-poll clients, under the same token and namespace rules.
        .route(
            Route::Publish.template(),
            axum::routing::post(client::publish)
                .layer(axum::extract::DefaultBodyLimit::max(api::body_limit(&state.config))),
        )
        .route(Route::History.template(), get(client::history))
        .merge(api::router(state.clone()))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed on this route")
        })
        .with_state(state)
}

async fn client_bundle() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], CLIENT_BUNDLE).into_response()
}

async fn demo_page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], DEMO_PAGE).into_response()
}

async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    if state.registry.is_shutting_down() {
        return ApiError::new(ErrorCode::ShuttingDown, "shutting down").into_response();
    }
    if let Err(e) = state.engine.readiness() {
        return ApiError(e).into_response();
    }
    match &state.consumers {
        None => json_ok(br#"{"status":"ready"}"#.to_vec()),
        Some(consumers) => {
            let body = serde_json::json!({ "status": "ready", "consumers": consumers.report() });
            json_ok(herald_core::protocol::encode(&body))
        }
    }
}

/// `GET /metrics`: Prometheus (OpenMetrics) text. Counts only, no channel or user names.
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let counts = state.registry.counts();
    let process = crate::process::sample(None).ok();
    let snapshot = crate::metrics::Snapshot {
        connections: [counts.ws, counts.sse, counts.poll],
        subscriptions: state.broker.subscription_count(),
        channels: state.broker.channel_count(),
        resident_bytes: process.as_ref().map_or(0, |p| p.rss_bytes),
        cpu_seconds: process.as_ref().map_or(0.0, |p| p.cpu_secs),
    };
    let body = state.metrics.render(&snapshot);
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn admin_page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], ADMIN_PAGE).into_response()
}
