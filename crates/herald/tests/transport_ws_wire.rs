//! What a WebSocket carries on the wire, read by a raw client. permessage-deflate (RFC 7692):
//! the server agrees to it (without context takeover either way), sends large messages
//! compressed — the same bytes to every such subscriber — and small ones plain, inflates what
//! the client compresses, and refuses a message that inflates past the limit. The compact
//! envelope (subprotocol `herald.compact`): messages as short arrays, alone or compressed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use std::io::Write as _;

use common::{TestServer, read_until};
use flate2::{Compression, write::DeflateEncoder};
use serde_json::{Value, json};
use tokio::{io::AsyncWriteExt as _, net::TcpStream};

const AGREED: &str =
    "sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// A realistic message: a job posting of about 1 KB (also what `herald bench --scenario compression` publishes).
fn job_posting() -> Value {
    serde_json::from_str(include_str!("testdata/job_posting.json")).unwrap()
}

/// Connects and upgrades, offering `extensions` if any; the 101 answer's head.
async fn upgrade(server: &TestServer, extensions: Option<&str>) -> (TcpStream, String, Vec<u8>) {
    let offer = extensions.map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n")).unwrap_or_default();
    upgrade_with(server, &offer).await
}

/// Connects and upgrades with the extra header lines `offer`; the 101 answer's head.
async fn upgrade_with(server: &TestServer, offer: &str) -> (TcpStream, String, Vec<u8>) {
    let mut socket = TcpStream::connect(server.base.trim_start_matches("http://")).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{offer}\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    read_until(&mut socket, &mut bytes, |b| b.windows(4).any(|w| w == b"\r\n\r\n")).await;
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&bytes[..end]).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    (socket, head, bytes[end..].to_vec())
}

/// `data` deflated as RFC 7692 sends it: raw DEFLATE, sync-flushed, the 4-byte tail dropped.
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.flush().unwrap();
    let mut out = encoder.get_ref().clone();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(compressed: &[u8]) -> Vec<u8> {
    let mut decoder = flate2::write::DeflateDecoder::new(Vec::new());
    decoder.write_all(compressed).unwrap();
    decoder.write_all(&[0, 0, 0xff, 0xff]).unwrap();
    decoder.flush().unwrap();
    decoder.get_ref().clone()
}

/// The next whole server frame in `bytes` (read more from `socket` as needed): its first byte
/// and payload.
async fn next_frame(socket: &mut TcpStream, bytes: &mut Vec<u8>) -> (u8, Vec<u8>) {
    loop {
        if bytes.len() >= 2 {
            let (len, at) = match bytes[1] & 0x7f {
                126 if bytes.len() >= 4 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
                126 => (usize::MAX, 0),
                n => (usize::from(n), 2),
            };
            if len != usize::MAX && bytes.len() >= at + len {
                let frame = (bytes[0], bytes[at..at + len].to_vec());
                bytes.drain(..at + len);
                return frame;
            }
        }
        let have = bytes.len();
        read_until(socket, bytes, |b| b.len() > have).await;
    }
}

/// The next frame that is a message (skipping replies and pings), as it came: an envelope, or
/// a compact array.
async fn next_message(socket: &mut TcpStream, bytes: &mut Vec<u8>) -> (u8, Vec<u8>) {
    loop {
        let (first, payload) = next_frame(socket, bytes).await;
        let text = if first & 0x40 != 0 { inflate(&payload) } else { payload.clone() };
        let message = |v: Value| v["type"] == "message" || v.is_array();
        if first & 0x0f == 1 && serde_json::from_slice::<Value>(&text).is_ok_and(message) {
            return (first, payload);
        }
    }
}

async fn publish(server: &TestServer, data: Value) {
    server.publish("jobs", data).await;
}

#[tokio::test]
async fn large_messages_arrive_compressed_small_ones_plain_and_a_compressed_command_is_understood() {
    let server = TestServer::start(&[]);
    let (mut socket, head, mut bytes) = upgrade(&server, Some("permessage-deflate; client_max_window_bits")).await;
    assert!(head.contains(AGREED), "{head}");

    // The subscribe command itself compressed, as browsers send it.
    let command = br#"{"op":"subscribe","channel":"jobs","id":1}"#;
    socket.write_all(&common::masked_frame(0xc1, &deflate(command))).await.unwrap();
    let (first, reply) = next_frame(&mut socket, &mut bytes).await;
    assert_eq!(first, 0x81, "replies go plain");
    assert_eq!(serde_json::from_slice::<Value>(&reply).unwrap()["id"], 1);

    publish(&server, job_posting()).await;
    let (first, payload) = next_message(&mut socket, &mut bytes).await;
    assert_eq!(first, 0xc1, "FIN, RSV1 (compressed), text");
    let envelope: Value = serde_json::from_slice(&inflate(&payload)).unwrap();
    assert_eq!(envelope["data"], job_posting());
    let plain = serde_json::to_vec(&envelope).unwrap().len();
    assert!(payload.len() * 4 < plain * 3, "{} compressed bytes for {plain}", payload.len());

    publish(&server, json!({"n": 1})).await;
    let (first, payload) = next_message(&mut socket, &mut bytes).await;
    assert_eq!(first, 0x81, "under ws_compression_min_bytes: plain");
    assert_eq!(serde_json::from_slice::<Value>(&payload).unwrap()["data"], json!({"n": 1}));
}

#[tokio::test]
async fn every_subscriber_gets_the_same_compressed_bytes() {
    let server = TestServer::start(&[]);
    let mut subscribers = Vec::new();
    for _ in 0..3 {
        let (mut socket, _, bytes) = upgrade(&server, Some("permessage-deflate")).await;
        socket.write_all(&common::masked_text(br#"{"op":"subscribe","channel":"jobs","id":1}"#)).await.unwrap();
        subscribers.push((socket, bytes));
    }
    server.wait_for_connections("ws", 3).await;
    // Each has its reply before the publish.
    for (socket, bytes) in &mut subscribers {
        next_frame(socket, bytes).await;
    }
    publish(&server, job_posting()).await;
    let mut frames = Vec::new();
    for (socket, bytes) in &mut subscribers {
        frames.push(next_message(socket, bytes).await);
    }
    assert!(frames.iter().all(|f| *f == frames[0] && f.0 == 0xc1), "one compression for all");
}

#[tokio::test]
async fn without_an_offer_or_with_compression_off_everything_is_plain() {
    let server = TestServer::start(&[]);
    let (mut socket, head, mut bytes) = upgrade(&server, None).await;
    assert!(!head.contains("sec-websocket-extensions"), "{head}");
    socket.write_all(&common::masked_text(br#"{"op":"subscribe","channel":"jobs","id":1}"#)).await.unwrap();
    next_frame(&mut socket, &mut bytes).await;
    publish(&server, job_posting()).await;
    assert_eq!(next_message(&mut socket, &mut bytes).await.0, 0x81);

    let off = TestServer::start(&["ws_compression=false"]);
    let (_, head, _) = upgrade(&off, Some("permessage-deflate")).await;
    assert!(!head.contains("sec-websocket-extensions"), "{head}");
    let narrow = TestServer::start(&[]);
    let (_, head, _) = upgrade(&narrow, Some("permessage-deflate; server_max_window_bits=9")).await;
    assert!(!head.contains("sec-websocket-extensions"), "a narrower window is declined: {head}");
}

#[tokio::test]
async fn a_message_that_inflates_past_the_limit_ends_the_connection() {
    let server = TestServer::start(&["max_message_bytes=4096"]);
    let (mut socket, _, mut bytes) = upgrade(&server, Some("permessage-deflate")).await;
    let bomb = format!(r#"{{"op":"publish","channel":"jobs","data":"{}"}}"#, "0".repeat(1 << 20));
    socket.write_all(&common::masked_frame(0xc1, &deflate(bomb.as_bytes()))).await.unwrap();
    let ended = tokio::time::timeout(common::WAIT, async {
        let mut buf = [0; 1024];
        loop {
            match tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the server closed the connection");
}

#[tokio::test]
async fn the_compact_envelope_carries_each_message_as_a_short_array() {
    let server = TestServer::start(&[]);
    let (mut socket, head, mut bytes) = upgrade_with(&server, "Sec-WebSocket-Protocol: chat, herald.compact\r\n").await;
    assert!(head.contains("sec-websocket-protocol: herald.compact\r\n"), "{head}");
    socket.write_all(&common::masked_text(br#"{"op":"subscribe","channel":"jobs","id":1}"#)).await.unwrap();
    let (_, reply) = next_frame(&mut socket, &mut bytes).await;
    assert_eq!(serde_json::from_slice::<Value>(&reply).unwrap()["id"], 1, "replies stay objects");

    let placed = server.publish("jobs", json!({"n": 1})).await;
    let (first, payload) = next_message(&mut socket, &mut bytes).await;
    assert_eq!(first, 0x81);
    let compact: Value = serde_json::from_slice(&payload).unwrap();
    let time = compact[3].as_u64().unwrap();
    assert_eq!(compact, json!([1, "jobs", placed["epoch"], time, {"n": 1}]));
    let envelope = server.api_get("/api/channels/jobs/history?limit=1").await["messages"][0].clone();
    assert_eq!(envelope["time"], time, "the same message as history has it");
    let full = serde_json::to_vec(&envelope).unwrap().len();
    assert!(payload.len() + 40 < full, "{} bytes against {full}", payload.len());

    server.publish_body(json!({"channel": "jobs", "event": "tick", "data": [1, 2]})).await;
    let (_, payload) = next_message(&mut socket, &mut bytes).await;
    let compact: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!((compact[0].clone(), compact[4].clone(), compact[5].clone()), (json!(2), json!([1, 2]), json!("tick")));
}

#[tokio::test]
async fn the_compact_envelope_is_compressed_too_and_without_it_messages_stay_envelopes() {
    let server = TestServer::start(&[]);
    let offer = "Sec-WebSocket-Protocol: herald.compact\r\nSec-WebSocket-Extensions: permessage-deflate\r\n";
    let (mut socket, head, mut bytes) = upgrade_with(&server, offer).await;
    assert!(head.contains("herald.compact") && head.contains(AGREED), "{head}");
    socket.write_all(&common::masked_text(br#"{"op":"subscribe","channel":"jobs","id":1}"#)).await.unwrap();
    next_frame(&mut socket, &mut bytes).await;
    let (mut plain, head, mut plain_bytes) = upgrade(&server, None).await;
    assert!(!head.contains("sec-websocket-protocol"), "{head}");
    plain.write_all(&common::masked_text(br#"{"op":"subscribe","channel":"jobs","id":1}"#)).await.unwrap();
    next_frame(&mut plain, &mut plain_bytes).await;

    server.publish("jobs", job_posting()).await;
    let (first, payload) = next_message(&mut socket, &mut bytes).await;
    assert_eq!(first, 0xc1, "compressed");
    let compact: Value = serde_json::from_slice(&inflate(&payload)).unwrap();
    assert_eq!((compact[0].clone(), compact[4].clone()), (json!(1), job_posting()));
    let (_, payload) = next_message(&mut plain, &mut plain_bytes).await;
    assert_eq!(serde_json::from_slice::<Value>(&payload).unwrap()["type"], "message");
}
