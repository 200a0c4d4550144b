//! The in-memory engine and hub: every channel's stream (offsets, epoch, history) and its
//! subscribers, in shards keyed by channel name.
//!
//! Contract:
//! - publish and history append are atomic per channel: offsets have no gaps, and a publish
//!   returns once its message is in history — without waiting for a large fan-out;
//! - fan-out runs in rounds, one at a time per channel: a round takes every message published
//!   since the last one and gives each subscriber those after its starting offset, in offset
//!   order, in one write. A round of at most 256 subscribers runs on the publisher's thread
//!   (cheaper than waking another); larger ones, and rounds that queue up behind it, run on
//!   the rayon pool. Under load rounds grow, so a slow fan-out catches up with fewer system
//!   calls instead of falling further behind;
//! - subscribe decides the recovery and records the subscriber's starting offset under the
//!   same lock, so a message is either among the recovered ones or among the live ones —
//!   never both, never neither;
//! - fan-out never waits for a connection: it writes to every subscriber's socket that takes
//!   it now, and queues (bounded) for the others. A round with many subscribers is split over
//!   every core.

use std::{collections::HashMap, hash::BuildHasher, sync::Arc};

use herald_core::{
    ChannelName, ChannelStream, HistoryQuery, Recovery, Start, StreamPosition,
    forgotten::{ForgottenPositions, KeepPositions},
    streams::OpenStreams,
};
use parking_lot::Mutex;
use serde_json::value::RawValue;

mod mirror;
mod streams;

pub use self::streams::new_stream_id;

use crate::{
    config::Config,
    frame::{Frame, Transport},
    ids::ById,
    metrics::{Metrics, RecoveryOutcome},
    now_ms,
    outbox::Outbox,
    presence::Member,
    publication::{Message, Publication},
    store::{Keep, Kind, Record, Store},
};

const SHARDS: usize = 64;
/// Subscribers of one channel from which a message's fan-out is split over the cores.
const PARALLEL_FANOUT: usize = 1024;
/// Subscribers of one channel up to which a publish fans its message out itself.
const INLINE_FANOUT: usize = 256;

/// The outcome of a subscribe, for the reply to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribed {
    /// The stream's position when the subscription started.
    pub position: StreamPosition,
    /// Where the subscriber's stream starts: the position its first queued message follows
    /// (the client's own when it recovers, as far back as the latest messages reach for
    /// [`Start::Latest`], else `position`).
    pub start: StreamPosition,
    /// `Some(true)`: every missed message was queued; `Some(false)`: a reset was queued;
    /// `None`: no position was given (the latest messages, if asked for, were queued).
    pub recovered: Option<bool>,
    /// Whether the channel is latest-only ([`Config::conflate`]): a subscriber that falls
    /// behind gets the newest message instead of every one in between.
    pub conflated: bool,
    /// Whether live messages follow. False when the recovery was cut at its limit: the client
    /// has to come back from its new position for the rest (long polling does).
    pub live: bool,
}

/// One channel as listed by the API.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ChannelSummary {
    /// The channel name.
    pub channel: String,
    /// Local subscribers.
    pub subscribers: usize,
    /// The latest offset.
    pub offset: u64,
    /// The stream's epoch.
    pub epoch: String,
}

struct Channel {
    stream: ChannelStream<Message>,
    subscribers: ById<Subscriber>,
    /// Published messages no round has fanned out yet, oldest first.
    pending: Vec<Message>,
    /// Whether a round runs (or is about to) for this channel.
    fanning_out: bool,
    /// Messages being written a piece at a time (see [`streams`]).
    streams: OpenStreams,
    /// Streams with appends waiting for the next flush (`stream_flush_ms`), each with the
    /// `seq` its subscribers were told up to.
    unflushed: Vec<(Arc<str>, u64)>,
}

// === impl Channel ===

impl Channel {
    fn new(stream: ChannelStream<Message>) -> Self {
        Self {
            stream,
            subscribers: ById::default(),
            pending: Vec::new(),
            fanning_out: false,
            streams: OpenStreams::default(),
            unflushed: Vec::new(),
        }
    }

    /// Queues `messages` (in offset order) for the channel's subscribers. Returns whether the
    /// caller must start a round: none runs yet. Without subscribers nothing is queued.
    fn schedule(&mut self, messages: impl IntoIterator<Item = Message>) -> bool {
        if self.subscribers.is_empty() {
            return false;
        }
        let before = self.pending.len();
        self.pending.extend(messages);
        if self.pending.len() == before || self.fanning_out {
            return false;
        }
        self.fanning_out = true;
        true
    }
}

/// One fan-out round: the messages (in offset order) and each subscriber with its starting
/// offset.
struct Round {
    messages: Vec<Message>,
    subscribers: Vec<(Arc<Outbox>, u64)>,
    /// The channel is latest-only ([`Config::conflate`]).
    conflate: bool,
}

/// A subscriber of a channel and where its live messages start.
struct Subscriber {
    outbox: Arc<Outbox>,
    /// The channel's offset when it subscribed: rounds give it only later messages (earlier
    /// ones were recovered, or precede a live start).
    after: u64,
    /// Its presence entry, where the namespace keeps presence.
    member: Option<Arc<Member>>,
}

/// One part of the channels, under one lock.
struct Shard {
    /// Hashed with foldhash (randomly seeded, as the shards are chosen): every subscribe,
    /// unsubscribe and publish looks a channel up here, and SipHash cost a long poll about 1 %
    /// of its instructions (`bench/instructions.sh poll`).
    channels: HashMap<ChannelName, Channel, foldhash::fast::RandomState>,
    /// The positions of the channels this shard forgot while they were quiet, which they
    /// continue from when they come back.
    forgotten: ForgottenPositions,
}

// === impl Shard ===

impl Shard {
    fn new(config: &Config) -> Self {
        let limits = KeepPositions {
            ttl_ms: config.position_ttl_secs.saturating_mul(1000),
            max: config.max_forgotten_positions.div_ceil(SHARDS),
        };
        Self { channels: HashMap::default(), forgotten: ForgottenPositions::new(new_epoch(), limits) }
    }
}

/// A publish's outcome: the message, and the store sequence to wait for before answering
/// (see [`crate::engine::Engine::wait_durable`]; 0 without a store).
pub struct Published {
    /// The message as stored and delivered.
    pub message: Message,
    /// The store's durability sequence of its record.
    pub seq: u64,
}

/// The in-memory engine and hub.
pub struct Broker {
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    store: Option<Arc<Store>>,
    shards: Box<[Mutex<Shard>]>,
    /// Picks a channel's shard. A fast hash: it only spreads channels over the shards' locks;
    /// the shard's own map keeps std's DoS-resistant hashing of (client-chosen) names.
    shard_hasher: foldhash::fast::RandomState,
    /// Where presence changes go, when another part shares them (the Redis engine).
    presence_changes: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<crate::presence::Change>>,
    /// Open streams in every channel: a long poll looks for its channels' only when some are.
    open_streams: std::sync::atomic::AtomicUsize,
    /// Channels with appends waiting for the next flush (`stream_flush_ms`).
    to_flush: Mutex<Vec<ChannelName>>,
}

// === impl Broker ===

impl Broker {
    /// An empty broker, counting in `metrics`.
    pub fn new(config: Arc<Config>, metrics: Arc<Metrics>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new(&config))).collect(),
            config,
            metrics,
            store: None,
            shard_hasher: foldhash::fast::RandomState::default(),
            presence_changes: std::sync::OnceLock::new(),
            open_streams: std::sync::atomic::AtomicUsize::new(0),
            to_flush: Mutex::new(Vec::new()),
        }
    }

    fn shard(&self, channel: &ChannelName) -> &Mutex<Shard> {
        &self.shards[(self.shard_hasher.hash_one(channel) as usize) % SHARDS]
    }

    fn with_channel<R>(&self, channel: &ChannelName, f: impl FnOnce(&mut Channel) -> R) -> R {
        let mut shard = self.shard(channel).lock();
        let Shard { channels, forgotten } = &mut *shard;
        let entry = channels.entry(channel.clone()).or_insert_with(|| {
            // A channel forgotten while quiet continues its epoch and offsets.
            let StreamPosition { epoch, offset } = forgotten.revive(channel);
            Channel::new(ChannelStream::resume(epoch, offset, self.config.history_limits(channel)))
        });
        f(entry)
    }

    /// The metrics this broker counts in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A broker on the durable `store`, with the channels its `records` (replayed, in lsn
    /// order) describe: their epochs and offsets continue, and what is still within each
    /// namespace's history window is in history again.
    pub fn with_store(config: Arc<Config>, metrics: Arc<Metrics>, store: Arc<Store>, records: Vec<Record>) -> Self {
        let mut broker = Self::new(config, metrics);
        let now = now_ms();
        let mut restored = 0;
        for record in records {
            let Ok(channel) = ChannelName::new(&record.channel) else { continue };
            let limits = broker.config.history_limits(&channel);
            let mut shard = broker.shard(&channel).lock();
            let ch = shard
                .channels
                .entry(channel.clone())
                .or_insert_with(|| Channel::new(ChannelStream::resume(Arc::from(record.epoch.as_str()), 0, limits)));
            let continues = **ch.stream.epoch() == *record.epoch && record.offset == ch.stream.offset() + 1;
            if record.kind == Kind::Marker || !continues {
                // A new epoch, a gap left by compaction, or a position without its message:
                // history restarts here.
                let before = if record.kind == Kind::Marker { record.offset } else { record.offset.saturating_sub(1) };
                ch.stream = ChannelStream::resume(Arc::from(record.epoch.as_str()), before, limits);
            }
            if record.kind == Kind::Message {
                let Ok(data) = RawValue::from_string(String::from_utf8_lossy(&record.data).into_owned()) else {
                    continue;
                };
                let event = record.event.as_deref();
                ch.stream
                    .append(record.time_ms, |at| Publication::new(channel.clone(), at, event, &data, record.time_ms));
                restored += 1;
            }
        }
        // A cut tail held records of channels no one can name now, whose offsets live
        // subscribers may have seen: every channel moves to a new epoch, in which those
        // offsets are issued again (clients behind the cut still resume; see
        // `ChannelStream::continue_in`), and the move is logged before anything else.
        let lost_tail = store.tail_cut() > 0;
        for shard in broker.shards.iter() {
            for (name, ch) in shard.lock().channels.iter_mut() {
                ch.stream.expire(now);
                if lost_tail {
                    ch.stream.continue_in(new_epoch());
                    let position = ch.stream.position();
                    store.append(&Record {
                        kind: Kind::Marker,
                        lsn: store.next_lsn(),
                        channel: name.to_string(),
                        epoch: position.epoch.to_string(),
                        offset: position.offset,
                        time_ms: now,
                        event: None,
                        key: None,
                        data: Vec::new(),
                    });
                }
            }
        }
        if lost_tail {
            tracing::warn!(
                channels = broker.channel_count(),
                "the log's tail was cut: every channel continues in a new epoch"
            );
        }
        tracing::info!(channels = broker.channel_count(), messages = restored, "restored from the data directory");
        broker.store = Some(store);
        broker
    }

    /// Appends a message to `channel` (and to the store, with `key`, its idempotency key) and
    /// schedules its fan-out. Live subscribers get it at once; the publisher's answer waits
    /// for the store sequence it returns (see [`crate::engine::Engine::wait_durable`]).
    pub fn publish(
        self: &Arc<Self>,
        channel: &ChannelName,
        data: &RawValue,
        event: Option<&str>,
        key: Option<&str>,
    ) -> Published {
        let now = now_ms();
        let (message, seq, start_round) = self.with_channel(channel, |ch| {
            let message = ch.stream.append(now, |at| Publication::new(channel.clone(), at, event, data, now));
            let seq = self.store.as_ref().map_or(0, |store| {
                store.append(&Record {
                    kind: Kind::Message,
                    lsn: store.next_lsn(),
                    channel: channel.to_string(),
                    epoch: message.epoch.to_string(),
                    offset: message.offset,
                    time_ms: now,
                    event: event.map(str::to_string),
                    key: key.map(str::to_string),
                    data: data.get().as_bytes().to_vec(),
                })
            });
            let start_round = ch.schedule([message.clone()]);
            (message, seq, start_round)
        });
        self.metrics.published.inc();
        if start_round {
            self.start_round(channel);
        }
        Published { message, seq }
    }

    /// Runs fan-out rounds for `channel` (see [`Channel::schedule`]): a small first round
    /// here, on the caller's thread (waking a pool thread for it would cost more than the
    /// round), anything larger or later on the rayon pool.
    fn start_round(self: &Arc<Self>, channel: &ChannelName) {
        let Some(mut round) = self.next_round(channel) else { return };
        if round.subscribers.len() <= INLINE_FANOUT {
            finish_round(&round, &self.metrics);
            match self.next_round(channel) {
                Some(next) => round = next,
                None => return,
            }
        }
        let broker = Arc::clone(self);
        let channel = channel.clone();
        rayon::spawn(move || {
            finish_round(&round, &broker.metrics);
            broker.fan_out_rounds(&channel);
        });
    }

    /// The store, when the broker has one.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    /// What compaction keeps of `record` (see [`Store::compact`]): a message still in its
    /// channel's history window; a marker for its channel's latest position or an
    /// idempotency key published after `keys_newer_than_ms`; nothing else.
    pub fn retention(&self, record: &Record, keys_newer_than_ms: u64) -> Keep {
        let key_alive = record.key.is_some() && record.time_ms > keys_newer_than_ms;
        let Ok(channel) = ChannelName::new(&record.channel) else { return Keep::Drop };
        let shard = self.shard(&channel).lock();
        let current = shard.channels.get(&channel).filter(|ch| **ch.stream.epoch() == *record.epoch);
        let forgotten_at = || shard.forgotten.get(&channel).filter(|p| *p.epoch == *record.epoch).map(|p| p.offset);
        match current {
            Some(ch)
                if ch.stream.history_range().is_some_and(|(first, last)| (first..=last).contains(&record.offset)) =>
            {
                if record.kind == Kind::Message {
                    Keep::Message
                } else {
                    Keep::Marker
                }
            }
            Some(ch) if ch.stream.offset() == record.offset => Keep::Marker,
            // A forgotten channel's position outlives a restart too.
            None if forgotten_at() == Some(record.offset) => Keep::Marker,
            _ if key_alive => Keep::Marker,
            _ => Keep::Drop,
        }
    }

    /// Runs rounds for `channel` until nothing is pending.
    fn fan_out_rounds(&self, channel: &ChannelName) {
        while let Some(round) = self.next_round(channel) {
            finish_round(&round, &self.metrics);
        }
    }

    /// The messages and subscribers of the next round, or `None` (and no round running)
    /// when nothing is pending.
    fn next_round(&self, channel: &ChannelName) -> Option<Round> {
        let mut shard = self.shard(channel).lock();
        let ch = shard.channels.get_mut(channel)?;
        if ch.pending.is_empty() {
            ch.fanning_out = false;
            return None;
        }
        let messages = std::mem::take(&mut ch.pending);
        let subscribers = ch.subscribers.values().map(|s| (s.outbox.clone(), s.after)).collect();
        Some(Round { messages, subscribers, conflate: self.config.conflates(channel) })
    }

    /// Subscribes `outbox` to `channel` from `start`. First queues `lead(&outcome)` (e.g. the
    /// WebSocket reply), then up to `limit` missed messages (or latest ones, for
    /// [`Start::Latest`]) or a reset, then — from the same instant — live messages, unless more
    /// than `limit` were missed (see [`Subscribed::live`]).
    /// Subscribing again replaces the earlier subscription.
    ///
    /// Where the namespace keeps presence, `member` is listed while the subscription lasts,
    /// and with join/leave on, the other subscribers get a `join` push.
    pub fn subscribe(
        &self,
        channel: &ChannelName,
        outbox: &Arc<Outbox>,
        start: Start<'_>,
        limit: usize,
        member: Option<&Arc<Member>>,
        lead: impl FnOnce(&Subscribed) -> Option<Frame>,
    ) -> Subscribed {
        let rules = self.config.rules(channel);
        let member = member.filter(|_| rules.presence);
        let (subscribed, announce) = self.with_channel(channel, |ch| {
            let now = now_ms();
            // The latest messages are a recovery from as far back as they reach.
            let latest;
            let since = match start {
                Start::Live => None,
                Start::Latest(n) => {
                    latest = ch.stream.latest_start(n, now);
                    Some(&latest)
                }
                Start::After(since) => Some(since),
            };
            let conflated = self.config.conflates(channel);
            let recovery = match (conflated, start) {
                (true, Start::After(since)) => ch.stream.recover_latest(Some(since), now),
                _ => ch.stream.recover(since, now, limit),
            };
            let live = !matches!(recovery, Recovery::Recovered { truncated: true, .. });
            let position = recovery.position().clone();
            let subscribed = Subscribed {
                live,
                // A position of the epoch this one took over from recovers too, and continues
                // in the channel's epoch (`ChannelStream::continue_in`).
                start: match (&recovery, since) {
                    (Recovery::Recovered { .. }, Some(since)) => {
                        StreamPosition { epoch: position.epoch.clone(), offset: since.offset }
                    }
                    _ => position.clone(),
                },
                position,
                conflated,
                recovered: match (&recovery, start) {
                    (Recovery::Recovered { .. }, Start::After(_)) => Some(true),
                    (Recovery::Reset { .. }, _) => Some(false),
                    _ => None,
                },
            };
            self.metrics.recovery(match subscribed.recovered {
                None => RecoveryOutcome::Live,
                Some(true) => RecoveryOutcome::Recovered,
                Some(false) => RecoveryOutcome::Reset,
            });
            if let Some(frame) = lead(&subscribed) {
                outbox.push(frame);
            }
            match recovery {
                Recovery::Live { .. } => {}
                Recovery::Recovered { messages, .. } => {
                    self.metrics.handed(outbox.transport(), messages.len() as u64);
                    for m in messages {
                        outbox.push(Frame::Message(m));
                    }
                }
                Recovery::Reset { position, reason } => {
                    outbox.push(Frame::Reset { channel: channel.clone(), position, reason });
                }
            }
            if live {
                Self::snapshots_to(ch, channel, outbox);
            }
            let mut announce = None;
            if live {
                let after = ch.stream.offset();
                if let Some(member) = member.filter(|_| rules.join_leave) {
                    announce = Some((others(ch, Some(outbox.id())), member.push("join", channel)));
                }
                if let Some(member) = member {
                    self.report_presence(channel, member, true);
                }
                let member = member.cloned();
                ch.subscribers.insert(outbox.id(), Subscriber { outbox: outbox.clone(), after, member });
            }
            (subscribed, announce)
        });
        if let Some((others, push)) = announce {
            push_to(&others, &push);
        }
        subscribed
    }

    /// Removes connection `id` from `channel`. Returns whether it was subscribed.
    pub fn unsubscribe(&self, channel: &ChannelName, id: u64) -> bool {
        let mut shard = self.shard(channel).lock();
        let Some(ch) = shard.channels.get_mut(channel) else { return false };
        let Some(was) = ch.subscribers.remove(&id) else { return false };
        if let Some(member) = &was.member {
            self.report_presence(channel, member, false);
        }
        if let Some(member) = was.member
            && self.config.rules(channel).join_leave
        {
            let others = others(ch, Some(id));
            drop(shard);
            push_to(&others, &member.push("leave", channel));
        }
        true
    }

    /// Sends every later presence change to `changes`.
    pub fn report_presence_to(&self, changes: tokio::sync::mpsc::UnboundedSender<crate::presence::Change>) {
        let _ = self.presence_changes.set(changes);
    }

    fn report_presence(&self, channel: &ChannelName, member: &Arc<Member>, joined: bool) {
        if let Some(changes) = self.presence_changes.get() {
            let _ = changes.send(crate::presence::Change { channel: channel.clone(), member: member.clone(), joined });
        }
    }

    /// Pushes `push` (a join or leave from another node) to every subscriber of `channel`.
    pub fn push_to_subscribers(&self, channel: &ChannelName, push: &bytes::Bytes) {
        let outboxes = {
            let shard = self.shard(channel).lock();
            let Some(ch) = shard.channels.get(channel) else { return };
            others(ch, None)
        };
        push_to(&outboxes, push);
    }

    /// Whether `channel`'s namespace keeps presence.
    pub fn keeps_presence(&self, channel: &ChannelName) -> bool {
        self.config.rules(channel).presence
    }

    /// The presence entries of `channel`'s subscribers, oldest connection first.
    pub fn presence(&self, channel: &ChannelName) -> Vec<Arc<Member>> {
        let shard = self.shard(channel).lock();
        let Some(ch) = shard.channels.get(channel) else { return Vec::new() };
        let mut members: Vec<(u64, Arc<Member>)> =
            ch.subscribers.iter().filter_map(|(id, s)| Some((*id, s.member.clone()?))).collect();
        members.sort_by_key(|(id, _)| *id);
        members.into_iter().map(|(_, m)| m).collect()
    }

    /// The channel's current position and up to `limit` latest messages after offset `since`.
    pub fn history(&self, channel: &ChannelName, query: &HistoryQuery) -> (StreamPosition, Vec<Message>) {
        self.with_channel(channel, |ch| {
            let messages = ch.stream.history(query, now_ms());
            (ch.stream.position(), messages)
        })
    }

    /// Every channel the node knows, sorted by name.
    pub fn channels(&self) -> Vec<ChannelSummary> {
        let mut all: Vec<ChannelSummary> = self
            .shards
            .iter()
            .flat_map(|shard| {
                let shard = shard.lock();
                shard
                    .channels
                    .iter()
                    .map(|(name, ch)| ChannelSummary {
                        channel: name.to_string(),
                        subscribers: ch.subscribers.len(),
                        offset: ch.stream.offset(),
                        epoch: ch.stream.epoch().to_string(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by(|a, b| a.channel.cmp(&b.channel));
        all
    }

    /// Subscriptions over every channel.
    pub fn subscription_count(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().channels.values().map(|ch| ch.subscribers.len()).sum::<usize>())
            .sum()
    }

    /// How many channels the node knows.
    pub fn channel_count(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().channels.len()).sum()
    }

    /// Gives back the memory of subscriber tables that have emptied out (to a quarter or less).
    /// Done between ticks, not by the unsubscribe that empties a table: long polls leave and
    /// rejoin their channels many times a second, and shrinking on each leave made every
    /// round of a 10,000-poll channel shrink its table and grow it back, rehashing all along.
    pub fn trim(&self, slice: crate::slice::Slice) {
        for shard in slice.shards(SHARDS) {
            for ch in self.shards[shard].lock().channels.values_mut() {
                if ch.subscribers.capacity() > 32 && ch.subscribers.len() < ch.subscribers.capacity() / 4 {
                    ch.subscribers.shrink_to_fit();
                }
            }
        }
    }

    /// Forgets channels with no subscribers and no history left, so that short-lived channels
    /// do not accumulate, keeping their positions (a few dozen bytes each) for
    /// `position_ttl_secs`: a channel that comes back continues its epoch and offsets, and its
    /// clients resume. Positions kept longer are dropped (their channels start a new epoch).
    pub fn sweep(&self, slice: crate::slice::Slice) -> usize {
        let now = now_ms();
        let mut removed = 0;
        for shard in slice.shards(SHARDS) {
            let mut shard = self.shards[shard].lock();
            let Shard { channels, forgotten } = &mut *shard;
            let before = channels.len();
            channels.retain(|name, ch| {
                ch.stream.expire(now);
                self.expire_streams(ch, name, now);
                let keep = !ch.subscribers.is_empty()
                    || ch.stream.history_len() > 0
                    || ch.fanning_out
                    || !ch.streams.is_empty();
                if !keep {
                    forgotten.forget(name.clone(), ch.stream.position(), now);
                }
                keep
            });
            forgotten.expire(now, new_epoch);
            removed += before - channels.len();
        }
        removed
    }

    /// How many forgotten channels' positions are kept.
    pub fn forgotten_count(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().forgotten.len()).sum()
    }
}

/// Delivers `round` and records its messages' delivery latency.
fn finish_round(round: &Round, metrics: &Metrics) {
    deliver(round, metrics);
    let now = now_ms();
    for m in &round.messages {
        metrics.delivery_latency.observe(now.saturating_sub(m.time_ms) as f64 / 1000.0);
    }
}

/// Every subscriber of `ch` but connection `id` (if any): a join or leave goes to them once
/// the channel's lock is released (pushes may write to sockets).
fn others(ch: &Channel, id: Option<u64>) -> Vec<Arc<Outbox>> {
    ch.subscribers.iter().filter(|(other, _)| Some(**other) != id).map(|(_, s)| s.outbox.clone()).collect()
}

fn push_to(outboxes: &[Arc<Outbox>], push: &bytes::Bytes) {
    for outbox in outboxes {
        outbox.push(Frame::Text(push.clone()));
    }
}

/// Gives each subscriber the messages after its starting offset (`messages` are in offset
/// order), counting the deliveries by transport; on every core when there are many
/// subscribers.
fn deliver(round: &Round, metrics: &Metrics) {
    let Round { messages, subscribers, conflate } = round;
    let deliver_part = |part: &[(Arc<Outbox>, u64)]| {
        // Counted here, once per part and transport, not per subscriber.
        let (mut deliveries, mut bytes) = ([0u64; 3], [0usize; 3]);
        for (outbox, after) in part {
            let from = messages.partition_point(|m| m.offset <= *after);
            let Some(newest) = messages[from..].last() else { continue };
            // A latest-only channel gives each subscriber the round's newest message, which
            // its queue may in turn collapse with one still waiting for the socket.
            let (delivered, pushed) = match conflate {
                true => (1, outbox.push_latest(newest.clone())),
                false => ((messages.len() - from) as u64, outbox.push_messages(&messages[from..])),
            };
            if let Some(n) = pushed {
                deliveries[outbox.transport() as usize] += delivered;
                bytes[outbox.transport() as usize] += n;
            }
        }
        for (i, transport) in [Transport::Ws, Transport::Sse, Transport::Poll].into_iter().enumerate() {
            if deliveries[i] > 0 {
                metrics.handed(transport, deliveries[i]);
                metrics.bytes_out(transport, bytes[i]);
            }
        }
    };
    if subscribers.len() < PARALLEL_FANOUT {
        return deliver_part(subscribers);
    }
    let per_part = subscribers.len().div_ceil(rayon::current_num_threads().max(1));
    rayon::scope(|scope| {
        for part in subscribers.chunks(per_part) {
            scope.spawn(move |_| deliver_part(part));
        }
    });
}

/// A fresh random epoch (8 alphanumerics).
pub(crate) fn new_epoch() -> Arc<str> {
    Arc::from(crate::ids::random_id(8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::QueueLimits;

    /// Long polls leave and rejoin a channel on every message: the table keeps its size through
    /// that, and gives memory back only when trimmed between ticks.
    #[test]
    fn subscriber_tables_shrink_when_trimmed_not_when_left() {
        let broker = Broker::new(Arc::new(Config::default()), Arc::default());
        let channel = ChannelName::new("jobs").expect("a valid name");
        let limits = QueueLimits { frames: 10, bytes: 10_000 };
        let outboxes: Vec<_> =
            (0..1000).map(|id| Arc::new(Outbox::new(id, Transport::Poll, limits, 0, Arc::default()))).collect();
        for outbox in &outboxes {
            broker.subscribe(&channel, outbox, Start::Live, 0, None, |_| None);
        }
        let capacity = || broker.shard(&channel).lock().channels.get(&channel).map(|ch| ch.subscribers.capacity());
        let full = capacity().expect("the channel exists");
        for id in 0..990 {
            assert!(broker.unsubscribe(&channel, id));
        }
        assert_eq!(capacity(), Some(full), "leaving does not shrink the table");
        for slice in 0..crate::slice::SLICES {
            broker.trim(crate::slice::Slice(slice));
        }
        let trimmed = capacity().expect("the channel exists");
        assert!(trimmed < full / 4, "trimmed to {trimmed} from {full}");
        assert_eq!(broker.shard(&channel).lock().channels.get(&channel).map(|ch| ch.subscribers.len()), Some(10));
    }
}
