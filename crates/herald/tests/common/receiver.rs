//! A webhook receiver (or hook endpoint) on 127.0.0.1: a small HTTP/1.1 server that records
//! every request it gets (path, headers and body) and answers with the status it is told to,
//! or what a responder makes of the request, over keep-alive connections.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, Ordering},
    },
    time::Duration,
};

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use super::WAIT;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    /// The request target.
    pub path: String,
    /// Header names, lowercased.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
}

/// The receiver; it stops with the test's runtime.
pub struct Receiver {
    pub url: String,
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

/// Makes an answer (status, JSON body) of a request.
type Responder = Arc<dyn Fn(&Received) -> (u16, String) + Send + Sync>;

impl Receiver {
    /// A receiver that answers every request with the status set by [`Receiver::answer`] (200
    /// at first) and no body.
    pub async fn start() -> Self {
        let status = Arc::new(AtomicU16::new(200));
        let answer = status.clone();
        Self::serve(status, Arc::new(move |_| (answer.load(Ordering::SeqCst), String::new()))).await
    }

    /// An endpoint that answers what `responder` makes of each request.
    pub async fn start_with(responder: impl Fn(&Received) -> (u16, String) + Send + Sync + 'static) -> Self {
        Self::serve(Arc::new(AtomicU16::new(200)), Arc::new(responder)).await
    }

    async fn serve(status: Arc<AtomicU16>, responder: Responder) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let got_ = got.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (got, responder) = (got_.clone(), responder.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let head_end = loop {
                            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break end + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                        let path = head.split(' ').nth(1).unwrap_or_default().to_string();
                        let headers: HashMap<String, String> = head
                            .lines()
                            .skip(1)
                            .filter_map(|l| l.split_once(':'))
                            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                            .collect();
                        let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                        while buf.len() < head_end + length {
                            let mut chunk = [0u8; 4096];
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let body = buf[head_end..head_end + length].to_vec();
                        buf.drain(..head_end + length);
                        let mut received = Received { path, headers, body, status: 0 };
                        let (answer, reply_body) = responder(&received);
                        received.status = answer;
                        got.lock().unwrap().push(received);
                        let reply = format!(
                            "HTTP/1.1 {answer} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{reply_body}",
                            reply_body.len()
                        );
                        if socket.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { url, got, status }
    }

    /// Answers every later request with `status`.
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The events of the requests answered 2xx, in order.
    pub fn delivered(&self) -> Vec<Value> {
        self.requests().iter().filter(|r| r.status < 300).flat_map(events).collect()
    }

    /// Waits until `pred` holds for the delivered events; panics after [`WAIT`].
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let delivered = self.delivered();
            if pred(&delivered) {
                return delivered;
            }
            assert!(tokio::time::Instant::now() < deadline, "never got {what}: {delivered:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// The events of a request's body.
pub fn events(request: &Received) -> Vec<Value> {
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    body["events"].as_array().unwrap().clone()
}

/// (type, user or channel) of each event.
pub fn kinds(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            let what = e["user"].as_str().or(e["channel"].as_str()).unwrap_or_default();
            let what = match (e["channel"].as_str(), e["user"].as_str()) {
                (Some(channel), Some(user)) => format!("{channel}/{user}"),
                _ => what.to_string(),
            };
            (e["type"].as_str().unwrap().to_string(), what)
        })
        .collect()
}
