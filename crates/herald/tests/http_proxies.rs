//! The real client behind a proxy: `X-Forwarded-For` from `trusted_proxies` (through a real
//! nginx, Debian's `nginx-light`), and the HAProxy PROXY protocol (v1 and v2) on the listener.
//! What a user sees of the client's address is its per-IP budget: with `max_streams_per_ip=1`
//! two clients behind one proxy each get a stream, and one client gets only one, however it
//! names itself.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use std::{
    net::{IpAddr, SocketAddr},
    process::{Child, Command},
    time::Duration,
};

use common::{SseClient, TestServer, WAIT};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

/// A reqwest client whose connections leave from `source` (any address of 127.0.0.0/8).
fn client_from(source: &str) -> reqwest::Client {
    let source: IpAddr = source.parse().unwrap();
    reqwest::Client::builder().local_address(source).build().unwrap()
}

/// Opens an SSE stream to `url` (held open while the returned response lives): its status.
async fn open_stream(http: &reqwest::Client, url: &str, forwarded_for: Option<&str>) -> (u16, reqwest::Response) {
    let mut request = http.get(url);
    if let Some(forwarded) = forwarded_for {
        request = request.header("X-Forwarded-For", forwarded);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response)
}

#[tokio::test]
async fn forwarded_for_names_the_client_only_from_a_trusted_proxy() {
    let server = TestServer::start(&[r#"trusted_proxies=["127.0.0.1"]"#, "max_streams_per_ip=1"]);
    let url = format!("{}/sse/jobs", server.base);
    // From the trusted proxy: each forwarded client has its own budget.
    let proxy = client_from("127.0.0.1");
    let (first, _a) = open_stream(&proxy, &url, Some("203.0.113.7")).await;
    let (second, _b) = open_stream(&proxy, &url, Some("203.0.113.8")).await;
    let (again, _c) = open_stream(&proxy, &url, Some("6.6.6.6, 203.0.113.7")).await;
    assert_eq!((first, second, again), (200, 200, 429), "the right-most untrusted hop is the client");
    // From anyone else the header is ignored: the peer's address counts.
    let direct = client_from("127.0.0.2");
    let (first, _d) = open_stream(&direct, &url, Some("203.0.113.20")).await;
    let (second, _e) = open_stream(&direct, &url, Some("203.0.113.21")).await;
    assert_eq!((first, second), (200, 429), "an untrusted peer cannot name another client");
}

/// nginx on a free loopback port in front of `upstream`, as docs/deployment.md configures it;
/// stopped, and its scratch directory removed, on drop.
struct Nginx {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Nginx {
    fn start(upstream: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("herald-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let upstream = upstream.trim_start_matches("http://");
        let d = dir.display();
        let conf = format!(
            r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream herald {{ server {upstream}; keepalive 16; }}
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://herald;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
            proxy_read_timeout 1h;
        }}
    }}
}}
"#
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .args(["-p", &dir.display().to_string(), "-c", &dir.join("nginx.conf").display().to_string()])
            .spawn()
            .expect("nginx runs (apt install nginx-light)");
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port, dir }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn behind_a_real_nginx_each_client_is_itself() {
    let server = TestServer::start(&[r#"trusted_proxies=["127.0.0.1"]"#, "max_streams_per_ip=1"]);
    let nginx = Nginx::start(&server.base);
    let url = format!("{}/sse/jobs", nginx.base());
    let (ada, bob) = (client_from("127.0.0.2"), client_from("127.0.0.3"));
    // Two clients through the one proxy: a stream each, and it streams through nginx at once.
    let mut ada_stream = SseClient::connect(&ada, &url, None).await;
    let (bob_status, _bob_stream) = open_stream(&bob, &url, None).await;
    assert_eq!(bob_status, 200, "bob is not ada: nginx's address is not the client");
    server.publish("jobs", json!({"title": "Rust engineer"})).await;
    let event = ada_stream.next().await.expect("an event through nginx");
    assert_eq!(event.data["data"]["title"], "Rust engineer");
    // Ada's second stream is over her budget, however she names herself: nginx appends her
    // real address after what she sent.
    let (again, _) = open_stream(&ada, &url, None).await;
    let (spoofed, _) = open_stream(&ada, &url, Some("127.0.0.9")).await;
    assert_eq!((again, spoofed), (429, 429));
    // The API and a WebSocket work through the same proxy.
    let history = ada.get(format!("{}/history/jobs", nginx.base())).send().await.unwrap();
    assert_eq!(history.status(), 200);
    let ws_url = format!("ws://127.0.0.1:{}/ws", nginx.port);
    let mut ws = common::WsClient::connect(&ws_url).await;
    let reply = ws.subscribe("jobs", None).await;
    assert_eq!(reply["result"]["offset"], 1, "{reply}");
}

/// Sends `prefix` and an SSE request for `/sse/jobs` from `source`; the answer's status.
async fn stream_with_prefix(server: &TestServer, source: &str, prefix: &[u8]) -> (u16, TcpStream) {
    let address: SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source.parse().unwrap(), 0)).unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    stream.write_all(prefix).await.unwrap();
    stream.write_all(b"GET /sse/jobs HTTP/1.1\r\nHost: h\r\n\r\n").await.unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(WAIT, stream.read_exact(&mut head)).await.expect("an answer").expect("reads");
    let status = std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap();
    (status, stream)
}

fn proxy_v2(source: [u8; 4], port: u16) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&source);
    header.extend_from_slice(&[127, 0, 0, 1]);
    header.extend_from_slice(&port.to_be_bytes());
    header.extend_from_slice(&8080u16.to_be_bytes());
    header
}

#[tokio::test]
async fn the_proxy_protocol_names_the_client_from_trusted_peers_only() {
    let server =
        TestServer::start(&[r#"trusted_proxies=["127.0.0.1"]"#, "proxy_protocol=true", "max_streams_per_ip=1"]);
    let v1 = |client: &str| format!("PROXY TCP4 {client} 127.0.0.1 51000 8080\r\n").into_bytes();
    let (first, _a) = stream_with_prefix(&server, "127.0.0.1", &v1("203.0.113.7")).await;
    let (second, _b) = stream_with_prefix(&server, "127.0.0.1", &proxy_v2([203, 0, 113, 8], 51001)).await;
    let (again_v1, _c) = stream_with_prefix(&server, "127.0.0.1", &v1("203.0.113.8")).await;
    let (again_v2, _d) = stream_with_prefix(&server, "127.0.0.1", &proxy_v2([203, 0, 113, 7], 51002)).await;
    assert_eq!((first, second, again_v1, again_v2), (200, 200, 429, 429));
    // A trusted peer that sends no header is refused: its connections must carry one.
    let (bare, _) = stream_with_prefix(&server, "127.0.0.1", b"").await;
    assert_eq!(bare, 400);
    // From anyone else, plain HTTP is served as the peer, and a PROXY header is not honoured.
    let (plain, _e) = stream_with_prefix(&server, "127.0.0.2", b"").await;
    let (claimed, _) = stream_with_prefix(&server, "127.0.0.3", &v1("203.0.113.30")).await;
    assert_eq!((plain, claimed), (200, 400));
}
