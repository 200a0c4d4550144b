//! The engine seam: where a channel's messages get their place (epoch and offset) and where
//! its history and presence live. The HTTP API and the transports talk to [`Engine`] only;
//! three engines implement it:
//!
//! - [`Memory`]: this node's broker, nothing kept across a restart (a restart is a new epoch);
//! - [`Durable`]: the broker over the durable store (`data_dir`): a publish is answered once
//!   its record is on disk, and a restart resumes every channel's epoch and offsets;
//! - [`Redis`]: Redis owns every channel's place, history and presence, shared by every node;
//!   this node's broker mirrors the channels its clients subscribe to.
//!
//! Engines answer at once where they can ([`Answer::Ready`]: the memory and durable engines
//! never wait to read) and later where they must ([`Answer::Later`]: a Redis round trip), so the
//! local paths box nothing.

mod local;
#[cfg(test)]
mod paused_time;
mod redis;

use std::{future::Future, pin::Pin, sync::Arc};

#[cfg(doc)]
use herald_core::streams::OpenStream;
use herald_core::{ChannelName, HistoryQuery, ProtocolError, StreamPosition, streams::Delta};
use serde_json::value::RawValue;

pub use self::{
    local::{Durable, Memory},
    redis::Redis,
};
use crate::publication::Message;

/// A result an engine delivers later.
pub type EngineFuture<T> = Pin<Box<dyn Future<Output = Result<T, ProtocolError>> + Send>>;

/// An engine's answer: now, or once it has asked elsewhere.
pub enum Answer<T> {
    /// Known at once.
    Ready(Result<T, ProtocolError>),
    /// Known once the future resolves.
    Later(EngineFuture<T>),
}

/// A published message's place, and what its publisher's answer waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The channel's epoch.
    pub epoch: Arc<str>,
    /// The message's offset.
    pub offset: u64,
    /// The store sequence to wait for with [`Engine::wait_durable`] before answering (0:
    /// nothing to wait for).
    pub seq: u64,
}

/// A channel a subscriber asks for, with its position in it, if any.
pub type Wanted = (ChannelName, Option<StreamPosition>);

/// Where messages get their place, and history and presence live.
///
/// Every engine promises:
/// - publish and history append are atomic per channel: offsets are given in publish order,
///   one after the other, and never given twice within an epoch;
/// - a channel's epoch changes only when positions of the old one stopped naming the same
///   messages (docs/protocol.md §1): a subscriber at a position of the current epoch at or
///   below the channel's offset recovers exactly the messages after it that history holds;
/// - an engine that cannot answer says so (`engine_unavailable`, `shutting_down`), never with
///   a wrong answer.
pub trait Engine: Send + Sync {
    /// `"memory"`, `"disk"` or `"redis"`, as `/api/info` names it.
    fn name(&self) -> &'static str;

    /// Publishes `data` (an `event`, if given) to `channel`. With `key` the engine keeps the
    /// idempotency key itself, when [`Engine::keeps_idempotency_keys`] says so: a repeat
    /// within the idempotency window then returns the first publish's place and publishes
    /// nothing. Live subscribers on this node get the message at once (memory, durable) or
    /// once Redis's feed brings it (Redis).
    fn publish(&self, channel: &ChannelName, data: &RawValue, event: Option<&str>, key: Option<&str>)
    -> Answer<Placed>;

    /// Resolves once the publish with store sequence `seq` is durable. Default: at once (an
    /// engine without a store).
    fn wait_durable(&self, _seq: u64) -> Answer<()> {
        Answer::Ready(Ok(()))
    }

    /// Whether the engine keeps idempotency keys atomically with the publish (Redis). When
    /// not, the caller remembers keyed publishes for the idempotency window. Default: not.
    fn keeps_idempotency_keys(&self) -> bool {
        false
    }

    /// `channel`'s current position and the messages of `query` that its history holds.
    fn history(&self, channel: &ChannelName, query: &HistoryQuery) -> Answer<(StreamPosition, Vec<Message>)>;

    /// `channel`'s presence answer (`{"channel","members":[…]}`): every node's members.
    fn presence(&self, channel: &ChannelName) -> Answer<serde_json::Value>;

    /// Whether this node's broker can subscribe a client to `channel` from `since` right now:
    /// with Redis, once the channel is mirrored and in line with `since` (touching it, so that
    /// it stays mirrored). Default: always (the broker holds the channel itself).
    fn in_line(&self, _channel: &ChannelName, _since: Option<&StreamPosition>) -> bool {
        true
    }

    /// Whether subscribers must wait for [`Engine::prepare`] before they subscribe (Redis).
    /// Default: not (`prepare` is ready at once and `in_line` always true).
    fn mirrors(&self) -> bool {
        false
    }

    /// Brings every channel of `wanted` in line (see [`Engine::in_line`]) before a subscribe.
    /// Default: in line already.
    fn prepare(&self, _wanted: Vec<Wanted>) -> Answer<()> {
        Answer::Ready(Ok(()))
    }

    /// Whether the broker's idle channels are this node's to forget (the Redis engine's feed
    /// drops its mirrors itself, and unsubscribes them from Redis). Default: they are.
    fn sweeps_idle_channels(&self) -> bool {
        true
    }

    /// Opens a stream in `channel` for a message of `event` (token streams, docs/protocol.md
    /// §1): its pieces reach the channel's subscribers as they are appended, and a subscriber
    /// that joins while it is open gets the text so far. With `json` it holds JSON items, not
    /// text. Returns its id.
    fn stream_start(&self, channel: &ChannelName, event: Option<&str>, json: bool) -> Answer<Arc<str>>;

    /// Appends `delta` to stream `id` of `channel` (refused when not of the stream's kind);
    /// returns the append's `seq`. Appends are numbered in the order the engine applied them,
    /// without gaps.
    fn stream_append(&self, channel: &ChannelName, id: &str, delta: Delta<'_>) -> Answer<u64>;

    /// Finishes stream `id` of `channel`: closes it and publishes its text as one message
    /// ([`OpenStream::message_data`]) — atomically, so that subscribers see every piece, then
    /// the message, and a stream is never closed without its message. Returns the message's
    /// place, as [`Engine::publish`] does.
    fn stream_finish(&self, channel: &ChannelName, id: &str) -> Answer<Placed>;

    /// Closes stream `id` of `channel` without a message, telling its subscribers.
    fn stream_abort(&self, channel: &ChannelName, id: &str) -> Answer<()>;

    /// `/readyz`: whether the engine can serve (`shutting_down` once the data directory can no
    /// longer be written; `engine_unavailable` while Redis is not in line). Default: it can.
    fn readiness(&self) -> Result<(), ProtocolError> {
        Ok(())
    }

    /// The engine's part of `/api/info`: `{"engine","store","redis"}`.
    fn describe(&self) -> serde_json::Value;
}

// === impl Answer ===

impl<T> Answer<T> {
    /// The answer, waiting for it when it comes later.
    pub async fn get(self) -> Result<T, ProtocolError> {
        match self {
            Self::Ready(result) => result,
            Self::Later(future) => future.await,
        }
    }
}
