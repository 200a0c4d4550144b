//! Presence shared across nodes: each node writes its own members to Redis, with an expiry it
//! keeps pushing back while they stay, and announces joins and leaves on the channel's feed so
//! that subscribers on every node get them.
//!
//! Per channel `c`: `<prefix>{c}:pm` (a hash: client → member JSON) and `<prefix>{c}:pe` (a
//! sorted set: client → expiry, ms). A member of a node that dies without a word disappears
//! when its expiry passes ([`MEMBER_TTL`]); no `leave` is pushed for it.

use std::{collections::HashMap, hash::BuildHasher, sync::Weak, time::Duration};

use bytes::Bytes;
use herald_core::{ChannelName, ProtocolError};
use tokio::sync::mpsc;

use super::Cluster;
use crate::{presence::Change, slice::SLICES};

/// How long a member stays listed without its node refreshing it.
pub(super) const MEMBER_TTL: Duration = Duration::from_secs(60);
/// How often a node refreshes each of its members' expiry: one slice of the channels per
/// `REFRESH_EVERY / SLICES`, so that the refresh never sends every member's command at once
/// (they share the connection that publishes).
const REFRESH_EVERY: Duration = Duration::from_secs(20);
/// The first byte of a feed payload that carries a join or leave push, not a message.
pub(super) const PUSH_MARK: u8 = b'!';

/// Adds a member (and publishes its join push, if any): `KEYS` hash, expiries; `ARGV`
/// client, member JSON, expiry (ms), key TTL (ms), feed, push payload (empty: none).
const JOIN: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if ARGV[6] ~= '' then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
return 1
";

/// Removes a member (and publishes its leave push, if any): `KEYS` hash, expiries; `ARGV`
/// client, feed, push payload (empty: none).
const LEAVE: &str = r"
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return 1
";

/// Drops expired members and lists the rest: `KEYS` hash, expiries; `ARGV` now (ms).
const LIST: &str = r"
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, client in ipairs(expired) do redis.call('HDEL', KEYS[1], client) end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1]) end
return redis.call('HGETALL', KEYS[1])
";

/// The node's own members per channel (client → member JSON), to refresh, by slice.
struct Local {
    slices: Vec<HashMap<ChannelName, HashMap<String, String>>>,
    hasher: foldhash::fast::RandomState,
}

// === impl Local ===

impl Local {
    fn new() -> Self {
        Self { slices: (0..SLICES).map(|_| HashMap::new()).collect(), hasher: Default::default() }
    }

    /// The members of the slice `channel` belongs to.
    fn slice_of(&mut self, channel: &ChannelName) -> &mut HashMap<ChannelName, HashMap<String, String>> {
        &mut self.slices[(self.hasher.hash_one(channel) as usize) % SLICES]
    }

    fn join(&mut self, channel: &ChannelName, client: String, json: String) {
        self.slice_of(channel).entry(channel.clone()).or_default().insert(client, json);
    }

    fn leave(&mut self, channel: &ChannelName, client: &str) {
        let slice = self.slice_of(channel);
        if let Some(members) = slice.get_mut(channel) {
            members.remove(client);
            if members.is_empty() {
                slice.remove(channel);
            }
        }
    }
}

/// Writes the broker's presence changes to Redis and refreshes the node's members until the
/// cluster is dropped.
pub(super) async fn run(cluster: Weak<Cluster>, mut changes: mpsc::UnboundedReceiver<Change>) {
    let mut local = Local::new();
    let mut refresh = tokio::time::interval(REFRESH_EVERY / SLICES as u32);
    let mut slices = (0..SLICES).cycle();
    loop {
        tokio::select! {
            change = changes.recv() => {
                let (Some(change), Some(c)) = (change, cluster.upgrade()) else { return };
                if let Err(e) = apply(&c, &mut local, &change).await {
                    tracing::debug!(channel = %change.channel, error = %e.message, "presence change not written; the refresh retries");
                }
            }
            _ = refresh.tick() => {
                let Some(c) = cluster.upgrade() else { return };
                let slice = &local.slices[slices.next().expect("the slices cycle")];
                let refreshes = slice
                    .iter()
                    .flat_map(|(channel, members)| members.iter().map(move |(client, json)| (channel, client, json)))
                    .map(|(channel, client, json)| join(&c, channel, client, json, ""));
                futures_util::future::join_all(refreshes).await;
            }
        }
    }
}

async fn apply(c: &Cluster, local: &mut Local, change: &Change) -> Result<(), ProtocolError> {
    let channel = &change.channel;
    let client = change.member.client.clone();
    let announce = c.config.rules(channel).join_leave;
    let push = |kind: &str| match announce {
        true => push_payload(&c.node, &change.member.push(kind, channel)),
        false => String::new(),
    };
    if change.joined {
        let json = change.member.to_json().to_string();
        local.join(channel, client.clone(), json.clone());
        return join(c, channel, &client, &json, &push("join")).await;
    }
    local.leave(channel, &client);
    let mut invocation = c.presence_scripts.leave.prepare_invoke();
    invocation
        .key(c.keys.presence_members(channel))
        .key(c.keys.presence_expiries(channel))
        .arg(&client)
        .arg(c.keys.feed(channel))
        .arg(push("leave"));
    c.timed(c.commands.invoke::<i64>(&invocation)).await.map(drop)
}

async fn join(c: &Cluster, channel: &ChannelName, client: &str, json: &str, push: &str) -> Result<(), ProtocolError> {
    let ttl = MEMBER_TTL.as_millis() as u64;
    let mut invocation = c.presence_scripts.join.prepare_invoke();
    invocation
        .key(c.keys.presence_members(channel))
        .key(c.keys.presence_expiries(channel))
        .arg(client)
        .arg(json)
        .arg(crate::now_ms() + ttl)
        .arg(ttl * 2)
        .arg(c.keys.feed(channel))
        .arg(push);
    c.timed(c.commands.invoke::<i64>(&invocation)).await.map(drop)
}

/// Every node's members of `channel`, ordered by client id.
pub(super) async fn list(c: &Cluster, channel: &ChannelName) -> Result<Vec<serde_json::Value>, ProtocolError> {
    let mut invocation = c.presence_scripts.list.prepare_invoke();
    invocation.key(c.keys.presence_members(channel)).key(c.keys.presence_expiries(channel)).arg(crate::now_ms());
    let flat: Vec<String> = c.read(&invocation).await?;
    let mut members: Vec<(&String, serde_json::Value)> =
        flat.chunks_exact(2).filter_map(|pair| Some((&pair[0], serde_json::from_str(&pair[1]).ok()?))).collect();
    members.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(b.0)));
    Ok(members.into_iter().map(|(_, m)| m).collect())
}

/// A feed payload carrying `push` from node `node`.
fn push_payload(node: &str, push: &Bytes) -> String {
    format!("{}{node}\n{}", PUSH_MARK as char, String::from_utf8_lossy(push))
}

/// The push a feed payload carries, unless it came from node `ours` (whose own subscribers
/// got it from the broker already). `None` for anything else.
pub(super) fn foreign_push(payload: &[u8], ours: &str) -> Option<Option<Bytes>> {
    let rest = payload.strip_prefix(&[PUSH_MARK])?;
    let newline = rest.iter().position(|b| *b == b'\n')?;
    let (node, push) = (&rest[..newline], &rest[newline + 1..]);
    Some((node != ours.as_bytes()).then(|| Bytes::copy_from_slice(push)))
}

/// The presence scripts.
pub(super) struct Scripts {
    join: redis::Script,
    leave: redis::Script,
    list: redis::Script,
}

impl Scripts {
    /// The scripts, publishing pushes with `publish_command`.
    pub(super) fn new(publish_command: &str) -> Self {
        let with = |script| redis::Script::new(&super::scripts::with_publish_command(script, publish_command));
        Self { join: with(JOIN), leave: with(LEAVE), list: redis::Script::new(LIST) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_from_other_nodes_are_delivered_and_our_own_are_not() {
        let payload = push_payload("n1", &Bytes::from_static(br#"{"type":"join"}"#));
        assert_eq!(foreign_push(payload.as_bytes(), "n2"), Some(Some(Bytes::from_static(br#"{"type":"join"}"#))));
        assert_eq!(foreign_push(payload.as_bytes(), "n1"), Some(None));
        assert_eq!(foreign_push(b"epoch\n1\n2\n\n3", "n1"), None, "a message payload is not a push");
    }

    #[test]
    fn one_cycle_of_refresh_slices_covers_every_member_once_a_slice_at_a_time() {
        let mut local = Local::new();
        for i in 0..500 {
            let channel = ChannelName::new(&format!("room:{i}")).unwrap();
            local.join(&channel, "c1".into(), "{}".into());
            local.join(&channel, "c2".into(), "{}".into());
        }
        let gone = ChannelName::new("room:0").unwrap();
        local.leave(&gone, "c1");
        local.leave(&gone, "c2");
        let per_slice: Vec<usize> = local.slices.iter().map(|s| s.values().map(HashMap::len).sum()).collect();
        assert_eq!(per_slice.iter().sum::<usize>(), 998, "each member is in exactly one slice");
        assert!(per_slice.iter().all(|n| *n < 998 / 4), "no slice refreshes the bulk at once: {per_slice:?}");
        assert!(local.slices.iter().all(|s| !s.contains_key(&gone)), "a channel whose members left is not refreshed");
    }
}
