//! The Redis engine: several Herald nodes sharing channels through Redis (≥ 7, or Valkey; a
//! single instance or a Redis Cluster).
//!
//! Redis owns every channel's epoch, offsets, history and idempotency keys; a publish is one
//! Lua script that assigns the offset, appends to history and publishes to the nodes
//! atomically ([`scripts`]). Each node mirrors, in its broker, only the channels its own
//! clients subscribe to: it subscribes to their pub/sub channels and folds what arrives into
//! the mirror, which then recovers and fans out exactly as the memory engine does. So any
//! node answers any client, and a cursor from one node resumes on another.
//!
//! Guarantees:
//! - a node starts mirroring a channel by subscribing to its pub/sub channel *first*, then
//!   reading a snapshot: nothing published in between is missed (duplicates are dropped);
//! - a message that arrives out of line (a gap, another epoch) makes the node read a snapshot
//!   and catch up; after a lost pub/sub connection every mirrored channel catches up the same
//!   way. Subscribers then get the missed messages, or an explicit `reset` — never a gap;
//! - while Redis is unreachable, clients stay connected, `/readyz` says not ready, publishes
//!   and subscribes that need Redis fail with `503 engine_unavailable`, and the node
//!   reconnects with backoff;
//! - presence is shared: every node lists every node's members, and joins and leaves reach
//!   subscribers on every node ([`presence`]);
//! - on a Redis Cluster (`redis_cluster`), a channel's keys share one slot (hash tags) and its
//!   feed is a shard channel there (`SSUBSCRIBE` / `SPUBLISH`), so the cluster spreads both
//!   ([`link`]).

mod feed;
mod lease;
mod link;
mod mirrors;
pub mod occupancy;
mod presence;
mod scripts;
mod streams;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use herald_core::{ChannelName, ErrorCode, HistoryQuery, ProtocolError, StreamPosition};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use crate::{broker::Broker, config::Config, publication::Message};
use scripts::Keys;

/// How long a request waits for Redis before it fails with `engine_unavailable`.
const REDIS_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the Redis engine could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The engine URL does not parse.
    #[error("invalid Redis URL: {0}")]
    Url(redis::RedisError),
    /// `redis_tls_ca` cannot be read.
    #[error("cannot read redis_tls_ca {path}: {error}", path = .0.display(), error = .1)]
    Ca(std::path::PathBuf, std::io::Error),
}

/// A published message's place, as Redis assigned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assigned {
    /// The channel's epoch.
    pub epoch: Arc<str>,
    /// The message's offset.
    pub offset: u64,
}

/// The node's link to Redis.
pub struct Cluster {
    config: Arc<Config>,
    broker: Arc<Broker>,
    keys: Keys,
    commands: link::Commands,
    publish: redis::Script,
    snapshot: redis::Script,
    stream: redis::Script,
    finish: redis::Script,
    occupy_script: redis::Script,
    lease_script: redis::Script,
    feed: mpsc::UnboundedSender<feed::Request>,
    shared: Arc<Shared>,
    /// This node's id in presence pushes on the feed.
    node: Arc<str>,
    presence_scripts: presence::Scripts,
}

/// What the feed task and the request paths share.
struct Shared {
    /// Whether the pub/sub connection is up (and every mirror caught up after it came back).
    ready: AtomicBool,
    /// Mirrored channels (subscribed on pub/sub) and when a client last needed each.
    mirrored: mirrors::Mirrors,
}

// === impl Cluster ===

impl Cluster {
    /// Sets up the engine on `broker` (which then only mirrors) and starts the pub/sub task.
    /// Redis need not be up yet: the node reports not ready until it is.
    pub fn start(config: Arc<Config>, broker: Arc<Broker>) -> Result<Arc<Self>, ClusterError> {
        let url = config.redis_url().unwrap_or_default();
        let ca = match &config.redis_tls_ca {
            Some(path) => Some(std::fs::read(path).map_err(|e| ClusterError::Ca(path.clone(), e))?),
            None => None,
        };
        let target = link::Target::new(url, config.redis_cluster, ca).map_err(ClusterError::Url)?;
        let commands = target.commands(REDIS_TIMEOUT).map_err(ClusterError::Url)?;
        let publish_command = commands.publish_command();
        let shared = Arc::new(Shared { ready: AtomicBool::new(false), mirrored: mirrors::Mirrors::new() });
        let (feed, requests) = mpsc::unbounded_channel();
        let (presence_changes, changes) = mpsc::unbounded_channel();
        broker.report_presence_to(presence_changes);
        let cluster = Arc::new(Self {
            keys: Keys::new(&config.redis_prefix),
            config,
            broker,
            commands,
            publish: redis::Script::new(&scripts::with_publish_command(scripts::PUBLISH, publish_command)),
            snapshot: redis::Script::new(scripts::SNAPSHOT),
            stream: redis::Script::new(&scripts::with_publish_command(scripts::STREAM, publish_command)),
            finish: redis::Script::new(&scripts::with_publish_command(scripts::FINISH, publish_command)),
            occupy_script: occupancy::script(),
            lease_script: lease::script(),
            feed,
            shared,
            node: crate::broker::new_epoch(),
            presence_scripts: presence::Scripts::new(publish_command),
        });
        tokio::spawn(feed::run(Arc::downgrade(&cluster), target, requests));
        tokio::spawn(presence::run(Arc::downgrade(&cluster), changes));
        Ok(cluster)
    }

    /// Whether the node is in line with Redis: pub/sub connected and mirrors caught up.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// Channels the node mirrors.
    pub fn mirrored_count(&self) -> usize {
        self.shared.mirrored.len()
    }

    /// Publishes `data` to `channel` through Redis (with `key`, an idempotency key: a repeat
    /// within the idempotency window returns the first publish's place and publishes nothing).
    pub async fn publish(
        &self,
        channel: &ChannelName,
        data: &RawValue,
        event: Option<&str>,
        key: Option<&str>,
    ) -> Result<Assigned, ProtocolError> {
        let mut invocation = self.publish.prepare_invoke();
        invocation.key(self.keys.meta(channel)).key(self.keys.history(channel));
        if let Some(key) = key {
            invocation.key(self.keys.idempotency(channel, key));
        }
        self.place_args(&mut invocation, channel)
            .arg(event.unwrap_or(""))
            .arg(data.get())
            .arg(self.config.idempotency_window_secs.saturating_mul(1000).max(1));
        pass_seen(&mut invocation, self.broker.mirrored(channel).as_ref());
        let reply: Vec<String> = self.timed(self.commands.invoke(&invocation)).await?;
        let [epoch, offset, duplicate] = reply.as_slice() else {
            return Err(unexpected("publish"));
        };
        if duplicate != "1" {
            self.broker.metrics().published.inc();
        }
        Ok(Assigned { epoch: Arc::from(epoch.as_str()), offset: offset.parse().map_err(|_| unexpected("publish"))? })
    }

    /// `channel`'s position and the messages of `query` its history holds, read from Redis
    /// (history is shared: any node answers the same).
    pub async fn history(
        &self,
        channel: &ChannelName,
        query: &HistoryQuery,
    ) -> Result<(StreamPosition, Vec<Message>), ProtocolError> {
        let snapshot = self.read_snapshot(channel, None).await?.snapshot;
        let oldest_kept = self.history_cutoff(channel);
        let kept = snapshot.entries.into_iter().filter(|(_, time_ms, _)| *time_ms >= oldest_kept);
        let messages = query.pick(kept.map(|(offset, _, m)| (offset, m)));
        Ok((snapshot.position, messages))
    }

    /// Every node's presence entries for `channel`.
    pub async fn presence(&self, channel: &ChannelName) -> Result<Vec<serde_json::Value>, ProtocolError> {
        presence::list(self, channel).await
    }

    /// Makes sure the node mirrors every channel of `wanted` and is in line with Redis for a
    /// client at the given position (a client that saw a message this node has not yet
    /// received makes the node catch up first). Fast when the mirror already is.
    pub async fn prepare(&self, wanted: &[(ChannelName, Option<StreamPosition>)]) -> Result<(), ProtocolError> {
        let missing: Vec<(ChannelName, Option<StreamPosition>)> =
            wanted.iter().filter(|(channel, since)| !self.in_line(channel, since.as_ref())).cloned().collect();
        if missing.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.feed
            .send(feed::Request { channels: missing, reply })
            .map_err(|_| unavailable("the Redis engine has stopped"))?;
        match tokio::time::timeout(REDIS_TIMEOUT * 2, answer).await {
            Ok(Ok(result)) => result,
            _ => Err(unavailable("Redis did not answer in time")),
        }
    }

    /// Whether the node mirrors `channel` and is at or past `since` in its epoch; touches the
    /// channel so that it stays mirrored.
    pub fn in_line(&self, channel: &ChannelName, since: Option<&StreamPosition>) -> bool {
        if !self.shared.mirrored.touch(channel) {
            return false;
        }
        let Some(position) = self.broker.mirrored(channel) else { return false };
        // An unusable position is a reset whatever the mirror holds: nothing to fetch first.
        since.is_none_or(|since| {
            since.is_unusable() || (since.epoch == position.epoch && since.offset <= position.offset)
        })
    }

    /// Reads `channel`'s snapshot from Redis: position, history and open streams. `seen`: the
    /// position this node last saw of it (its mirror's), against which Redis is checked for
    /// lost writes (see [`scripts::SNAPSHOT`]).
    async fn read_snapshot(
        &self,
        channel: &ChannelName,
        seen: Option<&StreamPosition>,
    ) -> Result<scripts::Read, ProtocolError> {
        let limits = self.config.history_limits(channel);
        let mut invocation = self.snapshot.prepare_invoke();
        invocation
            .key(self.keys.meta(channel))
            .key(self.keys.history(channel))
            .key(self.keys.stream_index(channel))
            .arg(crate::broker::new_epoch().as_ref())
            .arg(limits.size)
            .arg(self.channel_ttl_ms())
            .arg(self.keys.stream_prefix(channel))
            .arg(crate::now_ms())
            .arg(self.stream_idle_ms());
        pass_seen(&mut invocation, seen);
        let reply: Vec<String> = self.read(&invocation).await?;
        scripts::decode_snapshot(channel, &reply).ok_or_else(|| unexpected("snapshot"))
    }

    /// Runs a script that only reads (or whose repeat changes nothing), once more when the
    /// connection had dropped: the manager reconnects on the first failure.
    async fn read<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, ProtocolError> {
        match tokio::time::timeout(REDIS_TIMEOUT, self.commands.invoke(invocation)).await {
            Ok(Err(e)) if e.is_connection_dropped() || e.is_io_error() => {
                self.timed(self.commands.invoke(invocation)).await
            }
            first => self.settle(first),
        }
    }

    /// Whether commands reach Redis: PINGs (a few times, letting the connection manager
    /// reconnect after a restart) before the node reports ready.
    async fn commands_reach_redis(&self) -> bool {
        for _ in 0..5 {
            if matches!(tokio::time::timeout(REDIS_TIMEOUT, self.commands.ping()).await, Ok(Ok(()))) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// How long a stream stays open without an append.
    fn stream_idle_ms(&self) -> u64 {
        self.config.stream_idle_timeout_secs.saturating_mul(1000).max(1)
    }

    fn channel_ttl_ms(&self) -> u64 {
        self.config.redis_channel_ttl_secs.saturating_mul(1000)
    }

    /// Gives a script that places a message (`PUBLISH`, `FINISH`) its first seven arguments:
    /// a new epoch, the time, `channel`'s history size, its TTL, its feed, the oldest publish
    /// time its history keeps and its history's TTL (see [`scripts::PUBLISH`]).
    fn place_args<'a, 'i>(
        &self,
        invocation: &'a mut redis::ScriptInvocation<'i>,
        channel: &ChannelName,
    ) -> &'a mut redis::ScriptInvocation<'i> {
        invocation
            .arg(crate::broker::new_epoch().as_ref())
            .arg(crate::now_ms())
            .arg(self.config.history_limits(channel).size)
            .arg(self.channel_ttl_ms())
            .arg(self.keys.feed(channel))
            .arg(self.history_cutoff(channel))
            .arg(self.history_ttl_ms(channel))
    }

    /// How long `channel`'s history is kept after its newest entry: its age limit, at most the
    /// channel's TTL.
    fn history_ttl_ms(&self, channel: &ChannelName) -> u64 {
        match self.config.history_limits(channel).ttl_ms {
            0 => self.channel_ttl_ms(),
            ttl => ttl.min(self.channel_ttl_ms()),
        }
    }

    /// The oldest publish time still within `channel`'s history age limit.
    fn history_cutoff(&self, channel: &ChannelName) -> u64 {
        match self.config.history_limits(channel).ttl_ms {
            0 => 0,
            ttl => crate::now_ms().saturating_sub(ttl),
        }
    }
}

/// Gives a script the position a node saw of the channel as its last two arguments, against
/// which Redis is checked for lost writes (see [`scripts::SNAPSHOT`]). A mirror not yet in line
/// (the empty epoch) has seen nothing.
fn pass_seen(invocation: &mut redis::ScriptInvocation<'_>, seen: Option<&StreamPosition>) {
    if let Some(seen) = seen.filter(|seen| !seen.epoch.is_empty()) {
        invocation.arg(seen.epoch.as_ref()).arg(seen.offset);
    }
}

// === impl Cluster: Redis calls ===

impl Cluster {
    /// Runs a Redis call with the engine's timeout, mapping failures to `engine_unavailable`.
    async fn timed<T>(&self, call: impl Future<Output = redis::RedisResult<T>>) -> Result<T, ProtocolError> {
        self.settle(tokio::time::timeout(REDIS_TIMEOUT, call).await)
    }

    /// The outcome of a Redis call run with a timeout, failures as `engine_unavailable`
    /// (counted as engine errors).
    fn settle<T>(
        &self,
        outcome: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, ProtocolError> {
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                self.broker.metrics().engine_errors.inc();
                tracing::debug!(error = %e, "redis call failed");
                Err(unavailable(&format!("Redis: {e}")))
            }
            Err(_) => {
                self.broker.metrics().engine_errors.inc();
                Err(unavailable("Redis did not answer in time"))
            }
        }
    }
}

fn unavailable(message: &str) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::EngineUnavailable,
        format!("the shared engine is unavailable: {message}; retry shortly"),
    )
}

fn unexpected(what: &str) -> ProtocolError {
    ProtocolError::new(ErrorCode::Internal, format!("unexpected reply from Redis to {what}"))
}
