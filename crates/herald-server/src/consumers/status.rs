//! What each consumer shows of itself: its state, lag and counts, as `/readyz` lists them and
//! the consumer's session updates them. Read by the HTTP layer, written by [`super`].

use std::sync::{
    Arc,
    atomic::{AtomicU8, AtomicU64, Ordering},
};

use parking_lot::Mutex;
use serde_json::json;

use crate::{config::ConsumerConfig, metrics::ConsumerCounters};

/// Every consumer's status, in configuration order.
pub struct Statuses(pub(super) Vec<Arc<Status>>);

/// One consumer's status.
pub struct Status {
    /// Its settings.
    pub(super) config: ConsumerConfig,
    /// Its members of the consumer metrics.
    pub(super) counters: ConsumerCounters,
    /// A [`Phase`].
    phase: AtomicU8,
    /// Messages waiting in the source, as last read (`u64::MAX`: unknown).
    lag: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// Where a consumer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Connecting to its source (or waiting to, after a failure).
    Connecting,
    /// Another node holds its lease.
    Standby,
    /// Connected and reading.
    Consuming,
    /// Stopped (the server is shutting down).
    Stopped,
}

// === impl Statuses ===

impl Statuses {
    /// Each consumer's state, lag and counts, for `/readyz`.
    pub fn report(&self) -> serde_json::Value {
        serde_json::Value::Array(self.0.iter().map(|status| status.report()).collect())
    }
}

// === impl Status ===

impl Status {
    /// A consumer about to connect.
    pub(super) fn new(config: ConsumerConfig, counters: ConsumerCounters) -> Self {
        Self {
            config,
            counters,
            phase: AtomicU8::new(Phase::Connecting as u8),
            lag: AtomicU64::new(u64::MAX),
            last_error: Mutex::new(None),
        }
    }

    pub(super) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
        self.counters.connected.set(i64::from(phase == Phase::Consuming));
    }

    pub(super) fn set_lag(&self, lag: Option<u64>) {
        self.lag.store(lag.unwrap_or(u64::MAX), Ordering::Relaxed);
        self.counters.lag.set(lag.map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX)));
    }

    pub(super) fn failed(&self, error: &str) {
        tracing::warn!(consumer = %self.config.name, %error, "consumer failed; retrying");
        self.counters.errors.inc();
        *self.last_error.lock() = Some(error.to_owned());
    }

    fn report(&self) -> serde_json::Value {
        let phase = match self.phase.load(Ordering::Relaxed) {
            0 => "connecting",
            1 => "standby",
            2 => "consuming",
            _ => "stopped",
        };
        let lag = self.lag.load(Ordering::Relaxed);
        json!({
            "name": self.config.name,
            "source": self.config.source,
            "state": phase,
            "lag": (lag != u64::MAX).then_some(lag),
            "published": self.counters.published.get(),
            "dead_letters": self.counters.dead_letters.get(),
            "errors": self.counters.errors.get(),
            "last_error": *self.last_error.lock(),
        })
    }
}
