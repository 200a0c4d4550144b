//! `herald bench`: a load generator that measures Herald — and, side by side in the same run,
//! Nchan — over WebSocket, Server-Sent Events and long polling.
//!
//! It opens subscribers spread over several `127.0.0.x` source addresses, publishes through the
//! server's API with a send timestamp and a per-channel sequence number in each payload
//! ([`tracker`]), and reports delivery latency (HDR histograms), lost, duplicated and reordered
//! deliveries, connect times, server RSS and CPU (from `/proc` for a local server), bytes on
//! the wire, and its own CPU. Every phase is bounded in time. See `BENCHMARKS.md`.

pub mod deflate;
pub mod net;
pub mod poll_client;
pub mod publisher;
pub mod report;
pub mod scenario;
pub mod subscriber;
pub mod target;
pub mod tracker;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;

pub use scenario::{Row, Scenario, Sizes};
pub use target::{LocalServer, ServerKind, Target, Transport};

/// Which transports to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportChoice {
    /// WebSocket.
    Ws,
    /// Server-Sent Events.
    Sse,
    /// Long polling.
    Poll,
    /// All three in turn.
    All,
}

/// The `herald bench` command line.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// Scenarios to run, in order (comma separated).
    #[arg(long, value_delimiter = ',', default_values = ["seed"])]
    pub scenario: Vec<Scenario>,
    /// Transport of the subscribers.
    #[arg(long, default_value = "all")]
    pub transport: TransportChoice,
    /// A running server to measure (`http://host:port`). Without it the bench starts a fresh
    /// local `herald serve` for every scenario and transport.
    #[arg(long)]
    pub url: Option<String>,
    /// What the `--url` server is.
    #[arg(long, default_value = "herald")]
    pub server: ServerKind,
    /// The API key of the `--url` server.
    #[arg(long, env = "HERALD_API_KEY")]
    pub api_key: Option<String>,
    /// The process id of the `--url` server, when it runs on this machine (for RSS and CPU).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Also run every scenario against a local nginx + Nchan started by the bench.
    #[arg(long)]
    pub peer: Option<ServerKind>,
    /// The nginx executable for `--peer nchan`.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    pub nginx: PathBuf,
    /// Run the local Herald as a cluster of this many nodes sharing a `redis-server` the bench
    /// starts (from `PATH`); subscribers and publishers are spread over the nodes, and RSS and
    /// CPU are summed over the nodes and Redis.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Settings for the local Herald (`field=value`, repeatable), as `herald serve --set`.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub settings: Vec<String>,
    /// Subscribers in seed, fanout, ramp and reconnect.
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: usize,
    /// Channels in seed, idle and reconnect.
    #[arg(long, default_value_t = 100)]
    pub channels: usize,
    /// Messages per second in total in seed and reconnect.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Messages per second in fanout (the first step of ramp).
    #[arg(long, default_value_t = 5.0)]
    pub fanout_rate: f64,
    /// Seconds of publishing per scenario.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Connections in idle.
    #[arg(long, default_value_t = 15_000)]
    pub idle_connections: usize,
    /// Seconds idle watches its connections.
    #[arg(long, default_value_t = 30)]
    pub idle_window: u64,
    /// Keep-alive connections in publish.
    #[arg(long, default_value_t = 32)]
    pub publish_connections: usize,
    /// Loopback source addresses (127.0.0.1 … 127.0.0.N).
    #[arg(long, default_value_t = 8)]
    pub sources: u8,
    /// Token streams written at once in tokens, each to 10 subscribers.
    #[arg(long, default_value_t = 100)]
    pub streams: usize,
    /// Pieces per second of each stream in tokens.
    #[arg(long, default_value_t = 50.0)]
    pub token_rate: f64,
    /// Runs of each `seed` and `fanout` measurement per server, the servers taking turns
    /// (Herald, Nchan, Herald, …). The report gives each figure's median over the runs and
    /// the highest count of losses and failures; bench.json also keeps each run's figures.
    /// One run's tail can land far from the next on a shared machine.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9), overrides_with = "repeat")]
    pub repeat: u32,
    /// Where bench.json, bench.md and bench.svg are written.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
}

/// Runs the bench; `herald` is the executable to start local servers with.
pub async fn run(args: BenchArgs, herald: PathBuf, command: String) -> anyhow::Result<Vec<Row>> {
    raise_open_file_limit();
    let sizes = Sizes {
        subscribers: args.subscribers,
        channels: args.channels,
        seed_rate: args.rate,
        fanout_rate: args.fanout_rate,
        duration: Duration::from_secs(args.duration),
        idle_connections: args.idle_connections,
        idle_window: Duration::from_secs(args.idle_window),
        publish_connections: args.publish_connections,
        sources: args.sources,
        streams: args.streams,
        token_rate: args.token_rate,
    };
    let transports: Vec<Transport> = match args.transport {
        TransportChoice::Ws => vec![Transport::Ws],
        TransportChoice::Sse => vec![Transport::Sse],
        TransportChoice::Poll => vec![Transport::Poll],
        TransportChoice::All => vec![Transport::Ws, Transport::Sse, Transport::Poll],
    };
    let remote = match &args.url {
        Some(url) => Some(Target::single(args.server, parse_url(url)?, args.api_key.clone(), args.pid)),
        None => None,
    };
    let mut rows = Vec::new();
    for &scenario in &args.scenario {
        let runs: Vec<Option<Transport>> = match scenario {
            Scenario::Publish => vec![None],
            // Compression is a WebSocket matter.
            Scenario::Compression => vec![Some(Transport::Ws)],
            _ => transports.iter().copied().map(Some).collect(),
        };
        let repeat = if scenario.is_repeated() { args.repeat } else { 1 };
        for transport in runs {
            let mut servers = vec![args.server];
            servers.extend(args.peer.filter(|p| remote.is_none() || *p != args.server));
            let mut measured: Vec<Vec<Row>> = vec![Vec::new(); servers.len()];
            for turn in 1..=repeat {
                for (kind, runs) in servers.iter().zip(&mut measured) {
                    let name = transport.map_or("api", Transport::name);
                    let of = if repeat > 1 { format!(" (run {turn} of {repeat})") } else { String::new() };
                    eprintln!("bench: {scenario:?} over {name} against {kind:?}{of} …");
                    let row = match (&remote, *kind == args.server) {
                        (Some(target), true) => run_one(scenario, target, transport, &sizes).await,
                        _ => run_local(*kind, &args, &herald, scenario, transport, &sizes).await?,
                    };
                    eprintln!("bench: {}", serde_json::to_string(&row.figures).unwrap_or_default());
                    runs.push(row);
                }
            }
            rows.extend(measured.into_iter().map(Row::of_runs));
        }
    }
    println!("{}", report::summary(&rows));
    // Herald's default interval (Config::heartbeat_secs) unless the bench sets another.
    let heartbeat = args.settings.iter().rev().find_map(|s| s.strip_prefix("heartbeat_secs=")?.parse().ok());
    let repeated = args.scenario.iter().any(|s| s.is_repeated()).then_some(args.repeat);
    let windows = report::window_note(
        args.duration,
        if remote.is_some() { None } else { Some(heartbeat.unwrap_or(15)) },
        repeated,
    );
    println!("{windows}");
    report::write(&args.out, &rows, &command, &windows).with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}/bench.json, bench.md and bench.svg", args.out.display());
    Ok(rows)
}

/// One run against a server the bench starts (Herald, a Herald cluster, or nginx + Nchan)
/// and stops again.
async fn run_local(
    kind: ServerKind,
    args: &BenchArgs,
    herald: &std::path::Path,
    scenario: Scenario,
    transport: Option<Transport>,
    sizes: &Sizes,
) -> anyhow::Result<Row> {
    let local = match kind {
        ServerKind::Herald if args.nodes > 1 => LocalServer::herald_cluster(herald, &args.settings, args.nodes).await?,
        ServerKind::Herald => LocalServer::herald(herald, &args.settings).await?,
        ServerKind::Nchan => LocalServer::nchan(&args.nginx, scenario == Scenario::Compression).await?,
    };
    let row = run_one(scenario, &local.target, transport, sizes).await;
    local.stop().await;
    Ok(row)
}

async fn run_one(scenario: Scenario, target: &Target, transport: Option<Transport>, sizes: &Sizes) -> Row {
    scenario::run(scenario, target, transport.unwrap_or(Transport::Ws), sizes).await
}

fn parse_url(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("http://").context("--url must be http://host:port")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    use std::net::ToSocketAddrs as _;
    authority.to_socket_addrs()?.next().with_context(|| format!("cannot resolve {authority}"))
}

/// Raises this process's open-file limit to its hard limit (the load opens thousands of sockets).
pub fn raise_open_file_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("bench: could not raise the open-file limit: {e}");
    }
}
