//! The Redis engine behind the seam: every call that needs Redis's word goes to the
//! [`Cluster`] and is answered later; what the node's mirror already knows is answered at once.

use std::{borrow::Cow, sync::Arc};

use herald_core::{ChannelName, ErrorCode, HistoryQuery, ProtocolError, StreamPosition, streams::Delta};
use serde_json::{json, value::RawValue};

use super::{Answer, Engine, Placed, Wanted};
use crate::{broker::Broker, cluster::Cluster, publication::Message};

/// The Redis engine; see the [module docs](super) and [`crate::cluster`].
pub struct Redis {
    cluster: Arc<Cluster>,
    broker: Arc<Broker>,
}

// === impl Redis ===

impl Redis {
    /// The engine of `cluster`, whose mirrors live in `broker`.
    pub fn new(cluster: Arc<Cluster>, broker: Arc<Broker>) -> Self {
        Self { cluster, broker }
    }
}

impl Engine for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn publish(
        &self,
        channel: &ChannelName,
        data: &RawValue,
        event: Option<&str>,
        key: Option<&str>,
    ) -> Answer<Placed> {
        let cluster = self.cluster.clone();
        let (channel, data, event, key) =
            (channel.clone(), data.to_owned(), event.map(str::to_string), key.map(str::to_string));
        Answer::Later(Box::pin(async move {
            let assigned = cluster.publish(&channel, &data, event.as_deref(), key.as_deref()).await?;
            Ok(Placed { epoch: assigned.epoch, offset: assigned.offset, seq: 0 })
        }))
    }

    fn keeps_idempotency_keys(&self) -> bool {
        true
    }

    fn history(&self, channel: &ChannelName, query: &HistoryQuery) -> Answer<(StreamPosition, Vec<Message>)> {
        let (cluster, channel, query) = (self.cluster.clone(), channel.clone(), *query);
        Answer::Later(Box::pin(async move { cluster.history(&channel, &query).await }))
    }

    fn presence(&self, channel: &ChannelName) -> Answer<serde_json::Value> {
        let (cluster, channel) = (self.cluster.clone(), channel.clone());
        Answer::Later(Box::pin(async move {
            Ok(crate::presence::members_body(&channel, &cluster.presence(&channel).await?))
        }))
    }

    fn stream_start(&self, channel: &ChannelName, event: Option<&str>, json: bool) -> Answer<Arc<str>> {
        let (cluster, channel, event) = (self.cluster.clone(), channel.clone(), event.map(str::to_string));
        Answer::Later(Box::pin(async move { cluster.stream_start(&channel, event.as_deref(), json).await }))
    }

    fn stream_append(&self, channel: &ChannelName, id: &str, delta: Delta<'_>) -> Answer<u64> {
        // Redis knows the stream's kind: it gets the piece in each form it can take.
        let text = delta.for_stream(false).ok().map(Cow::into_owned);
        let json = delta.for_stream(true).ok().map(Cow::into_owned);
        let (cluster, channel, id) = (self.cluster.clone(), channel.clone(), id.to_string());
        Answer::Later(Box::pin(
            async move { cluster.stream_append(&channel, &id, text.as_deref(), json.as_deref()).await },
        ))
    }

    fn stream_finish(&self, channel: &ChannelName, id: &str) -> Answer<Placed> {
        let (cluster, channel, id) = (self.cluster.clone(), channel.clone(), id.to_string());
        Answer::Later(Box::pin(async move {
            let assigned = cluster.stream_finish(&channel, &id).await?;
            Ok(Placed { epoch: assigned.epoch, offset: assigned.offset, seq: 0 })
        }))
    }

    fn stream_abort(&self, channel: &ChannelName, id: &str) -> Answer<()> {
        let (cluster, channel, id) = (self.cluster.clone(), channel.clone(), id.to_string());
        Answer::Later(Box::pin(async move { cluster.stream_abort(&channel, &id).await }))
    }

    fn in_line(&self, channel: &ChannelName, since: Option<&StreamPosition>) -> bool {
        self.cluster.in_line(channel, since)
    }

    fn mirrors(&self) -> bool {
        true
    }

    fn prepare(&self, wanted: Vec<Wanted>) -> Answer<()> {
        let cluster = self.cluster.clone();
        Answer::Later(Box::pin(async move { cluster.prepare(&wanted).await }))
    }

    fn sweeps_idle_channels(&self) -> bool {
        false
    }

    fn readiness(&self) -> Result<(), ProtocolError> {
        if self.cluster.is_ready() {
            return Ok(());
        }
        Err(ProtocolError::new(ErrorCode::EngineUnavailable, "not in line with Redis yet (unreachable or catching up)"))
    }

    fn describe(&self) -> serde_json::Value {
        json!({
            "engine": self.name(),
            "store": self.broker.store().map(|s| s.info()),
            "redis": { "ready": self.cluster.is_ready(), "mirrored_channels": self.cluster.mirrored_count() },
        })
    }
}
