//! Presence: who is subscribed to a channel, one entry per connection, and the `join` /
//! `leave` pushes. Entries live beside the subscriptions in the broker (see
//! [`crate::broker::Broker::presence`]), so a member is listed exactly while it is subscribed.

use std::sync::Arc;

use bytes::Bytes;
use herald_auth::Identity;
use herald_core::{ChannelName, protocol::encode};
use serde_json::json;

/// One connection as presence shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// The connection id, as a string (`client` in the JSON).
    pub client: String,
    /// The token's user id; empty for an anonymous connection.
    pub user: String,
    /// The token's public `info`.
    pub info: Option<serde_json::Value>,
}

// === impl Member ===

impl Member {
    /// The member for connection `id` with `identity` (`None`: anonymous).
    pub fn new(id: u64, identity: Option<&Identity>) -> Self {
        Self {
            client: id.to_string(),
            user: identity.map(|i| i.user.clone()).unwrap_or_default(),
            info: identity.and_then(|i| i.info.clone()),
        }
    }

    /// `{"client":…,"user":…,"info":…?}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut entry = json!({ "client": self.client, "user": self.user });
        if let Some(info) = &self.info {
            entry["info"] = info.clone();
        }
        entry
    }

    /// The `join` or `leave` push (`kind`) for this member in `channel`.
    pub fn push(&self, kind: &str, channel: &ChannelName) -> Bytes {
        let mut push = self.to_json();
        push["type"] = json!(kind);
        push["channel"] = json!(channel.as_str());
        Bytes::from(encode(&push))
    }
}

/// A subscription entering or leaving presence, as the broker reports it to the Redis engine
/// (which shares presence across nodes).
#[derive(Clone, Debug)]
pub struct Change {
    /// The channel.
    pub channel: ChannelName,
    /// The member.
    pub member: Arc<Member>,
    /// True when it joined, false when it left.
    pub joined: bool,
}

/// `{"channel":…,"members":[…]}`, the answer of the presence API and WebSocket op.
pub fn presence_body(channel: &ChannelName, members: &[Arc<Member>]) -> serde_json::Value {
    members_body(channel, &members.iter().map(|m| m.to_json()).collect::<Vec<_>>())
}

/// `{"channel":…,"members":[…]}` from members already in JSON.
pub fn members_body(channel: &ChannelName, members: &[serde_json::Value]) -> serde_json::Value {
    json!({ "channel": channel.as_str(), "members": members })
}
