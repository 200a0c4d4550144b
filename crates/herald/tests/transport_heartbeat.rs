//! Heartbeats: SSE comments on an idle stream; WebSocket ping frames plus a `ping` push, and a
//! peer that never answers (no pong, no frame) is dropped with a reconnect close code.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use std::time::Duration;

use common::TestServer;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncReadExt as _;

#[tokio::test]
async fn idle_sse_stream_gets_heartbeat_comments() {
    let server = TestServer::start(&["heartbeat_secs=1", "ws_idle_timeout_secs=3"]);
    let mut response = reqwest::get(format!("{}/sse?channel=idle", server.base)).await.unwrap();
    let mut seen = String::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while !seen.contains(": ping\n\n") {
            seen.push_str(std::str::from_utf8(&response.chunk().await.unwrap().unwrap()).unwrap());
        }
    })
    .await
    .expect("a heartbeat comment within 5 s");
}

#[tokio::test]
async fn silent_websocket_peer_is_pinged_then_dropped_as_stale() {
    let server = TestServer::start(&["heartbeat_secs=1", "ws_idle_timeout_secs=2"]);
    // A raw socket: a WebSocket library would answer pings as soon as it reads them.
    let mut socket = common::raw_ws(&server.base).await;
    // Read nothing until the server has given up on us, then everything up to its close.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut bytes))
        .await
        .expect("the server closes")
        .unwrap();
    let (frames, torn) = common::server_frames(&bytes);
    assert_eq!(torn, 0, "no torn frame at the end");
    assert!(frames.iter().any(|(opcode, _)| *opcode == 0x9), "websocket ping frames: {frames:?}");
    let texts: Vec<Value> = frames
        .iter()
        .filter(|(opcode, _)| *opcode == 0x1)
        .filter_map(|(_, p)| serde_json::from_slice(p).ok())
        .collect();
    assert!(texts.iter().any(|t| t["type"] == "ping"), "an application ping push: {texts:?}");
    let disconnect = texts.iter().find(|t| t["type"] == "disconnect").expect("a disconnect push");
    assert_eq!((disconnect["code"].as_u64(), disconnect["reconnect"].as_bool()), (Some(4003), Some(true)));
    let Some((0x8, close)) = frames.last() else { panic!("ends with a close frame: {frames:?}") };
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 4003);
}

#[tokio::test]
async fn answering_websocket_peer_stays_connected() {
    let server = TestServer::start(&["heartbeat_secs=1", "ws_idle_timeout_secs=2"]);
    let mut ws = server.ws().await;
    ws.subscribe("alive", None).await;
    // Reading keeps answering pings; after several idle timeouts the connection still works.
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < until {
        let _ = tokio::time::timeout(Duration::from_millis(200), ws.socket.next()).await;
    }
    server.publish("alive", serde_json::json!("still here")).await;
    assert_eq!(ws.next().await.unwrap()["data"], "still here");
}
