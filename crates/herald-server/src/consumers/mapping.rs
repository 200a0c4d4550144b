//! How a source message becomes a publish: its channel, event, data and idempotency key, from
//! the body's fields, the message's headers and the consumer's settings. No I/O: every source
//! hands its message's parts here, and what cannot be mapped comes back with the reason that
//! goes with it to the dead-letter path.

use herald_core::{ChannelName, protocol::validate_event};
use serde_json::value::RawValue;

use crate::{
    config::{BodyShape, ConsumerConfig},
    publish::PublishBody,
};

/// A source message as a publish.
#[derive(Debug)]
pub struct Mapped {
    /// The channel.
    pub channel: ChannelName,
    /// The event, if any.
    pub event: Option<String>,
    /// The data, as written.
    pub data: Box<RawValue>,
    /// The idempotency key: the message's own, or one the source derived from the message's
    /// place (a row id, a stream sequence). `None` only where the source has neither.
    pub key: Option<String>,
}

/// Why a message cannot be published; said with it on the dead-letter path.
pub type Unmappable = String;

/// A message's parts as a source reads them.
pub struct Parts<'a> {
    /// The body.
    pub body: &'a [u8],
    /// A header's value by name (none for a source without headers).
    pub header: &'a dyn Fn(&str) -> Option<String>,
    /// The source's own key for the message (a message id, a stream sequence), used when the
    /// body and headers name none.
    pub source_key: Option<String>,
}

/// Maps a message of a source with headers (RabbitMQ, NATS).
pub fn map_message(config: &ConsumerConfig, parts: &Parts<'_>) -> Result<Mapped, Unmappable> {
    let header = |name: &str| (parts.header)(name).filter(|v| !v.is_empty());
    let from_headers = |key: Option<String>| key.or_else(|| header(&config.key_header)).or(parts.source_key.clone());
    match config.body {
        BodyShape::Envelope => {
            let envelope: PublishBody =
                serde_json::from_slice(parts.body).map_err(|e| format!("the body is not a publish envelope: {e}"))?;
            let channel = envelope.channel.or_else(|| header(&config.channel_header));
            let event = envelope.event.or_else(|| header(&config.event_header));
            let key = from_headers(envelope.idempotency_key);
            let mut mapped = map_fields(config, channel.as_deref(), event, envelope.data, key)?;
            mapped.event = crate::binary::event_for(envelope.encoding.as_deref(), &mapped.data, mapped.event)?;
            Ok(mapped)
        }
        BodyShape::Data => {
            let data: Box<RawValue> =
                serde_json::from_slice(parts.body).map_err(|e| format!("the body is not JSON: {e}"))?;
            let channel = header(&config.channel_header);
            map_fields(config, channel.as_deref(), header(&config.event_header), data, from_headers(None))
        }
    }
}

/// Maps a message whose parts are already apart (an outbox row's columns): the consumer's
/// `channel` wins over the message's own.
pub fn map_fields(
    config: &ConsumerConfig,
    channel: Option<&str>,
    event: Option<String>,
    data: Box<RawValue>,
    key: Option<String>,
) -> Result<Mapped, Unmappable> {
    let channel = config.channel.as_deref().or(channel).ok_or("the message names no channel")?;
    let channel = ChannelName::new(channel).map_err(|e| format!("channel {channel:?}: {e}"))?;
    let event = validate_event(event).map_err(|e| e.message)?;
    if let Some(key) = &key
        && (key.is_empty() || key.len() > 256)
    {
        return Err("the idempotency key must be 1-256 bytes".into());
    }
    Ok(Mapped { channel, event, data, key })
}

/// Parses `text` (an outbox row's data) as JSON.
pub fn parse_data(text: &str) -> Result<Box<RawValue>, Unmappable> {
    RawValue::from_string(text.to_owned()).map_err(|e| format!("the data is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(body: BodyShape, channel: Option<&str>) -> ConsumerConfig {
        ConsumerConfig { name: "orders".into(), body, channel: channel.map(Into::into), ..ConsumerConfig::default() }
    }

    fn map(
        config: &ConsumerConfig,
        body: &str,
        headers: &[(&str, &str)],
        source_key: Option<&str>,
    ) -> Result<Mapped, String> {
        let header = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned());
        map_message(config, &Parts { body: body.as_bytes(), header: &header, source_key: source_key.map(Into::into) })
    }

    #[test]
    fn an_envelope_maps_its_fields_and_its_key_wins_over_the_sources() {
        let mapped = map(
            &config(BodyShape::Envelope, None),
            r#"{"channel":"jobs","event":"new","data":{"id":7},"idempotency_key":"k1"}"#,
            &[],
            Some("orders:1"),
        )
        .expect("maps");
        assert_eq!((mapped.channel.as_str(), mapped.event.as_deref()), ("jobs", Some("new")));
        assert_eq!((mapped.data.get(), mapped.key.as_deref()), (r#"{"id":7}"#, Some("k1")));
    }

    #[test]
    fn headers_fill_what_the_body_leaves_out_and_the_source_key_comes_last() {
        let headers = [("herald-channel", "prices"), ("herald-event", "tick")];
        let mapped = map(&config(BodyShape::Data, None), "[1,2]", &headers, Some("orders:9")).expect("maps");
        assert_eq!((mapped.channel.as_str(), mapped.event.as_deref()), ("prices", Some("tick")));
        assert_eq!(mapped.key.as_deref(), Some("orders:9"));
        let keyed =
            map(&config(BodyShape::Data, None), "1", &[("herald-channel", "p"), ("Nats-Msg-Id", "m-1")], Some("s"));
        assert_eq!(keyed.expect("maps").key.as_deref(), Some("m-1"));
    }

    #[test]
    fn a_base64_envelope_is_a_binary_message() {
        let envelope = config(BodyShape::Envelope, None);
        let mapped = map(&envelope, r#"{"channel":"c","encoding":"base64","data":"AAE=","event":"e"}"#, &[], None);
        assert_eq!(crate::binary::unmark(mapped.expect("maps").event.as_deref()), (Some("e"), true));
        let bad = map(&envelope, r#"{"channel":"c","encoding":"base64","data":"%%"}"#, &[], None);
        assert!(bad.expect_err("unmappable").contains("base64"));
        let unknown = map(&envelope, r#"{"channel":"c","encoding":"hex","data":"00"}"#, &[], None);
        assert!(unknown.expect_err("unmappable").contains("encoding must be"));
    }

    #[test]
    fn the_consumers_channel_wins() {
        let mapped = map(&config(BodyShape::Envelope, Some("fixed")), r#"{"channel":"other","data":1}"#, &[], None);
        assert_eq!(mapped.expect("maps").channel.as_str(), "fixed");
    }

    #[test]
    fn what_cannot_be_published_says_why() {
        let envelope = config(BodyShape::Envelope, None);
        let reason = |body: &str| map(&envelope, body, &[], None).expect_err("unmappable");
        assert!(reason("not json").contains("not a publish envelope"), "{}", reason("not json"));
        assert!(reason(r#"{"data":1}"#).contains("no channel"));
        assert!(reason(r#"{"channel":"bad channel!","data":1}"#).contains("bad channel!"));
        assert!(reason(r#"{"channel":"c","data":1,"event":""}"#).contains("event"));
        assert!(reason(r#"{"channel":"c","data":1,"idempotency_key":""}"#).contains("idempotency key"));
        let data = config(BodyShape::Data, Some("c"));
        assert!(map(&data, "{", &[], None).expect_err("unmappable").contains("not JSON"));
        assert!(parse_data("{").is_err());
    }
}
