//! The per-connection outgoing queue: a bounded list of shared, pre-encoded frames.
//!
//! Publishers push without blocking and without awaiting; the connection's own task drains
//! the queue and writes. A connection whose queue passes its bounds is a slow consumer: its
//! queue is dropped and it is closed with [`DisconnectCode::SLOW_CONSUMER`], and nobody else
//! waits for it.

use std::{
    collections::VecDeque,
    sync::atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;
use herald_core::{ChannelName, DisconnectCode, ResetReason, StreamPosition};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::publication::Message;

/// Which transport a connection uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// WebSocket.
    Ws,
    /// Server-Sent Events.
    Sse,
    /// Long polling (one request).
    Poll,
}

/// Something to send to one connection.
#[derive(Clone)]
pub enum Frame {
    /// A channel message.
    Message(Message),
    /// A channel's stream could not be recovered; the client continues from `position`.
    Reset {
        /// The channel.
        channel: ChannelName,
        /// The stream's current position.
        position: StreamPosition,
        /// Why.
        reason: ResetReason,
    },
    /// A reply or push already encoded for this connection (WebSocket JSON text).
    Text(Bytes),
    /// Time for a heartbeat.
    Heartbeat,
}

/// Bounds of one queue. The zero value disconnects on the first frame.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    /// Most frames queued.
    pub frames: usize,
    /// Most message bytes queued.
    pub bytes: usize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Frame>,
    bytes: usize,
    close: Option<DisconnectCode>,
}

/// One connection's queue, shared between the connection task and every channel it is in.
pub struct Outbox {
    id: u64,
    transport: Transport,
    limits: QueueLimits,
    state: Mutex<State>,
    notify: Notify,
    last_seen_ms: AtomicU64,
}

// === impl Outbox ===

impl Outbox {
    /// An empty queue for connection `id`.
    pub fn new(id: u64, transport: Transport, limits: QueueLimits, now_ms: u64) -> Self {
        Self {
            id,
            transport,
            limits,
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            last_seen_ms: AtomicU64::new(now_ms),
        }
    }

    /// The connection id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The connection's transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Queues `frame`. Returns false when the connection is closing (the frame is dropped); a
    /// push past the bounds closes the connection as a slow consumer.
    pub fn push(&self, frame: Frame) -> bool {
        let weight = match &frame {
            Frame::Message(m) => m.weight(),
            Frame::Text(b) => b.len(),
            Frame::Reset { .. } | Frame::Heartbeat => 0,
        };
        let mut state = self.state.lock();
        if state.close.is_some() {
            return false;
        }
        if state.queue.len() >= self.limits.frames || state.bytes + weight > self.limits.bytes {
            state.queue = VecDeque::new();
            state.bytes = 0;
            state.close = Some(DisconnectCode::SLOW_CONSUMER);
            drop(state);
            self.notify.notify_one();
            return false;
        }
        state.bytes += weight;
        state.queue.push_back(frame);
        let first = state.queue.len() == 1;
        drop(state);
        if first {
            self.notify.notify_one();
        }
        true
    }

    /// Asks the connection to close with `code` after the frames already queued.
    pub fn close(&self, code: DisconnectCode) {
        let mut state = self.state.lock();
        if state.close.is_none() {
            state.close = Some(code);
        }
        drop(state);
        self.notify.notify_one();
    }

    /// Takes every queued frame, leaving no queue allocated (an idle connection holds no queue
    /// memory), and the close code once the connection is closing (after its last frames).
    pub fn take(&self) -> (VecDeque<Frame>, Option<DisconnectCode>) {
        let mut state = self.state.lock();
        state.bytes = 0;
        (std::mem::take(&mut state.queue), state.close)
    }

    /// Whether frames are waiting or the connection is closing.
    pub fn is_ready(&self) -> bool {
        let state = self.state.lock();
        !state.queue.is_empty() || state.close.is_some()
    }

    /// Waits until something was pushed or a close was asked since the last wait.
    pub async fn ready(&self) {
        self.notify.notified().await;
    }

    /// Records that the peer was heard from at `now_ms`.
    pub fn touch(&self, now_ms: u64) {
        self.last_seen_ms.store(now_ms, Ordering::Relaxed);
    }

    /// When the peer was last heard from, in ms since the Unix epoch.
    pub fn last_seen_ms(&self) -> u64 {
        self.last_seen_ms.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &'static str) -> Frame {
        Frame::Text(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn frames_come_out_in_order_then_the_close() {
        let o = Outbox::new(1, Transport::Ws, QueueLimits { frames: 10, bytes: 100 }, 0);
        assert!(o.push(text("a")) && o.push(text("b")));
        o.close(DisconnectCode::SHUTDOWN);
        assert!(!o.push(text("c")), "no frame after a close");
        let (out, close) = o.take();
        assert_eq!(close, Some(DisconnectCode::SHUTDOWN));
        let got: Vec<_> = out.iter().map(|f| if let Frame::Text(b) = f { b.clone() } else { Bytes::new() }).collect();
        assert_eq!(got, [Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
    }

    #[test]
    fn overflow_drops_the_queue_and_closes_as_slow_consumer() {
        let o = Outbox::new(1, Transport::Sse, QueueLimits { frames: 2, bytes: 100 }, 0);
        assert!(o.push(text("a")) && o.push(text("b")));
        assert!(!o.push(text("c")));
        let (out, close) = o.take();
        assert_eq!(close, Some(DisconnectCode::SLOW_CONSUMER));
        assert!(out.is_empty());

        let o = Outbox::new(2, Transport::Sse, QueueLimits { frames: 10, bytes: 3 }, 0);
        assert!(o.push(text("ab")));
        assert!(!o.push(text("cd")), "byte bound");
    }
}
