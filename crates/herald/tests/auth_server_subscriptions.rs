//! Server-side subscriptions (issue 21, item 3), black-box: a token's `subs` claim subscribes
//! the connection to those channels without asking — `user:42` for the user's own
//! notifications — over all three transports, with the same recovery as any subscription.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use common::{TestServer, WsClient, token_with_subs};
use serde_json::json;

/// A server where nothing is open to anonymous clients: only tokens grant channels.
fn server() -> TestServer {
    TestServer::with_tokens(&["anonymous_subscribe=false"])
}

#[tokio::test]
async fn a_websocket_is_subscribed_to_its_tokens_channels_at_connect() {
    let server = server();
    let token = token_with_subs("ada", 3600, &[], &[], &["user:ada", "team:7"]);
    let mut ws = WsClient::connect(&format!("{}?token={token}", server.ws_url())).await;
    let mut confirmed = Vec::new();
    for _ in 0..2 {
        let reply = ws.next().await.unwrap();
        assert_eq!(reply["id"], json!(null), "no command asked for it: {reply}");
        confirmed.push(reply["result"]["channel"].as_str().unwrap().to_string());
    }
    confirmed.sort();
    assert_eq!(confirmed, ["team:7", "user:ada"]);
    let published = server.publish("user:ada", json!("a personal alert")).await;
    let message = ws.next().await.unwrap();
    assert_eq!((message["channel"].as_str(), &message["data"]), (Some("user:ada"), &json!("a personal alert")));

    // Coming back with the cursor of what it saw: what it missed, then live.
    drop(ws);
    server.publish("user:ada", json!("while away")).await;
    let url = format!("{}?token={token}&cursor={}", server.ws_url(), cursor_at("user:ada", &published));
    let mut again = WsClient::connect(&url).await;
    let mut got = Vec::new();
    while got.len() < 3 {
        got.push(again.next().await.unwrap());
    }
    let recovered: Vec<_> = got.iter().filter(|f| f["type"] == "message").map(|f| f["data"].clone()).collect();
    assert_eq!(recovered, [json!("while away")], "{got:?}");
    let reply = got.iter().find(|f| f["result"]["channel"] == "user:ada").unwrap();
    assert_eq!(reply["result"]["recovered"], true, "{reply}");

    // A client that subscribes to a server-side channel itself (as a client library does on
    // every connect) takes it over from its own position.
    let taken = again.request(json!({ "op": "subscribe", "channel": "user:ada", "since": { "epoch": published["epoch"], "offset": published["offset"] } })).await;
    assert_eq!(
        (taken["result"]["channel"].as_str(), taken["result"]["recovered"].as_bool()),
        (Some("user:ada"), Some(true)),
        "{taken}"
    );
    assert_eq!(again.next().await.unwrap()["data"], "while away", "recovered from the client's position");
    // The claim grants nothing else.
    let refused = again.request(json!({ "op": "subscribe", "channel": "user:bob" })).await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
}

/// The cursor (as SSE and long polls carry it) of a client that saw `published` in `channel`.
fn cursor_at(channel: &str, published: &serde_json::Value) -> String {
    let position = herald_core::StreamPosition {
        epoch: published["epoch"].as_str().unwrap().into(),
        offset: published["offset"].as_u64().unwrap(),
    };
    let mut cursor = herald_core::Cursor::with_capacity(1);
    cursor.set(&herald_core::ChannelName::new(channel).unwrap(), position);
    cursor.to_string()
}

#[tokio::test]
async fn sse_and_long_polls_need_no_channel_of_their_own() {
    let server = server();
    let token = token_with_subs("bob", 3600, &[], &[], &["user:bob"]);
    let mut sse = server.sse(&format!("token={token}"), None).await;
    server.wait_for_connections("sse", 1).await;
    server.publish("user:bob", json!({ "n": 1 })).await;
    let event = sse.next().await.unwrap();
    assert_eq!((event.data["channel"].as_str(), &event.data["data"]), (Some("user:bob"), &json!({ "n": 1 })));

    let (status, first) = server.poll(&format!("token={token}&timeout=0")).await;
    assert_eq!(status, 200, "{first}");
    server.publish("user:bob", json!({ "n": 2 })).await;
    let cursor = first["cursor"].as_str().unwrap();
    let (_, next) = server.poll(&format!("token={token}&timeout=5&cursor={cursor}")).await;
    let data: Vec<_> = next["messages"].as_array().unwrap().iter().map(|m| m["data"].clone()).collect();
    assert_eq!(data, [json!({ "n": 2 })], "{next}");

    // Without a token (or a channel) there is still nothing to stream.
    let (status, refused) = server.poll("timeout=0").await;
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("bad_request")));
}
