//! The durable store (`data_dir`): a SIGKILL in the middle of publishing loses no answered
//! publish and every transport recovers after the restart; a torn tail is cut and reported;
//! damaged files stop the start with a clear error; retention keeps the directory bounded;
//! idempotency keys outlive a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{API_KEY, TestServer, WsClient};
use serde_json::{Value, json};

/// A fresh data directory under the target folder, removed first if a run left one.
fn data_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("store-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn durable_server(dir: &Path, extra: &[&str]) -> TestServer {
    let setting = format!("data_dir=\"{}\"", dir.display());
    let mut settings = vec![setting.as_str()];
    settings.extend_from_slice(extra);
    TestServer::start(&settings)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

fn offsets(history: &Value) -> Vec<u64> {
    history["messages"].as_array().unwrap().iter().map(|m| m["offset"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_mid_publish_loses_no_answered_publish_and_every_transport_recovers() {
    let dir = data_dir("sigkill");
    let mut server = durable_server(&dir, &[]);
    // One subscriber per transport, each remembering its last position.
    let mut ws = server.ws().await;
    let epoch = ws.subscribe("jobs", None).await["result"]["epoch"].as_str().unwrap().to_string();
    let mut sse = server.sse("channel=jobs", None).await;
    let (_, first_poll) = server.poll("channel=jobs&timeout=0").await;
    let poll_cursor = first_poll["cursor"].as_str().unwrap().to_string();

    // Four publishers, each publishing one message at a time until the server dies.
    let answered = Arc::new(Mutex::new(Vec::<(u64, Value)>::new()));
    let mut publishers = Vec::new();
    for p in 0..4 {
        let (url, answered) = (format!("{}/api/publish", server.base), answered.clone());
        publishers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0..150 {
                let data = json!({ "p": p, "i": i });
                let body = json!({ "channel": "jobs", "data": data });
                let Ok(response) = http.post(&url).bearer_auth(API_KEY).json(&body).send().await else { return };
                if response.status() != 200 {
                    return;
                }
                let Ok(reply) = response.json::<Value>().await else { return };
                answered.lock().unwrap().push((reply["offset"].as_u64().unwrap(), data));
            }
        }));
    }
    // Let some publishes through, and the subscribers see some of them, then SIGKILL.
    let seen_ws = ws.next().await.unwrap()["offset"].as_u64().unwrap();
    let seen_sse = sse.next().await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let answered = std::mem::take(&mut *answered.lock().unwrap());
    assert!(answered.len() >= 10, "publishes went through before the kill: {}", answered.len());

    let server = durable_server(&dir, &[]);
    let history = server.api_get("/api/channels/jobs/history").await;
    assert_eq!(history["epoch"], epoch.as_str(), "the same epoch continues");
    let offsets = offsets(&history);
    let want: Vec<u64> = (1..=offsets.len() as u64).collect();
    assert_eq!(offsets, want, "offsets from 1 without a gap or a duplicate");
    let messages = history["messages"].as_array().unwrap();
    for (offset, data) in &answered {
        assert_eq!(&messages[*offset as usize - 1]["data"], data, "answered publish {offset} is in history");
    }
    // Publishes continue after the last offset of the same epoch.
    let next = server.publish("jobs", json!("after the restart")).await;
    assert_eq!(next["offset"], offsets.len() as u64 + 1);

    // Every transport resumes from its position and recovers.
    let mut ws = server.ws().await;
    let reply = ws.subscribe("jobs", Some(json!({ "epoch": epoch, "offset": seen_ws }))).await;
    assert_eq!(reply["result"]["recovered"], true, "{reply}");
    assert_eq!(ws.next().await.unwrap()["offset"], seen_ws + 1);
    let mut sse = server.sse("channel=jobs", seen_sse.id.as_deref()).await;
    let event = sse.next().await.unwrap();
    assert_eq!(event.event, "message", "no reset: {:?}", event.data);
    assert_eq!(event.data["offset"], seen_sse.data["offset"].as_u64().unwrap() + 1);
    let (status, poll) = server.poll(&format!("channel=jobs&timeout=0&cursor={poll_cursor}")).await;
    assert_eq!(status, 200);
    assert_eq!(poll["resets"], json!([]), "{poll}");
    assert_eq!(poll["messages"][0]["offset"], 1);
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_reported_and_everything_before_it_served() {
    let dir = data_dir("torn");
    let mut server = durable_server(&dir, &[]);
    let mut epoch = String::new();
    for i in 1..=10 {
        epoch = server.publish("feed", json!({ "i": i, "pad": "x".repeat(100) })).await["epoch"]
            .as_str()
            .unwrap()
            .to_string();
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let segment = segments(&dir).pop().unwrap();
    let len = std::fs::metadata(&segment).unwrap().len();
    // Cut the last record in the middle.
    std::fs::OpenOptions::new().write(true).open(&segment).unwrap().set_len(len - 40).unwrap();

    let server = durable_server(&dir, &[]);
    let info = server.api_get("/api/info").await;
    assert!(info["store"]["tail_cut_bytes"].as_u64().unwrap() > 0, "{info}");
    let history = server.api_get("/api/channels/feed/history").await;
    assert_eq!(offsets(&history), (1..=9).collect::<Vec<_>>());
    // Offset 10 is issued again, so the channel says so: a new epoch.
    let next = server.publish("feed", json!("next")).await;
    assert_eq!(next["offset"], 10);
    assert_ne!(next["epoch"].as_str(), Some(epoch.as_str()), "the lost 10 and the new 10 must not share a name");
    // A client behind the cut resumes, and continues in the new epoch.
    let mut behind = WsClient::connect(&server.ws_url()).await;
    let reply = behind.subscribe("feed", Some(json!({"epoch": epoch, "offset": 8}))).await;
    assert_eq!(reply["result"]["recovered"], true, "{reply}");
    let got: Vec<_> =
        [behind.next().await.unwrap(), behind.next().await.unwrap()].iter().map(|m| m["offset"].clone()).collect();
    assert_eq!(got, [json!(9), json!(10)]);
    // One that saw the lost 10 gets a reset, never the new 10 as if it were its own.
    let mut saw_it = WsClient::connect(&server.ws_url()).await;
    let reply = saw_it.subscribe("feed", Some(json!({"epoch": epoch, "offset": 10}))).await;
    assert_eq!(reply["result"]["recovered"], false, "{reply}");
    let reset = saw_it.next().await.unwrap();
    assert_eq!((reset["type"].clone(), reset["epoch"].clone()), (json!("reset"), next["epoch"].clone()));
    // Over SSE the same, with a cursor that continues in the new epoch.
    let mut sse = server.sse("channel=feed", Some(&format!("feed~{epoch}~9"))).await;
    let event = sse.next().await.unwrap();
    assert_eq!((event.event.as_str(), event.data["offset"].clone()), ("message", json!(10)));
    assert!(sse.last_id.as_deref().unwrap().contains(next["epoch"].as_str().unwrap()), "{:?}", sse.last_id);
}

#[tokio::test]
async fn a_damaged_or_foreign_file_stops_the_start_with_a_clear_error() {
    for (name, damage) in [("foreign", "foreign"), ("middle", "middle")] {
        let dir = data_dir(name);
        let mut server = durable_server(&dir, &["data_segment_bytes=4096"]);
        for i in 0..40 {
            server.publish("feed", json!({ "i": i, "pad": "y".repeat(200) })).await;
        }
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        let files = segments(&dir);
        assert!(files.len() >= 2, "several segments: {files:?}");
        match damage {
            "foreign" => std::fs::write(dir.join("00000000000000000000.log"), b"PK\x03\x04 a zip file").unwrap(),
            _ => {
                let mut bytes = std::fs::read(&files[0]).unwrap();
                bytes[100] ^= 0xff;
                std::fs::write(&files[0], bytes).unwrap();
            }
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["serve", "--listen", "127.0.0.1:0", "--api-key", API_KEY, "--data-dir"])
            .arg(&dir)
            .env("HERALD_LOG", "warn")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}: the start fails");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said = if name == "foreign" { "not a Herald data file" } else { "checksum mismatch" };
        assert!(stderr.contains(said) && !stderr.contains("panicked"), "{name}: {stderr}");
    }
}

#[tokio::test]
async fn retention_keeps_the_directory_bounded_and_positions_survive_compaction() {
    let dir = data_dir("retention");
    let settings = [
        "history_size=20",
        "data_segment_bytes=65536",
        "heartbeat_secs=1",
        "idempotency_window_secs=0",
        "group_commit_ms=1",
    ];
    let mut server = durable_server(&dir, &settings);
    let pad = "z".repeat(500);
    let http = reqwest::Client::new();
    let url = format!("{}/api/publish", server.base);
    // Three publishers, one per channel, so that each channel's offsets follow its `i`.
    let publishers = (0..3).map(|c| {
        let (http, url, pad) = (http.clone(), url.clone(), pad.clone());
        async move {
            for i in 0..1000 {
                let body = json!({ "channel": format!("c{c}"), "data": { "i": i, "pad": pad } });
                let r = http.post(&url).bearer_auth(API_KEY).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
        }
    });
    futures_util::future::join_all(publishers).await;
    // A segment may be removed by compaction between listing and reading its size.
    let size = || segments(&dir).iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum::<u64>();
    let deadline = Instant::now() + Duration::from_secs(10);
    while size() > 256 * 1024 {
        assert!(Instant::now() < deadline, "the directory stayed at {} bytes after 1.5 MB of publishes", size());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let server = durable_server(&dir, &settings);
    for c in 0..3 {
        let history = server.api_get(&format!("/api/channels/c{c}/history")).await;
        assert_eq!(offsets(&history), (981..=1000).collect::<Vec<_>>(), "c{c} keeps its last 20");
    }
    assert_eq!(server.publish("c0", json!("next")).await["offset"], 1001);
}

#[tokio::test]
async fn an_idempotency_key_outlives_a_restart() {
    let dir = data_dir("idempotency");
    let mut server = durable_server(&dir, &["history_size=2"]);
    let body = json!({ "channel": "orders", "data": "order 1", "idempotency_key": "order-1" });
    let first = server.publish_body(body.clone()).await;
    for i in 0..5 {
        server.publish("orders", json!(i)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let server = durable_server(&dir, &["history_size=2"]);
    let mut ws = WsClient::connect(&server.ws_url()).await;
    ws.subscribe("orders", None).await;
    let retry = server.publish_body(body).await;
    assert_eq!(retry, first, "the retry gets the original answer");
    assert_eq!(server.api_get("/api/channels/orders/history").await["offset"], 6, "and is not published again");
    server.publish("orders", json!("live")).await;
    assert_eq!(ws.next().await.unwrap()["data"], "live", "nothing was delivered for the retry");
}

/// A channel forgotten while quiet keeps its position through compaction and a restart: its
/// clients resume in the same epoch, recovering what is published after.
#[tokio::test]
async fn a_forgotten_channel_keeps_its_position_across_compaction_and_restart() {
    let dir = data_dir("forgotten");
    let settings = ["history_ttl_secs=1", "data_segment_bytes=4096", "heartbeat_secs=1", "idempotency_window_secs=0"];
    let mut server = durable_server(&dir, &settings);
    let mut epoch = String::new();
    for i in 1..=3 {
        epoch = server.publish("quiet", json!({ "i": i })).await["epoch"].as_str().unwrap().to_string();
    }
    // Enough traffic on another channel to seal segments and have the quiet channel's records
    // compacted once its history expired.
    let pad = "p".repeat(500);
    for i in 0..40 {
        server.publish("busy", json!({ "i": i, "pad": pad })).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = server.api_get("/api/info").await;
        if info["forgotten_positions"].as_u64().unwrap_or(0) >= 1 && segments(&dir).len() <= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "never forgotten and compacted: {info}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let server = durable_server(&dir, &settings);
    let published = server.publish("quiet", json!({ "i": 4 })).await;
    assert_eq!((published["epoch"].as_str(), published["offset"].clone()), (Some(epoch.as_str()), json!(4)));
    let mut ws = WsClient::connect(&server.ws_url()).await;
    let reply = ws.subscribe("quiet", Some(json!({"epoch": epoch, "offset": 3}))).await;
    assert_eq!(reply["result"]["recovered"], true, "{reply}");
    assert_eq!(ws.next().await.unwrap()["data"]["i"], 4);
}
