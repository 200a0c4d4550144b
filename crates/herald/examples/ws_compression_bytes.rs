//! Bytes on the wire and server CPU per WebSocket delivery, with and without
//! permessage-deflate, for a realistic JSON payload (a job posting of about 1 KB): opens
//! `--subscribers` raw WebSocket clients (offering permessage-deflate with `--deflate`, asking
//! for the compact envelope with `--compact`),
//! publishes `--messages` postings, reads every frame, and divides the server's
//! `herald_bytes_out_total{transport="ws"}` and `herald_process_cpu_seconds` growth by the
//! deliveries. With `--idle N` it instead opens N subscribed connections that stay quiet and
//! divides the server's resident memory growth by them. `bench/compression.sh` runs it both
//! ways against a release server.
//!
//! ```text
//! ws_compression_bytes --herald http://127.0.0.1:8080 --api-key KEY --deflate
//! ```

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Posting `n`: the test data's job posting (about 1 KB of JSON) with its own id.
fn posting(n: u64) -> Value {
    let mut posting: Value = serde_json::from_str(include_str!("../tests/testdata/job_posting.json")).unwrap();
    posting["id"] = json!(n);
    posting
}

/// `(bytes out over WebSockets, CPU seconds)` from `/metrics`.
async fn counters(http: &reqwest::Client, herald: &str) -> (f64, f64) {
    let text = http.get(format!("{herald}/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |prefix: &str| {
        text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).unwrap().parse::<f64>().unwrap()
    };
    (value("herald_bytes_out_total{transport=\"ws\"}"), value("herald_process_cpu_seconds "))
}

/// Whether the clients ask for the compact envelope (`--compact`).
static COMPACT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// The server's resident memory, from `/metrics`.
async fn resident(http: &reqwest::Client, herald: &str) -> f64 {
    let text = http.get(format!("{herald}/metrics")).send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with("herald_process_resident_memory_bytes ")).unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Opens `count` subscribed connections and leaves them idle; prints the server's memory per
/// connection.
async fn idle(herald: &str, deflate: bool, count: u64) {
    let http = reqwest::Client::new();
    let address = herald.trim_start_matches("http://").to_string();
    let before = resident(&http, herald).await;
    let mut sockets = Vec::new();
    for _ in 0..count {
        sockets.push(upgraded(&address, deflate).await);
    }
    // Every subscribe answered, the server settled.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = resident(&http, herald).await;
    println!(
        "{count} idle WebSocket connections{}: {:.0} bytes of server memory each",
        if deflate { " with permessage-deflate" } else { "" },
        (after - before) / count as f64
    );
}

/// Connects, upgrades (offering permessage-deflate when `deflate`) and subscribes to
/// `postings`.
async fn upgraded(address: &str, deflate: bool) -> TcpStream {
    let mut socket = TcpStream::connect(address).await.unwrap();
    let mut offer = if deflate { "Sec-WebSocket-Extensions: permessage-deflate\r\n" } else { "" }.to_string();
    if COMPACT.get().copied().unwrap_or(false) {
        offer.push_str("Sec-WebSocket-Protocol: herald.compact\r\n");
    }
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{offer}\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    // The subscribe command, masked with a zero mask.
    let command = br#"{"op":"subscribe","channel":"postings","id":1}"#;
    let mut frame = vec![0x81, 0x80 | command.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(command);
    socket.write_all(&frame).await.unwrap();
    socket
}

/// A subscriber: upgrades, subscribes to `postings`, then counts message frames until `want`.
async fn subscriber(address: String, deflate: bool, want: u64, ready: tokio::sync::mpsc::Sender<()>) -> bool {
    let mut socket = upgraded(&address, deflate).await;
    let (mut bytes, mut buf, mut head_done, mut seen, mut agreed) = (Vec::new(), vec![0; 1 << 16], false, 0, false);
    let mut told = false;
    while seen < want {
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "the server closed");
        bytes.extend_from_slice(&buf[..n]);
        if !head_done {
            let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            agreed = String::from_utf8_lossy(&bytes[..end]).contains("permessage-deflate");
            bytes.drain(..end + 4);
            head_done = true;
        }
        loop {
            if bytes.len() < 2 {
                break;
            }
            let (len, at) = match bytes[1] & 0x7f {
                126 if bytes.len() >= 4 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
                126 => break,
                n => (usize::from(n), 2),
            };
            if bytes.len() < at + len {
                break;
            }
            let text = bytes[0] & 0x0f == 1;
            let ping = bytes[at..at + len].windows(14).any(|w| w == b"\"type\":\"ping\"}");
            // The subscribe reply first; then every text frame but a ping push is a message.
            if text && !told {
                told = true;
                ready.send(()).await.unwrap();
            } else if text && !ping {
                seen += 1;
            }
            bytes.drain(..at + len);
        }
    }
    agreed
}

#[tokio::main]
async fn main() {
    let (mut herald, mut key, mut deflate, mut subscribers, mut messages) =
        ("http://127.0.0.1:8080".to_string(), String::new(), false, 100u64, 200u64);
    let mut idle_connections = 0;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--herald" => herald = args.next().unwrap(),
            "--api-key" => key = args.next().unwrap(),
            "--deflate" => deflate = true,
            "--compact" => COMPACT.set(true).unwrap(),
            "--subscribers" => subscribers = args.next().unwrap().parse().unwrap(),
            "--messages" => messages = args.next().unwrap().parse().unwrap(),
            "--idle" => idle_connections = args.next().unwrap().parse().unwrap(),
            other => panic!("unknown flag {other}"),
        }
    }
    if idle_connections > 0 {
        return idle(&herald, deflate, idle_connections).await;
    }
    let http = reqwest::Client::new();
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel(subscribers as usize);
    let address = herald.trim_start_matches("http://").to_string();
    let clients: Vec<_> = (0..subscribers)
        .map(|_| tokio::spawn(subscriber(address.clone(), deflate, messages, ready_tx.clone())))
        .collect();
    for _ in 0..subscribers {
        ready.recv().await.unwrap();
    }
    let (bytes_before, cpu_before) = counters(&http, &herald).await;
    for n in 0..messages {
        let body = json!({ "channel": "postings", "data": posting(n) });
        let r = http.post(format!("{herald}/api/publish")).bearer_auth(&key).json(&body).send().await.unwrap();
        assert!(r.status().is_success());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut agreed = 0;
    for client in clients {
        agreed += u64::from(client.await.unwrap());
    }
    let (bytes_after, cpu_after) = counters(&http, &herald).await;
    let deliveries = (subscribers * messages) as f64;
    println!(
        "{} subscribers ({agreed} with permessage-deflate{}), {messages} messages of {} bytes of JSON: \
         {:.0} bytes out per delivery, {:.2} µs server CPU per delivery (publishes included)",
        subscribers,
        if COMPACT.get().is_some() { ", compact" } else { "" },
        serde_json::to_vec(&posting(0)).unwrap().len(),
        (bytes_after - bytes_before) / deliveries,
        (cpu_after - cpu_before) * 1e6 / deliveries
    );
}
