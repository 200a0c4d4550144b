//! The CLI end to end: `herald subscribe --transport ws|sse|poll` prints what `herald publish`
//! sends, as one JSON envelope per line.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use common::{API_KEY, TestServer};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_prints_what_publish_sends_on_every_transport() {
    let server = TestServer::start(&[]);
    for transport in ["ws", "sse", "poll"] {
        let channel = format!("cli-{transport}");
        let mut subscriber = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["subscribe", &channel, "--transport", transport, "--count", "2", "--url", &server.base])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // The subscriber connects before anything is published: wait for the server to see it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let channels = server.api_get("/api/channels").await;
            if channels["channels"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["channel"] == channel.as_str() && c["subscribers"].as_u64() > Some(0))
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{transport} subscriber never connected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for data in [r#"{"n":1}"#, "plain text"] {
            let out = Command::new(env!("CARGO_BIN_EXE_herald"))
                .args(["publish", &channel, data, "--event", "cli", "--url", &server.base])
                .env("HERALD_API_KEY", API_KEY)
                .output()
                .unwrap();
            assert!(out.status.success(), "publish failed: {}", String::from_utf8_lossy(&out.stderr));
            let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(reply["channel"], channel.as_str());
        }
        let lines: Vec<Value> = BufReader::new(subscriber.stdout.take().unwrap())
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect();
        assert!(subscriber.wait().unwrap().success());
        assert_eq!(lines.len(), 2, "{transport}: {lines:?}");
        assert_eq!((lines[0]["data"]["n"].as_u64(), lines[0]["event"].as_str()), (Some(1), Some("cli")));
        assert_eq!(lines[1]["data"], "plain text");
        assert_eq!((lines[0]["offset"].as_u64(), lines[1]["offset"].as_u64()), (Some(1), Some(2)));
    }
}
