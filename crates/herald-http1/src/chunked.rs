//! A chunked request body (RFC 9112 section 7.1), decoded from the bytes read so far, with no
//! I/O: the connection loop reads, this decides.
//!
//! Guarantees, whatever the bytes:
//! - no panic and no overflow: chunk sizes are read with checked arithmetic, and one that
//!   does not fit in 64 bits is refused;
//! - bounded memory: a size line (with its extensions) or a trailer line is at most
//!   [`MAX_LINE`] bytes, all trailers together at most [`MAX_TRAILERS`]; the body cap is checked
//!   against each announced chunk size before any of its bytes is taken, and body bytes are
//!   appended only as they arrive (an announced size reserves nothing);
//! - strict lines, as hyper's decoder reads them: hexadecimal digits, optional spaces or tabs,
//!   an optional `;` extension, then CRLF (a bare LF is refused); every chunk's data ends in
//!   CRLF. Trailers are read to the empty line and dropped.

use bytes::{Buf as _, BytesMut};

use crate::Refusal;

/// The longest size line (digits and extensions) or trailer line, CRLF included.
pub const MAX_LINE: usize = 4096;
/// The most bytes of trailers after the last chunk.
pub const MAX_TRAILERS: usize = 16 * 1024;

/// Decodes one chunked body. Feed it the connection's buffer each time more bytes are in.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// The most body bytes accepted.
    cap: usize,
    /// Body bytes decoded so far.
    decoded: usize,
    /// Trailer bytes read so far.
    trailers: usize,
}

/// Where in the body the decoder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At a size line.
    Size,
    /// Inside a chunk's data, with this many bytes of it still to come.
    Data(usize),
    /// After a chunk's data, at its CRLF.
    DataEnd,
    /// After the last chunk, at a trailer line or the empty line that ends the body.
    Trailers,
    /// The body has ended.
    Done,
}

/// What [`ChunkedDecoder::decode`] got to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// The body needs more bytes than the buffer holds: read, then decode again.
    NeedMore,
    /// The body has ended; the bytes after it (a pipelined request) stay in the buffer.
    Done,
}

// === impl ChunkedDecoder ===

impl ChunkedDecoder {
    /// A decoder for a body of at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self { state: State::Size, cap, decoded: 0, trailers: 0 }
    }

    /// Takes what it can of `input` (the bytes after the head read so far), appending the
    /// body's data to `body`. Bytes it took leave `input`; on `Done` what follows the body
    /// stays. After an `Err` the connection must close.
    pub fn decode(&mut self, input: &mut BytesMut, body: &mut BytesMut) -> Result<Decoded, Refusal> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::Done),
                State::Size => {
                    let Some(line) = take_line(input, "chunk size line too long")? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = chunk_size(&line)?;
                    self.state = match size {
                        0 => State::Trailers,
                        size if size > self.cap - self.decoded => return Err(Refusal::too_large()),
                        size => State::Data(size),
                    };
                }
                State::Data(left) => {
                    if input.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let taken = left.min(input.len());
                    body.extend_from_slice(&input[..taken]);
                    input.advance(taken);
                    self.decoded += taken;
                    self.state = if taken == left { State::DataEnd } else { State::Data(left - taken) };
                }
                State::DataEnd => {
                    if input.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &input[..2] != b"\r\n" {
                        return Err(Refusal::bad("bad chunk: its data does not end in CRLF"));
                    }
                    input.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => {
                    let Some(line) = take_line(input, "trailer line too long")? else { return Ok(Decoded::NeedMore) };
                    self.trailers += line.len() + 2;
                    if self.trailers > MAX_TRAILERS {
                        return Err(Refusal::bad("trailers over 16 KiB"));
                    }
                    if line.is_empty() {
                        self.state = State::Done;
                    }
                }
            }
        }
    }
}

/// The next CRLF-ended line of `input` (taken from it, without the CRLF); `None` while it is
/// not all in. A line over [`MAX_LINE`] or one with a bare CR or LF is refused.
fn take_line(input: &mut BytesMut, too_long: &'static str) -> Result<Option<BytesMut>, Refusal> {
    let window = &input[..input.len().min(MAX_LINE)];
    match window.iter().position(|&b| b == b'\n') {
        Some(at) if at == 0 || window[at - 1] != b'\r' => Err(Refusal::bad("bad chunk line: LF without CR")),
        Some(at) => {
            let mut line = input.split_to(at + 1);
            line.truncate(at - 1);
            match line.contains(&b'\r') {
                true => Err(Refusal::bad("bad chunk line: CR without LF")),
                false => Ok(Some(line)),
            }
        }
        None if input.len() >= MAX_LINE => Err(Refusal::bad(too_long)),
        None => Ok(None),
    }
}

/// The size a chunk's size line (without its CRLF) announces: hexadecimal digits, then
/// optional spaces or tabs and an optional `;` extension.
fn chunk_size(line: &[u8]) -> Result<usize, Refusal> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(Refusal::bad("bad chunk size"));
    }
    let size = line[..digits].iter().try_fold(0u64, |size, &b| {
        let digit = (b as char).to_digit(16).map(u64::from)?;
        size.checked_mul(16)?.checked_add(digit)
    });
    let size = size.and_then(|size| usize::try_from(size).ok()).ok_or(Refusal::too_large())?;
    let rest = &line[digits..];
    let rest = &rest[rest.iter().take_while(|&&b| b == b' ' || b == b'\t').count()..];
    match rest.first() {
        None | Some(b';') => Ok(size),
        Some(_) => Err(Refusal::bad("bad chunk size")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes: the body, or the refusal, and what is
    /// left after the body.
    fn decode_in_steps(input: &[u8], step: usize, cap: usize) -> Result<(Vec<u8>, Vec<u8>), Refusal> {
        let mut decoder = ChunkedDecoder::new(cap);
        let (mut buf, mut body) = (BytesMut::new(), BytesMut::new());
        for piece in input.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            if decoder.decode(&mut buf, &mut body)? == Decoded::Done {
                let mut rest = buf.to_vec();
                rest.extend_from_slice(&input[consumed_until(input, piece)..]);
                return Ok((body.to_vec(), rest));
            }
        }
        Err(Refusal::bad("incomplete"))
    }

    /// Where `piece` (a sub-slice of `input`) ends in `input`.
    fn consumed_until(input: &[u8], piece: &[u8]) -> usize {
        piece.as_ptr() as usize - input.as_ptr() as usize + piece.len()
    }

    fn decode(input: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Refusal> {
        decode_in_steps(input, input.len(), 1000)
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers_whatever_the_reads() {
        let input = b"5\r\nhello\r\n6;name=value\r\n world\r\n0 \r\nX-Trailer: t\r\n\r\nGET / HTTP/1.1\r\n";
        for step in 1..=input.len() {
            let (body, rest) = decode_in_steps(input, step, 1000).expect("a good body");
            assert_eq!(body, b"hello world", "read {step} bytes at a time");
            assert_eq!(rest, b"GET / HTTP/1.1\r\n", "read {step} bytes at a time");
        }
        assert_eq!(decode(b"A\r\n0123456789\r\n0\r\n\r\n").expect("upper-case hex").0, b"0123456789");
        assert_eq!(decode(b"0\r\n\r\n").expect("an empty body").0, b"");
    }

    #[test]
    fn refuses_bad_lines() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"-1\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloXY0\r\n\r\n",
            b"5\rx\r\n",
            b"5 5\r\nhello\r\n",
            b"0x5\r\nhello\r\n",
            b"0\r\n\n",
        ] {
            let refused = decode(bad).expect_err("refused");
            assert_eq!(refused.status.as_u16(), 400, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn sizes_never_overflow_and_the_cap_holds_before_the_data() {
        for huge in [&b"ffffffffffffffff\r\n"[..], b"10000000000000000\r\n", b"fffffffffffffffffffffffff\r\n"] {
            assert_eq!(decode(huge).expect_err("refused").status.as_u16(), 413);
        }
        // 600 + 600 > 1000: refused at the second size line, before its data arrives.
        let mut decoder = ChunkedDecoder::new(1000);
        let (mut buf, mut body) = (BytesMut::new(), BytesMut::new());
        buf.extend_from_slice(b"258\r\n");
        buf.extend_from_slice(&[b'a'; 600]);
        buf.extend_from_slice(b"\r\n258\r\n");
        assert_eq!(decoder.decode(&mut buf, &mut body).expect_err("over the cap").status.as_u16(), 413);
        assert_eq!(body.len(), 600);
        // Exactly the cap is fine.
        let exact = [b"3e8\r\n".as_slice(), &[b'a'; 1000], b"\r\n0\r\n\r\n"].concat();
        assert_eq!(decode(&exact).expect("at the cap").0.len(), 1000);
    }

    #[test]
    fn lines_and_trailers_are_bounded() {
        let long_extension = [b"5;".as_slice(), &[b'x'; MAX_LINE], b"\r\n"].concat();
        assert_eq!(decode(&long_extension).expect_err("refused").message, "chunk size line too long");
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..10 {
            trailers.extend_from_slice(&[b"X-T: ".as_slice(), &[b't'; 2000], b"\r\n"].concat());
        }
        trailers.extend_from_slice(b"\r\n");
        assert_eq!(decode(&trailers).expect_err("refused").message, "trailers over 16 KiB");
    }

    #[test]
    fn a_partial_line_waits_for_more() {
        let mut decoder = ChunkedDecoder::new(1000);
        let (mut buf, mut body) = (BytesMut::from(&b"5"[..]), BytesMut::new());
        assert_eq!(decoder.decode(&mut buf, &mut body), Ok(Decoded::NeedMore));
        assert_eq!(&buf[..], b"5", "an incomplete line stays in the buffer");
    }
}
