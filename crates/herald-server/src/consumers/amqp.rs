//! RabbitMQ (AMQP 0-9-1): Herald consumes a queue with manual acknowledgements and a bounded
//! prefetch, and acknowledges each message once its publish is durable. A message that cannot
//! be published is republished (with publisher confirms) to `<queue>.dead` with an
//! `x-herald-reason` header, then acknowledged.
//!
//! When the queue is missing, Herald declares it durable with `x-single-active-consumer`, so
//! that of several Herald nodes one consumes at a time and order holds. The idempotency key is
//! the body's `idempotency_key`, else the `message_id` property, else the `key_header` header;
//! a message with none is published at least once.

use std::time::Duration;

use lapin::{
    Channel, Connection, ConnectionProperties, Consumer,
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
        QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
};

use super::{Incoming, Outcome, Source, SourceError, mapping, next_pushed};
use crate::config::ConsumerConfig;

/// A queue session: the connection, its channel and the consumer on the queue.
pub struct Queue {
    config: ConsumerConfig,
    _connection: Connection,
    channel: Channel,
    consumer: Consumer,
}

// === impl Queue ===

impl Queue {
    /// Connects, declares the queue (when missing) and its dead-letter queue, and consumes.
    pub async fn connect(config: &ConsumerConfig) -> Result<Self, SourceError> {
        let failed = |what: &'static str| move |e: lapin::Error| SourceError::new(what, e);
        let connection =
            Connection::connect(&config.url, ConnectionProperties::default()).await.map_err(failed("connecting"))?;
        let queue = config.queue.as_str();
        let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        let mut arguments = FieldTable::default();
        arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        let mut channel = connection.create_channel().await.map_err(failed("opening a channel"))?;
        if let Err(declaring) = channel.queue_declare(queue.into(), durable, arguments).await {
            // The queue exists with other arguments (the broker closed the channel): use it
            // as it is.
            channel = connection.create_channel().await.map_err(failed("opening a channel"))?;
            let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
            if channel.queue_declare(queue.into(), passive, FieldTable::default()).await.is_err() {
                return Err(SourceError::new("declaring the queue", declaring));
            }
        }
        let dead = format!("{queue}.dead");
        channel
            .queue_declare(dead.into(), durable, FieldTable::default())
            .await
            .map_err(failed("declaring the dead-letter queue"))?;
        channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(failed("selecting confirms"))?;
        channel.basic_qos(config.prefetch, BasicQosOptions::default()).await.map_err(failed("setting the prefetch"))?;
        let consumer = channel
            .basic_consume(queue.into(), "herald".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .map_err(failed("consuming"))?;
        Ok(Self { config: config.clone(), _connection: connection, channel, consumer })
    }

    /// Republishes `delivery` to the dead-letter queue with `reason`, and waits for the
    /// broker's confirm.
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), SourceError> {
        let failed = |e| SourceError::new("dead-lettering", e);
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert("x-herald-reason".into(), AMQPValue::LongString(reason.into()));
        let properties = delivery.properties.clone().with_headers(headers).with_delivery_mode(2);
        let dead: ShortString = format!("{}.dead", self.config.queue).into();
        let confirm = self
            .channel
            .basic_publish("".into(), dead, BasicPublishOptions::default(), &delivery.data, properties)
            .await
            .map_err(failed)?;
        match confirm.await.map_err(failed)? {
            lapin::Confirmation::Nack(_) => Err(SourceError("the broker refused a dead letter".into())),
            _ => Ok(()),
        }
    }
}

impl Source for Queue {
    type Ticket = Delivery;

    async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<Incoming<Delivery>>, SourceError> {
        let config = &self.config;
        next_pushed(&mut self.consumer, max, wait, "the broker cancelled the consumer", |d| map(config, d)).await
    }

    async fn settle(&mut self, settled: Vec<(Delivery, Outcome)>) -> Result<(), SourceError> {
        let acked = |e| SourceError::new("acknowledging", e);
        // Dead letters first, each acknowledged once confirmed; then one acknowledgement for
        // every published message up to the last (earlier ones are all settled by now).
        for (delivery, outcome) in &settled {
            if let Outcome::Dead(reason) = outcome {
                self.dead_letter(delivery, reason).await?;
                delivery.ack(BasicAckOptions::default()).await.map_err(acked)?;
            }
        }
        let last_published = settled.iter().rev().find(|(_, outcome)| matches!(outcome, Outcome::Published));
        if let Some((delivery, _)) = last_published {
            delivery.ack(BasicAckOptions { multiple: true }).await.map_err(acked)?;
        }
        Ok(())
    }

    async fn lag(&mut self) -> Option<u64> {
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let queue = self.channel.queue_declare(self.config.queue.as_str().into(), passive, FieldTable::default());
        Some(u64::from(queue.await.ok()?.message_count()))
    }
}

/// The delivery as a publish.
fn map(config: &ConsumerConfig, delivery: &Delivery) -> Result<mapping::Mapped, mapping::Unmappable> {
    let headers = delivery.properties.headers().as_ref();
    let header = |name: &str| headers.and_then(|h| h.inner().get(name)).and_then(header_text);
    let source_key = delivery.properties.message_id().as_ref().map(|id| id.as_str().to_owned());
    mapping::map_message(config, &mapping::Parts { body: &delivery.data, header: &header, source_key })
}

/// A header's value as text (AMQP strings; numbers as written).
fn header_text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        AMQPValue::LongLongInt(n) => Some(n.to_string()),
        AMQPValue::LongInt(n) => Some(n.to_string()),
        _ => None,
    }
}
