//! Bad input gets the documented error — a status with `{"error":{"code","message"}}`, or a
//! WebSocket error reply — and the server keeps serving everyone else.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use common::{API_KEY, TestServer};
use serde_json::{Value, json};

async fn expect_error(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status().as_u16(), status, "status for {code}");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

#[tokio::test]
async fn api_rejects_bad_requests_and_others_keep_receiving() {
    let server = TestServer::start(&["max_message_bytes=1000"]);
    let mut bystander = server.sse("channel=calm", None).await;
    let http = &server.http;
    let url = |p: &str| format!("{}{p}", server.base);
    let post = |body: &'static str| http.post(url("/api/publish")).bearer_auth(API_KEY).body(body).send();

    expect_error(post("{").await.unwrap(), 400, "invalid_json").await;
    expect_error(post("just text").await.unwrap(), 400, "invalid_json").await;
    expect_error(post(r#"{"channel":"a"}"#).await.unwrap(), 400, "bad_request").await;
    expect_error(post(r#"{"channel":"a b","data":1}"#).await.unwrap(), 400, "invalid_channel").await;
    expect_error(post(r#"{"channel":"a","data":1,"event":"x\ny"}"#).await.unwrap(), 400, "invalid_event").await;
    let long = json!({ "channel": "x".repeat(256), "data": 1 });
    let r = http.post(url("/api/publish")).bearer_auth(API_KEY).json(&long).send().await.unwrap();
    expect_error(r, 400, "invalid_channel").await;
    let big = json!({ "channel": "a", "data": "x".repeat(2000) });
    let r = http.post(url("/api/publish")).bearer_auth(API_KEY).json(&big).send().await.unwrap();
    expect_error(r, 413, "message_too_large").await;
    let huge = json!({ "channel": "a", "data": "x".repeat(200_000) });
    // The server answers before reading such a body and closes that connection: use its own.
    let r = reqwest::Client::new().post(url("/api/publish")).bearer_auth(API_KEY).json(&huge).send().await.unwrap();
    expect_error(r, 413, "message_too_large").await;
    let r = http
        .post(url("/api/publish/ok"))
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body("{nope")
        .send();
    expect_error(r.await.unwrap(), 400, "invalid_json").await;
    let r = http.post(url("/api/broadcast")).bearer_auth(API_KEY).json(&json!({"channels":[],"data":1})).send();
    expect_error(r.await.unwrap(), 400, "too_many_channels").await;

    expect_error(http.get(url("/sse?channel=bad%20name")).send().await.unwrap(), 400, "invalid_channel").await;
    expect_error(http.get(url("/sse")).send().await.unwrap(), 400, "bad_request").await;
    expect_error(http.get(url("/poll?channel=a&timeout=soon")).send().await.unwrap(), 400, "bad_request").await;
    expect_error(http.get(url("/ws")).send().await.unwrap(), 400, "bad_request").await;
    expect_error(http.get(url("/nope")).send().await.unwrap(), 404, "not_found").await;
    expect_error(
        http.delete(url("/api/publish")).bearer_auth(API_KEY).send().await.unwrap(),
        405,
        "method_not_allowed",
    )
    .await;

    server.publish("calm", json!("still here")).await;
    assert_eq!(bystander.next().await.unwrap().data["data"], "still here");
}

#[tokio::test]
async fn every_api_route_wants_the_key() {
    let server = TestServer::start(&[]);
    let routes: [(&str, &str); 8] = [
        ("POST", "/api/publish"),
        ("POST", "/api/publish/c"),
        ("POST", "/api/broadcast"),
        ("GET", "/api/channels"),
        ("GET", "/api/channels/c/history"),
        ("GET", "/api/channels/c/presence"),
        ("POST", "/api/disconnect"),
        ("GET", "/api/info"),
    ];
    for (method, path) in routes {
        let url = format!("{}{path}", server.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let body = r#"{"channel":"c","channels":["c"],"data":1}"#;
        let none = server.http.request(method.clone(), &url).body(body).send().await.unwrap();
        expect_error(none, 401, "unauthorized").await;
        let wrong = server.http.request(method.clone(), &url).bearer_auth("nope").body(body).send().await.unwrap();
        expect_error(wrong, 401, "unauthorized").await;
        let query = server.http.request(method, format!("{url}?api_key={API_KEY}")).body(body).send().await.unwrap();
        expect_error(query, 401, "unauthorized").await;
    }
    // Both header forms work.
    let r = server.http.get(format!("{}/api/info", server.base)).header("X-API-Key", API_KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn websocket_answers_bad_commands_and_keeps_the_connection() {
    let server = TestServer::start(&["max_message_bytes=1000", "anonymous_publish=true"]);
    let mut ws = server.ws().await;
    ws.send_raw("{").await;
    assert_eq!(ws.next().await.unwrap()["error"]["code"], "invalid_json");
    ws.send_raw("not json at all").await;
    assert_eq!(ws.next().await.unwrap()["error"]["code"], "invalid_json");
    let cases = [
        (json!({"op":"dance"}), "unknown_op"),
        (json!({"op":"subscribe"}), "bad_request"),
        (json!({"op":"subscribe","channel":"a b"}), "invalid_channel"),
        (json!({"op":"subscribe","channel":"x".repeat(256)}), "invalid_channel"),
        (json!({"op":"subscribe","channel":"c","since":{"epoch":"e"}}), "invalid_cursor"),
        (json!({"op":"subscribe","channel":"c","since":"e~1"}), "invalid_cursor"),
        (json!({"op":"publish","channel":"c","data":"x".repeat(1500)}), "message_too_large"),
        (json!({"op":"unsubscribe","channel":"never"}), "not_subscribed"),
    ];
    for (command, code) in cases {
        let reply = ws.request(command.clone()).await;
        assert_eq!(reply["error"]["code"], code, "{command} -> {reply}");
        assert!(reply["id"].is_u64(), "the reply carries the command id: {reply}");
    }
    ws.subscribe("c", None).await;
    let again = ws.request(json!({"op":"subscribe","channel":"c"})).await;
    assert_eq!(again["error"]["code"], "already_subscribed");
    server.publish("c", json!("fine")).await;
    assert_eq!(ws.next().await.unwrap()["data"], "fine");
}

#[tokio::test]
async fn websocket_frame_far_over_the_limit_closes_with_a_no_reconnect_code() {
    let server = TestServer::start(&["max_message_bytes=1000"]);
    let mut bystander = server.ws().await;
    bystander.subscribe("c", None).await;
    let mut ws = server.ws().await;
    ws.send_raw(&format!(r#"{{"op":"publish","channel":"c","data":"{}"}}"#, "x".repeat(100_000))).await;
    let push = ws.next().await.expect("a disconnect push");
    assert_eq!((push["type"].clone(), push["reconnect"].clone()), (json!("disconnect"), json!(false)), "{push}");
    assert!(push["code"].as_u64().is_some_and(|c| (4500..5000).contains(&c)));
    server.publish("c", json!("ok")).await;
    assert_eq!(bystander.next().await.unwrap()["data"], "ok");
}
