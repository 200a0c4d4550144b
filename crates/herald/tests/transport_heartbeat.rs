//! Heartbeats: SSE comments on an idle stream; WebSocket ping frames plus a `ping` push, and a
//! peer that never answers (no pong, no frame) is dropped with a reconnect close code.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use std::time::Duration;

use common::TestServer;
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

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
    let (mut socket, _) = tokio_tungstenite::connect_async(server.ws_url()).await.unwrap();
    // Read nothing (so no pong is sent) until the server has given up on us.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut frames = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(frame)) = socket.next().await {
            let last = matches!(frame, Message::Close(_));
            frames.push(frame);
            if last {
                break;
            }
        }
    })
    .await
    .expect("the server closes");
    assert!(frames.iter().any(|f| matches!(f, Message::Ping(_))), "websocket ping frames: {frames:?}");
    let texts: Vec<Value> =
        frames.iter().filter_map(|f| f.to_text().ok()).filter_map(|t| serde_json::from_str(t).ok()).collect();
    assert!(texts.iter().any(|t| t["type"] == "ping"), "an application ping push: {texts:?}");
    let disconnect = texts.iter().find(|t| t["type"] == "disconnect").expect("a disconnect push");
    assert_eq!((disconnect["code"].as_u64(), disconnect["reconnect"].as_bool()), (Some(4003), Some(true)));
    let Some(Message::Close(Some(close))) = frames.last() else { panic!("ends with a close frame: {frames:?}") };
    assert_eq!(u16::from(close.code), 4003);
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
