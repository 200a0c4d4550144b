//! The per-connection outgoing queue, bounded, and — for streaming connections — the write
//! path straight to the socket.
//!
//! Publishers push without blocking and without awaiting. A long poll's frames wait in a
//! queue for its request to collect them. A WebSocket or SSE connection, once its task has
//! [`attach`](Outbox::attach)ed the socket and an [`Encoder`], is written by the pusher itself:
//! under this outbox's lock the frame is encoded and handed to the socket with one
//! non-blocking `writev`; what the socket does not take waits in [`Unsent`] and the
//! connection's task is woken to write it when the socket drains ([`Outbox::flush`]). Every
//! write to an attached socket happens under the lock, so frames never interleave, and they
//! leave in push order.
//!
//! A connection whose backlog passes its bounds is a slow consumer: it is closed with
//! [`DisconnectCode::SLOW_CONSUMER`], and nobody else waits for it.

use std::{
    collections::VecDeque,
    io,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::Poll,
};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use herald_core::DisconnectCode;
use parking_lot::Mutex;
use tokio::net::TcpStream;

use crate::{
    frame::{Frame, Transport},
    metrics::metrics,
    publication::Message,
    wire::{Encoder, Segments, Unsent},
};

/// Bounds of one queue. The zero value disconnects on the first frame.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    /// Most frames queued.
    pub frames: usize,
    /// Most bytes queued (message bytes in a queue, wire bytes unsent to a socket).
    pub bytes: usize,
}

/// Where a streaming connection stands after [`Outbox::settle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Open; `blocked`: a backlog waits for the socket to become writable.
    Open {
        /// Whether the socket is full.
        blocked: bool,
    },
    /// Closing with this code: the task sends its goodbye after the backlog.
    Closing(DisconnectCode),
    /// The socket failed: the connection is over.
    Failed,
}

/// An attached socket and how frames become its bytes.
struct Wire {
    socket: Arc<TcpStream>,
    encoder: Box<dyn Encoder>,
    /// Frames written since the last [`Outbox::flush`] found the socket drained; bounds the
    /// number of frames in the backlog.
    backlog_frames: usize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Frame>,
    bytes: usize,
    unsent: Unsent,
    wire: Option<Wire>,
    close: Option<DisconnectCode>,
    /// The token's user, for `POST /api/disconnect`.
    user: Option<Arc<str>>,
}

/// One connection's queue, shared between the connection task and every channel it is in.
pub struct Outbox {
    id: u64,
    transport: Transport,
    limits: QueueLimits,
    state: Mutex<State>,
    wakeup: Wakeup,
    last_seen_ms: AtomicU64,
    /// When the connection's token expires, in ms since the Unix epoch; 0: no token.
    expires_at_ms: AtomicU64,
}

/// Wakes the one task that serves a connection: a wake-up given while the task is not waiting
/// is kept, and ends its next wait at once (as [`tokio::sync::Notify::notify_one`]'s permit),
/// without a lock on either side.
#[derive(Default)]
struct Wakeup {
    pending: AtomicBool,
    waker: AtomicWaker,
}

// === impl Wakeup ===

impl Wakeup {
    /// Wakes the waiting task, or the next wait.
    fn notify_one(&self) {
        self.pending.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Waits for a wake-up given since the last wait ended. One task waits at a time.
    async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.pending.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            // A wake-up between the check and the registration found no waker: look again.
            match self.pending.swap(false, Ordering::AcqRel) {
                true => Poll::Ready(()),
                false => Poll::Pending,
            }
        })
        .await;
    }
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
            wakeup: Wakeup::default(),
            last_seen_ms: AtomicU64::new(now_ms),
            expires_at_ms: AtomicU64::new(0),
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

    /// Queues `frame`, or writes it to the attached socket. Returns false when the connection
    /// is closing (the frame is dropped); a push past the bounds closes the connection as a
    /// slow consumer.
    pub fn push(&self, frame: Frame) -> bool {
        let Some(bytes) = self.push_frame(frame) else { return false };
        metrics().bytes_out(self.transport, bytes);
        true
    }

    /// [`Outbox::push`] without counting: the wire bytes the frame became (0 when queued), or
    /// `None` when it was dropped.
    fn push_frame(&self, frame: Frame) -> Option<usize> {
        let mut state = self.state.lock();
        if state.close.is_some() {
            return None;
        }
        let state = &mut *state;
        if let Some(wire) = state.wire.as_mut() {
            let mut segments = Segments::default();
            wire.encoder.encode(frame, &mut segments);
            let bytes = segments.len();
            if state.unsent.is_empty() {
                let rest = segments.write_now(&wire.socket);
                if !rest.is_empty() {
                    wire.backlog_frames = 1;
                    state.unsent.extend(rest);
                    self.wakeup.notify_one();
                }
                return Some(bytes);
            }
            if wire.backlog_frames >= self.limits.frames || state.unsent.bytes() + bytes > self.limits.bytes {
                // The backlog stays (it may end mid-frame) and drains before the close.
                self.overflow(state);
                return None;
            }
            wire.backlog_frames += 1;
            state.unsent.extend(segments);
            return Some(bytes);
        }
        let weight = match &frame {
            Frame::Message(m) => m.weight(),
            Frame::Text(b) => b.len(),
            Frame::Reset { .. } | Frame::Heartbeat => 0,
        };
        if state.queue.len() >= self.limits.frames || state.bytes + weight > self.limits.bytes {
            state.queue = VecDeque::new();
            state.bytes = 0;
            self.overflow(state);
            return None;
        }
        state.bytes += weight;
        state.queue.push_back(frame);
        let first = state.queue.len() == 1;
        if first {
            self.wakeup.notify_one();
        }
        Some(0)
    }

    /// Pushes messages of one channel, in order. To an attached socket with nothing waiting
    /// they go with one `writev`: a fan-out round that carries several messages (publishes
    /// came faster than a round takes) costs one system call per subscriber, not one each.
    /// Returns the wire bytes they became (the caller counts them, once per fan-out part), or
    /// `None` when the connection is closing.
    pub fn push_messages(&self, messages: &[Message]) -> Option<usize> {
        let one_by_one =
            || messages.iter().try_fold(0, |sum, m| Some(sum + self.push_frame(Frame::Message(m.clone()))?));
        if messages.len() == 1 {
            return one_by_one();
        }
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if state.close.is_some() {
            return None;
        }
        let Some(wire) = state.wire.as_mut().filter(|_| state.unsent.is_empty()) else {
            // A queue, or a backlog already: the bounds apply frame by frame.
            drop(guard);
            return one_by_one();
        };
        let mut batch = Unsent::default();
        for m in messages {
            let mut segments = Segments::default();
            wire.encoder.encode(Frame::Message(m.clone()), &mut segments);
            batch.extend(segments);
        }
        let bytes = batch.bytes();
        if !matches!(batch.write_now(&wire.socket), Ok(true)) {
            // Full or failed: the task drains the rest, or finds the error.
            wire.backlog_frames = messages.len();
            state.unsent = batch;
            self.wakeup.notify_one();
        }
        Some(bytes)
    }

    fn overflow(&self, state: &mut State) {
        if state.close.is_none() {
            metrics().disconnect(DisconnectCode::SLOW_CONSUMER.reason);
        }
        state.close = Some(DisconnectCode::SLOW_CONSUMER);
        self.wakeup.notify_one();
    }

    /// From now on, frames are written to `socket` as `encoder` encodes them: first `lead`,
    /// then whatever was queued before, then every push.
    pub fn attach(&self, socket: Arc<TcpStream>, mut encoder: Box<dyn Encoder>, lead: Segments) {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let mut backlog_frames = 0;
        state.unsent.extend(lead);
        for frame in std::mem::take(&mut state.queue) {
            let mut segments = Segments::default();
            encoder.encode(frame, &mut segments);
            state.unsent.extend(segments);
            backlog_frames += 1;
        }
        state.bytes = 0;
        state.wire = Some(Wire { socket, encoder, backlog_frames });
        drop(guard);
        // The task's next flush writes the lead and the queued frames.
        self.wakeup.notify_one();
    }

    /// Writes raw wire bytes (whole protocol frames, e.g. a WebSocket pong or close) behind
    /// everything already written. Accepted even while closing; dropped past the bounds.
    pub fn write_raw(&self, bytes: &[u8]) {
        let mut state = self.state.lock();
        let state = &mut *state;
        let Some(wire) = state.wire.as_ref() else { return };
        let mut segments = Segments::default();
        if state.unsent.is_empty() {
            let written = wire.socket.try_write(bytes).unwrap_or(0);
            if written == bytes.len() {
                return;
            }
            segments.push(Bytes::copy_from_slice(&bytes[written..]));
            state.unsent.extend(segments);
            self.wakeup.notify_one();
            return;
        }
        if state.unsent.bytes() + bytes.len() > self.limits.bytes {
            self.overflow(state);
            return;
        }
        segments.push(Bytes::copy_from_slice(bytes));
        state.unsent.extend(segments);
    }

    /// Writes what waits for the attached socket, as far as it takes it now. `Ok(true)`:
    /// nothing waits; `Ok(false)`: wait until the socket is writable and flush again; `Err`:
    /// the socket failed.
    pub fn flush(&self) -> io::Result<bool> {
        let mut state = self.state.lock();
        let state = &mut *state;
        let Some(wire) = state.wire.as_mut() else { return Ok(true) };
        let drained = state.unsent.write_now(&wire.socket)?;
        if drained {
            wire.backlog_frames = 0;
        }
        Ok(drained)
    }

    /// After a wake-up of a streaming connection's task: writes the backlog as far as the
    /// socket takes it, and says what the task does next.
    pub fn settle(&self) -> Settled {
        match (self.flush(), self.closing()) {
            (Err(_), _) => Settled::Failed,
            (Ok(_), Some(code)) => Settled::Closing(code),
            (Ok(drained), None) => Settled::Open { blocked: !drained },
        }
    }

    /// Drops the attached socket (it closes once no write holds it) and anything unsent; the
    /// outbox refuses every later push. Called when a streaming connection's task ends.
    pub fn detach(&self) {
        let mut state = self.state.lock();
        state.wire = None;
        state.unsent = Unsent::default();
        state.close.get_or_insert(DisconnectCode::SHUTDOWN);
    }

    /// Asks the connection to close with `code` after the frames already queued.
    pub fn close(&self, code: DisconnectCode) {
        let mut state = self.state.lock();
        if state.close.is_none() {
            state.close = Some(code);
            metrics().disconnect(code.reason);
        }
        drop(state);
        self.wakeup.notify_one();
    }

    /// The close code, once the connection is closing.
    pub fn closing(&self) -> Option<DisconnectCode> {
        self.state.lock().close
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

    /// Waits until something was pushed, a backlog started or a close was asked since the
    /// last wait.
    pub async fn ready(&self) {
        self.wakeup.wait().await;
    }

    /// Records that the peer was heard from at `now_ms`.
    pub fn touch(&self, now_ms: u64) {
        self.last_seen_ms.store(now_ms, Ordering::Relaxed);
    }

    /// When the peer was last heard from, in ms since the Unix epoch.
    pub fn last_seen_ms(&self) -> u64 {
        self.last_seen_ms.load(Ordering::Relaxed)
    }

    /// Records the user the connection's token names.
    pub fn set_user(&self, user: &str) {
        self.state.lock().user = Some(Arc::from(user));
    }

    /// Whether the connection's token names `user`.
    pub fn is_user(&self, user: &str) -> bool {
        self.state.lock().user.as_deref() == Some(user)
    }

    /// Sets when the connection's token expires (ms since the Unix epoch; 0: never). The
    /// heartbeat closes the connection once that time has passed.
    pub fn set_expiry(&self, expires_at_ms: u64) {
        self.expires_at_ms.store(expires_at_ms, Ordering::Relaxed);
    }

    /// Whether the connection's token has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        let at = self.expires_at_ms.load(Ordering::Relaxed);
        at != 0 && now_ms >= at
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

    #[tokio::test]
    async fn a_wake_up_is_kept_for_the_next_wait_and_ends_a_waiting_one() {
        let o = Arc::new(Outbox::new(1, Transport::Poll, QueueLimits { frames: 10, bytes: 100 }, 0));
        let wait = || tokio::time::timeout(std::time::Duration::from_secs(5), o.ready());
        // Pushed before anyone waits: the next wait ends at once, and only that one.
        assert!(o.push(text("a")));
        assert!(wait().await.is_ok(), "the kept wake-up ends the wait");
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(50), o.ready()).await;
        assert!(quiet.is_err(), "a wake-up is used once");
        // Given while a task waits: it wakes that task.
        let pusher = Arc::clone(&o);
        let waiter = tokio::spawn(async move {
            let _ = o.take();
            tokio::time::timeout(std::time::Duration::from_secs(5), o.ready()).await.is_ok()
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(pusher.push(text("b")));
        assert!(waiter.await.unwrap_or(false), "the waiting task is woken");
    }
}
