//! The per-connection outgoing queue, shared between a connection's task and every channel it
//! is in, and — for streaming connections — the write path straight to the socket.
//!
//! What to send, what to keep and when to close is decided by [`Queue`], a state machine with
//! no I/O ([`queue`]). An [`Outbox`] holds it under a lock with the socket beside it and does
//! the one thing it cannot: the write. Publishers push without blocking and without awaiting.
//! A long poll's frames wait in the queue for its request to collect them. A WebSocket or SSE
//! connection, once its task has [`attach`](Outbox::attach)ed the socket and an [`Encoder`],
//! is written by the pusher itself: under this outbox's lock the frame is encoded and handed
//! to the socket with one non-blocking `writev` (in [`crate::wire`]); what the socket does not
//! take waits in the queue's backlog and the connection's task is woken to write it when the
//! socket drains ([`Outbox::flush`]). Every write to an attached socket happens under the lock,
//! so frames never interleave, and they leave in push order.
//!
//! A waiting long poll may arm its [`PollAnswer`] here: the pusher then answers the poll itself,
//! and the connection's task is not woken for the delivery ([`answer`]).
//!
//! A connection whose backlog passes its bounds is a slow consumer: it is closed with
//! [`DisconnectCode::SLOW_CONSUMER`], and nobody else waits for it.

pub mod answer;
pub mod queue;

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

use self::answer::Stage;
use self::queue::{Batch, Push, Queue, Raw};
pub use self::{answer::PollAnswer, queue::QueueLimits};
use crate::{
    frame::{Frame, Transport},
    metrics::Metrics,
    publication::Message,
    wire::{self, Encoder, Segments},
};

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

/// What the outbox's lock guards.
struct Locked {
    queue: Queue,
    /// The attached socket: set while the queue has an encoder.
    socket: Option<Arc<TcpStream>>,
    /// The token's user, for `POST /api/disconnect`.
    user: Option<Arc<str>>,
    /// A waiting long poll's answer (see [`Outbox::arm`]).
    poll: Option<Box<PollAnswer>>,
}

/// One connection's queue, shared between the connection task and every channel it is in.
pub struct Outbox {
    id: u64,
    transport: Transport,
    locked: Mutex<Locked>,
    wakeup: Wakeup,
    last_seen_ms: AtomicU64,
    /// When the connection's token expires, in ms since the Unix epoch; 0: no token.
    expires_at_ms: AtomicU64,
    /// The server's metrics: bytes out and disconnects are counted where they happen.
    metrics: Arc<Metrics>,
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

    /// Forgets the waiting task and any wake-up not yet waited for.
    fn forget(&self) {
        drop(self.waker.take());
        self.pending.store(false, Ordering::Release);
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
    pub fn new(id: u64, transport: Transport, limits: QueueLimits, now_ms: u64, metrics: Arc<Metrics>) -> Self {
        Self {
            id,
            transport,
            locked: Mutex::new(Locked { queue: Queue::new(limits), socket: None, user: None, poll: None }),
            wakeup: Wakeup::default(),
            last_seen_ms: AtomicU64::new(now_ms),
            expires_at_ms: AtomicU64::new(0),
            metrics,
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
        self.metrics.bytes_out(self.transport, bytes);
        true
    }

    /// [`Outbox::push`] without counting: the wire bytes the frame became (0 when queued), or
    /// `None` when it was dropped.
    fn push_frame(&self, frame: Frame) -> Option<usize> {
        self.push_with(|queue, socket| queue.push(frame, transmit_to(socket)))
    }

    /// Runs one of the queue's push decisions under the lock, with the attached socket (if
    /// any) for its transmit, then wakes the task or counts an overflow as it asks.
    fn push_with(&self, decide: impl FnOnce(&mut Queue, Option<&TcpStream>) -> Push) -> Option<usize> {
        let mut locked = self.locked.lock();
        let Locked { queue, socket, .. } = &mut *locked;
        let push = decide(queue, socket.as_deref());
        self.settle_push(&mut locked, push)
    }

    /// Wakes the task (unless an armed long poll's answer spares it: [`Outbox::wakes_for`]) or
    /// counts the overflow a push asks for; the wire bytes it wrote.
    fn settle_push(&self, locked: &mut Locked, push: Push) -> Option<usize> {
        match push {
            Push::Taken { bytes, wake } => {
                if wake && self.wakes_for(locked) {
                    self.wakeup.notify_one();
                }
                Some(bytes)
            }
            Push::Refused => None,
            Push::Overflowed => {
                self.overflowed();
                None
            }
        }
    }

    /// Whether frames just queued (a push that queued them is never refused: the queue is not
    /// closing) wake the task. Not when a pusher can answer the armed long poll with them
    /// (queued messages only: the task wakes for anything else, and for what the socket did not
    /// take), nor after a pusher answered it (they wait for the next poll).
    fn wakes_for(&self, locked: &mut Locked) -> bool {
        let Locked { queue, poll, .. } = locked;
        let Some(answer) = poll.as_mut() else { return true };
        match answer.stage() {
            Stage::Held => true,
            Stage::Answered(_) => false,
            Stage::Armed(_) if !queue.only_messages() => {
                answer.hold();
                true
            }
            Stage::Armed(_) => {
                let (frames, _) = queue.take();
                let left = answer.answer(&frames);
                self.count_answered(&frames);
                self.metrics.http_request(crate::routes::Route::Poll, 200, answer.waited_secs());
                left
            }
        }
    }

    /// Pushes the newest message of a latest-only channel (see [`Queue::push_latest`]): it
    /// collapses with one of the same channel still waiting. Returns the wire bytes written now,
    /// or `None` when the connection is closing.
    pub fn push_latest(&self, message: Message) -> Option<usize> {
        self.push_with(|queue, socket| queue.push_latest(message, transmit_to(socket)))
    }

    /// Pushes an append to an open stream (see [`Queue::push_append`]): behind a backlog it
    /// merges with the held append of its stream. Returns the wire bytes written now, or
    /// `None` when the connection is closing.
    pub fn push_append(&self, frame: Frame) -> Option<usize> {
        self.push_with(|queue, socket| queue.push_append(frame, transmit_to(socket)))
    }

    /// Pushes messages of one channel, in order. To an attached socket with nothing waiting
    /// they go with one `writev`: a fan-out round that carries several messages (publishes
    /// came faster than a round takes) costs one system call per subscriber, not one each.
    /// Returns the wire bytes they became (the caller counts them, once per fan-out part), or
    /// `None` when the connection is closing.
    pub fn push_messages(&self, messages: &[Message]) -> Option<usize> {
        if messages.len() == 1 {
            return self.push_frame(Frame::Message(messages[0].clone()));
        }
        let mut guard = self.locked.lock();
        let locked = &mut *guard;
        match locked.queue.push_messages(messages) {
            Batch::Refused => None,
            Batch::OneByOne => {
                // Under one lock, so that a long poll's answer carries them all.
                let (mut sum, mut woken) = (0, false);
                for m in messages {
                    let Locked { queue, socket, .. } = &mut *locked;
                    match queue.push(Frame::Message(m.clone()), transmit_to(socket.as_deref())) {
                        Push::Taken { bytes, wake } => (sum, woken) = (sum + bytes, woken || wake),
                        refused => return self.settle_push(locked, refused),
                    }
                }
                self.settle_push(locked, Push::Taken { bytes: sum, wake: woken })
            }
            Batch::Transmit(mut batch) => {
                let bytes = batch.bytes();
                // Full or failed: the task drains the rest, or finds the error.
                let drained = locked.socket.as_ref().is_some_and(|s| matches!(batch.write_now(s), Ok(true)));
                if locked.queue.unwritten_batch(batch, drained, messages.len()) {
                    self.wakeup.notify_one();
                }
                Some(bytes)
            }
        }
    }

    fn overflowed(&self) {
        self.metrics.disconnect(DisconnectCode::SLOW_CONSUMER.reason);
        self.wakeup.notify_one();
    }

    /// From now on, frames are written to `socket` as `encoder` encodes them: first `lead`,
    /// then whatever was queued before, then every push.
    pub fn attach(&self, socket: Arc<TcpStream>, encoder: Box<dyn Encoder>, lead: Segments) {
        let mut locked = self.locked.lock();
        locked.queue.attach(encoder, lead);
        locked.socket = Some(socket);
        drop(locked);
        // The task's next flush writes the lead and the queued frames.
        self.wakeup.notify_one();
    }

    /// Writes raw wire bytes (whole protocol frames, e.g. a WebSocket pong or close) behind
    /// everything already written. Accepted even while closing; dropped past the bounds.
    pub fn write_raw(&self, bytes: &[u8]) {
        let mut locked = self.locked.lock();
        let locked = &mut *locked;
        let rest = match locked.queue.push_raw(bytes.len()) {
            Raw::Dropped => return,
            Raw::Overflowed => return self.overflowed(),
            Raw::Kept => bytes,
            Raw::Transmit => {
                let written = locked.socket.as_ref().map_or(0, |s| wire::write_slice_now(bytes, s));
                &bytes[written..]
            }
        };
        if locked.queue.keep_raw(Bytes::copy_from_slice(rest)) {
            self.wakeup.notify_one();
        }
    }

    /// Writes what waits for the attached socket, as far as it takes it now. `Ok(true)`:
    /// nothing waits; `Ok(false)`: wait until the socket is writable and flush again; `Err`:
    /// the socket failed.
    pub fn flush(&self) -> io::Result<bool> {
        let mut locked = self.locked.lock();
        let locked = &mut *locked;
        let Some(socket) = &locked.socket else { return Ok(true) };
        while let Some(backlog) = locked.queue.backlog() {
            if !backlog.write_now(socket)? {
                return Ok(false);
            }
            // What latest-only channels held while the socket was full goes next.
            if !locked.queue.drained() {
                break;
            }
        }
        Ok(true)
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
        let mut locked = self.locked.lock();
        locked.queue.detach();
        locked.socket = None;
    }

    /// Asks the connection to close with `code` after the frames already queued.
    pub fn close(&self, code: DisconnectCode) {
        if self.locked.lock().queue.close(code) {
            self.metrics.disconnect(code.reason);
        }
        self.wakeup.notify_one();
    }

    /// The close code, once the connection is closing.
    pub fn closing(&self) -> Option<DisconnectCode> {
        self.locked.lock().queue.closing()
    }

    /// Takes every queued frame, leaving no queue allocated (an idle connection holds no queue
    /// memory), and the close code once the connection is closing (after its last frames).
    pub fn take(&self) -> (VecDeque<Frame>, Option<DisconnectCode>) {
        self.locked.lock().queue.take()
    }

    /// [`Outbox::take`] for a long poll's answer: its messages are delivered now, and counted
    /// so (a long poll's queued messages are not counted when pushed: a kept subscription's
    /// may never be collected).
    pub fn take_answer(&self) -> (VecDeque<Frame>, Option<DisconnectCode>) {
        let taken = self.take();
        self.count_answered(&taken.0);
        taken
    }

    /// Counts the messages among `frames`, taken by a long poll's answer, as delivered.
    fn count_answered(&self, frames: &VecDeque<Frame>) {
        let messages = frames.iter().filter(|frame| matches!(frame, Frame::Message(_))).count();
        self.metrics.delivered(self.transport, messages as u64);
    }

    /// Whether frames are waiting or the connection is closing.
    pub fn is_ready(&self) -> bool {
        self.locked.lock().queue.is_ready()
    }

    /// Waits until something was pushed, a backlog started or a close was asked since the
    /// last wait.
    pub async fn ready(&self) {
        self.wakeup.wait().await;
    }

    /// Forgets the task that waited and any wake-up it did not wait for: a long poll's queue,
    /// just taken, kept for the connection's next poll. A later push still counts for the
    /// next wait; one that came before, its frames taken, no longer does, so that the next
    /// poll does not answer empty at once.
    pub fn forget_wakeup(&self) {
        self.wakeup.forget();
    }

    /// Arms a waiting long poll's `answer`: from now on, a push of messages is answered by the
    /// pusher, on the answer's socket, without waking the task. Handed back when something is
    /// queued already (the poll answers at once, the usual way). Arming forgets a wake-up whose
    /// frames were taken: with nothing queued, none is due.
    pub fn arm(&self, answer: Box<PollAnswer>) -> Result<(), Box<PollAnswer>> {
        let mut locked = self.locked.lock();
        if locked.queue.is_ready() {
            return Err(answer);
        }
        locked.poll = Some(answer);
        self.wakeup.forget();
        Ok(())
    }

    /// Stops pushers answering the armed poll (a request came in behind it: the task answers
    /// in turn). Returns whether a pusher already did.
    pub fn hold_answer(&self) -> bool {
        match self.locked.lock().poll.as_mut() {
            Some(answer) => {
                answer.hold();
                answer.answered().is_some()
            }
            None => false,
        }
    }

    /// Takes the armed answer back (its socket is no longer shared once it is dropped).
    pub fn disarm(&self) -> Option<Box<PollAnswer>> {
        self.locked.lock().poll.take()
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
        self.locked.lock().user = Some(Arc::from(user));
    }

    /// Whether the connection's token names `user`.
    pub fn is_user(&self, user: &str) -> bool {
        self.locked.lock().user.as_deref() == Some(user)
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

/// The transmit a push hands the queue: writes what the attached socket takes now and gives
/// back the rest (everything, with no socket).
fn transmit_to(socket: Option<&TcpStream>) -> impl FnOnce(Segments) -> Segments + '_ {
    move |segments| match socket {
        Some(socket) => segments.write_now(socket),
        None => segments,
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
        let o = Outbox::new(1, Transport::Ws, QueueLimits { frames: 10, bytes: 100 }, 0, Arc::default());
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
        let o = Outbox::new(1, Transport::Sse, QueueLimits { frames: 2, bytes: 100 }, 0, Arc::default());
        assert!(o.push(text("a")) && o.push(text("b")));
        assert!(!o.push(text("c")));
        let (out, close) = o.take();
        assert_eq!(close, Some(DisconnectCode::SLOW_CONSUMER));
        assert!(out.is_empty());

        let o = Outbox::new(2, Transport::Sse, QueueLimits { frames: 10, bytes: 3 }, 0, Arc::default());
        assert!(o.push(text("ab")));
        assert!(!o.push(text("cd")), "byte bound");
    }

    #[tokio::test]
    async fn a_wake_up_is_kept_for_the_next_wait_and_ends_a_waiting_one() {
        let o = Arc::new(Outbox::new(1, Transport::Poll, QueueLimits { frames: 10, bytes: 100 }, 0, Arc::default()));
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

    /// A connected pair: the server's end, shared as a waiting poll's is, and the client's.
    async fn sockets() -> (Arc<TcpStream>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let client = TcpStream::connect(listener.local_addr().expect("an address")).await.expect("connects");
        let (server, _) = listener.accept().await.expect("accepts");
        (Arc::new(server), client)
    }

    /// A stand-in for the poll's HTTP answer: how many messages, the extra lines, the cursor.
    fn respond(cursor: &mut herald_core::Cursor, frames: &VecDeque<Frame>, extra: &[u8]) -> Vec<u8> {
        let channel = herald_core::ChannelName::new("a").expect("a valid name");
        cursor.set(&channel, herald_core::StreamPosition { epoch: Arc::from("e"), offset: frames.len() as u64 });
        format!("{} messages, {}", frames.len(), String::from_utf8_lossy(extra)).into_bytes()
    }

    fn armed(o: &Outbox, socket: &Arc<TcpStream>) {
        let answer = PollAnswer::new(Arc::clone(socket), herald_core::Cursor::default(), respond, b"x".into());
        assert!(o.arm(answer).is_ok(), "nothing queued: armed");
    }

    #[tokio::test]
    async fn messages_pushed_to_an_armed_poll_are_answered_by_the_pusher_without_waking_the_task() {
        let o = Outbox::new(1, Transport::Poll, QueueLimits { frames: 10, bytes: 1000 }, 0, Arc::default());
        let (socket, mut client) = sockets().await;
        armed(&o, &socket);
        let quiet = || tokio::time::timeout(std::time::Duration::from_millis(50), o.ready());
        // A round of two messages: one answer carries both.
        let round = [queue::tests::message("a", 1), queue::tests::message("a", 2)];
        assert!(o.push_messages(&round).is_some());
        let mut got = vec![0; 64];
        let read = tokio::io::AsyncReadExt::read(&mut client, &mut got);
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), read).await.expect("answered").expect("reads");
        assert_eq!(&got[..n], b"2 messages, x");
        assert!(quiet().await.is_err(), "the task is not woken");
        // Pushed after the answer: it waits for the next poll, and wakes nobody.
        assert!(o.push(Frame::Message(queue::tests::message("a", 3))));
        assert!(quiet().await.is_err());
        let answer = o.disarm().expect("the answer back");
        assert_eq!(answer.answered(), Some(None), "answered whole");
        assert_eq!(answer.into_cursor().to_string(), "a~e~2", "the cursor moved past the answer");
        assert!(o.is_ready(), "the third message waits for the next poll");
        drop(o);
        assert_eq!(Arc::strong_count(&socket), 1, "the socket is no longer shared");
    }

    #[tokio::test]
    async fn anything_but_messages_is_left_to_the_task_and_a_queue_with_frames_is_not_armed() {
        let o = Outbox::new(1, Transport::Poll, QueueLimits { frames: 10, bytes: 1000 }, 0, Arc::default());
        let (socket, client) = sockets().await;
        armed(&o, &socket);
        let channel = herald_core::ChannelName::new("a").expect("a valid name");
        let position = herald_core::StreamPosition { epoch: Arc::from("e"), offset: 5 };
        let reason = herald_core::ResetReason::HistoryExceeded;
        assert!(o.push(Frame::Reset { channel, position, reason }));
        let wait = tokio::time::timeout(std::time::Duration::from_secs(5), o.ready());
        assert!(wait.await.is_ok(), "the task is woken to answer");
        // A message behind it is not answered by the pusher either.
        assert!(o.push(Frame::Message(queue::tests::message("a", 1))));
        let answer = o.disarm().expect("the answer back");
        assert_eq!(answer.answered(), None, "the task answers");
        let mut nothing = [0; 8];
        let read = client.try_read(&mut nothing);
        assert!(read.is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock), "nothing was written");
        // With frames queued, a poll answers at once: there is nothing to arm.
        let answer = PollAnswer::new(Arc::clone(&socket), herald_core::Cursor::default(), respond, b"x".into());
        assert!(o.arm(answer).is_err());
    }

    #[tokio::test]
    async fn a_kept_poll_queue_forgets_the_wake_up_of_frames_already_taken() {
        let o = Outbox::new(1, Transport::Poll, QueueLimits { frames: 10, bytes: 100 }, 0, Arc::default());
        let wait = || tokio::time::timeout(std::time::Duration::from_millis(50), o.ready());
        assert!(o.push(text("a")));
        let _ = o.take();
        o.forget_wakeup();
        // The next poll waits: nothing it has not got is queued.
        assert!(!o.is_ready());
        assert!(wait().await.is_err(), "no wake-up for frames already taken");
        // A push from then on still ends its wait.
        assert!(o.push(text("b")));
        assert!(wait().await.is_ok());
    }
}
