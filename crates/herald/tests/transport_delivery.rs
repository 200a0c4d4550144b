//! Each transport delivers the published envelope: channel, offset, epoch, event and data.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use common::{TestServer, assert_envelope};
use serde_json::json;

#[tokio::test]
async fn websocket_receives_the_envelope() {
    let server = TestServer::start(&[]);
    let mut ws = server.ws().await;
    let reply = ws.subscribe("jobs", None).await;
    assert_eq!(reply["result"]["offset"], 0);
    assert!(reply["result"].get("recovered").is_none(), "no since, no recovered field: {reply}");
    let published = server.publish_body(json!({"channel":"jobs","data":{"title":"Rust dev"},"event":"new-job"})).await;
    let env = ws.next().await.expect("message");
    assert_envelope(&env, "jobs", 1, published["epoch"].as_str().unwrap(), &json!({"title":"Rust dev"}));
    assert_eq!(env["event"], "new-job");
    assert_eq!(reply["result"]["epoch"], published["epoch"]);
}

#[tokio::test]
async fn sse_receives_the_envelope_with_headers_and_ids() {
    let server = TestServer::start(&[]);
    let mut sse = server.sse("channel=jobs", None).await;
    assert_eq!(sse.headers["content-type"], "text/event-stream");
    assert_eq!(sse.headers["cache-control"], "no-cache");
    assert_eq!(sse.headers["x-accel-buffering"], "no");
    let published = server.publish_body(json!({"channel":"jobs","data":[1,"two"],"event":"new-job"})).await;
    let event = sse.next().await.expect("event");
    assert_eq!(sse.retry, Some(2000));
    assert_eq!(event.event, "new-job");
    assert_envelope(&event.data, "jobs", 1, published["epoch"].as_str().unwrap(), &json!([1, "two"]));
    assert!(event.id.is_some());

    // A message without an event name is a plain `message` event, and has no "event" field.
    server.publish("jobs", json!(null)).await;
    let event = sse.next().await.expect("event");
    assert_eq!(event.event, "message");
    assert!(event.data.get("event").is_none());
    assert_eq!(event.data["offset"], 2);
}

#[tokio::test]
async fn sse_path_form_serves_one_channel() {
    let server = TestServer::start(&[]);
    let mut sse = common::SseClient::connect(&server.http, &format!("{}/sse/chat:room-1", server.base), None).await;
    server.publish("chat:room-1", json!("hi")).await;
    assert_eq!(sse.next().await.expect("event").data["data"], "hi");
}

#[tokio::test]
async fn long_poll_answers_when_a_message_arrives() {
    let server = TestServer::start(&[]);
    let base = server.base.clone();
    let waiting = tokio::spawn(async move {
        let response = reqwest::get(format!("{base}/poll?channel=jobs&timeout=20")).await.unwrap();
        let cache = response.headers()["cache-control"].to_str().unwrap().to_string();
        (cache, response.json::<serde_json::Value>().await.unwrap())
    });
    server.wait_for_connections("poll", 1).await;
    let published = server.publish_body(json!({"channel":"jobs","data":{"n":1},"event":"e"})).await;
    let (cache, body) = tokio::time::timeout(common::WAIT, waiting).await.expect("answered in time").unwrap();
    assert_eq!(cache, "no-store");
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_envelope(&messages[0], "jobs", 1, published["epoch"].as_str().unwrap(), &json!({"n":1}));
    assert_eq!(messages[0]["event"], "e");
    assert_eq!(body["resets"], json!([]));
}

#[tokio::test]
async fn empty_long_poll_times_out_with_a_cursor_that_loses_nothing() {
    let server = TestServer::start(&[]);
    server.publish("jobs", json!(1)).await;
    let (status, body) = server.poll("channel=jobs&timeout=1").await;
    assert_eq!((status, body["messages"].clone()), (200, json!([])));
    let cursor = body["cursor"].as_str().unwrap().to_string();
    // Published between two polls: the next poll with the cursor gets it.
    server.publish("jobs", json!(2)).await;
    let (_, body) = server.poll(&format!("channel=jobs&cursor={cursor}")).await;
    let data: Vec<_> = body["messages"].as_array().unwrap().iter().map(|m| m["data"].clone()).collect();
    assert_eq!(data, [json!(2)]);
}

#[tokio::test]
async fn websocket_publish_history_and_unsubscribe() {
    let server = TestServer::start(&["anonymous_publish=true"]);
    let mut ws = server.ws().await;
    ws.subscribe("room", None).await;
    let reply = ws.request(json!({"op":"publish","channel":"room","data":{"m":"hi"}})).await;
    assert_eq!(reply["result"]["offset"], 1);
    let env = ws.next().await.unwrap();
    assert_eq!(env["data"], json!({"m":"hi"}));
    let reply = ws.request(json!({"op":"history","channel":"room","limit":10})).await;
    assert_eq!(reply["result"]["messages"][0]["data"], json!({"m":"hi"}));
    assert_eq!(reply["result"]["offset"], 1);
    let reply = ws.request(json!({"op":"unsubscribe","channel":"room"})).await;
    assert!(reply.get("result").is_some(), "{reply}");
    server.publish("room", json!("after")).await;
    let reply = ws.request(json!({"op":"history","channel":"room","since":1})).await;
    assert_eq!(reply["result"]["messages"][0]["data"], "after");
    assert!(ws.pending.is_empty(), "no message after unsubscribe: {:?}", ws.pending);
}
