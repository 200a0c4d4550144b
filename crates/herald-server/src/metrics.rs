//! Prometheus metrics (`GET /metrics`, OpenMetrics text): connections, subscriptions and
//! channels; messages published and delivered and bytes out by transport; publish-to-write
//! latency; disconnects by reason; recoveries by outcome; HTTP requests by route and status
//! with durations; limit hits; engine errors; the process's memory and CPU.
//!
//! Labels are small fixed sets — transport, route template, reason, outcome, limit — never a
//! channel or a user. One [`Metrics`] belongs to one server: it is made at start and handed
//! down (the broker, the registry and each connection's outbox hold an `Arc` of it), so two
//! servers in one process count apart. Counters on the hot paths are plain atomic adds.

use std::sync::OnceLock;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::{frame::Transport, routes::Route};

/// Every metric Herald exports.
pub struct Metrics {
    registry: Registry,
    /// Messages published (API and clients).
    pub published: Counter,
    delivered: [Counter; 3],
    bytes_out: [Counter; 3],
    /// Seconds from a publish to the write of its fan-out round.
    pub delivery_latency: Histogram,
    disconnects: Family<ReasonLabel, Counter>,
    recoveries: Family<OutcomeLabel, Counter>,
    /// The members of `recoveries`, by [`RecoveryOutcome`]: found once, then counted without the
    /// family's lock and hashing (a subscription is counted on every long poll).
    recovery_members: [OnceLock<Counter>; RecoveryOutcome::COUNT],
    http_requests: Family<RouteStatusLabels, Counter>,
    http_duration: Family<RouteLabel, Histogram>,
    /// Per route (as [`Route`] numbers them, `other` last), its members of `http_duration` and
    /// of `http_requests` for status 200: found once, then counted without the family's lock
    /// and hashing (every long poll is a request).
    route_members: [(OnceLock<Histogram>, OnceLock<Counter>); Route::ALL.len() + 1],
    limit_hits: Family<LimitLabel, Counter>,
    /// Failures of the engine: the durable store (writes, compaction) or Redis calls.
    pub engine_errors: Counter,
    /// Webhook events a receiver acknowledged.
    pub webhook_sent: Counter,
    /// Webhook events dropped: an endpoint's queue was full (`webhook_queue_max`).
    pub webhook_dropped: Counter,
    /// Webhook requests that failed (an error status, a timeout, no connection); retried.
    pub webhook_failures: Counter,
    consumers: ConsumerFamilies,
    connections: Family<TransportLabel, Gauge>,
    subscriptions: Gauge,
    channels: Gauge,
    resident_bytes: Gauge,
    cpu_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatusLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabel {
    consumer: String,
}

/// The consumers' metrics (`[[consumers]]`), by consumer name (a configured, bounded set).
#[derive(Default)]
struct ConsumerFamilies {
    published: Family<ConsumerLabel, Counter>,
    dead_letters: Family<ConsumerLabel, Counter>,
    errors: Family<ConsumerLabel, Counter>,
    lag: Family<ConsumerLabel, Gauge>,
    connected: Family<ConsumerLabel, Gauge>,
}

/// One consumer's members of the consumer metrics.
#[derive(Clone, Debug)]
pub struct ConsumerCounters {
    /// Source messages published (and acknowledged to the source).
    pub published: Counter,
    /// Source messages sent to the dead-letter path.
    pub dead_letters: Counter,
    /// Failures: a lost or refused source connection, a publish to retry.
    pub errors: Counter,
    /// Messages waiting in the source, as last read.
    pub lag: Gauge,
    /// 1 while connected to the source and consuming, 0 otherwise.
    pub connected: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

/// The node's figures sampled when `/metrics` is scraped.
pub struct Snapshot {
    /// Open connections by transport (ws, sse, poll).
    pub connections: [usize; 3],
    /// Subscriptions over all channels.
    pub subscriptions: usize,
    /// Channels the node knows.
    pub channels: usize,
    /// Resident memory, bytes.
    pub resident_bytes: u64,
    /// CPU time used, seconds.
    pub cpu_seconds: f64,
}

const TRANSPORTS: [Transport; 3] = [Transport::Ws, Transport::Sse, Transport::Poll];

// === impl Metrics ===

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered for `/metrics`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let published = Counter::default();
        registry.register("messages_published", "Messages published (API and clients)", published.clone());
        let delivered_family = Family::<TransportLabel, Counter>::default();
        registry.register(
            "messages_delivered",
            "Message deliveries to connections, by transport",
            delivered_family.clone(),
        );
        let bytes_family = Family::<TransportLabel, Counter>::default();
        registry.register("bytes_out", "Bytes handed to client sockets, by transport", bytes_family.clone());
        let by_transport = |family: &Family<TransportLabel, Counter>| {
            TRANSPORTS.map(|t| family.get_or_create(&TransportLabel { transport: t.name() }).clone())
        };
        let delivery_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "delivery_latency_seconds",
            "Seconds from a publish to the write of its fan-out round",
            delivery_latency.clone(),
        );
        let disconnects = Family::default();
        registry.register("disconnects", "Connections closed by the server, by reason", disconnects.clone());
        let recoveries = Family::default();
        registry.register(
            "subscribe_recoveries",
            "Subscriptions by recovery outcome (recovered, reset, live: no position given)",
            recoveries.clone(),
        );
        let http_requests = Family::default();
        registry.register("http_requests", "HTTP requests by route template and status", http_requests.clone());
        let http_duration = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 4.0, 10))
        });
        registry.register(
            "http_request_duration_seconds",
            "Seconds to answer an HTTP request (to the response head for streams), by route template",
            http_duration.clone(),
        );
        let limit_hits = Family::default();
        registry.register("limit_hits", "Requests and connections refused by a limit, by limit", limit_hits.clone());
        let engine_errors = Counter::default();
        registry.register(
            "engine_errors",
            "Failures of the engine: the durable store (writes, compaction) or Redis calls",
            engine_errors.clone(),
        );
        let (webhook_sent, webhook_dropped, webhook_failures) =
            (Counter::default(), Counter::default(), Counter::default());
        registry.register("webhook_events_sent", "Webhook events a receiver acknowledged", webhook_sent.clone());
        registry.register(
            "webhook_events_dropped",
            "Webhook events dropped because an endpoint's queue was full",
            webhook_dropped.clone(),
        );
        registry.register("webhook_failures", "Webhook requests that failed and are retried", webhook_failures.clone());
        let consumers = ConsumerFamilies::default();
        registry.register(
            "consumer_messages",
            "Source messages a consumer published, by consumer",
            consumers.published.clone(),
        );
        registry.register(
            "consumer_dead_letters",
            "Source messages a consumer could not publish and sent to its dead-letter path, by consumer",
            consumers.dead_letters.clone(),
        );
        registry.register(
            "consumer_errors",
            "Consumer failures (source connection, publish to retry), by consumer",
            consumers.errors.clone(),
        );
        registry.register(
            "consumer_lag",
            "Messages waiting in a consumer's source, by consumer",
            consumers.lag.clone(),
        );
        registry.register(
            "consumer_connected",
            "1 while a consumer is connected to its source and consuming, by consumer",
            consumers.connected.clone(),
        );
        let connections = Family::default();
        registry.register("connections", "Open connections by transport", connections.clone());
        let subscriptions = Gauge::default();
        registry.register("subscriptions", "Subscriptions over all channels", subscriptions.clone());
        let channels = Gauge::default();
        registry.register("channels", "Channels the node knows", channels.clone());
        let resident_bytes = Gauge::default();
        registry.register("process_resident_memory_bytes", "Resident memory of the process", resident_bytes.clone());
        let cpu_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register("process_cpu_seconds", "CPU time the process used", cpu_seconds.clone());
        Self {
            registry,
            published,
            delivered: by_transport(&delivered_family),
            bytes_out: by_transport(&bytes_family),
            delivery_latency,
            disconnects,
            recoveries,
            recovery_members: Default::default(),
            http_requests,
            http_duration,
            route_members: [const { (OnceLock::new(), OnceLock::new()) }; Route::ALL.len() + 1],
            limit_hits,
            engine_errors,
            webhook_sent,
            webhook_dropped,
            webhook_failures,
            consumers,
            connections,
            subscriptions,
            channels,
            resident_bytes,
            cpu_seconds,
        }
    }

    /// The members of the consumer metrics for consumer `name`.
    pub fn consumer(&self, name: &str) -> ConsumerCounters {
        let label = ConsumerLabel { consumer: name.to_owned() };
        let families = &self.consumers;
        ConsumerCounters {
            published: families.published.get_or_create(&label).clone(),
            dead_letters: families.dead_letters.get_or_create(&label).clone(),
            errors: families.errors.get_or_create(&label).clone(),
            lag: families.lag.get_or_create(&label).clone(),
            connected: families.connected.get_or_create(&label).clone(),
        }
    }

    /// Counts `n` deliveries over `transport`.
    pub fn delivered(&self, transport: Transport, n: u64) {
        self.delivered[transport as usize].inc_by(n);
    }

    /// Counts `n` messages handed to a connection over `transport` by a fan-out round or a
    /// recovery: deliveries over WebSocket and SSE. A long poll's are not counted here but when
    /// its answer takes them (`Outbox::take_answer`): a kept subscription's queue may never be
    /// collected.
    pub fn handed(&self, transport: Transport, n: u64) {
        if transport != Transport::Poll {
            self.delivered(transport, n);
        }
    }

    /// Counts `n` bytes out over `transport`.
    pub fn bytes_out(&self, transport: Transport, n: usize) {
        self.bytes_out[transport as usize].inc_by(n as u64);
    }

    /// Counts a server-side disconnect for `reason`.
    pub fn disconnect(&self, reason: &'static str) {
        self.disconnects.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts a subscription's recovery `outcome`.
    pub fn recovery(&self, outcome: RecoveryOutcome) {
        let member = self.recovery_members[outcome as usize]
            .get_or_init(|| self.recoveries.get_or_create(&OutcomeLabel { outcome: outcome.name() }).clone());
        member.inc();
    }

    /// Counts an HTTP request to `route` answered with `status` after `seconds`.
    pub fn http_request(&self, route: Route, status: u16, seconds: f64) {
        let (name, (duration, ok)) = (route.template(), &self.route_members[route.index()]);
        let labels = RouteStatusLabels { route: name, status };
        duration.get_or_init(|| self.http_duration.get_or_create(&RouteLabel { route: name }).clone()).observe(seconds);
        match status {
            200 => ok.get_or_init(|| self.http_requests.get_or_create(&labels).clone()).inc(),
            _ => self.http_requests.get_or_create(&labels).inc(),
        };
    }

    /// Counts a hit of the limit named `limit`; returns the hits so far.
    pub fn limit_hit(&self, limit: &'static str) -> u64 {
        self.limit_hits.get_or_create(&LimitLabel { limit }).inc() + 1
    }

    /// Hits of the limit named `limit` so far.
    pub fn limit_hits(&self, limit: &'static str) -> u64 {
        self.limit_hits.get_or_create(&LimitLabel { limit }).get()
    }

    /// Messages published, and deliveries made (all transports), since start.
    pub fn totals(&self) -> (u64, u64) {
        (self.published.get(), self.delivered.iter().map(Counter::get).sum())
    }

    /// The OpenMetrics text of every metric, with the gauges set from `snapshot`.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        for (t, n) in TRANSPORTS.iter().zip(snapshot.connections) {
            self.connections.get_or_create(&TransportLabel { transport: t.name() }).set(n as i64);
        }
        self.subscriptions.set(snapshot.subscriptions as i64);
        self.channels.set(snapshot.channels as i64);
        self.resident_bytes.set(snapshot.resident_bytes as i64);
        self.cpu_seconds.set(snapshot.cpu_seconds);
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// How a subscription started, the `outcome` label of the recovery count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryOutcome {
    /// No position was given: live from now.
    Live,
    /// Resumed from the given position, missing nothing.
    Recovered,
    /// The position could not be resumed: the client was told to reset.
    Reset,
}

// === impl RecoveryOutcome ===

impl RecoveryOutcome {
    const COUNT: usize = 3;

    fn name(self) -> &'static str {
        match self {
            RecoveryOutcome::Live => "live",
            RecoveryOutcome::Recovered => "recovered",
            RecoveryOutcome::Reset => "reset",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Metrics, Route, Snapshot};

    fn snapshot() -> Snapshot {
        Snapshot { connections: [0; 3], subscriptions: 0, channels: 0, resident_bytes: 0, cpu_seconds: 0.0 }
    }

    #[test]
    fn every_route_is_counted_other_included() {
        let metrics = Metrics::new();
        let count = |route, status| {
            let text = metrics.render(&snapshot());
            let line = format!("herald_http_requests_total{{route=\"{route}\",status=\"{status}\"}} ");
            text.lines().find_map(|l| l.strip_prefix(&line)?.parse::<u64>().ok()).unwrap_or(0)
        };
        for path in ["/wp-login.php", "/poll", "/sse/a:b"] {
            let route = Route::of(path);
            for status in [200, 404] {
                let before = count(route.template(), status);
                metrics.http_request(route, status, 0.001);
                assert_eq!(count(route.template(), status), before + 1, "{path} {status}");
            }
        }
    }
}
