//! Connection tokens on every transport: what a token grants, what a bad one gets, and a
//! WebSocket refreshing its token before it expires.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use std::time::Duration;

use common::{TestServer, token, ws_handshake};
use serde_json::{Value, json};

/// A server whose `private` namespace is visible only to tokens that grant it.
fn private_server(extra: &[&str]) -> TestServer {
    let mut settings = vec!["namespaces={private={anonymous_subscribe=false}}"];
    settings.extend_from_slice(extra);
    TestServer::with_tokens(&settings)
}

/// (status, error code) of a `GET` on `path`, with `token` as a bearer token when given.
async fn get_status(server: &TestServer, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = server.http.get(format!("{}{path}", server.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"]["code"].clone())
}

#[tokio::test]
async fn a_token_grants_its_channels_and_nothing_else_on_every_transport() {
    let server = private_server(&[]);
    let ada = token("ada", 3600, &["private:ada"], &[]);

    // SSE: the header or `?token=` (EventSource cannot set headers).
    let mut sse = server.sse(&format!("channel=private:ada&token={ada}"), None).await;
    assert_eq!(get_status(&server, "/sse?channel=private:bob", Some(&ada)).await, (403, json!("forbidden")));
    assert_eq!(get_status(&server, "/sse?channel=private:ada", None).await, (401, json!("unauthorized")));
    // One refused channel refuses the whole stream.
    let mixed = format!("/sse?channel=private:ada&channel=private:bob&token={ada}");
    assert_eq!(get_status(&server, &mixed, None).await.0, 403);

    // Long polling.
    let (status, body) = server.poll(&format!("channel=private:ada&timeout=0&token={ada}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get_status(&server, "/poll?channel=private:bob&timeout=0", Some(&ada)).await, (403, json!("forbidden")));
    assert_eq!(get_status(&server, "/poll?channel=private:ada&timeout=0", None).await, (401, json!("unauthorized")));
    // The header wins over `?token=`, on both streams that take a query token.
    let good_query = format!("channel=private:ada&timeout=0&token={ada}");
    assert_eq!(get_status(&server, "/poll?channel=private:ada&timeout=0&token=x.y.z", Some(&ada)).await.0, 200);
    for path in [format!("/poll?{good_query}"), format!("/sse?{good_query}")] {
        assert_eq!(get_status(&server, &path, Some("x.y.z")).await, (401, json!("invalid_token")), "{path}");
    }

    // History follows the subscribe permission.
    assert_eq!(get_status(&server, "/history/private:ada", Some(&ada)).await.0, 200);
    assert_eq!(get_status(&server, "/history/private:bob", Some(&ada)).await, (403, json!("forbidden")));

    // WebSocket: the token in the URL, or later with `auth`.
    let mut ws = common::WsClient::connect(&format!("{}?token={ada}", server.ws_url())).await;
    ws.subscribe("private:ada", None).await;
    let refused = ws.request(json!({"op":"subscribe","channel":"private:bob"})).await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    let mut anonymous = server.ws().await;
    let refused = anonymous.request(json!({"op":"subscribe","channel":"private:ada"})).await;
    assert_eq!(refused["error"]["code"], "unauthorized", "{refused}");
    let auth = anonymous.request(json!({"op":"auth","token": ada})).await;
    assert_eq!(auth["result"]["user"], "ada", "{auth}");
    anonymous.subscribe("private:ada", None).await;

    // Public channels stay open to everyone; the granted subscribers all get the message.
    assert_eq!(server.poll("channel=news&timeout=0").await.0, 200);
    server.publish("private:ada", json!("for ada")).await;
    assert_eq!(sse.next().await.unwrap().data["data"], "for ada");
    assert_eq!(ws.next().await.unwrap()["data"], "for ada");
    assert_eq!(anonymous.next().await.unwrap()["data"], "for ada");
}

#[tokio::test]
async fn forged_expired_and_wrongly_signed_tokens_are_refused_everywhere() {
    let server = private_server(&[]);
    let expired = token("ada", -10, &["*"], &["*"]);
    let valid = token("ada", 3600, &["*"], &["*"]);
    let mut forged = valid.clone();
    let dot = forged.rfind('.').unwrap();
    forged.replace_range(dot + 1..dot + 5, "AAAA");
    let rs256 = {
        // A token whose header claims another algorithm is refused, whatever its signature.
        let mut parts: Vec<&str> = valid.split('.').collect();
        let header = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"; // {"alg":"RS256","typ":"JWT"}
        parts[0] = header;
        parts.join(".")
    };
    let cases = [
        (expired.as_str(), "token_expired"),
        (forged.as_str(), "invalid_token"),
        (rs256.as_str(), "invalid_token"),
        ("garbage", "invalid_token"),
    ];
    for (bad, code) in cases {
        for path in ["/sse?channel=news", "/poll?channel=news&timeout=0", "/history/news"] {
            assert_eq!(get_status(&server, path, Some(bad)).await, (401, json!(code)), "{path} {code}");
            let in_query = format!("{path}&token={bad}").replacen("/news&", "/news?", 1);
            assert_eq!(get_status(&server, &in_query, None).await, (401, json!(code)), "{in_query}");
        }
        let publish = server.http.post(format!("{}/publish", server.base)).bearer_auth(bad);
        let response = publish.json(&json!({"channel":"news","data":1})).send().await.unwrap();
        assert_eq!(response.status(), 401, "{code}");
        // The WebSocket upgrade is refused with the same JSON error.
        let refused = ws_handshake(&format!("{}?token={bad}", server.ws_url()), &[]).await.err().expect("refused");
        assert_eq!((refused.0, refused.1["error"]["code"].clone()), (401, json!(code)));
        let bearer = format!("Bearer {bad}");
        let refused = ws_handshake(&server.ws_url(), &[("authorization", &bearer)]).await.err().expect("refused");
        assert_eq!(refused.0, 401);
    }
    // A bad token in `auth` gets an error reply, then a close in the no-reconnect range.
    for (bad, close) in [(forged.as_str(), 4501), (expired.as_str(), 4502)] {
        let mut ws = server.ws().await;
        ws.send(json!({"id": 1, "op": "auth", "token": bad})).await;
        let reply = ws.next().await.unwrap();
        assert_eq!(reply["id"], 1);
        assert!(reply["error"]["code"].as_str().is_some_and(|c| c.contains("token")), "{reply}");
        let (push, code) = ws.disconnect().await;
        assert_eq!(code, Some(close));
        assert_eq!(push.unwrap()["reconnect"], false);
    }
}

#[tokio::test]
async fn a_server_without_token_keys_refuses_every_token_but_serves_anonymous_clients() {
    let server = TestServer::start(&[]);
    let t = token("ada", 3600, &["*"], &["*"]);
    assert_eq!(get_status(&server, "/poll?channel=news&timeout=0", Some(&t)).await, (401, json!("invalid_token")));
    assert_eq!(get_status(&server, "/poll?channel=news&timeout=0", None).await.0, 200);
}

#[tokio::test]
async fn anonymous_publish_is_refused_by_default_and_tokens_publish_where_granted() {
    let server = TestServer::with_tokens(&[]);
    let mut watcher = server.sse("channel=chat:1", None).await;
    let post = |token: Option<String>, channel: &str| {
        let mut request = server.http.post(format!("{}/publish", server.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.json(&json!({"channel": channel, "data": channel})).send()
    };
    let refused = post(None, "chat:1").await.unwrap();
    assert_eq!(refused.status(), 401);
    let writer = token("ada", 3600, &[], &["chat:*"]);
    assert_eq!(post(Some(writer.clone()), "chat:1").await.unwrap().status(), 200);
    assert_eq!(post(Some(writer.clone()), "news").await.unwrap().status(), 403);

    let mut ws = server.ws().await;
    let refused = ws.request(json!({"op":"publish","channel":"chat:1","data":"anonymous"})).await;
    assert_eq!(refused["error"]["code"], "unauthorized", "{refused}");
    ws.request(json!({"op":"auth","token": writer})).await;
    let ok = ws.request(json!({"op":"publish","channel":"chat:1","data":"ws"})).await;
    assert_eq!(ok["result"]["offset"], 2, "{ok}");
    let refused = ws.request(json!({"op":"publish","channel":"news","data":"no"})).await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");

    // Exactly the two allowed publishes arrived.
    assert_eq!(watcher.next().await.unwrap().data["data"], "chat:1");
    assert_eq!(watcher.next().await.unwrap().data["data"], "ws");
    let history = server.api_get("/api/channels/chat:1/history").await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_websocket_refreshes_its_token_and_stays_while_an_unrefreshed_one_is_closed() {
    let server = TestServer::with_tokens(&["heartbeat_secs=1", "ws_idle_timeout_secs=30"]);
    let short = token("ada", 2, &[], &[]);
    let mut refreshed = common::WsClient::connect(&format!("{}?token={short}", server.ws_url())).await;
    let mut lapsed = common::WsClient::connect(&format!("{}?token={short}", server.ws_url())).await;
    refreshed.subscribe("news", None).await;
    lapsed.subscribe("news", None).await;
    let fresh = token("ada", 3600, &[], &[]);
    let reply = refreshed.request(json!({"op":"auth","token": fresh})).await;
    assert_eq!(reply["result"]["user"], "ada", "{reply}");
    // Another user's token cannot take the connection over.
    let other = refreshed.request(json!({"op":"auth","token": token("bob", 3600, &[], &[])})).await;
    assert_eq!(other["error"]["code"], "forbidden", "{other}");

    // The lapsed connection is told to reconnect (with a fresh token) once its token expires.
    let (push, code) = lapsed.disconnect().await;
    assert_eq!(code, Some(4005));
    assert_eq!(push.unwrap()["reconnect"], true);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.publish("news", json!("still here")).await;
    assert_eq!(refreshed.next().await.unwrap()["data"], "still here");
}

#[tokio::test]
async fn an_sse_stream_ends_when_its_token_expires() {
    let server = TestServer::with_tokens(&["heartbeat_secs=1"]);
    let short = token("ada", 2, &[], &[]);
    let mut sse = server.sse(&format!("channel=news&token={short}"), None).await;
    let started = std::time::Instant::now();
    assert!(sse.next().await.is_none(), "the stream ends");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Reconnecting with the expired token is refused.
    assert_eq!(get_status(&server, &format!("/sse?channel=news&token={short}"), None).await.0, 401);
}
