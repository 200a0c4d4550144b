//! The server API's happy paths (docs/protocol.md §3): publish forms, idempotency, broadcast,
//! history, the channel list and the node's figures.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use common::{API_KEY, TestServer};
use serde_json::{Value, json};

#[tokio::test]
async fn idempotent_publish_is_delivered_once() {
    let server = TestServer::start(&[]);
    let mut sse = server.sse("channel=orders", None).await;
    let body = json!({ "channel": "orders", "data": { "id": 7 }, "idempotency_key": "order-7" });
    let first = server.publish_body(body.clone()).await;
    let retry = server.publish_body(body).await;
    assert_eq!(first, retry, "a retry returns the original result");
    let other = server.publish_body(json!({ "channel": "orders", "data": 8, "idempotency_key": "order-8" })).await;
    assert_eq!(other["offset"], 2);
    assert_eq!(sse.next().await.unwrap().data["data"], json!({ "id": 7 }));
    assert_eq!(sse.next().await.unwrap().data["data"], 8, "the retry was not delivered");
}

#[tokio::test]
async fn publish_to_path_takes_json_or_text() {
    let server = TestServer::start(&[]);
    let post = |ct: &'static str, body: &'static str| {
        server
            .http
            .post(format!("{}/api/publish/notes", server.base))
            .header("X-API-Key", API_KEY)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    assert_eq!(post("application/json", r#"{"a":[1,2]}"#).await.unwrap().status(), 200);
    assert_eq!(post("text/plain", "just words").await.unwrap().status(), 200);
    let history = server.api_get("/api/channels/notes/history").await;
    let data: Vec<Value> = history["messages"].as_array().unwrap().iter().map(|m| m["data"].clone()).collect();
    assert_eq!(data, [json!({"a":[1,2]}), json!("just words")]);
}

#[tokio::test]
async fn broadcast_answers_per_channel() {
    let server = TestServer::start(&[]);
    let r = server
        .http
        .post(format!("{}/api/broadcast", server.base))
        .bearer_auth(API_KEY)
        .json(&json!({ "channels": ["a", "b", "bad name"], "data": "x", "event": "e" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let results = body["results"].as_array().unwrap();
    assert_eq!((results[0]["channel"].clone(), results[0]["offset"].clone()), (json!("a"), json!(1)));
    assert_eq!((results[1]["channel"].clone(), results[1]["offset"].clone()), (json!("b"), json!(1)));
    assert_eq!(results[2]["error"]["code"], "invalid_channel");
    assert_eq!(server.api_get("/api/channels/b/history").await["messages"][0]["event"], "e");
}

#[tokio::test]
async fn history_limit_and_since() {
    let server = TestServer::start(&[]);
    for i in 1..=5 {
        server.publish("h", json!(i)).await;
    }
    let body = server.api_get("/api/channels/h/history?limit=2").await;
    assert_eq!((body["channel"].clone(), body["offset"].clone()), (json!("h"), json!(5)));
    let offsets =
        |b: &Value| b["messages"].as_array().unwrap().iter().map(|m| m["offset"].as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!(offsets(&body), [4, 5]);
    assert_eq!(offsets(&server.api_get("/api/channels/h/history?since=2").await), [3, 4, 5]);
}

#[tokio::test]
async fn channels_and_info_count_what_is_there() {
    let server = TestServer::start(&[]);
    let mut ws = server.ws().await;
    ws.subscribe("x", None).await;
    let _sse = server.sse("channel=x&channel=y", None).await;
    server.publish("x", json!(1)).await;
    ws.next().await.unwrap();
    let channels = server.api_get("/api/channels").await;
    let x = channels["channels"].as_array().unwrap().iter().find(|c| c["channel"] == "x").unwrap().clone();
    assert_eq!((x["subscribers"].clone(), x["offset"].clone()), (json!(2), json!(1)));
    let info = server.api_get("/api/info").await;
    assert_eq!(info["connections"], json!({ "ws": 1, "sse": 1, "poll": 0, "total": 2 }));
    assert_eq!(info["channels"], 2);
    assert_eq!(info["messages"], json!({ "published": 1, "delivered": 2 }));
}
