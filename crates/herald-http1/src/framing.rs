//! How long the body after a request head is, per RFC 9112 section 6, as strictly as hyper
//! (`proto/h1/role.rs`) reads it, and stricter where two readings of one request could differ.
//!
//! Request smuggling needs a front (nginx, a load balancer) and Herald to disagree on where a
//! request ends. So every head whose framing has more than one reading is refused, and the
//! connection closes after the answer:
//!
//! - `Transfer-Encoding` is read as a list over all its lines; `chunked` must be the final
//!   coding and appear once (`400` otherwise: `xchunked`, `chunked, identity`, an empty item);
//!   any other coding before it is one Herald does not decode (`501`). HTTP/1.0 requests may
//!   not carry it (`400`, as hyper).
//! - `Transfer-Encoding` together with `Content-Length` is refused (`400`); RFC 9112 lets a
//!   server drop the length, hyper does, but a front that reads the length would see another
//!   request in the body.
//! - `Content-Length` is digits only (no sign, space, list or other byte), fits in 64 bits,
//!   and where it is sent more than once every value is the same (`400` otherwise).
//! - A length over the cap is `413` before a byte of it is read or reserved.
//!
//! Obs-folded lines, a space before a header's colon and other malformed heads never reach
//! this module: `httparse` refuses them in requests ([`crate::Head::parse`]), as it does for
//! hyper. Bare-LF line ends in a head are accepted, as `httparse` and hyper accept them.

use http::{StatusCode, Version, header};

use crate::{Head, Refusal};

/// How a request's body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (no framing header, or `Content-Length: 0`).
    None,
    /// Exactly this many bytes, at most the cap given to [`BodyFraming::of`].
    Length(usize),
    /// Chunked ([`crate::ChunkedDecoder`]).
    Chunked,
}

// === impl BodyFraming ===

impl BodyFraming {
    /// The framing `head` announces for its body, refused as this module says; a length over
    /// `cap` bytes is `413`.
    pub fn of(head: &Head, cap: usize) -> Result<Self, Refusal> {
        let chunked = transfer_coding(head)?;
        let length = content_length(head)?;
        match (chunked, length) {
            (true, Some(_)) => Err(Refusal::bad("Transfer-Encoding and Content-Length together")),
            (true, None) => Ok(Self::Chunked),
            (false, None | Some(0)) => Ok(Self::None),
            (false, Some(n)) => match usize::try_from(n) {
                Ok(n) if n <= cap => Ok(Self::Length(n)),
                _ => Err(Refusal::too_large()),
            },
        }
    }

    /// Whether a body follows the head.
    pub fn has_body(self) -> bool {
        self != Self::None
    }
}

/// Whether `head` is `Transfer-Encoding: chunked` (`false`: it sends no such header).
fn transfer_coding(head: &Head) -> Result<bool, Refusal> {
    let mut codings = 0usize;
    let mut last_chunked = false;
    let mut chunked_seen = false;
    for line in head.all(&header::TRANSFER_ENCODING) {
        if head.version != Version::HTTP_11 {
            return Err(Refusal::bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        let line = std::str::from_utf8(line).map_err(|_| Refusal::bad("bad Transfer-Encoding"))?;
        for coding in herald_core::list::comma_items(line) {
            let coding = coding.trim_matches([' ', '\t']);
            if coding.is_empty() {
                return Err(Refusal::bad("bad Transfer-Encoding: an empty coding"));
            }
            if chunked_seen {
                // Something after `chunked`, or `chunked` twice: chunked must be final, once.
                return Err(Refusal::bad("bad Transfer-Encoding: chunked must be the final coding"));
            }
            codings += 1;
            last_chunked = coding.eq_ignore_ascii_case("chunked");
            chunked_seen = last_chunked;
        }
    }
    match (codings, last_chunked) {
        (0, _) => Ok(false),
        (1, true) => Ok(true),
        (_, true) => Err(Refusal {
            status: StatusCode::NOT_IMPLEMENTED,
            message: "transfer codings other than chunked are not supported",
        }),
        (_, false) => Err(Refusal::bad("bad Transfer-Encoding: chunked must be the final coding")),
    }
}

/// The `Content-Length` of `head`, if it sends one.
fn content_length(head: &Head) -> Result<Option<u64>, Refusal> {
    let mut length = None;
    for value in head.all(&header::CONTENT_LENGTH) {
        let n = digits(value).ok_or(Refusal::bad("bad Content-Length"))?;
        if length.is_some_and(|seen| seen != n) {
            return Err(Refusal::bad("Content-Length sent twice with different values"));
        }
        length = Some(n);
    }
    Ok(length)
}

/// `value` as a decimal number: one or more ASCII digits and nothing else, without overflow.
/// (`u64::from_str` would take a leading `+`.)
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| match b {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(b - b'0')),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;

    fn framing(headers: &str) -> Result<BodyFraming, Refusal> {
        framing_of("HTTP/1.1", headers)
    }

    fn framing_of(version: &str, headers: &str) -> Result<BodyFraming, Refusal> {
        let text = format!("POST /api/publish {version}\r\nHost: h\r\n{headers}\r\n");
        let head = Head::parse(&mut BytesMut::from(text.as_str())).expect("a good head").expect("whole");
        BodyFraming::of(&head, 1000)
    }

    fn status(framed: Result<BodyFraming, Refusal>) -> Option<u16> {
        framed.err().map(|refusal| refusal.status.as_u16())
    }

    #[test]
    fn plain_framings() {
        assert_eq!(framing(""), Ok(BodyFraming::None));
        assert_eq!(framing("Content-Length: 0\r\n"), Ok(BodyFraming::None));
        assert_eq!(framing("Content-Length: 12\r\n"), Ok(BodyFraming::Length(12)));
        assert_eq!(framing("Content-Length: 012\r\n"), Ok(BodyFraming::Length(12)));
        assert_eq!(framing("Content-Length: 7\r\ncontent-length: 7\r\n"), Ok(BodyFraming::Length(7)));
        assert_eq!(framing("Transfer-Encoding: chunked\r\n"), Ok(BodyFraming::Chunked));
        assert_eq!(framing("Transfer-Encoding: CHUNKED\r\n"), Ok(BodyFraming::Chunked));
        assert_eq!(framing("Transfer-Encoding:  chunked \r\n"), Ok(BodyFraming::Chunked));
    }

    #[test]
    fn transfer_codings_other_than_a_final_chunked_are_refused() {
        for refused in [
            "xchunked",
            "chunkedx",
            "chunked, identity",
            "chunked, chunked",
            "identity",
            "gzip",
            "chunked,",
            ", chunked",
            "\"chunked\"",
        ] {
            let framed = framing(&format!("Transfer-Encoding: {refused}\r\n"));
            assert_eq!(status(framed), Some(400), "{refused}");
        }
        // Over two lines, as over one.
        assert_eq!(status(framing("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n")), Some(400));
        assert_eq!(status(framing("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n")), Some(400));
        // A coding Herald does not decode, before a final chunked.
        assert_eq!(status(framing("Transfer-Encoding: gzip, chunked\r\n")), Some(501));
        assert_eq!(status(framing("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n")), Some(501));
        // HTTP/1.0 has no transfer codings (hyper refuses them too).
        assert_eq!(status(framing_of("HTTP/1.0", "Transfer-Encoding: chunked\r\n")), Some(400));
    }

    #[test]
    fn both_framings_at_once_are_refused() {
        assert_eq!(status(framing("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n")), Some(400));
        assert_eq!(status(framing("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")), Some(400));
        assert_eq!(status(framing("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n")), Some(400));
    }

    #[test]
    fn content_lengths_are_digits_only_and_agree() {
        for refused in ["+5", "-5", "5 5", "5,5", "5, 5", "0x5", "5a", "", "18446744073709551616", "٥"] {
            assert_eq!(status(framing(&format!("Content-Length: {refused}\r\n"))), Some(400), "{refused:?}");
        }
        assert_eq!(status(framing("Content-Length: 5\r\nContent-Length: 6\r\n")), Some(400));
        assert_eq!(status(framing("Content-Length: 5\r\nContent-Length: +5\r\n")), Some(400));
    }

    #[test]
    fn a_length_over_the_cap_is_413_before_any_read() {
        assert_eq!(status(framing("Content-Length: 1001\r\n")), Some(413));
        assert_eq!(status(framing("Content-Length: 18446744073709551615\r\n")), Some(413));
        assert_eq!(framing("Content-Length: 1000\r\n"), Ok(BodyFraming::Length(1000)));
    }

    #[test]
    fn heads_httparse_refuses_in_requests() {
        for head in [
            // obs-fold: a header line continued on the next.
            "POST / HTTP/1.1\r\nContent-Length: 5\r\n 6\r\n\r\n",
            "POST / HTTP/1.1\r\nX-A: a\r\n\tb\r\n\r\n",
            // A space (or tab) before the colon.
            "POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding\t: chunked\r\n\r\n",
            // No colon, a bare CR, a NUL in a value.
            "POST / HTTP/1.1\r\nContent-Length 5\r\n\r\n",
            "POST / HTTP/1.1\rContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nX-A: a\0b\r\n\r\n",
        ] {
            let parsed = Head::parse(&mut BytesMut::from(head));
            assert_eq!(parsed.err().map(|r| r.status), Some(StatusCode::BAD_REQUEST), "{head:?}");
        }
        // Bare LF line ends are read as hyper reads them (both use httparse).
        let bare = Head::parse(&mut BytesMut::from("POST / HTTP/1.1\nContent-Length: 5\n\nhello"));
        let bare = bare.expect("accepted").expect("whole");
        assert_eq!(BodyFraming::of(&bare, 1000), Ok(BodyFraming::Length(5)));
    }
}
