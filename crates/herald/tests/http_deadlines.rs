//! Request deadlines on the wire: a head must be all in within `http_head_timeout_secs` of its
//! first byte, and a body must keep arriving (`http_body_timeout_secs`), so that connections
//! sending a byte at a time (slowloris) are closed and counted while everyone else is served.
//! An idle keep-alive connection is not a slow head: it may wait between requests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use std::time::{Duration, Instant};

use common::{API_KEY, TestServer, WAIT};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Reads until the server closes `stream` (within [`WAIT`]): what it sent before.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server closes the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

async fn limit_hits(server: &TestServer, limit: &str) -> u64 {
    server.api_get("/api/info").await["limits"][limit].as_u64().unwrap_or(0)
}

/// One slowloris connection: a head begun, then one byte every 250 ms. Returns how long the
/// server took to close it (`None`: still open after 8 s, when it gives up).
async fn slow_head(address: String) -> Option<Duration> {
    let mut stream = TcpStream::connect(address).await.ok()?;
    let started = Instant::now();
    stream.write_all(b"GET /poll?channel=slow HTTP/1.1\r\nHost: h\r\nX-Slow: ").await.ok()?;
    let (mut read, mut write) = stream.split();
    let trickle = async {
        for _ in 0..32 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if write.write_all(b"x").await.is_err() {
                // Closed by the server: wait for the read side to see it.
                std::future::pending::<()>().await;
            }
        }
    };
    let mut sink = Vec::new();
    tokio::select! {
        _ = read.read_to_end(&mut sink) => Some(started.elapsed()),
        () = trickle => None,
    }
}

#[tokio::test]
async fn slow_heads_are_closed_and_counted_while_others_are_served() {
    const SLOW: usize = 2000;
    let server = TestServer::start(&["http_head_timeout_secs=1", "connection_rate_per_ip=0", "max_streams_per_ip=0"]);
    let address = server.base.trim_start_matches("http://").to_string();
    let attackers: Vec<_> = (0..SLOW).map(|_| tokio::spawn(slow_head(address.clone()))).collect();
    // While they trickle, a subscriber and a publisher are served as usual.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, first) = server.poll("channel=jobs&timeout=0").await;
    assert_eq!(status, 200);
    let cursor = first["cursor"].as_str().expect("a cursor").to_string();
    server.publish("jobs", json!({"title": "Rust engineer"})).await;
    let (status, next) = server.poll(&format!("channel=jobs&cursor={cursor}&timeout=5")).await;
    assert_eq!(status, 200);
    assert_eq!(next["messages"][0]["data"]["title"], "Rust engineer");
    let mut closed = 0;
    for attacker in attackers {
        let took = attacker.await.expect("the attacker task ends");
        let took = took.expect("the server closes a trickling head");
        assert!(took < Duration::from_secs(6), "closed after {took:?}, not at the 1 s head deadline");
        closed += 1;
    }
    assert_eq!(closed, SLOW);
    assert!(limit_hits(&server, "head_timeout").await >= SLOW as u64);
    let metrics = server.http.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"herald_limit_hits_total{limit="head_timeout"}"#), "counted in /metrics");
}

#[tokio::test]
async fn a_connection_that_never_sends_a_head_is_closed() {
    let server = TestServer::start(&["http_head_timeout_secs=1"]);
    let mut silent = server.connect().await;
    let started = Instant::now();
    assert_eq!(until_closed(&mut silent).await, "", "closed without an answer: it asked nothing");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(limit_hits(&server, "head_timeout").await >= 1);
}

#[tokio::test]
async fn a_partial_head_gets_408_and_a_close() {
    let server = TestServer::start(&["http_head_timeout_secs=1"]);
    let mut stream = server.connect().await;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost:").await.expect("writes");
    let answer = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_closed_and_not_published() {
    let server = TestServer::start(&["http_body_timeout_secs=1"]);
    let mut stream = server.connect().await;
    let head =
        format!("POST /api/publish/stalled HTTP/1.1\r\nHost: h\r\nX-API-Key: {API_KEY}\r\nContent-Length: 100\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("writes");
    stream.write_all(b"only ten b").await.expect("writes");
    let answer = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(limit_hits(&server, "body_timeout").await >= 1);
    let history = server.api_get("/api/channels/stalled/history").await;
    assert_eq!(history["offset"].as_u64().unwrap_or(0), 0, "{history}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_not_a_slow_head() {
    let server = TestServer::start(&["http_head_timeout_secs=1"]);
    let mut stream = server.connect().await;
    let mut answer = [0u8; 1024];
    for _ in 0..2 {
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n").await.expect("writes");
        let n = tokio::time::timeout(WAIT, stream.read(&mut answer)).await.expect("answered").expect("reads");
        assert!(answer[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer[..n]));
        // Longer than the head deadline, well under the idle one.
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    assert_eq!(limit_hits(&server, "head_timeout").await, 0);
}
