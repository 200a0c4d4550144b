//! Binding, serving and graceful shutdown (docs/protocol.md §9).
//!
//! Shutdown: the listener stops accepting, every connection is told to reconnect (WebSocket
//! disconnect push and close 4001, SSE `retry:` then end of stream, long polls answered at
//! once), and the server returns when the last connection is gone or the deadline passes.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::net::TcpListener;

use crate::{
    auth::Auth,
    broker::Broker,
    config::Config,
    guard::Guard,
    http::{self, conn::Via},
    metrics::Metrics,
    outbox::QueueLimits,
    registry::Registry,
    state::AppState,
    store::Store,
    tls::TlsFront,
};

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    tls: Option<TlsListeners>,
    state: AppState,
    /// The consumers, started by [`Server::run`] and stopped when it shuts down.
    consumers: Option<Arc<crate::consumers::Consumers>>,
}

/// The TLS port and the internal listener behind it.
struct TlsListeners {
    listener: TcpListener,
    inner: TcpListener,
    config: tokio_rustls::rustls::ServerConfig,
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
        let invalid =
            |e: crate::config::ConfigError| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string());
        let listener = listen(config.listen)?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(TlsListeners {
                config: crate::tls::server_config(cert, key).map_err(invalid)?,
                listener: listen(config.tls_listen)?,
                inner: listen(SocketAddr::from(([127, 0, 0, 1], 0)))?,
            }),
            _ => None,
        };
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::new());
        let registry = Registry::new(
            QueueLimits { frames: config.max_queued_messages, bytes: config.max_queued_bytes },
            metrics.clone(),
        );
        let idempotency = Arc::new(crate::idempotency::IdempotencyCache::default());
        let (broker, store) = match config.store_options() {
            Some(options) => {
                let (store, records) =
                    Store::open(options, metrics.clone()).map_err(|e| std::io::Error::other(e.to_string()))?;
                idempotency.restore(&records, config.idempotency_window_secs * 1000, crate::now_ms());
                (Arc::new(Broker::with_store(config.clone(), metrics.clone(), store.clone(), records)), Some(store))
            }
            None => (Arc::new(Broker::new(config.clone(), metrics.clone())), None),
        };
        let cluster = match config.redis_url() {
            Some(_) => Some(
                crate::cluster::Cluster::start(config.clone(), broker.clone())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?,
            ),
            None => None,
        };
        let engine: Arc<dyn crate::engine::Engine> = match (&cluster, store) {
            (Some(cluster), _) => Arc::new(crate::engine::Redis::new(cluster.clone(), broker.clone())),
            (None, Some(store)) => Arc::new(crate::engine::Durable::new(broker.clone(), store)),
            (None, None) => Arc::new(crate::engine::Memory::new(broker.clone())),
        };
        let consumers = crate::consumers::Consumers::new(&config.consumers, &metrics, cluster.as_ref());
        let webhooks = crate::webhooks::start(&config, &metrics, cluster);
        let auth = Auth::from_config(&config).map_err(invalid)?;
        let guard = Arc::new(Guard::new(&config, metrics.clone()));
        let proxies = Arc::new(config.proxies().map_err(invalid)?);
        let config_hooks = config.hooks.clone();
        Ok(Self {
            listener,
            tls,
            state: AppState {
                config,
                broker,
                registry,
                started: std::time::Instant::now(),
                idempotency,
                auth: Arc::new(auth),
                guard,
                engine,
                proxies,
                metrics,
                hooks: crate::hooks::Hooks::new(&config_hooks),
                webhooks,
                consumers: consumers.as_ref().map(|c| c.statuses()),
            },
            consumers,
        })
    }

    /// What its handlers share (tests build connections on it).
    #[cfg(test)]
    pub(crate) fn state(&self) -> &AppState {
        &self.state
    }

    /// A bound server on a free loopback port with the default configuration (for tests).
    #[cfg(test)]
    pub(crate) async fn for_tests() -> Self {
        let config = crate::config::Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_key: Some("test".into()),
            ..crate::config::Config::default()
        };
        Self::bind(config).await.expect("binds a loopback port")
    }

    /// [`Server::for_tests`] and one accepted loopback connection: the server side with its
    /// peer address, and the client side (keep it open).
    #[cfg(test)]
    pub(crate) async fn with_connection_for_tests() -> (Self, tokio::net::TcpStream, SocketAddr, tokio::net::TcpStream)
    {
        let server = Self::for_tests().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let client =
            tokio::net::TcpStream::connect(listener.local_addr().expect("an address")).await.expect("connects");
        let (stream, peer) = listener.accept().await.expect("accepts");
        (server, stream, peer, client)
    }

    /// The plain listener and the shared state, for serving them through another HTTP front
    /// (the `hyper_front` example, which measures Herald's own engine against hyper's). The
    /// TLS listeners, if any, are dropped.
    pub fn into_parts(self) -> (TcpListener, AppState) {
        (self.listener, self.state)
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The HTTPS address actually bound, when TLS is configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|tls| tls.listener.local_addr().ok())
    }

    /// A handle that can start the shutdown.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle { registry: self.state.registry.clone() }
    }

    /// Serves until the shutdown is started through a [`ServerHandle`], then drains within
    /// `shutdown_deadline_secs`.
    pub async fn run(self) -> std::io::Result<()> {
        let Self { listener, tls, state, consumers } = self;
        let registry = state.registry.clone();
        let deadline = Duration::from_secs(state.config.shutdown_deadline_secs);
        crate::housekeeping::spawn(&state);
        if let Some(consumers) = &consumers {
            consumers.start(&state);
        }
        let router = http::router(state.clone());
        // Client connections being served (the plain port and the TLS front), and the TLS
        // front's requests to the internal listener.
        let (open, bridged) = (OpenCount::default(), OpenCount::default());
        let mut loops =
            vec![tokio::spawn(accept_loop(listener, Entry::Plain, state.clone(), router.clone(), open.clone()))];
        if let Some(tls) = tls {
            let secret: Arc<str> = Arc::from(crate::config::generate_api_key());
            let inner = tls.inner.local_addr()?;
            let front = Arc::new(TlsFront::new(tls.config, inner, secret.clone()));
            let bridge = Entry::Bridge(secret);
            loops.push(tokio::spawn(accept_loop(tls.inner, bridge, state.clone(), router.clone(), bridged.clone())));
            loops.push(tokio::spawn(accept_loop(tls.listener, Entry::Tls(front), state.clone(), router, open.clone())));
        }
        for accepting in loops {
            let _ = accepting.await;
        }
        if let Some(consumers) = &consumers {
            consumers.stop().await;
        }
        let drained = async {
            // WebSockets and SSE streams run on tasks of their own and are counted by the registry.
            while open.get() > 0 || bridged.get() > 0 || registry.total() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(deadline, drained).await.is_err() {
            tracing::warn!(open = registry.total(), "shutdown deadline passed; exiting with connections open");
        }
        if let Some(webhooks) = &state.webhooks {
            webhooks.stop(WEBHOOKS_STOP).await;
        }
        if let Some(store) = state.broker.store() {
            store.close();
        }
        Ok(())
    }
}

/// How long the webhook endpoints get at shutdown to deliver what is left.
const WEBHOOKS_STOP: Duration = Duration::from_secs(3);

/// What a listener serves.
enum Entry {
    /// The plain HTTP port.
    Plain,
    /// The internal listener behind the TLS front (loopback; no admission: the front admits).
    Bridge(Arc<str>),
    /// The TLS port.
    Tls(Arc<TlsFront>),
}

/// A count of open connections; each connection task holds an [`OpenGuard`].
#[derive(Clone, Default)]
struct OpenCount(Arc<AtomicUsize>);

/// One open connection of an [`OpenCount`].
struct OpenGuard(Arc<AtomicUsize>);

impl OpenCount {
    fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn enter(&self) -> OpenGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        OpenGuard(self.0.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts connections on `listener` until the shutdown starts.
async fn accept_loop(listener: TcpListener, entry: Entry, state: AppState, router: axum::Router, open: OpenCount) {
    let registry = state.registry.clone();
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
            () = registry.shutdown_started() => return,
        };
        if !matches!(entry, Entry::Bridge(_)) {
            // Connections being served: HTTP connections (long polls among them), plus
            // WebSockets and SSE streams, which leave the HTTP loop for tasks of their own.
            let counts = registry.counts();
            let serving = open.get() + counts.ws + counts.sse;
            // A trusted proxy carries many clients: their own budgets apply once they are
            // known (the PROXY header's client, or per request by X-Forwarded-For).
            let admitted = match state.proxies.trusts(peer.ip()) {
                true => state.guard.admit_capacity(peer.ip(), serving),
                false => state.guard.admit_connection(peer.ip(), serving),
            };
            if let Err(refused) = admitted {
                // A fresh socket's send buffer is empty: the answer fits without waiting.
                let _ = stream.try_write(&http::response::error_bytes(&refused));
                continue;
            }
        }
        let _ = stream.set_nodelay(true);
        let guard = open.enter();
        let (state, router) = (state.clone(), router.clone());
        match &entry {
            Entry::Plain => tokio::spawn(async move {
                http::conn::serve(stream, peer, Via::Direct, state, router).await;
                drop(guard);
            }),
            Entry::Bridge(secret) => {
                let via = Via::TlsBridge(secret.clone());
                tokio::spawn(async move {
                    http::conn::serve(stream, peer, via, state, router).await;
                    drop(guard);
                })
            }
            Entry::Tls(front) => {
                let (front, registry) = (front.clone(), registry.clone());
                tokio::spawn(async move {
                    front.serve(stream, peer, registry).await;
                    drop(guard);
                })
            }
        };
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

// === impl ServerHandle ===

impl ServerHandle {
    /// Starts the graceful shutdown.
    pub fn shutdown(&self) {
        self.registry.shutdown();
    }
}
