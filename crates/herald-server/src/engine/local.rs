//! The engines of one node: [`Memory`] (the broker alone) and [`Durable`] (the broker over the
//! durable store). Both answer everything at once except a durable publish's wait for disk.

use std::sync::Arc;

use herald_core::{ChannelName, ErrorCode, HistoryQuery, ProtocolError, StreamPosition, streams::Delta};
use serde_json::{json, value::RawValue};

use super::{Answer, Engine, Placed};
use crate::{broker::Broker, publication::Message, store::Store};

/// The in-memory engine: this node's broker; see the [module docs](super).
pub struct Memory {
    broker: Arc<Broker>,
}

/// The durable engine: the broker over the store; see the [module docs](super).
pub struct Durable {
    memory: Memory,
    store: Arc<Store>,
}

// === impl Memory ===

impl Memory {
    /// The engine of `broker` (one without a store).
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }
}

impl Engine for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn publish(
        &self,
        channel: &ChannelName,
        data: &RawValue,
        event: Option<&str>,
        key: Option<&str>,
    ) -> Answer<Placed> {
        let published = self.broker.publish(channel, data, event, key);
        let message = &published.message;
        Answer::Ready(Ok(Placed { epoch: message.epoch.clone(), offset: message.offset, seq: published.seq }))
    }

    fn history(&self, channel: &ChannelName, query: &HistoryQuery) -> Answer<(StreamPosition, Vec<Message>)> {
        Answer::Ready(Ok(self.broker.history(channel, query)))
    }

    fn presence(&self, channel: &ChannelName) -> Answer<serde_json::Value> {
        Answer::Ready(Ok(crate::presence::presence_body(channel, &self.broker.presence(channel))))
    }

    fn stream_start(&self, channel: &ChannelName, event: Option<&str>, json: bool) -> Answer<Arc<str>> {
        Answer::Ready(self.broker.stream_start(channel, event, json).map_err(Into::into))
    }

    fn stream_append(&self, channel: &ChannelName, id: &str, delta: Delta<'_>) -> Answer<u64> {
        Answer::Ready(self.broker.stream_append(channel, id, delta).map_err(Into::into))
    }

    fn stream_finish(&self, channel: &ChannelName, id: &str) -> Answer<Placed> {
        // Under the broker, the close and the publish follow each other on this node: no
        // append can come between them (the stream is closed), and the publish cannot fail.
        let stream = match self.broker.stream_finish(channel, id) {
            Ok(stream) => stream,
            Err(e) => return Answer::Ready(Err(e.into())),
        };
        self.publish(channel, &stream.message_data(), stream.event.as_deref(), None)
    }

    fn stream_abort(&self, channel: &ChannelName, id: &str) -> Answer<()> {
        Answer::Ready(self.broker.stream_abort(channel, id).map_err(Into::into))
    }

    fn describe(&self) -> serde_json::Value {
        json!({ "engine": self.name(), "store": null, "redis": null })
    }
}

// === impl Durable ===

impl Durable {
    /// The engine of `broker`, which appends to `store`.
    pub fn new(broker: Arc<Broker>, store: Arc<Store>) -> Self {
        Self { memory: Memory::new(broker), store }
    }
}

impl Engine for Durable {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn publish(
        &self,
        channel: &ChannelName,
        data: &RawValue,
        event: Option<&str>,
        key: Option<&str>,
    ) -> Answer<Placed> {
        self.memory.publish(channel, data, event, key)
    }

    fn wait_durable(&self, seq: u64) -> Answer<()> {
        if seq == 0 {
            return Answer::Ready(Ok(()));
        }
        let store = self.store.clone();
        Answer::Later(Box::pin(async move {
            store.wait_durable(seq).await.map_err(|e| ProtocolError::new(ErrorCode::Internal, e.to_string()))
        }))
    }

    fn history(&self, channel: &ChannelName, query: &HistoryQuery) -> Answer<(StreamPosition, Vec<Message>)> {
        self.memory.history(channel, query)
    }

    fn presence(&self, channel: &ChannelName) -> Answer<serde_json::Value> {
        self.memory.presence(channel)
    }

    fn stream_start(&self, channel: &ChannelName, event: Option<&str>, json: bool) -> Answer<Arc<str>> {
        self.memory.stream_start(channel, event, json)
    }

    fn stream_append(&self, channel: &ChannelName, id: &str, delta: Delta<'_>) -> Answer<u64> {
        self.memory.stream_append(channel, id, delta)
    }

    fn stream_finish(&self, channel: &ChannelName, id: &str) -> Answer<Placed> {
        self.memory.stream_finish(channel, id)
    }

    fn stream_abort(&self, channel: &ChannelName, id: &str) -> Answer<()> {
        self.memory.stream_abort(channel, id)
    }

    fn readiness(&self) -> Result<(), ProtocolError> {
        if self.store.failed() {
            return Err(ProtocolError::new(ErrorCode::ShuttingDown, "the data directory can no longer be written"));
        }
        Ok(())
    }

    fn describe(&self) -> serde_json::Value {
        json!({ "engine": self.name(), "store": self.store.info(), "redis": null })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

    use std::{sync::Arc, time::Duration};

    use herald_core::ChannelName;
    use serde_json::value::RawValue;

    use super::{Durable, Memory};
    use crate::{
        Config,
        broker::Broker,
        engine::Engine,
        store::{Durability, Store, StoreOptions},
    };

    /// What every local engine promises: consecutive offsets in one epoch, history after a
    /// position, and a publish answered only once it is durable.
    async fn keeps_the_contract(engine: &dyn Engine) {
        let channel = ChannelName::new("jobs").unwrap();
        let data = RawValue::from_string("{\"title\":\"Rust\"}".to_string()).unwrap();
        let mut placed = Vec::new();
        for _ in 0..3 {
            let p = engine.publish(&channel, &data, None, None).get().await.unwrap();
            engine.wait_durable(p.seq).get().await.unwrap();
            placed.push(p);
        }
        assert_eq!(placed.iter().map(|p| p.offset).collect::<Vec<_>>(), [1, 2, 3], "one after the other");
        assert!(placed.iter().all(|p| p.epoch == placed[0].epoch), "one epoch");
        let (position, after_one) = engine
            .history(&channel, &herald_core::HistoryQuery { since: Some(1), ..Default::default() })
            .get()
            .await
            .unwrap();
        assert_eq!((position.epoch.clone(), position.offset), (placed[0].epoch.clone(), 3));
        assert_eq!(after_one.iter().map(|m| m.offset).collect::<Vec<_>>(), [2, 3]);
        assert!(engine.in_line(&channel, Some(&position)) && !engine.mirrors());
        assert!(engine.readiness().is_ok());
    }

    #[tokio::test]
    async fn the_memory_engine_keeps_the_contract() {
        let engine = Memory::new(Arc::new(Broker::new(Arc::new(Config::default()), Arc::default())));
        keeps_the_contract(&engine).await;
        assert_eq!(engine.describe()["engine"], "memory");
    }

    #[tokio::test]
    async fn the_durable_engine_keeps_the_contract_and_answers_after_the_disk() {
        let dir = std::env::temp_dir().join(format!("herald-engine-{}", std::process::id()));
        let options = StoreOptions {
            dir: dir.clone(),
            durability: Durability::Fsync,
            group_commit: Duration::ZERO,
            segment_bytes: 1 << 20,
        };
        let (store, records) = Store::open(options, Arc::default()).unwrap();
        let broker = Arc::new(Broker::with_store(Arc::new(Config::default()), Arc::default(), store.clone(), records));
        let engine = Durable::new(broker, store);
        keeps_the_contract(&engine).await;
        assert_eq!(engine.describe()["engine"], "disk");
        // The answer waits for the record's sync: a store sequence to wait for.
        let channel = ChannelName::new("jobs").unwrap();
        let data = RawValue::from_string("1".to_string()).unwrap();
        let placed = engine.publish(&channel, &data, None, None).get().await.unwrap();
        assert!(placed.seq > 0, "{placed:?}");
        assert!(matches!(engine.wait_durable(placed.seq), crate::engine::Answer::Later(_)));
        let _ = std::fs::remove_dir_all(dir);
    }
}
