//! Binary messages: raw bytes published with `application/octet-stream` or
//! `"encoding":"base64"` reach WebSocket subscribers as binary frames and SSE, long polls and
//! history as base64 with `"encoding":"base64"`, with the same offsets, recovery and
//! idempotency as JSON messages — on the memory and disk engines and across Redis nodes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use common::{API_KEY, TestServer, redis::Redis};
use serde_json::{Value, json};

/// Bytes no text encoding would carry: a zero, a 0xff, an invalid UTF-8 sequence.
const BYTES: [u8; 8] = [0, 255, 1, 0xc3, 0x28, b'h', b'i', 10];

async fn publish_bytes(server: &TestServer, channel: &str, bytes: &[u8]) -> Value {
    let response = server
        .http
        .post(format!("{}/api/publish/{channel}", server.base))
        .bearer_auth(API_KEY)
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn publish_json(server: &TestServer, body: Value) -> (u16, Value) {
    let url = format!("{}/api/publish", server.base);
    let response = server.http.post(url).bearer_auth(API_KEY).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn raw_bytes_reach_every_transport_with_an_explicit_marker() {
    let server = TestServer::start(&[]);
    let mut ws = server.ws().await;
    ws.subscribe("files", None).await;
    let mut sse = server.sse("channel=files", None).await;
    let placed = publish_bytes(&server, "files", &BYTES).await;

    let frame = ws.next().await.expect("a frame");
    assert_eq!(frame["bytes"], json!(BYTES), "{frame}");
    assert_eq!((frame["type"].as_str(), frame["offset"].as_u64()), (Some("message"), Some(1)));
    assert_eq!(frame["epoch"], placed["epoch"]);
    assert!(frame.get("data").is_none() && frame.get("encoding").is_none(), "the header carries no data: {frame}");

    let envelope = loop {
        let event = sse.next().await.expect("an SSE event");
        if event.data["type"] == "message" {
            break event.data;
        }
    };
    assert_eq!((envelope["encoding"].as_str(), envelope["data"].as_str()), (Some("base64"), Some("AP8BwyhoaQo=")));

    let history = server.api_get("/api/channels/files/history?limit=10").await;
    assert_eq!(history["messages"][0]["data"], "AP8BwyhoaQo=");
    let (status, polled) =
        server.poll(&format!("channel=files&cursor=files~{}~0", placed["epoch"].as_str().unwrap())).await;
    assert_eq!(status, 200, "{polled}");
    assert_eq!(polled["messages"][0]["encoding"], "base64", "{polled}");
}

#[tokio::test]
async fn the_json_form_takes_an_event_and_an_idempotency_key_and_refuses_what_is_not_base64() {
    let server = TestServer::start(&[]);
    let mut ws = server.ws().await;
    ws.subscribe("frames", None).await;
    let body = json!({"channel":"frames","event":"tick","encoding":"base64","data":"AAEC","idempotency_key":"k1"});
    let (first, placed) = publish_json(&server, body.clone()).await;
    let (again, repeated) = publish_json(&server, body).await;
    assert_eq!((first, again), (200, 200));
    assert_eq!(placed, repeated, "a retry gets the first answer");
    let frame = ws.next().await.unwrap();
    assert_eq!((frame["event"].as_str(), frame["bytes"].clone()), (Some("tick"), json!([0, 1, 2])));
    publish_bytes(&server, "frames", b"next").await;
    assert_eq!(ws.next().await.unwrap()["offset"], 2, "the retry published nothing");

    for (body, says) in [
        (json!({"channel":"frames","encoding":"base64","data":"***"}), "base64 string"),
        (json!({"channel":"frames","encoding":"base64","data":{"a":1}}), "base64 string"),
        (json!({"channel":"frames","encoding":"hex","data":"00"}), "encoding must be"),
    ] {
        let (status, error) = publish_json(&server, body).await;
        assert_eq!((status, error["error"]["code"].as_str()), (400, Some("bad_request")), "{error}");
        assert!(error["error"]["message"].as_str().unwrap().contains(says), "{error}");
    }
}

#[tokio::test]
async fn a_websocket_recovers_missed_binary_messages_as_binary_frames_after_a_restart() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("binary-restart");
    let _ = std::fs::remove_dir_all(&dir);
    let data_dir = format!("data_dir=\"{}\"", dir.display());
    let first = TestServer::start(&[data_dir.as_str()]);
    let placed = publish_bytes(&first, "files", &BYTES).await;
    publish_bytes(&first, "files", &[7, 7]).await;
    drop(first);

    let second = TestServer::start(&[data_dir.as_str()]);
    let mut ws = second.ws().await;
    ws.subscribe("files", Some(json!({"epoch": placed["epoch"], "offset": 0}))).await;
    assert_eq!(ws.next().await.unwrap()["bytes"], json!(BYTES));
    assert_eq!(ws.next().await.unwrap()["bytes"], json!([7, 7]));
}

#[tokio::test]
async fn binary_messages_cross_redis_nodes() {
    let redis = Redis::start();
    let engine = format!("engine=\"{}\"", redis.url());
    let (a, b) = (TestServer::start(&[engine.as_str()]), TestServer::start(&[engine.as_str()]));
    common::redis::wait_ready(&[&a, &b], true).await;
    let mut ws = b.ws().await;
    ws.subscribe("files", None).await;
    publish_bytes(&a, "files", &BYTES).await;
    let frame = ws.next().await.unwrap();
    assert_eq!((frame["bytes"].clone(), frame["offset"].as_u64()), (json!(BYTES), Some(1)));
    let history = b.api_get("/api/channels/files/history?limit=10").await;
    assert_eq!(history["messages"][0]["encoding"], "base64");
}

#[tokio::test]
async fn a_websocket_client_publishes_bytes_in_a_binary_frame() {
    use futures_util::SinkExt as _;
    let server = TestServer::start(&["anonymous_publish=true"]);
    let mut subscriber = server.ws().await;
    subscriber.subscribe("uploads", None).await;
    let mut publisher = server.ws().await;
    let header = br#"{"op":"publish","channel":"uploads","event":"chunk","id":7}"#;
    let mut frame = u16::try_from(header.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(header);
    frame.extend_from_slice(&BYTES);
    publisher.socket.send(tokio_tungstenite::tungstenite::Message::binary(frame)).await.unwrap();
    let reply = publisher.next().await.unwrap();
    assert_eq!((reply["id"].as_u64(), reply["result"]["offset"].as_u64()), (Some(7), Some(1)), "{reply}");
    let pushed = subscriber.next().await.unwrap();
    assert_eq!((pushed["event"].as_str(), pushed["bytes"].clone()), (Some("chunk"), json!(BYTES)));

    // The JSON form over a WebSocket, and what is refused.
    let reply = publisher.request(json!({"op":"publish","channel":"uploads","encoding":"base64","data":"AAEC"})).await;
    assert_eq!(reply["result"]["offset"], 2, "{reply}");
    assert_eq!(subscriber.next().await.unwrap()["bytes"], json!([0, 1, 2]));
    for (command, says) in [
        (json!({"op":"publish","channel":"uploads","encoding":"base64","data":"***"}), "base64 string"),
        (json!({"op":"publish","channel":"uploads","encoding":"gzip","data":"x"}), "encoding must be"),
    ] {
        let reply = publisher.request(command).await;
        assert!(reply["error"]["message"].as_str().unwrap().contains(says), "{reply}");
    }
    let mut not_publish = 2u16.to_be_bytes().to_vec();
    not_publish.extend_from_slice(b"{}");
    publisher.socket.send(tokio_tungstenite::tungstenite::Message::binary(not_publish)).await.unwrap();
    let reply = publisher.next().await.unwrap();
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    publisher.socket.send(tokio_tungstenite::tungstenite::Message::binary(vec![0, 9, 1])).await.unwrap();
    assert_eq!(publisher.next().await.unwrap()["error"]["code"], "bad_request");
}
