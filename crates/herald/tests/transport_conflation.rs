//! Latest-only (conflated) channels: a subscriber that falls behind — its socket full, or away
//! between two long polls, or reconnecting — gets the newest message instead of every one in
//! between, is never cut off as a slow consumer for it, and is told so in the subscribe reply.
//! The same flood on an ordinary channel cuts the stalled client off
//! (`transport_backpressure.rs`), which is what these tests would see without conflation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use common::TestServer;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

/// 600 × 32 KiB is far more than socket buffers plus the queue bound.
const MESSAGES: u64 = 600;

fn conflating_server() -> TestServer {
    TestServer::start(&["max_queued_bytes=262144", "namespaces={ticker={conflate=true,history_size=10}}"])
}

async fn flood(server: &TestServer, channel: &str) {
    for i in 1..=MESSAGES {
        server.publish(channel, json!({ "i": i, "pad": "x".repeat(32 * 1024) })).await;
    }
}

fn sse_offsets(bytes: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .map(|envelope| envelope["offset"].as_u64().unwrap())
        .collect()
}

/// Offsets that only go up, skip some, and end with the newest.
fn assert_skips_to_the_newest(offsets: &[u64], newest: u64) {
    assert_eq!(offsets.last(), Some(&newest), "the newest message arrives");
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets only go up: {offsets:?}");
    assert!((offsets.len() as u64) < newest, "messages in between were skipped: {} of {newest}", offsets.len());
}

#[tokio::test]
async fn a_websocket_that_stops_reading_gets_the_newest_message_and_stays_connected() {
    let server = conflating_server();
    let mut stalled = common::raw_ws(&server.base).await;
    stalled.write_all(&common::masked_text(br#"{"id":1,"op":"subscribe","channel":"ticker:eur"}"#)).await.unwrap();
    let mut bytes = Vec::new();
    common::read_until(&mut stalled, &mut bytes, |b| !common::ws_texts(b).is_empty()).await;
    assert_eq!(common::ws_texts(&bytes)[0]["result"]["conflated"], true, "declared in the reply");
    flood(&server, "ticker:eur").await;

    let newest_seen = |b: &[u8]| common::ws_texts(b).iter().any(|t| t["offset"] == MESSAGES);
    common::read_until(&mut stalled, &mut bytes, newest_seen).await;
    let texts = common::ws_texts(&bytes);
    assert!(texts.iter().all(|t| t["type"] != "disconnect"), "never a slow consumer");
    let offsets: Vec<u64> =
        texts.iter().filter(|t| t["type"] == "message").map(|t| t["offset"].as_u64().unwrap()).collect();
    assert_skips_to_the_newest(&offsets, MESSAGES);

    server.publish("ticker:eur", json!("live")).await;
    common::read_until(&mut stalled, &mut bytes, |b| common::ws_texts(b).iter().any(|t| t["data"] == "live")).await;
    assert_eq!(common::ws_texts(&bytes).last().unwrap()["offset"], MESSAGES + 1);
}

#[tokio::test]
async fn an_sse_stream_that_stops_reading_gets_the_newest_message_and_stays_open() {
    let server = conflating_server();
    let mut stalled = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://")).await.unwrap();
    stalled.write_all(b"GET /sse/ticker:usd HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut bytes = Vec::new();
    common::read_until(&mut stalled, &mut bytes, |b| b.windows(4).any(|w| w == b"id: ")).await;
    flood(&server, "ticker:usd").await;
    common::read_until(&mut stalled, &mut bytes, |b| sse_offsets(b).contains(&MESSAGES)).await;
    assert!(!String::from_utf8_lossy(&bytes).contains(": disconnect"), "never a slow consumer");
    assert_skips_to_the_newest(&sse_offsets(&bytes), MESSAGES);
}

#[tokio::test]
async fn a_client_that_was_away_gets_only_the_newest_message_on_every_transport() {
    let server = conflating_server();
    let first = server.publish("ticker:gbp", json!(1)).await;
    let epoch = first["epoch"].as_str().unwrap().to_string();
    for i in 2..=5 {
        server.publish("ticker:gbp", json!(i)).await;
    }
    // Each comes back at offset 1: the newest, and no reset for 2 to 4.
    let mut ws = server.ws().await;
    let reply = ws.subscribe("ticker:gbp", Some(json!({ "epoch": epoch, "offset": 1 }))).await;
    assert_eq!(
        (reply["result"]["recovered"].clone(), reply["result"]["conflated"].clone()),
        (json!(true), json!(true))
    );
    let next = ws.next().await.unwrap();
    assert_eq!((next["type"].as_str(), next["offset"].as_u64()), (Some("message"), Some(5)));

    let cursor = format!("ticker:gbp~{epoch}~1");
    let (status, body) = server.poll(&format!("channel=ticker:gbp&cursor={cursor}&timeout=5")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resets"], json!([]));
    let offsets: Vec<&Value> = body["messages"].as_array().unwrap().iter().map(|m| &m["offset"]).collect();
    assert_eq!(offsets, [&json!(5)]);

    let mut sse = server.sse("channel=ticker:gbp", Some(&cursor)).await;
    let event = sse.next().await.unwrap();
    assert_eq!((event.event.as_str(), event.data["offset"].as_u64()), ("message", Some(5)));

    // An ordinary channel on the same server still recovers every message.
    let plain = server.publish("plain", json!(1)).await;
    server.publish("plain", json!(2)).await;
    server.publish("plain", json!(3)).await;
    let mut ws = server.ws().await;
    let since = json!({ "epoch": plain["epoch"], "offset": 1 });
    let reply = ws.subscribe("plain", Some(since)).await;
    assert!(reply["result"].get("conflated").is_none(), "{reply}");
    assert_eq!(
        (ws.next().await.unwrap()["offset"].clone(), ws.next().await.unwrap()["offset"].clone()),
        (json!(2), json!(3))
    );
}
