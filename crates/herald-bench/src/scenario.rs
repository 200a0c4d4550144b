//! The scenarios: `seed`, `fanout`, `ramp`, `idle`, `publish`, `reconnect`, `tokens` and
//! `compression`. Each runs against one server and one transport and returns a [`Row`] of
//! figures.

use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use herald_server::process::{self, ProcSample};
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    net::{Connector, WireCounters},
    publisher::{self, Channels},
    subscriber::{Control, Fleet, Subscriber, WsOffer},
    target::{ServerKind, Target, Transport},
    tracker::{Marker, Tally, payload, posting},
};

/// A scenario's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Many subscribers over many channels, each receiving about one message per second.
    Seed,
    /// One channel, many subscribers, a few messages per second.
    Fanout,
    /// `fanout` with the rate raised step by step until delivery falls behind.
    Ramp,
    /// Idle connections: memory per connection, idle CPU and keepalive bytes.
    Idle,
    /// API publishes per second on keep-alive connections.
    Publish,
    /// Every subscriber dropped at once, then resumed: time to resubscribe and recover.
    Reconnect,
    /// Token streams (AI answers): many streams written piece by piece, each to a few
    /// subscribers, beside the same pieces published as one message each (Herald only).
    Tokens,
    /// `seed` over WebSocket with a ~1 KB JSON job posting as the message: plain, with
    /// permessage-deflate, and (Herald) with the compact envelope and deflate.
    Compression,
}

// === impl Scenario ===

impl Scenario {
    /// Whether `--repeat` runs this scenario several times per server: seed and fanout, whose
    /// latency and CPU lines of the budget vary most from run to run.
    pub fn is_repeated(self) -> bool {
        matches!(self, Scenario::Seed | Scenario::Fanout)
    }
}

/// Sizes of the scenarios.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Subscribers in `seed`, `fanout`, `ramp` and `reconnect`.
    pub subscribers: usize,
    /// Channels in `seed` and `reconnect`.
    pub channels: usize,
    /// Messages per second in total, `seed` and `reconnect`.
    pub seed_rate: f64,
    /// Messages per second in `fanout` (the start rate of `ramp`).
    pub fanout_rate: f64,
    /// How long messages are published.
    pub duration: Duration,
    /// Connections in `idle`.
    pub idle_connections: usize,
    /// How long `idle` watches the idle connections.
    pub idle_window: Duration,
    /// Keep-alive connections in `publish`.
    pub publish_connections: usize,
    /// Loopback source addresses.
    pub sources: u8,
    /// Streams written at once in `tokens`, each to [`TOKEN_SUBSCRIBERS`] subscribers.
    pub streams: usize,
    /// Pieces per second of each stream in `tokens`.
    pub token_rate: f64,
}

/// Subscribers of each stream in `tokens`.
pub const TOKEN_SUBSCRIBERS: usize = 10;

/// One scenario's figures for one server and transport.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    /// The server.
    pub server: ServerKind,
    /// The scenario.
    pub scenario: Scenario,
    /// The transport (`None` for `publish`).
    pub transport: Option<Transport>,
    /// Figures by name (see [`crate::report::FIGURES`]). Of several runs (`--repeat`), see
    /// [`Row::of_runs`].
    pub figures: BTreeMap<String, f64>,
    /// Each run's own figures, when `figures` combines several runs (empty for one run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<BTreeMap<String, f64>>,
}

/// The subscribers of one phase.
struct Crowd {
    fleet: Arc<Fleet>,
    channels: Arc<Channels>,
    /// The payload published to them.
    payload: fn(Marker) -> String,
    subscribers: Vec<Arc<Subscriber>>,
    control: watch::Sender<Control>,
    tasks: Vec<JoinHandle<()>>,
    connected_in: Duration,
}

/// Server, bench and wire readings at one moment.
struct Reading {
    server: Option<ProcSample>,
    bench: Option<ProcSample>,
    rx: u64,
    tx: u64,
}

// === impl Row ===

impl Row {
    fn new(server: ServerKind, scenario: Scenario, transport: Option<Transport>) -> Self {
        Self { server, scenario, transport, figures: BTreeMap::new(), runs: Vec::new() }
    }

    /// One row for several runs of the same measurement: each figure is the median of the
    /// runs that have it (of an even number, the mean of the middle two), except the counts
    /// of what went wrong — lost, duplicated, out of order, failed publishes and connects —
    /// which are the highest of the runs, so that a loss in any run shows. Each run's own
    /// figures stay in [`Row::runs`]. `runs` must not be empty.
    pub fn of_runs(runs: Vec<Row>) -> Row {
        let runs = match <[Row; 1]>::try_from(runs) {
            Ok([one]) => return one,
            Err(runs) => runs,
        };
        let mut row = Row::new(runs[0].server, runs[0].scenario, runs[0].transport);
        let names: std::collections::BTreeSet<&String> = runs.iter().flat_map(|r| r.figures.keys()).collect();
        for name in names {
            let mut values: Vec<f64> = runs.iter().filter_map(|r| r.figures.get(name).copied()).collect();
            let value = match is_failure_count(name) {
                true => values.iter().copied().reduce(f64::max),
                false => crate::tracker::median(&mut values),
            };
            if let Some(value) = value {
                row.set(name, value);
            }
        }
        row.runs = runs.into_iter().map(|r| r.figures).collect();
        row
    }

    fn set(&mut self, name: &str, value: f64) {
        self.figures.insert(name.to_string(), value);
    }
}

/// Whether figure `name` counts failures (see [`Row::of_runs`]).
fn is_failure_count(name: &str) -> bool {
    name.ends_with("lost") || matches!(name, "duplicated" | "out_of_order" | "publish_failures" | "connect_failures")
}

/// What a measured window used: see [`Reading::usage_since`].
#[derive(Default)]
struct Usage {
    /// The server's CPU seconds, when the server's process is known.
    server_cpu_secs: Option<f64>,
    /// Their user-space part, when known.
    server_user_secs: Option<f64>,
    bytes: u64,
}

// === impl Usage ===

impl Usage {
    /// Sets `row`'s figures per delivery (server CPU and its user-space part when known, wire
    /// bytes) for `delivered` deliveries, and the deliveries per second over `window`.
    fn per_delivery(&self, row: &mut Row, delivered: f64, window: Duration) {
        let delivered = delivered.max(1.0);
        if let Some(secs) = self.server_cpu_secs {
            row.set("server_cpu_us_per_delivery", secs * 1e6 / delivered);
        }
        if let Some(secs) = self.server_user_secs {
            row.set("server_user_cpu_us_per_delivery", secs * 1e6 / delivered);
        }
        row.set("bytes_per_delivery", self.bytes as f64 / delivered);
        row.set("deliveries_per_sec", delivered / window.as_secs_f64());
    }
}

// === impl Reading ===

impl Reading {
    async fn now(target: &Target, wire: &WireCounters) -> Self {
        Self {
            server: target.process_sample().await,
            bench: process::sample(None).ok(),
            rx: wire.rx.load(Ordering::Relaxed),
            tx: wire.tx.load(Ordering::Relaxed),
        }
    }

    /// Server and bench CPU (% of a core), the server's CPU seconds since `earlier` and their
    /// user-space part (when known), and wire bytes.
    fn usage_since(&self, earlier: &Reading, row: &mut Row, prefix: &str) -> Usage {
        let mut usage = Usage { bytes: (self.rx - earlier.rx) + (self.tx - earlier.tx), ..Usage::default() };
        if let (Some(now), Some(then)) = (self.server, earlier.server) {
            row.set(&format!("{prefix}server_cpu_pct"), now.cpu_percent_since(&then));
            usage.server_cpu_secs = Some(now.cpu_secs - then.cpu_secs);
            usage.server_user_secs = now.user_secs.zip(then.user_secs).map(|(now, then)| now - then);
        }
        if let (Some(now), Some(then)) = (self.bench, earlier.bench) {
            row.set(&format!("{prefix}bench_cpu_pct"), now.cpu_percent_since(&then));
        }
        usage
    }
}

// === impl Crowd ===

impl Crowd {
    /// Opens `subscribers` subscribers over `channels` channels and waits (up to a minute) for all
    /// to be subscribed. Connections open in waves so the server's accept queue never overflows.
    async fn gather(target: &Target, transport: Transport, subscribers: usize, channels: usize, sources: u8) -> Self {
        Self::gather_with(target, transport, subscribers, channels, sources, WsOffer::default(), payload).await
    }

    /// [`Self::gather`] with WebSocket subscribers asking for `ws_offer`, publishing `payload`.
    async fn gather_with(
        target: &Target,
        transport: Transport,
        subscribers: usize,
        channels: usize,
        sources: u8,
        ws_offer: WsOffer,
        payload: fn(Marker) -> String,
    ) -> Self {
        let connector = Arc::new(Connector::to(&target.nodes(), sources));
        let fleet = Fleet::new(target.clone(), transport, connector, ws_offer);
        let prefix = format!("bench{:08x}", rand::random::<u32>());
        let channels = Channels::new(&prefix, channels.max(1));
        let (control, watcher) = watch::channel(Control::Run);
        let started = Instant::now();
        let mut crowd = Self {
            fleet,
            channels,
            payload,
            subscribers: Vec::with_capacity(subscribers),
            control,
            tasks: Vec::new(),
            connected_in: Duration::ZERO,
        };
        const WAVE: usize = 500;
        for i in 0..subscribers {
            let channel = i % crowd.channels.names.len();
            let subscriber = Subscriber::new(i, channel as u32, crowd.channels.names[channel].clone());
            crowd.subscribers.push(subscriber.clone());
            crowd.tasks.push(tokio::spawn(subscriber.run(crowd.fleet.clone(), watcher.clone())));
            if (i + 1) % WAVE == 0 {
                crowd.wait_subscribed(i + 1 - WAVE / 2, Duration::from_secs(5)).await;
            }
        }
        crowd.wait_subscribed(subscribers, Duration::from_secs(60)).await;
        crowd.connected_in = started.elapsed();
        // Let the last registrations settle (Nchan's long polls have no reply to wait for).
        tokio::time::sleep(Duration::from_secs(1)).await;
        crowd
    }

    async fn wait_subscribed(&self, count: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.fleet.subscribed.load(Ordering::Relaxed) < count {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Whether every subscriber has every message published so far on its channel.
    fn complete(&self) -> bool {
        self.subscribers.iter().all(|s| s.receipts.lock().has_all_below(self.channels.published(s.channel as usize)))
    }

    /// Waits up to `limit` for [`Self::complete`].
    async fn drain(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.complete() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn tally(&self) -> Tally {
        let mut tally = Tally::default();
        for s in &self.subscribers {
            let ch = s.channel as usize;
            let expected = self.channels.published(ch) - self.channels.failed[ch].load(Ordering::Relaxed);
            s.receipts.lock().add_to(&mut tally, expected);
        }
        tally
    }

    fn connect_figures(&self, row: &mut Row) {
        let h = self.fleet.connect_times.lock();
        row.set("connect_p50_ms", h.value_at_quantile(0.5) as f64 / 1000.0);
        row.set("connect_p99_ms", h.value_at_quantile(0.99) as f64 / 1000.0);
        row.set("connect_all_secs", self.connected_in.as_secs_f64());
        row.set("connect_failures", self.fleet.connect_failures.load(Ordering::Relaxed) as f64);
        row.set("subscribed", self.fleet.subscribed.load(Ordering::Relaxed) as f64);
    }

    fn delivery_figures(&self, row: &mut Row) {
        let p = self.fleet.latencies.take();
        for (name, us) in [("p50", p.p50), ("p90", p.p90), ("p99", p.p99), ("p999", p.p999), ("max", p.max)] {
            row.set(&format!("latency_{name}_ms"), us as f64 / 1000.0);
        }
        row.set("first_delivery_p50_ms", p.first_p50 as f64 / 1000.0);
        row.set("last_delivery_p50_ms", p.last_p50 as f64 / 1000.0);
        let tally = self.tally();
        row.set("published", self.channels.total_published() as f64);
        row.set("publish_failures", self.channels.failures() as f64);
        row.set("delivered", tally.delivered as f64);
        row.set("lost", tally.lost as f64);
        row.set("duplicated", tally.duplicated as f64);
        row.set("out_of_order", tally.out_of_order as f64);
        row.set("disconnects", self.fleet.disconnects.load(Ordering::Relaxed) as f64);
    }

    async fn publish(&self, rate: f64, duration: Duration) {
        let connector = Connector::to(&self.fleet.target.nodes(), 1);
        publisher::paced(&self.fleet.target, &connector, &self.channels, self.payload, rate, duration, 4).await;
    }

    /// Publishes `rate` messages per second for `duration`, waits for the deliveries, and sets
    /// the delivery figures, the server's CPU and memory, and the bytes on the wire in `row`.
    async fn measure(&self, target: &Target, rate: f64, duration: Duration, row: &mut Row) {
        let wire = &self.fleet.connector.wire;
        let before = Reading::now(target, wire).await;
        self.publish(rate, duration).await;
        self.drain(Duration::from_secs(10)).await;
        let after = Reading::now(target, wire).await;
        self.delivery_figures(row);
        let usage = after.usage_since(&before, row, "");
        if let Some(server) = after.server {
            row.set("server_rss_mb", server.rss_bytes as f64 / 1e6);
        }
        let delivered = row.figures.get("delivered").copied().unwrap_or(0.0);
        usage.per_delivery(row, delivered, duration);
    }

    async fn stop(self) {
        let _ = self.control.send(Control::Stop);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// Runs `scenario` over `transport` against `target`.
pub async fn run(scenario: Scenario, target: &Target, transport: Transport, sizes: &Sizes) -> Row {
    match scenario {
        Scenario::Seed => deliveries(scenario, target, transport, sizes, sizes.channels, sizes.seed_rate).await,
        Scenario::Fanout => deliveries(scenario, target, transport, sizes, 1, sizes.fanout_rate).await,
        Scenario::Ramp => ramp(target, transport, sizes).await,
        Scenario::Idle => idle(target, transport, sizes).await,
        Scenario::Reconnect => reconnect(target, transport, sizes).await,
        Scenario::Publish => publish(target, sizes).await,
        Scenario::Tokens => tokens(target, transport, sizes).await,
        Scenario::Compression => compression(target, sizes).await,
    }
}

async fn deliveries(
    scenario: Scenario,
    target: &Target,
    transport: Transport,
    sizes: &Sizes,
    channels: usize,
    rate: f64,
) -> Row {
    let mut row = Row::new(target.kind, scenario, Some(transport));
    let crowd = Crowd::gather(target, transport, sizes.subscribers, channels, sizes.sources).await;
    crowd.connect_figures(&mut row);
    crowd.measure(target, rate, sizes.duration, &mut row).await;
    crowd.stop().await;
    row
}

/// `compression`: the seed's load over WebSocket publishing a job posting of about 1 KB
/// ([`posting`]), once per form the subscribers ask for — plain, with permessage-deflate
/// (figures prefixed `deflate_`), and against Herald with its compact envelope alone
/// (`compact_`) and with deflate (`compact_deflate_`) — each pass on fresh connections to the same server.
async fn compression(target: &Target, sizes: &Sizes) -> Row {
    let mut row = Row::new(target.kind, Scenario::Compression, Some(Transport::Ws));
    let mut passes = vec![("", WsOffer::default()), ("deflate_", WsOffer { deflate: true, compact: false })];
    if target.kind == ServerKind::Herald {
        passes.push(("compact_", WsOffer { deflate: false, compact: true }));
        passes.push(("compact_deflate_", WsOffer { deflate: true, compact: true }));
    }
    for (prefix, offer) in passes {
        let (subscribers, channels) = (sizes.subscribers, sizes.channels);
        let crowd =
            Crowd::gather_with(target, Transport::Ws, subscribers, channels, sizes.sources, offer, posting).await;
        let mut pass = Row::new(target.kind, Scenario::Compression, Some(Transport::Ws));
        crowd.connect_figures(&mut pass);
        crowd.measure(target, sizes.seed_rate, sizes.duration, &mut pass).await;
        crowd.stop().await;
        for (name, value) in pass.figures {
            row.set(&format!("{prefix}{name}"), value);
        }
    }
    row
}

/// `tokens`: `streams` streams of `token_rate` pieces per second, written with one piped
/// request each (`PUT /api/channels/{c}/streams`), then the same pieces published as one
/// message each; the second pass's figures carry the prefix `messages_`. Each piece and each
/// message carries a marker, so latency is from the writer to the subscriber's socket. A
/// finished stream's message repeats its pieces, and over long polling each answer carries
/// the text so far: repeats are not counted (no `duplicated` figure).
async fn tokens(target: &Target, transport: Transport, sizes: &Sizes) -> Row {
    let mut row = Row::new(target.kind, Scenario::Tokens, Some(transport));
    if target.kind != ServerKind::Herald {
        return row;
    }
    let subscribers = sizes.streams * TOKEN_SUBSCRIBERS;
    for prefix in ["", "messages_"] {
        let crowd = Crowd::gather(target, transport, subscribers, sizes.streams, sizes.sources).await;
        let wire = &crowd.fleet.connector.wire;
        let before = Reading::now(target, wire).await;
        let connector = Connector::to(&target.nodes(), 1);
        match prefix {
            "" => publisher::stream_pieces(target, &connector, &crowd.channels, sizes.token_rate, sizes.duration).await,
            _ => crowd.publish(sizes.token_rate * sizes.streams as f64, sizes.duration).await,
        }
        crowd.drain(Duration::from_secs(10)).await;
        let after = Reading::now(target, wire).await;
        let mut pass = Row::new(target.kind, Scenario::Tokens, Some(transport));
        crowd.delivery_figures(&mut pass);
        let usage = after.usage_since(&before, &mut pass, "");
        // Each piece once per subscriber: the repeats (a finished message, the text so far in
        // every poll answer) are carried bytes, not deliveries.
        let lost = pass.figures.get("lost").copied().unwrap_or(0.0);
        let delivered = (crowd.channels.total_published() as f64 * TOKEN_SUBSCRIBERS as f64 - lost).max(1.0);
        pass.set("delivered", delivered);
        usage.per_delivery(&mut pass, delivered, sizes.duration);
        for (name, value) in pass.figures {
            if !matches!(name.as_str(), "duplicated" | "out_of_order") {
                row.set(&format!("{prefix}{name}"), value);
            }
        }
        crowd.stop().await;
    }
    row
}

async fn ramp(target: &Target, transport: Transport, sizes: &Sizes) -> Row {
    const STEPS: usize = 8;
    const STEP: Duration = Duration::from_secs(10);
    const LATE: Duration = Duration::from_secs(1);
    let mut row = Row::new(target.kind, Scenario::Ramp, Some(transport));
    let crowd = Crowd::gather(target, transport, sizes.subscribers, 1, sizes.sources).await;
    crowd.connect_figures(&mut row);
    let mut rate = sizes.fanout_rate;
    let mut sustained = 0.0;
    for _ in 0..STEPS {
        let published_before = crowd.channels.total_published();
        crowd.publish(rate, STEP).await;
        // The rate the server actually accepted: a publisher that falls behind fails the step.
        let achieved = (crowd.channels.total_published() - published_before) as f64 / STEP.as_secs_f64();
        crowd.drain(LATE * 2).await;
        let p99 = crowd.fleet.latencies.take().p99;
        let tally = crowd.tally();
        let kept_up = achieved >= rate * 0.95 && crowd.channels.failures() == 0;
        if !kept_up || tally.lost > 0 || tally.duplicated > 0 || p99 > LATE.as_micros() as u64 {
            break;
        }
        sustained = achieved;
        rate *= 2.0;
    }
    row.set("max_sustained_rate", sustained);
    row.set("max_sustained_deliveries_per_sec", sustained * sizes.subscribers as f64);
    crowd.stop().await;
    row
}

async fn idle(target: &Target, transport: Transport, sizes: &Sizes) -> Row {
    let mut row = Row::new(target.kind, Scenario::Idle, Some(transport));
    let baseline = target.process_sample().await;
    let crowd = Crowd::gather(target, transport, sizes.idle_connections, sizes.channels, sizes.sources).await;
    crowd.connect_figures(&mut row);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let wire = &crowd.fleet.connector.wire;
    let before = Reading::now(target, wire).await;
    if let (Some(now), Some(baseline)) = (before.server, baseline) {
        let connections = crowd.fleet.subscribed.load(Ordering::Relaxed).max(1) as f64;
        row.set("rss_per_connection_kib", (now.rss_bytes as f64 - baseline.rss_bytes as f64) / connections / 1024.0);
        row.set("server_rss_mb", now.rss_bytes as f64 / 1e6);
    }
    tokio::time::sleep(sizes.idle_window).await;
    let after = Reading::now(target, wire).await;
    let bytes = after.usage_since(&before, &mut row, "idle_").bytes;
    let minutes = sizes.idle_window.as_secs_f64() / 60.0;
    row.set("idle_bytes_per_client_min", bytes as f64 / sizes.idle_connections.max(1) as f64 / minutes);
    row.set("disconnects", crowd.fleet.disconnects.load(Ordering::Relaxed) as f64);
    crowd.stop().await;
    row
}

async fn reconnect(target: &Target, transport: Transport, sizes: &Sizes) -> Row {
    const AWAY: Duration = Duration::from_secs(1);
    let mut row = Row::new(target.kind, Scenario::Reconnect, Some(transport));
    let crowd = Arc::new(Crowd::gather(target, transport, sizes.subscribers, sizes.channels, sizes.sources).await);
    crowd.connect_figures(&mut row);
    let publishing = {
        let crowd = crowd.clone();
        let (rate, duration) = (sizes.seed_rate, sizes.duration.max(Duration::from_secs(8)));
        tokio::spawn(async move { crowd.publish(rate, duration).await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = crowd.control.send(Control::Drop(1, AWAY));
    tokio::time::sleep(AWAY).await;
    let back = Instant::now();
    // What each channel had when the clients started coming back: all of it must be recovered.
    let owed: Vec<u64> = (0..crowd.channels.names.len()).map(|i| crowd.channels.published(i)).collect();
    let _ = crowd.control.send(Control::Run);
    let deadline = back + Duration::from_secs(60);
    let resubscribed = crowd.wait_subscribed(crowd.subscribers.len(), Duration::from_secs(60)).await;
    if resubscribed {
        row.set("resubscribed_secs", back.elapsed().as_secs_f64());
    }
    loop {
        let recovered = crowd.subscribers.iter().all(|s| s.receipts.lock().has_all_below(owed[s.channel as usize]));
        if recovered {
            row.set("recovered_secs", back.elapsed().as_secs_f64());
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = publishing.await;
    crowd.drain(Duration::from_secs(10)).await;
    crowd.delivery_figures(&mut row);
    if let Ok(crowd) = Arc::try_unwrap(crowd) {
        crowd.stop().await;
    }
    row
}

async fn publish(target: &Target, sizes: &Sizes) -> Row {
    let mut row = Row::new(target.kind, Scenario::Publish, None);
    let connector = Connector::to(&target.nodes(), sizes.sources);
    let prefix = format!("pub{:08x}", rand::random::<u32>());
    let payload = r#"{"b":"publish"}"#;
    let before = Reading::now(target, &connector.wire).await;
    let started = Instant::now();
    let make = {
        let (target, prefix) = (target.clone(), prefix.clone());
        move |k: usize, _| target.publish(&format!("{prefix}-{k}"), payload.to_string())
    };
    let (ok, failed) = publisher::flood(&connector, sizes.publish_connections, sizes.duration, make).await;
    let elapsed = started.elapsed().as_secs_f64();
    Reading::now(target, &connector.wire).await.usage_since(&before, &mut row, "");
    row.set("publishes_per_sec", ok as f64 / elapsed);
    row.set("publish_failures", failed as f64);
    if target.kind == ServerKind::Herald {
        const FAN: usize = 10;
        let channels: Vec<String> = (0..FAN).map(|i| format!("{prefix}-b{i}")).collect();
        let started = Instant::now();
        let target = target.clone();
        let make = move |_, _| target.broadcast(&channels, payload).unwrap_or_default();
        let (ok, _) = publisher::flood(&connector, sizes.publish_connections, sizes.duration, make).await;
        let elapsed = started.elapsed().as_secs_f64();
        row.set("broadcasts_per_sec", ok as f64 / elapsed);
        row.set("broadcast_messages_per_sec", (ok * FAN as u64) as f64 / elapsed);
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(latency_p99: f64, lost: f64) -> Row {
        let mut row = Row::new(ServerKind::Herald, Scenario::Fanout, Some(Transport::Poll));
        row.set("latency_p99_ms", latency_p99);
        row.set("lost", lost);
        row
    }

    #[test]
    fn several_runs_give_the_median_and_the_worst_failure_count() {
        let row = Row::of_runs(vec![run(150.0, 0.0), run(210.0, 3.0), run(140.0, 0.0)]);
        assert_eq!(row.figures["latency_p99_ms"], 150.0);
        assert_eq!(row.figures["lost"], 3.0, "a loss in one run shows");
        assert_eq!(row.runs.len(), 3);
        assert_eq!(row.runs[1]["latency_p99_ms"], 210.0);

        let even = Row::of_runs(vec![run(100.0, 0.0), run(140.0, 0.0)]);
        assert_eq!(even.figures["latency_p99_ms"], 120.0);
    }

    #[test]
    fn one_run_is_kept_as_it_is() {
        let row = Row::of_runs(vec![run(150.0, 1.0)]);
        assert_eq!(row.figures["latency_p99_ms"], 150.0);
        assert!(row.runs.is_empty(), "no per-run copy of a single run");
    }
}
