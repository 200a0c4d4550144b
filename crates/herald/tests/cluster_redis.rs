//! The Redis engine (issue 7), black-box: a real `redis-server` on a free loopback port and
//! three real Herald nodes sharing it. A publish on one node reaches subscribers on the
//! others over every transport; clients move between nodes with their positions; a Redis
//! restart or a lost pub/sub link ends with every message or an explicit reset, and the nodes
//! ready again; a killed node's clients recover on another.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use std::{process::Command, time::Duration};

use common::{
    API_KEY, SseClient, TestServer, WAIT, WsClient,
    redis::{Redis, node, ready, wait_ready},
    streams::{operate, piece, start},
    token,
};
use serde_json::{Value, json};

/// `POST /api/publish` of `data` to `channel` on `node`, whatever the answer: its status and
/// body.
async fn try_publish(node: &TestServer, channel: &str, data: Value) -> (u16, Value) {
    let response = node
        .http
        .post(format!("{}/api/publish", node.base))
        .bearer_auth(API_KEY)
        .json(&json!({ "channel": channel, "data": data }))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Publishes `n` messages `{"n": first..}` on `node`; returns their offsets and epoch.
async fn publish_n(node: &TestServer, channel: &str, first: u64, n: u64) -> (String, Vec<u64>) {
    let mut epoch = String::new();
    let mut offsets = Vec::new();
    for i in first..first + n {
        let reply = node.publish(channel, json!({ "n": i })).await;
        epoch = reply["epoch"].as_str().unwrap().to_string();
        offsets.push(reply["offset"].as_u64().unwrap());
    }
    (epoch, offsets)
}

/// A streaming client's messages and resets, in the order they arrive.
trait Frames {
    /// The next message or reset (other pushes and events are skipped).
    async fn frame(&mut self) -> Value;
}

impl Frames for WsClient {
    async fn frame(&mut self) -> Value {
        loop {
            let frame = self.next().await.expect("the node keeps the socket open");
            if frame["type"] == "message" || frame["type"] == "reset" {
                return frame;
            }
        }
    }
}

impl Frames for SseClient {
    async fn frame(&mut self) -> Value {
        loop {
            let event = self.next().await.expect("the stream stays open");
            if event.event == "message" || event.event == "reset" {
                return event.data;
            }
        }
    }
}

/// Reads until `n` messages arrived; resets are returned in line.
async fn read(client: &mut impl Frames, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.iter().filter(|v: &&Value| v["type"] == "message").count() < n {
        got.push(client.frame().await);
    }
    got
}

/// Reads until a message carrying `data`; resets are returned in line.
async fn read_until(client: &mut impl Frames, data: &Value) -> Vec<Value> {
    let mut got: Vec<Value> = Vec::new();
    while got.last().is_none_or(|last| last["data"] != *data) {
        got.push(client.frame().await);
    }
    got
}

/// Long-polls `node` from `cursor` until `n` messages arrived; returns them (and resets) and
/// the last cursor.
async fn poll_read(node: &TestServer, channel: &str, mut cursor: String, n: usize) -> (Vec<Value>, String) {
    let mut got: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.iter().filter(|v| v["type"] == "message").count() < n {
        assert!(tokio::time::Instant::now() < deadline, "poll got only {got:?}");
        let (status, body) = node.poll(&format!("channel={channel}&cursor={cursor}&timeout=2")).await;
        assert_eq!(status, 200, "{body}");
        got.extend(body["resets"].as_array().unwrap().iter().cloned());
        got.extend(body["messages"].as_array().unwrap().iter().cloned());
        cursor = body["cursor"].as_str().unwrap().to_string();
    }
    (got, cursor)
}

fn message_offsets(frames: &[Value]) -> Vec<u64> {
    frames.iter().filter(|f| f["type"] == "message").map(|f| f["offset"].as_u64().unwrap()).collect()
}

/// Every message follows the one before it in the same epoch, or a reset naming its epoch and
/// the offset just before it: never a silent gap, never a duplicate.
fn assert_no_silent_gap(frames: &[Value], start: (&str, u64)) {
    let (mut epoch, mut offset) = (start.0.to_string(), start.1);
    for frame in frames {
        let (e, o) = (frame["epoch"].as_str().unwrap(), frame["offset"].as_u64().unwrap());
        if frame["type"] == "reset" {
            (epoch, offset) = (e.to_string(), o);
            continue;
        }
        assert_eq!((e, o), (epoch.as_str(), offset + 1), "a silent gap or duplicate in {frames:#?}");
        offset = o;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_on_one_node_reaches_subscribers_on_the_others_over_every_transport() {
    let redis = Redis::start();
    let (a, b, c) = (node(&redis), node(&redis), node(&redis));
    wait_ready(&[&a, &b, &c], true).await;

    let mut ws = b.ws().await;
    let subscribed = ws.subscribe("jobs", None).await;
    let epoch = subscribed["result"]["epoch"].as_str().unwrap().to_string();
    assert_eq!(subscribed["result"]["offset"], 0);
    let mut sse = c.sse("channel=jobs", None).await;
    let (_, first) = c.poll("channel=jobs&timeout=0").await;
    let cursor = first["cursor"].as_str().unwrap().to_string();

    let (published_epoch, offsets) = publish_n(&a, "jobs", 1, 5).await;
    assert_eq!(published_epoch, epoch, "every node agrees on the channel's epoch");
    assert_eq!(offsets, [1, 2, 3, 4, 5]);

    let over_ws = read(&mut ws, 5).await;
    let over_sse = read(&mut sse, 5).await;
    let (over_poll, _) = poll_read(&c, "jobs", cursor, 5).await;
    for frames in [&over_ws, &over_sse, &over_poll] {
        assert_eq!(message_offsets(frames), [1, 2, 3, 4, 5]);
        assert_no_silent_gap(frames, (&epoch, 0));
        assert_eq!(frames[4]["data"], json!({ "n": 5 }));
    }
    // History is shared: any node answers the same.
    let history = c.api_get("/api/channels/jobs/history?limit=2").await;
    assert_eq!((history["offset"].as_u64(), history["epoch"].as_str()), (Some(5), Some(epoch.as_str())));
    assert_eq!(message_offsets(history["messages"].as_array().unwrap()), [4, 5]);
    // A WebSocket publish on C and a subscriber on B: the same stream.
    let mut publisher = c.ws().await;
    let reply = publisher.request(json!({ "op": "publish", "channel": "jobs", "data": "from-c" })).await;
    assert_eq!(reply["result"]["offset"], 6, "{reply}");
    let next = read(&mut ws, 1).await;
    assert_eq!((next[0]["offset"].as_u64(), &next[0]["data"]), (Some(6), &json!("from-c")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_saw_a_channel_serves_its_latest_messages_and_pages_its_history() {
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    wait_ready(&[&a, &b], true).await;
    let (epoch, _) = publish_n(&a, "ticker", 1, 5).await;
    // B mirrors `ticker` only once these subscribers ask: the latest come from Redis.
    let mut ws = b.ws().await;
    ws.request(json!({ "op": "subscribe", "channel": "ticker", "last": 2 })).await;
    let mut sse = b.sse("channel=ticker&last=3", None).await;
    let (_, first_poll) = b.poll("channel=ticker&last=1&timeout=5").await;
    assert_eq!(message_offsets(&read(&mut ws, 2).await), [4, 5]);
    assert_eq!(message_offsets(&read(&mut sse, 3).await), [3, 4, 5]);
    assert_eq!(message_offsets(first_poll["messages"].as_array().unwrap()), [5]);
    publish_n(&a, "ticker", 6, 1).await;
    let live = read(&mut ws, 1).await;
    assert_no_silent_gap(&live, (&epoch, 5));
    let page = b.api_get("/api/channels/ticker/history?before=5&limit=2").await;
    assert_eq!(message_offsets(page["messages"].as_array().unwrap()), [4, 3], "newest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_hold_across_nodes() {
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    wait_ready(&[&a, &b], true).await;
    let body = json!({ "channel": "orders", "data": {"id": 7}, "idempotency_key": "order-7" });
    let first = a.publish_body(body.clone()).await;
    let retry = b.publish_body(body).await;
    assert_eq!(first, retry, "a retry on another node gets the first answer");
    let history = b.api_get("/api/channels/orders/history").await;
    assert_eq!(message_offsets(history["messages"].as_array().unwrap()), [1], "published once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_move_between_nodes_with_their_positions() {
    let redis = Redis::start();
    let (a, b, c) = (node(&redis), node(&redis), node(&redis));
    wait_ready(&[&a, &b, &c], true).await;

    // WebSocket: read 3 on B, leave, 3 more are published, come back on C from the position.
    let mut ws = b.ws().await;
    let epoch = ws.subscribe("moves", None).await["result"]["epoch"].as_str().unwrap().to_string();
    let mut sse = b.sse("channel=moves", None).await;
    let (_, first) = b.poll("channel=moves&timeout=0").await;
    publish_n(&a, "moves", 1, 3).await;
    assert_eq!(message_offsets(&read(&mut ws, 3).await), [1, 2, 3]);
    assert_eq!(message_offsets(&read(&mut sse, 3).await), [1, 2, 3]);
    let (polled, poll_cursor) = poll_read(&b, "moves", first["cursor"].as_str().unwrap().to_string(), 3).await;
    assert_eq!(message_offsets(&polled), [1, 2, 3]);
    let sse_id = sse.last_id.clone().unwrap();
    drop((ws, sse));

    publish_n(&a, "moves", 4, 3).await;

    let mut ws = c.ws().await;
    let reply = ws.subscribe("moves", Some(json!({ "epoch": epoch, "offset": 3 }))).await;
    assert_eq!(reply["result"]["recovered"], true, "{reply}");
    let mut sse = c.sse("channel=moves", Some(&sse_id)).await;
    let (polled, _) = poll_read(&c, "moves", poll_cursor, 3).await;
    publish_n(&a, "moves", 7, 1).await;
    let over_ws = read(&mut ws, 4).await;
    let over_sse = read(&mut sse, 4).await;
    assert_eq!(message_offsets(&over_ws), [4, 5, 6, 7]);
    assert_eq!(message_offsets(&over_sse), [4, 5, 6, 7]);
    assert_eq!(message_offsets(&polled), [4, 5, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_ends_in_every_message_or_a_reset_and_the_nodes_ready_again() {
    let mut redis = Redis::start();
    let (a, b, c) = (node(&redis), node(&redis), node(&redis));
    wait_ready(&[&a, &b, &c], true).await;
    let mut ws = b.ws().await;
    let epoch = ws.subscribe("live", None).await["result"]["epoch"].as_str().unwrap().to_string();
    let mut sse = c.sse("channel=live", None).await;
    publish_n(&a, "live", 1, 3).await;

    redis.kill();
    wait_ready(&[&a, &b, &c], false).await;
    let (status, body) = try_publish(&a, "live", json!(0)).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "engine_unavailable");

    // This Redis keeps nothing: the channel comes back in a new epoch.
    redis.restart();
    wait_ready(&[&a, &b, &c], true).await;
    let (new_epoch, offsets) = publish_n(&a, "live", 4, 2).await;
    assert_ne!(new_epoch, epoch);
    assert_eq!(offsets, [1, 2]);

    // The subscribers kept their connections throughout. (A message published just before
    // the kill may never have left Redis for their node: the reset covers it.)
    let last = json!({ "n": 5 });
    for frames in [read_until(&mut ws, &last).await, read_until(&mut sse, &last).await] {
        assert_no_silent_gap(&frames, (&epoch, 0));
        let reset = frames.iter().find(|f| f["type"] == "reset").expect("an explicit reset");
        assert_eq!(reset["epoch"], new_epoch.as_str());
        let after_reset: Vec<&Value> = frames.iter().skip_while(|f| f["type"] != "reset").skip(1).collect();
        assert_eq!(after_reset.len(), 2, "both new-epoch messages follow the reset: {frames:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_pubsub_link_is_caught_up_from_history_without_a_gap() {
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    wait_ready(&[&a, &b], true).await;
    let mut ws = b.ws().await;
    let epoch = ws.subscribe("feed", None).await["result"]["epoch"].as_str().unwrap().to_string();
    let mut sse = b.sse("channel=feed", None).await;
    publish_n(&a, "feed", 1, 2).await;
    assert_eq!(message_offsets(&read(&mut ws, 2).await), [1, 2]);

    // Cut every node's pub/sub link, then publish at once: B misses these on pub/sub.
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    publish_n(&a, "feed", 3, 20).await;

    let over_ws = read(&mut ws, 20).await;
    assert_eq!(message_offsets(&over_ws), (3..=22).collect::<Vec<_>>(), "every message, in order, no reset");
    let over_sse = read(&mut sse, 22).await;
    assert_eq!(message_offsets(&over_sse), (1..=22).collect::<Vec<_>>());
    assert_no_silent_gap(&over_sse, (&epoch, 0));
    wait_ready(&[&a, &b], true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_clients_recover_on_another_node() {
    let redis = Redis::start();
    let (a, mut b, c) = (node(&redis), node(&redis), node(&redis));
    wait_ready(&[&a, &b, &c], true).await;
    let mut ws = b.ws().await;
    let epoch = ws.subscribe("orders", None).await["result"]["epoch"].as_str().unwrap().to_string();
    let mut sse = b.sse("channel=orders", None).await;
    publish_n(&a, "orders", 1, 2).await;
    assert_eq!(message_offsets(&read(&mut ws, 2).await), [1, 2]);
    assert_eq!(message_offsets(&read(&mut sse, 2).await), [1, 2]);
    let sse_id = sse.last_id.clone().unwrap();

    b.child.kill().unwrap();
    b.child.wait().unwrap();
    assert!(ws.next().await.is_none(), "the killed node's socket closes");
    publish_n(&a, "orders", 3, 3).await;

    let mut ws = c.ws().await;
    let reply = ws.subscribe("orders", Some(json!({ "epoch": epoch, "offset": 2 }))).await;
    assert_eq!(reply["result"]["recovered"], true);
    assert_eq!(message_offsets(&read(&mut ws, 3).await), [3, 4, 5]);
    let mut sse = c.sse("channel=orders", Some(&sse_id)).await;
    assert_eq!(message_offsets(&read(&mut sse, 3).await), [3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_shared_and_joins_and_leaves_reach_every_node() {
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    wait_ready(&[&a, &b], true).await;
    let users = |names: &[&str]| {
        let mut names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        names.sort();
        names
    };
    let members = |body: &Value| {
        let mut names: Vec<String> =
            body["members"].as_array().unwrap().iter().map(|m| m["user"].as_str().unwrap().to_string()).collect();
        names.sort();
        names
    };

    let mut ann = WsClient::connect(&format!("{}?token={}", a.ws_url(), token("ann", 300, &["room:*"], &[]))).await;
    ann.subscribe("room:1", None).await;
    let mut bob = WsClient::connect(&format!("{}?token={}", b.ws_url(), token("bob", 300, &["room:*"], &[]))).await;
    bob.subscribe("room:1", None).await;

    // Ann, on A, hears Bob join on B; both nodes list both.
    let join = ann.next().await.unwrap();
    assert_eq!((join["type"].as_str(), join["user"].as_str()), (Some("join"), Some("bob")), "{join}");
    assert_eq!(join["info"], json!({ "name": "bob" }));
    for node in [&a, &b] {
        assert_eq!(members(&node.api_get("/api/channels/room:1/presence").await), users(&["ann", "bob"]));
    }
    let over_ws = bob.request(json!({ "op": "presence", "channel": "room:1" })).await;
    assert_eq!(members(&over_ws["result"]), users(&["ann", "bob"]));

    // Bob leaves: Ann hears it, and nobody lists him.
    bob.request(json!({ "op": "unsubscribe", "channel": "room:1" })).await;
    let leave = ann.next().await.unwrap();
    assert_eq!((leave["type"].as_str(), leave["user"].as_str()), (Some("leave"), Some("bob")), "{leave}");
    assert_eq!(members(&a.api_get("/api/channels/room:1/presence").await), users(&["ann"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_protected_redis_admits_only_the_right_password() {
    let redis = Redis::with_args(&["--save", "", "--appendonly", "no", "--requirepass", "s3cret-pass"]);
    let url = |password: &str| format!("engine=\"redis://:{password}@127.0.0.1:{}\"", redis.port);
    let right = TestServer::start(&[url("s3cret-pass").as_str()]);
    let wrong = TestServer::start(&[url("not-it").as_str()]);
    wait_ready(&[&right], true).await;
    assert_eq!(right.publish("guarded", json!(1)).await["offset"], 1);

    // Give the wrong one the time it took the right one, and more: it never gets in.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let response = wrong.http.get(format!("{}/readyz", wrong.base)).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "engine_unavailable");
    assert_eq!(try_publish(&wrong, "guarded", json!(2)).await.0, 503);
}

#[test]
fn a_bad_engine_url_stops_the_start_with_a_clear_error() {
    for (engine, expected) in [("mongodb://x", "engine must be"), ("redis://127.0.0.1:notaport", "invalid Redis URL")] {
        let out = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["serve", "--listen", "127.0.0.1:0", "--insecure-no-api-key", "--engine", engine])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{engine} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{engine}: {stderr}");
    }
}

/// A Redis Cluster of three primaries (no replicas) on free loopback ports.
fn redis_cluster() -> Vec<Redis> {
    let args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no"];
    let shards: Vec<Redis> = (0..3).map(|_| Redis::with_args(&args)).collect();
    let addresses: Vec<String> = shards.iter().map(|r| format!("127.0.0.1:{}", r.port)).collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stdout));
    wait_cluster_ok(&shards);
    shards
}

fn wait_cluster_ok(shards: &[Redis]) {
    let deadline = std::time::Instant::now() + WAIT;
    while !shards.iter().all(|r| r.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")) {
        assert!(std::time::Instant::now() < deadline, "the Redis Cluster never became ok");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_feeds_are_sharded_and_a_lost_shard_ends_in_a_reset_for_its_channels_only() {
    let mut shards = redis_cluster();
    let engine = format!("engine=\"redis://127.0.0.1:{}\"", shards[0].port);
    let (a, b) = (
        TestServer::start(&[engine.as_str(), "redis_cluster=true"]),
        TestServer::start(&[engine.as_str(), "redis_cluster=true"]),
    );
    wait_ready(&[&a, &b], true).await;

    // Twelve channels, spread over the shards by their hash tags; subscribers on B.
    let channels: Vec<String> = (0..12).map(|i| format!("shard-{i}")).collect();
    let mut ws = b.ws().await;
    let mut epochs = Vec::new();
    for channel in &channels {
        epochs.push(ws.subscribe(channel, None).await["result"]["epoch"].as_str().unwrap().to_string());
    }
    for channel in &channels {
        publish_n(&a, channel, 1, 2).await;
    }
    let frames = read(&mut ws, 24).await;
    for (channel, epoch) in channels.iter().zip(&epochs) {
        let mine: Vec<Value> = frames.iter().filter(|f| f["channel"] == channel.as_str()).cloned().collect();
        assert_eq!(message_offsets(&mine), [1, 2], "{channel}");
        assert_no_silent_gap(&mine, (epoch, 0));
    }
    // Sharded pub/sub: each feed lives on its channel's shard, none is a classic channel.
    let sharded: Vec<String> = shards
        .iter()
        .flat_map(|r| r.cli(&["PUBSUB", "SHARDCHANNELS"]).lines().map(str::to_string).collect::<Vec<_>>())
        .collect();
    for channel in &channels {
        assert!(sharded.contains(&format!("herald:{{{channel}}}:p")), "{channel} not sharded: {sharded:?}");
    }
    assert!(shards.iter().all(|r| r.cli(&["PUBSUB", "CHANNELS"]).is_empty()));

    // A token stream on its channel's shard: B mirrors the channel only once asked, mid-stream,
    // and reads the stream's keys from that shard (they share the channel's hash tag).
    let stream = start(&a, "shard-ai").await;
    operate(&a, "shard-ai", &stream, json!({ "append": "on a " })).await;
    operate(&a, "shard-ai", &stream, json!({ "append": "shard" })).await;
    let mut late = b.ws().await;
    late.subscribe("shard-ai", None).await;
    assert_eq!(piece(&late.next().await.unwrap()), ("stream", "on a shard", 2));
    let finished = operate(&b, "shard-ai", &stream, json!({ "finish": true })).await;
    assert_eq!(finished["offset"], 1, "{finished}");
    assert_eq!(late.next().await.unwrap()["data"]["text"], "on a shard");

    // The last shard dies and comes back empty: its channels reset, the others lose nothing.
    let owned = shards[2].cli(&["KEYS", "herald:*:m"]);
    let on_dead: Vec<&String> = channels.iter().filter(|ch| owned.contains(&format!("{{{ch}}}"))).collect();
    assert!(!on_dead.is_empty(), "the shard owns some of the channels");
    shards[2].restart();
    wait_cluster_ok(&shards);
    wait_ready(&[&a, &b], true).await;
    for channel in &channels {
        let (status, body) = try_publish(&a, channel, json!({ "n": 3 })).await;
        assert_eq!(status, 200, "{channel} after the shard came back: {body}");
    }
    let frames = read(&mut ws, 12).await;
    for (channel, epoch) in channels.iter().zip(&epochs) {
        let mine: Vec<Value> = frames.iter().filter(|f| f["channel"] == channel.as_str()).cloned().collect();
        let reset = mine.iter().any(|f| f["type"] == "reset");
        assert_eq!(reset, on_dead.contains(&channel), "{channel}: {mine:?}");
        let start = if reset { (mine[0]["epoch"].as_str().unwrap(), 0) } else { (epoch.as_str(), 2) };
        assert_no_silent_gap(if reset { &mine[1..] } else { &mine }, start);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_in_redis_is_capped_by_count_and_by_age() {
    let redis = Redis::start();
    let engine = format!("engine=\"{}\"", redis.url());
    let a = TestServer::start(&[engine.as_str(), "history_size=3", "history_ttl_secs=1"]);
    wait_ready(&[&a], true).await;
    publish_n(&a, "capped", 1, 5).await;
    assert_eq!(redis.cli(&["XLEN", "herald:{capped}:h"]), "3", "capped by count");
    let ttl: i64 = redis.cli(&["PTTL", "herald:{capped}:h"]).parse().unwrap();
    assert!((1..=1000).contains(&ttl), "the history expires with its age limit: {ttl} ms");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    publish_n(&a, "capped", 6, 1).await;
    assert_eq!(redis.cli(&["XLEN", "herald:{capped}:h"]), "1", "older entries left by age");
    let history = a.api_get("/api/channels/capped/history").await;
    assert_eq!(message_offsets(history["messages"].as_array().unwrap()), [6]);
    assert_eq!(history["offset"], 6, "the offsets go on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_over_tls_is_reached_with_the_configured_ca() {
    let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata");
    let (cert, key) = (testdata.join("tls-cert.pem"), testdata.join("tls-key.pem"));
    // TLS only: the plain port is off, the TLS port is the one the helper picked.
    let mut redis = Redis::with_args(&["--save", "", "--appendonly", "no"]);
    redis.kill();
    let port = redis.port.to_string();
    redis.args.splice(0..0, ["--port", "0", "--tls-port", &port].map(str::to_string));
    redis.args.extend(
        ["--tls-cert-file", &cert.display().to_string(), "--tls-key-file", &key.display().to_string()]
            .map(str::to_string),
    );
    redis.args.extend(["--tls-auth-clients", "no"].map(str::to_string));
    redis.spawn();

    let engine = format!("engine=\"rediss://127.0.0.1:{port}\"");
    let ca = format!("redis_tls_ca=\"{}\"", cert.display());
    let trusted = TestServer::start(&[engine.as_str(), ca.as_str()]);
    wait_ready(&[&trusted], true).await;
    let mut ws = trusted.ws().await;
    ws.subscribe("secure", None).await;
    assert_eq!(trusted.publish("secure", json!("over tls")).await["offset"], 1);
    assert_eq!(read(&mut ws, 1).await[0]["data"], "over tls");

    // Without the CA the self-signed certificate is refused: never ready.
    let untrusting = TestServer::start(&[engine.as_str()]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!ready(&untrusting).await);
}

/// The incremental AOF file of a Redis started with `--appendonly yes`.
fn aof_file(redis: &Redis) -> std::path::PathBuf {
    let dir =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("redis-{}", redis.port)).join("appendonlydir");
    let incr = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".incr.aof")));
    incr.expect("an incremental AOF file")
}

/// A Redis restarted from an AOF that lost its last writes (what `appendfsync everysec` loses
/// in a crash) is behind what the nodes saw, in the same epoch. The channel must move to a new
/// epoch: subscribers get a reset, and a client holding a lost offset gets a reset too, never
/// the new messages that Redis issues under the old offsets; a client holding an offset Redis
/// kept resumes across the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_from_a_truncated_aof_moves_its_channels_to_a_new_epoch() {
    let mut redis = Redis::with_args(&["--save", "", "--appendonly", "yes", "--appendfsync", "always"]);
    let (a, b, c) = (node(&redis), node(&redis), node(&redis));
    wait_ready(&[&a, &b, &c], true).await;
    let mut ws = b.ws().await;
    let epoch = ws.subscribe("jobs", None).await["result"]["epoch"].as_str().unwrap().to_string();
    let mut sse = c.sse("channel=jobs", None).await;
    publish_n(&a, "jobs", 1, 10).await;
    assert_eq!(message_offsets(&read(&mut ws, 10).await), (1..=10).collect::<Vec<_>>());
    let durable = std::fs::metadata(aof_file(&redis)).unwrap().len();
    // Five more that every subscriber sees, and that the crash will lose.
    publish_n(&a, "jobs", 11, 5).await;
    let seen = read(&mut ws, 5).await;
    assert_eq!(message_offsets(&seen), (11..=15).collect::<Vec<_>>());

    redis.kill();
    let aof = aof_file(&redis);
    std::fs::OpenOptions::new().write(true).open(&aof).unwrap().set_len(durable).unwrap();
    redis.spawn();
    wait_ready(&[&a, &b, &c], true).await;
    let (new_epoch, offsets) = publish_n(&a, "jobs", 100, 3).await;
    assert_ne!(new_epoch, epoch, "Redis issues 11.. again: under a new epoch");
    assert_eq!(offsets, [11, 12, 13]);

    // The live subscribers: a reset to the new epoch, then the new messages; no silent gap.
    let last = json!({ "n": 102 });
    let over_sse = read_until(&mut sse, &last).await;
    assert_no_silent_gap(&over_sse, (&epoch, 0));
    for frames in [read_until(&mut ws, &last).await, over_sse] {
        let reset = frames.iter().find(|f| f["type"] == "reset").expect("an explicit reset");
        assert_eq!(reset["epoch"], new_epoch.as_str(), "{frames:#?}");
        assert_eq!(message_offsets(&frames).iter().rev().take(3).copied().collect::<Vec<_>>(), [13, 12, 11]);
    }
    // A client that saw the lost 12 comes back: a reset, not the new 13 as if it followed.
    let mut late = a.ws().await;
    let reply = late.subscribe("jobs", Some(json!({"epoch": epoch, "offset": 12}))).await;
    assert_eq!(reply["result"]["recovered"], false, "{reply}");
    let reset = late.next().await.unwrap();
    assert_eq!((reset["type"].clone(), reset["epoch"].clone()), (json!("reset"), json!(new_epoch)));
    // A client that saw only what Redis kept resumes in the new epoch: 10 (published in the old
    // one), then the new 11 to 13, and no reset.
    let mut kept = b.ws().await;
    let reply = kept.subscribe("jobs", Some(json!({"epoch": epoch, "offset": 9}))).await;
    assert_eq!(reply["result"]["recovered"], true, "{reply}");
    let frames = read(&mut kept, 4).await;
    let places: Vec<(&str, u64)> =
        frames.iter().map(|f| (f["epoch"].as_str().unwrap(), f["offset"].as_u64().unwrap())).collect();
    assert_eq!(places, [(epoch.as_str(), 10), (new_epoch.as_str(), 11), (&new_epoch, 12), (&new_epoch, 13)]);
}

/// The same crash under a publishing load. A publisher keeps publishing through the crash and
/// the restart, and the messages that were lost had been delivered. Redis must never give two
/// acknowledged publishes the same place, and subscribers on all three transports must get, in
/// order and once each, messages that carry the place their publish was given, with a reset
/// where the history broke: no silent gap (counted the way `herald bench` counts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_from_a_truncated_aof_under_a_publishing_load_leaves_no_silent_gap() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    };
    let mut redis = Redis::with_args(&["--save", "", "--appendonly", "yes", "--appendfsync", "always"]);
    let (a, b, c) = (Arc::new(node(&redis)), node(&redis), Arc::new(node(&redis)));
    wait_ready(&[&a, &b, &c], true).await;
    // The publishing node has a subscriber too, so it mirrors the channel.
    let mut ws = a.ws().await;
    let epoch = ws.subscribe("jobs", None).await["result"]["epoch"].as_str().unwrap().to_string();
    let mut sse = b.sse("channel=jobs", None).await;
    let (_, first) = c.poll("channel=jobs&timeout=0").await;
    let last = json!({ "n": "last" });
    let poller = tokio::spawn({
        let (c, last) = (c.clone(), last.clone());
        let mut cursor = first["cursor"].as_str().unwrap().to_string();
        async move {
            let mut frames = Vec::new();
            while frames.last().is_none_or(|f: &Value| f["data"] != last) {
                let (more, next) = poll_read(&c, "jobs", cursor, 1).await;
                frames.extend(more);
                cursor = next;
            }
            frames
        }
    });

    let (stop, acked_count) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let publisher = tokio::spawn({
        let (a, stop, acked_count) = (a.clone(), stop.clone(), acked_count.clone());
        async move {
            let mut acked: Vec<(u64, String, u64)> = Vec::new();
            for n in 1..=5_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match try_publish(&a, "jobs", json!({ "n": n })).await {
                    (200, reply) => {
                        acked.push((n, reply["epoch"].as_str().unwrap().into(), reply["offset"].as_u64().unwrap()));
                        acked_count.fetch_add(1, Ordering::Relaxed);
                    }
                    (503, _) => tokio::time::sleep(Duration::from_millis(5)).await,
                    (status, body) => panic!("publish answered {status}: {body}"),
                }
            }
            acked
        }
    });
    let mut over_ws = read(&mut ws, 100).await;
    let durable = std::fs::metadata(aof_file(&redis)).unwrap().len();
    // Messages every subscriber may see that the crash loses.
    over_ws.extend(read(&mut ws, 50).await);
    redis.kill();
    std::fs::OpenOptions::new().write(true).open(aof_file(&redis)).unwrap().set_len(durable).unwrap();
    redis.spawn();
    let before_restart = acked_count.load(Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + WAIT;
    while acked_count.load(Ordering::Relaxed) < before_restart + 100 {
        assert!(tokio::time::Instant::now() < deadline, "publishes do not succeed again after the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let acked = publisher.await.unwrap();
    a.publish("jobs", last.clone()).await;

    let mut places: Vec<(&str, u64)> = acked.iter().map(|(_, e, o)| (e.as_str(), *o)).collect();
    places.sort_unstable();
    let issued = places.len();
    places.dedup();
    assert_eq!(places.len(), issued, "Redis gave two acknowledged publishes the same place");
    let new_epochs: std::collections::HashSet<&str> = places.iter().map(|(e, _)| *e).filter(|e| *e != epoch).collect();
    assert!(!new_epochs.is_empty(), "the lost writes moved the channel to a new epoch");

    over_ws.extend(read_until(&mut ws, &last).await);
    let over_sse = read_until(&mut sse, &last).await;
    let over_poll = poller.await.unwrap();
    let place_of: std::collections::HashMap<u64, (&str, u64)> =
        acked.iter().map(|(n, e, o)| (*n, (e.as_str(), *o))).collect();
    for (transport, frames) in [("ws", &over_ws), ("sse", &over_sse), ("poll", &over_poll)] {
        assert_no_silent_gap(frames, (&epoch, 0));
        assert!(frames.iter().any(|f| f["type"] == "reset"), "{transport}: no reset after the lost writes");
        for frame in frames.iter().filter(|f| f["type"] == "message") {
            let Some(place) = frame["data"]["n"].as_u64().and_then(|n| place_of.get(&n)) else { continue };
            let got = (frame["epoch"].as_str().unwrap(), frame["offset"].as_u64().unwrap());
            assert_eq!(got, *place, "{transport}: a message under another publish's place");
        }
    }
}
