//! HTTP/1.1 request framing with no I/O and no clock: what the server's connection loop
//! decides from the bytes a client sent, kept here so that it is tested, and fuzzed, on bytes
//! alone.
//!
//! - [`head`]: a request head as it arrived, parsed by `httparse` (the parser hyper uses),
//!   its headers kept as ranges of the bytes read;
//! - [`framing`]: how long the body after a head is (RFC 9112 section 6), with the request
//!   shapes that smuggle a second request refused;
//! - [`chunked`]: a chunked body decoder with checked arithmetic and bounded lines;
//! - [`query`]: a request target's query pairs, decoded without copying what needs no decoding.
//!
//! Every refusal is a [`Refusal`]: the status to answer with, then close the connection. After
//! any refusal the bytes that follow on that connection are never read as a request.

pub mod chunked;
pub mod framing;
pub mod head;
pub mod query;

pub use chunked::ChunkedDecoder;
pub use framing::BodyFraming;
pub use head::{Head, RequestHeaders};

/// Why a request cannot be served: the status and message of the answer, after which the
/// connection closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct Refusal {
    /// The answer's status (`400`, `413`, `431` or `501`).
    pub status: http::StatusCode,
    /// What is wrong, for the answer's JSON error.
    pub message: &'static str,
}

// === impl Refusal ===

impl Refusal {
    /// A `400 Bad Request` saying `message`.
    pub const fn bad(message: &'static str) -> Self {
        Self { status: http::StatusCode::BAD_REQUEST, message }
    }

    /// A `413 Payload Too Large`.
    pub const fn too_large() -> Self {
        Self { status: http::StatusCode::PAYLOAD_TOO_LARGE, message: "request body is over the size limit" }
    }
}
