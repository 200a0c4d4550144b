//! Publishing, as every route shares it (the API's `POST /api/publish` and
//! `/api/publish/{channel}`, a WebSocket's `publish`): the checks, the engine call, the
//! idempotency window for engines that do not keep keys themselves, and the answer that
//! waits until the publish is durable.

use herald_core::{ChannelName, ErrorCode, protocol::validate_event};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{
    engine::{Answer, EngineFuture, Placed},
    now_ms,
    reply::{ApiError, parse_json, publish_body},
    state::AppState,
};

/// A publish the engine accepted: its encoded reply, once it is durable (memory and disk
/// engines: in history and fanned out already) or once Redis assigned its place (Redis
/// engine). [`durable_reply`] waits for either.
pub enum Accepted {
    /// Published on this node: the reply, once store sequence `seq` is durable (0: at once).
    Local {
        /// The encoded reply.
        body: Vec<u8>,
        /// The store sequence to wait for (0: nothing to wait for).
        seq: u64,
    },
    /// Sent to the engine (Redis), which places it when `placed` resolves; [`durable_reply`]
    /// encodes the reply then.
    Remote {
        /// The channel, for the reply.
        channel: ChannelName,
        /// The engine's answer.
        placed: EngineFuture<Placed>,
    },
}

/// A publish as `POST /api/publish` takes it, and as consumers read an envelope message
/// ([`crate::consumers::mapping`], where the channel may come from elsewhere).
#[derive(Deserialize)]
pub(crate) struct PublishBody {
    /// The channel (required by the API).
    #[serde(default)]
    pub channel: Option<String>,
    /// The data, as written.
    pub data: Box<RawValue>,
    /// The event, if any.
    #[serde(default)]
    pub event: Option<String>,
    /// The idempotency key, if any.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// `"base64"`: `data` is a binary message's bytes in base64 ([`crate::binary::event_for`]).
    #[serde(default)]
    pub encoding: Option<String>,
}

/// Refuses `data` over `max_message_bytes`, counting the hit.
pub(crate) fn check_size(state: &AppState, data: &RawValue) -> Result<(), ApiError> {
    let limit = state.config.max_message_bytes;
    if data.get().len() > limit {
        state.guard.hit(crate::guard::Limit::MessageSize, None, "a message over max_message_bytes");
        return Err(ApiError::new(
            ErrorCode::MessageTooLarge,
            format!("data is {} bytes; the limit is {limit}", data.get().len()),
        ));
    }
    Ok(())
}

/// Refuses a publish once the shutdown started.
pub(crate) fn refuse_while_shutting_down(state: &AppState) -> Result<(), ApiError> {
    if state.registry.is_shutting_down() {
        return Err(ApiError::new(ErrorCode::ShuttingDown, "the server is shutting down"));
    }
    Ok(())
}

/// Publishes one message to a validated channel with a validated event (and idempotency
/// `key`), after the checks every publish route shares (not shutting down, data within the
/// size limit). The publisher's answer waits for [`durable_reply`].
pub fn publish_one(
    state: &AppState,
    channel: &ChannelName,
    data: &RawValue,
    event: Option<&str>,
    key: Option<&str>,
) -> Result<Accepted, ApiError> {
    refuse_while_shutting_down(state)?;
    check_size(state, data)?;
    accepted(channel, state.engine.publish(channel, data, event, key))
}

/// A publish to `channel` the engine answered with `placed`, as the publisher's answer waits
/// for it ([`durable_reply`]).
pub fn accepted(channel: &ChannelName, placed: Answer<Placed>) -> Result<Accepted, ApiError> {
    match placed {
        Answer::Ready(placed) => {
            let placed = placed?;
            Ok(Accepted::Local { body: publish_body(channel, placed.offset, &placed.epoch), seq: placed.seq })
        }
        Answer::Later(placed) => Ok(Accepted::Remote { channel: channel.clone(), placed }),
    }
}

/// The reply of an accepted publish, once it is durable.
pub async fn durable_reply(state: &AppState, accepted: Accepted) -> Result<Vec<u8>, ApiError> {
    match accepted {
        Accepted::Local { body, seq } => {
            state.engine.wait_durable(seq).get().await?;
            Ok(body)
        }
        Accepted::Remote { channel, placed } => {
            let placed = placed.await?;
            Ok(publish_body(&channel, placed.offset, &placed.epoch))
        }
    }
}

/// A publish with the JSON body `bytes` (`{"channel","data","event"?,"idempotency_key"?}`),
/// once `admit` allows its channel.
pub fn publish_json(
    state: &AppState,
    bytes: &[u8],
    admit: impl FnOnce(&ChannelName) -> Result<(), ApiError>,
) -> Result<Accepted, ApiError> {
    let body: PublishBody = parse_json(bytes)?;
    let channel = body.channel.ok_or_else(|| ApiError::new(ErrorCode::BadRequest, "missing field `channel`"))?;
    let channel = ChannelName::new(&channel)?;
    let event = validate_event(body.event)?;
    let event = crate::binary::event_for(body.encoding.as_deref(), &body.data, event)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e))?;
    admit(&channel)?;
    publish_keyed(state, &channel, &body.data, event.as_deref(), body.idempotency_key.as_deref())
}

/// [`publish_one`] with an optional idempotency `key` (1-256 bytes): a publish repeated with
/// the same key within `idempotency_window_secs` gets the first publish's answer and publishes
/// nothing. The engine keeps the keys when it can (Redis, across nodes); otherwise this node
/// remembers them (and the durable store restores them after a restart).
pub fn publish_keyed(
    state: &AppState,
    channel: &ChannelName,
    data: &RawValue,
    event: Option<&str>,
    key: Option<&str>,
) -> Result<Accepted, ApiError> {
    let publish = |key: Option<&str>| publish_one(state, channel, data, event, key);
    let Some(key) = key else { return publish(None) };
    if key.is_empty() || key.len() > 256 {
        return Err(ApiError::new(ErrorCode::BadRequest, "idempotency_key must be 1-256 bytes"));
    }
    if state.engine.keeps_idempotency_keys() {
        return publish(Some(key));
    }
    let now = now_ms();
    // One lock for every keyed publish, held across the publish so that two concurrent
    // retries publish once. Publishes without a key never take it.
    let mut entries = state.idempotency.entries.lock();
    let cache_key = (channel.clone(), key.to_owned());
    if let Some((result, _, seq)) = entries.get(&cache_key, now) {
        // A retry: the first publish's answer, once that publish is durable.
        return Ok(Accepted::Local { body: result.clone(), seq: *seq });
    }
    let Accepted::Local { body, seq } = publish(Some(key))? else {
        return Err(ApiError::new(ErrorCode::Internal, "a local publish went to the shared engine"));
    };
    let expires = now + state.config.idempotency_window_secs * 1000;
    entries.insert(cache_key, (body.clone(), expires, seq), now);
    Ok(Accepted::Local { body, seq })
}
