//! The HTTP surface: the router, JSON errors, the server API, health endpoints and the demo
//! page. Every error is `{"error":{"code":…,"message":…}}` with a matching status.

pub mod api;
mod body;
pub mod client;
pub mod conn;
pub mod origin;
pub mod query;

use std::{sync::Arc, time::Instant};

use axum::{
    Router,
    body::Body,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use herald_core::{ErrorCode, ProtocolError};

use crate::{broker::Broker, config::Config, registry::Registry, transport};
pub use herald_http1::head;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The configuration.
    pub config: Arc<Config>,
    /// The engine and hub.
    pub broker: Arc<Broker>,
    /// Open connections.
    pub registry: Arc<Registry>,
    /// When the server started.
    pub started: Instant,
    /// Results of recent publishes made with an `idempotency_key`.
    pub idempotency: Arc<api::IdempotencyCache>,
    /// Client token verification.
    pub auth: Arc<crate::auth::Auth>,
    /// Connection, stream and publish limits.
    pub guard: Arc<crate::guard::Guard>,
    /// The engine: where messages get their place, and history and presence live (with
    /// Redis, the broker mirrors Redis's channels).
    pub engine: Arc<dyn crate::engine::Engine>,
    /// The peers trusted to name the client (`trusted_proxies`).
    pub proxies: Arc<crate::proxy::TrustedProxies>,
}

/// An error answered as JSON with its status.
#[derive(Debug)]
pub struct ApiError(pub ProtocolError);

const DEMO_PAGE: &str = include_str!("../../../../web/index.html");
/// The admin page (`/admin`): it asks for the admin password and reads the API with it.
const ADMIN_PAGE: &str = include_str!("../../../../web/admin.html");
/// The TypeScript client (`clients/js`), bundled into one ES module (`npm run build` there).
const CLIENT_BUNDLE: &str = include_str!("../../../../clients/js/dist/herald.js");

/// Builds the router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(demo_page))
        .route("/herald.js", get(client_bundle))
        .route("/healthz", get(|| async { json_ok(br#"{"status":"ok"}"#.to_vec()) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin", get(admin_page))
        .route("/sse", get(transport::sse::stream))
        .route("/sse/{channel}", get(transport::sse::stream_one))
        .route("/poll", get(transport::poll::poll))
        // For browsers and apps, no API key: what a WebSocket client can do with `publish` and
        // `history`, for SSE and long-poll clients, under the same token and namespace rules.
        .route(
            "/publish",
            axum::routing::post(client::publish)
                .layer(axum::extract::DefaultBodyLimit::max(api::body_limit(&state.config))),
        )
        .route("/history/{channel}", get(client::history))
        .nest("/api", api::router(state.clone()))
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
    json_ok(br#"{"status":"ready"}"#.to_vec())
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
    let body = crate::metrics::metrics().render(&snapshot);
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn admin_page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], ADMIN_PAGE).into_response()
}

/// A `200` JSON response serializing `value`.
pub fn json_response<T: serde::Serialize + ?Sized>(value: &T) -> Response {
    json_ok(herald_core::protocol::encode(value))
}

/// A `200` JSON response from encoded bytes.
pub fn json_ok(body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

// === impl ApiError ===

impl ApiError {
    /// An error with `code` and a human message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(ProtocolError::new(code, message))
    }
}

impl From<ProtocolError> for ApiError {
    fn from(e: ProtocolError) -> Self {
        Self(e)
    }
}

impl From<herald_core::InvalidChannel> for ApiError {
    fn from(e: herald_core::InvalidChannel) -> Self {
        Self(e.into())
    }
}

impl From<herald_core::InvalidCursor> for ApiError {
    fn from(e: herald_core::InvalidCursor) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = json_ok(self.0.to_http_body());
        *response.status_mut() = status;
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
