//! The `herald` command: `serve` runs the server; `publish` and `subscribe` talk to one;
//! `token` mints development tokens; `bench` measures one (and Nchan beside it).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use herald_client::Client;
use herald_server::{Config, Server};

/// mimalloc: `herald bench publish` measured glibc malloc's arena locks and frees at about a
/// sixth of the server's CPU on the publish path (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Herald: a real-time push server over WebSocket, Server-Sent Events and long polling.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log format on stderr: `text` (human-readable) or `json` (one object per line).
    #[arg(long, global = true, env = "HERALD_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (in-memory engine, demo page at `/`).
    Serve(ServeArgs),
    /// Publish one message through the server API.
    Publish {
        /// The channel.
        channel: String,
        /// The data: JSON, or any other text (sent as a JSON string).
        data: String,
        /// The event name.
        #[arg(long)]
        event: Option<String>,
        /// The server.
        #[arg(long, env = "HERALD_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The API key.
        #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
    },
    /// Subscribe and print every message envelope and reset as one JSON line.
    Subscribe {
        /// The channels.
        #[arg(required = true)]
        channels: Vec<String>,
        /// The transport.
        #[arg(long, value_enum, default_value = "ws")]
        transport: TransportArg,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// The server.
        #[arg(long, env = "HERALD_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Mint a development connection token (JWT, HS256) and print it.
    Token(TokenArgs),
    /// Measure the transports under load (see BENCHMARKS.md).
    Bench(Box<herald_bench::BenchArgs>),
}

#[derive(clap::Args)]
struct TokenArgs {
    /// The user id (`sub`).
    #[arg(long)]
    user: String,
    /// Channel patterns the user may subscribe to, e.g. `chat:*` (repeat or separate by commas).
    #[arg(long, value_delimiter = ',')]
    channels: Vec<String>,
    /// Channel patterns the user may publish to.
    #[arg(long, value_delimiter = ',')]
    publish: Vec<String>,
    /// Channels the connection is subscribed to without asking (server-side subscriptions),
    /// e.g. `user:42`.
    #[arg(long, value_delimiter = ',')]
    subs: Vec<String>,
    /// How long the token lives: `90s`, `15m`, `1h`, `7d`.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,
    /// Public data about the user (JSON), shown in presence.
    #[arg(long)]
    info: Option<String>,
    /// The HS256 secret the server verifies with (at least 16 bytes).
    #[arg(long, env = "HERALD_TOKEN_HS256_SECRET", hide_env_values = true)]
    secret: String,
}

/// `90s`, `15m`, `1h`, `7d` (or plain seconds).
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = digits.parse().map_err(|_| format!("`{text}`: expected a number and s, m, h or d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("`{text}`: the unit must be s, m, h or d")),
    };
    if secs == 0 {
        return Err("the ttl must be longer than zero".into());
    }
    Ok(Duration::from_secs(secs))
}

#[derive(clap::Args)]
struct ServeArgs {
    /// A TOML configuration file.
    #[arg(long, short, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    /// The address to listen on (config `listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The API key for `/api` (config `api_key`, env `HERALD_API_KEY`).
    #[arg(long, hide_env_values = true)]
    api_key: Option<String>,
    /// Turn the API key check off: anyone who reaches the port may publish. Development only.
    #[arg(long)]
    insecure_no_api_key: bool,
    /// Keep history on disk here (config `data_dir`): a restart loses nothing.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Share channels with other nodes through Redis, e.g. `redis://127.0.0.1:6379` (config
    /// `engine`; default `memory`).
    #[arg(long)]
    engine: Option<String>,
    /// Let the demo page at `/` publish: opens the `demo` namespace to anonymous publishing,
    /// with presence and join/leave (config `demo`).
    #[arg(long)]
    demo: bool,
    /// Any configuration field, as `field=value` (repeatable), e.g. `--set history_size=50`.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    set: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum TransportArg {
    Ws,
    Sse,
    Poll,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Bench(args) => {
            let exe = std::env::current_exe().context("cannot find the herald executable")?;
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            herald_bench::run(*args, exe, command).await?;
            Ok(())
        }
        Command::Publish { channel, data, event, url, api_key } => {
            let data = serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data));
            let reply = Client::new(&url, api_key).publish(&channel, &data, event.as_deref()).await?;
            println!("{reply}");
            Ok(())
        }
        Command::Token(args) => {
            println!("{}", mint_token(args)?);
            Ok(())
        }
        Command::Subscribe { channels, transport, count, url } => {
            let transport = match transport {
                TransportArg::Ws => herald_client::Transport::Ws,
                TransportArg::Sse => herald_client::Transport::Sse,
                TransportArg::Poll => herald_client::Transport::Poll,
            };
            let mut seen = 0u64;
            Client::new(&url, None)
                .subscribe(transport, &channels, Duration::from_secs(1), |push| {
                    println!("{push}");
                    seen += 1;
                    count.is_none_or(|c| seen < c)
                })
                .await?;
            Ok(())
        }
    }
}

fn mint_token(args: TokenArgs) -> anyhow::Result<String> {
    let info = args.info.map(|text| serde_json::from_str(&text).context("--info must be JSON")).transpose()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let claims = herald_auth::Claims {
        sub: args.user,
        exp: now + args.ttl.as_secs(),
        channels: args.channels,
        publish: args.publish,
        info,
        subs: args.subs,
    };
    if args.secret.len() < 16 {
        anyhow::bail!("the HS256 secret must be at least 16 bytes");
    }
    Ok(herald_auth::mint_hs256(&args.secret, &claims)?)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut overrides: Vec<(String, String)> = Vec::new();
    for pair in &args.set {
        let (k, v) = pair.split_once('=').with_context(|| format!("--set {pair}: expected FIELD=VALUE"))?;
        overrides.push((k.trim().to_string(), v.to_string()));
    }
    if let Some(listen) = args.listen {
        overrides.push(("listen".into(), format!("\"{listen}\"")));
    }
    if let Some(key) = args.api_key {
        overrides.push(("api_key".into(), serde_json::to_string(&key)?));
    }
    if args.insecure_no_api_key {
        overrides.push(("insecure_no_api_key".into(), "true".into()));
    }
    if args.demo {
        overrides.push(("demo".into(), "true".into()));
    }
    if let Some(dir) = &args.data_dir {
        overrides.push(("data_dir".into(), serde_json::to_string(dir)?));
    }
    if let Some(engine) = &args.engine {
        overrides.push(("engine".into(), serde_json::to_string(engine)?));
    }
    herald_bench::raise_open_file_limit();
    let mut config = Config::load(args.config.as_deref(), std::env::vars(), overrides)?;
    if config.insecure_no_api_key {
        tracing::warn!("API key check is OFF (insecure_no_api_key): anyone who reaches this port can publish");
    } else if config.api_key.is_none() {
        let key = herald_server::config::generate_api_key();
        eprintln!("herald: no api_key configured; generated one for this run: {key}");
        config.api_key = Some(key);
    }
    if config.demo {
        tracing::warn!("demo mode: anyone may publish to demo:* channels (the demo page's)");
    }
    let (data_dir, durability) = (config.data_dir.clone(), config.durability);
    let redis = config.redis_url().map(redact_password);
    let server = Server::bind(config).await.context("cannot start the server")?;
    let addr = server.local_addr()?;
    // One machine-readable line on stdout: scripts and tests read the address from it.
    println!("herald listening on http://{addr}");
    if let Some(tls) = server.tls_addr() {
        println!("herald listening on https://{tls} (HTTP/2 and HTTP/1.1)");
    }
    match (&redis, &data_dir) {
        (Some(url), _) => {
            tracing::info!(%addr, engine = "redis", redis = %url, "serving; demo page at http://{addr}/");
        }
        (None, Some(dir)) => {
            tracing::info!(%addr, engine = "disk", data_dir = %dir.display(), durability = ?durability, "serving; demo page at http://{addr}/");
        }
        (None, None) => {
            tracing::info!(%addr, engine = "memory", "serving (history is lost on restart; --data-dir keeps it); demo page at http://{addr}/");
        }
    }
    let handle = server.handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: telling clients to reconnect");
        handle.shutdown();
    });
    server.run().await?;
    tracing::info!("stopped");
    Ok(())
}

/// `url` without its password, for logs.
fn redact_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***{}", &url[..scheme], &url[at..]),
        _ => url.to_string(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
