//! The local engines against the clock, in process and with tokio's clock paused: history that
//! leaves by age, and the position a forgotten channel keeps for `position_ttl_secs` (a day by
//! default, which no black-box test can wait for). Time moves only by `tokio::time::advance`,
//! and in tests the server reads its ages from that clock ([`crate::clock`]), so these tests
//! sleep for nothing and cannot race a slow machine.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::{sync::Arc, time::Duration};

use crate::{
    Config,
    broker::Broker,
    engine::{Durable, Engine, Memory, Placed},
    frame::{Frame, Transport},
    metrics::Metrics,
    outbox::{Outbox, QueueLimits},
    slice::{SLICES, Slice},
    store::{Durability, Store, StoreError, StoreOptions},
};
use herald_core::{ChannelName, HistoryQuery, Start, StreamPosition};
use serde_json::value::RawValue;

/// History for one second; forgotten positions for the default day.
fn config() -> Arc<Config> {
    Arc::new(Config { history_ttl_secs: 1, ..Config::default() })
}

fn channel(name: &str) -> ChannelName {
    ChannelName::new(name).unwrap()
}

async fn publish(engine: &dyn Engine, channel: &ChannelName) -> Placed {
    let data = RawValue::from_string("{\"title\":\"Rust engineer\"}".to_string()).unwrap();
    let placed = engine.publish(channel, &data, None, None).get().await.unwrap();
    engine.wait_durable(placed.seq).get().await.unwrap();
    placed
}

/// One housekeeping round: every slice of the channel sweep.
fn sweep_all(broker: &Broker) -> usize {
    (0..SLICES).map(|i| broker.sweep(Slice(i))).sum()
}

/// A subscriber that presents `since`: whether it was recovered, and what it was sent.
fn resume(broker: &Broker, channel: &ChannelName, since: &StreamPosition) -> (Option<bool>, Vec<Frame>) {
    let outbox =
        Arc::new(Outbox::new(1, Transport::Poll, QueueLimits { frames: 100, bytes: 100_000 }, 0, Arc::default()));
    let subscribed = broker.subscribe(channel, &outbox, Start::After(since), usize::MAX, None, |_| None);
    broker.unsubscribe(channel, outbox.id());
    (subscribed.recovered, outbox.take().0.into_iter().collect())
}

fn offsets(frames: &[Frame]) -> Vec<u64> {
    frames.iter().filter_map(|f| if let Frame::Message(m) = f { Some(m.offset) } else { None }).collect()
}

#[tokio::test(start_paused = true)]
async fn history_leaves_by_age_and_a_client_behind_it_gets_an_exact_reset() {
    let broker = Arc::new(Broker::new(config(), Arc::default()));
    let engine = Memory::new(broker.clone());
    let jobs = channel("jobs");
    let first = publish(&engine, &jobs).await;
    publish(&engine, &jobs).await;
    let since = StreamPosition { epoch: first.epoch.clone(), offset: 1 };

    tokio::time::advance(Duration::from_millis(900)).await;
    let (recovered, frames) = resume(&broker, &jobs, &since);
    assert_eq!((recovered, offsets(&frames)), (Some(true), vec![2]), "within the window: recovered");

    tokio::time::advance(Duration::from_millis(200)).await;
    let (position, messages) = engine.history(&jobs, &HistoryQuery::default()).get().await.unwrap();
    assert_eq!(messages.len(), 0, "past the window history is empty");
    assert_eq!((position.epoch.clone(), position.offset), (first.epoch.clone(), 2), "the position stays");
    let (recovered, frames) = resume(&broker, &jobs, &since);
    assert_eq!(recovered, Some(false), "message 2 left history: a reset, not a silent gap");
    assert!(matches!(&frames[..], [Frame::Reset { .. }]), "{} frames", frames.len());
    let next = publish(&engine, &jobs).await;
    assert_eq!((next.epoch, next.offset), (first.epoch, 3), "offsets go on in the same epoch");
}

#[tokio::test(start_paused = true)]
async fn a_forgotten_channel_keeps_its_position_for_a_day_then_starts_a_new_epoch() {
    let broker = Arc::new(Broker::new(config(), Arc::default()));
    let engine = Memory::new(broker.clone());
    let alerts = channel("user:42");
    let first = publish(&engine, &alerts).await;

    // Quiet: the message leaves history and the sweep forgets the channel, keeping its place.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(sweep_all(&broker), 1);
    assert_eq!((broker.channel_count(), broker.forgotten_count()), (0, 1));

    // An alert while the user is away, 23 hours later: the same epoch, the next offset, and a
    // client at the old position recovers it.
    tokio::time::advance(Duration::from_secs(23 * 3600)).await;
    assert_eq!(sweep_all(&broker), 0, "nothing left to forget");
    let alert = publish(&engine, &alerts).await;
    assert_eq!((alert.epoch.clone(), alert.offset), (first.epoch.clone(), 2));
    let since = StreamPosition { epoch: first.epoch.clone(), offset: 1 };
    let (recovered, frames) = resume(&broker, &alerts, &since);
    assert_eq!((recovered, offsets(&frames)), (Some(true), vec![2]));

    // Forgotten again, and kept a day and a second: the position is dropped, the channel
    // comes back in a new epoch, and the old position gets a reset.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(sweep_all(&broker), 1);
    tokio::time::advance(Duration::from_secs(86_400)).await;
    assert_eq!(sweep_all(&broker), 0);
    assert_eq!(broker.forgotten_count(), 0, "past position_ttl_secs the position is dropped");
    let reborn = publish(&engine, &alerts).await;
    assert_ne!(reborn.epoch, first.epoch, "a new epoch, never a reissued offset");
    assert_eq!(reborn.offset, 1);
    let since = StreamPosition { epoch: first.epoch, offset: 2 };
    let (recovered, frames) = resume(&broker, &alerts, &since);
    assert_eq!(recovered, Some(false));
    assert!(matches!(&frames[..], [Frame::Reset { .. }]));
}

#[tokio::test(start_paused = true)]
async fn the_durable_engine_keeps_a_forgotten_position_across_a_restart() {
    let dir = std::env::temp_dir().join(format!("herald-engine-clock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The writer thread of a closed store lets go of the directory's lock as it ends.
    let open = || {
        let options = StoreOptions {
            dir: dir.clone(),
            durability: Durability::Fsync,
            group_commit: Duration::ZERO,
            segment_bytes: 1 << 20,
        };
        let metrics = Arc::new(Metrics::new());
        let (store, records) = (0..500)
            .find_map(|_| match Store::open(options.clone(), metrics.clone()) {
                Err(StoreError::Locked(_)) => {
                    std::thread::sleep(Duration::from_millis(10));
                    None
                }
                opened => Some(opened.unwrap()),
            })
            .expect("the closed store's lock is released");
        let broker = Arc::new(Broker::with_store(config(), metrics, store.clone(), records));
        (broker.clone(), Durable::new(broker, store))
    };
    let alerts = channel("user:7");
    let first = {
        let (broker, engine) = open();
        let first = publish(&engine, &alerts).await;
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(sweep_all(&broker), 1, "forgotten before the restart");
        broker.store().unwrap().close();
        first
    };

    let (_, engine) = open();
    let alert = publish(&engine, &alerts).await;
    assert_eq!((alert.epoch, alert.offset), (first.epoch, 2), "the restart kept the forgotten position");
    drop(engine);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(start_paused = true)]
async fn a_stream_left_idle_is_aborted_and_its_subscribers_are_told() {
    let broker = Arc::new(Broker::new(config(), Arc::default()));
    let chat = channel("chat:9");
    let outbox =
        Arc::new(Outbox::new(1, Transport::Ws, QueueLimits { frames: 100, bytes: 100_000 }, 0, Arc::default()));
    broker.subscribe(&chat, &outbox, Start::Live, usize::MAX, None, |_| None);
    let stream = broker.stream_start(&chat, None, false).unwrap();
    broker.stream_append(&chat, &stream, herald_core::streams::Delta::Text("still ")).unwrap();

    // Appends keep it open past the idle limit (60 s by default) in all.
    tokio::time::advance(Duration::from_secs(45)).await;
    broker.stream_append(&chat, &stream, herald_core::streams::Delta::Text("thinking")).unwrap();
    tokio::time::advance(Duration::from_secs(45)).await;
    sweep_all(&broker);
    assert_eq!(broker.stream_snapshots(std::slice::from_ref(&chat), None).len(), 1, "45 s since the last append");

    tokio::time::advance(Duration::from_secs(16)).await;
    sweep_all(&broker);
    assert!(broker.stream_snapshots(std::slice::from_ref(&chat), None).is_empty(), "61 s idle: aborted");
    assert!(broker.stream_append(&chat, &stream, herald_core::streams::Delta::Text("late")).is_err());
    let kinds: Vec<&str> = outbox
        .take()
        .0
        .iter()
        .filter_map(|f| match f {
            Frame::Stream { kind, .. } => Some(kind.name()),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["stream", "append", "append", "abort"]);
}
