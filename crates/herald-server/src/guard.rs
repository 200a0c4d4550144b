//! Limits that keep one client from exhausting the node: open connections, new connections per
//! second per IP, SSE streams and long polls per IP, client publishes per second. Every limit
//! hit is counted (`GET /api/info` → `limits`) and logged, at most once a second per limit so
//! that a flood does not also flood the log.
//!
//! Limits enforced elsewhere report here too ([`Guard::hit`]): message and body size, channels
//! per connection.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use herald_core::{ErrorCode, ProtocolError, RateLimit, TokenBucket};
use parking_lot::Mutex;

use crate::{config::Config, metrics::Metrics, now_ms};

/// A limit, as counted and logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `max_connections`.
    Connections,
    /// `connection_rate_per_ip` / `connection_burst_per_ip`.
    ConnectionRate,
    /// `max_streams_per_ip`.
    StreamsPerIp,
    /// `client_publish_rate` / `client_publish_burst`.
    PublishRate,
    /// `max_message_bytes` and the request body limit.
    MessageSize,
    /// `max_channels_per_connection`.
    ChannelsPerConnection,
    /// A WebSocket upgrade or CORS request from an origin not on `allowed_origins`.
    Origin,
    /// `http_head_timeout_secs`: a request head not all in within it (slowloris).
    HeadTimeout,
    /// `http_body_timeout_secs`: a request body that stopped arriving.
    BodyTimeout,
}

const LIMITS: [Limit; 9] = [
    Limit::Connections,
    Limit::ConnectionRate,
    Limit::StreamsPerIp,
    Limit::PublishRate,
    Limit::MessageSize,
    Limit::ChannelsPerConnection,
    Limit::Origin,
    Limit::HeadTimeout,
    Limit::BodyTimeout,
];

/// Per-IP state kept while an address is active.
struct PerIp {
    connects: TokenBucket,
    publishes: TokenBucket,
    streams: usize,
}

/// The node's limits and their counters.
pub struct Guard {
    metrics: Arc<Metrics>,
    max_connections: usize,
    connection_rate: RateLimit,
    max_streams_per_ip: usize,
    publish_rate: RateLimit,
    ips: Mutex<HashMap<IpAddr, PerIp>>,
    /// The second each limit was last logged in.
    logged: [AtomicU64; LIMITS.len()],
}

/// An open SSE stream or long poll counted against its IP; dropping it releases the count.
/// (Nothing is counted while the limit is off.)
pub struct StreamPermit {
    counted: Option<(Arc<Guard>, IpAddr)>,
}

// === impl Limit ===

impl Limit {
    /// The counter's name in `/api/info`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Connections => "connections",
            Self::ConnectionRate => "connection_rate",
            Self::StreamsPerIp => "streams_per_ip",
            Self::PublishRate => "publish_rate",
            Self::MessageSize => "message_size",
            Self::ChannelsPerConnection => "channels_per_connection",
            Self::Origin => "origin",
            Self::HeadTimeout => "head_timeout",
            Self::BodyTimeout => "body_timeout",
        }
    }
}

// === impl Guard ===

impl Guard {
    /// The limits of `config`; hits are counted in `metrics`.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            max_connections: config.max_connections,
            connection_rate: config.connection_rate(),
            max_streams_per_ip: config.max_streams_per_ip,
            publish_rate: config.client_publish_limit(),
            ips: Mutex::new(HashMap::new()),
            logged: Default::default(),
        }
    }

    fn with_ip<R>(&self, ip: IpAddr, f: impl FnOnce(&mut PerIp) -> R) -> R {
        let now = now_ms();
        let mut ips = self.ips.lock();
        let entry = ips.entry(ip).or_insert_with(|| PerIp {
            connects: TokenBucket::new(self.connection_rate, now),
            publishes: TokenBucket::new(self.publish_rate, now),
            streams: 0,
        });
        f(entry)
    }

    /// Admits a new connection from `ip` while `open` connections are open, or says which
    /// limit refuses it.
    pub fn admit_connection(&self, ip: IpAddr, open: usize) -> Result<(), ProtocolError> {
        self.admit_capacity(ip, open)?;
        self.admit_rate(ip)
    }

    /// Admits a new connection while `open` connections are open (`ip`: who it is from, for
    /// the log), or refuses it over `max_connections`.
    pub fn admit_capacity(&self, ip: IpAddr, open: usize) -> Result<(), ProtocolError> {
        if self.max_connections > 0 && open >= self.max_connections {
            self.hit(Limit::Connections, Some(ip), "the node is at max_connections");
            return Err(ProtocolError::new(ErrorCode::TooManyConnections, "the server is at its connection limit"));
        }
        Ok(())
    }

    /// Takes one new connection from `ip`'s budget, or refuses it over
    /// `connection_rate_per_ip`.
    pub fn admit_rate(&self, ip: IpAddr) -> Result<(), ProtocolError> {
        if self.connection_rate.is_off() {
            return Ok(());
        }
        let rate = self.connection_rate;
        if self.with_ip(ip, |per_ip| per_ip.connects.try_take(rate, now_ms())) {
            Ok(())
        } else {
            self.hit(Limit::ConnectionRate, Some(ip), "too many new connections");
            Err(ProtocolError::new(ErrorCode::RateLimited, "too many new connections from this address; retry later"))
        }
    }

    /// Counts an SSE stream or long poll from `ip`, or refuses it over `max_streams_per_ip`.
    pub fn open_stream(self: &Arc<Self>, ip: IpAddr) -> Result<StreamPermit, ProtocolError> {
        let max = self.max_streams_per_ip;
        if max == 0 {
            return Ok(StreamPermit { counted: None });
        }
        let admitted = self.with_ip(ip, |per_ip| {
            let admitted = per_ip.streams < max;
            per_ip.streams += usize::from(admitted);
            admitted
        });
        if admitted {
            Ok(StreamPermit { counted: Some((self.clone(), ip)) })
        } else {
            self.hit(Limit::StreamsPerIp, Some(ip), "too many SSE streams and long polls");
            Err(ProtocolError::new(
                ErrorCode::RateLimited,
                format!("at most {max} SSE streams and long polls at once from one address"),
            ))
        }
    }

    /// Takes one client publish from `bucket` (a connection's own) or, without one, from
    /// `ip`'s; refuses it over `client_publish_rate`.
    pub fn client_publish(&self, ip: IpAddr, bucket: Option<&mut TokenBucket>) -> Result<(), ProtocolError> {
        let rate = self.publish_rate;
        let allowed = match bucket {
            Some(bucket) => bucket.try_take(rate, now_ms()),
            None if rate.is_off() => true,
            None => self.with_ip(ip, |per_ip| per_ip.publishes.try_take(rate, now_ms())),
        };
        if allowed {
            Ok(())
        } else {
            self.hit(Limit::PublishRate, Some(ip), "client publishes over the rate limit");
            Err(ProtocolError::new(
                ErrorCode::RateLimited,
                format!("at most {} publishes per second (burst {}); slow down", rate.per_sec, rate.burst),
            ))
        }
    }

    /// A fresh publish bucket for one connection.
    pub fn publish_bucket(&self) -> TokenBucket {
        TokenBucket::new(self.publish_rate, now_ms())
    }

    /// Counts a hit of `limit` (by `ip`, where known) and logs it (at most once a second per
    /// limit).
    pub fn hit(&self, limit: Limit, ip: Option<IpAddr>, what: &str) {
        let i = limit as usize;
        let total = self.metrics.limit_hit(limit.name());
        let second = now_ms() / 1000;
        if self.logged[i].swap(second, Ordering::Relaxed) != second {
            let ip = ip.map(|ip| ip.to_string()).unwrap_or_default();
            tracing::warn!(limit = limit.name(), ip, total, "limit hit: {what}");
        }
    }

    /// How often each limit was hit since start, by name.
    pub fn counts(&self) -> serde_json::Map<String, serde_json::Value> {
        LIMITS.iter().map(|l| (l.name().to_string(), self.metrics.limit_hits(l.name()).into())).collect()
    }

    /// Forgets addresses with full buckets and nothing open.
    pub fn prune(&self) {
        let now = now_ms();
        let (connect, publish) = (self.connection_rate, self.publish_rate);
        self.ips.lock().retain(|_, per_ip| {
            per_ip.streams > 0 || !per_ip.connects.is_full(connect, now) || !per_ip.publishes.is_full(publish, now)
        });
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        if let Some((guard, ip)) = self.counted.take() {
            guard.with_ip(ip, |per_ip| per_ip.streams = per_ip.streams.saturating_sub(1));
        }
    }
}
