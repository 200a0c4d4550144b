//! Limits: a connection flood, a stream flood and a publish flood from one address hit their
//! limits with clear errors, while clients on other addresses keep receiving on time.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use common::{API_KEY, TestServer, WsClient};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const FLOODER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const BYSTANDER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const PUBLISHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

fn client_from(ip: IpAddr) -> reqwest::Client {
    reqwest::Client::builder().local_address(ip).build().unwrap()
}

async fn tcp_from(server: &TestServer, ip: IpAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((ip, 0).into()).unwrap();
    socket.connect(server.base.trim_start_matches("http://").parse().unwrap()).await.unwrap()
}

async fn ws_from(server: &TestServer, ip: IpAddr) -> WsClient {
    let stream = tcp_from(server, ip).await;
    let (socket, _) =
        tokio_tungstenite::client_async(server.ws_url(), tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .expect("websocket connects");
    WsClient::from_socket(socket)
}

/// Publishes from [`PUBLISHER`]'s address and times until `ws` receives it.
async fn delivery_time(server: &TestServer, ws: &mut WsClient, data: &str) -> Duration {
    let started = Instant::now();
    let body = json!({ "channel": "news", "data": data });
    let publish = client_from(PUBLISHER).post(format!("{}/api/publish", server.base)).bearer_auth(API_KEY);
    assert_eq!(publish.json(&body).send().await.unwrap().status(), 200);
    assert_eq!(ws.next().await.unwrap()["data"], data);
    started.elapsed()
}

async fn limit_hits(server: &TestServer) -> Value {
    let info = client_from(PUBLISHER).get(format!("{}/api/info", server.base)).bearer_auth(API_KEY);
    info.send().await.unwrap().json::<Value>().await.unwrap()["limits"].clone()
}

/// The status line and body of a one-request exchange on a raw connection.
async fn raw_get(mut stream: tokio::net::TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(common::WAIT, stream.read_to_end(&mut answer)).await.expect("an answer in time");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_connection_flood_from_one_address_is_refused_while_others_receive() {
    let server = TestServer::start(&["connection_rate_per_ip=2", "connection_burst_per_ip=20"]);
    let mut bystander = ws_from(&server, BYSTANDER).await;
    bystander.subscribe("news", None).await;

    let mut refused = 0;
    for _ in 0..60 {
        let answer = raw_get(tcp_from(&server, FLOODER).await, "/healthz").await;
        if answer.starts_with("HTTP/1.1 429") {
            assert!(answer.contains(r#""code":"rate_limited""#), "{answer}");
            refused += 1;
        } else {
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
    }
    assert!((30..=40).contains(&refused), "the burst of 20 (and a refill or two) got through: {refused} refused");
    assert!(delivery_time(&server, &mut bystander, "on time").await < Duration::from_secs(1));
    assert!(limit_hits(&server).await["connection_rate"].as_u64().unwrap() >= 30);
}

#[tokio::test]
async fn the_node_refuses_connections_over_max_connections() {
    let server = TestServer::start(&["max_connections=4", "connection_rate_per_ip=0"]);
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = tcp_from(&server, FLOODER).await;
        // A served connection answers; keep it open.
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(stream);
    }
    let answer = raw_get(tcp_from(&server, BYSTANDER).await, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 503") && answer.contains("too_many_connections"), "{answer}");
    drop(held.pop());
    // The closed connection's slot frees up once the server notices the close.
    let deadline = Instant::now() + common::WAIT;
    loop {
        let answer = raw_get(tcp_from(&server, BYSTANDER).await, "/healthz").await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "a slot never freed: {answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sse_streams_and_long_polls_are_limited_per_address() {
    let server = TestServer::start(&["max_streams_per_ip=3"]);
    let flooder = client_from(FLOODER);
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(common::SseClient::connect(&flooder, &format!("{}/sse?channel=news", server.base), None).await);
    }
    for path in ["/sse?channel=news", "/poll?channel=news&timeout=0"] {
        let response = flooder.get(format!("{}{path}", server.base)).send().await.unwrap();
        assert_eq!(response.status(), 429, "{path}");
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "rate_limited");
    }
    // Another address is not affected, and a closed stream frees its slot.
    let other = client_from(BYSTANDER).get(format!("{}/poll?channel=news&timeout=0", server.base));
    assert_eq!(other.send().await.unwrap().status(), 200);
    drop(streams.pop());
    let deadline = Instant::now() + common::WAIT;
    loop {
        let poll = flooder.get(format!("{}/poll?channel=news&timeout=0", server.base)).send().await.unwrap();
        if poll.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(limit_hits(&server).await["streams_per_ip"].as_u64().unwrap() >= 2);
}

#[tokio::test]
async fn a_publish_flood_is_rate_limited_per_connection_and_per_address() {
    let server = TestServer::start(&["anonymous_publish=true", "client_publish_rate=5", "client_publish_burst=5"]);
    let mut bystander = ws_from(&server, BYSTANDER).await;
    bystander.subscribe("news", None).await;
    let mut flooder = ws_from(&server, FLOODER).await;
    let mut accepted = 0;
    for i in 0..30 {
        let reply = flooder.request(json!({"op":"publish","channel":"news","data": i})).await;
        match reply["error"]["code"].as_str() {
            None => accepted += 1,
            Some(code) => assert_eq!(code, "rate_limited", "{reply}"),
        }
    }
    assert!((5..=6).contains(&accepted), "the burst of 5 got through: {accepted}");
    for _ in 0..accepted {
        assert_eq!(bystander.next().await.unwrap()["type"], "message");
    }
    // The flooding connection stays open, and the others keep receiving on time.
    assert!(flooder.request(json!({"op":"history","channel":"news","limit":1})).await.get("result").is_some());
    assert!(delivery_time(&server, &mut bystander, "on time").await < Duration::from_secs(1));

    // Over HTTP the budget is per address.
    let post = || {
        client_from(FLOODER).post(format!("{}/publish", server.base)).json(&json!({"channel":"news","data":1})).send()
    };
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(post().await.unwrap().status().as_u16());
    }
    assert!(statuses.iter().filter(|s| **s == 200).count() <= 6, "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    let from_elsewhere = client_from(BYSTANDER).post(format!("{}/publish", server.base));
    assert_eq!(from_elsewhere.json(&json!({"channel":"news","data":1})).send().await.unwrap().status(), 200);
}
