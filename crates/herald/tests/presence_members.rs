//! Presence: one entry per connection with the user id and `info`, over the API and the
//! WebSocket `presence` op, and `join` / `leave` pushes where the namespace turns them on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use common::{TestServer, WsClient, token};
use serde_json::{Value, json};

fn users(presence: &Value) -> Vec<String> {
    let mut users: Vec<String> =
        presence["members"].as_array().unwrap().iter().map(|m| m["user"].as_str().unwrap().to_string()).collect();
    users.sort();
    users
}

#[tokio::test]
async fn presence_lists_each_connection_and_join_leave_pushes_follow_it() {
    let server = TestServer::with_tokens(&["namespaces={room={presence=true,join_leave=true},lobby={presence=true}}"]);
    let connect = |user: &str| {
        let url = format!("{}?token={}", server.ws_url(), token(user, 3600, &[], &[]));
        async move { WsClient::connect(&url).await }
    };
    let mut ada = connect("ada").await;
    ada.subscribe("room:1", None).await;
    let mut bob = connect("bob").await;
    bob.subscribe("room:1", None).await;
    let join = ada.next().await.unwrap();
    assert_eq!((join["type"].as_str(), join["user"].as_str()), (Some("join"), Some("bob")), "{join}");
    assert_eq!(join["info"], json!({ "name": "bob" }));
    // A second connection of the same user is its own entry. Its join reaches ada after
    // bob_again's subscribe reply (pushes to others leave the channel's lock first), so it is
    // awaited here: pushes about different connections have no order between them.
    let mut bob_again = connect("bob").await;
    bob_again.subscribe("room:1", None).await;
    let joined_again = ada.next().await.unwrap();
    assert_eq!(
        (joined_again["type"].as_str(), joined_again["user"].as_str()),
        (Some("join"), Some("bob")),
        "{joined_again}"
    );
    assert_ne!(joined_again["client"], join["client"], "bob's second connection: {joined_again}");

    let listed = server.api_get("/api/channels/room:1/presence").await;
    assert_eq!(users(&listed), ["ada", "bob", "bob"], "{listed}");
    let over_ws = ada.request(json!({"op":"presence","channel":"room:1"})).await;
    assert_eq!(users(&over_ws["result"]), ["ada", "bob", "bob"], "{over_ws}");

    bob.request(json!({"op":"unsubscribe","channel":"room:1"})).await;
    let leave = ada.next().await.unwrap();
    assert_eq!((leave["type"].as_str(), leave["user"].as_str()), (Some("leave"), Some("bob")), "{leave}");
    assert_eq!(leave["client"], join["client"], "the unsubscribed connection leaves: {leave}");
    drop(bob_again);
    let leave = ada.next().await.unwrap();
    assert_eq!(leave["type"], "leave", "a closed connection leaves: {leave}");
    assert_eq!(users(&server.api_get("/api/channels/room:1/presence").await), ["ada"]);

    // Presence without join/leave: listed, but nobody is pushed to.
    ada.subscribe("lobby:1", None).await;
    let mut carol = connect("carol").await;
    carol.subscribe("lobby:1", None).await;
    assert_eq!(users(&server.api_get("/api/channels/lobby:1/presence").await), ["ada", "carol"]);
    server.publish("lobby:1", json!("only this")).await;
    assert_eq!(ada.next().await.unwrap()["data"], "only this", "no join push came first");
}

#[tokio::test]
async fn presence_is_refused_where_the_namespace_has_it_off_or_the_channel_is_not_granted() {
    let server = TestServer::with_tokens(&["namespaces={secret={presence=true,anonymous_subscribe=false}}"]);
    let mut ws = server.ws().await;
    let off = ws.request(json!({"op":"presence","channel":"news"})).await;
    assert_eq!(off["error"]["code"], "not_available", "{off}");
    let denied = ws.request(json!({"op":"presence","channel":"secret:1"})).await;
    assert_eq!(denied["error"]["code"], "unauthorized", "{denied}");
    let response = server.http.get(format!("{}/api/channels/news/presence", server.base)).bearer_auth(common::API_KEY);
    assert_eq!(response.send().await.unwrap().status(), 501);
    // The presence API needs the API key.
    let response = server.http.get(format!("{}/api/channels/secret:1/presence", server.base)).send().await.unwrap();
    assert_eq!(response.status(), 401);
}
