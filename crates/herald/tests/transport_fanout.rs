//! 1,000 concurrent subscribers on one channel each receive all of 200 messages published as
//! fast as the API takes them: none lost, none duplicated, in order — on each transport.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use std::time::Duration;

use common::{API_KEY, TestServer};
use futures_util::future::join_all;
use serde_json::{Value, json};

const SUBSCRIBERS: usize = 1000;
const MESSAGES: u64 = 200;

/// Publishes MESSAGES messages from 4 concurrent publishers; every reply has an offset.
async fn publish_all(server: &TestServer, channel: &str) {
    let http = reqwest::Client::new();
    let publishers = (0..4).map(|_| {
        let (http, url, channel) = (http.clone(), format!("{}/api/publish", server.base), channel.to_string());
        tokio::spawn(async move {
            for _ in 0..MESSAGES / 4 {
                let reply: Value = http
                    .post(&url)
                    .bearer_auth(API_KEY)
                    .json(&json!({ "channel": channel, "data": "x" }))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert!(reply["offset"].as_u64().is_some(), "{reply}");
            }
        })
    });
    for p in join_all(publishers).await {
        p.unwrap();
    }
}

/// A subscriber whose next message offset can be awaited.
trait Subscriber: Send + 'static {
    fn next_offset(&mut self) -> impl std::future::Future<Output = u64> + Send;
}

impl Subscriber for common::WsClient {
    async fn next_offset(&mut self) -> u64 {
        self.next().await.expect("message")["offset"].as_u64().unwrap()
    }
}

impl Subscriber for common::SseClient {
    async fn next_offset(&mut self) -> u64 {
        self.next().await.expect("event").data["offset"].as_u64().unwrap()
    }
}

/// Spawns one task per subscriber collecting MESSAGES offsets.
fn spawn_readers<S: Subscriber>(clients: Vec<S>) -> Vec<tokio::task::JoinHandle<Vec<u64>>> {
    let read = |mut s: S| async move {
        let mut got = Vec::new();
        while got.len() < MESSAGES as usize {
            got.push(s.next_offset().await);
        }
        got
    };
    clients.into_iter().map(|s| tokio::spawn(read(s))).collect()
}

/// Publishes to the channel the `readers` subscribe to, then checks what each one received.
async fn publish_and_check(server: &TestServer, readers: Vec<tokio::task::JoinHandle<Vec<u64>>>) {
    publish_all(server, "fan").await;
    let received: Vec<Vec<u64>> = join_all(readers).await.into_iter().map(Result::unwrap).collect();
    assert_all_in_order(&received);
}

/// Every subscriber saw offsets 1..=MESSAGES exactly once, in order.
/// A thousand clients from one address: the per-address limits (for floods) are off.
const ONE_ADDRESS: &[&str] = &["connection_rate_per_ip=0", "max_streams_per_ip=0"];

fn assert_all_in_order(received: &[Vec<u64>]) {
    let want: Vec<u64> = (1..=MESSAGES).collect();
    assert_eq!(received.len(), SUBSCRIBERS);
    for (n, got) in received.iter().enumerate() {
        assert_eq!(got, &want, "subscriber {n} got a gap, a duplicate or a reordering");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_websocket_subscribers_get_every_message() {
    let server = TestServer::start(ONE_ADDRESS);
    let url = server.ws_url();
    let mut clients = Vec::new();
    for _ in 0..SUBSCRIBERS / 100 {
        let batch = (0..100).map(|_| {
            let url = url.clone();
            async move {
                let mut ws = common::WsClient::connect(&url).await;
                ws.subscribe("fan", None).await;
                ws
            }
        });
        clients.extend(join_all(batch).await);
    }
    publish_and_check(&server, spawn_readers(clients)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sse_subscribers_get_every_message() {
    let server = TestServer::start(ONE_ADDRESS);
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let url = format!("{}/sse?channel=fan", server.base);
    let mut clients = Vec::new();
    for _ in 0..SUBSCRIBERS / 100 {
        clients.extend(join_all((0..100).map(|_| common::SseClient::connect(&http, &url, None))).await);
    }
    publish_and_check(&server, spawn_readers(clients)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_long_pollers_get_every_message() {
    let server = TestServer::start(ONE_ADDRESS);
    let http = reqwest::Client::new();
    // Every poller starts from the same position, then polls in a loop with its cursor.
    let (_, first) = server.poll("channel=fan&timeout=0").await;
    let start = first["cursor"].as_str().unwrap().to_string();
    let readers = (0..SUBSCRIBERS)
        .map(|_| {
            let (http, base, mut cursor) = (http.clone(), server.base.clone(), start.clone());
            tokio::spawn(async move {
                let mut got = Vec::new();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                while got.len() < MESSAGES as usize && tokio::time::Instant::now() < deadline {
                    let body: Value = http
                        .get(format!("{base}/poll?channel=fan&timeout=5&cursor={cursor}"))
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    assert_eq!(body["resets"], json!([]), "no reset expected");
                    got.extend(body["messages"].as_array().unwrap().iter().map(|m| m["offset"].as_u64().unwrap()));
                    cursor = body["cursor"].as_str().unwrap().to_string();
                }
                got
            })
        })
        .collect();
    publish_and_check(&server, readers).await;
}
