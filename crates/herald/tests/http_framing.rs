//! Request smuggling shapes on the wire: every request whose framing has more than one reading
//! is refused with one error and the connection closed, so the request hidden after it never
//! runs. Each hidden request is a real `POST /api/publish`; the channel it names must stay
//! empty.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use common::{API_KEY, TestServer, WAIT};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A whole `POST /api/publish` to `channel`, as an attacker would hide it.
fn hidden_publish(channel: &str) -> String {
    let body = format!(r#"{{"channel":"{channel}","data":"smuggled"}}"#);
    format!(
        "POST /api/publish HTTP/1.1\r\nHost: h\r\nX-API-Key: {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `bytes` on a fresh connection and reads until the server closes it: everything it
/// answered.
async fn exchange(server: &TestServer, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.base.trim_start_matches("http://")).await.expect("connects");
    stream.write_all(bytes).await.expect("writes");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("the server closes the connection after {:?}", String::from_utf8_lossy(bytes)))
        .expect("reads");
    String::from_utf8_lossy(&answer).into_owned()
}

async fn channel_offset(server: &TestServer, channel: &str) -> u64 {
    let history: Value = server.api_get(&format!("/api/channels/{channel}/history")).await;
    history["offset"].as_u64().unwrap_or(0)
}

/// Answers that begin with an HTTP status line.
fn statuses(answer: &str) -> Vec<u16> {
    answer
        .match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| answer.get(at + 9..at + 12)?.parse().ok())
        .filter(|status| *status != 100)
        .collect()
}

#[tokio::test]
async fn a_well_framed_pipelined_publish_runs() {
    // The control: the same hidden request, framed honestly, is served. So an empty channel in
    // the tests below means the server refused, not that the request could never have run.
    let server = TestServer::start(&[]);
    let first = "GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n";
    let close = "GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    let answer = exchange(&server, format!("{first}{}{close}", hidden_publish("control")).as_bytes()).await;
    assert_eq!(statuses(&answer), [200, 200, 200], "{answer}");
    assert_eq!(channel_offset(&server, "control").await, 1);
}

#[tokio::test]
async fn ambiguous_framings_are_refused_and_nothing_after_them_runs() {
    let server = TestServer::start(&[]);
    let shapes: Vec<(&str, String, u16)> = vec![
        // CL.TE and TE.CL: a front reading the other header would see a second request.
        ("te-and-cl", "Transfer-Encoding: chunked\r\nContent-Length: 4".into(), 400),
        ("cl-and-te", "Content-Length: 4\r\nTransfer-Encoding: chunked".into(), 400),
        ("xchunked", "Transfer-Encoding: xchunked".into(), 400),
        ("chunked-identity", "Transfer-Encoding: chunked, identity".into(), 400),
        ("chunked-twice", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked".into(), 400),
        ("gzip-chunked", "Transfer-Encoding: gzip, chunked".into(), 501),
        ("identity", "Transfer-Encoding: identity".into(), 400),
        ("two-lengths", "Content-Length: 0\r\nContent-Length: 4".into(), 400),
        ("signed-length", "Content-Length: +4".into(), 400),
        ("length-list", "Content-Length: 4, 4".into(), 400),
        ("spaced-length", "Content-Length: 4 4".into(), 400),
        ("obs-fold", "Transfer-Encoding:\r\n chunked".into(), 400),
        ("space-before-colon", "Transfer-Encoding : chunked".into(), 400),
    ];
    for (channel, framing, status) in &shapes {
        // A body of `0\r\n\r\n` (a chunked reading ends there) followed by the hidden publish.
        let request = format!(
            "POST /api/publish HTTP/1.1\r\nHost: h\r\nX-API-Key: {API_KEY}\r\n{framing}\r\n\r\n0\r\n\r\n{}",
            hidden_publish(channel)
        );
        let answer = exchange(&server, request.as_bytes()).await;
        assert_eq!(statuses(&answer), [*status], "{channel}: one refusal, then the close: {answer}");
        assert!(answer.to_ascii_lowercase().contains("connection: close"), "{channel}: {answer}");
        assert!(answer.contains(r#""error":{"code":"#), "{channel}: a JSON error: {answer}");
    }
    // HTTP/1.0 has no chunked coding: a front speaking 1.0 reads the length.
    let request = format!(
        "POST /api/publish HTTP/1.0\r\nX-API-Key: {API_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{}",
        hidden_publish("http10")
    );
    assert_eq!(statuses(&exchange(&server, request.as_bytes()).await), [400]);
    for (channel, _, _) in shapes.iter().chain([&("http10", String::new(), 0)]) {
        assert_eq!(channel_offset(&server, channel).await, 0, "{channel}: the hidden publish must not run");
    }
}

#[tokio::test]
async fn malformed_chunked_bodies_close_the_connection() {
    let server = TestServer::start(&[]);
    let bodies = [
        ("overflow", "ffffffffffffffffffff\r\n".to_string(), 413),
        ("bare-lf", "5\nhello\r\n0\r\n\r\n".to_string(), 400),
        ("no-crlf-after-data", "5\r\nhelloXX0\r\n\r\n".to_string(), 400),
        ("bad-size", "zz\r\nhello\r\n0\r\n\r\n".to_string(), 400),
        ("long-extension", format!("5;{}\r\nhello\r\n0\r\n\r\n", "x".repeat(5000)), 400),
    ];
    for (channel, body, status) in &bodies {
        let request = format!(
            "POST /api/publish/{channel} HTTP/1.1\r\nHost: h\r\nX-API-Key: {API_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n{body}{}",
            hidden_publish(&format!("{channel}-hidden"))
        );
        let answer = exchange(&server, request.as_bytes()).await;
        assert_eq!(statuses(&answer), [*status], "{channel}: {answer}");
    }
    for (channel, _, _) in &bodies {
        assert_eq!(channel_offset(&server, channel).await, 0, "{channel}");
        assert_eq!(channel_offset(&server, &format!("{channel}-hidden")).await, 0, "{channel}-hidden");
    }
    // A good chunked body on the same route publishes.
    let good = format!(
        "POST /api/publish/chunked-ok HTTP/1.1\r\nHost: h\r\nX-API-Key: {API_KEY}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    );
    assert_eq!(statuses(&exchange(&server, good.as_bytes()).await), [200]);
    assert_eq!(channel_offset(&server, "chunked-ok").await, 1);
}

#[tokio::test]
async fn an_announced_length_is_refused_before_its_bytes_arrive() {
    let server = TestServer::start(&[]);
    // Far over the body cap: refused from the head alone (nothing of it was sent).
    let request =
        format!("POST /api/publish HTTP/1.1\r\nHost: h\r\nX-API-Key: {API_KEY}\r\nContent-Length: 99999999999\r\n\r\n");
    assert_eq!(statuses(&exchange(&server, request.as_bytes()).await), [413]);
}

#[tokio::test]
async fn a_websocket_upgrade_with_a_body_is_refused() {
    let server = TestServer::start(&[]);
    let hidden = hidden_publish("ws-hidden");
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: {}\r\n\r\n{hidden}",
        hidden.len()
    );
    assert_eq!(statuses(&exchange(&server, request.as_bytes()).await), [400]);
    assert_eq!(channel_offset(&server, "ws-hidden").await, 0);
}
