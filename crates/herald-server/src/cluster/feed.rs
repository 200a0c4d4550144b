//! The feed: the node's one pub/sub connection to Redis, and the task that owns it.
//!
//! The task subscribes to the pub/sub channel of every channel the node mirrors, folds each
//! message into the broker's mirror, and serves requests to start mirroring (subscribe
//! first, then snapshot). Doing all of it in one task orders, per channel, every subscription,
//! snapshot and message. When the connection is lost it reconnects with backoff, subscribes
//! again and catches every mirror up before it reports ready.

use std::{
    collections::HashSet,
    sync::{Weak, atomic::Ordering},
    time::{Duration, Instant},
};

use herald_core::{
    ChannelName, ProtocolError, StreamPosition,
    mirror::Merge,
    streams::{Fold, Operation},
};
use tokio::sync::{mpsc, oneshot};

use super::{
    Cluster, REDIS_TIMEOUT,
    link::{Event, Link, Target},
    scripts, unavailable,
};
use crate::slice::{SLICES, Slice};

/// How often the link is checked with a PING.
const PING_EVERY: Duration = Duration::from_secs(5);
/// How often every mirror is checked for disuse: one slice of them per
/// `SWEEP_EVERY / SLICES`, so that no tick walks them all.
const SWEEP_EVERY: Duration = Duration::from_secs(15);
/// How long a mirror stays after its last subscriber leaves and no client asks for it.
const IDLE_MIRROR: Duration = Duration::from_secs(30);
/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Channels subscribed or caught up per round trip batch.
const BATCH: usize = 256;

/// A request to mirror channels, each in line with the given position.
pub(super) struct Request {
    pub(super) channels: Vec<(ChannelName, Option<StreamPosition>)>,
    pub(super) reply: oneshot::Sender<Result<(), ProtocolError>>,
}

/// Why a session with Redis ended.
struct Lost(String);

/// Runs the feed until the cluster is dropped.
pub(super) async fn run(cluster: Weak<Cluster>, target: Target, mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut backoff = Duration::from_millis(100);
    let mut was_up = true;
    loop {
        let Some(c) = cluster.upgrade() else { return };
        let lost = match tokio::time::timeout(REDIS_TIMEOUT, target.link()).await {
            Ok(Ok(link)) => {
                backoff = Duration::from_millis(100);
                was_up = true;
                session(&c, link, &mut requests).await
            }
            Ok(Err(e)) => Lost(e.to_string()),
            Err(_) => Lost("connection timed out".into()),
        };
        c.shared.ready.store(false, Ordering::Release);
        if std::mem::take(&mut was_up) {
            tracing::warn!(reason = %lost.0, "Redis unreachable: not ready; clients stay connected, reconnecting");
        }
        drop(c);
        // Until the next attempt, requests that need Redis fail at once.
        let retry = tokio::time::sleep(backoff);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                () = &mut retry => break,
                request = requests.recv() => match request {
                    Some(request) => {
                        let _ = request.reply.send(Err(unavailable("Redis is unreachable")));
                    }
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: subscribe to every mirror's feed, catch them up, report ready, then
/// serve messages and requests until the connection fails.
async fn session(c: &Cluster, mut link: Link, requests: &mut mpsc::UnboundedReceiver<Request>) -> Lost {
    if !c.commands_reach_redis().await {
        return Lost("commands do not reach Redis".into());
    }
    let channels: Vec<ChannelName> = c.shared.mirrored.channels();
    for batch in channels.chunks(BATCH) {
        let feeds: Vec<String> = batch.iter().map(|ch| c.keys.feed(ch)).collect();
        if let Err(e) = subscribe(&mut link, feeds).await {
            return e;
        }
    }
    // Messages published while the feed was down are caught up from history (or reset).
    for batch in channels.chunks(BATCH) {
        for (channel, result) in catch_up_all(c, batch).await {
            if let Err(e) = result {
                return Lost(format!("catching up {channel}: {}", e.message));
            }
        }
    }
    c.shared.ready.store(true, Ordering::Release);
    tracing::info!(mirrored = channels.len(), "in line with Redis: ready");
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut sweep = tokio::time::interval(SWEEP_EVERY / SLICES as u32);
    let mut slices = (0..SLICES).cycle().map(Slice);
    loop {
        tokio::select! {
            event = link.next() => match event {
                Event::Message { feed, payload } => on_message(c, &feed, &payload).await,
                Event::Resubscribed { feed } => {
                    // Subscribed again behind our back: what was published meanwhile is
                    // caught up from history.
                    if let Some(channel) = c.keys.channel_of_feed(&feed)
                        && c.shared.mirrored.contains(&channel)
                    {
                        let _ = catch_up(c, &channel).await;
                    }
                }
                Event::Lost(reason) => return Lost(reason),
            },
            request = requests.recv() => {
                let Some(first) = request else { return Lost("the engine stopped".into()) };
                let mut batch = vec![first];
                while batch.len() < BATCH && let Ok(more) = requests.try_recv() {
                    batch.push(more);
                }
                if let Err(e) = serve(c, &mut link, batch).await {
                    return e;
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(REDIS_TIMEOUT, link.ping()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Lost(e.to_string()),
                    Err(_) => return Lost("PING timed out".into()),
                }
            }
            _ = sweep.tick() => {
                let slice = slices.next().expect("the slices cycle");
                if let Err(e) = drop_idle(c, &mut link, slice).await {
                    return e;
                }
            }
        }
    }
}

async fn subscribe(link: &mut Link, feeds: Vec<String>) -> Result<(), Lost> {
    match tokio::time::timeout(REDIS_TIMEOUT, link.subscribe(feeds)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Lost(e.to_string())),
        Err(_) => Err(Lost("SUBSCRIBE timed out".into())),
    }
}

/// Folds one pub/sub message into its mirror; one out of line makes the mirror catch up.
async fn on_message(c: &Cluster, feed: &str, payload: &[u8]) {
    let Some(channel) = c.keys.channel_of_feed(feed) else { return };
    if let Some(push) = super::presence::foreign_push(payload, &c.node) {
        if let Some(push) = push {
            c.broker.push_to_subscribers(&channel, &push);
        }
        return;
    }
    if let Some(op) = scripts::decode_stream_payload(payload) {
        let operation = match op.kind {
            b's' => Operation::Start { event: op.event, json: op.text == "j" },
            b'a' => Operation::Append { seq: op.seq, delta: op.text },
            _ => Operation::Close,
        };
        if c.broker.mirror_stream(&channel, op.id, operation, op.kind == b'x') == Some(Fold::OutOfLine)
            && let Err(e) = catch_up(c, &channel).await
        {
            tracing::warn!(%channel, error = %e.message, "catching up after a stream's gap failed; the next operation retries");
        }
        return;
    }
    let Some(decoded) = scripts::decode_payload(&channel, payload) else {
        tracing::warn!(%channel, "an unreadable message on the Redis feed was skipped; catching up");
        let _ = catch_up(c, &channel).await;
        return;
    };
    if c.broker.mirror_merge(decoded) == Some(Merge::OutOfLine)
        && let Err(e) = catch_up(c, &channel).await
    {
        tracing::warn!(%channel, error = %e.message, "catching up after a gap failed; the next message retries");
    }
}

/// Starts mirroring what `batch` asks for: one SUBSCRIBE for the new feeds, then a snapshot
/// of every channel asked for, and answers each request.
async fn serve(c: &Cluster, link: &mut Link, batch: Vec<Request>) -> Result<(), Lost> {
    let mut wanted: Vec<ChannelName> = Vec::new();
    let mut seen = HashSet::new();
    for request in &batch {
        for (channel, since) in &request.channels {
            if !c.in_line(channel, since.as_ref()) && seen.insert(channel.clone()) {
                wanted.push(channel.clone());
            }
        }
    }
    let new_feeds: Vec<String> =
        wanted.iter().filter(|ch| !c.shared.mirrored.contains(ch)).map(|ch| c.keys.feed(ch)).collect();
    if !new_feeds.is_empty()
        && let Err(e) = subscribe(link, new_feeds).await
    {
        for request in batch {
            let _ = request.reply.send(Err(unavailable("Redis is unreachable")));
        }
        return Err(e);
    }
    let results = catch_up_all(c, &wanted).await;
    let now = Instant::now();
    for (channel, result) in &results {
        if result.is_ok() {
            c.shared.mirrored.insert(channel.clone(), now);
        }
    }
    for request in batch {
        let failed = request
            .channels
            .iter()
            .find_map(|(channel, _)| results.iter().find(|(ch, r)| ch == channel && r.is_err()).map(|(_, r)| r));
        let answer = match failed {
            Some(Err(e)) => Err(unavailable(&e.message)),
            _ => Ok(()),
        };
        let _ = request.reply.send(answer);
    }
    Ok(())
}

/// Catches every channel of `channels` up with Redis, reading the snapshots concurrently.
async fn catch_up_all(c: &Cluster, channels: &[ChannelName]) -> Vec<(ChannelName, Result<(), ProtocolError>)> {
    let results = futures_util::future::join_all(channels.iter().map(|channel| catch_up(c, channel))).await;
    channels.iter().cloned().zip(results).collect()
}

/// Reads `channel`'s snapshot and brings its mirror in line with it.
async fn catch_up(c: &Cluster, channel: &ChannelName) -> Result<(), ProtocolError> {
    let seen = c.broker.mirrored(channel);
    let read = c.read_snapshot(channel, seen.as_ref()).await?;
    // A reset waits for the round in flight, so that it never overtakes earlier messages.
    while c.broker.mirror_catch_up(channel, read.snapshot.clone(), read.streams.clone()).is_err() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Stops mirroring `slice`'s channels without subscribers that no client asked for lately.
async fn drop_idle(c: &Cluster, link: &mut Link, slice: Slice) -> Result<(), Lost> {
    let idle = c.shared.mirrored.sweep(slice, IDLE_MIRROR, Instant::now(), |channel| c.broker.mirror_forget(channel));
    let idle: Vec<String> = idle.iter().map(|channel| c.keys.feed(channel)).collect();
    if idle.is_empty() {
        return Ok(());
    }
    match tokio::time::timeout(REDIS_TIMEOUT, link.unsubscribe(idle)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Lost(e.to_string())),
        Err(_) => Err(Lost("UNSUBSCRIBE timed out".into())),
    }
}
