//! `herald bench` counts what it receives: against a server that drops and duplicates on
//! purpose, it reports exactly those losses and duplicates; against one that stalls a
//! delivery on purpose (as a heartbeat burst would), its latency figures show the stall;
//! against one that is late for half its subscribers, a message's first delivery stays quick
//! and its last one carries the lag; against Herald, no loss; and compressed WebSocket
//! deliveries and long polls are counted, against Herald and Nchan.

#![allow(clippy::unwrap_used)] // Test helpers: any failure is the test failing.

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::broadcast,
};

/// The faulty server drops every message whose sequence number is 4 mod 5, and sends twice
/// every other message whose sequence number is 3 mod 7.
fn fate(seq: u64) -> usize {
    if seq % 5 == 4 {
        0
    } else if seq % 7 == 3 {
        2
    } else {
        1
    }
}

/// How the test server misbehaves: how many times it sends message `seq` (`fate`), a message
/// before which every stream stalls, and for how long, and a lag after its publish at which
/// every second stream gets each message.
#[derive(Clone, Copy)]
struct Faults {
    fate: fn(u64) -> usize,
    stall: Option<(u64, Duration)>,
    lag: Option<Duration>,
}

/// A published message as the test server hands it to its streams: sequence number, SSE
/// event, when it was published.
type Published = (u64, String, Instant);

/// A server speaking just enough of Herald's API and SSE for the bench, badly.
async fn faulty_server(faults: Faults) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, _) = broadcast::channel::<Published>(100_000);
    let tx = Arc::new(tx);
    let streams = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(serve(stream, tx.clone(), streams.clone(), faults));
        }
    });
    addr
}

/// Serves one connection; `streams` counts the SSE streams opened so far.
async fn serve(stream: TcpStream, tx: Arc<broadcast::Sender<Published>>, streams: Arc<AtomicUsize>, faults: Faults) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).await.unwrap();
        if request_line.starts_with("POST /api/publish ") {
            let body: Value = serde_json::from_slice(&body).unwrap();
            let seq = body["data"]["b"][1].as_u64().unwrap();
            let event = format!("data: {}\n\n", body["data"]);
            let published = Instant::now();
            for _ in 0..(faults.fate)(seq) {
                let _ = tx.send((seq, event.clone(), published));
            }
            let reply = r#"{"channel":"c","offset":1,"epoch":"e"}"#;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{reply}",
                reply.len()
            );
            reader.get_mut().write_all(response.as_bytes()).await.unwrap();
        } else if request_line.starts_with("GET /sse/") {
            let mut rx = tx.subscribe();
            let lag = faults.lag.filter(|_| streams.fetch_add(1, Ordering::Relaxed) % 2 == 1);
            let stream = reader.get_mut();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n: hi\n\n")
                .await
                .unwrap();
            while let Ok((seq, event, published)) = rx.recv().await {
                if let Some((at, stall)) = faults.stall
                    && seq == at
                {
                    tokio::time::sleep(stall).await;
                }
                if let Some(lag) = lag {
                    tokio::time::sleep_until((published + lag).into()).await;
                }
                if stream.write_all(event.as_bytes()).await.is_err() {
                    return;
                }
            }
            return;
        } else {
            reader.get_mut().write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").await.unwrap();
        }
    }
}

fn run_bench(args: &[&str]) -> Value {
    let out = tempdir();
    let status = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("bench")
        .args(args)
        .args(["--out", out.to_str().unwrap()])
        .env("HERALD_LOG", "warn")
        .status()
        .expect("herald bench runs");
    assert!(status.success());
    let json: Value = serde_json::from_slice(&std::fs::read(out.join("bench.json")).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&out);
    json
}

/// `herald bench` against `url`: the seed scenario over SSE, 20 subscribers on one channel,
/// 100 messages/s for `seconds`.
async fn seed_over_sse(url: String, seconds: u64) -> Value {
    tokio::task::spawn_blocking(move || {
        let seconds = seconds.to_string();
        run_bench(&[
            "--url",
            &url,
            "--scenario",
            "seed",
            "--transport",
            "sse",
            "--subscribers",
            "20",
            "--channels",
            "1",
            "--rate",
            "100",
            "--duration",
            &seconds,
            "--sources",
            "2",
        ])
    })
    .await
    .unwrap()
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-bench-test-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reports_exactly_the_losses_and_duplicates_of_a_faulty_server() {
    let addr = faulty_server(Faults { fate, stall: None, lag: None }).await;
    let url = format!("http://{addr}");
    let subscribers = 20u64;
    let json = seed_over_sse(url, 2).await;
    let row = &json["rows"][0]["figures"];
    let published = row["published"].as_f64().unwrap() as u64;
    assert!(published >= 150, "about 200 messages in 2 s: {row}");
    let dropped = (0..published).filter(|s| fate(*s) == 0).count() as u64;
    let doubled = (0..published).filter(|s| fate(*s) == 2).count() as u64;
    assert_eq!(row["lost"].as_f64().unwrap() as u64, subscribers * dropped, "{row}");
    assert_eq!(row["duplicated"].as_f64().unwrap() as u64, subscribers * doubled, "{row}");
    assert_eq!(row["out_of_order"].as_f64().unwrap(), 0.0, "{row}");
    assert_eq!(row["delivered"].as_f64().unwrap() as u64, subscribers * (published - dropped + doubled), "{row}");
}

/// A stall of every stream at one message (what a heartbeat burst did to the deliveries behind
/// it) must show in the latency figures, not average away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_latency_figures_see_a_stalled_delivery() {
    let stall = Duration::from_millis(400);
    let addr = faulty_server(Faults { fate: |_| 1, stall: Some((60, stall)), lag: None }).await;
    let url = format!("http://{addr}");
    let json = seed_over_sse(url, 3).await;
    let row = &json["rows"][0]["figures"];
    assert_eq!(row["lost"].as_f64().unwrap(), 0.0, "{row}");
    let (p50, p99, max) = (
        row["latency_p50_ms"].as_f64().unwrap(),
        row["latency_p99_ms"].as_f64().unwrap(),
        row["latency_max_ms"].as_f64().unwrap(),
    );
    assert!(max >= 380.0, "the 400 ms stall is the worst delivery: max {max} ms: {row}");
    assert!(p99 >= 100.0, "the deliveries queued behind it reach the tail: p99 {p99} ms: {row}");
    assert!(p50 < 100.0, "the rest are quick: p50 {p50} ms: {row}");
}

/// Half the subscribers get every message 150 ms after its publish: a long spread, not a late
/// start. A message's first delivery stays quick and its last one carries the lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_splits_a_message_into_its_first_and_last_delivery() {
    let addr = faulty_server(Faults { fate: |_| 1, stall: None, lag: Some(Duration::from_millis(150)) }).await;
    let json = seed_over_sse(format!("http://{addr}"), 2).await;
    let row = &json["rows"][0]["figures"];
    assert_eq!(row["lost"].as_f64().unwrap(), 0.0, "{row}");
    let (first, last) = (row["first_delivery_p50_ms"].as_f64().unwrap(), row["last_delivery_p50_ms"].as_f64().unwrap());
    assert!(first < 50.0, "the prompt half reads each message at once: first delivery {first} ms: {row}");
    assert!(last >= 145.0, "the late half reads it 150 ms after its publish: last delivery {last} ms: {row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_against_herald_loses_nothing_on_any_transport() {
    let json = tokio::task::spawn_blocking(|| {
        run_bench(&[
            "--scenario",
            "seed",
            "--transport",
            "all",
            "--subscribers",
            "60",
            "--channels",
            "3",
            "--rate",
            "60",
            "--duration",
            "1",
            "--sources",
            "2",
        ])
    })
    .await
    .unwrap();
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "one row per transport");
    for row in rows {
        let f = &row["figures"];
        let published = f["published"].as_f64().unwrap();
        assert!(published >= 30.0, "{f}");
        assert_eq!(f["lost"], 0.0, "{row}");
        assert_eq!(f["duplicated"], 0.0, "{row}");
        assert_eq!(f["delivered"].as_f64().unwrap(), published * 20.0, "each of 3 channels has 20 subscribers: {row}");
        assert!(f["server_rss_mb"].as_f64().unwrap() > 0.0, "a local server is read from /proc: {row}");
    }
}

/// The `compression` scenario: a ~1 KB JSON job posting over WebSocket, plain and with
/// permessage-deflate, on Herald and on nginx + Nchan (Debian's nginx-light and
/// libnginx-mod-nchan) with its deflate on, in the same run. Each server must agree to the
/// compression offered, every posting must be counted once inflated, and the compressed
/// passes must carry fewer bytes.
#[test]
fn compression_is_measured_on_herald_and_nchan_and_loses_nothing() {
    let json = run_small_bench_with_nchan(&["--scenario", "compression"]);
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "Herald and Nchan, over WebSocket only: {json}");
    for row in rows {
        assert_eq!(row["transport"], "ws", "{row}");
        let f = &row["figures"];
        let passes: &[&str] = if row["server"] == "herald" {
            &["", "deflate_", "compact_", "compact_deflate_"]
        } else {
            &["", "deflate_"]
        };
        for prefix in passes {
            let figure =
                |name: &str| f[format!("{prefix}{name}")].as_f64().unwrap_or_else(|| panic!("{prefix}{name}: {f}"));
            assert!(figure("published") >= 40.0, "{prefix}: {f}");
            assert_eq!(figure("connect_failures"), 0.0, "every subscriber got the offer agreed ({prefix}): {f}");
            assert_eq!((figure("lost"), figure("duplicated")), (0.0, 0.0), "{prefix}: {f}");
            // 4 channels of 10 subscribers each.
            assert_eq!(figure("delivered"), figure("published") * 10.0, "{prefix}: {f}");
        }
        let bytes = |prefix: &str| f[format!("{prefix}bytes_per_delivery")].as_f64().unwrap();
        assert!(bytes("") > 900.0, "a plain delivery carries the whole posting: {f}");
        assert!(bytes("deflate_") < bytes("") * 0.75, "deflate saves a quarter or more: {f}");
        if row["server"] == "herald" {
            assert!(bytes("compact_") < bytes(""), "the compact envelope saves bytes: {f}");
            assert!(bytes("compact_deflate_") < bytes("deflate_"), "the compact envelope saves more: {f}");
        }
    }
}

/// Long polls on Herald and on nginx + Nchan in the same run, read by the bench's own HTTP/1
/// poll client (`herald_bench::poll_client`): every message is counted once on each.
#[test]
fn long_polls_on_herald_and_nchan_are_counted_whole() {
    let json = run_small_bench_with_nchan(&["--scenario", "seed", "--transport", "poll"]);
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "Herald and Nchan, over long polling: {json}");
    for row in rows {
        assert_eq!(row["transport"], "poll", "{row}");
        let f = &row["figures"];
        let published = f["published"].as_f64().unwrap();
        assert!(published >= 40.0, "{f}");
        assert_eq!((f["lost"].as_f64(), f["duplicated"].as_f64()), (Some(0.0), Some(0.0)), "{row}");
        // 4 channels of 10 subscribers each.
        assert_eq!(f["delivered"].as_f64().unwrap(), published * 10.0, "{row}");
    }
}

/// `herald bench` with `args`, small (40 subscribers on 4 channels, 40 messages/s for 2 s),
/// against a local Herald and a local nginx + Nchan (Debian's nginx-light and
/// libnginx-mod-nchan).
fn run_small_bench_with_nchan(args: &[&str]) -> Value {
    assert!(
        std::path::Path::new("/usr/lib/nginx/modules/ngx_nchan_module.so").exists(),
        "needs nginx with Nchan: apt install nginx-light libnginx-mod-nchan (scripts/test does)"
    );
    let small = ["--peer", "nchan", "--nginx", "/usr/sbin/nginx", "--subscribers", "40", "--channels", "4"];
    let paced = ["--rate", "40", "--duration", "2", "--sources", "2"];
    run_bench(&[args, &small[..], &paced[..]].concat())
}
