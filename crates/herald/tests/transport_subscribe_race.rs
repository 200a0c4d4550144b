//! Subscribing while a channel is being published to: every subscriber gets exactly the
//! messages after its starting point — its `since` when it recovers, the reply's offset when
//! it starts live — with no gap and no duplicate where recovered and live messages meet.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use std::{sync::Arc, time::Duration};

use common::{TestServer, WsClient};
use serde_json::json;

/// Messages published while the subscribers join.
const MESSAGES: u64 = 400;
const SUBSCRIBERS: u64 = 40;

#[tokio::test]
async fn subscribers_joining_mid_stream_get_every_later_message_once() {
    let server = Arc::new(TestServer::start(&["history_size=1000"]));
    let channel = "race";
    let first = server.publish(channel, json!(0)).await;
    let epoch = first["epoch"].as_str().unwrap().to_string();
    let last = 1 + MESSAGES;

    let publisher = {
        let server = server.clone();
        tokio::spawn(async move {
            for i in 1..=MESSAGES {
                server.publish(channel, json!(i)).await;
            }
        })
    };
    let mut joins = Vec::new();
    for k in 0..SUBSCRIBERS {
        let server = server.clone();
        let epoch = epoch.clone();
        joins.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(k * 7)).await;
            let mut ws = WsClient::connect(&server.ws_url()).await;
            // Half start live; half resume from a position a little behind the stream.
            let since = if k % 2 == 0 {
                None
            } else {
                let now = server.api_get(&format!("/api/channels/{channel}/history?limit=0")).await;
                Some(now["offset"].as_u64().unwrap().saturating_sub(15).max(1))
            };
            let reply = ws.subscribe(channel, since.map(|offset| json!({ "epoch": epoch, "offset": offset }))).await;
            let start = match since {
                Some(offset) => {
                    assert_eq!(reply["result"]["recovered"], true, "{reply}");
                    offset
                }
                None => reply["result"]["offset"].as_u64().unwrap(),
            };
            let mut got = Vec::new();
            while got.last().copied().unwrap_or(start) < last {
                let push = ws.next().await.expect("the stream goes on");
                if push["type"] == "message" {
                    got.push(push["offset"].as_u64().unwrap());
                }
            }
            let expected: Vec<u64> = (start + 1..=last).collect();
            assert_eq!(got, expected, "subscriber {k} (since {since:?}) gets every later message once, in order");
        }));
    }
    publisher.await.unwrap();
    for join in joins {
        join.await.unwrap();
    }
}
