//! The long-poll subscriber's HTTP/1.1 client: one keep-alive connection, each `GET` written
//! in one write and each answer read into buffers that the next poll reuses.
//!
//! The bench and the server share the machine, so what the bench spends per delivery is taken
//! from the server and, worse, delays the bench's own reading: a delivery is timed when the
//! bench reads it. hyper's client runs a driver task beside each connection and hands every
//! answer across a channel; at 50,000 long-poll deliveries a second that cost more CPU per
//! delivery than the server spent, and the bench's own backlog stretched the tail it reported
//! (BENCHMARKS.md, session 17). This client reads in the subscriber's own task, with nothing
//! in between.

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::Counted;

/// Most header lines an answer may carry.
const MAX_HEADERS: usize = 32;

/// One keep-alive connection for long polls.
pub struct PollClient {
    stream: Counted,
    /// The `Host` header's value.
    host: String,
    /// The request being written.
    request: Vec<u8>,
    /// Bytes read and not yet consumed.
    read: Vec<u8>,
    /// The last answer's body.
    body: Vec<u8>,
    /// The server said `connection: close`.
    closing: bool,
}

/// A poll's answer: its status, the two validators Nchan resumes from, and its body.
pub struct Answer<'a> {
    /// The HTTP status.
    pub status: u16,
    /// `Last-Modified`, if sent.
    pub last_modified: Option<String>,
    /// `ETag`, if sent.
    pub etag: Option<String>,
    /// The body (de-chunked).
    pub body: &'a [u8],
}

/// How an answer's body is framed.
enum Framing {
    Length(usize),
    Chunked,
}

// === impl PollClient ===

impl PollClient {
    /// A client on `stream`, naming `host` in its requests.
    pub fn new(stream: Counted, host: String) -> Self {
        Self { stream, host, request: Vec::new(), read: Vec::new(), body: Vec::new(), closing: false }
    }

    /// Sends `GET path` with `headers` and reads the answer.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Answer<'_>> {
        if self.closing {
            bail!("the server closed the connection");
        }
        self.request.clear();
        for part in ["GET ", path, " HTTP/1.1\r\nhost: ", &self.host, "\r\n"] {
            self.request.extend_from_slice(part.as_bytes());
        }
        for (name, value) in headers {
            for part in [name, ": ", value, "\r\n"] {
                self.request.extend_from_slice(part.as_bytes());
            }
        }
        self.request.extend_from_slice(b"\r\n");
        self.stream.write_all(&self.request).await?;

        let (head_len, status, framing, last_modified, etag) = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) = response.parse(&self.read)? {
                let status = response.code.context("an answer without a status")?;
                let mut framing = Framing::Length(0);
                let (mut last_modified, mut etag) = (None, None);
                for header in response.headers.iter() {
                    let value = || String::from_utf8_lossy(header.value).into_owned();
                    if header.name.eq_ignore_ascii_case("content-length") {
                        framing = Framing::Length(std::str::from_utf8(header.value)?.trim().parse()?);
                    } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                        framing = Framing::Chunked;
                    } else if header.name.eq_ignore_ascii_case("connection") {
                        self.closing |= header.value.eq_ignore_ascii_case(b"close");
                    } else if header.name.eq_ignore_ascii_case("last-modified") {
                        last_modified = Some(value());
                    } else if header.name.eq_ignore_ascii_case("etag") {
                        etag = Some(value());
                    }
                }
                break (len, status, framing, last_modified, etag);
            }
            self.fill().await?;
        };
        self.read.drain(..head_len);
        self.body.clear();
        match framing {
            Framing::Length(length) => {
                while self.read.len() < length {
                    self.fill().await?;
                }
                self.body.extend_from_slice(&self.read[..length]);
                self.read.drain(..length);
            }
            Framing::Chunked => self.read_chunks().await?,
        }
        Ok(Answer { status, last_modified, etag, body: &self.body })
    }

    /// Reads a chunked body into `body`, through its last (empty) chunk and final CRLF.
    async fn read_chunks(&mut self) -> anyhow::Result<()> {
        loop {
            let (start, size) = loop {
                match httparse::parse_chunk_size(&self.read).map_err(|_| anyhow::anyhow!("a bad chunk size"))? {
                    httparse::Status::Complete((start, size)) => break (start, usize::try_from(size)?),
                    httparse::Status::Partial => self.fill().await?,
                }
            };
            // The chunk's data and its CRLF (after the last chunk: the CRLF that ends the body,
            // there being no trailers in a poll's answer).
            while self.read.len() < start + size + 2 {
                self.fill().await?;
            }
            self.body.extend_from_slice(&self.read[start..start + size]);
            self.read.drain(..start + size + 2);
            if size == 0 {
                return Ok(());
            }
        }
    }

    /// Reads more of the answer; an error at the end of the stream.
    async fn fill(&mut self) -> anyhow::Result<()> {
        self.read.reserve(4096);
        if self.stream.read_buf(&mut self.read).await? == 0 {
            bail!("the server closed the connection mid-answer");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::PollClient;
    use crate::net::Connector;

    /// A server on loopback that answers each request on one connection with the next of
    /// `answers`, each written in the pieces given, and returns the requests it read.
    async fn serve(answers: Vec<Vec<&'static [u8]>>) -> (PollClient, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut requests = Vec::new();
            for pieces in answers {
                let mut request = Vec::new();
                while !request.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8; 1];
                    if socket.read(&mut byte).await.unwrap() == 0 {
                        return requests;
                    }
                    request.push(byte[0]);
                }
                requests.push(String::from_utf8(request).unwrap());
                for piece in pieces {
                    socket.write_all(piece).await.unwrap();
                    socket.flush().await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
            requests
        });
        let stream = Connector::new(addr, 1).connect().await.unwrap();
        (PollClient::new(stream, addr.to_string()), server)
    }

    #[tokio::test]
    async fn answers_in_pieces_and_in_a_row_are_read_whole_on_one_connection() {
        let (mut client, server) = serve(vec![
            vec![b"HTTP/1.1 200 OK\r\ncontent-len", b"gth: 14\r\n\r\n{\"messa", b"ges\":1}"],
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nETag: 7\r\nLast-Modified: Mon\r\n\r\n[]"],
        ])
        .await;
        let first = client.get("/poll?channel=a", &[]).await.unwrap();
        assert_eq!((first.status, first.body), (200, &b"{\"messages\":1}"[..]));
        let second = client.get("/sub/a", &[("if-none-match", "6")]).await.unwrap();
        assert_eq!((second.status, second.body), (200, &b"[]"[..]));
        assert_eq!((second.etag.as_deref(), second.last_modified.as_deref()), (Some("7"), Some("Mon")));
        let requests = server.await.unwrap();
        assert!(requests[0].starts_with("GET /poll?channel=a HTTP/1.1\r\nhost: 127.0.0.1:"), "{}", requests[0]);
        assert!(requests[1].contains("\r\nif-none-match: 6\r\n"), "{}", requests[1]);
    }

    #[tokio::test]
    async fn a_chunked_answer_is_joined() {
        let (mut client, _server) = serve(vec![vec![
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
            b"lo\r\n6\r\n world\r\n0\r\n",
            b"\r\n",
        ]])
        .await;
        let answer = client.get("/sub/a", &[]).await.unwrap();
        assert_eq!(answer.body, b"hello world");
    }

    #[tokio::test]
    async fn a_closed_connection_is_an_error_not_an_empty_answer() {
        let (mut client, _server) =
            serve(vec![vec![b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}"]]).await;
        assert_eq!(client.get("/poll", &[]).await.unwrap().body, b"{}");
        assert!(client.get("/poll", &[]).await.is_err(), "the server said close");

        let (mut client, _server) = serve(vec![vec![b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n{\"cut"]]).await;
        assert!(client.get("/poll", &[]).await.is_err(), "the body ended early");
    }
}
