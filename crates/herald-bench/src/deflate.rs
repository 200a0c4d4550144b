//! The client's side of permessage-deflate (RFC 7692) for the bench's WebSocket subscribers.
//!
//! tungstenite neither offers the extension nor reads frames with RSV1 set. A subscriber that
//! measures compression offers it in its handshake ([`OFFER`], what browsers send) and reads
//! the connection through [`WsIo`]: the handshake's answer passes as it came, and from the
//! first frame on every compressed message is inflated (by Herald's own
//! [`Inflating`](herald_server::ws_frames::Inflating)) into a plain frame before tungstenite
//! sees it. The bytes on the wire are counted below this layer, so they are the compressed
//! ones.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use herald_server::ws_frames::Inflating;
use memchr::memmem;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The offer a subscriber sends (as Chromium and Firefox do).
pub const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The largest message a subscriber inflates.
const MESSAGE_LIMIT: usize = 16 << 20;

/// Whether a handshake's `Sec-WebSocket-Extensions` answer agreed to permessage-deflate.
pub fn agreed(answer: Option<&str>) -> bool {
    answer.is_some_and(|value| {
        value.split(',').any(|ext| ext.split(';').next().is_some_and(|n| n.trim() == "permessage-deflate"))
    })
}

/// A client connection as tungstenite reads it: with `deflate`, the server's compressed
/// messages arrive inflated; without, the bytes pass untouched.
pub struct WsIo<S> {
    inner: S,
    /// `None`: no permessage-deflate, a plain pass-through.
    inflating: Option<Box<Inflate>>,
}

/// The reading side of a connection that offered permessage-deflate.
struct Inflate {
    /// Still in the handshake's answer: how many bytes of its end (`\r\n\r\n`) were seen.
    head_end: Option<usize>,
    /// Bytes of the handshake's answer not yet handed to tungstenite.
    head: Vec<u8>,
    frames: Inflating,
}

// === impl WsIo ===

impl<S> WsIo<S> {
    /// `inner`, inflating the server's messages when `deflate` (the handshake offered it).
    pub fn new(inner: S, deflate: bool) -> Self {
        let inflating = deflate
            .then(|| Box::new(Inflate { head_end: Some(0), head: Vec::new(), frames: Inflating::new(MESSAGE_LIMIT) }));
        Self { inner, inflating }
    }
}

// === impl Inflate ===

impl Inflate {
    /// Takes bytes read from the socket: the handshake's answer is kept to pass on as it is,
    /// everything after it goes to the inflater.
    fn feed(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if let Some(seen) = self.head_end {
            const END: &[u8] = b"\r\n\r\n";
            // The end may straddle two reads: look in what is kept of it plus the new bytes.
            let mut window = END[..seen].to_vec();
            window.extend_from_slice(bytes);
            match memmem::find(&window, END) {
                Some(at) => {
                    let split = at + END.len() - seen;
                    self.head.extend_from_slice(&bytes[..split]);
                    bytes = &bytes[split..];
                    self.head_end = None;
                }
                None => {
                    self.head.extend_from_slice(bytes);
                    let keep = (1..END.len()).rev().find(|&n| window.ends_with(&END[..n])).unwrap_or(0);
                    self.head_end = Some(keep);
                    return Ok(());
                }
            }
        }
        self.frames.feed(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Moves what is ready for tungstenite into `buf`; how many bytes.
    fn take(&mut self, buf: &mut [u8]) -> usize {
        if !self.head.is_empty() {
            let n = self.head.len().min(buf.len());
            buf[..n].copy_from_slice(&self.head[..n]);
            self.head.drain(..n);
            return n;
        }
        self.frames.take(buf)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(inflate) = &mut this.inflating else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        loop {
            let n = inflate.take(buf.initialize_unfilled());
            if n > 0 {
                buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            inflate.feed(read.filled())?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_answer_to_the_offer() {
        assert!(agreed(Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")));
        assert!(agreed(Some("x-webkit-deflate-frame, permessage-deflate")));
        assert!(!agreed(Some("x-webkit-deflate-frame")));
        assert!(!agreed(None));
    }

    #[test]
    fn the_answer_passes_untouched_and_the_frames_after_it_are_inflated() {
        let text = br#"{"type":"message","data":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#;
        let mut plain = herald_server::ws_frames::ws_text_header(text.len());
        plain.extend_from_slice(text);
        let compressed = herald_server::ws_frames::compressed(&plain, 16).expect("compresses");
        let head = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n".to_vec();
        let mut wire = head.clone();
        wire.extend_from_slice(&compressed);
        // Every split of the wire, the end of the head across two reads included.
        for split in 1..wire.len() {
            let mut inflate = Inflate { head_end: Some(0), head: Vec::new(), frames: Inflating::new(1 << 20) };
            inflate.feed(&wire[..split]).expect("valid");
            inflate.feed(&wire[split..]).expect("valid");
            let mut out = vec![0; 4096];
            let mut got = Vec::new();
            loop {
                let n = inflate.take(&mut out);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&out[..n]);
            }
            assert_eq!(got, [head.clone(), plain.clone()].concat(), "split at {split}");
        }
    }
}
