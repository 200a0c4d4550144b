//! Token streams on the Redis engine, black-box: a real `redis-server` and two Herald nodes on
//! it. A stream started on one node is appended to and finished on the other; subscribers on
//! both see every piece once, on every transport; a node that starts mirroring mid-stream, or
//! loses its feed, gives its subscribers the text so far; the limits hold across nodes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use common::{
    TestServer, WAIT,
    redis::{Redis, node, wait_ready},
    streams::{operate, piece, post, start},
};
use serde_json::{Value, json};

/// What a client that follows one stream shows, built from its pushes the way the TypeScript
/// client does: the text so far replaces what it holds when it holds more; an append counts
/// only when it is the next. Ends with the finished message's text, or "aborted".
#[derive(Debug, Default)]
struct Shown {
    text: String,
    seq: u64,
    ended: Option<String>,
}

impl Shown {
    /// Applies one push or message; whether the stream has ended.
    fn apply(&mut self, push: &Value) -> bool {
        match push["type"].as_str().unwrap() {
            "stream" if push["seq"].as_u64().unwrap() >= self.seq => {
                (self.text, self.seq) = (push["text"].as_str().unwrap().into(), push["seq"].as_u64().unwrap());
            }
            "append" => {
                let (seq, pieces) = (push["seq"].as_u64().unwrap(), push["pieces"].as_u64().unwrap_or(1));
                if seq - pieces == self.seq {
                    self.text.push_str(push["text"].as_str().unwrap());
                    self.seq = seq;
                }
            }
            "abort" => self.ended = Some("aborted".into()),
            "message" if push["data"]["stream"].is_string() => {
                self.ended = Some(push["data"]["text"].as_str().unwrap().into());
            }
            _ => {}
        }
        self.ended.is_some()
    }
}

/// Reads WebSocket pushes until the stream ends; what was shown.
async fn follow_ws(ws: &mut common::WsClient) -> Shown {
    let mut shown = Shown::default();
    while !shown.apply(&ws.next().await.expect("the node keeps the socket open")) {}
    shown
}

/// Reads SSE events until the stream ends; what was shown.
async fn follow_sse(sse: &mut common::SseClient) -> Shown {
    let mut shown = Shown::default();
    loop {
        let event = sse.next().await.expect("the stream stays open");
        let mut push = event.data;
        if push.get("type").is_none() {
            push["type"] = json!("message"); // a message event carries its envelope
        }
        if shown.apply(&push) {
            return shown;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_started_on_one_node_is_written_on_the_other_and_read_on_both() {
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    wait_ready(&[&a, &b], true).await;
    let mut ws_a = a.ws().await;
    ws_a.subscribe("chat:1", None).await;
    let mut sse_b = b.sse("channel=chat:1", None).await;
    b.wait_for_connections("sse", 1).await;

    let stream = start(&a, "chat:1").await;
    for (i, (node, delta)) in [(&b, "Hel"), (&a, "lo, "), (&b, "world")].into_iter().enumerate() {
        assert_eq!(operate(node, "chat:1", &stream, json!({ "append": delta })).await["seq"], i as u64 + 1);
    }
    let finished = operate(&b, "chat:1", &stream, json!({ "finish": true })).await;
    assert_eq!((finished["offset"].as_u64(), finished["stream"].as_str()), (Some(1), Some(stream.as_str())));

    let expected = [("stream", "", 0), ("append", "Hel", 1), ("append", "lo, ", 2), ("append", "world", 3)];
    let mut over_ws = Vec::new();
    for _ in 0..5 {
        over_ws.push(ws_a.next().await.unwrap());
    }
    assert_eq!(over_ws[..4].iter().map(piece).collect::<Vec<_>>(), expected, "each piece once, in order");
    assert!(over_ws[..4].iter().all(|p| p["stream"] == stream.as_str() && p["event"] == "answer"));
    assert_eq!((over_ws[4]["type"].as_str(), over_ws[4]["event"].as_str()), (Some("message"), Some("answer")));
    assert_eq!(over_ws[4]["data"], json!({ "stream": stream, "text": "Hello, world" }));
    let shown = follow_sse(&mut sse_b).await;
    assert_eq!((shown.text.as_str(), shown.ended.as_deref()), ("Hello, world", Some("Hello, world")));

    // History on either node holds the one message, not the pieces; the stream is closed.
    let history = b.api_get("/api/channels/chat:1/history").await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 1, "{history}");
    assert_eq!(history["messages"][0]["data"]["text"], "Hello, world");
    let (status, again) = post(&a, &format!("/api/channels/chat:1/streams/{stream}"), json!({ "append": "x" })).await;
    assert_eq!((status, again["error"]["code"].as_str()), (404, Some("not_found")), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_mid_stream_serves_the_text_so_far_and_an_abort_reaches_every_node() {
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    wait_ready(&[&a, &b], true).await;
    let stream = start(&a, "ai").await;
    operate(&a, "ai", &stream, json!({ "append": "The answer " })).await;
    operate(&a, "ai", &stream, json!({ "append": "is " })).await;

    // B has never mirrored `ai`: its subscribers get the text so far from Redis.
    let mut ws_b = b.ws().await;
    ws_b.subscribe("ai", None).await;
    let snapshot = ws_b.next().await.unwrap();
    assert_eq!(piece(&snapshot), ("stream", "The answer is ", 2), "{snapshot}");
    let (_, poll) = b.poll(&format!("channel=ai&timeout=5&streams={stream}.1")).await;
    let lacks = &poll["streams"][0];
    assert_eq!(piece(lacks), ("append", "is ", 2), "a poll holding the first piece gets the second: {poll}");

    operate(&a, "ai", &stream, json!({ "append": "42" })).await;
    assert_eq!(piece(&ws_b.next().await.unwrap()), ("append", "42", 3));
    let (_, poll) = b.poll(&format!("channel=ai&timeout=5&streams={stream}.2")).await;
    assert_eq!(piece(&poll["streams"][0]), ("append", "42", 3), "{poll}");

    let mut ws_a = a.ws().await;
    ws_a.subscribe("ai", None).await;
    assert_eq!(piece(&ws_a.next().await.unwrap()), ("stream", "The answer is 42", 3));
    let aborted = operate(&b, "ai", &stream, json!({ "abort": true })).await;
    assert_eq!(aborted["aborted"], true);
    for ws in [&mut ws_a, &mut ws_b] {
        let push = ws.next().await.unwrap();
        assert_eq!((push["type"].as_str(), push["stream"].as_str()), (Some("abort"), Some(stream.as_str())));
    }
    let history = a.api_get("/api/channels/ai/history").await;
    assert_eq!(history["messages"], json!([]), "an aborted stream leaves no message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pieces_written_while_a_node_lost_its_feed_reach_its_subscribers_once() {
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    wait_ready(&[&a, &b], true).await;
    let mut ws_b = b.ws().await;
    ws_b.subscribe("feed", None).await;
    let mut sse_b = b.sse("channel=feed", None).await;
    b.wait_for_connections("sse", 1).await;
    let stream = start(&a, "feed").await;
    operate(&a, "feed", &stream, json!({ "append": "0" })).await;

    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    let mut whole = String::from("0");
    for i in 1..40 {
        operate(&a, "feed", &stream, json!({ "append": i.to_string() })).await;
        whole.push_str(&i.to_string());
    }
    wait_ready(&[&a, &b], true).await;
    operate(&a, "feed", &stream, json!({ "finish": true })).await;

    let shown = tokio::time::timeout(WAIT, follow_ws(&mut ws_b)).await.expect("the stream ends over WebSocket");
    assert_eq!((shown.text.as_str(), shown.seq, shown.ended.as_deref()), (whole.as_str(), 40, Some(whole.as_str())));
    let shown = tokio::time::timeout(WAIT, follow_sse(&mut sse_b)).await.expect("the stream ends over SSE");
    assert_eq!((shown.text.as_str(), shown.ended.as_deref()), (whole.as_str(), Some(whole.as_str())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_limits_hold_across_nodes() {
    let redis = Redis::start();
    let engine = format!("engine=\"{}\"", redis.url());
    let limited = || TestServer::with_tokens(&[engine.as_str(), "max_streams_per_channel=2", "max_message_bytes=16"]);
    let (a, b) = (limited(), limited());
    wait_ready(&[&a, &b], true).await;
    let first = start(&a, "c").await;
    start(&b, "c").await;
    let (status, refused) = post(&a, "/api/channels/c/streams", json!({})).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (429, Some("rate_limited")), "{refused}");

    operate(&b, "c", &first, json!({ "append": "0123456789" })).await;
    let (status, refused) =
        post(&a, &format!("/api/channels/c/streams/{first}"), json!({ "append": "0123456789" })).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (413, Some("message_too_large")), "{refused}");
    for bad in ["nosuchstream", "bad%7Bid%7D"] {
        let (status, refused) = post(&b, &format!("/api/channels/c/streams/{bad}"), json!({ "abort": true })).await;
        assert_eq!((status, refused["error"]["code"].as_str()), (404, Some("not_found")), "{bad}: {refused}");
    }
    // Finishing frees a place on every node.
    operate(&b, "c", &first, json!({ "finish": true })).await;
    start(&a, "c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_stream_is_written_across_nodes_and_finishes_as_one_array() {
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    wait_ready(&[&a, &b], true).await;
    let (_, opened) = post(&a, "/api/channels/tools/streams", json!({ "json": true })).await;
    let stream = opened["stream"].as_str().unwrap().to_string();
    let items = [json!({ "tool": "search", "q": "a \"quoted\"\nline" }), json!("é"), json!(null)];
    operate(&a, "tools", &stream, json!({ "append": items[0] })).await;

    // B mirrors `tools` mid-stream: the items so far come from Redis.
    let mut ws_b = b.ws().await;
    ws_b.subscribe("tools", None).await;
    let snapshot = ws_b.next().await.unwrap();
    assert_eq!((snapshot["type"].as_str(), &snapshot["items"]), (Some("stream"), &json!([items[0]])), "{snapshot}");
    for item in &items[1..] {
        operate(&b, "tools", &stream, json!({ "append": item })).await;
    }
    // Redis checks the kind: text to a JSON stream, an object to a text stream.
    let text = b.http.post(format!("{}/api/channels/tools/streams/{stream}", b.base));
    let text = text.bearer_auth(common::API_KEY).body("plain").send().await.unwrap();
    assert_eq!(text.status(), 400);
    let text_stream = start(&b, "tools").await;
    let (status, refused) =
        post(&a, &format!("/api/channels/tools/streams/{text_stream}"), json!({ "append": [1] })).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("bad_request")), "{refused}");
    operate(&a, "tools", &text_stream, json!({ "append": "a JSON string is text" })).await;
    operate(&a, "tools", &text_stream, json!({ "abort": true })).await;

    operate(&b, "tools", &stream, json!({ "finish": true })).await;
    let mut got = Vec::new();
    while got.last().is_none_or(|p: &Value| p["type"] != "message") {
        got.push(ws_b.next().await.unwrap());
    }
    let ours: Vec<Value> = got
        .iter()
        .filter(|p| p["stream"] == stream.as_str() && p["type"] == "append")
        .map(|p| p["items"].clone())
        .collect();
    assert_eq!(ours, [json!([items[1]]), json!([items[2]])]);
    assert_eq!(got.last().unwrap()["data"], json!({ "stream": stream, "items": items }));
    let history = a.api_get("/api/channels/tools/history").await;
    assert_eq!(history["messages"][0]["data"]["items"], json!(items), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_is_aborted_to_every_nodes_subscribers() {
    let redis = Redis::start();
    let engine = format!("engine=\"{}\"", redis.url());
    let quick = || {
        TestServer::with_tokens(&[
            engine.as_str(),
            "stream_idle_timeout_secs=1",
            "heartbeat_secs=1",
            "ws_idle_timeout_secs=5",
        ])
    };
    let (a, b) = (quick(), quick());
    wait_ready(&[&a, &b], true).await;
    let mut ws_b = b.ws().await;
    ws_b.subscribe("idle", None).await;
    let stream = start(&a, "idle").await;
    operate(&a, "idle", &stream, json!({ "append": "and then the backend died" })).await;
    assert_eq!(piece(&ws_b.next().await.unwrap()).0, "stream");
    assert_eq!(piece(&ws_b.next().await.unwrap()).0, "append");
    let aborted = tokio::time::timeout(WAIT, async {
        loop {
            let push = ws_b.next().await.unwrap();
            if push["type"] == "abort" {
                return push;
            }
        }
    })
    .await
    .expect("an abort within the idle limit and a heartbeat");
    assert_eq!((aborted["stream"].as_str(), aborted["seq"].as_u64()), (Some(stream.as_str()), Some(1)));
    let (status, _) = post(&b, &format!("/api/channels/idle/streams/{stream}"), json!({ "append": "x" })).await;
    assert_eq!(status, 404, "Redis dropped it too");
}
