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

use herald_core::{ChannelName, StreamPosition, mirror::Snapshot, streams::OpenStream};
use serde_json::value::RawValue;

use crate::publication::{Message, Publication};

/// The Lua that moves a channel to the epoch `ARGV[1]` when Redis is behind `seen_epoch` /
/// `seen_offset` (a position a node saw) in that epoch, because it lost writes it had
/// acknowledged. The move keeps the lineage in the position hash: `prev`, the epoch it took
/// over from, and `cut`, the last offset of it Redis still has. Positions of `prev` up to `cut`
/// name the same messages in the new epoch, so they still resume; later ones get a reset.
/// Expects the locals `meta` (the position hash), `new_epoch`, `seen_epoch`, `seen_offset`
/// and `epoch` (the current one), and sets `epoch` to the new one.
macro_rules! move_if_behind {
    () => {
        r"
  if seen_epoch and epoch == seen_epoch then
    local have = redis.call('HGET', meta, 'offset')
    if tonumber(have) < tonumber(seen_offset) then
      redis.call('HSET', meta, 'epoch', new_epoch, 'prev', epoch, 'cut', have)
      epoch = new_epoch
    end
  end"
    };
}

/// The Lua that places a message and tells the nodes, shared by [`PUBLISH`] and [`FINISH`],
/// whose first seven `ARGV` are the same ([`Cluster::place_args`](super::Cluster)): the new
/// epoch, the time, the history size, the channel TTL, the feed, the oldest publish time kept
/// and the history TTL. It assigns the channel's next offset (starting the epoch `new_epoch`
/// for a channel Redis does not know, or moving to it, see [`move_if_behind`]), appends to
/// history (capped by `size` entries, entries published before `oldest_kept` leave, and the
/// whole history expires `history_ttl` ms after its newest entry), renews the position's
/// `channel_ttl` and publishes the payload on `feed`. Expects the locals `meta`, `history`,
/// `event`, `data`, `seen_epoch` and `seen_offset`; defines `epoch` and `offset`.
macro_rules! place_and_publish {
    () => {
        concat!(
            r"
local new_epoch, time, size, channel_ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local feed, oldest_kept, history_ttl = ARGV[5], ARGV[6], ARGV[7]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = new_epoch
  redis.call('DEL', history)
  redis.call('HSET', meta, 'epoch', epoch, 'offset', 0)
else",
            move_if_behind!(),
            r"
end
local offset = redis.call('HINCRBY', meta, 'offset', 1)
if tonumber(size) > 0 then
  redis.call('XADD', history, 'MAXLEN', size, '0-' .. offset, 't', time, 'e', event, 'd', data)
  if tonumber(oldest_kept) > 0 then
    -- Entries past the age limit leave from the front (a bounded number per publish).
    for _ = 1, 64 do
      local first = redis.call('XRANGE', history, '-', '+', 'COUNT', 1)[1]
      if not first or tonumber(first[2][2]) >= tonumber(oldest_kept) then break end
      redis.call('XDEL', history, first[1])
    end
  end
  redis.call('PEXPIRE', history, history_ttl)
end
redis.call('PEXPIRE', meta, channel_ttl)
redis.call('PUBLISH', feed, epoch .. '\n' .. offset .. '\n' .. time .. '\n' .. event .. '\n' .. data)
"
        )
    };
}

/// The Lua function `open_stream(index, id, entry)`: the kind (`t` text, `j` JSON) and event
/// (empty for none) of stream `id`, as one string, when its entry in the index hash
/// (`<touched ms>\n<kind><event>`) is there and was touched less than `idle` ms before `now`
/// (locals it expects); `nil` otherwise, removing an idle entry.
macro_rules! open_stream {
    () => {
        r"
local function open_stream(index, id, entry)
  if not entry then return nil end
  local sep = string.find(entry, '\n', 1, true)
  if now - tonumber(string.sub(entry, 1, sep - 1)) >= idle then
    redis.call('HDEL', index, id)
    return nil
  end
  return string.sub(entry, sep + 1)
end
"
    };
}

/// Assigns the next offset, appends to history, publishes to the nodes and records the
/// idempotency key — atomically, as one script. `ARGV[1..=7]` as [`place_and_publish`] reads
/// them, then the event, the data and the idempotency window (ms). Returns `{epoch, offset,
/// duplicate}` (as strings); a known idempotency key returns its first result with `duplicate`
/// = `"1"`.
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
local meta, history, event, data = KEYS[1], KEYS[2], ARGV[8], ARGV[9]
local seen_epoch, seen_offset = ARGV[11], ARGV[12]
",
    place_and_publish!(),
    r"
if KEYS[3] then
  redis.call('SET', KEYS[3], epoch .. ':' .. offset, 'PX', ARGV[10])
end
return {epoch, tostring(offset), '0'}
"
);

/// Starts (`ARGV[1]` = `s`), appends to (`a`) or aborts (`x`) stream `ARGV[2]` of a channel,
/// and tells the nodes on the feed `ARGV[5]` (see [`decode_stream_payload`]). `KEYS`: the
/// channel's stream index, the stream's text and its ends (see [`Keys::stream`]). `ARGV[3]` is
/// the time (ms) and `ARGV[4]` the idle limit: a stream not touched for that long is gone.
/// `ARGV[6]` is the limit — open streams per channel to start one, bytes of text to append.
/// To start: `ARGV[7]` the event, `ARGV[8]` the kind (`t` text, `j` JSON). To append: the
/// piece as a text stream holds it (`ARGV[7]`) and as a JSON stream does (`ARGV[8]`), and
/// which of them are valid (`ARGV[9]`: `t`, `j` or `tj`). Returns `{"ok", seq}` or `{reason}`:
/// `unknown`, `too_many`, `too_long`, `kind_t` (a text stream), `kind_j` (a JSON stream).
pub(super) const STREAM: &str = concat!(
    r"
local op, id, now, idle = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local index, feed = KEYS[1], ARGV[5]
",
    open_stream!(),
    r"
if op == 's' then
  local entries = redis.call('HGETALL', index)
  local open = 0
  for i = 1, #entries, 2 do
    if open_stream(index, entries[i], entries[i + 1]) then open = open + 1 end
  end
  if open >= tonumber(ARGV[6]) then return {'too_many'} end
  redis.call('HSET', index, id, now .. '\n' .. ARGV[8] .. ARGV[7])
  redis.call('PEXPIRE', index, idle)
  redis.call('PUBLISH', feed, '~s\n' .. id .. '\n0\n' .. ARGV[7] .. '\n' .. ARGV[8])
  return {'ok', '0'}
end
local stream = open_stream(index, id, redis.call('HGET', index, id))
if not stream then return {'unknown'} end
local kind, event = string.sub(stream, 1, 1), string.sub(stream, 2)
if op == 'a' then
  if not string.find(ARGV[9], kind, 1, true) then return {'kind_' .. kind} end
  local delta = ARGV[7]
  if kind == 'j' then delta = ARGV[8] end
  if redis.call('STRLEN', KEYS[2]) + #delta > tonumber(ARGV[6]) then return {'too_long'} end
  local seq = redis.call('RPUSH', KEYS[3], redis.call('APPEND', KEYS[2], delta))
  redis.call('HSET', index, id, now .. '\n' .. stream)
  redis.call('PEXPIRE', index, idle)
  -- The index decides whether the stream is open; its keys outlive it, against clock skew.
  redis.call('PEXPIRE', KEYS[2], 2 * idle)
  redis.call('PEXPIRE', KEYS[3], 2 * idle)
  redis.call('PUBLISH', feed, '~a\n' .. id .. '\n' .. seq .. '\n' .. event .. '\n' .. delta)
  return {'ok', tostring(seq)}
end
local seq = redis.call('LLEN', KEYS[3])
redis.call('HDEL', index, id)
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('PUBLISH', feed, '~x\n' .. id .. '\n' .. seq .. '\n' .. event .. '\n')
return {'ok', tostring(seq)}
"
);

/// Finishes stream `ARGV[8]`: closes it (telling the nodes with `~f`, no push of its own) and
/// publishes its text as one message, `{"stream":<id>,"text":<text>}` (a JSON stream:
/// `{"stream":<id>,"items":[…]}`) — atomically, so a
/// stream is never closed without its message. `KEYS`: the position hash, the history, the
/// stream index, the stream's text and ends. `ARGV[1..=7]` as [`place_and_publish`] reads them,
/// then the stream id, the idle limit, and optionally the position the node saw (as for
/// [`PUBLISH`]). Returns
/// `{"ok", epoch, offset}` or `{"unknown"}`.
pub(super) const FINISH: &str = concat!(
    r"
local id, now, idle = ARGV[8], tonumber(ARGV[2]), tonumber(ARGV[9])
local feed = ARGV[5]
",
    open_stream!(),
    r#"
local stream = open_stream(KEYS[3], id, redis.call('HGET', KEYS[3], id))
if not stream then return {'unknown'} end
local kind, event = string.sub(stream, 1, 1), string.sub(stream, 2)
local text = redis.call('GET', KEYS[4]) or ''
local seq = redis.call('LLEN', KEYS[5])
redis.call('HDEL', KEYS[3], id)
redis.call('DEL', KEYS[4], KEYS[5])
local meta, history, data = KEYS[1], KEYS[2], nil
if kind == 'j' then
  -- Items are lines of compact JSON: the array is the lines joined by commas.
  data = '{"stream":"' .. id .. '","items":[' .. (string.gsub(string.sub(text, 1, -2), '\n', ',')) .. ']}'
else
  data = '{"stream":"' .. id .. '","text":' .. cjson.encode(text) .. '}'
end
local seen_epoch, seen_offset = ARGV[10], ARGV[11]
redis.call('PUBLISH', feed, '~f\n' .. id .. '\n' .. seq .. '\n' .. event .. '\n')
"#,
    place_and_publish!(),
    r"
return {'ok', epoch, tostring(offset)}
"
);

/// Reads a channel's position, its lineage, its open streams and up to `ARGV[2]` latest
/// history entries, oldest first: `{epoch, offset, prev, cut, streams, (id, kind_event, text,
/// ends)…, (offset, time, event, data)…}` as strings (`prev` empty when the epoch took over
/// from none; `streams` the number of open streams; `kind_event` the stream's kind, `t` or
/// `j`, then its event; `ends` where each append ends in the text, comma-separated). A channel unknown to Redis is created at offset 0 in the epoch `ARGV[1]`,
/// so that subscribers and publishers agree on it. `KEYS`: the position hash, the history and
/// the stream index; `ARGV[4]` is the prefix of the streams' keys, `ARGV[5]` the time (ms) and
/// `ARGV[6]` the streams' idle limit.
///
/// `ARGV[7]` and `ARGV[8]`, when given, are the position the asking node last saw. A Redis in
/// that epoch but behind that offset lost writes it had acknowledged (a restart from an AOF
/// missing its last second, a failover to a replica that lagged) and would issue those offsets
/// again for other messages: the channel moves to the epoch `ARGV[1]` at the offset Redis has,
/// atomically, so that every client of the old epoch past that offset gets a reset, never
/// someone else's messages under its old offsets (see [`move_if_behind`]).
pub(super) const SNAPSHOT: &str = concat!(
    r"
local meta, new_epoch, now, idle = KEYS[1], ARGV[1], tonumber(ARGV[5]), tonumber(ARGV[6])
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = new_epoch
  redis.call('DEL', KEYS[2])
  redis.call('HSET', meta, 'epoch', epoch, 'offset', 0)
  redis.call('PEXPIRE', meta, ARGV[3])
else
  local seen_epoch, seen_offset = ARGV[7], ARGV[8]
",
    move_if_behind!(),
    r"
end
local lineage = redis.call('HMGET', meta, 'offset', 'prev', 'cut')
local out = {epoch, lineage[1], lineage[2] or '', lineage[3] or '0', '0'}
",
    open_stream!(),
    r"
local entries = redis.call('HGETALL', KEYS[3])
for i = 1, #entries, 2 do
  local id = entries[i]
  local event = open_stream(KEYS[3], id, entries[i + 1])
  if event then
    local key = ARGV[4] .. id
    table.insert(out, id)
    table.insert(out, event)
    table.insert(out, redis.call('GET', key .. ':t') or '')
    table.insert(out, table.concat(redis.call('LRANGE', key .. ':n', 0, -1), ','))
    out[5] = tostring(tonumber(out[5]) + 1)
  end
end
if tonumber(ARGV[2]) > 0 then
  local history = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[2])
  for i = #history, 1, -1 do
    local f = history[i][2]
    table.insert(out, string.sub(history[i][1], 3))
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

    /// What every key starts with.
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
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

    /// The stream index: open stream id → `<touched ms>\n<event>`.
    pub(super) fn stream_index(&self, channel: &ChannelName) -> String {
        format!("{}{{{channel}}}:s", self.prefix)
    }

    /// What the names of a channel's stream keys start with (the stream's id follows).
    pub(super) fn stream_prefix(&self, channel: &ChannelName) -> String {
        format!("{}{{{channel}}}:s:", self.prefix)
    }

    /// A stream's text (a string) and its ends (a list: where each append ends in the text).
    pub(super) fn stream(&self, channel: &ChannelName, id: &str) -> [String; 2] {
        let prefix = self.stream_prefix(channel);
        [format!("{prefix}{id}:t"), format!("{prefix}{id}:n")]
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

/// A [`SNAPSHOT`] reply: the channel's position and history, and its open streams.
pub(super) struct Read {
    /// The position and history.
    pub(super) snapshot: Snapshot<Message>,
    /// The open streams.
    pub(super) streams: Vec<OpenStream>,
}

/// Decodes a [`SNAPSHOT`] reply.
///
/// Entries up to the lineage's cut were published in the predecessor epoch and carry it.
pub(super) fn decode_snapshot(channel: &ChannelName, reply: &[String]) -> Option<Read> {
    let [epoch, offset, prev, cut, streams, rest @ ..] = reply else { return None };
    let position = StreamPosition { epoch: Arc::from(epoch.as_str()), offset: offset.parse().ok()? };
    let predecessor = match prev.as_str() {
        "" => None,
        prev => Some((Arc::<str>::from(prev), cut.parse().ok()?)),
    };
    let (open, rest) = rest.split_at_checked(streams.parse::<usize>().ok()?.checked_mul(4)?)?;
    let now = crate::now_ms();
    let mut streams = Vec::with_capacity(open.len() / 4);
    for stream in open.chunks_exact(4) {
        let [id, kind_event, text, ends] = stream else { return None };
        let ends = ends.split(',').filter(|e| !e.is_empty()).map(str::parse).collect::<Result<_, _>>().ok()?;
        let (json, event) = (kind_event.starts_with('j'), kind_event.get(1..)?);
        let event = Some(event).filter(|e| !e.is_empty());
        streams.push(OpenStream::resumed(Arc::from(id.as_str()), event, json, text.clone(), ends, now)?);
    }
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
    Some(Read { snapshot: Snapshot { position, entries, predecessor }, streams })
}

/// An operation on a stream, as [`STREAM`] and [`FINISH`] tell the nodes:
/// `~<kind>\n<id>\n<seq>\n<event>\n<text>`, kind `s` (start; the text is the stream's kind,
/// `t` or `j`), `a` (append), `x` (abort) or `f` (finished: its message follows).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct StreamPayload<'a> {
    pub(super) kind: u8,
    pub(super) id: &'a str,
    pub(super) seq: u64,
    pub(super) event: Option<&'a str>,
    pub(super) text: &'a str,
}

/// Decodes a stream operation from the feed; `None` when `payload` is not one.
pub(super) fn decode_stream_payload(payload: &[u8]) -> Option<StreamPayload<'_>> {
    let text = std::str::from_utf8(payload.strip_prefix(b"~")?).ok()?;
    let mut parts = text.splitn(5, '\n');
    let kind = match parts.next()?.as_bytes() {
        [kind @ (b's' | b'a' | b'x' | b'f')] => *kind,
        _ => return None,
    };
    let id = parts.next()?;
    let seq = parts.next()?.parse().ok()?;
    let event = Some(parts.next()?).filter(|e| !e.is_empty());
    Some(StreamPayload { kind, id, seq, event, text: parts.next()? })
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

    #[test]
    fn stream_payloads_decode_and_others_are_not_stream_payloads() {
        let append = decode_stream_payload(b"~a\nabc\n3\nanswer\nline one\nline two").unwrap();
        assert_eq!(
            append,
            StreamPayload { kind: b'a', id: "abc", seq: 3, event: Some("answer"), text: "line one\nline two" }
        );
        let start = decode_stream_payload(b"~s\nabc\n0\n\n").unwrap();
        assert_eq!((start.kind, start.event, start.text), (b's', None, ""));
        assert!(decode_stream_payload(b"ep\n7\n1000\n\n1").is_none(), "a message");
        assert!(decode_stream_payload(b"~q\nabc\n3\n\n").is_none(), "an unknown kind");
        assert!(decode_stream_payload(b"~a\nabc\nthree\n\n").is_none());
    }
}
