//! Slow consumers: a client that stops reading is cut off once its backlog passes the bounds,
//! after a gap-free prefix of its messages — while a client that reads, on the same channel,
//! gets every message in order.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use std::time::Duration;

use common::TestServer;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Messages published: 600 × 32 KiB is far more than socket buffers plus the queue bound.
const MESSAGES: u64 = 600;
const QUEUE_BOUND: &str = "max_queued_bytes=262144";

fn padded(i: u64) -> Value {
    json!({ "i": i, "pad": "x".repeat(32 * 1024) })
}

/// Publishes every message while a reading WebSocket client checks it gets them all in order.
async fn flood_with_a_reader(server: &TestServer, channel: &str) {
    let mut reader = server.ws().await;
    reader.subscribe(channel, None).await;
    wait_for_subscribers(server, channel, 2).await;
    let read_all = tokio::spawn(async move {
        for offset in 1..=MESSAGES {
            let message =
                tokio::time::timeout(common::WAIT, reader.next()).await.expect("the reader keeps up").unwrap();
            assert_eq!(message["offset"], offset, "the reading client gets every message in order");
        }
    });
    for i in 1..=MESSAGES {
        server.publish(channel, padded(i)).await;
    }
    read_all.await.unwrap();
}

async fn wait_for_subscribers(server: &TestServer, channel: &str, want: u64) {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let channels = server.api_get("/api/channels").await;
        let list = channels["channels"].as_array().cloned().unwrap_or_default();
        if list.iter().any(|c| c["channel"] == channel && c["subscribers"] == want) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "never saw {want} subscribers: {channels}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks that `offsets` are 1, 2, 3, … and fewer than everything that was published.
fn assert_gapless_prefix(offsets: &[u64]) {
    assert!(!offsets.is_empty(), "the stalled client got its first messages");
    assert!((offsets.len() as u64) < MESSAGES, "the stalled client was cut off, not sent everything");
    for (i, offset) in offsets.iter().enumerate() {
        assert_eq!(*offset, i as u64 + 1, "no gap and no reordering before the cut");
    }
}

#[tokio::test]
async fn websocket_client_that_stops_reading_is_cut_off_after_a_gapless_prefix() {
    let server = TestServer::start(&[QUEUE_BOUND]);
    let mut stalled = common::raw_ws(&server.base).await;
    stalled.write_all(&common::masked_text(br#"{"id":1,"op":"subscribe","channel":"flood"}"#)).await.unwrap();
    flood_with_a_reader(&server, "flood").await;

    let mut bytes = Vec::new();
    tokio::time::timeout(common::WAIT, stalled.read_to_end(&mut bytes))
        .await
        .expect("the server ends the stalled connection")
        .unwrap();
    let (frames, _) = common::server_frames(&bytes);
    let texts: Vec<Value> = frames
        .iter()
        .filter(|(opcode, _)| *opcode == 0x1)
        .map(|(_, payload)| serde_json::from_slice(payload).expect("every whole frame is JSON"))
        .collect();
    assert_eq!(texts[0]["id"], 1, "the subscribe reply comes first");
    let offsets: Vec<u64> =
        texts.iter().filter(|t| t["type"] == "message").map(|t| t["offset"].as_u64().unwrap()).collect();
    assert_gapless_prefix(&offsets);
    // Read while the server still waited: the disconnect reason and close code arrive too.
    if let Some(disconnect) = texts.iter().find(|t| t["type"] == "disconnect") {
        assert_eq!(disconnect["code"], 4002, "{disconnect}");
        let (opcode, close) = frames.last().unwrap();
        assert_eq!((*opcode, u16::from_be_bytes([close[0], close[1]])), (0x8, 4002));
    }
    server.wait_for_connections("ws", 0).await;
}

#[tokio::test]
async fn sse_client_that_stops_reading_is_cut_off_after_a_gapless_prefix() {
    let server = TestServer::start(&[QUEUE_BOUND]);
    let mut stalled = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://")).await.unwrap();
    stalled.write_all(b"GET /sse/flood HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    flood_with_a_reader(&server, "flood").await;

    let mut bytes = Vec::new();
    tokio::time::timeout(common::WAIT, stalled.read_to_end(&mut bytes))
        .await
        .expect("the server ends the stalled stream")
        .unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 200"), "{}", &text[..text.len().min(300)]);
    // Chunk framing aside, every whole event's data is an envelope; the last one may be cut.
    let offsets: Vec<u64> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .map(|envelope| envelope["offset"].as_u64().unwrap())
        .collect();
    assert_gapless_prefix(&offsets);
    if text.contains(": disconnect") {
        assert!(text.contains(": disconnect slow_consumer"), "the reason is the slow consumer");
    }
    server.wait_for_connections("sse", 0).await;
}
