//! Writing responses on Herald's own HTTP/1.1 engine: whole responses with their
//! `Content-Length` (head and body in one write), the head of a stream that a [`Takeover`]
//! continues, and the bytes of a refusal before a connection is served. The connection loop
//! ([`super::conn`]) and the streaming transports write through here.

use std::{future::Future, pin::Pin, sync::Arc};

use axum::{
    body::Body,
    http::{Method, Response, StatusCode, header},
};
use http_body_util::BodyExt as _;
use tokio::{io::AsyncWriteExt as _, net::TcpStream};

use crate::reply::ApiError;

/// The rest of a streaming response, run by its own task once the head is written: it gets
/// the socket and whether its body is chunked (HTTP/1.1) or ends with the connection
/// (HTTP/1.0), writes the body, and closes the connection when it ends. A handler puts one in
/// its response's extensions.
#[derive(Clone)]
pub struct Takeover(Arc<parking_lot::Mutex<Option<TakeoverFn>>>);

/// The body of a [`Takeover`]: given the socket and whether the body is chunked.
pub(super) type TakeoverFn = Box<dyn FnOnce(TcpStream, bool) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

impl Takeover {
    /// A takeover that runs `body`.
    pub fn new<F, Fut>(body: F) -> Self
    where
        F: FnOnce(TcpStream, bool) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let body: TakeoverFn = Box::new(move |stream, chunked| Box::pin(body(stream, chunked)));
        Self(Arc::new(parking_lot::Mutex::new(Some(body))))
    }

    /// The body, once (a clone of the takeover then has none).
    pub(super) fn take(&self) -> Option<TakeoverFn> {
        self.0.lock().take()
    }
}

/// A whole `connection: close` response for `error`, for a connection refused before it is
/// served (over a connection limit).
pub fn error_bytes(error: &herald_core::ProtocolError) -> Vec<u8> {
    let status = StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = error.to_http_body();
    let retry = if status == StatusCode::TOO_MANY_REQUESTS { "retry-after: 1\r\n" } else { "" };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\n{retry}content-length: {}\r\nconnection: close\r\n\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// `n` in hexadecimal followed by CRLF, as a chunk's size line, without allocating.
pub fn chunk_size_line(n: usize, buf: &mut [u8; 18]) -> &[u8] {
    let digits = (usize::BITS - n.leading_zeros()).div_ceil(4).max(1) as usize;
    for i in 0..digits {
        buf[digits - 1 - i] = b"0123456789abcdef"[(n >> (4 * i)) & 0xf];
    }
    buf[digits..digits + 2].copy_from_slice(b"\r\n");
    &buf[..digits + 2]
}

/// The `Date` header value, formatted once per second per thread.
struct CachedDate {
    second: u64,
    text: String,
}

thread_local! {
    static DATE: std::cell::RefCell<CachedDate> = const { std::cell::RefCell::new(CachedDate { second: 0, text: String::new() }) };
}

impl CachedDate {
    fn now(&mut self) -> &[u8] {
        let now = std::time::SystemTime::now();
        let second = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
        self.text.as_bytes()
    }
}

/// The status line and headers of a response whose body is `exact` bytes long, or chunked, or
/// (neither) ends with the connection.
pub(super) fn response_head(
    parts: &axum::http::response::Parts,
    exact: Option<u64>,
    chunked: bool,
    keep_alive: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + exact.unwrap_or(0) as usize);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        // Framing is this writer's to state, once.
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING || name == header::CONNECTION {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"date: ");
    DATE.with(|date| out.extend_from_slice(date.borrow_mut().now()));
    out.extend_from_slice(b"\r\n");
    if let Some(len) = exact {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
        out.extend_from_slice(b"\r\n");
    } else if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Writes the answer of a route served without the router: its JSON body with the `extra`
/// header lines, or its error (setting `status`); returns whether the connection stays open.
pub async fn write_answer(
    stream: &mut TcpStream,
    answer: Result<Vec<u8>, ApiError>,
    extra: &[u8],
    keep_alive: bool,
    status: &mut u16,
) -> bool {
    *status = answer.as_ref().map_or_else(|e| e.0.code.http_status(), |_| 200);
    let written = match answer {
        Ok(body) => write_json_ok(stream, &body, extra, keep_alive).await,
        Err(error) => {
            let response = axum::response::IntoResponse::into_response(error);
            Box::pin(write_response(stream, response, &Method::GET, keep_alive)).await
        }
    };
    matches!(written, Ok(true))
}

/// Writes a `200` JSON answer with `body` and the `extra` header lines, head and body in one
/// write; returns whether the connection stays open.
async fn write_json_ok(stream: &mut TcpStream, body: &[u8], extra: &[u8], keep_alive: bool) -> std::io::Result<bool> {
    stream.write_all(&json_ok_bytes(body, extra, keep_alive)).await?;
    Ok(keep_alive)
}

/// A whole `200` JSON response — head and `body` — with the `extra` header lines.
pub fn json_ok_bytes(body: &[u8], extra: &[u8], keep_alive: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + extra.len() + body.len());
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n");
    out.extend_from_slice(extra);
    out.extend_from_slice(b"date: ");
    DATE.with(|date| out.extend_from_slice(date.borrow_mut().now()));
    out.extend_from_slice(b"\r\ncontent-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Writes `response`; returns whether the connection stays open for another request.
pub async fn write_response(
    stream: &mut TcpStream,
    response: Response<Body>,
    method: &Method,
    keep_alive: bool,
) -> std::io::Result<bool> {
    // Every routed response is whole (JSON, the demo page, the client bundle): it goes out with
    // a Content-Length, head and body in one write. Streams take the connection over instead
    // ([`Takeover`]).
    let (parts, mut body) = response.into_parts();
    let mut data = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(chunk) = frame.map_err(std::io::Error::other)?.into_data() {
            data.extend_from_slice(&chunk);
        }
    }
    let mut out = response_head(&parts, Some(data.len() as u64), false, keep_alive);
    let bodiless =
        *method == Method::HEAD || parts.status == StatusCode::NO_CONTENT || parts.status == StatusCode::NOT_MODIFIED;
    if !bodiless {
        out.extend_from_slice(&data);
    }
    stream.write_all(&out).await?;
    Ok(keep_alive)
}

#[cfg(test)]
mod tests {
    use super::chunk_size_line;

    #[test]
    fn chunk_size_lines_are_lowercase_hex() {
        let mut buf = [0u8; 18];
        for n in [0usize, 1, 9, 10, 255, 256, 4096, 65_535, usize::MAX] {
            assert_eq!(chunk_size_line(n, &mut buf), format!("{n:x}\r\n").as_bytes(), "{n}");
        }
    }
}
