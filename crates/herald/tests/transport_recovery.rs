//! Recovery (docs/protocol.md §2) on every transport: a client that comes back with its position gets
//! exactly what it missed, in order, then live messages; a position history no longer covers,
//! or from another epoch, gets an explicit reset, then live messages.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use common::{SseClient, TestServer};
use serde_json::{Value, json};

async fn publish_n(server: &TestServer, channel: &str, from: u64, n: u64) {
    for i in from..from + n {
        server.publish(channel, json!({ "i": i })).await;
    }
}

fn data_i(messages: &[Value]) -> Vec<u64> {
    messages.iter().map(|m| m["data"]["i"].as_u64().expect("data.i")).collect()
}

#[tokio::test]
async fn websocket_recovers_exactly_the_missed_messages_then_live() {
    let server = TestServer::start(&[]);
    let mut ws = server.ws().await;
    let sub = ws.subscribe("jobs", None).await;
    let epoch = sub["result"]["epoch"].clone();
    publish_n(&server, "jobs", 1, 5).await;
    let mut last = 0;
    for _ in 0..5 {
        last = ws.next().await.unwrap()["offset"].as_u64().unwrap();
    }
    drop(ws);
    publish_n(&server, "jobs", 6, 50).await;

    let mut ws = server.ws().await;
    let reply = ws.subscribe("jobs", Some(json!({ "epoch": epoch, "offset": last }))).await;
    assert_eq!(reply["result"]["recovered"], true);
    assert_eq!(reply["result"]["offset"], 55);
    let mut got = Vec::new();
    for _ in 0..50 {
        got.push(ws.next().await.unwrap());
    }
    assert_eq!(data_i(&got), (6..56).collect::<Vec<_>>());
    server.publish("jobs", json!({ "i": 56 })).await;
    assert_eq!(ws.next().await.unwrap()["data"]["i"], 56);
}

#[tokio::test]
async fn websocket_resets_for_a_lost_position_or_epoch() {
    let server = TestServer::start(&["history_size=10"]);
    let mut ws = server.ws().await;
    let sub = ws.subscribe("jobs", None).await;
    let epoch = sub["result"]["epoch"].clone();
    drop(ws);
    publish_n(&server, "jobs", 1, 30).await;

    let lost = [json!({ "epoch": epoch, "offset": 0 }), json!({ "epoch": "otherEpoch", "offset": 29 })];
    for (round, since) in lost.into_iter().enumerate() {
        let mut ws = server.ws().await;
        let reply = ws.subscribe("jobs", Some(since)).await;
        assert_eq!(reply["result"]["recovered"], false);
        let reset = ws.next().await.unwrap();
        assert_eq!(reset["type"], "reset", "{reset}");
        assert_eq!(
            (reset["channel"].clone(), reset["offset"].clone(), reset["epoch"].clone()),
            (json!("jobs"), json!(30 + round), epoch.clone())
        );
        server.publish("jobs", json!({ "i": 100 })).await;
        assert_eq!(ws.next().await.unwrap()["data"]["i"], 100, "live after the reset");
    }
}

#[tokio::test]
async fn sse_recovers_with_last_event_id_header_and_query() {
    let server = TestServer::start(&[]);
    for (round, use_header) in [(0u64, true), (1, false)] {
        let channel = format!("feed{round}");
        let mut sse = server.sse(&format!("channel={channel}"), None).await;
        publish_n(&server, &channel, 1, 3).await;
        for _ in 0..3 {
            sse.next().await.unwrap();
        }
        let last_id = sse.last_id.clone().expect("an id");
        drop(sse);
        publish_n(&server, &channel, 4, 50).await;

        let mut sse = if use_header {
            server.sse(&format!("channel={channel}"), Some(&last_id)).await
        } else {
            server.sse(&format!("channel={channel}&lastEventId={last_id}"), None).await
        };
        let mut got = Vec::new();
        for _ in 0..50 {
            got.push(sse.next().await.unwrap().data);
        }
        assert_eq!(data_i(&got), (4..54).collect::<Vec<_>>());
        server.publish(&channel, json!({ "i": 54 })).await;
        assert_eq!(sse.next().await.unwrap().data["data"]["i"], 54);
    }
}

#[tokio::test]
async fn sse_stream_that_saw_nothing_still_resumes_from_its_start() {
    let server = TestServer::start(&[]);
    server.publish("quiet", json!({ "i": 0 })).await;
    // The stream's first bytes carry an id: the position it started at.
    let mut raw = reqwest::get(format!("{}/sse?channel=quiet", server.base)).await.unwrap();
    let mut prelude = String::new();
    while !prelude.contains("\n\n") {
        let chunk = tokio::time::timeout(common::WAIT, raw.chunk()).await.unwrap().unwrap().unwrap();
        prelude.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let start_id = prelude.lines().find_map(|l| l.strip_prefix("id: ")).expect("an id in the prelude").to_string();
    drop(raw);
    // The connection drops before any message; the browser reconnects with that id.
    publish_n(&server, "quiet", 1, 3).await;
    let mut resumed = server.sse("channel=quiet", Some(&start_id)).await;
    for i in 1..=3 {
        assert_eq!(resumed.next().await.unwrap().data["data"]["i"], i);
    }
}

#[tokio::test]
async fn sse_resets_for_a_lost_position() {
    let server = TestServer::start(&["history_size=5"]);
    let mut sse = server.sse("channel=a", None).await;
    server.publish("a", json!({ "i": 1 })).await;
    sse.next().await.unwrap();
    let id = sse.last_id.clone().unwrap();
    drop(sse);
    publish_n(&server, "a", 2, 20).await;
    let mut sse = server.sse("channel=a", Some(&id)).await;
    let reset = sse.next().await.unwrap();
    assert_eq!(reset.event, "reset");
    assert_eq!((reset.data["type"].clone(), reset.data["offset"].clone()), (json!("reset"), json!(21)));
    assert_eq!(reset.data["reason"], "history_exceeded");
    server.publish("a", json!({ "i": 99 })).await;
    let live = sse.next().await.unwrap();
    assert_eq!(live.data["data"]["i"], 99);
    // The reset moved the cursor: resuming from the live message's id loses nothing more.
    assert!(live.id.unwrap().ends_with("~22"));
}

#[tokio::test]
async fn long_poll_recovers_from_its_cursor_and_resets_a_lost_one() {
    let server = TestServer::start(&["history_size=60"]);
    let (_, first) = server.poll("channel=jobs&timeout=0").await;
    let cursor = first["cursor"].as_str().unwrap().to_string();
    publish_n(&server, "jobs", 1, 50).await;
    let (_, body) = server.poll(&format!("channel=jobs&cursor={cursor}")).await;
    assert_eq!(data_i(body["messages"].as_array().unwrap()), (1..51).collect::<Vec<_>>());
    assert_eq!(body["resets"], json!([]));

    // Live after the recovery.
    let next = body["cursor"].as_str().unwrap().to_string();
    let base = server.base.clone();
    let waiting = tokio::spawn(async move {
        reqwest::get(format!("{base}/poll?channel=jobs&cursor={next}")).await.unwrap().json::<Value>().await.unwrap()
    });
    server.wait_for_connections("poll", 1).await;
    server.publish("jobs", json!({ "i": 51 })).await;
    assert_eq!(data_i(waiting.await.unwrap()["messages"].as_array().unwrap()), [51]);

    // A cursor history no longer covers: an explicit reset with the current position.
    publish_n(&server, "jobs", 52, 70).await;
    let (_, body) = server.poll(&format!("channel=jobs&cursor={cursor}")).await;
    assert_eq!(body["messages"], json!([]));
    assert_eq!(body["resets"][0]["reason"], "history_exceeded");
    assert_eq!(body["resets"][0]["offset"], 121);
    let epoch = body["resets"][0]["epoch"].as_str().unwrap();
    assert_eq!(body["cursor"], format!("jobs~{epoch}~121"));
    // Another epoch: a reset too.
    let (_, body) = server.poll("channel=jobs&cursor=jobs~gone~5&timeout=0").await;
    assert_eq!(body["resets"][0]["reason"], "epoch_changed");
}

#[tokio::test]
async fn one_cursor_resumes_three_channels_on_sse_and_long_poll() {
    let server = TestServer::start(&[]);
    let channels = ["a", "b:x", "c/y"];
    let query = "channel=a&channel=b:x&channel=c/y";
    let mut sse: SseClient = server.sse(query, None).await;
    for c in channels {
        server.publish(c, json!({ "i": 0 })).await;
    }
    for _ in 0..3 {
        sse.next().await.unwrap();
    }
    let sse_id = sse.last_id.clone().unwrap();
    drop(sse);
    let (_, poll) = server.poll(&format!("{query}&timeout=0")).await;
    let poll_cursor = poll["cursor"].as_str().unwrap().to_string();

    for round in 1..=10u64 {
        for c in channels {
            server.publish(c, json!({ "i": round })).await;
        }
    }
    let mut want: Vec<(String, u64)> = Vec::new();
    for round in 1..=10u64 {
        for c in channels {
            want.push((c.to_string(), round));
        }
    }

    let mut sse = server.sse(query, Some(&sse_id)).await;
    let mut got = Vec::new();
    for _ in 0..30 {
        let e = sse.next().await.unwrap().data;
        got.push((e["channel"].as_str().unwrap().to_string(), e["data"]["i"].as_u64().unwrap()));
    }
    let per_channel =
        |v: &[(String, u64)], c: &str| v.iter().filter(|(ch, _)| ch == c).map(|(_, i)| *i).collect::<Vec<_>>();
    for c in channels {
        assert_eq!(per_channel(&got, c), per_channel(&want, c), "sse channel {c}");
    }

    let encoded: String = poll_cursor.replace('/', "%2F").replace(':', "%3A");
    let (_, body) = server.poll(&format!("{query}&cursor={encoded}")).await;
    let got: Vec<(String, u64)> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["channel"].as_str().unwrap().to_string(), e["data"]["i"].as_u64().unwrap()))
        .collect();
    for c in channels {
        assert_eq!(per_channel(&got, c), per_channel(&want, c), "poll channel {c}");
    }
}

/// A position the server cannot read is still a position: the stream starts live with a
/// `malformed_position` reset for each of its channels (never a 400, after which a browser's
/// EventSource stops reconnecting), and then delivers live messages.
#[tokio::test]
async fn an_unreadable_position_is_a_reset_on_every_transport() {
    let server = TestServer::start(&[]);
    publish_n(&server, "m1", 1, 3).await;
    publish_n(&server, "m2", 1, 2).await;

    // SSE: a Last-Event-ID that is no cursor, over two channels.
    let mut sse = server.sse("channel=m1&channel=m2", Some("garbage~~")).await;
    let mut reset_channels = Vec::new();
    for _ in 0..2 {
        let reset = sse.next().await.unwrap();
        assert_eq!(reset.event, "reset", "{reset:?}");
        assert_eq!(reset.data["reason"], "malformed_position");
        reset_channels.push(reset.data["channel"].as_str().unwrap().to_string());
    }
    reset_channels.sort();
    assert_eq!(reset_channels, ["m1", "m2"]);
    publish_n(&server, "m1", 4, 1).await;
    let live = sse.next().await.unwrap();
    assert_eq!((live.data["offset"].clone(), live.data["data"]["i"].clone()), (json!(4), json!(4)));

    // The query form, as a browser's first connect with a stored id sends it.
    let mut sse = server.sse("channel=m1&last_event_id=not-a-cursor", None).await;
    let reset = sse.next().await.unwrap();
    assert_eq!((reset.event.as_str(), reset.data["offset"].clone()), ("reset", json!(4)));

    // Long polling: a cursor that does not parse answers 200 with the resets and a cursor
    // that resumes from now.
    let (status, body) = server.poll("channel=m1&channel=m2&cursor=%25%25%25&timeout=0").await;
    assert_eq!(status, 200, "{body}");
    let reasons: Vec<_> = body["resets"].as_array().unwrap().iter().map(|r| r["reason"].clone()).collect();
    assert_eq!(reasons, [json!("malformed_position"), json!("malformed_position")], "{body}");
    let cursor = body["cursor"].as_str().unwrap().to_string();
    publish_n(&server, "m2", 3, 1).await;
    let (_, body) = server.poll(&format!("channel=m1&channel=m2&cursor={cursor}&timeout=5")).await;
    assert_eq!(data_i(body["messages"].as_array().unwrap()), [3]);
    assert_eq!(body["resets"], json!([]));

    // WebSocket: a `since` whose epoch is not of Herald's shape.
    let mut ws = server.ws().await;
    let reply = ws.subscribe("m1", Some(json!({"epoch": "not/an epoch!", "offset": 2}))).await;
    assert_eq!(reply["result"]["recovered"], false, "{reply}");
    let reset = ws.next().await.unwrap();
    assert_eq!((reset["type"].clone(), reset["reason"].clone()), (json!("reset"), json!("malformed_position")));
    publish_n(&server, "m1", 5, 1).await;
    assert_eq!(ws.next().await.unwrap()["data"]["i"], 5, "live after the reset");
}
