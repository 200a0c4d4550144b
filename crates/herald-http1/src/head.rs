//! A request head as it arrived: method, version, target and headers, the headers kept as
//! ranges of the bytes read, so that a route reads only what it asks for.
//!
//! The long poll and the API publish, the routes most requests take, read the path, the query
//! and a header or two; building an `http::Uri` and a `HeaderMap` for every request is a
//! share of a long poll's instructions worth saving (measured in BENCHMARKS.md). Routes served by the axum router get both from [`Head::into_request`], checked as the
//! `http` crate checks them, so a target or header that crate refuses still gets `400` there.
//!
//! Guarantees: names compare as HTTP names do, without regard to case; a name sent twice reads
//! as its first value, as `HeaderMap::get` reads it.

use std::ops::Range;

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};

use crate::Refusal;

/// Largest request head (request line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// Most headers in one request.
const MAX_HEADERS: usize = 64;

/// A parsed request head.
pub struct Head {
    /// The method.
    pub method: Method,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The head's bytes, which the header ranges index: the read buffer itself when the head
    /// is all it holds (nothing pipelined), so that taking them allocates nothing.
    bytes: BytesMut,
    /// The target's path and query (origin form; a target in absolute form is reduced to it).
    /// A copy, a few dozen bytes: as a `str` it is checked for UTF-8 once (by `httparse`), where
    /// a range of `bytes` would be checked again on every read.
    target: String,
    /// Where the path ends in `target` (at `?`, `#` or the end).
    path_end: usize,
    /// The query's range in `target`, after `?`.
    query: Option<Range<usize>>,
    /// Each header's name and value, as ranges of `bytes`.
    headers: Vec<(Range<usize>, Range<usize>)>,
}

/// Reading a request's headers the same way from a raw [`Head`] and from an axum `HeaderMap`.
pub trait RequestHeaders {
    /// The first value of `name`, as sent.
    fn first(&self, name: &HeaderName) -> Option<&[u8]>;

    /// The first value of `name` as text, when it is visible ASCII (what `HeaderValue::to_str`
    /// accepts).
    fn first_str(&self, name: &HeaderName) -> Option<&str> {
        let value = self.first(name)?;
        let visible = value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
        visible.then(|| std::str::from_utf8(value).ok()).flatten()
    }

    /// Whether the first value of `name`, a comma-separated list (`Connection: keep-alive,
    /// Upgrade`), holds `token`, without regard to case.
    fn has_token(&self, name: &HeaderName, token: &str) -> bool {
        let list = self.first_str(name).unwrap_or("");
        herald_core::list::comma_items(list).any(|item| item.trim().eq_ignore_ascii_case(token))
    }
}

// === impl Head ===

impl Head {
    /// Parses the head at the start of `buf`. `Ok(None)`: it is not all in yet. Once it is,
    /// its bytes leave `buf` (what follows stays) and become the head's, with no copy.
    pub fn parse(buf: &mut BytesMut) -> Result<Option<Self>, Refusal> {
        let bad = Refusal::bad;
        // Uninitialized: filling 64 empty headers (2 KiB) cost more than parsing a long poll's.
        let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut []);
        // Only the first MAX_HEAD bytes are parsed: a head over the limit is refused however it
        // arrives, in one read or in many.
        let len = match request.parse_with_uninit_headers(&buf[..buf.len().min(MAX_HEAD)], &mut slots) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                return Err(Refusal {
                    status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    message: "request head over 16 KiB",
                });
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Refusal {
                    status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    message: "too many headers",
                });
            }
            Err(_) => return Err(bad("malformed HTTP request")),
        };
        let base = buf.as_ptr() as usize;
        let span = |part: &[u8]| {
            let start = part.as_ptr() as usize - base;
            start..start + part.len()
        };
        let method = Method::from_bytes(request.method.unwrap_or("").as_bytes()).map_err(|_| bad("bad method"))?;
        let version = if request.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
        let target = request.path.unwrap_or("");
        let target = match target.starts_with('/') {
            true => target.to_owned(),
            // Absolute form (`http://host/path`) or `*`: the router needs only the path and
            // query.
            false => {
                let uri = Uri::try_from(target).map_err(|_| bad("bad request target"))?;
                uri.path_and_query().map_or_else(|| uri.path(), |pq| pq.as_str()).to_owned()
            }
        };
        let headers = request.headers.iter().map(|h| (span(h.name.as_bytes()), span(h.value))).collect();
        let bytes = if len == buf.len() { std::mem::take(buf) } else { buf.split_to(len) };
        // memchr: a long poll's target is about a hundred bytes, which a char search walks one
        // by one.
        let path_end = memchr::memchr2(b'?', b'#', target.as_bytes()).unwrap_or(target.len());
        let query = (target.as_bytes().get(path_end) == Some(&b'?')).then(|| {
            let fragment = memchr::memchr(b'#', &target.as_bytes()[path_end..]);
            let end = fragment.map_or(target.len(), |at| path_end + at);
            path_end + 1..end
        });
        Ok(Some(Self { method, version, bytes, target, path_end, query, headers }))
    }

    /// The target's path (`/poll`).
    pub fn path(&self) -> &str {
        self.target.get(..self.path_end).unwrap_or("")
    }

    /// The target's query, without the `?`.
    pub fn query(&self) -> Option<&str> {
        self.target.get(self.query.clone()?)
    }

    /// Removes every `name` header, returning the first value.
    pub fn remove(&mut self, name: &HeaderName) -> Option<Vec<u8>> {
        let first = self.first(name).map(<[u8]>::to_vec);
        let bytes = &self.bytes;
        self.headers.retain(|(n, _)| !name.as_str().as_bytes().eq_ignore_ascii_case(&bytes[n.clone()]));
        first
    }

    /// Every value of `name`, in the order sent.
    pub fn all<'a, 'n>(&'a self, name: &'n HeaderName) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        let wanted = name.as_str().as_bytes();
        self.headers
            .iter()
            .filter(move |(n, _)| wanted.eq_ignore_ascii_case(&self.bytes[n.clone()]))
            .map(|(_, value)| &self.bytes[value.clone()])
    }

    /// The head as an `http` request with `body`, for a router: `Err` when its target or a
    /// header is not one the `http` crate accepts.
    pub fn into_request<B>(self, body: B) -> Result<Request<B>, Refusal> {
        let bad = Refusal::bad;
        let uri = Uri::try_from(self.target).map_err(|_| bad("bad request target"))?;
        let bytes = self.bytes.freeze();
        let mut headers = HeaderMap::with_capacity(self.headers.len());
        for (name, value) in self.headers {
            let name = HeaderName::from_bytes(&bytes[name]).map_err(|_| bad("bad header name"))?;
            let value = HeaderValue::from_maybe_shared(bytes.slice(value)).map_err(|_| bad("bad header value"))?;
            headers.append(name, value);
        }
        let mut request = Request::new(body);
        *request.method_mut() = self.method;
        *request.uri_mut() = uri;
        *request.version_mut() = self.version;
        *request.headers_mut() = headers;
        Ok(request)
    }
}

impl RequestHeaders for Head {
    fn first(&self, name: &HeaderName) -> Option<&[u8]> {
        self.all(name).next()
    }
}

impl RequestHeaders for HeaderMap {
    fn first(&self, name: &HeaderName) -> Option<&[u8]> {
        self.get(name).map(HeaderValue::as_bytes)
    }
}

#[cfg(test)]
mod tests {
    use http::header;

    use super::*;

    fn parse(text: &str) -> Result<Option<Head>, Refusal> {
        Head::parse(&mut BytesMut::from(text))
    }

    fn head(text: &str) -> Head {
        parse(text).expect("a good head").expect("a whole head")
    }

    #[test]
    fn reads_path_query_and_headers_as_sent() {
        let mut buf =
            BytesMut::from("GET /poll?channel=a&cursor=x HTTP/1.1\r\nHost: h\r\nX-Two: 1\r\nx-two: 2\r\n\r\nNEXT");
        let head = Head::parse(&mut buf).expect("good").expect("whole");
        assert_eq!(&buf[..], b"NEXT", "bytes after the head stay");
        assert_eq!((head.method.clone(), head.version), (Method::GET, Version::HTTP_11));
        assert_eq!((head.path(), head.query()), ("/poll", Some("channel=a&cursor=x")));
        assert_eq!(head.first_str(&header::HOST), Some("h"));
        assert_eq!(head.first(&HeaderName::from_static("x-two")), Some(&b"1"[..]), "the first of two");
        assert_eq!(head.first(&header::ORIGIN), None);
        let request = head.into_request(()).expect("the router takes it");
        assert_eq!(request.uri().query(), Some("channel=a&cursor=x"));
        let twos: Vec<_> = request.headers().get_all("x-two").iter().collect();
        assert_eq!(twos, ["1", "2"]);
    }

    #[test]
    fn paths_and_queries_split_as_uri_splits_them() {
        for target in ["/", "/poll", "/poll?", "/poll?a=1", "/a?b=1#frag", "/a#f?x", "/a%20b?q=%2F"] {
            let head = head(&format!("GET {target} HTTP/1.1\r\n\r\n"));
            let uri: Uri = target.parse().expect("a valid target");
            assert_eq!((head.path(), head.query()), (uri.path(), uri.query()), "{target}");
        }
        let absolute = head("GET http://example.com/poll?channel=a HTTP/1.1\r\n\r\n");
        assert_eq!((absolute.path(), absolute.query()), ("/poll", Some("channel=a")));
    }

    #[test]
    fn partial_and_bad_heads() {
        assert!(matches!(parse("GET /poll HTTP/1.1\r\nHost: h\r\n"), Ok(None)));
        assert_eq!(parse("GET /poll HTTP/9\r\n\r\n").err().map(|e| e.status), Some(StatusCode::BAD_REQUEST));
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(parse(&long).err().map(|e| e.status), Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        // Over the limit in one read, whole: refused as when it arrives in pieces.
        let whole = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(parse(&whole).err().map(|e| e.status), Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
        let many = parse(&format!("GET / HTTP/1.1\r\n{many}\r\n"));
        assert_eq!(many.err().map(|e| e.status), Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        // `http` refuses `<` in a path: the router's routes answer 400, as they did.
        let refused = head("GET /a<b HTTP/1.1\r\n\r\n").into_request(());
        assert_eq!(refused.err(), Some(Refusal::bad("bad request target")));
    }

    #[test]
    fn removing_a_header_removes_every_value() {
        let mut head =
            head("GET / HTTP/1.1\r\nX-Herald-Peer: 1.2.3.4:5\r\nx-herald-peer: 6.7.8.9:1\r\nHost: h\r\n\r\n");
        let name = HeaderName::from_static("x-herald-peer");
        assert_eq!(head.remove(&name).as_deref(), Some(&b"1.2.3.4:5"[..]));
        assert_eq!(head.first(&name), None);
        assert_eq!(head.first_str(&header::HOST), Some("h"));
    }

    #[test]
    fn text_values_are_visible_ascii_only() {
        let head = head("GET / HTTP/1.1\r\nX-A: caf\u{e9}\r\nX-B: a\tb\r\n\r\n");
        assert_eq!(head.first_str(&HeaderName::from_static("x-a")), None);
        assert_eq!(head.first_str(&HeaderName::from_static("x-b")), Some("a\tb"));
        let mut map = HeaderMap::new();
        map.insert("x-a", HeaderValue::from_bytes("caf\u{e9}".as_bytes()).expect("obs-text is allowed"));
        assert_eq!(map.first_str(&HeaderName::from_static("x-a")), None, "as HeaderValue::to_str reads it");
    }
}
