//! TLS: HTTP/2 by ALPN serves SSE, long polls and the API to a client that negotiates h2
//! (`curl --http2`), and HTTP/1.1 alongside, WebSocket included.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use common::{API_KEY, TestServer, WsClient};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio_rustls::rustls::{self, pki_types::CertificateDer, pki_types::pem::PemObject};

const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testdata/tls-cert.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testdata/tls-key.pem");

fn tls_server(extra: &[&str]) -> TestServer {
    let cert = format!("tls_cert=\"{CERT}\"");
    let key = format!("tls_key=\"{KEY}\"");
    let mut settings = vec![cert.as_str(), key.as_str(), "tls_listen=\"127.0.0.1:0\""];
    settings.extend_from_slice(extra);
    TestServer::start(&settings)
}

/// `curl` over TLS with `args`; returns (HTTP version, body).
fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--cacert", CERT, "-w", "\n%{http_version}"])
        .args(args)
        .output()
        .expect("curl runs (apt package curl)");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, version) = text.rsplit_once('\n').unwrap();
    (version.to_string(), body.to_string())
}

#[tokio::test]
async fn sse_over_http2_streams_to_a_client_that_negotiates_h2() {
    let server = tls_server(&[]);
    let base = server.tls_base.clone().unwrap();
    let mut sse = Command::new("curl")
        .args(["-sS", "-N", "-i", "--http2", "--cacert", CERT, "--max-time", "20"])
        .arg(format!("{base}/sse?channel=news"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sse.stdout.take().unwrap()).lines();
    let status = lines.next().unwrap().unwrap();
    assert!(status.starts_with("HTTP/2 200"), "{status}");
    let reader = std::thread::spawn(move || {
        lines.map_while(Result::ok).find(|l| l.starts_with("data: ")).expect("an event over h2")
    });
    server.wait_for_connections("sse", 1).await;
    // Publish over TLS as well, on HTTP/2.
    let body = json!({"channel":"news","data":"over h2"}).to_string();
    let auth = format!("authorization: Bearer {API_KEY}");
    let (version, reply) = curl(&["--http2", "-H", &auth, "-d", &body, &format!("{base}/api/publish")]);
    assert_eq!(version, "2", "{reply}");
    assert!(reply.contains(r#""offset":1"#), "{reply}");
    let event = reader.join().unwrap();
    assert!(event.contains(r#""data":"over h2""#), "{event}");
    let _ = sse.kill();
    let _ = sse.wait();

    // Long polling and errors come through the same way.
    let (version, poll) = curl(&["--http2", &format!("{base}/poll?channel=news&timeout=0")]);
    assert_eq!(version, "2");
    assert!(poll.starts_with(r#"{"messages":[],"cursor":"news~"#), "{poll}");
    let (version, denied) = curl(&["--http2", &format!("{base}/api/info")]);
    assert_eq!(version, "2");
    assert!(denied.contains("unauthorized"), "{denied}");
    let (version, _) = curl(&["--http1.1", &format!("{base}/healthz")]);
    assert_eq!(version, "1.1", "HTTP/1.1 alongside");
}

#[tokio::test]
async fn websocket_over_tls_with_http1_subscribes_and_receives() {
    let server = tls_server(&[]);
    let base = server.tls_base.clone().unwrap();
    let addr = base.trim_start_matches("https://").to_string();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(CERT).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let tls = connector.connect("localhost".try_into().unwrap(), tcp).await.expect("TLS handshake");
    let (mut socket, _) =
        tokio_tungstenite::client_async(format!("wss://{addr}/ws"), tls).await.expect("upgrade over TLS");
    socket
        .send(tokio_tungstenite::tungstenite::Message::text(r#"{"id":1,"op":"subscribe","channel":"news"}"#))
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap().unwrap().unwrap();
    assert!(reply.to_text().unwrap().contains(r#""result""#), "{reply}");
    server.publish("news", json!("over wss")).await;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap().unwrap().unwrap();
        if frame.to_text().unwrap().contains("over wss") {
            break;
        }
    }
    // The plain port keeps working beside it.
    let mut plain = WsClient::connect(&server.ws_url()).await;
    plain.subscribe("news", None).await;
}
