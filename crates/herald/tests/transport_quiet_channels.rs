//! Positions that hold on quiet channels: a channel Herald forgets while it has no subscribers
//! and no history left keeps its epoch and offsets, so a client coming back to it gets what was
//! published meanwhile, recovered, not reset — the personal job-alert channel. A reset comes
//! only for messages that really left history, and then it is exact.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use std::time::Duration;

use common::{TestServer, WAIT};
use serde_json::{Value, json};

/// Sweeps every second, and keeps history for one.
fn quiet_server(extra: &[&str]) -> TestServer {
    let mut settings = vec!["heartbeat_secs=1", "ws_idle_timeout_secs=5", "history_ttl_secs=1"];
    settings.extend_from_slice(extra);
    TestServer::start(&settings)
}

/// Waits until the server has forgotten every channel (no subscribers, no history left).
async fn until_forgotten(server: &TestServer) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let info = server.api_get("/api/info").await;
        if info["channels"] == 0 {
            return info;
        }
        assert!(tokio::time::Instant::now() < deadline, "channels never forgotten: {info}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_sse_client_gets_the_alert_sent_to_its_forgotten_channel() {
    let server = quiet_server(&[]);
    // The user opens the page: a stream on a channel that never had a message.
    let mut sse = server.sse("channel=user:42", None).await;
    let first_id = loop {
        if let Some(id) = sse.last_id.clone() {
            break id;
        }
        // The prelude carries the id; reading one heartbeat is enough to see it.
        let _ = tokio::time::timeout(Duration::from_millis(1500), sse.next()).await;
    };
    drop(sse);
    until_forgotten(&server).await;
    // The backend sends a job alert while the user is away.
    let published = server.publish("user:42", json!({"title": "Rust engineer"})).await;
    assert!(first_id.contains(published["epoch"].as_str().unwrap()), "{first_id} vs {published}: same epoch");
    let mut back = server.sse("channel=user:42", Some(&first_id)).await;
    let event = back.next().await.unwrap();
    assert_eq!(event.event, "message", "recovered, not reset: {event:?}");
    assert_eq!((event.data["offset"].clone(), event.data["data"]["title"].clone()), (json!(1), json!("Rust engineer")));
}

#[tokio::test]
async fn a_websocket_client_recovers_a_forgotten_channel_and_a_lost_position_is_an_exact_reset() {
    let server = quiet_server(&[]);
    for i in 1..=3 {
        server.publish("alerts", json!({ "i": i })).await;
    }
    let mut ws = server.ws().await;
    let reply = ws.subscribe("alerts", None).await;
    let epoch = reply["result"]["epoch"].as_str().unwrap().to_string();
    assert_eq!(reply["result"]["offset"], 3);
    drop(ws);
    // History expires (1 s), then the channel is forgotten with its position kept.
    let info = until_forgotten(&server).await;
    assert_eq!(info["forgotten_positions"], 1, "{info}");
    let published = server.publish("alerts", json!({ "i": 4 })).await;
    assert_eq!((published["epoch"].as_str(), published["offset"].clone()), (Some(epoch.as_str()), json!(4)));

    // At offset 3 everything after is in history: recovered exactly.
    let mut ws = server.ws().await;
    let reply = ws.subscribe("alerts", Some(json!({"epoch": epoch, "offset": 3}))).await;
    assert_eq!(reply["result"]["recovered"], true, "{reply}");
    let message = ws.next().await.unwrap();
    assert_eq!((message["offset"].clone(), message["data"]["i"].clone()), (json!(4), json!(4)));

    // At offset 1, messages 2 and 3 left history by age: a reset naming the current position.
    let mut late = server.ws().await;
    let reply = late.subscribe("alerts", Some(json!({"epoch": epoch, "offset": 1}))).await;
    assert_eq!(reply["result"]["recovered"], false, "{reply}");
    let reset = late.next().await.unwrap();
    assert_eq!((reset["type"].clone(), reset["reason"].clone()), (json!("reset"), json!("history_exceeded")));
    assert_eq!((reset["epoch"].as_str(), reset["offset"].clone()), (Some(epoch.as_str()), json!(4)));
}

#[tokio::test]
async fn a_long_poll_cursor_resumes_after_its_channel_was_forgotten() {
    let server = quiet_server(&[]);
    let (status, body) = server.poll("channel=user:7&channel=user:8&timeout=0").await;
    assert_eq!(status, 200);
    let cursor = body["cursor"].as_str().unwrap().to_string();
    server.publish("user:8", json!("first")).await;
    until_forgotten(&server).await;
    server.publish("user:7", json!("while away")).await;
    let (_, body) = server.poll(&format!("channel=user:7&channel=user:8&cursor={cursor}&timeout=5")).await;
    // user:7 was forgotten at offset 0 and published to meanwhile: recovered.
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{body}");
    assert_eq!((messages[0]["channel"].clone(), messages[0]["offset"].clone()), (json!("user:7"), json!(1)));
    assert_eq!(messages[0]["data"], "while away");
    // user:8's one message left history by age before the client came back: an exact reset.
    let resets = body["resets"].as_array().unwrap();
    assert_eq!(resets.len(), 1, "{body}");
    assert_eq!(
        (resets[0]["channel"].clone(), resets[0]["reason"].clone()),
        (json!("user:8"), json!("history_exceeded"))
    );
    assert_eq!(resets[0]["offset"], 1);
}
