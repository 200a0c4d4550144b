//! Herald's server: everything with I/O around the pure stream logic of `herald-core`.
//!
//! - [`config`]: configuration from TOML, environment and flags;
//! - [`engine`]: the engine seam (publish, history, presence, subscribe-in-line) and its memory,
//!   durable and Redis engines;
//! - [`broker`]: the node's hub (streams, history, subscribers, fan-out) under every engine;
//! - [`cluster`]: the link to Redis behind the Redis engine;
//! - [`publication`]: a message encoded once and shared by every subscriber;
//! - [`frame`]: what is sent to a connection, and over which transport;
//! - [`ids`]: maps keyed by connection id; [`idempotency`]: the idempotency window of the
//!   local engines;
//! - [`outbox`]: the bounded per-connection queue, direct socket writes and the slow-consumer rule;
//! - [`wire`]: wire bytes of streaming connections: encoders and the unsent backlog;
//! - [`registry`]: open connections, heartbeats and the shutdown signal;
//! - [`transport`]: WebSocket, SSE and long polling;
//! - [`state`]: what every handler shares; [`reply`]: JSON bodies and errors; [`publish`]: the
//!   publish path every route shares — all three below the HTTP surface and the transports;
//! - [`routes`]: every route, named once;
//! - [`http`]: the router, the server API, health endpoints and the demo page;
//! - [`auth`]: client tokens on requests and connections, and the namespace rules applied;
//! - [`guard`]: connection, stream and publish limits, counted and logged;
//! - [`metrics`]: Prometheus metrics (`/metrics`);
//! - [`presence`]: who is subscribed, and the join/leave pushes;
//! - [`store`]: the durable store (`data_dir`): a segmented log with checksums, replay, compaction;
//! - [`tls`]: the TLS front (HTTP/2 by ALPN, HTTP/1.1 alongside);
//! - [`clock`]: the wall clock every age is read from (tokio's paused clock moves it in tests);
//! - [`slice`]: periodic walks cut into slices of the sharded tables;
//! - [`server`]: binding, serving and graceful shutdown.

pub mod auth;
pub mod binary;
pub mod broker;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod consumers;
pub mod engine;
pub mod frame;
pub mod guard;
pub mod hooks;
pub mod housekeeping;
pub mod http;
pub mod idempotency;
pub mod ids;
pub mod metrics;
pub mod outbox;
pub mod presence;
pub mod process;
pub mod proxy;
pub mod publication;
pub mod publish;
pub mod registry;
pub mod reply;
pub mod routes;
pub mod server;
pub mod slice;
pub mod state;
pub mod store;
pub mod tls;
pub mod transport;
pub mod webhooks;
pub mod wire;
pub mod ws_frames;

pub use config::Config;
pub use server::{Server, ServerHandle};

pub use clock::now_ms;
