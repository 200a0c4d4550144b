//! Server configuration: a TOML file, `HERALD_*` environment variables and command-line
//! overrides, in that order of precedence (later wins). Every field has a documented default,
//! so an empty configuration runs the embedded in-memory engine.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use herald_auth::NamespaceRules;
use herald_core::{ChannelName, HistoryLimits, RateLimit};

use crate::store::{Durability, StoreOptions};
use serde::{Deserialize, Serialize};

mod consumers;

pub use consumers::{BodyShape, CONSUMER_SOURCES, ConsumerConfig};

/// Herald's configuration. See the README's configuration reference.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// The key backends present on `/api` (`Authorization: Bearer` or `X-API-Key`). When unset
    /// and `insecure_no_api_key` is false, a random key is generated and printed at start.
    pub api_key: Option<String>,
    /// The password of the admin page (`/admin`); it also opens the `/api` routes the page
    /// uses. Unset by default: the page then asks for the API key.
    pub admin_password: Option<String>,
    /// Turns the API key check off. For local development only; logged loudly. Default false.
    pub insecure_no_api_key: bool,
    /// History kept per channel when its namespace sets nothing else. Default 1000 messages.
    pub history_size: usize,
    /// Longest a message stays in history, in seconds (0: no age limit). Default 600.
    pub history_ttl_secs: u64,
    /// How long the memory and disk engines keep the position (epoch and offset) of a channel
    /// they forgot for having no subscribers and no history left, in seconds: a client that
    /// comes back within it resumes (messages published meanwhile are recovered), later the
    /// channel starts a new epoch. Default 86400 (a day; the Redis engine's is
    /// `redis_channel_ttl_secs`).
    pub position_ttl_secs: u64,
    /// Most forgotten channels' positions kept (the oldest go first), about 100 bytes each.
    /// Default 1000000.
    pub max_forgotten_positions: usize,
    /// Per-namespace options, keyed by namespace (the part of a channel name before `:`).
    pub namespaces: HashMap<String, NamespaceConfig>,
    /// Largest message `data`, in bytes of JSON. Default 65536.
    pub max_message_bytes: usize,
    /// Most channels one connection or request may subscribe to. Default 128.
    pub max_channels_per_connection: usize,
    /// Messages queued for one connection before it counts as a slow consumer and is
    /// disconnected. Default 4096.
    pub max_queued_messages: usize,
    /// Bytes queued for one connection before it counts as a slow consumer. Default 4 MiB.
    pub max_queued_bytes: usize,
    /// Interval of heartbeats (WebSocket ping frame + `ping` push, SSE comment), in seconds.
    /// Default 15.
    pub heartbeat_secs: u64,
    /// A WebSocket peer silent for this long (no frame, no pong) is dropped, in seconds.
    /// Default 45.
    pub ws_idle_timeout_secs: u64,
    /// Long-poll wait when the request gives no `timeout`, in seconds. Default 25.
    pub poll_timeout_secs: u64,
    /// Longest long-poll wait a request may ask for, in seconds. Default 60.
    pub poll_max_timeout_secs: u64,
    /// The SSE `retry:` the server suggests to browsers, in milliseconds. Default 2000.
    pub sse_retry_ms: u64,
    /// How long a graceful shutdown may take before the process exits anyway, in seconds.
    /// Default 10.
    pub shutdown_deadline_secs: u64,
    /// How long an `idempotency_key` is remembered, in seconds. Default 300.
    pub idempotency_window_secs: u64,
    /// A request head must be all in within this many seconds of its first byte (a new
    /// connection's first head, of the connection's start); slower ones are closed and counted
    /// (`limits.head_timeout`). Default 10.
    pub http_head_timeout_secs: u64,
    /// A request body must make progress: every read of it brings bytes within this many
    /// seconds, or the connection is closed and counted (`limits.body_timeout`). Default 10.
    pub http_body_timeout_secs: u64,
    /// Peers (addresses or CIDRs: `["10.0.0.0/8", "::1"]`) trusted to name the client: the
    /// right-most `X-Forwarded-For` address that is not one of them is the client, for per-IP
    /// limits, logs and presence. From anyone else the header is ignored. Default empty.
    pub trusted_proxies: Vec<String>,
    /// Trusted proxies open every connection with a PROXY protocol header (v1 or v2, as
    /// HAProxy's `send-proxy` sends), which names the client. Default false.
    pub proxy_protocol: bool,

    /// The HS256 secret connection tokens may be signed with (at least 16 bytes). Unset by
    /// default: with no token key at all, every presented token is refused.
    pub token_hs256_secret: Option<String>,
    /// A PEM file with the RSA public key RS256 tokens are checked against.
    pub token_rs256_public_key: Option<PathBuf>,
    /// A PEM file with the EC P-256 public key ES256 tokens are checked against.
    pub token_es256_public_key: Option<PathBuf>,

    /// Namespace default: clients may subscribe without a token granting the channel. Default
    /// true.
    pub anonymous_subscribe: bool,
    /// Namespace default: any client may publish, token or not. Default false (secure).
    pub anonymous_publish: bool,
    /// Namespace default: clients may publish at all (where a token or `anonymous_publish`
    /// allows). Default true.
    pub client_publish: bool,
    /// Namespace default: presence is kept. Default false.
    pub presence: bool,
    /// Namespace default: subscribers get `join` / `leave` pushes (with presence). Default
    /// false.
    pub join_leave: bool,
    /// Namespace default: channels are latest-only (conflated). A subscriber that falls behind
    /// — its socket full, or away between two long polls, or reconnecting — gets the newest
    /// message instead of every one in between, with no reset for those it skips; the
    /// WebSocket subscribe reply says `"conflated":true`. For tickers, dashboards, cursors.
    /// Default false.
    pub conflate: bool,
    /// Most streams (token streams: messages written a piece at a time) open at once in one
    /// channel. Default 64.
    pub max_streams_per_channel: usize,
    /// A stream with no append for this long is aborted, so that a backend that died
    /// mid-answer leaves nothing open, in seconds. Default 60.
    pub stream_idle_timeout_secs: u64,
    /// How long a stream's appends wait to be pushed together, in milliseconds: each channel
    /// then pushes, per flush, one append per stream holding every piece since the last
    /// (`"pieces":N`), encoded once for all its subscribers — fewer, larger frames for fast
    /// token rates, at up to this much added latency. 0 pushes every append at once (a
    /// connection behind its socket still gets them merged). Default 0; at most 1000.
    pub stream_flush_ms: u64,
    /// Adds the `demo` namespace the demo page at `/` uses: anonymous publish, presence and
    /// join/leave (unless `namespaces.demo` is configured). Default false (`herald serve
    /// --demo` turns it on).
    pub demo: bool,

    /// Origins (`https://app.example.com`, or `*`) whose pages may open WebSockets and read
    /// SSE, long polls, `/publish` and `/history` across origins (CORS). A page of the
    /// server's own origin and clients that send no `Origin` (not browsers) are always
    /// allowed. Default empty.
    pub allowed_origins: Vec<String>,
    /// Most open connections (0: no limit). Default 50000.
    pub max_connections: usize,
    /// New connections per second one IP address may open, on average (0: no limit).
    /// Default 200.
    pub connection_rate_per_ip: u32,
    /// New connections one IP address may open at once. Default 1000.
    pub connection_burst_per_ip: u32,
    /// Most SSE streams and long polls open at once from one IP address (0: no limit).
    /// Default 1000.
    pub max_streams_per_ip: usize,
    /// Client publishes per second per WebSocket connection, or per IP address for
    /// `POST /publish` (0: no limit). Default 20.
    pub client_publish_rate: u32,
    /// Client publishes allowed at once. Default 50.
    pub client_publish_burst: u32,

    /// A PEM certificate chain: with `tls_key`, Herald also serves HTTPS (HTTP/2 by ALPN, and
    /// HTTP/1.1) on `tls_listen`. Unset by default.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Where HTTPS is served when `tls_cert` and `tls_key` are set. Default `127.0.0.1:8443`.
    pub tls_listen: SocketAddr,

    /// Keep epochs, offsets, history and idempotency keys on disk here, so that a restart
    /// loses nothing. Unset by default: history lives in memory and is lost on restart.
    pub data_dir: Option<PathBuf>,
    /// When a publish is durable and answered: `"fsync"` (an fsync as soon as a publish is
    /// written, shared by the publishes that arrive meanwhile; the default) or `"group"` (at
    /// most one fsync per `group_commit_ms`, covering every publish written since).
    pub durability: Durability,
    /// The group commit interval, in milliseconds. Default 5.
    pub group_commit_ms: u64,
    /// Size at which a log segment is sealed and becomes compactable, in bytes. Default
    /// 16 MiB.
    pub data_segment_bytes: u64,

    /// Where channels live: `"memory"` (the default: this node alone) or a Redis URL
    /// (`redis://[user:password@]host:port[/db]`, `rediss://…` for TLS), which lets several
    /// nodes share channels, offsets, history and idempotency keys (see docs/deployment.md).
    pub engine: String,
    /// A PEM CA certificate to trust for `rediss://` instead of the system's roots (a private
    /// CA, or a managed Redis's). Unset by default.
    pub redis_tls_ca: Option<PathBuf>,
    /// Whether `engine` names a Redis Cluster (any of its nodes; several may be given,
    /// separated by commas): feeds then use sharded pub/sub. Default false.
    pub redis_cluster: bool,
    /// Prefix of every Redis key and pub/sub channel Herald uses, so that several deployments
    /// can share one Redis. Default `herald:`.
    pub redis_prefix: String,
    /// How long Redis keeps a channel's offset, epoch and history after its latest publish, in
    /// seconds; a channel idle for longer starts a new epoch. Default 86400 (a day).
    pub redis_channel_ttl_secs: u64,
    /// Endpoints that receive webhook events (`[[webhooks]]`): who comes online, which
    /// channels are occupied, who joins presence. None by default.
    pub webhooks: Vec<WebhookConfig>,
    /// How long after the last connection of a user (the last subscriber of a channel, the
    /// last presence entry of a user) leaves before `user_offline` (`channel_vacated`,
    /// `presence_leave`) is sent, in milliseconds: a reconnect or a transport switch within
    /// it sends nothing. Default 3000.
    pub webhook_grace_ms: u64,
    /// Most events waiting for one webhook endpoint; past it the oldest are dropped (counted
    /// in `herald_webhook_events_dropped_total`), so that a dead endpoint never grows memory
    /// without bound. Default 10000.
    pub webhook_queue_max: usize,
    /// Backend hooks Herald asks before a connection, a subscription or a client's publish
    /// (`[hooks]`, see [`crate::hooks`]). None by default.
    pub hooks: HooksConfig,
    /// Whether WebSocket clients may negotiate permessage-deflate (RFC 7692): messages of at
    /// least `ws_compression_min_bytes` are then compressed, once each for all such clients.
    /// Default true.
    pub ws_compression: bool,
    /// The smallest message (its frame's payload, bytes) compressed for clients that
    /// negotiated it; smaller ones go plain. Default 256.
    pub ws_compression_min_bytes: usize,
    /// Sources Herald consumes and publishes from (`[[consumers]]`: a PostgreSQL outbox,
    /// RabbitMQ, NATS JetStream; see [`crate::consumers`]). None by default.
    pub consumers: Vec<ConsumerConfig>,
}

/// The backend hooks (`[hooks]`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HooksConfig {
    /// Asked before a connection is accepted. Unset by default.
    pub connect: Option<String>,
    /// Asked before a subscription. Unset by default.
    pub subscribe: Option<String>,
    /// Asked before a client's publish. Unset by default.
    pub publish: Option<String>,
    /// How long a hook may take to answer, in milliseconds. Default 2000.
    pub timeout_ms: u64,
    /// What a hook that fails (no answer, an error status, a body that is not an answer)
    /// decides: `"refuse"` (the default) or `"allow"`.
    pub on_failure: String,
    /// Request headers passed to the connect hook. Default `["cookie", "authorization"]`.
    pub forward_headers: Vec<String>,
    /// How long answers are reused, in seconds (0: never). Default 30.
    pub cache_secs: u64,
}

impl Default for HooksConfig {
    fn default() -> Self {
        Self {
            connect: None,
            subscribe: None,
            publish: None,
            timeout_ms: 2000,
            on_failure: "refuse".into(),
            forward_headers: vec!["cookie".into(), "authorization".into()],
            cache_secs: 30,
        }
    }
}

/// Every kind of webhook event, as `[[webhooks]] events` names them.
pub const WEBHOOK_EVENTS: [&str; 6] =
    ["user_online", "user_offline", "channel_occupied", "channel_vacated", "presence_join", "presence_leave"];

/// One webhook endpoint (`[[webhooks]]`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where events are POSTed (`http://` or `https://`).
    pub url: String,
    /// The key that signs each request (HMAC-SHA256; docs/deployment.md says how to check it).
    /// At least 16 bytes.
    pub secret: String,
    /// The events it receives; every kind when empty (the default).
    #[serde(default)]
    pub events: Vec<String>,
}

/// Options of one namespace. Unset fields fall back to the top-level defaults.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceConfig {
    /// History kept per channel, in messages (0 turns history off).
    pub history_size: Option<usize>,
    /// Longest a message stays in history, in seconds (0: no age limit).
    pub history_ttl_secs: Option<u64>,
    /// See [`Config::anonymous_subscribe`].
    pub anonymous_subscribe: Option<bool>,
    /// See [`Config::anonymous_publish`].
    pub anonymous_publish: Option<bool>,
    /// See [`Config::client_publish`].
    pub client_publish: Option<bool>,
    /// See [`Config::presence`].
    pub presence: Option<bool>,
    /// See [`Config::join_leave`].
    pub join_leave: Option<bool>,
    /// See [`Config::conflate`].
    pub conflate: Option<bool>,
}

/// A configuration that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML or a value in it is invalid.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_key: None,
            admin_password: None,
            insecure_no_api_key: false,
            history_size: 1000,
            history_ttl_secs: 600,
            position_ttl_secs: 86_400,
            max_forgotten_positions: 1_000_000,
            namespaces: HashMap::new(),
            max_message_bytes: 64 * 1024,
            max_channels_per_connection: 128,
            max_queued_messages: 4096,
            max_queued_bytes: 4 * 1024 * 1024,
            heartbeat_secs: 15,
            ws_idle_timeout_secs: 45,
            poll_timeout_secs: 25,
            poll_max_timeout_secs: 60,
            sse_retry_ms: 2000,
            shutdown_deadline_secs: 10,
            idempotency_window_secs: 300,
            http_head_timeout_secs: 10,
            http_body_timeout_secs: 10,
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
            token_hs256_secret: None,
            token_rs256_public_key: None,
            token_es256_public_key: None,
            anonymous_subscribe: true,
            anonymous_publish: false,
            client_publish: true,
            presence: false,
            join_leave: false,
            conflate: false,
            max_streams_per_channel: 64,
            stream_idle_timeout_secs: 60,
            stream_flush_ms: 0,
            demo: false,
            webhooks: Vec::new(),
            webhook_grace_ms: 3000,
            webhook_queue_max: 10_000,
            consumers: Vec::new(),
            ws_compression: true,
            ws_compression_min_bytes: 256,
            hooks: HooksConfig::default(),
            allowed_origins: Vec::new(),
            max_connections: 50_000,
            connection_rate_per_ip: 200,
            connection_burst_per_ip: 1000,
            max_streams_per_ip: 1000,
            client_publish_rate: 20,
            client_publish_burst: 50,
            tls_cert: None,
            tls_key: None,
            tls_listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            data_dir: None,
            durability: Durability::Fsync,
            engine: "memory".to_string(),
            redis_cluster: false,
            redis_tls_ca: None,
            redis_prefix: "herald:".to_string(),
            redis_channel_ttl_secs: 86_400,
            group_commit_ms: 5,
            data_segment_bytes: 16 * 1024 * 1024,
        }
    }
}

// === impl Config ===

impl Config {
    /// Loads the configuration: the TOML file at `path` (if any), then every `HERALD_<FIELD>`
    /// variable in `env` naming a field (e.g. `HERALD_HISTORY_SIZE=50`; other `HERALD_*`
    /// variables, such as the CLI's `HERALD_URL`, are not configuration and are ignored), then
    /// `overrides` (field, value) pairs, where an unknown field is an error.
    /// Values are read as TOML (`50`, `true`, `"x"`), falling back to a plain string.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
                text.parse::<toml::Table>().map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        let fields = Self::field_names();
        let from_env = env.into_iter().filter_map(|(k, v)| {
            let field = k.strip_prefix("HERALD_")?.to_ascii_lowercase();
            fields.contains(&field).then_some((field, v))
        });
        for (key, value) in from_env.chain(overrides) {
            table.insert(key, parse_value(&value));
        }
        let mut config: Self = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_string()))?;
        config.validate()?;
        if config.demo {
            config.namespaces.entry("demo".to_string()).or_insert_with(|| NamespaceConfig {
                anonymous_publish: Some(true),
                presence: Some(true),
                join_leave: Some(true),
                ..NamespaceConfig::default()
            });
        }
        Ok(config)
    }

    /// The names of the top-level fields.
    fn field_names() -> Vec<String> {
        // Fields unset by default are missing from the serialized defaults.
        let unset = [
            "api_key",
            "admin_password",
            "token_hs256_secret",
            "token_rs256_public_key",
            "token_es256_public_key",
            "tls_cert",
            "tls_key",
            "redis_tls_ca",
        ];
        match toml::Value::try_from(Self::default()) {
            Ok(toml::Value::Table(t)) => t.keys().cloned().chain(unset.map(str::to_string)).collect(),
            _ => Vec::new(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.heartbeat_secs == 0 {
            return bad("heartbeat_secs must be at least 1");
        }
        if self.http_head_timeout_secs == 0 || self.http_body_timeout_secs == 0 {
            return bad("http_head_timeout_secs and http_body_timeout_secs must be at least 1");
        }
        self.proxies()?;
        if self.proxy_protocol && self.trusted_proxies.is_empty() {
            return bad("proxy_protocol needs trusted_proxies: the peers allowed to send the header");
        }
        if self.ws_idle_timeout_secs <= self.heartbeat_secs {
            return bad("ws_idle_timeout_secs must be longer than heartbeat_secs");
        }
        if self.max_queued_messages == 0 || self.max_channels_per_connection == 0 {
            return bad("max_queued_messages and max_channels_per_connection must be at least 1");
        }
        if self.api_key.as_deref().is_some_and(str::is_empty) {
            return bad("api_key must not be empty");
        }
        if self.admin_password.as_deref().is_some_and(|p| p.len() < 8) {
            return bad("admin_password must be at least 8 characters");
        }
        if self.engine != "memory" && !self.engine.starts_with("redis://") && !self.engine.starts_with("rediss://") {
            return bad("engine must be \"memory\" or a redis:// or rediss:// URL");
        }
        if self.redis_url().is_some() && self.data_dir.is_some() {
            return bad("data_dir and a Redis engine do not go together: with Redis, history lives in Redis");
        }
        if self.redis_cluster && self.redis_url().is_none() {
            return bad("redis_cluster needs a Redis engine URL");
        }
        if self.redis_channel_ttl_secs == 0 {
            return bad("redis_channel_ttl_secs must be at least 1");
        }
        if self.stream_flush_ms > 1000 {
            return bad("stream_flush_ms must be at most 1000");
        }
        for hook in &self.webhooks {
            if !(hook.url.starts_with("http://") || hook.url.starts_with("https://")) {
                return bad("a webhook's url must start with http:// or https://");
            }
            if hook.secret.len() < 16 {
                return bad("a webhook's secret must be at least 16 bytes");
            }
            if let Some(unknown) = hook.events.iter().find(|e| !WEBHOOK_EVENTS.contains(&e.as_str())) {
                return Err(ConfigError::Invalid(format!(
                    "unknown webhook event {unknown:?}: one of {}",
                    WEBHOOK_EVENTS.join(", ")
                )));
            }
        }
        let hooks = &self.hooks;
        for url in [&hooks.connect, &hooks.subscribe, &hooks.publish].into_iter().flatten() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return bad("a hook's url must start with http:// or https://");
            }
        }
        if hooks.on_failure != "refuse" && hooks.on_failure != "allow" {
            return bad("hooks.on_failure must be \"refuse\" or \"allow\"");
        }
        if self.webhook_queue_max == 0 {
            return bad("webhook_queue_max must be at least 1");
        }
        consumers::validate_all(&self.consumers)?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("tls_cert and tls_key go together");
        }
        if let Some(origin) = self.allowed_origins.iter().find(|o| *o != "*" && !o.contains("://")) {
            return bad(&format!("allowed_origins: {origin:?} is not an origin like https://app.example.com or *"));
        }
        Ok(())
    }

    /// The history limits of `channel`'s namespace.
    pub fn history_limits(&self, channel: &ChannelName) -> HistoryLimits {
        let ns = self.namespace(channel);
        HistoryLimits {
            size: ns.and_then(|n| n.history_size).unwrap_or(self.history_size),
            ttl_ms: ns.and_then(|n| n.history_ttl_secs).unwrap_or(self.history_ttl_secs) * 1000,
        }
    }

    /// Whether `channel`'s namespace is latest-only ([`Config::conflate`]).
    pub fn conflates(&self, channel: &ChannelName) -> bool {
        self.namespace(channel).and_then(|n| n.conflate).unwrap_or(self.conflate)
    }

    /// The permission rules of `channel`'s namespace.
    pub fn rules(&self, channel: &ChannelName) -> NamespaceRules {
        let ns = self.namespace(channel);
        let pick = |f: fn(&NamespaceConfig) -> Option<bool>, default: bool| ns.and_then(f).unwrap_or(default);
        NamespaceRules {
            anonymous_subscribe: pick(|n| n.anonymous_subscribe, self.anonymous_subscribe),
            anonymous_publish: pick(|n| n.anonymous_publish, self.anonymous_publish),
            client_publish: pick(|n| n.client_publish, self.client_publish),
            presence: pick(|n| n.presence, self.presence),
            join_leave: pick(|n| n.join_leave, self.join_leave),
        }
    }

    /// The options of `channel`'s namespace, if it has any. Most servers configure no
    /// namespace: then there is no lookup (this runs for every subscribe and fan-out round).
    fn namespace(&self, channel: &ChannelName) -> Option<&NamespaceConfig> {
        match self.namespaces.is_empty() {
            true => None,
            false => self.namespaces.get(channel.namespace()),
        }
    }

    /// The trusted proxies of `trusted_proxies` and `proxy_protocol`.
    pub fn proxies(&self) -> Result<crate::proxy::TrustedProxies, ConfigError> {
        crate::proxy::TrustedProxies::new(&self.trusted_proxies, self.proxy_protocol)
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// New connections one IP address may open.
    pub fn connection_rate(&self) -> RateLimit {
        RateLimit { per_sec: self.connection_rate_per_ip, burst: self.connection_burst_per_ip }
    }

    /// Client publishes one connection (or, over HTTP, one IP address) may make.
    pub fn client_publish_limit(&self) -> RateLimit {
        RateLimit { per_sec: self.client_publish_rate, burst: self.client_publish_burst }
    }

    /// The Redis URL, when the engine is Redis.
    pub fn redis_url(&self) -> Option<&str> {
        Some(self.engine.as_str()).filter(|e| *e != "memory")
    }

    /// How to open the store, when `data_dir` is set.
    pub fn store_options(&self) -> Option<StoreOptions> {
        Some(StoreOptions {
            dir: self.data_dir.clone()?,
            durability: self.durability,
            group_commit: Duration::from_millis(self.group_commit_ms),
            segment_bytes: self.data_segment_bytes.max(4096),
        })
    }

    /// [`Config::heartbeat_secs`] as a duration.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }
}

/// A random 32-character API key, for a server started without one.
pub fn generate_api_key() -> String {
    crate::ids::random_id(32)
}

fn parse_value(text: &str) -> toml::Value {
    format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)], overrides: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("herald-config-{}-{}", std::process::id(), toml.len()));
        std::fs::write(&dir, toml).map_err(|source| ConfigError::Read { path: String::new(), source })?;
        let owned = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        let result = Config::load(Some(&dir), owned(env), owned(overrides));
        let _ = std::fs::remove_file(&dir);
        result
    }

    #[test]
    fn empty_configuration_gives_the_defaults() {
        let c = load("", &[], &[]).expect("loads");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!((c.history_size, c.history_ttl_secs, c.api_key), (1000, 600, None));
    }

    #[test]
    fn file_then_env_then_overrides() {
        let c = load(
            "history_size = 5\nmax_message_bytes = 10\n[namespaces.chat]\nhistory_size = 2\n",
            &[
                ("HERALD_MAX_MESSAGE_BYTES", "20"),
                ("HERALD_API_KEY", "secret"),
                ("HERALD_URL", "http://elsewhere"),
                ("PATH", "/bin"),
            ],
            &[("history_ttl_secs", "0")],
        )
        .expect("loads");
        assert_eq!((c.history_size, c.max_message_bytes, c.history_ttl_secs), (5, 20, 0));
        assert_eq!(c.api_key.as_deref(), Some("secret"));
        let chat = ChannelName::new("chat:1").expect("valid");
        assert_eq!(c.history_limits(&chat), HistoryLimits { size: 2, ttl_ms: 0 });
    }

    #[test]
    fn unknown_or_mistyped_fields_are_errors() {
        assert!(matches!(load("histroy_size = 5", &[], &[]), Err(ConfigError::Invalid(_))));
        assert!(matches!(load("", &[("HERALD_HISTORY_SIZE", "many")], &[]), Err(ConfigError::Invalid(_))));
        assert!(matches!(load("heartbeat_secs = 0", &[], &[]), Err(ConfigError::Invalid(_))));
        assert!(matches!(load("", &[], &[("histroy_size", "1")]), Err(ConfigError::Invalid(_))));
    }
}
