//! Backend hooks (issue 21, item 2), black-box: a real HTTP endpoint in the test decides who
//! connects (from the session cookie, no JWT), who may subscribe where, and what a client's
//! publish broadcasts — over all three transports, cached for long polls, refused by default
//! when the endpoint fails.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use common::{SseClient, TestServer, receiver::Receiver, ws_handshake};
use serde_json::{Value, json};

/// The application's endpoint: `/connect` knows the session cookie `session=ada`; `/subscribe`
/// allows `open:*`; `/publish` refuses "spam" and wraps the rest.
async fn backend() -> Receiver {
    Receiver::start_with(|request| {
        let question: Value = serde_json::from_slice(&request.body).unwrap();
        let answer = match request.path.as_str() {
            "/connect" if question["headers"]["cookie"] == "session=ada" => {
                json!({ "allow": true, "user": "ada", "info": { "name": "Ada" }, "channels": ["user:ada"] })
            }
            "/connect" => json!({ "allow": false, "reason": "no session" }),
            "/subscribe" => json!({ "allow": question["channel"].as_str().unwrap().starts_with("open:") }),
            "/publish" if question["data"] == "spam" => json!({ "allow": false, "reason": "looks like spam" }),
            "/publish" => json!({ "allow": true, "data": { "clean": question["data"] } }),
            _ => return (404, String::new()),
        };
        (200, answer.to_string())
    })
    .await
}

/// The `[hooks]` setting naming the endpoint's routes (`routes`: connect, subscribe, publish).
fn hooks(backend: &Receiver, routes: &[&str]) -> String {
    let base = backend.url.trim_end_matches("/hooks");
    let entries: Vec<String> = routes.iter().map(|r| format!("{r}=\"{base}/{r}\"")).collect();
    format!("hooks={{{}}}", entries.join(","))
}

fn client_with_cookie(cookie: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("cookie", cookie.parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

#[tokio::test]
async fn the_connect_hook_decides_who_connects_from_the_cookie_on_every_transport() {
    let backend = backend().await;
    let server = TestServer::start(&[hooks(&backend, &["connect"]).as_str(), "anonymous_subscribe=false"]);

    // WebSocket: the hook's user, subscribed to the hook's channels without asking.
    let mut ws = ws_handshake(&server.ws_url(), &[("cookie", "session=ada")]).await.unwrap();
    let reply = ws.next().await.unwrap();
    assert_eq!((reply["id"].clone(), reply["result"]["channel"].as_str()), (json!(null), Some("user:ada")));
    server.publish("user:ada", json!("for ada")).await;
    assert_eq!(ws.next().await.unwrap()["data"], "for ada");
    let refused = ws_handshake(&server.ws_url(), &[("cookie", "session=eve")]).await.err().unwrap();
    assert_eq!((refused.0, refused.1["error"]["code"].as_str()), (403, Some("forbidden")));
    assert_eq!(refused.1["error"]["message"], "no session");

    // SSE: the hook's channels stand for the query's.
    let ada = client_with_cookie("session=ada");
    let mut sse = SseClient::connect(&ada, &format!("{}/sse", server.base), None).await;
    server.wait_for_connections("sse", 1).await;
    server.publish("user:ada", json!("again")).await;
    assert_eq!(sse.next().await.unwrap().data["data"], "again");

    // Long polls: the answer for this cookie is cached (`cache_secs`), not asked per poll.
    let asked_before = backend.requests().len();
    for _ in 0..5 {
        let r = ada.get(format!("{}/poll?timeout=0", server.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert!(backend.requests().len() <= asked_before + 1, "at most one connect question for five polls");
    let eve = client_with_cookie("session=eve");
    let r = eve.get(format!("{}/poll?channel=user:ada&timeout=0", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn the_subscribe_hook_decides_each_channel() {
    let backend = backend().await;
    let server = TestServer::start(&[hooks(&backend, &["subscribe"]).as_str(), "anonymous_subscribe=false"]);
    let mut ws = common::WsClient::connect(&server.ws_url()).await;
    let allowed = ws.request(json!({ "op": "subscribe", "channel": "open:1" })).await;
    assert_eq!(allowed["result"]["channel"], "open:1", "the hook's allow stands for the namespace's rules: {allowed}");
    let refused = ws.request(json!({ "op": "subscribe", "channel": "secret:1" })).await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    assert_eq!(server.poll("channel=open:2&timeout=0").await.0, 200);
    let (status, body) = server.poll("channel=open:2&channel=secret:2&timeout=0").await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")));
    let r = server.http.get(format!("{}/sse?channel=secret:3", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn the_publish_hook_refuses_or_changes_what_a_client_publishes() {
    let backend = backend().await;
    // Clients may not publish by the namespace's rules: the hook's allow stands in for them.
    let server = TestServer::start(&[hooks(&backend, &["publish"]).as_str()]);
    let mut reader = common::WsClient::connect(&server.ws_url()).await;
    reader.subscribe("chat", None).await;
    let mut writer = common::WsClient::connect(&server.ws_url()).await;
    let refused = writer.request(json!({ "op": "publish", "channel": "chat", "data": "spam" })).await;
    assert_eq!(
        (refused["error"]["code"].as_str(), refused["error"]["message"].as_str()),
        (Some("forbidden"), Some("looks like spam"))
    );
    let published = writer.request(json!({ "op": "publish", "channel": "chat", "data": "hello" })).await;
    assert_eq!(published["result"]["offset"], 1, "{published}");
    assert_eq!(reader.next().await.unwrap()["data"], json!({ "clean": "hello" }));

    // `POST /publish`, the client route of SSE and long-poll clients, asks the same hook.
    let post = |data: Value| {
        let request = server.http.post(format!("{}/publish", server.base));
        request.json(&json!({ "channel": "chat", "data": data })).send()
    };
    assert_eq!(post(json!("spam")).await.unwrap().status(), 403);
    let published: Value = post(json!("over http")).await.unwrap().json().await.unwrap();
    assert_eq!(published["offset"], 2, "{published}");
    assert_eq!(reader.next().await.unwrap()["data"], json!({ "clean": "over http" }));
}

#[tokio::test]
async fn a_hook_that_fails_refuses_unless_told_to_allow() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let hook = format!("hooks={{connect=\"http://{closed}/connect\",timeout_ms=500}}");
    let strict = TestServer::start(&[hook.as_str()]);
    let refused = ws_handshake(&strict.ws_url(), &[]).await.err().unwrap();
    assert_eq!(refused.0, 403);
    assert!(refused.1["error"]["message"].as_str().unwrap().contains("connect hook failed"), "{}", refused.1);
    let lenient_hook = format!("hooks={{connect=\"http://{closed}/connect\",timeout_ms=500,on_failure=\"allow\"}}");
    let lenient = TestServer::start(&[lenient_hook.as_str()]);
    let mut ws = ws_handshake(&lenient.ws_url(), &[]).await.unwrap();
    let reply = ws.request(json!({ "op": "subscribe", "channel": "news" })).await;
    assert_eq!(reply["result"]["channel"], "news", "{reply}");
}
