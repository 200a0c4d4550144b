//! The server under load: Herald or Nchan, where it listens, how to publish to it and subscribe
//! to it, and — when the bench starts it — the local process, for `/proc` figures.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use herald_server::process::{self, ProcSample};
use http_body_util::Full;
use hyper::{Request, header};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// Which server implementation is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// Herald: `/api/publish`, `/ws`, `/sse/{channel}`, `/poll`.
    Herald,
    /// nginx + Nchan with the configuration [`LocalServer::nchan`] writes: `POST /pub?id=c`,
    /// and WebSocket, EventSource and long polling on `/sub/{channel}`.
    Nchan,
}

/// A transport subscribers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// WebSocket.
    Ws,
    /// Server-Sent Events.
    Sse,
    /// Long polling.
    Poll,
}

/// Where and what the server is.
#[derive(Clone, Debug)]
pub struct Target {
    /// Herald or Nchan.
    pub kind: ServerKind,
    /// Its listening address.
    pub addr: SocketAddr,
    /// Herald's API key, if it needs one.
    pub api_key: Option<String>,
    /// The server's process id when it runs on this machine (RSS and CPU come from `/proc`).
    pub pid: Option<u32>,
    /// A cluster's further nodes: load is spread over `addr` and these.
    pub more_nodes: Vec<SocketAddr>,
    /// The process ids of a local cluster's further nodes and its Redis: RSS and CPU are
    /// summed over every server-side process.
    pub more_pids: Vec<u32>,
}

/// A server process the bench started; killed on drop.
pub struct LocalServer {
    child: Child,
    /// A local cluster's other processes (its further nodes and Redis).
    others: Vec<Child>,
    /// How to reach it.
    pub target: Target,
    dir: Option<PathBuf>,
}

// === impl Transport ===

impl Transport {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ws => "ws",
            Self::Sse => "sse",
            Self::Poll => "poll",
        }
    }
}

// === impl Target ===

impl Target {
    /// A single server at `addr`.
    pub fn single(kind: ServerKind, addr: SocketAddr, api_key: Option<String>, pid: Option<u32>) -> Self {
        Self { kind, addr, api_key, pid, more_nodes: Vec::new(), more_pids: Vec::new() }
    }

    /// Every node's address (one for a single server).
    pub fn nodes(&self) -> Vec<SocketAddr> {
        std::iter::once(self.addr).chain(self.more_nodes.iter().copied()).collect()
    }

    /// `POST` one message with `payload` (JSON) to `channel`.
    pub fn publish(&self, channel: &str, payload: String) -> Request<Full<Bytes>> {
        match self.kind {
            ServerKind::Herald => {
                let body = format!("{{\"channel\":\"{channel}\",\"data\":{payload}}}");
                self.post("/api/publish", body)
            }
            ServerKind::Nchan => self.post(&format!("/pub?id={channel}"), payload),
        }
    }

    /// `POST /api/broadcast` of `payload` to `channels` (Herald only).
    pub fn broadcast(&self, channels: &[String], payload: &str) -> Option<Request<Full<Bytes>>> {
        (self.kind == ServerKind::Herald).then(|| {
            let channels = serde_json::to_string(channels).unwrap_or_default();
            self.post("/api/broadcast", format!("{{\"channels\":{channels},\"data\":{payload}}}"))
        })
    }

    fn post(&self, path: &str, body: String) -> Request<Full<Bytes>> {
        let mut builder = Request::post(path)
            .header(header::HOST, self.addr.to_string())
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(key) = &self.api_key {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        builder.body(Full::new(Bytes::from(body))).unwrap_or_default()
    }

    /// A `GET` of `path` with `headers`.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
        let mut builder = Request::get(path).header(header::HOST, self.addr.to_string());
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Full::default()).unwrap_or_default()
    }

    /// The server's memory and CPU: from `/proc` when it runs here (`pid`), else Herald's
    /// `/api/info`; `None` for a remote Nchan.
    pub async fn process_sample(&self) -> Option<ProcSample> {
        if let Some(pid) = self.pid {
            let mut total = process::sample(Some(pid)).ok()?;
            for pid in &self.more_pids {
                let more = process::sample(Some(*pid)).ok()?;
                total.rss_bytes += more.rss_bytes;
                total.cpu_secs += more.cpu_secs;
                total.user_secs = total.user_secs.zip(more.user_secs).map(|(a, b)| a + b);
            }
            return Some(total);
        }
        if self.kind != ServerKind::Herald {
            return None;
        }
        let mut sender = crate::net::Connector::new(self.addr, 1).http1().await.ok()?;
        let mut request = self.get("/api/info", &[]);
        if let Some(key) = &self.api_key {
            request.headers_mut().insert(header::AUTHORIZATION, format!("Bearer {key}").parse().ok()?);
        }
        let response = sender.send_request(request).await.ok()?;
        let body = http_body_util::BodyExt::collect(response.into_body()).await.ok()?.to_bytes();
        let info: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let process = &info["process"];
        Some(ProcSample {
            rss_bytes: process["rss_bytes"].as_u64()?,
            cpu_secs: process["cpu_seconds"].as_f64()?,
            user_secs: None,
            at: std::time::Instant::now(),
        })
    }

    /// The path a subscriber of `channel` over `transport` opens (Herald's WebSocket path
    /// carries no channel: it subscribes with a command).
    pub fn subscribe_path(&self, transport: Transport, channel: &str) -> String {
        match (self.kind, transport) {
            (ServerKind::Herald, Transport::Ws) => "/ws".into(),
            (ServerKind::Herald, Transport::Sse) => format!("/sse/{channel}"),
            (ServerKind::Herald, Transport::Poll) => format!("/poll?channel={channel}"),
            (ServerKind::Nchan, _) => format!("/sub/{channel}"),
        }
    }
}

// === impl LocalServer ===

impl LocalServer {
    /// Starts `herald serve` (the executable at `exe`) on a free loopback port with `settings`
    /// (`field=value`, passed as `--set`). The per-address and connection-count limits are
    /// off unless `settings` set them: the whole load comes from a few loopback addresses, and
    /// the bench measures capacity (as Nchan, which has no such limits, is measured).
    pub async fn herald(exe: &Path, settings: &[String]) -> anyhow::Result<Self> {
        let api_key = format!("bench-{:016x}", rand::random::<u64>());
        let (child, addr) = spawn_herald(exe, settings, &api_key).await?;
        let target = Target::single(ServerKind::Herald, addr, Some(api_key), child.id());
        Ok(Self { child, others: Vec::new(), target, dir: None })
    }

    /// Starts a local cluster: a `redis-server` (from `PATH`, keeping nothing on disk) on a
    /// free loopback port and `nodes` Herald nodes sharing it, each with `settings`. Load is
    /// spread over the nodes; RSS and CPU are summed over the nodes and Redis.
    pub async fn herald_cluster(exe: &Path, settings: &[String], nodes: usize) -> anyhow::Result<Self> {
        let (redis, redis_addr) = start_listening("redis-server", |port| {
            Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .context("starting redis-server (apt install redis-server)")
        })
        .await?;
        let mut settings = settings.to_vec();
        settings.push(format!("engine=\"redis://{redis_addr}\""));
        let api_key = format!("bench-{:016x}", rand::random::<u64>());
        let (child, addr) = spawn_herald(exe, &settings, &api_key).await?;
        let mut cluster = Self {
            target: Target::single(ServerKind::Herald, addr, Some(api_key.clone()), child.id()),
            child,
            others: Vec::new(),
            dir: None,
        };
        for _ in 1..nodes.max(1) {
            let (node, addr) = spawn_herald(exe, &settings, &api_key).await?;
            cluster.target.more_nodes.push(addr);
            cluster.target.more_pids.extend(node.id());
            cluster.others.push(node);
        }
        // Last, so that it stops after the nodes.
        cluster.target.more_pids.extend(redis.id());
        cluster.others.push(redis);
        Ok(cluster)
    }

    /// Starts nginx with Nchan (one process, like one worker) on a free loopback port, with its
    /// own prefix and configuration in a temporary folder; with `deflate`, Nchan compresses each
    /// message once for the WebSocket subscribers that negotiated permessage-deflate.
    pub async fn nchan(nginx: &Path, deflate: bool) -> anyhow::Result<Self> {
        let mut dir = PathBuf::new();
        let (child, addr) = start_listening("nginx", |port| {
            // The folder of a try whose nginx exited goes with the next try.
            if !dir.as_os_str().is_empty() {
                let _ = std::fs::remove_dir_all(&dir);
            }
            dir = std::env::temp_dir().join(format!("herald-bench-nchan-{}-{port}", std::process::id()));
            std::fs::create_dir_all(dir.join("logs"))?;
            std::fs::write(dir.join("nginx.conf"), nchan_config(port, deflate))?;
            Command::new(nginx)
                .arg("-p")
                .arg(&dir)
                .args(["-c", "nginx.conf"])
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {} (apt install nginx-light libnginx-mod-nchan)", nginx.display()))
        })
        .await?;
        let pid = child.id();
        Ok(Self {
            child,
            others: Vec::new(),
            target: Target::single(ServerKind::Nchan, addr, None, pid),
            dir: Some(dir),
        })
    }

    /// Stops the process and waits for it.
    pub async fn stop(mut self) {
        for child in std::iter::once(&mut self.child).chain(self.others.iter_mut()) {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.child).chain(self.others.iter_mut()) {
            let _ = child.start_kill();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Starts `herald serve` with `settings` and `api_key` on a free loopback port (the
/// per-address and connection-count limits off, see [`LocalServer::herald`]); returns the
/// process and its address.
async fn spawn_herald(exe: &Path, settings: &[String], api_key: &str) -> anyhow::Result<(Child, SocketAddr)> {
    let mut command = Command::new(exe);
    command.args(["serve", "--listen", "127.0.0.1:0", "--api-key", api_key]);
    for setting in ["max_connections=0", "connection_rate_per_ip=0", "max_streams_per_ip=0"] {
        command.args(["--set", setting]);
    }
    for setting in settings {
        command.args(["--set", setting]);
    }
    let mut child = command
        .env("HERALD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.strip_prefix("herald listening on http://") {
                return Ok(url.trim().parse::<SocketAddr>()?);
            }
        }
        bail!("herald exited before listening")
    })
    .await
    .context("herald did not start within 20 s")??;
    Ok((child, addr))
}

/// How many times a server started on a port found free is tried, each on a fresh port: the
/// port can be taken (an outgoing connection's local port) before the server binds it, and
/// the server then exits.
const START_TRIES: usize = 3;

/// Starts the server `spawn` runs for a loopback port found free and waits (up to 5 s) until it
/// listens there. A server that exits first is started again on a fresh port, [`START_TRIES`]
/// times in all.
async fn start_listening(
    name: &str,
    mut spawn: impl FnMut(u16) -> anyhow::Result<Child>,
) -> anyhow::Result<(Child, SocketAddr)> {
    for _ in 0..START_TRIES {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut child = spawn(port)?;
        if listens(&mut child, addr).await? {
            return Ok((child, addr));
        }
        tracing::warn!("{name} exited while starting; trying a fresh port");
    }
    bail!("{name} exited while starting, {START_TRIES} times; see its log above")
}

/// Waits up to 5 s for `child` to listen on `addr`: `false` if it exits first.
async fn listens(child: &mut Child, addr: SocketAddr) -> anyhow::Result<bool> {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(true);
        }
        if child.try_wait()?.is_some() {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the server did not listen on {addr} within 5 s; see its log above")
}

/// The Nchan setup measured: one process, history of 1,000 messages kept 10 minutes (as
/// Herald's default), subscribers start from the newest message, long polls time out after
/// 25 s (as Herald's default); with `deflate`, `nchan_deflate_message_for_websocket` (off
/// otherwise, as it compresses every published message whoever subscribes).
fn nchan_config(port: u16, deflate: bool) -> String {
    let deflate = if deflate { "on" } else { "off" };
    format!(
        r#"load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 20000;
error_log logs/error.log warn;
pid logs/nginx.pid;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    client_body_temp_path logs/body;
    proxy_temp_path logs/proxy;
    fastcgi_temp_path logs/fastcgi;
    uwsgi_temp_path logs/uwsgi;
    scgi_temp_path logs/scgi;
    keepalive_requests 1000000;
    nchan_message_buffer_length 1000;
    nchan_message_timeout 600s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /pub {{
            nchan_publisher;
            nchan_channel_id $arg_id;
            nchan_deflate_message_for_websocket {deflate};
        }}
        location ~ ^/sub/(.+)$ {{
            nchan_subscriber;
            nchan_channel_id $1;
            nchan_subscriber_first_message newest;
            nchan_subscriber_timeout 25s;
        }}
    }}
}}
"#
    )
}
