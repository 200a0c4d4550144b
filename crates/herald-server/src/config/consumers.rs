//! The consumers' settings (`[[consumers]]`): where Herald reads messages the application
//! already writes (a PostgreSQL outbox table, a RabbitMQ queue, a NATS JetStream stream) and
//! how it maps each to a channel, an event, data and an idempotency key. What a consumer does
//! with them is [`crate::consumers`]'s.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// One consumer (`[[consumers]]`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Its name: in `/readyz`, the metrics' `consumer` label, the Redis lease and the default
    /// idempotency keys. Letters, digits, `-` and `_`; unique. Required.
    pub name: String,
    /// `"postgres"`, `"amqp"` or `"nats"`. Required.
    pub source: String,
    /// The source's URL (`postgres://…`, `amqp://…` or `amqps://…`, `nats://…`). Required.
    pub url: String,
    /// PostgreSQL: the outbox table (created with its trigger when missing). Default
    /// `herald_outbox`; dead rows go to `<table>_dead`.
    pub table: String,
    /// RabbitMQ: the queue (declared durable, single active consumer, when missing). Default
    /// `herald`; dead messages go to `<queue>.dead`.
    pub queue: String,
    /// NATS: the JetStream stream (created when missing). Default `HERALD`.
    pub stream: String,
    /// NATS: the subjects the stream is created with. Default `["herald.>"]`.
    pub subjects: Vec<String>,
    /// NATS: the subject dead messages are published to. Default `herald_dead.<name>`.
    pub dead_letter_subject: Option<String>,
    /// Most messages in flight (read but not yet acknowledged to the source): the batch size
    /// and the AMQP prefetch. Default 100, at most 10000.
    pub prefetch: u16,
    /// PostgreSQL: how often the table is read when no notification wakes Herald, in
    /// milliseconds. Default 1000.
    pub poll_ms: u64,
    /// How messages map to publishes (see [`BodyShape`]): `"envelope"` (the default) or
    /// `"data"`.
    pub body: BodyShape,
    /// The channel of every message, instead of the message's own. Unset by default.
    pub channel: Option<String>,
    /// RabbitMQ and NATS: a header naming the channel, when the body does not. Default
    /// `herald-channel`.
    pub channel_header: String,
    /// RabbitMQ and NATS: a header naming the event. Default `herald-event`.
    pub event_header: String,
    /// RabbitMQ and NATS: a header naming the idempotency key. Default `Nats-Msg-Id` on NATS;
    /// on RabbitMQ the `message_id` property is read first.
    pub key_header: String,
}

/// What a source message's body is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyShape {
    /// `{"channel"?, "event"?, "data", "idempotency_key"?}`, as `POST /api/publish` takes it
    /// (PostgreSQL: the row's columns of those names).
    #[default]
    Envelope,
    /// The message's data itself (any JSON); the channel comes from `channel` or a header.
    Data,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            source: String::new(),
            url: String::new(),
            table: "herald_outbox".into(),
            queue: "herald".into(),
            stream: "HERALD".into(),
            subjects: vec!["herald.>".into()],
            dead_letter_subject: None,
            prefetch: 100,
            poll_ms: 1000,
            body: BodyShape::Envelope,
            channel: None,
            channel_header: "herald-channel".into(),
            event_header: "herald-event".into(),
            key_header: "Nats-Msg-Id".into(),
        }
    }
}

/// The sources a consumer reads.
pub const CONSUMER_SOURCES: [&str; 3] = ["postgres", "amqp", "nats"];

// === impl ConsumerConfig ===

impl ConsumerConfig {
    /// Refuses settings a consumer cannot run with.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: String| Err(ConfigError::Invalid(format!("consumer {:?}: {what}", self.name)));
        if !is_identifier(&self.name) {
            return bad("name must be 1-64 letters, digits, '-' or '_'".into());
        }
        if !CONSUMER_SOURCES.contains(&self.source.as_str()) {
            return bad(format!("source must be one of {}", CONSUMER_SOURCES.join(", ")));
        }
        let schemes: &[&str] = match self.source.as_str() {
            "postgres" => &["postgres://", "postgresql://"],
            "amqp" => &["amqp://", "amqps://"],
            _ => &["nats://", "tls://"],
        };
        if !schemes.iter().any(|s| self.url.starts_with(s)) {
            return bad(format!("url must start with {}", schemes.join(" or ")));
        }
        if !is_identifier(&self.table) {
            return bad("table must be 1-64 letters, digits, '-' or '_'".into());
        }
        if self.prefetch == 0 || self.prefetch > 10_000 {
            return bad("prefetch must be 1-10000".into());
        }
        if self.poll_ms == 0 {
            return bad("poll_ms must be at least 1".into());
        }
        if let Some(channel) = &self.channel
            && let Err(e) = herald_core::ChannelName::new(channel)
        {
            return bad(format!("channel: {e}"));
        }
        if self.source == "postgres" && self.body == BodyShape::Data && self.channel.is_none() {
            return bad("an outbox with body = \"data\" needs a channel".into());
        }
        Ok(())
    }

    /// The NATS subject dead messages go to.
    pub fn dead_letter_subject(&self) -> String {
        self.dead_letter_subject.clone().unwrap_or_else(|| format!("herald_dead.{}", self.name))
    }
}

/// Whether `name` is 1-64 ASCII letters, digits, `-` or `_` (safe in SQL identifiers, metric
/// labels and Redis keys).
fn is_identifier(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Refuses two consumers with one name.
pub(super) fn validate_all(consumers: &[ConsumerConfig]) -> Result<(), ConfigError> {
    for (i, consumer) in consumers.iter().enumerate() {
        consumer.validate()?;
        if consumers[..i].iter().any(|c| c.name == consumer.name) {
            return Err(ConfigError::Invalid(format!("two consumers are named {:?}", consumer.name)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(source: &str, url: &str) -> ConsumerConfig {
        ConsumerConfig { name: "orders".into(), source: source.into(), url: url.into(), ..ConsumerConfig::default() }
    }

    fn refusal(consumers: &[ConsumerConfig]) -> String {
        validate_all(consumers).expect_err("refused").to_string()
    }

    #[test]
    fn each_source_takes_its_own_urls() {
        assert!(validate_all(&[consumer("postgres", "postgres://h/db")]).is_ok());
        assert!(validate_all(&[consumer("amqp", "amqps://h")]).is_ok());
        assert!(validate_all(&[consumer("nats", "nats://h:4222")]).is_ok());
        assert!(refusal(&[consumer("amqp", "postgres://h/db")]).contains("amqp:// or amqps://"));
        assert!(refusal(&[consumer("kafka", "kafka://h")]).contains("postgres, amqp, nats"));
    }

    #[test]
    fn bad_settings_are_refused_with_the_consumers_name() {
        let mut bad_name = consumer("nats", "nats://h");
        bad_name.name = "with space".into();
        assert!(refusal(&[bad_name]).contains("name must be"));
        let twice = [consumer("nats", "nats://h"), consumer("postgres", "postgres://h")];
        assert!(refusal(&twice).contains("two consumers are named \"orders\""));
        let mut no_prefetch = consumer("amqp", "amqp://h");
        no_prefetch.prefetch = 0;
        assert!(refusal(&[no_prefetch]).contains("consumer \"orders\": prefetch"));
        let mut bad_channel = consumer("amqp", "amqp://h");
        bad_channel.channel = Some("a b".into());
        assert!(refusal(&[bad_channel]).contains("channel"));
        let mut data_without_channel = consumer("postgres", "postgres://h");
        data_without_channel.body = BodyShape::Data;
        assert!(refusal(&[data_without_channel]).contains("needs a channel"));
    }
}
