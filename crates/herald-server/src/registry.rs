//! Every open connection of the node: ids, counts per transport, heartbeats and the shutdown
//! signal.
//!
//! Heartbeats come from one shared task that walks the registry a slice at a time
//! ([`crate::housekeeping`]; no timer per connection): it queues a [`Frame::Heartbeat`] for
//! each streaming connection and closes WebSocket peers that have been silent for longer than
//! the idle timeout. A connection's slice is its shard, so its heartbeat falls at the same
//! phase of every interval.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
};

use herald_core::DisconnectCode;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::{
    frame::{Frame, Transport},
    ids::ById,
    metrics::Metrics,
    now_ms,
    outbox::{Outbox, QueueLimits},
};

/// As many shards as housekeeping slices: each tick walks one shard.
const SHARDS: usize = crate::slice::SLICES;

type ConnectionShard = ById<Arc<Outbox>>;

/// Open connections by transport.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ConnectionCounts {
    /// WebSocket connections.
    pub ws: usize,
    /// SSE streams.
    pub sse: usize,
    /// Long polls waiting.
    pub poll: usize,
}

/// The registry of open connections.
pub struct Registry {
    shards: Box<[Mutex<ConnectionShard>]>,
    next_id: AtomicU64,
    counts: [AtomicUsize; 3],
    limits: QueueLimits,
    metrics: Arc<Metrics>,
    shutting_down: AtomicBool,
    shutdown_tx: watch::Sender<bool>,
}

/// A registered connection; dropping it removes the connection from the registry.
pub struct Registration {
    registry: Arc<Registry>,
    outbox: Arc<Outbox>,
}

// === impl Registry ===

impl Registry {
    /// An empty registry whose connections get queues bounded by `limits`, counted in
    /// `metrics`.
    pub fn new(limits: QueueLimits, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            shards: (0..SHARDS).map(|_| Mutex::new(ById::default())).collect(),
            // A random start: connection ids (presence's `client`) stay distinct across the
            // nodes of a cluster.
            next_id: AtomicU64::new((u64::from(rand::random::<u32>()) << 20) | 1),
            counts: Default::default(),
            limits,
            metrics,
            shutting_down: AtomicBool::new(false),
            shutdown_tx: watch::Sender::new(false),
        })
    }

    /// Registers a new connection.
    pub fn register(self: &Arc<Self>, transport: Transport) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::new(id, transport, self.limits, now_ms(), self.metrics.clone()));
        self.shards[id as usize % SHARDS].lock().insert(id, outbox.clone());
        self.counts[transport as usize].fetch_add(1, Ordering::Relaxed);
        // A connection that registers while the shutdown walk runs must still hear of it.
        if self.is_shutting_down() {
            outbox.close(DisconnectCode::SHUTDOWN);
        }
        Registration { registry: self.clone(), outbox }
    }

    /// Open connections by transport.
    pub fn counts(&self) -> ConnectionCounts {
        let get = |t: Transport| self.counts[t as usize].load(Ordering::Relaxed);
        ConnectionCounts { ws: get(Transport::Ws), sse: get(Transport::Sse), poll: get(Transport::Poll) }
    }

    /// Open connections in all.
    pub fn total(&self) -> usize {
        let c = self.counts();
        c.ws + c.sse + c.poll
    }

    fn for_each(&self, mut f: impl FnMut(&Arc<Outbox>)) {
        for shard in self.shards.iter() {
            // Clone out so that no registry lock is held while touching queues.
            let outboxes: Vec<Arc<Outbox>> = shard.lock().values().cloned().collect();
            outboxes.iter().for_each(&mut f);
        }
    }

    /// One slice of the heartbeat round: a heartbeat to every streaming connection of the
    /// slice (written straight to its socket), a close for WebSocket peers silent for longer
    /// than `ws_idle_ms`, and a close (`session_expired`) for connections whose token has
    /// expired.
    pub fn heartbeat(&self, slice: crate::slice::Slice, ws_idle_ms: u64) {
        let now = now_ms();
        for shard in slice.shards(SHARDS) {
            let outboxes: Vec<Arc<Outbox>> = self.shards[shard].lock().values().cloned().collect();
            for outbox in &outboxes {
                match outbox.transport() {
                    Transport::Ws | Transport::Sse if outbox.expired(now) => {
                        outbox.close(DisconnectCode::SESSION_EXPIRED);
                    }
                    Transport::Ws if now.saturating_sub(outbox.last_seen_ms()) > ws_idle_ms => {
                        outbox.close(DisconnectCode::STALE);
                    }
                    Transport::Ws | Transport::Sse => {
                        outbox.push(Frame::Heartbeat);
                    }
                    Transport::Poll => {}
                }
            }
        }
    }

    /// Closes every connection of `user` with `code`; returns how many.
    pub fn disconnect_user(&self, user: &str, code: DisconnectCode) -> usize {
        let mut closed = 0;
        self.for_each(|outbox| {
            if outbox.is_user(user) {
                outbox.close(code);
                closed += 1;
            }
        });
        closed
    }

    /// Starts the shutdown: new connections are refused and every open one is told to
    /// reconnect elsewhere.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.shutdown_tx.send_replace(true);
        self.for_each(|outbox| outbox.close(DisconnectCode::SHUTDOWN));
    }

    /// Whether the shutdown has started.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Resolves once the shutdown has started.
    pub async fn shutdown_started(&self) {
        let _ = self.shutdown_signal().wait_for(|down| *down).await;
    }

    /// A receiver that turns `true` when the shutdown starts; a connection keeps one for its
    /// life rather than subscribing anew before every request.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }
}

// === impl Registration ===

impl Registration {
    /// The connection's queue.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let id = self.outbox.id();
        self.registry.shards[id as usize % SHARDS].lock().remove(&id);
        self.registry.counts[self.outbox.transport() as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slice::{SLICES, Slice};

    /// Heartbeats never burst: each tick's slice reaches about 1/SLICES of the connections, and
    /// one round of slices reaches each connection exactly once.
    #[test]
    fn a_round_of_slices_beats_every_connection_once_a_slice_at_a_time() {
        let registry = Registry::new(QueueLimits { frames: 10, bytes: 10_000 }, Arc::default());
        let connections: Vec<Registration> = (0..SLICES * 4).map(|_| registry.register(Transport::Sse)).collect();
        let beats = |r: &Registration| r.outbox().take().0.iter().filter(|f| matches!(f, Frame::Heartbeat)).count();
        let mut per_connection = vec![0; connections.len()];
        for slice in 0..SLICES {
            registry.heartbeat(Slice(slice), u64::MAX);
            let now: Vec<usize> = connections.iter().map(beats).collect();
            assert_eq!(now.iter().sum::<usize>(), 4, "slice {slice} reaches its own connections only");
            per_connection.iter_mut().zip(now).for_each(|(total, n)| *total += n);
        }
        assert!(per_connection.iter().all(|&n| n == 1), "one heartbeat each per round: {per_connection:?}");
    }
}
