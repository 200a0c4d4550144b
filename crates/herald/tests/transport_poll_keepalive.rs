//! Long polls on one keep-alive connection: the answered poll's subscription is kept for the
//! next poll (docs/protocol.md §5), which continues it from the answer's cursor, and it ends
//! with the connection, with a poll from another position, or with the poll's timeout.

mod common;

use std::time::Duration;

use common::{TestServer, WAIT, read_responses};
use serde_json::{Value, json};
use tokio::{io::AsyncWriteExt, net::TcpStream};

/// Sends `GET /poll?<query>` on `stream`.
async fn send_poll(stream: &mut TcpStream, query: &str) {
    stream.write_all(format!("GET /poll?{query} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.expect("sends");
}

/// Reads the answer to a poll sent on `stream`: its messages' data and its cursor.
async fn poll_answer(stream: &mut TcpStream) -> (Vec<Value>, String, Value) {
    let (head, body) = read_responses(stream, 1).await.remove(0);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON answer");
    let data = body["messages"].as_array().expect("messages").iter().map(|m| m["data"].clone()).collect();
    let cursor = body["cursor"].as_str().expect("cursor").to_string();
    (data, cursor, body["resets"].clone())
}

/// The channel's subscribers as `GET /api/channels` counts them (0 when it is not listed).
async fn subscribers(server: &TestServer, channel: &str) -> u64 {
    let channels = server.api_get("/api/channels").await;
    let listed = channels["channels"].as_array().expect("channels").iter().find(|c| c["channel"] == channel);
    listed.map_or(0, |c| c["subscribers"].as_u64().expect("a count"))
}

/// Waits until the channel has `want` subscribers.
async fn wait_for_subscribers(server: &TestServer, channel: &str, want: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while subscribers(server, channel).await != want {
        assert!(tokio::time::Instant::now() < deadline, "{channel} never had {want} subscribers");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A poll on `stream` answered with the message published once it waits.
async fn answered_poll(server: &TestServer, stream: &mut TcpStream, channel: &str, query: &str, data: Value) -> String {
    send_poll(stream, &format!("channel={channel}&{query}")).await;
    server.wait_for_connections("poll", 1).await;
    server.publish(channel, data.clone()).await;
    let (got, cursor, _) = poll_answer(stream).await;
    assert_eq!(got, [data]);
    cursor
}

#[tokio::test]
async fn the_next_poll_gets_what_was_published_between_polls_even_without_history() {
    let server = TestServer::start(&["history_size=0"]);
    let mut stream = server.connect().await;
    let cursor = answered_poll(&server, &mut stream, "nohist", "timeout=10", json!(1)).await;
    server.publish("nohist", json!(2)).await;
    server.publish("nohist", json!(3)).await;
    // History holds neither: only the kept subscription has them.
    send_poll(&mut stream, &format!("channel=nohist&cursor={cursor}&timeout=10")).await;
    let (got, _, resets) = poll_answer(&mut stream).await;
    assert_eq!(got, [json!(2), json!(3)]);
    assert_eq!(resets, json!([]));
}

#[tokio::test]
async fn a_poll_from_another_position_is_answered_from_that_position() {
    let server = TestServer::start(&[]);
    let mut stream = server.connect().await;
    let first = answered_poll(&server, &mut stream, "moved", "timeout=10", json!("a")).await;
    answered_poll(&server, &mut stream, "moved", &format!("cursor={first}&timeout=10"), json!("b")).await;
    server.publish("moved", json!("c")).await;
    // Back from the first answer's cursor: what came after it, not what the kept
    // subscription holds since the second answer.
    send_poll(&mut stream, &format!("channel=moved&cursor={first}&timeout=10")).await;
    let (got, _, _) = poll_answer(&mut stream).await;
    assert_eq!(got, [json!("b"), json!("c")]);
    // Another channel on the same connection: the kept subscription is let go.
    send_poll(&mut stream, "channel=other&timeout=0").await;
    poll_answer(&mut stream).await;
    wait_for_subscribers(&server, "moved", 0).await;
}

#[tokio::test]
async fn a_kept_subscription_ends_with_its_poll_timeout_or_its_connection() {
    let server = TestServer::start(&[]);
    let mut stream = server.connect().await;
    answered_poll(&server, &mut stream, "kept", "timeout=2", json!(1)).await;
    // Kept after the answer, for the next poll…
    assert_eq!(subscribers(&server, "kept").await, 1);
    // …until the answered poll's timeout runs out, with the connection still open.
    wait_for_subscribers(&server, "kept", 0).await;

    answered_poll(&server, &mut stream, "kept", "timeout=30", json!(2)).await;
    assert_eq!(subscribers(&server, "kept").await, 1);
    drop(stream);
    // Well before the 30 s: the close ends it.
    wait_for_subscribers(&server, "kept", 0).await;
    server.wait_for_connections("poll", 0).await;
}

#[tokio::test]
async fn an_answer_larger_than_the_socket_takes_at_once_arrives_whole_and_the_connection_goes_on() {
    let server = TestServer::start(&["max_message_bytes=8000000", "max_queued_bytes=16000000"]);
    let mut stream = server.connect().await;
    // Megabytes: more than the socket takes in one write while the client reads nothing, so
    // the rest follows as the client reads.
    let big = "x".repeat(6_000_000);
    send_poll(&mut stream, "channel=big&timeout=10").await;
    server.wait_for_connections("poll", 1).await;
    server.publish("big", json!(big)).await;
    let (got, cursor, _) = poll_answer(&mut stream).await;
    let sizes: Vec<usize> = got.iter().map(|data| data.as_str().map_or(0, str::len)).collect();
    assert_eq!(sizes, [big.len()], "the one message, whole");
    assert!(got[0].as_str() == Some(big.as_str()));
    answered_poll(&server, &mut stream, "big", &format!("cursor={cursor}&timeout=10"), json!("small")).await;
}
