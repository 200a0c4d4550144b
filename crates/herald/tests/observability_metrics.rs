//! `/metrics`: counters and histograms move by what clients on each transport did; `/readyz`
//! turns not-ready during shutdown; `POST /api/disconnect` closes a user's connections; JSON
//! logs carry no tokens.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use std::collections::HashMap;

use common::{API_KEY, TestServer, WsClient, token};
use serde_json::json;

/// Every sample of the `/metrics` text, by its name and labels as written.
async fn scrape(server: &TestServer) -> HashMap<String, f64> {
    let response = server.http.get(format!("{}/metrics", server.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "a complete exposition");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn get(samples: &HashMap<String, f64>, name: &str) -> f64 {
    samples.get(name).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn counters_and_histograms_move_by_what_the_clients_did() {
    let server = TestServer::start(&["max_message_bytes=1000"]);
    let before = scrape(&server).await;

    let mut ws = server.ws().await;
    ws.subscribe("news", None).await;
    let mut sse = server.sse("channel=news", None).await;
    server.wait_for_connections("sse", 1).await;
    let poll_url = format!("{}/poll?channel=news&timeout=10", server.base);
    let poller = tokio::spawn({
        let http = server.http.clone();
        async move { http.get(poll_url).send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
    });
    server.wait_for_connections("poll", 1).await;

    let during = scrape(&server).await;
    for transport in ["ws", "sse", "poll"] {
        assert_eq!(get(&during, &format!("herald_connections{{transport=\"{transport}\"}}")), 1.0, "{transport}");
    }
    assert_eq!(get(&during, "herald_subscriptions"), 3.0);

    for i in 0..3 {
        server.publish("news", json!(i)).await;
    }
    for _ in 0..3 {
        ws.next().await.unwrap();
        sse.next().await.unwrap();
    }
    let polled = poller.await.unwrap();
    let polled = polled["messages"].as_array().unwrap().len() as f64;
    assert!(polled >= 1.0);
    // Twice on one route: its 200 and another status are counted apart.
    let refused = server.http.get(format!("{}/poll", server.base)).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let unknown = server.http.get(format!("{}/wp-login.php", server.base)).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    // A frame far over the limit: the server closes with a bad-frame code.
    let mut bad = server.ws().await;
    bad.send_raw(&format!(r#"{{"op":"publish","channel":"c","data":"{}"}}"#, "x".repeat(100_000))).await;
    bad.disconnect().await;

    // A fan-out round counts its deliveries once it has written them all: the client may read
    // a message a moment before it is counted.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    let delivered = |samples: &HashMap<String, f64>, transport: &str| {
        let name = format!("herald_messages_delivered_total{{transport=\"{transport}\"}}");
        get(samples, &name) - get(&before, &name)
    };
    let mut after = scrape(&server).await;
    while (delivered(&after, "ws") < 3.0 || delivered(&after, "sse") < 3.0) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        after = scrape(&server).await;
    }
    let moved = |name: &str| get(&after, name) - get(&before, name);
    assert_eq!(moved("herald_messages_published_total"), 3.0);
    assert_eq!(moved("herald_messages_delivered_total{transport=\"ws\"}"), 3.0);
    assert_eq!(moved("herald_messages_delivered_total{transport=\"sse\"}"), 3.0);
    assert_eq!(moved("herald_messages_delivered_total{transport=\"poll\"}"), polled);
    assert!(moved("herald_bytes_out_total{transport=\"ws\"}") > 3.0 * 60.0);
    assert!(moved("herald_bytes_out_total{transport=\"sse\"}") > 3.0 * 60.0);
    assert!(moved("herald_delivery_latency_seconds_count") >= 3.0);
    assert_eq!(moved("herald_http_requests_total{route=\"/api/publish\",status=\"200\"}"), 3.0);
    assert_eq!(moved("herald_http_request_duration_seconds_count{route=\"/api/publish\"}"), 3.0);
    assert_eq!(moved("herald_http_requests_total{route=\"/ws\",status=\"101\"}"), 2.0);
    assert_eq!(moved("herald_http_requests_total{route=\"/poll\",status=\"200\"}"), 1.0);
    assert_eq!(moved("herald_http_requests_total{route=\"/poll\",status=\"400\"}"), 1.0);
    assert_eq!(moved("herald_http_request_duration_seconds_count{route=\"/poll\"}"), 2.0);
    assert_eq!(moved("herald_http_requests_total{route=\"other\",status=\"404\"}"), 1.0);
    assert_eq!(moved("herald_subscribe_recoveries_total{outcome=\"live\"}"), 3.0);
    assert_eq!(moved("herald_disconnects_total{reason=\"bad_frame\"}"), 1.0);
    assert!(get(&after, "herald_process_resident_memory_bytes") > 1e6);
    // No label carries a channel name.
    assert!(after.keys().all(|k| !k.contains("news")), "a channel name leaked into a label");
}

#[tokio::test]
async fn readyz_turns_not_ready_during_shutdown() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = TestServer::start(&["shutdown_deadline_secs=5"]);
    let ready = server.http.get(format!("{}/readyz", server.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    // A WebSocket, to see when the shutdown has started; and a request half sent before it.
    let mut ws = server.ws().await;
    ws.subscribe("news", None).await;
    let mut probe = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://")).await.unwrap();
    probe.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let killed = std::process::Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().unwrap();
    assert!(killed.success());
    let (_, code) = ws.disconnect().await;
    assert_eq!(code, Some(4001));
    probe.write_all(b"Connection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    probe.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("shutting_down"), "{answer}");
}

#[tokio::test]
async fn the_disconnect_api_closes_every_connection_of_a_user() {
    let server = TestServer::with_tokens(&[]);
    let connect = |user: &str| {
        let url = format!("{}?token={}", server.ws_url(), token(user, 3600, &[], &[]));
        async move { WsClient::connect(&url).await }
    };
    let (mut ada1, mut ada2, mut bob) = (connect("ada").await, connect("ada").await, connect("bob").await);
    for ws in [&mut ada1, &mut ada2, &mut bob] {
        ws.subscribe("news", None).await;
    }
    let reply = server
        .http
        .post(format!("{}/api/disconnect", server.base))
        .bearer_auth(API_KEY)
        .json(&json!({ "user": "ada" }))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.json::<serde_json::Value>().await.unwrap(), json!({ "user": "ada", "disconnected": 2 }));
    for ada in [&mut ada1, &mut ada2] {
        let (push, code) = ada.disconnect().await;
        assert_eq!(code, Some(4504));
        assert_eq!(push.unwrap()["reconnect"], false);
    }
    server.publish("news", json!("bob stays")).await;
    assert_eq!(bob.next().await.unwrap()["data"], "bob stays");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_without_tokens() {
    let secret = "token_hs256_secret=a-test-secret-of-enough-length";
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0", "--api-key", API_KEY, "--set", secret])
        .env("HERALD_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let base = line.trim().strip_prefix("herald listening on ").unwrap().to_string();
    let t = token("ada", 3600, &[], &[]);
    let ws_url = format!("{}/ws?token={t}", base.replacen("http", "ws", 1));
    let mut ws = WsClient::connect(&ws_url).await;
    ws.subscribe("news", None).await;
    ws.send_raw("not json").await;
    ws.next().await;
    drop(ws);
    let _ = reqwest::get(format!("{base}/poll?channel=news&timeout=0&token={t}")).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8(out.stderr).unwrap();
    assert!(logs.lines().count() >= 2, "{logs}");
    for line in logs.lines() {
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(parsed["level"].is_string() && parsed["fields"].is_object(), "{line}");
    }
    assert!(!logs.contains(&t), "a token was logged");
    assert!(!logs.contains("a-test-secret-of-enough-length"), "the token secret was logged");
}
