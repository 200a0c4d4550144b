//! Messages per second from a source into a subscriber: writes `--count` messages to a
//! PostgreSQL outbox, a RabbitMQ queue, a NATS JetStream subject — or, for the baseline,
//! `POST /api/publish` over 32 connections — as fast as it can, and times them until an SSE
//! subscriber of the channel has them all. `bench/consumers.sh` starts the sources and Herald
//! and runs it for each.
//!
//! ```text
//! consumer_throughput --herald http://127.0.0.1:8080 --channel bench-pg --source postgres \
//!     --url postgres://herald@127.0.0.1:5432/postgres --count 20000
//! ```

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;

struct Args {
    herald: String,
    api_key: String,
    channel: String,
    source: String,
    url: String,
    count: u64,
}

fn args() -> Args {
    let mut args = Args {
        herald: "http://127.0.0.1:8080".into(),
        api_key: String::new(),
        channel: "bench".into(),
        source: "api".into(),
        url: String::new(),
        count: 20_000,
    };
    let mut given = std::env::args().skip(1);
    while let (Some(flag), Some(value)) = (given.next(), given.next()) {
        match flag.as_str() {
            "--herald" => args.herald = value,
            "--api-key" => args.api_key = value,
            "--channel" => args.channel = value,
            "--source" => args.source = value,
            "--url" => args.url = value,
            "--count" => args.count = value.parse().expect("--count N"),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// The envelope of message `n`: about 100 bytes of data, as a job alert might carry.
fn envelope(channel: &str, n: u64) -> String {
    format!(
        r#"{{"channel":"{channel}","data":{{"n":{n},"title":"Senior Rust engineer","city":"Lisbon","salary":95000}}}}"#
    )
}

#[tokio::main]
async fn main() {
    let args = args();
    let http = reqwest::Client::new();
    let subscribed =
        http.get(format!("{}/sse?channel={}", args.herald, args.channel)).send().await.expect("subscribes over SSE");
    let mut events = subscribed.bytes_stream();
    let (count, started) = (args.count, Instant::now());
    let writer = tokio::spawn(async move { write(&args).await });
    // Counts message events; a pattern cut by a chunk boundary is found in the carried tail.
    let pattern = br#""type":"message""#;
    let (mut seen, mut tail) = (0, Vec::new());
    let deadline = started + Duration::from_secs(300);
    while seen < count {
        // Heartbeats keep the stream busy: the deadline is what catches a stall.
        assert!(Instant::now() < deadline, "only {seen} of {count} messages arrived");
        let chunk = tokio::time::timeout(Duration::from_secs(60), events.next())
            .await
            .expect("a message within a minute")
            .expect("the stream stays open")
            .unwrap();
        tail.extend_from_slice(&chunk);
        seen += tail.windows(pattern.len()).filter(|w| w == pattern).count() as u64;
        let keep = tail.len().min(pattern.len() - 1);
        tail.drain(..tail.len() - keep);
    }
    let elapsed = started.elapsed();
    let written = writer.await.unwrap();
    println!(
        "{count} messages in {:.2} s: {:.0} per second into the subscriber (written in {:.2} s)",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        written.as_secs_f64()
    );
}

/// Writes the messages to the source; how long it took.
async fn write(args: &Args) -> Duration {
    let started = Instant::now();
    let channel = args.channel.as_str();
    match args.source.as_str() {
        "postgres" => {
            let (client, connection) = tokio_postgres::connect(&args.url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            let insert = "INSERT INTO herald_outbox (channel, data) SELECT $1::text, \
                jsonb_build_object('n', n, 'title', 'Senior Rust engineer', 'city', 'Lisbon', 'salary', 95000) \
                FROM generate_series($2::bigint, $3::bigint) n";
            for from in (0..args.count).step_by(1000) {
                let to = (from + 1000).min(args.count) as i64 - 1;
                client.execute(insert, &[&channel, &(from as i64), &to]).await.unwrap();
            }
        }
        "amqp" => {
            let connection =
                lapin::Connection::connect(&args.url, lapin::ConnectionProperties::default()).await.unwrap();
            let amqp = connection.create_channel().await.unwrap();
            amqp.confirm_select(Default::default()).await.unwrap();
            let mut confirms = Vec::new();
            for n in 0..args.count {
                let properties =
                    lapin::BasicProperties::default().with_delivery_mode(2).with_message_id(format!("m-{n}").into());
                let body = envelope(channel, n);
                let options = lapin::options::BasicPublishOptions::default();
                confirms.push(
                    amqp.basic_publish("".into(), "herald".into(), options, body.as_bytes(), properties).await.unwrap(),
                );
            }
            for confirm in confirms {
                confirm.await.unwrap();
            }
        }
        "nats" => {
            let jetstream = async_nats::jetstream::new(async_nats::connect(args.url.as_str()).await.unwrap());
            // At most 1,000 acknowledgements outstanding (the client bounds them too).
            let mut acks = std::collections::VecDeque::<async_nats::jetstream::context::PublishAckFuture>::new();
            for n in 0..args.count {
                if acks.len() == 1000 {
                    acks.pop_front().unwrap().await.unwrap();
                }
                acks.push_back(jetstream.publish("herald.bench", envelope(channel, n).into()).await.unwrap());
            }
            for ack in acks {
                ack.await.unwrap();
            }
        }
        _ => {
            let http = reqwest::Client::new();
            let url = format!("{}/api/publish", args.herald);
            let bodies = futures_util::stream::iter(0..args.count).map(|n| {
                let request = http.post(&url).bearer_auth(&args.api_key).header("content-type", "application/json");
                request.body(envelope(channel, n)).send()
            });
            bodies.buffered(32).for_each(|r| async move { assert!(r.unwrap().status().is_success()) }).await;
        }
    }
    started.elapsed()
}
