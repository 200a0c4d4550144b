//! Publishing the load: paced publishes carrying markers (for the delivery scenarios), and
//! as-fast-as-possible publishes on keep-alive connections (the `publish` scenario).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, client::conn::http1::SendRequest};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{
    net::{Connector, now_us},
    target::Target,
    tracker::{Marker, text_piece},
};

/// The channels of a run and how many messages each got.
pub struct Channels {
    /// Their names; the index is the marker's channel number.
    pub names: Vec<Arc<str>>,
    /// Sequence numbers handed out per channel (the next seq to publish).
    pub published: Vec<AtomicU64>,
    /// Publishes the server refused or that failed, per channel.
    pub failed: Vec<AtomicU64>,
}

// === impl Channels ===

impl Channels {
    /// `count` channels named `<prefix>-<i>`.
    pub fn new(prefix: &str, count: usize) -> Arc<Self> {
        Arc::new(Self {
            names: (0..count).map(|i| Arc::from(format!("{prefix}-{i}"))).collect(),
            published: (0..count).map(|_| AtomicU64::new(0)).collect(),
            failed: (0..count).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// Messages published to channel `i` so far.
    pub fn published(&self, i: usize) -> u64 {
        self.published[i].load(Ordering::Acquire)
    }

    /// Failed publishes over every channel.
    pub fn failures(&self) -> u64 {
        self.failed.iter().map(|f| f.load(Ordering::Relaxed)).sum()
    }

    /// Messages published over every channel.
    pub fn total_published(&self) -> u64 {
        (0..self.names.len()).map(|i| self.published(i)).sum()
    }
}

/// Publishes `rate` messages per second over all `channels` for `duration`, on `connections`
/// keep-alive connections, each message the `payload` of its marker. Each channel is published
/// by one connection, one message at a time, so its sequence numbers reach the server in order.
pub async fn paced(
    target: &Target,
    connector: &Connector,
    channels: &Arc<Channels>,
    payload: fn(Marker) -> String,
    rate: f64,
    duration: Duration,
    connections: usize,
) {
    let connections = connections.clamp(1, channels.names.len());
    let mut tasks = Vec::new();
    for k in 0..connections {
        let owned: Vec<usize> = (k..channels.names.len()).step_by(connections).collect();
        let share = rate * owned.len() as f64 / channels.names.len() as f64;
        let (target, channels) = (target.clone(), channels.clone());
        let sender = connector.http1().await;
        tasks.push(tokio::spawn(async move {
            let Ok(mut sender) = sender else { return };
            let started = Instant::now();
            let mut sent = 0u64;
            while started.elapsed() < duration {
                let due = (started.elapsed().as_secs_f64() * share) as u64;
                if sent >= due {
                    let next = Duration::from_secs_f64((sent + 1) as f64 / share);
                    tokio::time::sleep(next.saturating_sub(started.elapsed()).min(duration)).await;
                    continue;
                }
                let i = owned[(sent % owned.len() as u64) as usize];
                let seq = channels.published[i].load(Ordering::Relaxed);
                let marker = Marker { channel: i as u32, seq, sent_us: now_us() };
                let ok = send(&mut sender, target.publish(&channels.names[i], payload(marker))).await;
                // Counted before the next publish of this channel is sent.
                channels.published[i].store(seq + 1, Ordering::Release);
                if !ok {
                    channels.failed[i].fetch_add(1, Ordering::Relaxed);
                }
                sent += 1;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Writes a token stream into each of `channels` for `duration`: one `PUT
/// /api/channels/{channel}/streams` per channel whose chunked body is a piece every
/// `1 / rate` seconds, each piece a marker ([`text_piece`]), then the body's end (which
/// finishes the stream). Pieces count as published once written.
pub async fn stream_pieces(
    target: &Target,
    connector: &Connector,
    channels: &Arc<Channels>,
    rate: f64,
    duration: Duration,
) {
    let mut tasks = Vec::new();
    for i in 0..channels.names.len() {
        let (channels, key) = (channels.clone(), target.api_key.clone().unwrap_or_default());
        let socket = connector.connect().await;
        tasks.push(tokio::spawn(async move {
            let Ok(mut socket) = socket else {
                channels.failed[i].fetch_add(1, Ordering::Relaxed);
                return;
            };
            let head = format!(
                "PUT /api/channels/{}/streams?event=token HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n\
                 Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
                channels.names[i]
            );
            if socket.write_all(head.as_bytes()).await.is_err() {
                channels.failed[i].fetch_add(1, Ordering::Relaxed);
                return;
            }
            let started = Instant::now();
            let mut seq = 0u64;
            while started.elapsed() < duration {
                let next = Duration::from_secs_f64(seq as f64 / rate);
                tokio::time::sleep(next.saturating_sub(started.elapsed())).await;
                let piece = text_piece(Marker { channel: i as u32, seq, sent_us: now_us() });
                let chunk = format!("{:x}\r\n{piece}\r\n", piece.len());
                if socket.write_all(chunk.as_bytes()).await.is_err() {
                    channels.failed[i].fetch_add(1, Ordering::Relaxed);
                    return;
                }
                seq += 1;
                channels.published[i].store(seq, Ordering::Release);
            }
            let mut answer = [0u8; 512];
            let finished = socket.write_all(b"0\r\n\r\n").await.is_ok()
                && matches!(socket.read(&mut answer).await, Ok(n) if answer[..n].starts_with(b"HTTP/1.1 200"));
            if !finished {
                channels.failed[i].fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Sends one request and reads the answer; true on a 2xx.
pub async fn send(sender: &mut SendRequest<Full<Bytes>>, request: Request<Full<Bytes>>) -> bool {
    if sender.ready().await.is_err() {
        return false;
    }
    match sender.send_request(request).await {
        Ok(response) => {
            let ok = response.status().is_success();
            ok && response.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

/// Sends `make(connection, n)` back to back on each of `connections` keep-alive connections for
/// `duration`. Returns how many were answered with a 2xx and how many failed.
pub async fn flood(
    connector: &Connector,
    connections: usize,
    duration: Duration,
    make: impl Fn(usize, u64) -> Request<Full<Bytes>> + Send + Sync + 'static,
) -> (u64, u64) {
    let make = Arc::new(make);
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for k in 0..connections {
        let Ok(mut sender) = connector.http1().await else {
            failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (make, ok, failed, stop) = (make.clone(), ok.clone(), failed.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                if send(&mut sender, make(k, n)).await {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    if sender.is_closed() {
                        return;
                    }
                }
                n += 1;
            }
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
}
