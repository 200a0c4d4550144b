//! What Herald keeps in Redis and how: key names, the two Lua scripts, and the pub/sub payload.
//!
//! Per channel `c` (the `{c}` hash tag keeps a channel's keys in one Redis Cluster slot):
//! - `<prefix>{c}:m` — a hash: `epoch` and `offset` (the latest assigned offset);
//! - `<prefix>{c}:h` — a stream of the channel's history, entry id `0-<offset>`, fields `t`
//!   (publish time, ms), `e` (event, empty for none), `d` (the data JSON), capped by count;
//! - `<prefix>{c}:k:<key>` — an idempotency key's result, `<epoch>:<offset>`, expiring after
//!   the idempotency window;
//! - `<prefix>{c}:pm`, `<prefix>{c}:pe` — presence (see [`super::presence`]);
//! - `<prefix>{c}:p` — the pub/sub channel every node that mirrors `c` subscribes to: message
//!   payloads, and join/leave pushes (marked with a leading `!`).
//!
//! The position hash expires `redis_channel_ttl_secs` after the channel's latest publish, the
//! history as soon as its newest entry passes the namespace's age limit (or with the position
//! hash, when that comes first); a channel whose position is gone starts a new epoch on its next
//! publish or subscribe (and its history is cleared with it, so that stream ids restart
//! cleanly).

use std::sync::Arc;

use herald_core::{ChannelName, StreamPosition, mirror::Snapshot};
use serde_json::value::RawValue;

use crate::publication::{Message, Publication};

/// The Lua that moves a channel to the epoch `ARGV[1]` when Redis is behind `seen_epoch` /
/// `seen_offset` (a position a node saw) in that epoch, because it lost writes it had
/// acknowledged. The move keeps the lineage in the position hash: `prev`, the epoch it took
/// over from, and `cut`, the last offset of it Redis still has. Positions of `prev` up to `cut`
/// name the same messages in the new epoch, so they still resume; later ones get a reset.
/// Expects `epoch` (the current one) and sets it to the new one.
macro_rules! move_if_behind {
    () => {
        r"
  if seen_epoch and epoch == seen_epoch then
    local have = redis.call('HGET', KEYS[1], 'offset')
    if tonumber(have) < tonumber(seen_offset) then
      redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'prev', epoch, 'cut', have)
      epoch = ARGV[1]
    end
  end"
    };
}

/// Assigns the next offset, appends to history (capped by count, and by age: entries older
/// than `ARGV[9]` leave, and the whole history expires `ARGV[10]` ms after its newest entry),
/// publishes to the nodes and records the idempotency key — atomically, as one script. Returns
/// `{epoch, offset, duplicate}` (as strings); a known idempotency key returns its first result
/// with `duplicate` = `"1"`.
///
/// `ARGV[11]` and `ARGV[12]`, when given, are the position the publishing node's mirror holds:
/// a Redis behind it in that epoch lost acknowledged writes, and the channel moves to the epoch
/// `ARGV[1]` before the offset is assigned (as in [`SNAPSHOT`]), so that a publish made before
/// the node's feed has caught up after a Redis restart never reissues a lost offset.
pub(super) const PUBLISH: &str = concat!(
    r"
if KEYS[3] then
  local prev = redis.call('GET', KEYS[3])
  if prev then
    local sep = string.find(prev, ':', 1, true)
    return {string.sub(prev, 1, sep - 1), string.sub(prev, sep + 1), '1'}
  end
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
else
  local seen_epoch, seen_offset = ARGV[11], ARGV[12]
",
    move_if_behind!(),
    r"
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
if tonumber(ARGV[5]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[5], '0-' .. offset, 't', ARGV[2], 'e', ARGV[3], 'd', ARGV[4])
  local oldest_kept = tonumber(ARGV[9])
  if oldest_kept > 0 then
    -- Entries past the age limit leave from the front (a bounded number per publish).
    for _ = 1, 64 do
      local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
      if not first or tonumber(first[2][2]) >= oldest_kept then break end
      redis.call('XDEL', KEYS[2], first[1])
    end
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[10])
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PUBLISH', ARGV[7], epoch .. '\n' .. offset .. '\n' .. ARGV[2] .. '\n' .. ARGV[3] .. '\n' .. ARGV[4])
if KEYS[3] then
  redis.call('SET', KEYS[3], epoch .. ':' .. offset, 'PX', ARGV[8])
end
return {epoch, tostring(offset), '0'}
"
);

/// Reads a channel's position, its lineage and up to `ARGV[2]` latest history entries, oldest
/// first: `{epoch, offset, prev, cut, (offset, time, event, data)…}` as strings (`prev` empty
/// when the epoch took over from none). A channel unknown to Redis is
/// created at offset 0 in the epoch `ARGV[1]`, so that subscribers and publishers agree on it.
///
/// `ARGV[4]` and `ARGV[5]`, when given, are the position the asking node last saw. A Redis in
/// that epoch but behind that offset lost writes it had acknowledged (a restart from an AOF
/// missing its last second, a failover to a replica that lagged) and would issue those offsets
/// again for other messages: the channel moves to the epoch `ARGV[1]` at the offset Redis has,
/// atomically, so that every client of the old epoch past that offset gets a reset, never
/// someone else's messages under its old offsets (see [`move_if_behind`]).
pub(super) const SNAPSHOT: &str = concat!(
    r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  local seen_epoch, seen_offset = ARGV[4], ARGV[5]
",
    move_if_behind!(),
    r"
end
local lineage = redis.call('HMGET', KEYS[1], 'offset', 'prev', 'cut')
local out = {epoch, lineage[1], lineage[2] or '', lineage[3] or '0'}
if tonumber(ARGV[2]) > 0 then
  local entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[2])
  for i = #entries, 1, -1 do
    local f = entries[i][2]
    table.insert(out, string.sub(entries[i][1], 3))
    table.insert(out, f[2])
    table.insert(out, f[4])
    table.insert(out, f[6])
  end
end
return out
"
);

/// `script` with its `PUBLISH` calls made with `command` (`SPUBLISH` on a Redis Cluster).
pub(super) fn with_publish_command(script: &str, command: &str) -> String {
    script.replace("redis.call('PUBLISH'", &format!("redis.call('{command}'"))
}

/// Names of a channel's keys and pub/sub channel under one prefix.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    prefix: Arc<str>,
}

// === impl Keys ===

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Self { prefix: Arc::from(prefix) }
    }

    /// The position hash.
    pub(super) fn meta(&self, channel: &ChannelName) -> String {
        format!("{}{{{channel}}}:m", self.prefix)
    }

    /// The history stream.
    pub(super) fn history(&self, channel: &ChannelName) -> String {
        format!("{}{{{channel}}}:h", self.prefix)
    }

    /// An idempotency key's record.
    pub(super) fn idempotency(&self, channel: &ChannelName, key: &str) -> String {
        format!("{}{{{channel}}}:k:{key}", self.prefix)
    }

    /// The presence hash (client → member JSON).
    pub(super) fn presence_members(&self, channel: &ChannelName) -> String {
        format!("{}{{{channel}}}:pm", self.prefix)
    }

    /// The presence expiries (client → expiry, ms).
    pub(super) fn presence_expiries(&self, channel: &ChannelName) -> String {
        format!("{}{{{channel}}}:pe", self.prefix)
    }

    /// The pub/sub channel.
    pub(super) fn feed(&self, channel: &ChannelName) -> String {
        format!("{}{{{channel}}}:p", self.prefix)
    }

    /// The channel a pub/sub channel name belongs to.
    pub(super) fn channel_of_feed(&self, feed: &str) -> Option<ChannelName> {
        let name = feed.strip_prefix(&*self.prefix)?.strip_prefix('{')?.strip_suffix("}:p")?;
        ChannelName::new(name).ok()
    }
}

/// Decodes a pub/sub payload (`epoch \n offset \n time \n event \n data`, as [`PUBLISH`]
/// writes it) into the message it announces.
pub(super) fn decode_payload(channel: &ChannelName, payload: &[u8]) -> Option<Message> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(5, '\n');
    let epoch = parts.next()?;
    let offset: u64 = parts.next()?.parse().ok()?;
    let time_ms: u64 = parts.next()?.parse().ok()?;
    let event = parts.next()?;
    let data = parts.next()?;
    message(channel, epoch, offset, time_ms, event, data)
}

/// Decodes a [`SNAPSHOT`] reply.
///
/// Entries up to the lineage's cut were published in the predecessor epoch and carry it.
pub(super) fn decode_snapshot(channel: &ChannelName, reply: &[String]) -> Option<Snapshot<Message>> {
    let [epoch, offset, prev, cut, rest @ ..] = reply else { return None };
    let position = StreamPosition { epoch: Arc::from(epoch.as_str()), offset: offset.parse().ok()? };
    let predecessor = match prev.as_str() {
        "" => None,
        prev => Some((Arc::<str>::from(prev), cut.parse().ok()?)),
    };
    let mut entries = Vec::with_capacity(rest.len() / 4);
    for entry in rest.chunks_exact(4) {
        let [offset, time, event, data] = entry else { return None };
        let (offset, time_ms) = (offset.parse().ok()?, time.parse().ok()?);
        let published_in = match &predecessor {
            Some((prev, cut)) if offset <= *cut => prev,
            _ => &position.epoch,
        };
        entries.push((offset, time_ms, message(channel, published_in, offset, time_ms, event, data)?));
    }
    Some(Snapshot { position, entries, predecessor })
}

fn message(channel: &ChannelName, epoch: &str, offset: u64, time_ms: u64, event: &str, data: &str) -> Option<Message> {
    let data: &RawValue = serde_json::from_str(data).ok()?;
    let position = StreamPosition { epoch: Arc::from(epoch), offset };
    let event = Some(event).filter(|e| !e.is_empty());
    Some(Publication::new(channel.clone(), &position, event, data, time_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_names_round_trip_and_foreign_names_are_ignored() {
        let keys = Keys::new("herald:");
        let channel = ChannelName::new("chat:room-1").unwrap_or_else(|_| unreachable!());
        assert_eq!(keys.feed(&channel), "herald:{chat:room-1}:p");
        assert_eq!(keys.channel_of_feed(&keys.feed(&channel)), Some(channel));
        assert_eq!(keys.channel_of_feed("other:{chat}:p"), None);
        assert_eq!(keys.channel_of_feed("herald:{bad name}:p"), None);
    }

    #[test]
    fn payloads_decode_with_newlines_in_the_data_and_reject_garbage() {
        let channel = ChannelName::new("c").unwrap_or_else(|_| unreachable!());
        let m = decode_payload(&channel, b"ep\n7\n1000\nnews\n{\"a\":\n1}").unwrap_or_else(|| unreachable!());
        assert_eq!((m.offset, &*m.epoch, m.event.as_deref(), m.time_ms), (7, "ep", Some("news"), 1000));
        let plain = decode_payload(&channel, b"ep\n8\n1000\n\n\"x\"").unwrap_or_else(|| unreachable!());
        assert_eq!(plain.event, None);
        assert!(decode_payload(&channel, b"ep\nseven\n1000\n\n1").is_none());
        assert!(decode_payload(&channel, b"ep\n7\n1000\n\nnot json").is_none());
    }
}
