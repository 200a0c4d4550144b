//! NATS JetStream: Herald reads a stream through a durable pull consumer named after the
//! consumer (explicit acks, at most `prefetch` unacknowledged, redelivered after 10 s without an
//! ack) and acknowledges each message once its publish is durable. A message that cannot be
//! published goes, with a `Herald-Reason` header, to the dead-letter subject (default
//! `herald_dead.<name>`, kept in the stream `<stream>_DEAD`), then is acknowledged.
//!
//! Herald creates the stream (with `subjects`) and the dead-letter stream when missing. The
//! idempotency key is the body's `idempotency_key`, else the `key_header` header (default
//! `Nats-Msg-Id`), else `<consumer>:<stream sequence>`. Several Herald nodes share the durable
//! consumer; with the Redis engine only the lease holder reads it.

use std::time::Duration;

use async_nats::jetstream::{self, Message, consumer::PullConsumer};

use super::{Incoming, Outcome, Source, SourceError, mapping, next_pushed};
use crate::config::ConsumerConfig;

/// How long JetStream waits for an ack before it delivers a message again.
const ACK_WAIT: Duration = Duration::from_secs(10);

/// A JetStream session: the durable consumer and its message stream.
pub struct JetStream {
    config: ConsumerConfig,
    client: async_nats::Client,
    context: jetstream::Context,
    consumer: PullConsumer,
    messages: jetstream::consumer::pull::Stream,
    dead_subject: String,
}

// === impl JetStream ===

impl JetStream {
    /// Connects, creates the streams and the durable consumer when missing, and pulls.
    pub async fn connect(config: &ConsumerConfig) -> Result<Self, SourceError> {
        let client = async_nats::connect(config.url.as_str()).await.map_err(|e| SourceError::new("connecting", e))?;
        let context = jetstream::new(client.clone());
        let stream = context
            .get_or_create_stream(jetstream::stream::Config {
                name: config.stream.clone(),
                subjects: config.subjects.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| SourceError::new("opening the stream", e))?;
        let dead_subject = config.dead_letter_subject();
        context
            .get_or_create_stream(jetstream::stream::Config {
                name: format!("{}_DEAD", config.stream),
                subjects: vec![dead_subject.clone()],
                ..Default::default()
            })
            .await
            .map_err(|e| SourceError::new("opening the dead-letter stream", e))?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                &config.name,
                jetstream::consumer::pull::Config {
                    durable_name: Some(config.name.clone()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: i64::from(config.prefetch),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| SourceError::new("opening the consumer", e))?;
        let messages = consumer.messages().await.map_err(|e| SourceError::new("pulling", e))?;
        Ok(Self { config: config.clone(), client, context, consumer, messages, dead_subject })
    }

    /// Publishes `message` to the dead-letter subject with `reason`, and waits for JetStream's
    /// acknowledgement.
    async fn dead_letter(&self, message: &Message, reason: &str) -> Result<(), SourceError> {
        let failed = |e: String| SourceError::new("dead-lettering", e);
        let mut headers = message.headers.clone().unwrap_or_default();
        headers.insert("Herald-Reason", reason);
        headers.insert("Herald-Subject", message.subject.as_str());
        let sent = self
            .context
            .publish_with_headers(self.dead_subject.clone(), headers, message.payload.clone())
            .await
            .map_err(|e| failed(e.to_string()))?;
        sent.await.map(drop).map_err(|e| failed(e.to_string()))
    }
}

impl Source for JetStream {
    type Ticket = Message;

    async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<Incoming<Message>>, SourceError> {
        // The client reconnects by itself; the session ends instead, so that the consumer
        // reports the failure and reconnects with its own backoff.
        if self.client.connection_state() == async_nats::connection::State::Disconnected {
            return Err(SourceError("the connection to NATS is lost".into()));
        }
        let config = &self.config;
        next_pushed(&mut self.messages, max, wait, "the message stream ended", |m| map(config, m)).await
    }

    async fn settle(&mut self, settled: Vec<(Message, Outcome)>) -> Result<(), SourceError> {
        for (message, outcome) in &settled {
            if let Outcome::Dead(reason) = outcome {
                self.dead_letter(message, reason).await?;
            }
            message.ack().await.map_err(|e| SourceError::new("acknowledging", e))?;
        }
        Ok(())
    }

    async fn lag(&mut self) -> Option<u64> {
        Some(self.consumer.info().await.ok()?.num_pending)
    }
}

/// The message as a publish.
fn map(config: &ConsumerConfig, message: &Message) -> Result<mapping::Mapped, mapping::Unmappable> {
    let headers = message.headers.as_ref();
    let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
    let sequence = message.info().map(|info| info.stream_sequence).ok();
    let source_key = sequence.map(|seq| format!("{}:{seq}", config.name));
    mapping::map_message(config, &mapping::Parts { body: &message.payload, header: &header, source_key })
}
