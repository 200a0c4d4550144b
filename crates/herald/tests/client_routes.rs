//! The routes browsers and apps use besides the streams (no API key): `POST /publish`,
//! `GET /history/{channel}` and the client bundle at `/herald.js`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use common::TestServer;
use serde_json::{Value, json};

#[tokio::test]
async fn clients_publish_without_the_api_key_and_subscribers_get_it() {
    let server = TestServer::start(&["anonymous_publish=true"]);
    let mut sse = server.sse("channel=room", None).await;
    let response = server
        .http
        .post(format!("{}/publish", server.base))
        .json(&json!({ "channel": "room", "data": { "text": "hi" }, "event": "chat" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.unwrap();
    assert_eq!((reply["channel"].as_str(), reply["offset"].as_u64()), (Some("room"), Some(1)));
    let event = sse.next().await.unwrap();
    assert_eq!((event.event.as_str(), &event.data["data"]), ("chat", &json!({ "text": "hi" })));
}

#[tokio::test]
async fn client_publish_refuses_bad_input_with_json_errors() {
    let server = TestServer::start(&["max_message_bytes=1024", "anonymous_publish=true"]);
    let post = |body: String| server.http.post(format!("{}/publish", server.base)).body(body).send();
    let cases = [
        ("{not json".to_string(), 400, "invalid_json"),
        (json!({ "channel": "bad name!", "data": 1 }).to_string(), 400, "invalid_channel"),
        (json!({ "channel": "room" }).to_string(), 400, "bad_request"),
        (json!({ "channel": "room", "data": "x".repeat(2000) }).to_string(), 413, "message_too_large"),
    ];
    for (body, status, code) in cases {
        let response = post(body.clone()).await.unwrap();
        assert_eq!(response.status(), status, "{body:.60}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{body:.60}: {error}");
    }
}

#[tokio::test]
async fn clients_read_history_without_the_api_key() {
    let server = TestServer::start(&[]);
    for i in 1..=4 {
        server.publish("feed", json!(i)).await;
    }
    let history: Value =
        server.http.get(format!("{}/history/feed?since=2", server.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(history["offset"], 4);
    let data: Vec<Value> = history["messages"].as_array().unwrap().iter().map(|m| m["data"].clone()).collect();
    assert_eq!(data, [json!(3), json!(4)]);
    let bad = server.http.get(format!("{}/history/bad%20name", server.base)).send().await.unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn the_client_bundle_is_served_as_a_module() {
    let server = TestServer::start(&[]);
    let response = server.http.get(format!("{}/herald.js", server.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    let text = response.text().await.unwrap();
    let exports = &text[text.rfind("export {").expect("an ES module export")..];
    assert!(exports.contains("Herald,") && exports.contains("HeraldError"), "exports the client: {exports}");
}
