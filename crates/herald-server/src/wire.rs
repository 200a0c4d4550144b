//! The bytes of a streaming connection on its socket: how frames are encoded ([`Encoder`],
//! [`Segments`]) and the bookkeeping of bytes the socket has not taken yet ([`Unsent`]).
//!
//! Streaming connections (WebSocket, SSE) are written *directly* by whoever produces a frame —
//! the publisher's fan-out, the heartbeat task, the connection's own task — under the
//! connection's outbox lock: a frame goes to the socket with one non-blocking `writev`, and
//! only what the socket does not take is kept (as shared slices, no copies) for the
//! connection's task to write when the socket drains. A delivery to a connection that keeps up
//! therefore costs one system call and no task wake-up. See [`crate::outbox`] for the locking.

use std::{
    collections::VecDeque,
    io::{self, IoSlice},
    net::Shutdown,
};

use bytes::{Buf as _, Bytes};
use tokio::net::TcpStream;

use crate::frame::Frame;

/// Most slices of one frame. Frames are a header and a shared payload, or a few small parts.
const MAX_SEGMENTS: usize = 4;
/// Most slices handed to one `writev` when a backlog drains.
const MAX_IOV: usize = 64;

/// Turns a connection's frames into the bytes of its protocol.
///
/// Runs under the connection's outbox lock, once per frame, in queue order — so an encoder may
/// keep per-connection state (the SSE cursor).
pub trait Encoder: Send + 'static {
    /// Appends the wire bytes of `frame` to `out`; shared payloads go in as `Bytes` clones.
    fn encode(&mut self, frame: Frame, out: &mut Segments);
}

/// The wire bytes of one frame: up to four slices, written with one `writev`. The zero value
/// (`Segments::default()`) is empty.
#[derive(Default)]
pub struct Segments {
    parts: [Bytes; MAX_SEGMENTS],
    len: usize,
}

/// Wire bytes the socket has not taken yet, oldest first.
#[derive(Default)]
pub struct Unsent {
    parts: VecDeque<Bytes>,
    bytes: usize,
}

// === impl Segments ===

impl Segments {
    /// Appends `part` (empty parts are skipped). A fifth part is joined to the fourth.
    pub fn push(&mut self, part: Bytes) {
        if part.is_empty() {
            return;
        }
        if self.len == MAX_SEGMENTS {
            let last = &mut self.parts[MAX_SEGMENTS - 1];
            let mut joined = Vec::with_capacity(last.len() + part.len());
            joined.extend_from_slice(last);
            joined.extend_from_slice(&part);
            *last = Bytes::from(joined);
            return;
        }
        self.parts[self.len] = part;
        self.len += 1;
    }

    /// The parts, in order.
    pub fn into_parts(self) -> impl Iterator<Item = Bytes> {
        let len = self.len;
        self.parts.into_iter().take(len)
    }

    /// The parts, in order, borrowed.
    pub fn parts(&self) -> impl Iterator<Item = &Bytes> {
        self.parts[..self.len].iter()
    }

    /// Total bytes.
    pub fn len(&self) -> usize {
        self.parts[..self.len].iter().map(Bytes::len).sum()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes as much as `socket` takes now, without waiting, and returns the rest (empty when
    /// everything went out). A failed socket takes nothing: its error surfaces on the
    /// connection task's next write or read.
    pub fn write_now(self, socket: &TcpStream) -> Segments {
        if self.len == 1 {
            // One slice (a WebSocket message): `send`, which costs the kernel less than `writev`.
            let written = socket.try_write(&self.parts[0]).unwrap_or(0);
            return self.after(written);
        }
        let slices: [IoSlice<'_>; MAX_SEGMENTS] = std::array::from_fn(|i| IoSlice::new(&self.parts[i]));
        let written = socket.try_write_vectored(&slices[..self.len]).unwrap_or(0);
        self.after(written)
    }

    /// The bytes after the first `n` (all of them written).
    pub fn after(mut self, mut n: usize) -> Segments {
        let mut rest = Segments::default();
        for part in self.parts.iter_mut().take(self.len) {
            let mut part = std::mem::take(part);
            let skip = n.min(part.len());
            n -= skip;
            part.advance(skip);
            rest.push(part);
        }
        rest
    }
}

// === impl Unsent ===

impl Unsent {
    /// Bytes waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Queues `segments` behind what already waits.
    pub fn extend(&mut self, segments: Segments) {
        for part in segments.into_parts() {
            self.bytes += part.len();
            self.parts.push_back(part);
        }
    }

    /// Writes what `socket` takes now. `Ok(true)`: nothing waits any more (the queue's memory
    /// is freed); `Ok(false)`: the socket is full; `Err`: the socket failed.
    pub fn write_now(&mut self, socket: &TcpStream) -> io::Result<bool> {
        while !self.parts.is_empty() {
            let slices: Vec<IoSlice<'_>> = self.parts.iter().take(MAX_IOV).map(|p| IoSlice::new(p)).collect();
            let written = match socket.try_write_vectored(&slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            };
            drop(slices);
            self.advance(written);
        }
        *self = Unsent::default();
        Ok(true)
    }

    /// Drops the first `n` bytes (they were written).
    pub fn advance(&mut self, mut n: usize) {
        n = n.min(self.bytes);
        self.bytes -= n;
        while n > 0 {
            let Some(front) = self.parts.front_mut() else { break };
            let take = n.min(front.len());
            front.advance(take);
            n -= take;
            if front.is_empty() {
                self.parts.pop_front();
            }
        }
    }

    /// The waiting bytes, oldest first.
    pub fn parts(&self) -> impl Iterator<Item = &Bytes> {
        self.parts.iter()
    }
}

/// Writes as much of `bytes` as `socket` takes now, without waiting; returns how much it took
/// (0 when the socket failed: the error surfaces on the connection task's next write or read).
pub fn write_slice_now(bytes: &[u8], socket: &TcpStream) -> usize {
    socket.try_write(bytes).unwrap_or(0)
}

/// Closes the write side of `socket`, so the peer sees the end of the stream even while the
/// socket is still shared.
pub fn shutdown_write(socket: &TcpStream) {
    let _ = socket2::SockRef::from(socket).shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(parts: &[&'static str]) -> Segments {
        let mut s = Segments::default();
        for p in parts {
            s.push(Bytes::from_static(p.as_bytes()));
        }
        s
    }

    fn text(s: Segments) -> String {
        s.into_parts().map(|p| String::from_utf8_lossy(&p).into_owned()).collect()
    }

    #[test]
    fn skipping_keeps_exactly_the_unwritten_bytes() {
        for n in 0..=9 {
            let rest = segments(&["abc", "", "defg", "hi"]).after(n);
            assert_eq!(text(rest), &"abcdefghi"[n..], "after {n} bytes");
        }
    }

    #[test]
    fn a_fifth_part_joins_the_fourth() {
        let s = segments(&["a", "b", "c", "d", "e"]);
        assert_eq!(s.len, MAX_SEGMENTS);
        assert_eq!(s.len(), 5);
        assert_eq!(text(s), "abcde");
    }
}
