//! Binding, serving and graceful shutdown (DESIGN.md 2.7).
//!
//! Shutdown: the listener stops accepting, every connection is told to reconnect (WebSocket
//! disconnect push and close 4001, SSE `retry:` then end of stream, long polls answered at
//! once), and the server returns when the last connection is gone or the deadline passes.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::TcpListener;

use crate::{
    auth::Auth,
    broker::Broker,
    config::Config,
    guard::Guard,
    http::{self, AppState},
    outbox::QueueLimits,
    registry::Registry,
};

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    state: AppState,
}

/// A handle to start the shutdown of a running server.
#[derive(Clone)]
pub struct ServerHandle {
    registry: Arc<Registry>,
}

// === impl Server ===

impl Server {
    /// Binds `config.listen`. The API key must be settled (`Some`, or the insecure mode on).
    pub async fn bind(config: Config) -> std::io::Result<Self> {
        let listener = listen(config.listen)?;
        let config = Arc::new(config);
        let registry =
            Registry::new(QueueLimits { frames: config.max_queued_messages, bytes: config.max_queued_bytes });
        let broker = Arc::new(Broker::new(config.clone()));
        let auth = Auth::from_config(&config)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let guard = Arc::new(Guard::new(&config));
        Ok(Self {
            listener,
            state: AppState {
                config,
                broker,
                registry,
                started: std::time::Instant::now(),
                idempotency: Default::default(),
                auth: Arc::new(auth),
                guard,
            },
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that can start the shutdown.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle { registry: self.state.registry.clone() }
    }

    /// Serves until the shutdown is started through a [`ServerHandle`], then drains within
    /// `shutdown_deadline_secs`.
    pub async fn run(self) -> std::io::Result<()> {
        let Self { listener, state } = self;
        let registry = state.registry.clone();
        let deadline = Duration::from_secs(state.config.shutdown_deadline_secs);
        spawn_housekeeping(&state);
        let router = http::router(state.clone());
        // Every connection task holds a clone; the count tells when the last one is gone.
        let open = Arc::new(());
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, most likely: let connections close, then go on.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = registry.shutdown_started() => break,
            };
            // Connections being served: HTTP connections (long polls among them), plus
            // WebSockets and SSE streams, which leave the HTTP loop for tasks of their own.
            let counts = registry.counts();
            let serving = Arc::strong_count(&open) - 1 + counts.ws + counts.sse;
            if let Err(refused) = state.guard.admit_connection(peer.ip(), serving) {
                // A fresh socket's send buffer is empty: the answer fits without waiting.
                let _ = stream.try_write(&http::conn::error_bytes(&refused));
                continue;
            }
            let _ = stream.set_nodelay(true);
            let (state, router, open) = (state.clone(), router.clone(), open.clone());
            tokio::spawn(async move {
                http::conn::serve(stream, peer, state, router).await;
                drop(open);
            });
        }
        drop(listener);
        let drained = async {
            // WebSockets run on tasks of their own and are counted by the registry.
            while Arc::strong_count(&open) > 1 || registry.total() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(deadline, drained).await.is_err() {
            tracing::warn!(open = registry.total(), "shutdown deadline passed; exiting with connections open");
        }
        Ok(())
    }
}

/// Connections the kernel queues before they are accepted. Reconnect storms (every client of a
/// restarted node at once) arrive faster than one accept loop takes them; a short queue drops
/// SYNs and costs the clients a one-second retransmit.
const ACCEPT_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

fn spawn_housekeeping(state: &AppState) {
    let registry = state.registry.clone();
    let broker = state.broker.clone();
    let guard = state.guard.clone();
    let heartbeat = state.config.heartbeat();
    let ws_idle_ms = state.config.ws_idle_timeout_secs * 1000;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = registry.shutdown_started() => return,
            }
            registry.heartbeat(ws_idle_ms).await;
            guard.prune();
            let removed = broker.sweep();
            if removed > 0 {
                tracing::debug!(removed, "forgot idle channels");
            }
        }
    });
}

// === impl ServerHandle ===

impl ServerHandle {
    /// Starts the graceful shutdown.
    pub fn shutdown(&self) {
        self.registry.shutdown();
    }
}
