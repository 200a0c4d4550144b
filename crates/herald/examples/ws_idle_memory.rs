//! The server's memory per idle, subscribed WebSocket connection, with and without
//! permessage-deflate: opens `--idle N` connections (offering permessage-deflate with
//! `--deflate`), subscribes each, leaves them quiet, and divides the growth of the server's
//! `herald_process_resident_memory_bytes` by them. `bench/compression.sh` runs it both ways
//! against fresh release servers, beside `herald bench --scenario compression` (bytes and CPU
//! per delivery).
//!
//! ```text
//! ws_idle_memory --herald http://127.0.0.1:8080 --idle 8000 --deflate
//! ```

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use tokio::{io::AsyncWriteExt, net::TcpStream};

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
    let offer = if deflate { "Sec-WebSocket-Extensions: permessage-deflate\r\n" } else { "" };
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

#[tokio::main]
async fn main() {
    let (mut herald, mut deflate, mut idle_connections) = ("http://127.0.0.1:8080".to_string(), false, 1000);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--herald" => herald = args.next().unwrap(),
            "--deflate" => deflate = true,
            "--idle" => idle_connections = args.next().unwrap().parse().unwrap(),
            other => panic!("unknown flag {other}"),
        }
    }
    idle(&herald, deflate, idle_connections).await;
}
