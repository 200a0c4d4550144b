//! Token streams (docs/protocol.md §3): a backend writes a message piece by piece; every
//! transport's subscribers see each piece at once, one that joins or comes back mid-stream gets
//! the text so far, and finishing leaves one message with the whole text in history.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use common::{
    API_KEY, TestServer,
    streams::{operate, piece, post, start},
};
use serde_json::{Value, json};

#[tokio::test]
async fn subscribers_see_every_piece_then_one_message_on_websocket_and_sse() {
    let server = TestServer::start(&[]);
    let mut ws = server.ws().await;
    ws.subscribe("chat:1", None).await;
    let mut sse = server.sse("channel=chat:1", None).await;
    server.wait_for_connections("sse", 1).await;

    let stream = start(&server, "chat:1").await;
    for (i, delta) in ["Hel", "lo, ", "world"].into_iter().enumerate() {
        let answer = operate(&server, "chat:1", &stream, json!({ "append": delta })).await;
        assert_eq!(answer["seq"], i as u64 + 1);
    }
    let finished = operate(&server, "chat:1", &stream, json!({ "finish": true })).await;
    assert_eq!((finished["offset"].as_u64(), finished["stream"].as_str()), (Some(1), Some(stream.as_str())));

    let expected = [("stream", "", 0), ("append", "Hel", 1), ("append", "lo, ", 2), ("append", "world", 3)];
    let mut over_ws = Vec::new();
    for _ in 0..4 {
        over_ws.push(ws.next().await.unwrap());
    }
    assert_eq!(over_ws.iter().map(piece).collect::<Vec<_>>(), expected);
    assert!(over_ws.iter().all(|p| p["stream"] == stream.as_str() && p["event"] == "answer"));
    let message = ws.next().await.unwrap();
    assert_eq!((message["type"].as_str(), message["event"].as_str()), (Some("message"), Some("answer")));
    assert_eq!(message["data"], json!({ "stream": stream, "text": "Hello, world" }));

    let mut over_sse = Vec::new();
    for _ in 0..5 {
        over_sse.push(sse.next().await.unwrap());
    }
    let names: Vec<&str> = over_sse.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["stream", "append", "append", "append", "answer"]);
    assert_eq!(over_sse[..4].iter().map(|e| piece(&e.data)).collect::<Vec<_>>(), expected);
    assert_eq!(over_sse[4].data["data"]["text"], "Hello, world");

    // History holds the one message, not the pieces.
    let history = server.api_get("/api/channels/chat:1/history").await;
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["data"]["text"], "Hello, world");
}

#[tokio::test]
async fn a_subscriber_that_joins_or_comes_back_mid_stream_gets_the_text_so_far() {
    let server = TestServer::start(&[]);
    let stream = start(&server, "chat:2").await;
    assert_eq!(server.api_get("/api/info").await["open_streams"], 1);
    operate(&server, "chat:2", &stream, json!({ "append": "The answer" })).await;
    operate(&server, "chat:2", &stream, json!({ "append": " is" })).await;

    let mut ws = server.ws().await;
    ws.subscribe("chat:2", None).await;
    assert_eq!(piece(&ws.next().await.unwrap()), ("stream", "The answer is", 2));
    let mut sse = server.sse("channel=chat:2", None).await;
    let first = sse.next().await.unwrap();
    assert_eq!((first.event.as_str(), piece(&first.data)), ("stream", ("stream", "The answer is", 2)));
    let id = sse.last_id.clone().expect("the stream's id");
    drop(sse);

    operate(&server, "chat:2", &stream, json!({ "append": " 42" })).await;
    assert_eq!(piece(&ws.next().await.unwrap()), ("append", " 42", 3));
    // The browser's reconnect: the text so far again, with the seq it covers.
    let mut back = server.sse("channel=chat:2", Some(&id)).await;
    assert_eq!(piece(&back.next().await.unwrap().data), ("stream", "The answer is 42", 3));
}

#[tokio::test]
async fn a_long_poll_wakes_on_a_piece_and_carries_the_text_so_far() {
    let server = TestServer::start(&[]);
    let (_, first) = server.poll("channel=chat:3&timeout=0").await;
    let cursor = first["cursor"].as_str().unwrap().to_string();
    let stream = start(&server, "chat:3").await;

    let query = format!("channel=chat:3&cursor={cursor}&timeout=20");
    let waiting = {
        let (http, base) = (server.http.clone(), server.base.clone());
        tokio::spawn(async move {
            http.get(format!("{base}/poll?{query}")).send().await.unwrap().json::<Value>().await.unwrap()
        })
    };
    server.wait_for_connections("poll", 1).await;
    let started = std::time::Instant::now();
    operate(&server, "chat:3", &stream, json!({ "append": "Thinking" })).await;
    let answer = waiting.await.unwrap();
    assert!(started.elapsed().as_secs() < 10, "the piece ended the wait");
    assert_eq!(answer["messages"], json!([]));
    assert_eq!(piece(&answer["streams"][0]), ("stream", "Thinking", 1), "{answer}");

    operate(&server, "chat:3", &stream, json!({ "abort": true })).await;
    let (_, after) = server.poll(&format!("channel=chat:3&cursor={cursor}&timeout=0")).await;
    assert!(after.get("streams").is_none(), "an aborted stream is gone: {after}");
    let (_, plain) = server.poll("channel=quiet&timeout=0").await;
    assert!(plain.get("streams").is_none(), "no streams, no field: {plain}");
}

#[tokio::test]
async fn an_aborted_stream_leaves_nothing_and_bad_operations_get_clear_errors() {
    let server = TestServer::start(&["max_message_bytes=64", "max_streams_per_channel=2"]);
    let mut ws = server.ws().await;
    ws.subscribe("chat:4", None).await;
    let stream = start(&server, "chat:4").await;
    operate(&server, "chat:4", &stream, json!({ "append": "half an" })).await;
    let aborted = operate(&server, "chat:4", &stream, json!({ "abort": true })).await;
    assert_eq!(aborted["aborted"], true);
    let pushes = [ws.next().await.unwrap(), ws.next().await.unwrap(), ws.next().await.unwrap()];
    assert_eq!(pushes.iter().map(|p| p["type"].as_str().unwrap()).collect::<Vec<_>>(), ["stream", "append", "abort"]);
    assert_eq!(server.api_get("/api/channels/chat:4/history").await["messages"], json!([]));
    assert_eq!(server.api_get("/api/info").await["open_streams"], 0, "the abort closed it");

    let path = format!("/api/channels/chat:4/streams/{stream}");
    let (status, answer) = post(&server, &path, json!({ "append": "more" })).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("not_found")), "an aborted stream is gone");
    let (status, answer) = post(&server, &path, json!({ "finish": true, "abort": true })).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("bad_request")));
    let other = start(&server, "chat:4").await;
    let (status, answer) =
        post(&server, &format!("/api/channels/chat:4/streams/{other}"), json!({ "append": "x".repeat(100) })).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (413, Some("message_too_large")));
    start(&server, "chat:4").await;
    let (status, answer) = post(&server, "/api/channels/chat:4/streams", json!({})).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (429, Some("rate_limited")), "two open at most");
    let (status, _) = post(&server, "/api/channels/no%20spaces/streams", json!({})).await;
    assert_eq!(status, 400);
    let unauthorized = server.http.post(format!("{}/api/channels/chat:4/streams", server.base)).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);

    // Text sent as a plain body is appended as it is.
    let text = server
        .http
        .post(format!("{}/api/channels/chat:4/streams/{other}", server.base))
        .bearer_auth(API_KEY)
        .body("plain words")
        .send()
        .await
        .unwrap();
    assert_eq!(text.json::<Value>().await.unwrap()["seq"], 1);
}

/// Sends one chunk of a chunked body.
async fn chunk(socket: &mut tokio::net::TcpStream, bytes: &[u8]) {
    use tokio::io::AsyncWriteExt as _;
    socket.write_all(format!("{:x}\r\n", bytes.len()).as_bytes()).await.unwrap();
    socket.write_all(bytes).await.unwrap();
    socket.write_all(b"\r\n").await.unwrap();
}

/// Opens `PUT /api/channels/{channel}/streams?event=answer` with a chunked body still to come.
async fn open_pipe(server: &TestServer, channel: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let mut socket = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "PUT /api/channels/{channel}/streams?event=answer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\
         Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket
}

#[tokio::test]
async fn a_piped_body_is_appended_as_it_arrives_and_its_end_finishes_the_stream() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = TestServer::start(&[]);
    let mut ws = server.ws().await;
    ws.subscribe("chat:5", None).await;
    let mut pipe = open_pipe(&server, "chat:5").await;
    let opened = ws.next().await.unwrap();
    assert_eq!((opened["type"].as_str(), opened["event"].as_str()), (Some("stream"), Some("answer")));

    // Each piece reaches the subscriber while the request is still open; a character split
    // between two pieces arrives whole.
    let euro = "€".as_bytes();
    chunk(&mut pipe, b"Price: 42 ").await;
    assert_eq!(piece(&ws.next().await.unwrap()), ("append", "Price: 42 ", 1));
    chunk(&mut pipe, &euro[..1]).await;
    chunk(&mut pipe, &euro[1..]).await;
    chunk(&mut pipe, b" net").await;
    let mut text = String::new();
    while text != "€ net" {
        text.push_str(ws.next().await.unwrap()["text"].as_str().unwrap());
    }
    pipe.write_all(b"0\r\n\r\n").await.unwrap();

    let mut answer = Vec::new();
    let mut buf = [0; 4096];
    while !answer.ends_with(b"}") {
        let n = pipe.read(&mut buf).await.unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body: Value = serde_json::from_str(&answer[answer.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["offset"], 1, "{body}");
    let message = ws.next().await.unwrap();
    assert_eq!(message["data"], json!({ "stream": opened["stream"], "text": "Price: 42 € net" }));
}

#[tokio::test]
async fn a_pipe_that_breaks_off_aborts_its_stream() {
    let server = TestServer::start(&[]);
    let mut ws = server.ws().await;
    ws.subscribe("chat:6", None).await;
    let mut pipe = open_pipe(&server, "chat:6").await;
    chunk(&mut pipe, b"half a tho").await;
    assert_eq!(ws.next().await.unwrap()["type"], "stream");
    assert_eq!(ws.next().await.unwrap()["type"], "append");
    drop(pipe);
    assert_eq!(ws.next().await.unwrap()["type"], "abort", "the backend went away mid-answer");
    assert_eq!(server.api_get("/api/channels/chat:6/history").await["messages"], json!([]));

    // Without the API key nothing opens.
    let refused =
        server.http.put(format!("{}/api/channels/chat:6/streams", server.base)).body("x").send().await.unwrap();
    assert_eq!(refused.status(), 401);
    // A plain, whole body works too (`curl -T file`).
    let whole = server
        .http
        .put(format!("{}/api/channels/chat:6/streams", server.base))
        .bearer_auth(API_KEY)
        .body("all at once")
        .send()
        .await
        .unwrap();
    assert_eq!(whole.status(), 200);
    let history = server.api_get("/api/channels/chat:6/history").await;
    assert_eq!(history["messages"][0]["data"]["text"], "all at once");
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_gets_the_pieces_merged_and_loses_none() {
    use tokio::io::AsyncWriteExt as _;
    // 400 appends of 16 KiB: far more than socket buffers, within the (raised) bounds.
    let server = TestServer::start(&["max_message_bytes=16000000", "max_queued_bytes=32000000"]);
    let mut stalled = common::raw_ws(&server.base).await;
    stalled.write_all(&common::masked_text(br#"{"id":1,"op":"subscribe","channel":"chat:7"}"#)).await.unwrap();
    let mut bytes = Vec::new();
    common::read_until(&mut stalled, &mut bytes, |b| !common::ws_texts(b).is_empty()).await;
    let stream = start(&server, "chat:7").await;
    let piece = |i: u64| format!("{i:05}{}", "x".repeat(16 * 1024 - 5));
    for i in 1..=400 {
        operate(&server, "chat:7", &stream, json!({ "append": piece(i) })).await;
    }

    let last_seen = |b: &[u8]| common::ws_texts(b).iter().any(|t| t["seq"] == 400);
    common::read_until(&mut stalled, &mut bytes, last_seen).await;
    let pushes: Vec<Value> = common::ws_texts(&bytes).into_iter().filter(|t| t["type"] == "append").collect();
    assert!(pushes.len() < 400, "behind its socket, the client got fewer, larger pushes: {}", pushes.len());
    // Every piece, once, in order: each push starts where the one before ended.
    let mut seq = 0;
    let mut text = String::new();
    for push in &pushes {
        let pieces = push["pieces"].as_u64().unwrap_or(1);
        assert_eq!(push["seq"].as_u64().unwrap() - pieces, seq, "no piece missed or repeated");
        seq = push["seq"].as_u64().unwrap();
        text.push_str(push["text"].as_str().unwrap());
    }
    assert_eq!(text, (1..=400).map(piece).collect::<String>());
}

#[tokio::test]
async fn a_long_poll_that_says_what_it_holds_gets_only_what_it_lacks_and_at_once() {
    let server = TestServer::start(&[]);
    let (_, first) = server.poll("channel=chat:8&timeout=0").await;
    let cursor = first["cursor"].as_str().unwrap().to_string();
    let stream = start(&server, "chat:8").await;
    operate(&server, "chat:8", &stream, json!({ "append": "Hel" })).await;
    operate(&server, "chat:8", &stream, json!({ "append": "lo" })).await;
    let poll = |held: String, timeout: u64| {
        let query = format!("channel=chat:8&cursor={cursor}&timeout={timeout}&streams={held}");
        let server = &server;
        async move { server.poll(&query).await.1 }
    };

    // Holding nothing: the text so far, at once (not after the 20 s wait).
    let started = std::time::Instant::now();
    let answer = poll(String::new(), 20).await;
    assert!(started.elapsed().as_secs() < 10, "a stream ahead of the client answers at once");
    assert_eq!(piece(&answer["streams"][0]), ("stream", "Hello", 2));
    // Holding part of it: the rest, as one append of the pieces it lacks.
    let answer = poll(format!("{stream}.1"), 20).await;
    assert_eq!(piece(&answer["streams"][0]), ("append", "lo", 2));
    assert_eq!(answer["streams"][0]["pieces"], json!(null), "one piece");
    // Holding all of it: the poll waits, and the next piece ends the wait alone.
    let waiting = {
        let (http, base) = (server.http.clone(), server.base.clone());
        let query = format!("channel=chat:8&cursor={cursor}&timeout=20&streams={stream}.2");
        tokio::spawn(async move {
            http.get(format!("{base}/poll?{query}")).send().await.unwrap().json::<Value>().await.unwrap()
        })
    };
    server.wait_for_connections("poll", 1).await;
    operate(&server, "chat:8", &stream, json!({ "append": ", world" })).await;
    let answer = waiting.await.unwrap();
    assert_eq!(piece(&answer["streams"][0]), ("append", ", world", 3), "{answer}");
    let answer = poll(format!("{stream}.1"), 0).await;
    assert_eq!(
        (piece(&answer["streams"][0]), answer["streams"][0]["pieces"].as_u64()),
        (("append", "lo, world", 3), Some(2))
    );

    let (status, bad) = server.poll("channel=chat:8&streams=nonsense").await;
    assert_eq!((status, bad["error"]["code"].as_str()), (400, Some("bad_request")));
}

#[tokio::test]
async fn with_a_flush_interval_the_appends_of_one_interval_arrive_as_one_push() {
    let server = TestServer::start(&["stream_flush_ms=400"]);
    let mut ws = server.ws().await;
    ws.subscribe("chat:9", None).await;
    let mut sse = server.sse("channel=chat:9", None).await;
    server.wait_for_connections("sse", 1).await;
    let stream = start(&server, "chat:9").await;
    let pieces = ["The ", "answer ", "is ", "forty-", "two"];
    for delta in pieces {
        operate(&server, "chat:9", &stream, json!({ "append": delta })).await;
    }
    operate(&server, "chat:9", &stream, json!({ "finish": true })).await;

    // Five appends made within a few ms of each other: one push, or two when a flush fell
    // between them — never one per append.
    let ws_pushes = {
        let mut got = vec![ws.next().await.unwrap()];
        while got.last().unwrap()["type"] != "message" {
            got.push(ws.next().await.unwrap());
        }
        got
    };
    let mut sse_pushes = vec![sse.next().await.unwrap().data];
    while sse_pushes.last().unwrap()["type"] != "message" {
        sse_pushes.push(sse.next().await.unwrap().data);
        if sse_pushes.last().unwrap().get("offset").is_some() {
            break; // the finished message's envelope
        }
    }
    for pushes in [&ws_pushes, &sse_pushes] {
        assert_eq!(piece(&pushes[0]), ("stream", "", 0));
        let appends: Vec<&Value> = pushes.iter().filter(|p| p["type"] == "append").collect();
        assert!((1..=2).contains(&appends.len()), "{pushes:?}");
        assert!(appends.iter().any(|a| a["pieces"].as_u64() >= Some(2)), "merged: {appends:?}");
        let text: String = appends.iter().map(|a| a["text"].as_str().unwrap()).collect();
        assert_eq!(text, pieces.concat());
        assert_eq!(appends.last().unwrap()["seq"], 5);
        let pieces_told: u64 = appends.iter().map(|a| a["pieces"].as_u64().unwrap_or(1)).sum();
        assert_eq!(pieces_told, 5, "each piece counted once");
    }
    assert_eq!(ws_pushes.last().unwrap()["data"]["text"], pieces.concat());
}

#[tokio::test]
async fn a_json_stream_carries_items_on_every_transport_and_finishes_as_one_array() {
    let server = TestServer::start(&[]);
    let mut ws = server.ws().await;
    ws.subscribe("tools", None).await;
    let mut sse = server.sse("channel=tools", None).await;
    server.wait_for_connections("sse", 1).await;
    let (status, opened) = post(&server, "/api/channels/tools/streams", json!({ "event": "call", "json": true })).await;
    assert_eq!(status, 200, "{opened}");
    let stream = opened["stream"].as_str().unwrap().to_string();
    let items = [json!({ "tool": "search", "args": { "q": "rust jobs" } }), json!("a string item"), json!([1, 2.5])];
    for (i, item) in items.iter().enumerate() {
        assert_eq!(operate(&server, "tools", &stream, json!({ "append": item })).await["seq"], i as u64 + 1);
    }
    // Kinds do not mix: a text body to a JSON stream, JSON to a text stream.
    let path = format!("{}/api/channels/tools/streams/{stream}", server.base);
    let text = server.http.post(&path).bearer_auth(API_KEY).body("plain").send().await.unwrap();
    let (status, refused): (u16, Value) = (text.status().as_u16(), text.json().await.unwrap());
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("bad_request")), "{refused}");
    let text_stream = start(&server, "tools").await;
    let (status, refused) =
        post(&server, &format!("/api/channels/tools/streams/{text_stream}"), json!({ "append": { "a": 1 } })).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("bad_request")), "{refused}");
    operate(&server, "tools", &text_stream, json!({ "abort": true })).await;

    // Late joiners get the items so far; a poll holding the first item gets the rest.
    let (_, poll) = server.poll("channel=tools&timeout=0").await;
    assert_eq!(poll["streams"][0]["items"], json!(items), "{poll}");
    let (_, poll) = server.poll(&format!("channel=tools&timeout=0&streams={stream}.1")).await;
    assert_eq!((poll["streams"][0]["items"].clone(), poll["streams"][0]["seq"].as_u64()), (json!(items[1..]), Some(3)));
    let finished = operate(&server, "tools", &stream, json!({ "finish": true })).await;
    assert_eq!(finished["stream"], stream.as_str());

    let mut over_ws = Vec::new();
    while over_ws.last().is_none_or(|p: &Value| p["type"] != "message") {
        over_ws.push(ws.next().await.unwrap());
    }
    let ours: Vec<&Value> = over_ws.iter().filter(|p| p["stream"] == stream.as_str()).collect();
    assert_eq!(ours[0]["items"], json!([]), "the start holds no items: {ours:?}");
    let appended: Vec<Value> = ours[1..].iter().map(|p| p["items"].clone()).collect();
    assert_eq!(appended, items.iter().map(|i| json!([i])).collect::<Vec<_>>(), "one item per append");
    assert!(ours.iter().all(|p| p.get("text").is_none()));
    let message = over_ws.last().unwrap();
    assert_eq!(message["data"], json!({ "stream": stream, "items": items }));
    let mut over_sse = Vec::new();
    while over_sse.last().is_none_or(|e: &common::SseEvent| e.event != "call") {
        over_sse.push(sse.next().await.unwrap());
    }
    let appends: Vec<&Value> = over_sse.iter().filter(|e| e.event == "append").map(|e| &e.data).collect();
    assert_eq!(appends.iter().filter(|a| a["stream"] == stream.as_str()).count(), 3);
    assert_eq!(over_sse.last().unwrap().data["data"]["items"], json!(items));
    let history = server.api_get("/api/channels/tools/history").await;
    assert_eq!(history["messages"][0]["data"]["items"], json!(items));
}
