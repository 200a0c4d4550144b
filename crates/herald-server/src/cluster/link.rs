//! The node's two connections to Redis, for a single Redis (or Valkey) and for a Redis
//! Cluster alike: [`Commands`] runs the scripts, and [`Link`] carries the channels' feeds —
//! classic pub/sub on a single Redis, sharded pub/sub (`SSUBSCRIBE`, `SPUBLISH`) on a Redis
//! Cluster, where a feed lives on the shard that owns its channel's keys.

use std::{collections::HashSet, time::Duration};

use futures_util::StreamExt;
use redis::{
    ProtocolVersion, PushInfo, PushKind, RedisResult, TlsCertificates, Value,
    aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream},
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
};
use tokio::sync::{OnceCell, mpsc};

/// Where Redis is.
#[derive(Clone)]
pub(super) enum Target {
    /// One Redis (or Valkey), perhaps behind a failover proxy.
    Single(redis::Client),
    /// A Redis Cluster, reached through any of its nodes (and the CA to trust, for TLS).
    Cluster { nodes: Vec<String>, ca: Option<Vec<u8>> },
}

/// The connection that runs scripts: multiplexed, reconnecting on its own.
#[expect(clippy::large_enum_variant, reason = "one per node")]
pub(super) enum Commands {
    /// On a single Redis.
    Single(ConnectionManager),
    /// On a Redis Cluster (connected on first use; every script's keys share one slot).
    Cluster { client: ClusterClient, connection: OnceCell<ClusterConnection> },
}

/// What the feed link delivered.
pub(super) enum Event {
    /// A payload published to the feed `channel`.
    Message { feed: String, payload: Vec<u8> },
    /// The client library subscribed `feed` again on its own (a Redis Cluster shard moved or
    /// reconnected): messages may have been missed.
    Resubscribed { feed: String },
    /// The link is gone.
    Lost(String),
}

/// The feed connection.
pub(super) enum Link {
    /// Pub/sub on a single Redis.
    Single { sink: PubSubSink, stream: PubSubStream },
    /// Sharded pub/sub on a Redis Cluster (RESP3 pushes).
    Cluster {
        connection: ClusterConnection,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
        /// Feeds whose subscription this node asked for and whose confirmation has not come
        /// back yet: any other confirmation is the library subscribing again on its own.
        confirming: HashSet<String>,
    },
}

// === impl Target ===

impl Target {
    /// The target of `url`: one Redis, or — with `cluster` — any node of a Redis Cluster
    /// (several may be given, separated by commas). `ca` (PEM) replaces the system's roots for
    /// `rediss://`.
    pub(super) fn new(url: &str, cluster: bool, ca: Option<Vec<u8>>) -> RedisResult<Self> {
        if !cluster {
            return match ca {
                Some(ca) => redis::Client::build_with_tls(url, trusting(ca)),
                None => redis::Client::open(url),
            }
            .map(Self::Single);
        }
        let nodes: Vec<String> = url.split(',').map(|u| u.trim().to_string()).collect();
        // Parsed now, so that a bad address stops the start.
        ClusterClientBuilder::new(nodes.clone()).build()?;
        Ok(Self::Cluster { nodes, ca })
    }

    fn cluster_builder(nodes: &[String], ca: Option<&Vec<u8>>) -> ClusterClientBuilder {
        let builder = ClusterClientBuilder::new(nodes.to_vec());
        match ca {
            Some(ca) => builder.certs(trusting(ca.clone())),
            None => builder,
        }
    }

    /// The commands connection (it connects on first use).
    pub(super) fn commands(&self, timeout: Duration) -> RedisResult<Commands> {
        match self {
            Self::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(2));
                ConnectionManager::new_lazy_with_config(client.clone(), config).map(Commands::Single)
            }
            Self::Cluster { nodes, ca } => {
                let client = Self::cluster_builder(nodes, ca.as_ref())
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(2)
                    .build()?;
                Ok(Commands::Cluster { client, connection: OnceCell::new() })
            }
        }
    }

    /// Opens the feed link.
    pub(super) async fn link(&self) -> RedisResult<Link> {
        match self {
            Self::Single(client) => {
                let (sink, stream) = client.get_async_pubsub().await?.split();
                Ok(Link::Single { sink, stream })
            }
            Self::Cluster { nodes, ca } => {
                let (tx, pushes) = mpsc::unbounded_channel();
                let client = Self::cluster_builder(nodes, ca.as_ref())
                    .use_protocol(ProtocolVersion::RESP3)
                    .push_sender(tx)
                    .build()?;
                let connection = client.get_async_connection().await?;
                Ok(Link::Cluster { connection, pushes, confirming: HashSet::new() })
            }
        }
    }
}

// === impl Commands ===

impl Commands {
    /// Runs `invocation`.
    pub(super) async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        match self {
            Self::Single(manager) => invocation.invoke_async(&mut manager.clone()).await,
            Self::Cluster { client, connection } => {
                let connection = connection.get_or_try_init(|| client.get_async_connection()).await?;
                invocation.invoke_async(&mut connection.clone()).await
            }
        }
    }

    /// PING.
    pub(super) async fn ping(&self) -> RedisResult<()> {
        let ping = redis::cmd("PING");
        match self {
            Self::Single(manager) => ping.query_async::<String>(&mut manager.clone()).await.map(drop),
            Self::Cluster { client, connection } => {
                let connection = connection.get_or_try_init(|| client.get_async_connection()).await?;
                ping.query_async::<String>(&mut connection.clone()).await.map(drop)
            }
        }
    }

    /// The publish command scripts use on this target (`SPUBLISH` on a Redis Cluster, where a
    /// plain `PUBLISH` would reach every node).
    pub(super) fn publish_command(&self) -> &'static str {
        match self {
            Self::Single(_) => "PUBLISH",
            Self::Cluster { .. } => "SPUBLISH",
        }
    }
}

// === impl Link ===

impl Link {
    /// Subscribes to `feeds`.
    pub(super) async fn subscribe(&mut self, feeds: Vec<String>) -> RedisResult<()> {
        match self {
            Self::Single { sink, .. } => sink.subscribe(feeds).await,
            Self::Cluster { connection, confirming, .. } => {
                // Each shard channel goes to the node that owns its slot.
                for feed in feeds {
                    confirming.insert(feed.clone());
                    connection.ssubscribe(feed).await?;
                }
                Ok(())
            }
        }
    }

    /// Unsubscribes from `feeds`.
    pub(super) async fn unsubscribe(&mut self, feeds: Vec<String>) -> RedisResult<()> {
        match self {
            Self::Single { sink, .. } => sink.unsubscribe(feeds).await,
            Self::Cluster { connection, .. } => {
                for feed in feeds {
                    connection.sunsubscribe(feed).await?;
                }
                Ok(())
            }
        }
    }

    /// Checks the link with a PING.
    pub(super) async fn ping(&mut self) -> RedisResult<()> {
        match self {
            Self::Single { sink, .. } => sink.ping::<Value>().await.map(drop),
            Self::Cluster { connection, .. } => redis::cmd("PING").query_async::<Value>(connection).await.map(drop),
        }
    }

    /// The next event (cancel-safe: nothing is lost when the future is dropped).
    pub(super) async fn next(&mut self) -> Event {
        match self {
            Self::Single { stream, .. } => match stream.next().await {
                Some(message) => Event::Message {
                    feed: message.get_channel_name().to_string(),
                    payload: message.get_payload_bytes().to_vec(),
                },
                None => Event::Lost("the pub/sub connection closed".into()),
            },
            Self::Cluster { pushes, confirming, .. } => loop {
                let Some(push) = pushes.recv().await else { return Event::Lost("the cluster link closed".into()) };
                match (push.kind, push.data.as_slice()) {
                    (PushKind::SMessage, [feed, payload, ..]) => {
                        if let (Some(feed), Some(payload)) = (text(feed), bytes(payload)) {
                            return Event::Message { feed, payload };
                        }
                    }
                    (PushKind::SSubscribe, [feed, ..]) => {
                        if let Some(feed) = text(feed)
                            && !confirming.remove(&feed)
                        {
                            return Event::Resubscribed { feed };
                        }
                    }
                    (PushKind::Disconnection, _) => return Event::Lost("a cluster node's connection dropped".into()),
                    _ => {}
                }
            },
        }
    }
}

/// TLS settings that trust the PEM certificate(s) `ca` instead of the system's roots.
fn trusting(ca: Vec<u8>) -> TlsCertificates {
    TlsCertificates { client_tls: None, root_cert: Some(ca) }
}

fn bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    }
}

fn text(value: &Value) -> Option<String> {
    String::from_utf8(bytes(value)?).ok()
}
