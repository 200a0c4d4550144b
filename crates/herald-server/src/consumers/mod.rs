//! Consumers (`[[consumers]]`): Herald reads messages where the application already writes
//! them — a PostgreSQL outbox table ([`postgres`]), a RabbitMQ queue ([`amqp`]), a NATS
//! JetStream stream ([`nats`]) — and publishes each to its channel.
//!
//! Guarantees, for every source:
//! - **acknowledged only once durable**: a message is acknowledged to its source (a row
//!   deleted, an AMQP ack, a JetStream ack) only after its publish is durable: placed by Redis,
//!   or written by the durable store (fsync as `fsync` says), or, on the memory engine, in
//!   history. A message read but not acknowledged is read again (a new session, a restart);
//! - **once into the channel**: every publish carries an idempotency key — the message's own
//!   (`idempotency_key`, a key header, AMQP's `message_id`) or one made from its place in the
//!   source (`<consumer>:<row id>`, `<consumer>:<stream sequence>`) — so a message read again
//!   within `idempotency_window_secs` is not published twice: not after a restart (the durable
//!   store and Redis keep the keys), not on another node (Redis). A RabbitMQ message with no
//!   key of its own is published at least once;
//! - **in order**: a consumer publishes in the source's order, one batch (`prefetch`) at a
//!   time; with the Redis engine, one node at a time consumes each consumer (a lease in Redis,
//!   renewed while it reads; PostgreSQL also holds an advisory lock), so order holds over nodes;
//! - **nothing dropped silently, nothing blocking**: a message that cannot be published (not
//!   JSON, no or a bad channel, too large) goes to the source's dead-letter path with the reason
//!   and is logged; the messages after it go on. A failure that may pass (the source or the
//!   engine unreachable) ends the session without acknowledging, and the consumer reconnects
//!   with backoff (0.5 s doubling to 30 s);
//! - **observable**: `/readyz` lists each consumer's state, lag and counts, and `/metrics` has
//!   `herald_consumer_*` by consumer.

pub mod amqp;
pub mod mapping;
pub mod nats;
pub mod postgres;
pub mod status;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use herald_core::ErrorCode;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::{
    cluster::Cluster,
    config::ConsumerConfig,
    publish::{Accepted, publish_keyed},
    reply::ApiError,
    state::AppState,
};
use mapping::{Mapped, Unmappable};
use status::{Phase, Status, Statuses};

/// How long a consumer's lease lives in Redis without renewal.
const LEASE_MS: u64 = 15_000;
/// How often the holder renews its lease (and a standby node asks for it).
const LEASE_RENEW: Duration = Duration::from_secs(3);
/// Longest a source waits for messages before the session looks at its lease, its lag and
/// whether to stop.
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// How often the lag is read.
const LAG_EVERY: Duration = Duration::from_secs(2);
/// Backoff after a failed session: from the first to the last, doubling.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

/// Why a source failed; the session ends and the consumer reconnects.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(String);

/// A message a source read: its publish (or why there is none) and what settles it.
pub struct Incoming<T> {
    /// The message as a publish.
    pub mapped: Result<Mapped, Unmappable>,
    /// What acknowledges it (or dead-letters it) to the source.
    pub ticket: T,
}

/// What became of a message: acknowledge it, or move it to the dead-letter path.
pub enum Outcome {
    /// Published and durable: acknowledge it.
    Published,
    /// Cannot be published, for this reason: dead-letter it.
    Dead(Unmappable),
}

/// One connection to a source, as a consumer drives it.
///
/// Contract: [`Source::next`] returns messages in the source's order; a message it returned is
/// read again (in a later session at the latest) until [`Source::settle`] acknowledged it or
/// moved it to the dead-letter path. `settle` takes the settled messages in the order `next`
/// gave them, and settles them in one step where the source can (PostgreSQL: one
/// transaction).
pub trait Source: Send {
    /// What settles one message.
    type Ticket: Send;

    /// Up to `max` messages, waiting at most `wait` for the first (none when it passed).
    fn next(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Incoming<Self::Ticket>>, SourceError>> + Send;

    /// Acknowledges the published messages and dead-letters the others.
    fn settle(&mut self, settled: Vec<(Self::Ticket, Outcome)>)
    -> impl Future<Output = Result<(), SourceError>> + Send;

    /// Messages waiting in the source, when it tells.
    fn lag(&mut self) -> impl Future<Output = Option<u64>> + Send;
}

/// Every consumer of the node.
pub struct Consumers {
    consumers: Vec<Consumer>,
    statuses: Arc<Statuses>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// One consumer: its status and the Redis link its lease lives in.
#[derive(Clone)]
struct Consumer {
    status: Arc<Status>,
    cluster: Option<Arc<Cluster>>,
}

// === impl SourceError ===

impl SourceError {
    /// A failure, said by `what` and `error`.
    pub fn new(what: &str, error: impl std::fmt::Display) -> Self {
        Self(format!("{what}: {error}"))
    }
}

// === impl Consumers ===

impl Consumers {
    /// The configured consumers (none run yet: [`Consumers::start`]); `None` when there are
    /// none.
    pub fn new(
        configs: &[ConsumerConfig],
        metrics: &crate::metrics::Metrics,
        cluster: Option<&Arc<Cluster>>,
    ) -> Option<Arc<Self>> {
        if configs.is_empty() {
            return None;
        }
        let statuses: Vec<_> = configs
            .iter()
            .map(|config| Arc::new(Status::new(config.clone(), metrics.consumer(&config.name))))
            .collect();
        let consumers =
            statuses.iter().map(|status| Consumer { status: status.clone(), cluster: cluster.cloned() }).collect();
        Some(Arc::new(Self {
            consumers,
            statuses: Arc::new(Statuses(statuses)),
            stop: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
        }))
    }

    /// Their statuses, for `/readyz`.
    pub fn statuses(&self) -> Arc<Statuses> {
        self.statuses.clone()
    }

    /// Starts every consumer on `state`.
    pub fn start(&self, state: &AppState) {
        let mut tasks = self.tasks.lock();
        for consumer in &self.consumers {
            let (consumer, state, stop) = (consumer.clone(), state.clone(), self.stop.subscribe());
            tasks.push(tokio::spawn(async move { consumer.run(&state, stop).await }));
        }
    }

    /// Stops every consumer after the batch it is on (settled, or left to be read again), and
    /// lets its lease go.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for task in tasks {
            let _ = task.await;
        }
    }
}

// === impl Consumer ===

impl Consumer {
    /// Consumes until `stop`: takes the lease (with Redis), runs sessions, backs off after a
    /// failed one.
    async fn run(&self, state: &AppState, mut stop: watch::Receiver<bool>) {
        let mut backoff = BACKOFF.0;
        while !*stop.borrow() {
            match self.hold_lease().await {
                Ok(true) => {}
                Ok(false) => {
                    self.status.set_phase(Phase::Standby);
                    let _ = tokio::time::timeout(LEASE_RENEW, stop.changed()).await;
                    continue;
                }
                Err(e) => {
                    self.status.failed(&format!("taking the lease in Redis: {}", e.message));
                    let _ = tokio::time::timeout(backoff, stop.changed()).await;
                    continue;
                }
            }
            let started = Instant::now();
            let outcome = match self.status.config.source.as_str() {
                "postgres" => match postgres::Outbox::connect(&self.status.config).await {
                    Ok(source) => self.session(state, source, &stop).await,
                    Err(e) => Err(e),
                },
                "amqp" => match amqp::Queue::connect(&self.status.config).await {
                    Ok(source) => self.session(state, source, &stop).await,
                    Err(e) => Err(e),
                },
                _ => match nats::JetStream::connect(&self.status.config).await {
                    Ok(source) => self.session(state, source, &stop).await,
                    Err(e) => Err(e),
                },
            };
            match outcome {
                Ok(()) => break,
                Err(e) => {
                    self.status.failed(&e.to_string());
                    // A session that ran a while starts the backoff over.
                    if started.elapsed() > BACKOFF.1 {
                        backoff = BACKOFF.0;
                    }
                    self.status.set_phase(Phase::Connecting);
                    let _ = tokio::time::timeout(backoff, stop.changed()).await;
                    backoff = (backoff * 2).min(BACKOFF.1);
                }
            }
        }
        if let Some(cluster) = &self.cluster {
            let _ = cluster.release_lease(&self.lease_name()).await;
        }
        self.status.set_phase(Phase::Stopped);
    }

    /// Reads, publishes and settles batches until `stop` (`Ok`) or a failure.
    async fn session(
        &self,
        state: &AppState,
        mut source: impl Source,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), SourceError> {
        tracing::info!(consumer = %self.status.config.name, source = %self.status.config.source, "consumer connected");
        self.status.set_phase(Phase::Consuming);
        let (mut renewed, mut lag_read) = (Instant::now(), None::<Instant>);
        let max = usize::from(self.status.config.prefetch);
        loop {
            if *stop.borrow() || state.registry.is_shutting_down() {
                return Ok(());
            }
            if renewed.elapsed() >= LEASE_RENEW {
                if !self.hold_lease().await.map_err(|e| SourceError::new("renewing the lease", e.message))? {
                    return Err(SourceError("another node took the lease".into()));
                }
                renewed = Instant::now();
            }
            if lag_read.is_none_or(|at| at.elapsed() >= LAG_EVERY) {
                self.status.set_lag(source.lag().await);
                lag_read = Some(Instant::now());
            }
            let batch = source.next(max, IDLE_WAIT).await?;
            if batch.is_empty() {
                continue;
            }
            let (settled, failure) = publish_batch(state, batch).await;
            for (_, outcome) in &settled {
                match outcome {
                    Outcome::Published => self.status.counters.published.inc(),
                    Outcome::Dead(reason) => {
                        tracing::warn!(consumer = %self.status.config.name, %reason, "a message went to the dead-letter path");
                        self.status.counters.dead_letters.inc()
                    }
                };
            }
            if !settled.is_empty() {
                source.settle(settled).await?;
            }
            if let Some(failure) = failure {
                return Err(failure);
            }
        }
    }

    /// Takes or renews the lease with Redis; always held without it.
    async fn hold_lease(&self) -> Result<bool, herald_core::ProtocolError> {
        match &self.cluster {
            Some(cluster) => cluster.hold_lease(&self.lease_name(), LEASE_MS).await,
            None => Ok(true),
        }
    }

    fn lease_name(&self) -> String {
        format!("consumer:{}", self.status.config.name)
    }
}

/// Publishes `batch` in order and waits until the publishes are durable: each message's
/// outcome, and the failure that stopped the batch early, if any. The messages after a failure
/// (and, when durability could not be awaited, the whole batch) get no outcome: they are read
/// again.
async fn publish_batch<T>(state: &AppState, batch: Vec<Incoming<T>>) -> (Vec<(T, Outcome)>, Option<SourceError>) {
    let mut settled = Vec::with_capacity(batch.len());
    let mut last_seq = 0;
    let mut failure = None;
    for Incoming { mapped, ticket } in batch {
        let mapped = match mapped {
            Ok(mapped) => mapped,
            Err(reason) => {
                settled.push((ticket, Outcome::Dead(reason)));
                continue;
            }
        };
        let placed =
            match publish_keyed(state, &mapped.channel, &mapped.data, mapped.event.as_deref(), mapped.key.as_deref()) {
                Ok(Accepted::Local { seq, .. }) => {
                    last_seq = last_seq.max(seq);
                    Ok(())
                }
                // Redis: placed in order, one at a time.
                Ok(Accepted::Remote { placed, .. }) => placed.await.map(drop).map_err(ApiError),
                Err(e) => Err(e),
            };
        match placed {
            Ok(()) => settled.push((ticket, Outcome::Published)),
            Err(ApiError(e)) if is_permanent(e.code) => settled.push((ticket, Outcome::Dead(e.message))),
            Err(ApiError(e)) => {
                failure = Some(SourceError::new("publishing", e.message));
                break;
            }
        }
    }
    if let Err(e) = state.engine.wait_durable(last_seq).get().await {
        return (Vec::new(), Some(SourceError::new("waiting for the store", e.message)));
    }
    (settled, failure)
}

/// Whether a publish refused with `code` would be refused again (the message goes to the
/// dead-letter path), rather than fail for now (the session ends and it is read again).
fn is_permanent(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::BadRequest
            | ErrorCode::InvalidJson
            | ErrorCode::InvalidChannel
            | ErrorCode::InvalidEvent
            | ErrorCode::MessageTooLarge
    )
}

/// The next messages of a source that pushes them as a stream (RabbitMQ, NATS): up to `max`,
/// waiting at most `wait` for the first, then taking those ready at once, each mapped by
/// `map`. `ended` says why the stream ended, if it did.
async fn next_pushed<S, T, E>(
    stream: &mut S,
    max: usize,
    wait: Duration,
    ended: &str,
    map: impl Fn(&T) -> Result<Mapped, Unmappable>,
) -> Result<Vec<Incoming<T>>, SourceError>
where
    S: futures_util::Stream<Item = Result<T, E>> + Unpin,
    E: std::fmt::Display,
{
    use futures_util::{FutureExt, StreamExt};
    let mut items = Vec::new();
    match tokio::time::timeout(wait, stream.next()).await {
        Err(_) => return Ok(Vec::new()),
        Ok(None) => return Err(SourceError(ended.to_owned())),
        Ok(Some(item)) => items.push(item),
    }
    while items.len() < max {
        match stream.next().now_or_never() {
            Some(Some(item)) => items.push(item),
            Some(None) | None => break,
        }
    }
    items
        .into_iter()
        .map(|item| {
            let ticket = item.map_err(|e| SourceError::new("receiving", e))?;
            Ok(Incoming { mapped: map(&ticket), ticket })
        })
        .collect()
}
