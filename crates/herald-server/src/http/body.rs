//! Reading a request's body off its connection: framed as [`herald_http1::BodyFraming`]
//! decides, decoded by [`herald_http1::ChunkedDecoder`] when chunked, and within the body
//! deadline — every read must bring bytes within `http_body_timeout_secs`, so a client that
//! stops sending mid-body is closed, not waited on.
//!
//! Memory: an announced length reserves at most [`READ_STEP`] bytes ahead of what has arrived,
//! so a head announcing a large body costs nothing until the bytes come.

use std::time::Duration;

use axum::http::header;
use bytes::{Bytes, BytesMut};
use herald_http1::{BodyFraming, ChunkedDecoder, Head, Refusal, RequestHeaders as _, chunked::Decoded};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use crate::guard::Limit;

/// Why a request could not be read.
pub(super) enum Refused {
    /// The peer closed or went quiet between requests: close without answering.
    Gone,
    /// A bad request: answer with this status and message, then close.
    Answer(Refusal),
    /// The peer stopped sending a head or a body within its deadline (the limit says which):
    /// counted, then closed with a `408` if it sent part of a request.
    Stalled(Limit),
}

/// The most buffer reserved ahead of the bytes in for one read of a body.
const READ_STEP: usize = 64 * 1024;

/// Reads the body `head` announces (framed as `framing` says, at most `cap` bytes); each read
/// must bring bytes within `progress`.
pub(super) async fn read_body(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    head: &Head,
    framing: BodyFraming,
    cap: usize,
    progress: Duration,
) -> Result<Bytes, Refused> {
    send_continue(stream, buf, head, framing).await?;
    match framing {
        BodyFraming::None => Ok(Bytes::new()),
        BodyFraming::Length(length) => {
            while buf.len() < length {
                read_more(stream, buf, (length - buf.len()).min(READ_STEP), progress).await?;
            }
            Ok(buf.split_to(length).freeze())
        }
        BodyFraming::Chunked => {
            let (mut decoder, mut body) = (ChunkedDecoder::new(cap), BytesMut::new());
            while decoder.decode(buf, &mut body).map_err(Refused::Answer)? == Decoded::NeedMore {
                read_more(stream, buf, 4096, progress).await?;
            }
            Ok(body.freeze())
        }
    }
}

/// Answers `Expect: 100-continue` when the body has yet to come.
pub(super) async fn send_continue(
    stream: &mut TcpStream,
    buf: &BytesMut,
    head: &Head,
    framing: BodyFraming,
) -> Result<(), Refused> {
    let expects_continue = head.first(&header::EXPECT).is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
    if expects_continue && buf.is_empty() && framing.has_body() {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.map_err(|_| Refused::Gone)?;
    }
    Ok(())
}

/// A body read piece by piece as it arrives (a piped stream, [`super::streams`]), framed as
/// [`read_body`] frames it, within the same deadline per read.
pub(super) struct Pieces<'a> {
    stream: &'a mut TcpStream,
    buf: &'a mut BytesMut,
    progress: Duration,
    body: Body,
}

/// What is left of a piped body.
enum Body {
    /// This many bytes.
    Length(usize),
    /// Chunks, until the last one.
    Chunked(ChunkedDecoder),
    /// Nothing.
    Done,
}

// === impl Pieces ===

impl<'a> Pieces<'a> {
    /// The pieces of the body `framing` announces (at most `cap` bytes when chunked; an
    /// announced length was checked against the cap already).
    pub(super) fn new(
        stream: &'a mut TcpStream,
        buf: &'a mut BytesMut,
        framing: BodyFraming,
        cap: usize,
        progress: Duration,
    ) -> Self {
        let body = match framing {
            BodyFraming::None => Body::Done,
            BodyFraming::Length(length) => Body::Length(length),
            BodyFraming::Chunked => Body::Chunked(ChunkedDecoder::new(cap)),
        };
        Self { stream, buf, progress, body }
    }

    /// The next piece of the body as it arrives; `None` once it has ended.
    pub(super) async fn next(&mut self) -> Result<Option<Bytes>, Refused> {
        loop {
            match &mut self.body {
                Body::Done => return Ok(None),
                Body::Length(0) => {
                    self.body = Body::Done;
                    return Ok(None);
                }
                Body::Length(left) => {
                    if self.buf.is_empty() {
                        read_more(self.stream, self.buf, (*left).min(READ_STEP), self.progress).await?;
                    }
                    let take = self.buf.len().min(*left);
                    *left -= take;
                    return Ok(Some(self.buf.split_to(take).freeze()));
                }
                Body::Chunked(decoder) => {
                    let mut piece = BytesMut::new();
                    let decoded = decoder.decode(self.buf, &mut piece).map_err(Refused::Answer)?;
                    if decoded == Decoded::Done {
                        self.body = Body::Done;
                    }
                    if !piece.is_empty() {
                        return Ok(Some(piece.freeze()));
                    }
                    if decoded == Decoded::NeedMore {
                        read_more(self.stream, self.buf, 4096, self.progress).await?;
                    }
                }
            }
        }
    }
}

/// Reads at least one byte more into `buf` (reserving `room`), within `progress`.
async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut, room: usize, progress: Duration) -> Result<(), Refused> {
    buf.reserve(room);
    match tokio::time::timeout(progress, stream.read_buf(buf)).await {
        Err(_) => Err(Refused::Stalled(crate::guard::Limit::BodyTimeout)),
        Ok(Ok(0) | Err(_)) => Err(Refused::Gone),
        Ok(Ok(_)) => Ok(()),
    }
}
