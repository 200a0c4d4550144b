//! The consumer scenarios every source goes through (`tests/consumers_<source>.rs`): messages
//! written to a real source reach subscribers in order and once — across a Herald killed
//! mid-stream, a source killed and restarted, a poison message and two nodes on Redis.

use std::time::Duration;

use serde_json::{Value, json};

use super::{
    TestServer, WAIT,
    proxy::Proxy,
    redis::Redis,
    sources::{CONSUMER, Source},
};

const CHANNEL: &str = "orders";

/// Envelopes to [`CHANNEL`] numbered `from..to` (`data.n`).
pub fn envelopes(from: u64, to: u64) -> Vec<Value> {
    (from..to).map(|n| json!({ "channel": CHANNEL, "data": { "n": n } })).collect()
}

/// This node's consumer, as `/readyz` reports it.
pub async fn consumer_report(server: &TestServer) -> Value {
    let body: Value = server.http.get(format!("{}/readyz", server.base)).send().await.unwrap().json().await.unwrap();
    body["consumers"].as_array().and_then(|c| c.first()).cloned().unwrap_or(Value::Null)
}

/// Waits until this node's consumer report satisfies `want`; panics after `limit`.
pub async fn wait_report(server: &TestServer, what: &str, limit: Duration, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let report = consumer_report(server).await;
        if want(&report) {
            return report;
        }
        assert!(tokio::time::Instant::now() < deadline, "never saw {what}: {report}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn consuming(server: &TestServer) -> Value {
    wait_report(server, "consuming", Duration::from_secs(30), |r| r["state"] == "consuming").await
}

/// Every message of [`CHANNEL`]'s history, oldest first, as `data.n`.
pub async fn history(server: &TestServer) -> Vec<u64> {
    let page = server.api_get(&format!("/api/channels/{CHANNEL}/history?limit=10000&since=0")).await;
    let messages = page["messages"].as_array().cloned().unwrap_or_default();
    messages.iter().map(|m| m["data"]["n"].as_u64().unwrap()).collect()
}

/// Waits until history holds `count` messages (and a moment more, for a duplicate to show).
async fn wait_history(server: &TestServer, count: usize, limit: Duration) -> Vec<u64> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let numbers = history(server).await;
        if numbers.len() >= count {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return history(server).await;
        }
        assert!(tokio::time::Instant::now() < deadline, "history holds {} of {count}", numbers.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `data.n` of the next `count` messages a WebSocket subscriber gets.
async fn received(ws: &mut super::WsClient, count: usize) -> Vec<u64> {
    let mut numbers = Vec::new();
    while numbers.len() < count {
        let push = tokio::time::timeout(WAIT, ws.next()).await.expect("a push in time").expect("open");
        if let Some(n) = push["data"]["n"].as_u64() {
            numbers.push(n);
        }
    }
    numbers
}

fn sigterm(server: &mut TestServer) {
    let pid = server.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let _ = server.child.wait();
}

fn server<S: Source>(source: &S, extra: &str, more: &[String]) -> TestServer {
    server_on(source, source.port(), extra, more)
}

/// A Herald consuming `source` as reached on `port`.
fn server_on<S: Source>(source: &S, port: u16, extra: &str, more: &[String]) -> TestServer {
    let setting =
        format!("consumers=[{{name=\"{CONSUMER}\",source=\"{}\",url=\"{}\",{extra}}}]", S::KIND, source.url_on(port));
    let mut settings = vec![setting, "history_size=5000".to_string()];
    settings.extend(more.iter().cloned());
    TestServer::start(&settings.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Messages reach a subscriber in the source's order, each once, and are acknowledged to the
/// source: none is pending after a graceful stop.
pub async fn delivers_in_order_and_acknowledges(source: &impl Source) {
    let mut server = server(source, "prefetch=7", &[]);
    consuming(&server).await;
    let mut ws = server.ws().await;
    ws.subscribe(CHANNEL, None).await;
    source.send(&envelopes(0, 40)).await;
    assert_eq!(received(&mut ws, 40).await, (0..40).collect::<Vec<_>>());
    let report = wait_report(&server, "40 published", WAIT, |r| r["published"] == 40).await;
    assert_eq!((report["dead_letters"].as_u64(), report["errors"].as_u64()), (Some(0), Some(0)), "{report}");
    let metrics = server.http.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(&format!("herald_consumer_messages_total{{consumer=\"{CONSUMER}\"}} 40")), "{metrics}");
    sigterm(&mut server);
    assert_eq!(source.pending().await, 0, "every published message was acknowledged");
}

/// Herald killed outright mid-stream, after it published messages whose acknowledgements
/// never reached the source (a forwarder drops them from the first on), then started again on
/// its data: every message is in the channel exactly once, in order, and none is left in the
/// source.
pub async fn survives_a_killed_herald_exactly_once<S: Source>(source: &S, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("consumer-restart-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    let data_dir = vec![format!("data_dir=\"{}\"", dir.display())];
    let total = 3000;
    let proxy = Proxy::start(source.port()).await;
    let mut first = server_on(source, proxy.port, "prefetch=10", &data_dir);
    consuming(&first).await;
    source.send(&envelopes(0, 200)).await;
    wait_report(&first, "a part published", Duration::from_secs(30), |r| r["published"].as_u64() > Some(100)).await;
    proxy.drop_from(S::ACK);
    source.send(&envelopes(200, total)).await;
    // The batch whose acknowledgement is dropped is published and durable, and the source
    // still holds it (so do the later batches over AMQP and NATS, until the prefetch is used).
    let deadline = tokio::time::Instant::now() + WAIT;
    while !proxy.dropping() {
        assert!(tokio::time::Instant::now() < deadline, "an acknowledgement was sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let published = history(&first).await.len();
    let killed = std::process::Command::new("kill").args(["-KILL", &first.pid().to_string()]).status().unwrap();
    assert!(killed.success());
    let _ = first.child.wait();
    assert!(published < total as usize, "killed before the end ({published} of {total})");
    proxy.pass();

    let mut second = server_on(source, proxy.port, "prefetch=10", &data_dir);
    let numbers = wait_history(&second, total as usize, Duration::from_secs(60)).await;
    assert_eq!(numbers, (0..total).collect::<Vec<_>>(), "every message once, in order");
    sigterm(&mut second);
    assert_eq!(source.pending().await, 0);
}

/// The source killed and started again: the consumer reports the failure, reconnects with
/// backoff, and the messages written before and after reach the subscriber once, in order.
pub async fn survives_a_restarted_source(source: &mut impl Source) {
    let server = server(source, "", &[]);
    consuming(&server).await;
    let mut ws = server.ws().await;
    ws.subscribe(CHANNEL, None).await;
    source.send(&envelopes(0, 10)).await;
    assert_eq!(received(&mut ws, 10).await, (0..10).collect::<Vec<_>>());

    source.kill();
    let failing =
        wait_report(&server, "the failure", Duration::from_secs(30), |r| r["errors"].as_u64() > Some(0)).await;
    assert_ne!(failing["state"], "consuming", "{failing}");
    assert!(failing["last_error"].is_string(), "{failing}");
    source.restart().await;
    consuming(&server).await;
    source.send(&envelopes(10, 20)).await;
    assert_eq!(received(&mut ws, 10).await, (10..20).collect::<Vec<_>>());
    assert_eq!(history(&server).await, (0..20).collect::<Vec<_>>());
}

/// A message that cannot be published goes to the dead-letter path with its reason; the
/// messages around it are published.
pub async fn dead_letters_a_poison_message(source: &impl Source) {
    let server = server(source, "", &[]);
    consuming(&server).await;
    let mut ws = server.ws().await;
    ws.subscribe(CHANNEL, None).await;
    source.send(&envelopes(0, 1)).await;
    let expected = source.send_poison().await;
    source.send(&envelopes(1, 3)).await;
    assert_eq!(received(&mut ws, 3).await, vec![0, 1, 2]);
    // The counters move once the batch is settled, which may come after the deliveries.
    let settled = |r: &Value| r["dead_letters"] == 1 && r["published"] == 3;
    wait_report(&server, "a dead letter and three published", WAIT, settled).await;
    let dead = source.dead().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].1.contains(expected), "the reason says why: {dead:?}");
}

/// Two nodes on Redis with the same consumer: one consumes, the other stands by; every
/// message is published once, and after the consuming node stops the other takes over.
pub async fn two_nodes_publish_once(source: &impl Source) {
    let redis = Redis::start();
    let engine = vec![format!("engine=\"{}\"", redis.url())];
    let a = server(source, "prefetch=20", &engine);
    let b = server(source, "prefetch=20", &engine);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (mut on_a, mut on_b);
    loop {
        (on_a, on_b) = (consumer_report(&a).await, consumer_report(&b).await);
        let states = (on_a["state"].as_str(), on_b["state"].as_str());
        if matches!(states, (Some("consuming"), Some("standby")) | (Some("standby"), Some("consuming"))) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "one consumes, one stands by: {on_a} {on_b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    source.send(&envelopes(0, 300)).await;
    assert_eq!(wait_history(&b, 300, Duration::from_secs(30)).await, (0..300).collect::<Vec<_>>());

    // The consuming node stops; its lease goes with it and the other takes over.
    let (mut stopping, staying) = if on_a["state"] == "consuming" { (a, b) } else { (b, a) };
    sigterm(&mut stopping);
    consuming(&staying).await;
    source.send(&envelopes(300, 400)).await;
    assert_eq!(wait_history(&staying, 400, Duration::from_secs(30)).await, (0..400).collect::<Vec<_>>());
}
