//! The broker's open streams (token streams, [`herald_core::streams`]): starting, appending
//! and closing them, and telling the channel's subscribers.
//!
//! Contract: every push about a stream is queued to the channel's subscribers under the
//! channel's lock, in the order the operations happened, and a subscriber that joins gets the
//! text so far under the same lock — so it sees each append exactly once, after the snapshot
//! that does not hold it, or not at all because the snapshot does. Long polls get no pushes
//! but their snapshots: an append only ends a poll's wait, and the answer carries the text so
//! far ([`Broker::stream_snapshots`]). Finishing a stream closes it here; the caller then
//! publishes its text as one message, so the message follows every append.

use std::sync::{Arc, atomic::Ordering};

use bytes::Bytes;
use herald_core::{
    ChannelName,
    protocol::{StreamPushKind, encode_stream_push},
    streams::{Content, Delta, Fold, OpenStream, Operation, StreamError},
};

use super::{Broker, Channel};
use crate::{
    frame::{Frame, Piece},
    now_ms,
    outbox::Outbox,
    publication::Message,
    transport::Held,
};

// === impl Broker: streams ===

impl Broker {
    /// Opens a stream in `channel` for a message of `event`, and pushes it (empty) to the
    /// channel's subscribers. Returns its id.
    pub fn stream_start(
        &self,
        channel: &ChannelName,
        event: Option<&str>,
        json: bool,
    ) -> Result<Arc<str>, StreamError> {
        let id = new_stream_id();
        self.with_channel(channel, |ch| {
            let max_open = self.config.max_streams_per_channel;
            let stream = ch.streams.start(Arc::clone(&id), event, json, now_ms(), max_open)?;
            let push = snapshot(channel, stream);
            tell(ch, &push);
            Ok(())
        })?;
        self.open_streams.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }

    /// Appends `delta` to stream `id` of `channel` and pushes the piece to the subscribers.
    /// Returns the append's `seq`.
    pub fn stream_append(&self, channel: &ChannelName, id: &str, delta: Delta<'_>) -> Result<u64, StreamError> {
        self.with_existing(channel, id, |ch| {
            let max_bytes = self.config.max_message_bytes;
            let seq = ch.streams.append(id, delta, now_ms(), max_bytes)?.seq;
            self.tell_piece(ch, channel, id);
            Ok(seq)
        })
    }

    /// Closes stream `id` of `channel` to finish it: the caller publishes its text. Nothing is
    /// pushed; the message will be.
    pub fn stream_finish(&self, channel: &ChannelName, id: &str) -> Result<OpenStream, StreamError> {
        let stream = self.with_existing(channel, id, |ch| {
            flush_one(ch, channel, id);
            ch.streams.close(id)
        })?;
        self.open_streams.fetch_sub(1, Ordering::Relaxed);
        Ok(stream)
    }

    /// Closes stream `id` of `channel` without a message, and pushes the abort.
    pub fn stream_abort(&self, channel: &ChannelName, id: &str) -> Result<(), StreamError> {
        self.with_existing(channel, id, |ch| {
            flush_one(ch, channel, id);
            let stream = ch.streams.close(id)?;
            tell(ch, &abort(channel, &stream.id, stream.event.as_deref(), stream.seq));
            Ok(())
        })?;
        self.open_streams.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }

    /// Folds a stream operation made through the shared engine (Redis) into the mirror of
    /// `channel` and tells its subscribers: a start or an append as it would be told here, an
    /// abort with `abort` (a finish closes the stream silently: its message follows). `None`
    /// when the node does not mirror the channel; [`Fold::OutOfLine`] when the mirror needs a
    /// snapshot.
    pub fn mirror_stream(
        &self,
        channel: &ChannelName,
        id: &str,
        operation: Operation<'_>,
        abort: bool,
    ) -> Option<Fold> {
        let mut shard = self.shard(channel).lock();
        let ch = shard.channels.get_mut(channel)?;
        let closed = match operation {
            Operation::Close => ch.streams.iter().find(|s| &*s.id == id).map(|s| (s.event.clone(), s.seq)),
            _ => None,
        };
        if operation == Operation::Close {
            flush_one(ch, channel, id);
        }
        let fold = ch.streams.fold(id, operation, now_ms());
        if fold != Fold::Applied {
            return Some(fold);
        }
        match operation {
            Operation::Start { .. } => {
                self.open_streams.fetch_add(1, Ordering::Relaxed);
                if let Some(stream) = ch.streams.iter().find(|s| &*s.id == id) {
                    tell(ch, &snapshot(channel, stream));
                }
            }
            Operation::Append { .. } => self.tell_piece(ch, channel, id),
            Operation::Close => {
                self.open_streams.fetch_sub(1, Ordering::Relaxed);
                if let Some((event, seq)) = closed.filter(|_| abort) {
                    tell(ch, &self::abort(channel, id, event.as_deref(), seq));
                }
            }
        }
        Some(fold)
    }

    /// Makes the mirror `ch` of `channel` hold exactly `streams`, as the shared engine holds
    /// them (read with `entries`, its latest messages): subscribers get the text so far of
    /// every stream that moved on, and an abort for every stream gone — unless `entries` hold
    /// the message it finished as, which they get next.
    pub(super) fn mirror_streams(
        &self,
        ch: &mut Channel,
        channel: &ChannelName,
        streams: Vec<OpenStream>,
        entries: &[(u64, u64, Message)],
    ) {
        if streams.is_empty() && ch.streams.is_empty() {
            return;
        }
        let held = ch.streams.len();
        let replaced = ch.streams.replace(streams);
        let now_open = ch.streams.len();
        if now_open >= held {
            self.open_streams.fetch_add(now_open - held, Ordering::Relaxed);
        } else {
            self.open_streams.fetch_sub(held - now_open, Ordering::Relaxed);
        }
        for id in &replaced.ahead {
            if let Some(stream) = ch.streams.iter().find(|s| s.id == *id) {
                tell(ch, &snapshot(channel, stream));
            }
        }
        for gone in &replaced.gone {
            let finished = format!("{{\"stream\":\"{}\",\"text\":", gone.id);
            let finished = finished.as_bytes();
            if !entries.iter().any(|(_, _, m)| m.envelope().windows(finished.len()).any(|w| w == finished)) {
                tell(ch, &abort(channel, &gone.id, gone.event.as_deref(), gone.seq));
            }
        }
    }

    /// Tells the subscribers of `ch` about the append just applied to its stream `id`: at once, encoded once and shared by every subscriber that keeps up (one
    /// that falls behind gets it merged with the next); or, with `stream_flush_ms`, at the
    /// next flush ([`Broker::flush_streams`]).
    fn tell_piece(&self, ch: &mut Channel, channel: &ChannelName, id: &str) {
        let Some(stream) = ch.streams.iter().find(|s| &*s.id == id) else { return };
        if self.config.stream_flush_ms > 0 {
            if ch.unflushed.is_empty() {
                self.to_flush.lock().push(channel.clone());
            }
            if !ch.unflushed.iter().any(|(waiting, _)| **waiting == *id) {
                ch.unflushed.push((Arc::clone(&stream.id), stream.seq - 1));
            }
            return;
        }
        tell_since(ch, channel, id, stream.seq - 1);
    }

    /// Pushes, for every channel with appends waiting (`stream_flush_ms`), one append per
    /// stream holding every piece since its subscribers were last told. Called every
    /// `stream_flush_ms` by [`crate::housekeeping`].
    pub fn flush_streams(&self) {
        let channels = std::mem::take(&mut *self.to_flush.lock());
        for channel in channels {
            let mut shard = self.shard(&channel).lock();
            let Some(ch) = shard.channels.get_mut(&channel) else { continue };
            for (id, told) in std::mem::take(&mut ch.unflushed) {
                tell_since(ch, &channel, &id, told);
            }
        }
    }

    /// How many streams are open in every channel.
    pub fn open_stream_count(&self) -> usize {
        self.open_streams.load(Ordering::Relaxed)
    }

    /// What a long poll's answer carries of `channels`' open streams, for a client that holds
    /// `held`: for a stream it holds, an append of what it lacks (nothing when it lacks
    /// nothing); for any other, or without `held`, the text so far. (Nothing to look up while
    /// no stream is open anywhere.)
    pub fn stream_snapshots(&self, channels: &[ChannelName], held: Option<&[Held]>) -> Vec<Bytes> {
        if self.open_streams.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        for channel in channels {
            let shard = self.shard(channel).lock();
            let Some(ch) = shard.channels.get(channel) else { continue };
            for stream in ch.streams.iter() {
                let holds = held.and_then(|held| held.iter().find(|(id, _)| **id == *stream.id)).map(|(_, seq)| *seq);
                match holds.and_then(|seq| Some((seq, stream.text_after(seq)?))) {
                    Some((seq, _)) if seq == stream.seq => {}
                    Some((seq, lacks)) => {
                        let (event, pieces) = (stream.event.as_deref(), stream.seq - seq);
                        let kind = StreamPushKind::Append;
                        let content = stream.carried(lacks);
                        let json = encode_stream_push(kind, channel, &stream.id, event, content, stream.seq, pieces);
                        out.push(Bytes::from(json));
                    }
                    None => out.push(snapshot_json(channel, stream)),
                }
            }
        }
        out
    }

    /// Whether a stream of `channels` is ahead of what a client holds (`held`): a long poll
    /// then answers at once.
    pub fn streams_ahead(&self, channels: &[ChannelName], held: &[Held]) -> bool {
        if self.open_streams.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let behind = |stream: &OpenStream| !held.iter().any(|(id, seq)| **id == *stream.id && *seq >= stream.seq);
        channels.iter().any(|channel| {
            let shard = self.shard(channel).lock();
            shard.channels.get(channel).is_some_and(|ch| ch.streams.iter().any(behind))
        })
    }

    /// Queues the snapshot of every open stream of `ch` to `outbox`, a new subscriber (not a
    /// long poll: its answer carries them).
    pub(super) fn snapshots_to(ch: &Channel, channel: &ChannelName, outbox: &Outbox) {
        if outbox.transport() == crate::frame::Transport::Poll {
            return;
        }
        for stream in ch.streams.iter() {
            outbox.push(snapshot(channel, stream));
        }
    }

    /// Aborts the idle streams of `slice`'s channels, `grace_ms` after the idle limit, telling
    /// the subscribers: for a broker whose channels it does not sweep (the Redis engine's
    /// mirrors: Redis drops an idle stream but tells no one, and each node tells its own
    /// subscribers; the grace lets Redis drop it first). Nothing to do while no stream is open.
    pub fn expire_idle_streams(&self, slice: crate::slice::Slice, grace_ms: u64) {
        if self.open_streams.load(Ordering::Relaxed) == 0 {
            return;
        }
        let now = now_ms().saturating_sub(grace_ms);
        for shard in slice.shards(super::SHARDS) {
            let mut shard = self.shards[shard].lock();
            for (name, ch) in &mut shard.channels {
                self.expire_streams(ch, name, now);
            }
        }
    }

    /// Aborts the streams of `ch` idle for `stream_idle_timeout_secs` at `now_ms`, telling the
    /// subscribers.
    pub(super) fn expire_streams(&self, ch: &mut Channel, channel: &ChannelName, now_ms: u64) {
        if ch.streams.is_empty() {
            return;
        }
        let idle_ms = self.config.stream_idle_timeout_secs.saturating_mul(1000);
        for stream in ch.streams.expire(now_ms, idle_ms) {
            tracing::debug!(%channel, stream = %stream.id, "aborted an idle stream");
            tell(ch, &abort(channel, &stream.id, stream.event.as_deref(), stream.seq));
            self.open_streams.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Runs `f` on `channel` when it exists (a stream id names nothing in a channel that does
    /// not).
    fn with_existing<R>(
        &self,
        channel: &ChannelName,
        id: &str,
        f: impl FnOnce(&mut Channel) -> Result<R, StreamError>,
    ) -> Result<R, StreamError> {
        let mut shard = self.shard(channel).lock();
        let ch = shard.channels.get_mut(channel).ok_or_else(|| StreamError::Unknown(Arc::from(id)))?;
        f(ch)
    }
}

/// A new stream's id: 12 random alphanumerics.
pub fn new_stream_id() -> Arc<str> {
    Arc::from(crate::ids::random_id(12))
}

/// The push that shows `stream` as it stands.
fn snapshot(channel: &ChannelName, stream: &OpenStream) -> Frame {
    Frame::Stream { kind: StreamPushKind::Snapshot, json: snapshot_json(channel, stream), piece: None }
}

/// The JSON of [`snapshot`].
fn snapshot_json(channel: &ChannelName, stream: &OpenStream) -> Bytes {
    let kind = StreamPushKind::Snapshot;
    let (event, content) = (stream.event.as_deref(), stream.carried(&stream.text));
    Bytes::from(encode_stream_push(kind, channel, &stream.id, event, content, stream.seq, 1))
}

/// The push that ends stream `id` (of `event`, at `seq`) without a message.
fn abort(channel: &ChannelName, id: &str, event: Option<&str>, seq: u64) -> Frame {
    let json = encode_stream_push(StreamPushKind::Abort, channel, id, event, Content::Text(""), seq, 1);
    Frame::Stream { kind: StreamPushKind::Abort, json: Bytes::from(json), piece: None }
}

/// Tells the subscribers of `ch` the appends to stream `id` after `told`, as one append.
fn tell_since(ch: &Channel, channel: &ChannelName, id: &str, told: u64) {
    let Some(stream) = ch.streams.iter().find(|s| &*s.id == id) else { return };
    if let Some(lacks) = stream.text_after(told).filter(|_| stream.seq > told) {
        tell_append(ch, channel, stream, lacks, stream.seq - told);
    }
}

/// Before stream `id` of `ch` closes: tells its subscribers the appends waiting for a flush,
/// so that every piece comes before the message or the abort.
fn flush_one(ch: &mut Channel, channel: &ChannelName, id: &str) {
    if let Some(at) = ch.unflushed.iter().position(|(waiting, _)| &**waiting == id) {
        let (_, told) = ch.unflushed.swap_remove(at);
        tell_since(ch, channel, id, told);
    }
}

/// Queues to every subscriber of `ch` the append of `text` to `stream`, made of its last
/// `pieces` appends, encoded once.
fn tell_append(ch: &Channel, channel: &ChannelName, stream: &OpenStream, text: &str, pieces: u64) {
    let piece = Arc::new(Piece {
        channel: channel.clone(),
        stream: Arc::clone(&stream.id),
        event: stream.event.clone(),
        text: text.to_string(),
        json: stream.json,
        seq: stream.seq,
        pieces,
    });
    let push = piece.frame();
    for subscriber in ch.subscribers.values() {
        subscriber.outbox.push_append(push.clone());
    }
}

/// Queues `push` to every subscriber of `ch`, under its lock, so pushes keep their order (a
/// long poll's wait ends with it; its answer takes the snapshots instead).
fn tell(ch: &Channel, push: &Frame) {
    for subscriber in ch.subscribers.values() {
        subscriber.outbox.push(push.clone());
    }
}
