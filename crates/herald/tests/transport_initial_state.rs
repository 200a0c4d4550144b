//! Initial state on subscribe: a client with no position can ask for the latest N messages
//! first (`"last":N` on WebSocket, `?last=N` on SSE and long polling), then gets live ones with
//! nothing lost in between; and history pages backwards (`before=<offset>`, newest first).

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use common::TestServer;
use serde_json::{Value, json};

async fn publish_n(server: &TestServer, channel: &str, from: u64, n: u64) {
    for i in from..from + n {
        server.publish(channel, json!({ "i": i })).await;
    }
}

fn offsets(messages: &[Value]) -> Vec<u64> {
    messages.iter().map(|m| m["offset"].as_u64().expect("an offset")).collect()
}

#[tokio::test]
async fn a_websocket_subscriber_gets_the_latest_n_then_live() {
    let server = TestServer::start(&[]);
    publish_n(&server, "prices", 1, 5).await;
    let mut ws = server.ws().await;
    let reply = ws.request(json!({ "op": "subscribe", "channel": "prices", "last": 3 })).await;
    assert_eq!(reply["result"]["offset"], 5, "{reply}");
    assert!(reply["result"].get("recovered").is_none(), "no position was given: {reply}");
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(ws.next().await.unwrap());
    }
    assert_eq!(offsets(&got), [3, 4, 5]);
    publish_n(&server, "prices", 6, 1).await;
    assert_eq!(ws.next().await.unwrap()["offset"], 6, "live after the latest");

    // More than history holds gives what it holds; a new channel gives nothing, then live.
    let mut all = server.ws().await;
    all.request(json!({ "op": "subscribe", "channel": "prices", "last": 1000 })).await;
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(all.next().await.unwrap());
    }
    assert_eq!(offsets(&got), [1, 2, 3, 4, 5, 6]);
    all.request(json!({ "op": "subscribe", "channel": "fresh", "last": 5 })).await;
    server.publish("fresh", json!("first")).await;
    let first = all.next().await.unwrap();
    assert_eq!((first["channel"].as_str(), first["offset"].as_u64()), (Some("fresh"), Some(1)));

    // A position wins over `last`: exactly what was missed.
    let epoch = reply["result"]["epoch"].clone();
    let mut back = server.ws().await;
    let resumed = back
        .request(json!({ "op": "subscribe", "channel": "prices", "last": 5, "since": { "epoch": epoch, "offset": 5 } }))
        .await;
    assert_eq!(resumed["result"]["recovered"], true);
    assert_eq!(back.next().await.unwrap()["offset"], 6);

    let bad = ws.request(json!({ "op": "subscribe", "channel": "other", "last": -1 })).await;
    assert_eq!(bad["error"]["code"], "bad_request", "a negative count is refused: {bad}");
}

#[tokio::test]
async fn an_sse_stream_starts_with_the_latest_n_and_a_reconnect_does_not_repeat_them() {
    let server = TestServer::start(&[]);
    publish_n(&server, "scores", 1, 4).await;
    let mut sse = server.sse("channel=scores&last=2", None).await;
    let (third, fourth) = (sse.next().await.unwrap(), sse.next().await.unwrap());
    assert_eq!(offsets(&[third.data, fourth.data.clone()]), [3, 4]);
    publish_n(&server, "scores", 5, 1).await;
    assert_eq!(sse.next().await.unwrap().data["offset"], 5);
    let id = sse.last_id.clone().expect("an event id");
    drop(sse);

    // The browser's reconnect sends Last-Event-ID with the same URL: it resumes, no repeats.
    publish_n(&server, "scores", 6, 1).await;
    let mut again = server.sse("channel=scores&last=2", Some(&id)).await;
    let next = again.next().await.unwrap();
    assert_eq!((next.event.as_str(), next.data["offset"].as_u64()), ("message", Some(6)));
}

#[tokio::test]
async fn a_first_long_poll_answers_at_once_with_the_latest_n() {
    let server = TestServer::start(&[]);
    publish_n(&server, "board", 1, 6).await;
    let started = std::time::Instant::now();
    let (status, body) = server.poll("channel=board&last=2&timeout=20").await;
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed().as_secs() < 10, "answered at once, not after the timeout");
    assert_eq!(offsets(body["messages"].as_array().unwrap()), [5, 6]);

    publish_n(&server, "board", 7, 1).await;
    let cursor = body["cursor"].as_str().unwrap();
    let (_, next) = server.poll(&format!("channel=board&last=2&timeout=5&cursor={cursor}")).await;
    assert_eq!(offsets(next["messages"].as_array().unwrap()), [7], "the cursor wins over last");

    let (status, body) = server.poll("channel=board&last=many").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");
}

#[tokio::test]
async fn history_pages_backwards_newest_first() {
    let server = TestServer::start(&[]);
    publish_n(&server, "chat", 1, 7).await;
    let page = |query: &'static str| {
        let server = &server;
        async move { server.api_get(&format!("/api/channels/chat/history?{query}")).await }
    };
    let first = page("before=8&limit=3").await;
    assert_eq!(offsets(first["messages"].as_array().unwrap()), [7, 6, 5]);
    assert_eq!(first["offset"], 7, "the channel's position comes along");
    let second = page("before=5&limit=3").await;
    assert_eq!(offsets(second["messages"].as_array().unwrap()), [4, 3, 2]);
    let last = page("before=2&limit=3").await;
    assert_eq!(offsets(last["messages"].as_array().unwrap()), [1]);
    let oldest_first = page("since=4").await;
    assert_eq!(offsets(oldest_first["messages"].as_array().unwrap()), [5, 6, 7], "without before: oldest first");

    let mut ws = server.ws().await;
    let reply = ws.request(json!({ "op": "history", "channel": "chat", "before": 4, "limit": 2 })).await;
    assert_eq!(offsets(reply["result"]["messages"].as_array().unwrap()), [3, 2], "{reply}");

    let http = reqwest::Client::new();
    let bad = http
        .get(format!("{}/api/channels/chat/history?before=yesterday", server.base))
        .bearer_auth(common::API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
}

#[tokio::test]
async fn each_channel_of_one_stream_can_start_with_its_own_latest_n() {
    let server = TestServer::start(&[]);
    publish_n(&server, "room:1", 1, 4).await;
    publish_n(&server, "news", 1, 4).await;
    // `last=<channel>:N` for one channel (the last `:` separates the count), `last=N` for the rest.
    let (status, body) = server.poll("channel=room:1&channel=news&last=room:1:3&last=1&timeout=5").await;
    assert_eq!(status, 200, "{body}");
    let mut got: Vec<(String, u64)> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["channel"].as_str().unwrap().to_string(), m["offset"].as_u64().unwrap()))
        .collect();
    got.sort();
    let want = [("news", 4), ("room:1", 2), ("room:1", 3), ("room:1", 4)].map(|(c, o)| (c.to_string(), o));
    assert_eq!(got, want);

    let mut sse = server.sse("channel=room:1&channel=news&last=news:2", None).await;
    let (first, second) = (sse.next().await.unwrap(), sse.next().await.unwrap());
    assert_eq!(offsets(&[first.data.clone(), second.data.clone()]), [3, 4]);
    assert!(
        [first.data["channel"].clone(), second.data["channel"].clone()].iter().all(|c| c == "news"),
        "room:1 starts live"
    );

    for bad in ["last=room:1:many", "last=no%20such:2", "last=:3"] {
        let (status, body) = server.poll(&format!("channel=room:1&{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}
