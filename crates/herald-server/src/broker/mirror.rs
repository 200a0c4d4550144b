//! The broker as a mirror of streams kept elsewhere (the Redis engine, [`crate::cluster`]):
//! channels whose offsets another system assigns, folded in as they arrive and caught up from
//! snapshots. The decisions are `herald_core::mirror`'s; this module applies them to the
//! channel's subscribers.
//!
//! Contract: a subscriber of a mirrored channel gets every message once, in offset order, or
//! a `reset` push before the first message after a discontinuity — the reset is queued only
//! once every earlier message has been handed to the subscriber, so it never overtakes them.

use std::sync::Arc;

use herald_core::{
    ChannelName, ChannelStream, StreamPosition,
    mirror::{self, CatchUp, Merge, Snapshot},
    streams::OpenStream,
};

use super::{Broker, Channel};
use crate::{frame::Frame, publication::Message};

/// Why a catch-up has to be tried again.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy;

// === impl Broker ===

impl Broker {
    /// The position of `channel` when the node mirrors it.
    pub fn mirrored(&self, channel: &ChannelName) -> Option<StreamPosition> {
        self.shard(channel).lock().channels.get(channel).map(|ch| ch.stream.position())
    }

    /// Folds `message`, delivered by the shared engine, into the mirror of its channel and fans
    /// it out. `None` when the node does not mirror the channel (the message is dropped).
    pub fn mirror_merge(self: &Arc<Self>, message: Message) -> Option<Merge> {
        let channel = message.channel.clone();
        let position = StreamPosition { epoch: message.epoch.clone(), offset: message.offset };
        let (merge, start_round) = {
            let mut shard = self.shard(&channel).lock();
            let ch = shard.channels.get_mut(&channel)?;
            let merge = mirror::merge(&mut ch.stream, &position, message.time_ms, message.clone());
            let start = merge == Merge::Appended && ch.schedule([message]);
            (merge, start)
        };
        if start_round {
            self.start_round(&channel);
        }
        Some(merge)
    }

    /// Brings the mirror of `channel` (created when missing) in line with `snapshot` and the
    /// open `streams` read with it: missing messages are fanned out; where the mirror cannot
    /// continue, every subscriber gets a `reset` and continues from the new position; streams
    /// as [`Broker::mirror_streams`] says. [`Busy`] while a fan-out round runs and a reset may
    /// be needed: try again shortly.
    pub fn mirror_catch_up(
        self: &Arc<Self>,
        channel: &ChannelName,
        snapshot: Snapshot<Message>,
        streams: Vec<OpenStream>,
    ) -> Result<(), Busy> {
        let start_round = {
            let mut shard = self.shard(channel).lock();
            let ch = shard.channels.entry(channel.clone()).or_insert_with(|| {
                Channel::new(ChannelStream::resume(Arc::from(""), 0, self.config.history_limits(channel)))
            });
            if ch.fanning_out {
                return Err(Busy);
            }
            self.mirror_streams(ch, channel, streams, &snapshot.entries);
            match mirror::catch_up(&mut ch.stream, snapshot) {
                CatchUp::Appended(messages) => ch.schedule(messages),
                CatchUp::Reset { position, reason, appended } => {
                    if !ch.subscribers.is_empty() {
                        tracing::warn!(%channel, epoch = %position.epoch, offset = position.offset, reason = reason.as_str(), "mirror reset: subscribers continue from the shared stream's position");
                    }
                    for subscriber in ch.subscribers.values_mut() {
                        subscriber.after = position.offset;
                        subscriber.outbox.push(Frame::Reset {
                            channel: channel.clone(),
                            position: position.clone(),
                            reason,
                        });
                    }
                    ch.schedule(appended)
                }
            }
        };
        if start_round {
            self.start_round(channel);
        }
        Ok(())
    }

    /// Stops mirroring `channel` if it has no subscribers. Returns whether it was dropped.
    pub fn mirror_forget(&self, channel: &ChannelName) -> bool {
        let mut shard = self.shard(channel).lock();
        if shard.channels.get(channel).is_some_and(|ch| ch.subscribers.is_empty() && !ch.fanning_out) {
            shard.channels.remove(channel);
            return true;
        }
        false
    }
}
