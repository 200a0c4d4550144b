//! HTTP/1.1 on the wire, as raw bytes: framing, keep-alive, pipelining, chunked and
//! `Expect: 100-continue` bodies, and clear errors for malformed or oversize requests.

mod common;

use std::time::Duration;

use common::{API_KEY, TestServer, WAIT, read_responses};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

fn count_header(head: &str, name: &str) -> usize {
    head.lines().filter(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:"))).count()
}

#[tokio::test]
async fn pipelined_requests_on_one_connection_are_answered_in_order_with_one_length_each() {
    let server = TestServer::start(&[]);
    let mut stream = server.connect().await;
    let body = r#"{"channel":"pipe","data":1}"#;
    let publish = format!(
        "POST /api/publish HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {API_KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let request =
        format!("GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n{publish}{publish}GET /nope HTTP/1.1\r\nhost: x\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let responses = read_responses(&mut stream, 4).await;
    assert_eq!(responses.len(), 4);
    for (head, _) in &responses {
        assert_eq!(count_header(head, "content-length"), 1, "exactly one Content-Length: {head}");
        assert_eq!(count_header(head, "date"), 1, "a Date header: {head}");
    }
    assert!(responses[0].0.starts_with("HTTP/1.1 200"));
    assert!(responses[1].1.contains(r#""offset":1"#), "{:?}", responses[1]);
    assert!(responses[2].1.contains(r#""offset":2"#), "{:?}", responses[2]);
    assert!(responses[3].0.starts_with("HTTP/1.1 404"), "{:?}", responses[3]);
    assert!(responses[3].1.contains(r#""code":"not_found""#));
}

#[tokio::test]
async fn chunked_and_expect_continue_bodies_publish() {
    let server = TestServer::start(&[]);
    let mut stream = server.connect().await;
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {API_KEY}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(b"10\r\n{\"channel\":\"chu\"\r\n").await.unwrap();
    stream.write_all(b"b;ext=1\r\n,\"data\":42}\r\n0\r\n\r\n").await.unwrap();
    let responses = read_responses(&mut stream, 1).await;
    assert!(responses[0].0.starts_with("HTTP/1.1 200"), "{responses:?}");
    assert!(responses[0].1.contains(r#""channel":"chu""#));

    let body = r#"{"channel":"cont","data":"x"}"#;
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {API_KEY}\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(WAIT, stream.read_exact(&mut interim)).await.unwrap().unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(body.as_bytes()).await.unwrap();
    let responses = read_responses(&mut stream, 1).await;
    assert!(responses[0].1.contains(r#""channel":"cont""#), "{responses:?}");
    let history = server.api_get("/api/channels/chu/history").await;
    assert_eq!(history["messages"][0]["data"], 42);
}

#[tokio::test]
async fn malformed_and_oversize_requests_get_json_errors_and_the_server_lives_on() {
    let server = TestServer::start(&[]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"NOT HTTP AT ALL\r\n\r\n".to_vec(), "HTTP/1.1 400"),
        (format!("GET / HTTP/1.1\r\nx-big: {}\r\n\r\n", "a".repeat(20_000)).into_bytes(), "HTTP/1.1 431"),
        (
            format!("GET / HTTP/1.1\r\n{}\r\n", (0..100).map(|i| format!("x-h{i}: v\r\n")).collect::<String>())
                .into_bytes(),
            "HTTP/1.1 431",
        ),
        (b"POST /api/publish HTTP/1.1\r\ncontent-length: 99999999999\r\n\r\n".to_vec(), "HTTP/1.1 413"),
        (b"POST /api/publish HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n".to_vec(), "HTTP/1.1 400"),
    ];
    for (request, status) in cases {
        let mut stream = server.connect().await;
        stream.write_all(&request).await.unwrap();
        let responses = read_responses(&mut stream, 1).await;
        let (head, body) = responses.first().unwrap_or_else(|| panic!("an answer for {status}"));
        assert!(head.starts_with(status), "{head}");
        assert!(body.contains(r#""error":{"code":"#), "{body}");
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the connection closes after a refused request");
    }
    let health = server.http.get(format!("{}/healthz", server.base)).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn sse_streams_as_chunked_and_http10_requests_close() {
    let server = TestServer::start(&[]);
    let mut stream = server.connect().await;
    stream.write_all(b"GET /sse/wire HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        while !String::from_utf8_lossy(&buf).contains("id: wire~") {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "stream ended early");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("the prelude arrives at once");
    let text = String::from_utf8_lossy(&buf).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(count_header(&text, "transfer-encoding"), 1, "{text}");
    assert!(text.contains("content-type: text/event-stream"), "{text}");

    let mut old = server.connect().await;
    old.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, old.read_to_end(&mut all)).await.expect("HTTP/1.0 closes").unwrap();
    assert!(String::from_utf8_lossy(&all).contains("connection: close"));
}

/// Opens a connection and starts `GET /poll?<query>` on it; returns once the server counts it.
async fn waiting_poll(server: &TestServer, query: &str) -> TcpStream {
    let mut stream = server.connect().await;
    stream
        .write_all(format!("GET /poll?{query} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .expect("sends the poll");
    server.wait_for_connections("poll", 1).await;
    stream
}

#[tokio::test]
async fn a_long_poll_whose_client_leaves_is_released_at_once() {
    let server = TestServer::start(&[]);
    drop(waiting_poll(&server, "channel=left&timeout=60").await);
    // Well before the poll's 60 s: the server notices the close while the poll waits.
    server.wait_for_connections("poll", 0).await;

    // A poll that is still wanted is answered as before, and the connection serves on.
    let mut stream = waiting_poll(&server, "channel=left&timeout=30").await;
    server.publish("left", serde_json::json!("after")).await;
    let answer = read_responses(&mut stream, 1).await;
    assert!(answer[0].1.contains(r#""data":"after""#), "{answer:?}");
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    assert!(read_responses(&mut stream, 1).await[0].0.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_request_pipelined_behind_a_long_poll_waits_for_the_poll_and_is_answered() {
    let server = TestServer::start(&[]);
    let mut stream = waiting_poll(&server, "channel=behind&timeout=30").await;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    // The pipelined request is not taken for a close: the poll still waits for its message.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.wait_for_connections("poll", 1).await;
    server.publish("behind", serde_json::json!(7)).await;
    let responses = read_responses(&mut stream, 2).await;
    assert!(responses[0].1.contains(r#""data":7"#), "{responses:?}");
    assert!(responses[1].0.starts_with("HTTP/1.1 200"), "{responses:?}");
}
