//! A connection's bytes as Herald's HTTP/1.1 front reads them: request heads, body framing and
//! chunked bodies, request after request. Never a panic, a body is never over its cap, and
//! how the bytes are split into reads never changes what is read (the property a front and
//! Herald must agree on, so that no request hides in another's body).
#![no_main]

use bytes::BytesMut;
use herald_http1::{BodyFraming, ChunkedDecoder, Head, Refusal, chunked::Decoded};
use libfuzzer_sys::fuzz_target;

const CAP: usize = 64 * 1024;

/// What one request on the connection came to.
#[derive(Debug, PartialEq)]
enum Read {
    /// A head (its path) and its body.
    Request(String, Vec<u8>),
    /// A refusal: the connection closes.
    Refused(Refusal),
}

/// Reads `input` as a connection does, `step` bytes arriving at a time.
fn read_connection(input: &[u8], step: usize) -> Vec<Read> {
    let mut pieces = input.chunks(step.max(1));
    let mut buf = BytesMut::new();
    let mut reads = Vec::new();
    // Feeds the next piece; false at the end of the input.
    let mut more = |buf: &mut BytesMut| pieces.next().map(|piece| buf.extend_from_slice(piece)).is_some();
    loop {
        let head = loop {
            match Head::parse(&mut buf) {
                Ok(Some(head)) => break head,
                Ok(None) if more(&mut buf) => {}
                Ok(None) => return reads,
                Err(refusal) => {
                    reads.push(Read::Refused(refusal));
                    return reads;
                }
            }
        };
        let body = match BodyFraming::of(&head, CAP) {
            Err(refusal) => {
                reads.push(Read::Refused(refusal));
                return reads;
            }
            Ok(BodyFraming::None) => Vec::new(),
            Ok(BodyFraming::Length(length)) => {
                assert!(length <= CAP);
                while buf.len() < length {
                    if !more(&mut buf) {
                        return reads;
                    }
                }
                buf.split_to(length).to_vec()
            }
            Ok(BodyFraming::Chunked) => {
                let (mut decoder, mut body) = (ChunkedDecoder::new(CAP), BytesMut::new());
                loop {
                    match decoder.decode(&mut buf, &mut body) {
                        Ok(Decoded::Done) => break,
                        Ok(Decoded::NeedMore) if more(&mut buf) => {}
                        Ok(Decoded::NeedMore) => return reads,
                        Err(refusal) => {
                            reads.push(Read::Refused(refusal));
                            return reads;
                        }
                    }
                    assert!(body.len() <= CAP, "a chunked body over its cap");
                }
                body.to_vec()
            }
        };
        reads.push(Read::Request(head.path().to_owned(), body));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else { return };
    let whole = read_connection(input, input.len());
    let split = read_connection(input, usize::from(step % 16) + 1);
    assert_eq!(whole, split, "the same bytes read in other pieces read differently");
});
