//! One webhook endpoint: its bounded queue of events and the task that POSTs them in batches,
//! signed, until the receiver acknowledges each batch.
//!
//! Guarantees:
//! - events reach the receiver in the order they were queued, at least once: a batch is
//!   resent (the same events, the same ids, possibly with newer ones after them) until the
//!   receiver answers 2xx, waiting 0.5 s, 1 s, 2 s … up to 30 s between tries;
//! - the queue holds at most `webhook_queue_max` events: past it the oldest are dropped and
//!   counted (`herald_webhook_events_dropped_total`), never the process's memory;
//! - every request carries `Herald-Webhook-Timestamp` (Unix seconds) and
//!   `Herald-Webhook-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>" with the secret>`.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;
use tokio::sync::Notify;

use super::Event;
use crate::{config::WebhookConfig, metrics::Metrics};

/// Most events in one request.
const BATCH: usize = 100;
/// How long a request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The first and the longest wait between tries of a failed batch.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// A webhook endpoint and its queue.
pub(super) struct Endpoint {
    config: WebhookConfig,
    capacity: usize,
    queue: Mutex<Queue>,
    ready: Notify,
    metrics: Arc<Metrics>,
}

/// Events waiting, each with its number in this endpoint's sequence (so that an
/// acknowledgment forgets exactly what was sent, whatever was dropped meanwhile).
#[derive(Default)]
struct Queue {
    events: VecDeque<(u64, Arc<Event>)>,
    /// The number of the last event queued.
    last: u64,
}

// === impl Endpoint ===

impl Endpoint {
    /// The endpoint of `config`, with its delivery task running.
    pub(super) fn start(config: WebhookConfig, capacity: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        let endpoint =
            Arc::new(Self { config, capacity, queue: Mutex::new(Queue::default()), ready: Notify::new(), metrics });
        tokio::spawn(deliver(Arc::clone(&endpoint)));
        endpoint
    }

    /// Queues `event` if this endpoint wants its kind, dropping the oldest event when full.
    pub(super) fn queue(&self, event: &Arc<Event>) {
        if !self.config.events.is_empty() && !self.config.events.iter().any(|kind| kind == event.kind) {
            return;
        }
        let mut queue = self.queue.lock();
        if queue.events.len() >= self.capacity {
            queue.events.pop_front();
            self.metrics.webhook_dropped.inc();
        }
        queue.last += 1;
        let number = queue.last;
        queue.events.push_back((number, Arc::clone(event)));
        drop(queue);
        self.ready.notify_one();
    }

    /// Whether nothing waits.
    pub(super) fn is_idle(&self) -> bool {
        self.queue.lock().events.is_empty()
    }

    /// Every waiting event, oldest first, taken out of the queue.
    pub(super) fn take_all(&self) -> Vec<Arc<Event>> {
        self.queue.lock().events.drain(..).map(|(_, e)| e).collect()
    }

    /// The oldest waiting events (at most [`BATCH`]) and the number of the last of them.
    fn batch(&self) -> Option<(u64, Vec<Arc<Event>>)> {
        let events = &self.queue.lock().events;
        let last = events.get(events.len().min(BATCH).checked_sub(1)?)?.0;
        Some((last, events.iter().take(BATCH).map(|(_, e)| Arc::clone(e)).collect()))
    }

    /// Forgets the events up to number `last`: acknowledged (some may have been dropped
    /// meanwhile).
    fn acknowledged(&self, last: u64) {
        let events = &mut self.queue.lock().events;
        while events.front().is_some_and(|(n, _)| *n <= last) {
            events.pop_front();
        }
    }
}

/// Sends the endpoint's events as they come, batch by batch, until the process ends.
async fn deliver(endpoint: Arc<Endpoint>) {
    let client = match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(url = %endpoint.config.url, error = %e, "webhooks cannot start: no HTTP client");
            return;
        }
    };
    let mut wait = RETRY_FIRST;
    loop {
        let Some((last, events)) = endpoint.batch() else {
            endpoint.ready.notified().await;
            continue;
        };
        match send(&client, &endpoint.config, &events).await {
            Ok(()) => {
                endpoint.metrics.webhook_sent.inc_by(events.len() as u64);
                endpoint.acknowledged(last);
                wait = RETRY_FIRST;
            }
            Err(why) => {
                endpoint.metrics.webhook_failures.inc();
                tracing::warn!(url = %endpoint.config.url, error = %why, retry_in_ms = wait.as_millis() as u64, "a webhook request failed");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
}

/// POSTs `events` to the endpoint, signed; `Err` with why unless it answered 2xx.
async fn send(client: &reqwest::Client, config: &WebhookConfig, events: &[Arc<Event>]) -> Result<(), String> {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        events: Vec<&'a Event>,
    }
    let body =
        serde_json::to_vec(&Body { events: events.iter().map(|e| &**e).collect() }).map_err(|e| e.to_string())?;
    let timestamp = crate::now_ms() / 1000;
    let response = client
        .post(&config.url)
        .header("content-type", "application/json")
        .header("herald-webhook-timestamp", timestamp.to_string())
        .header("herald-webhook-signature", signature(&config.secret, timestamp, &body))
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status().is_success() { Ok(()) } else { Err(format!("the receiver answered {}", response.status())) }
}

/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub(super) fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return String::new() };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(3 + digest.len() * 2);
    out.push_str("v1=");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body() {
        // Computed apart, as a receiver would (docs/deployment.md's snippet):
        // hmac.new(b"a-webhook-secret-key", b'1700000000.{"events":[]}', hashlib.sha256)
        let signed = signature("a-webhook-secret-key", 1_700_000_000, br#"{"events":[]}"#);
        assert_eq!(signed, "v1=30036e194f83ac90af49311d59da0c9f30f19a9967f06e1998143c5b195b1e89");
        assert_ne!(signature("a-webhook-secret-key", 1_700_000_001, br#"{"events":[]}"#), signed, "the time is signed");
    }
}
