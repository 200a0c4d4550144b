//! A waiting long poll's answer, armed on its outbox so that the pusher writes it.
//!
//! A long poll that waits is a connection with nothing to do until a message comes. Waking its
//! task to collect the message and answer costs a task wake-up and a run per delivery; an
//! armed [`PollAnswer`] lets the pusher answer instead, under the outbox's lock, the way a
//! WebSocket or SSE frame is written (see the [parent module](super)). The connection's task
//! then wakes once, for the client's next request.
//!
//! The pusher answers only what the connection's task would answer the same way: queued
//! messages and nothing else (no reset, no stream, no close). Anything else wakes the task,
//! which takes its answer back and answers as usual.

use std::{borrow::Cow, collections::VecDeque, sync::Arc, time::Instant};

use bytes::Bytes;
use herald_core::Cursor;
use tokio::net::TcpStream;

use crate::frame::Frame;

/// Builds a long poll's whole HTTP response — status line, headers (with `extra` header
/// lines) and body — for `frames`, which are all messages, moving `cursor` past them.
pub type Respond = fn(cursor: &mut Cursor, frames: &VecDeque<Frame>, extra: &[u8]) -> Vec<u8>;

/// A long poll's answer, handed to its outbox while the poll waits ([`super::Outbox::arm`])
/// and taken back when the wait ends ([`super::Outbox::disarm`]).
pub struct PollAnswer {
    /// The poll's position; the pusher moves it past what it answers.
    cursor: Cursor,
    respond: Respond,
    extra: Cow<'static, [u8]>,
    /// When the poll began waiting (the answer's duration is counted from here).
    began: Instant,
    stage: Stage,
}

/// Where an armed answer stands.
pub(super) enum Stage {
    /// A push of messages answers on this socket.
    Armed(Arc<TcpStream>),
    /// The connection's task answers (something other than messages came, or a request did).
    Held,
    /// A pusher answered; what the socket did not take then (`None`: it took everything;
    /// boxed, since it is rare and a waiting poll holds this stage).
    Answered(Option<Box<Bytes>>),
}

// === impl PollAnswer ===

impl PollAnswer {
    /// The answer of a poll at `cursor` on `socket`: `respond` builds it, with `extra` header
    /// lines.
    pub fn new(socket: Arc<TcpStream>, cursor: Cursor, respond: Respond, extra: Cow<'static, [u8]>) -> Box<Self> {
        Box::new(Self { cursor, respond, extra, began: Instant::now(), stage: Stage::Armed(socket) })
    }

    /// `Some` once a pusher answered, with what of the answer the socket did not take then
    /// (for the connection's task to write); `None` while the task still has to answer.
    pub fn answered(&self) -> Option<Option<&Bytes>> {
        match &self.stage {
            Stage::Answered(rest) => Some(rest.as_deref()),
            Stage::Armed(_) | Stage::Held => None,
        }
    }

    /// The poll's position: past what a pusher answered, if one did.
    pub fn into_cursor(self) -> Cursor {
        self.cursor
    }

    /// Where it stands.
    pub(super) fn stage(&self) -> &Stage {
        &self.stage
    }

    /// Leaves the answer to the connection's task (the socket is no longer shared).
    pub(super) fn hold(&mut self) {
        if let Stage::Armed(_) = self.stage {
            self.stage = Stage::Held;
        }
    }

    /// Answers `frames` (all messages) on the armed socket, as far as it takes the answer now.
    /// Returns whether part of it is left for the connection's task to write.
    pub(super) fn answer(&mut self, frames: &VecDeque<Frame>) -> bool {
        let Stage::Armed(socket) = &self.stage else { return false };
        let response = (self.respond)(&mut self.cursor, frames, &self.extra);
        let written = crate::wire::write_slice_now(&response, socket);
        let rest = (written < response.len()).then(|| Box::new(Bytes::from(response).slice(written..)));
        let left = rest.is_some();
        self.stage = Stage::Answered(rest);
        left
    }

    /// How long the poll waited for its answer, in seconds.
    pub(super) fn waited_secs(&self) -> f64 {
        self.began.elapsed().as_secs_f64()
    }
}
