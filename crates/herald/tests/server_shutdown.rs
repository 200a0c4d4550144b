//! SIGTERM with 1,000 clients across the three transports: every client is told to reconnect
//! (WebSocket disconnect push and close 4001, SSE `retry:` then end of stream, long polls
//! answered), and the process exits before its deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use futures_util::{StreamExt, future::join_all};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_every_client_to_reconnect_and_exits_in_time() {
    let mut server = TestServer::start(&["shutdown_deadline_secs=8", "poll_timeout_secs=60"]);
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();

    let mut ws_clients = Vec::new();
    for _ in 0..4 {
        ws_clients.extend(
            join_all((0..100).map(|_| async {
                let mut ws = server.ws().await;
                ws.subscribe("news", None).await;
                ws
            }))
            .await,
        );
    }
    let sse_url = format!("{}/sse?channel=news", server.base);
    let mut sse_clients = Vec::new();
    for _ in 0..4 {
        sse_clients.extend(join_all((0..100).map(|_| common::SseClient::connect(&http, &sse_url, None))).await);
    }
    let polls: Vec<_> = (0..200)
        .map(|_| {
            let (http, url) = (http.clone(), format!("{}/poll?channel=news&timeout=60", server.base));
            tokio::spawn(async move {
                let r = http.get(url).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    // Every client is connected, and every poll is waiting, before the signal.
    server.wait_for_connections("ws", 400).await;
    server.wait_for_connections("sse", 400).await;
    server.wait_for_connections("poll", 200).await;

    let started = Instant::now();
    let killed = std::process::Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().unwrap();
    assert!(killed.success());

    let ws_done = ws_clients.into_iter().map(|mut ws| async move {
        let push = ws.next().await.expect("a disconnect push before the close");
        assert_eq!(push, json!({"type":"disconnect","code":4001,"reason":"shutdown","reconnect":true}));
        let close = tokio::time::timeout(common::WAIT, async {
            loop {
                match ws.socket.next().await {
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => {}
                    _ => return None,
                }
            }
        })
        .await
        .expect("close in time");
        assert_eq!(close, Some(4001));
    });
    let sse_done = sse_clients.into_iter().map(|mut sse| async move {
        assert!(sse.next().await.is_none(), "the stream ends");
        assert!(sse.ended);
        assert_eq!(sse.retries_seen, 2, "a retry: before the end");
    });
    join_all(ws_done).await;
    join_all(sse_done).await;
    for poll in join_all(polls).await {
        let (status, body) = poll.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body["messages"], json!([]));
        assert!(body["cursor"].as_str().is_some_and(|c| c.starts_with("news~")));
    }

    exits_cleanly_within(&mut server, started, Duration::from_secs(8)).await;
}

/// A keep-alive connection waiting for its next request — after long polls, so that its wait
/// for the shutdown has been polled before — closes as soon as the shutdown starts, not at its
/// idle timeout, and the process exits at once.
#[tokio::test]
async fn sigterm_closes_an_idle_keep_alive_connection_at_once() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let mut server = TestServer::start(&["shutdown_deadline_secs=30"]);
    let mut conn = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://")).await.unwrap();
    for _ in 0..3 {
        conn.write_all(b"GET /poll?channel=news&timeout=0 HTTP/1.1\r\nhost: herald\r\n\r\n").await.unwrap();
        // One whole answer: its head, then a body of its Content-Length.
        let mut answer = Vec::new();
        let whole = |answer: &[u8]| {
            let text = String::from_utf8_lossy(answer);
            let (head, body) = text.split_once("\r\n\r\n")?;
            let length = head.lines().find_map(|l| l.strip_prefix("content-length: "))?.parse::<usize>().ok()?;
            Some(body.len() >= length)
        };
        while whole(&answer) != Some(true) {
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(common::WAIT, conn.read(&mut chunk)).await.expect("an answer").unwrap();
            assert!(n > 0, "the connection stays open between requests");
            answer.extend_from_slice(&chunk[..n]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    }

    let started = Instant::now();
    let killed = std::process::Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().unwrap();
    assert!(killed.success());
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the idle connection closes when the shutdown starts");
    assert!(rest.is_empty(), "closed without a word: {}", String::from_utf8_lossy(&rest));
    // Long before the shutdown's deadline.
    exits_cleanly_within(&mut server, started, Duration::from_secs(5)).await;
}

/// Waits for the server to exit, cleanly and within `limit` of `started`.
async fn exits_cleanly_within(server: &mut TestServer, started: Instant, limit: Duration) {
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < limit, "exited within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "clean exit: {status:?}");
}
