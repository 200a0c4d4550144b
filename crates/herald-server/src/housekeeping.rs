//! The node's periodic walks — heartbeats, idle and token-expiry checks, channel sweeps,
//! subscriber-table trims, limit pruning and store compaction — run by one task (no timer per
//! connection), each spread over the heartbeat interval.
//!
//! Why spread: a walk that queued a heartbeat for every connection in one instant put 10,000+
//! writes in front of every message published during it (a WebSocket seed's p99.9 went from
//! about 6 ms to over 60 ms at the default 15 s interval). Instead the interval is cut into
//! [`SLICES`] ticks, and each tick walks one slice of the registry's and the broker's shards:
//! every connection still gets its heartbeat (and its idle check) once per interval, at its
//! own phase, and every channel is still swept once per interval.
//!
//! Guarantees: over any `heartbeat_secs`, each connection's slice is walked exactly once
//! (ticks that fall behind are delayed, not skipped); the walks that cost little and touch no
//! connection (pruning per-IP limits, starting a compaction) run once per interval, on the
//! first slice.
//!
//! With `stream_flush_ms`, a second task flushes the token streams' waiting appends at that
//! interval ([`Broker::flush_streams`]).

use std::{sync::Arc, time::Duration};

use crate::{
    broker::Broker,
    slice::{SLICES, Slice},
    state::AppState,
};

/// How long after the idle limit a mirror aborts an idle stream (Redis drops it at the limit).
const MIRROR_STREAM_GRACE_MS: u64 = 1000;

/// Starts the housekeeping task; it ends when the shutdown starts.
pub fn spawn(state: &AppState) {
    let registry = state.registry.clone();
    let broker = state.broker.clone();
    let guard = state.guard.clone();
    let sweeps = state.engine.sweeps_idle_channels();
    let keys_window_ms = state.config.idempotency_window_secs * 1000;
    let tick_every = state.config.heartbeat() / SLICES as u32;
    let ws_idle_ms = state.config.ws_idle_timeout_secs * 1000;
    if state.config.stream_flush_ms > 0 {
        spawn_stream_flush(state, Duration::from_millis(state.config.stream_flush_ms));
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(tick_every.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        for index in (0..SLICES).cycle() {
            tokio::select! {
                _ = tick.tick() => {}
                () = registry.shutdown_started() => return,
            }
            let slice = Slice(index);
            registry.heartbeat(slice, ws_idle_ms);
            broker.trim(slice);
            let removed = if sweeps {
                broker.sweep(slice)
            } else {
                broker.expire_idle_streams(slice, MIRROR_STREAM_GRACE_MS);
                0
            };
            if removed > 0 {
                tracing::debug!(removed, "forgot idle channels");
            }
            if index == 0 {
                guard.prune();
                compact(&broker, keys_window_ms);
            }
        }
    });
}

/// Starts the task that flushes the streams' waiting appends `every` interval; it ends when
/// the shutdown starts.
fn spawn_stream_flush(state: &AppState, every: Duration) {
    let (registry, broker) = (state.registry.clone(), state.broker.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => broker.flush_streams(),
                () = registry.shutdown_started() => return,
            }
        }
    });
}

/// Compacts the store's sealed segments off the async threads (at most one run at a time).
fn compact(broker: &Arc<Broker>, keys_window_ms: u64) {
    if broker.store().is_none() {
        return;
    }
    let broker = broker.clone();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let Some(store) = broker.store() else { return };
        let keys_after = crate::now_ms().saturating_sub(keys_window_ms);
        match store.compact(|record| broker.retention(record, keys_after), &runtime) {
            Ok(0) => {}
            Ok(freed) => tracing::debug!(freed, "compacted the data directory"),
            Err(e) => {
                broker.metrics().engine_errors.inc();
                tracing::error!(error = %e, "compacting the data directory failed");
            }
        }
    });
}
