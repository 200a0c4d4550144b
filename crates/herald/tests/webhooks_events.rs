//! Webhooks, black-box: a real receiver (an HTTP server in the test) gets who comes online and
//! goes offline, which channels are occupied and vacated, who joins and leaves presence —
//! signed, after the grace delay, once per change whatever the transports, again with the same
//! ids after a failure, and once over two nodes on a real Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use std::time::Duration;

use common::{
    SseClient, TestServer, WsClient,
    receiver::{Receiver, kinds},
    redis::{Redis, wait_ready},
    token,
};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

const SECRET: &str = "a-webhook-secret-of-some-length";

/// The settings of a server that sends webhooks to `receiver`, with a `grace_ms` delay.
fn settings(receiver: &Receiver, grace_ms: u64) -> Vec<String> {
    vec![
        format!("webhooks=[{{url=\"{}\",secret=\"{SECRET}\"}}]", receiver.url),
        format!("webhook_grace_ms={grace_ms}"),
        "namespaces={room={presence=true}}".into(),
    ]
}

fn start(settings: &[String]) -> TestServer {
    TestServer::with_tokens(&settings.iter().map(String::as_str).collect::<Vec<_>>())
}

async fn ws_as(server: &TestServer, user: &str) -> WsClient {
    WsClient::connect(&format!("{}?token={}", server.ws_url(), token(user, 3600, &[], &[]))).await
}

/// Whether `events` hold, in any order, exactly `want` (type, subject) pairs.
fn same_set(events: &[Value], want: &[(&str, &str)]) -> bool {
    let mut got = kinds(events);
    let mut want: Vec<(String, String)> = want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    got.sort();
    want.sort();
    got == want
}

#[tokio::test]
async fn the_first_connection_and_the_last_send_one_event_each_signed_and_a_switch_sends_none() {
    let receiver = Receiver::start().await;
    let server = start(&settings(&receiver, 600));
    let mut ws = ws_as(&server, "ada").await;
    ws.subscribe("room:1", None).await;
    let ups = [("user_online", "ada"), ("channel_occupied", "room:1"), ("presence_join", "room:1/ada")];
    let got = receiver.wait_for("the ups", |e| e.len() >= 3).await;
    assert!(same_set(&got, &ups), "{got:?}");
    assert_eq!(got[0]["type"], "user_online", "the connection comes before its subscriptions");
    let join = got.iter().find(|e| e["type"] == "presence_join").unwrap();
    assert_eq!(join["info"], serde_json::json!({ "name": "ada" }), "the token's info");

    // A transport switch within the grace: the WebSocket closes, an SSE stream opens.
    drop(ws);
    let sse_url = format!("channel=room:1&token={}", token("ada", 3600, &[], &[]));
    let sse: SseClient = server.sse(&sse_url, None).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.delivered().len(), 3, "nothing for a switch: {:?}", receiver.delivered());

    drop(sse);
    let downs = [("user_offline", "ada"), ("channel_vacated", "room:1"), ("presence_leave", "room:1/ada")];
    let got = receiver.wait_for("the downs", |e| e.len() >= 6).await;
    assert!(same_set(&got[3..], &downs), "{got:?}");
    assert_eq!(got.len(), 6);

    // Every request is signed over "<timestamp>.<body>"; every event has its own id.
    for request in receiver.requests() {
        let timestamp = &request.headers["herald-webhook-timestamp"];
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(&request.body);
        let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(request.headers["herald-webhook-signature"], format!("v1={expected}"));
        assert_eq!(request.headers["content-type"], "application/json");
    }
    let mut ids: Vec<&str> = got.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "unique ids");
}

#[tokio::test]
async fn a_user_who_long_polls_stays_online_between_polls() {
    let receiver = Receiver::start().await;
    let server = start(&settings(&receiver, 800));
    let query = format!("channel=news&timeout=0&token={}", token("bob", 3600, &[], &[]));
    for _ in 0..8 {
        assert_eq!(server.poll(&query).await.0, 200);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let got = receiver.delivered();
    assert!(same_set(&got, &[("user_online", "bob"), ("channel_occupied", "news")]), "{got:?}");
    let got = receiver.wait_for("bob offline", |e| e.len() >= 4).await;
    assert!(same_set(&got[2..], &[("user_offline", "bob"), ("channel_vacated", "news")]), "{got:?}");
}

#[tokio::test]
async fn a_receiver_that_fails_gets_every_event_again_with_the_same_ids() {
    let receiver = Receiver::start().await;
    receiver.answer(503);
    let server = start(&settings(&receiver, 100));
    for user in ["u1", "u2", "u3"] {
        drop(ws_as(&server, user).await);
    }
    // Failed tries come and are retried with backoff.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while receiver.requests().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no retry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed: Vec<Value> = receiver.requests().iter().flat_map(common::receiver::events).collect();
    receiver.answer(200);
    let got = receiver.wait_for("all six events", |e| e.len() >= 6).await;
    let ids = |events: &[Value]| events.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    for id in ids(&failed) {
        assert!(ids(&got).contains(&id), "{id} was retried under its id");
    }
    let online: Vec<&Value> = got.iter().filter(|e| e["type"] == "user_online").collect();
    assert_eq!(online.len(), 3, "{got:?}");
    let metrics = server.http.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    let failures = metrics.lines().find(|l| l.starts_with("herald_webhook_failures_total")).unwrap();
    assert!(!failures.ends_with(" 0"), "{failures}");
}

#[tokio::test]
async fn a_dead_endpoint_keeps_a_bounded_queue_and_counts_what_it_drops() {
    // Nothing listens there: every try fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let hook = format!("webhooks=[{{url=\"http://{closed}/x\",secret=\"{SECRET}\",events=[\"user_online\"]}}]");
    let server = TestServer::with_tokens(&[hook.as_str(), "webhook_queue_max=5"]);
    for i in 0..20 {
        drop(ws_as(&server, &format!("user-{i}")).await);
    }
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let metrics = server.http.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
        let dropped = metrics.lines().find(|l| l.starts_with("herald_webhook_events_dropped_total")).unwrap();
        let n: u64 = dropped.rsplit(' ').next().unwrap().parse().unwrap();
        if n >= 14 {
            assert!(n <= 15, "only what passes the bound: {dropped}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{dropped}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn bad_webhook_settings_are_refused_at_start() {
    for (setting, why) in [
        ("webhooks=[{url=\"ftp://x\",secret=\"0123456789abcdef\"}]", "http:// or https://"),
        ("webhooks=[{url=\"http://x\",secret=\"short\"}]", "at least 16 bytes"),
        ("webhooks=[{url=\"http://x\",secret=\"0123456789abcdef\",events=[\"user_came\"]}]", "unknown webhook event"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["serve", "--listen", "127.0.0.1:0", "--api-key", "k", "--set", setting])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{setting}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{setting}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_two_nodes_on_redis_each_event_is_sent_once() {
    let redis = Redis::start();
    let receiver = Receiver::start().await;
    let mut shared = settings(&receiver, 300);
    shared.push(format!("engine=\"{}\"", redis.url()));
    let (a, b) = (start(&shared), start(&shared));
    wait_ready(&[&a, &b], true).await;

    let mut on_a = ws_as(&a, "cy").await;
    on_a.subscribe("room:9", None).await;
    let mut on_b = ws_as(&b, "cy").await;
    on_b.subscribe("room:9", None).await;
    let got = receiver.wait_for("the ups", |e| e.len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got_later = receiver.delivered();
    assert_eq!(got_later.len(), 3, "one up each, not one per node: {got_later:?}");
    assert!(same_set(&got, &[("user_online", "cy"), ("channel_occupied", "room:9"), ("presence_join", "room:9/cy")]));

    // Leaving A while B holds on sends nothing; leaving B sends each down once.
    drop(on_a);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(receiver.delivered().len(), 3, "{:?}", receiver.delivered());
    drop(on_b);
    let got = receiver.wait_for("the downs", |e| e.len() >= 6).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.delivered().len(), 6, "{:?}", receiver.delivered());
    assert!(same_set(
        &got[3..],
        &[("user_offline", "cy"), ("channel_vacated", "room:9"), ("presence_leave", "room:9/cy")]
    ));
}

#[tokio::test]
async fn events_left_undelivered_at_a_stop_are_sent_after_the_next_start_under_their_ids() {
    let receiver = Receiver::start().await;
    receiver.answer(503);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("webhooks-restart");
    let _ = std::fs::remove_dir_all(&dir);
    let mut shared = settings(&receiver, 60_000);
    shared.push(format!("data_dir=\"{}\"", dir.display()));
    let mut server = start(&shared);
    let ws = ws_as(&server, "dee").await;
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while receiver.requests().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the online was tried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tried = common::receiver::events(&receiver.requests()[0]);

    // A graceful stop: the connection closes, and its offline is due at once (not after the
    // minute's grace) since the node is going; the endpoint still fails, so both are saved.
    let stopped = std::process::Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().unwrap();
    assert!(stopped.success());
    drop(ws);
    let exited = tokio::task::spawn_blocking(move || server.child.wait().unwrap()).await.unwrap();
    assert!(exited.success(), "{exited:?}");

    receiver.answer(200);
    let _again = start(&shared);
    let got = receiver.wait_for("the saved events", |e| e.len() >= 2).await;
    assert_eq!(kinds(&got), [("user_online".to_string(), "dee".to_string()), ("user_offline".into(), "dee".into())]);
    assert_eq!(got[0]["id"], tried[0]["id"], "the same id as the failed try");
}
