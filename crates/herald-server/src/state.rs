//! What every handler shares: the configuration, the engine and hub, the connections, the
//! limits, the metrics. The HTTP API and the transports both take it; it lives below both.

use std::{sync::Arc, time::Instant};

use crate::{broker::Broker, config::Config, registry::Registry};

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
    pub idempotency: Arc<crate::idempotency::IdempotencyCache>,
    /// Client token verification.
    pub auth: Arc<crate::auth::Auth>,
    /// Connection, stream and publish limits.
    pub guard: Arc<crate::guard::Guard>,
    /// The engine: where messages get their place, and history and presence live (with
    /// Redis, the broker mirrors Redis's channels).
    pub engine: Arc<dyn crate::engine::Engine>,
    /// The peers trusted to name the client (`trusted_proxies`).
    pub proxies: Arc<crate::proxy::TrustedProxies>,
    /// The server's metrics (`GET /metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The backend hooks, when configured (`[hooks]`).
    pub hooks: Option<Arc<crate::hooks::Hooks>>,
    /// The webhooks, when configured (`[[webhooks]]`).
    pub webhooks: Option<Arc<crate::webhooks::Webhooks>>,
    /// The consumers' statuses, when consumers are configured (`[[consumers]]`).
    pub consumers: Option<Arc<crate::consumers::status::Statuses>>,
}
