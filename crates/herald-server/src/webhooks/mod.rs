//! Webhooks: telling the application's backend who is here — a user's first connection and
//! last (`user_online`, `user_offline`), a channel's first subscriber and last
//! (`channel_occupied`, `channel_vacated`), a user's first presence entry in a channel and
//! last (`presence_join`, `presence_leave`) — over all transports and, with Redis, all nodes.
//!
//! The pipeline:
//! 1. [`Activity`] counts, per subject (a user, a channel, a member of a channel's presence),
//!    what holds it on this node ([`herald_core::occupancy`]): the first holder is an up at
//!    once; the last one leaving is a down after `webhook_grace_ms`, unless the subject is held
//!    again meanwhile (a reconnect, a transport switch, a long poll's next request), which
//!    cancels it.
//! 2. [`decide`] turns the node's ups and downs into events: on one node each is an event;
//!    with Redis, an up is an event only on the first node to hold the subject and a down only
//!    on the last to let it go, decided by one script per change ([`cluster`]), so exactly one
//!    node sends each event.
//! 3. Each endpoint ([`delivery`]) queues the events it wants (bounded: past
//!    `webhook_queue_max` the oldest are dropped and counted), and POSTs them in batches,
//!    signed, retrying a failed batch with backoff until its receiver answers 2xx: delivery is
//!    at least once, and a retried event keeps its `id`.
//!
//! Events are `{"id","type","time","user"?,"channel"?,"info"?}`; a request's body is
//! `{"events":[…]}` (docs/deployment.md, "Webhooks").
//!
//! At shutdown ([`Webhooks::stop`]), once the connections are closed, every subject the node
//! still holds is released at once (no grace: the node is going), the endpoints get a few
//! seconds to deliver, and with `data_dir` what is left is saved there and queued again,
//! under the same ids, by the next start.

mod cluster;
mod delivery;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use herald_core::{
    ChannelName,
    occupancy::{Change, Occupancy},
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{config::Config, metrics::Metrics};

/// Every kind of event, as `[[webhooks]] events` names them.
pub use crate::config::WEBHOOK_EVENTS as EVENT_KINDS;

/// What an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A user (a token's `sub`), over all their connections.
    User(Arc<str>),
    /// A channel, over all its subscriptions.
    Channel(ChannelName),
    /// A user in a channel's presence, over all their presence entries there.
    Member(ChannelName, Arc<str>),
}

/// A subject's up or down, as this node saw it (after its grace delay).
#[derive(Clone, Debug)]
pub struct Transition {
    /// What changed.
    pub subject: Subject,
    /// Up or down.
    pub change: Change,
    /// When, ms since the Unix epoch.
    pub time_ms: u64,
    /// A presence member's `info`, on its join.
    pub info: Option<serde_json::Value>,
}

/// One event, as receivers get it.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Unique per event; a retried event keeps it (receivers deduplicate by it).
    pub id: String,
    /// One of [`EVENT_KINDS`].
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// When the change happened, ms since the Unix epoch.
    pub time: u64,
    /// The user (user and presence events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The channel (channel and presence events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// A presence member's `info` (on `presence_join`, when its token has one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
}

/// An event as saved between a stop and a start (see [`Event`]).
#[derive(Deserialize)]
struct Saved {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    time: u64,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    info: Option<serde_json::Value>,
}

/// What holds each subject on this node, and the downs waiting for their grace delay.
pub struct Activity {
    held: Mutex<Occupancy<Subject>>,
    changes: mpsc::UnboundedSender<Transition>,
    /// Transitions sent and not yet turned into events.
    in_flight: AtomicUsize,
}

/// The node's webhooks: its activity and its endpoints.
pub struct Webhooks {
    activity: Arc<Activity>,
    endpoints: Vec<Arc<delivery::Endpoint>>,
    /// Where undelivered events are saved at shutdown (`data_dir`).
    saved: Option<PathBuf>,
}

// === impl Subject ===

impl Subject {
    /// The event kind of `change` to this subject.
    pub fn kind(&self, change: Change) -> &'static str {
        match (self, change) {
            (Self::User(_), Change::Up) => "user_online",
            (Self::User(_), Change::Down) => "user_offline",
            (Self::Channel(_), Change::Up) => "channel_occupied",
            (Self::Channel(_), Change::Down) => "channel_vacated",
            (Self::Member(..), Change::Up) => "presence_join",
            (Self::Member(..), Change::Down) => "presence_leave",
        }
    }
}

// === impl Event ===

impl Event {
    /// The event of `transition`, with `id`.
    pub fn new(id: String, transition: Transition) -> Self {
        let kind = transition.subject.kind(transition.change);
        let (user, channel) = match &transition.subject {
            Subject::User(user) => (Some(user.to_string()), None),
            Subject::Channel(channel) => (None, Some(channel.to_string())),
            Subject::Member(channel, user) => (Some(user.to_string()), Some(channel.to_string())),
        };
        Self { id, kind, time: transition.time_ms, user, channel, info: transition.info }
    }
}

// === impl Activity ===

impl Activity {
    /// One more holder of `subject` on this node (with a member's `info`).
    pub fn enter(&self, subject: &Subject, info: Option<&serde_json::Value>) {
        if self.held.lock().enter(subject) == Some(Change::Up) {
            let info = info.cloned();
            self.send(Transition { subject: subject.clone(), change: Change::Up, time_ms: crate::now_ms(), info });
        }
    }

    fn send(&self, transition: Transition) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if self.changes.send(transition).is_err() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// One holder of `subject` less on this node.
    pub fn leave(&self, subject: &Subject) {
        self.held.lock().leave(subject, crate::now_ms());
    }

    /// Reports the downs whose grace delay ended.
    fn tick(&self) {
        let now = crate::now_ms();
        let due = self.held.lock().due(now);
        for subject in due {
            self.send(Transition { subject, change: Change::Down, time_ms: now, info: None });
        }
    }

    /// Releases every subject at once (the node is stopping): each gets its down now.
    fn release_all(&self) {
        let now = crate::now_ms();
        let all = {
            let mut held = self.held.lock();
            let all: Vec<Subject> = held.keys().cloned().collect();
            *held = Occupancy::new(0);
            all
        };
        for subject in all {
            self.send(Transition { subject, change: Change::Down, time_ms: now, info: None });
        }
    }

    /// The subjects this node holds (or is within their grace delay of).
    fn held(&self) -> Vec<Subject> {
        self.held.lock().keys().cloned().collect()
    }
}

/// Starts the webhooks of `config` (none configured: nothing runs, and `None`): the grace
/// ticker, the deciding task and one delivery task per endpoint. `redis`: the Redis engine's
/// link, through which nodes decide who sends each event.
pub fn start(
    config: &Arc<Config>,
    metrics: &Arc<Metrics>,
    redis: Option<Arc<crate::cluster::Cluster>>,
) -> Option<Arc<Webhooks>> {
    if config.webhooks.is_empty() {
        return None;
    }
    let (changes, transitions) = mpsc::unbounded_channel();
    let held = Mutex::new(Occupancy::new(config.webhook_grace_ms));
    let activity = Arc::new(Activity { held, changes, in_flight: AtomicUsize::new(0) });
    let saved = config.data_dir.clone();
    let endpoints: Vec<Arc<delivery::Endpoint>> = config
        .webhooks
        .iter()
        .enumerate()
        .map(|(i, hook)| {
            let endpoint = delivery::Endpoint::start(hook.clone(), config.webhook_queue_max, metrics.clone());
            if let Some(dir) = &saved {
                for event in load(&saved_path(dir, i)) {
                    endpoint.queue(&Arc::new(event));
                }
            }
            endpoint
        })
        .collect();
    let ticker = Arc::downgrade(&activity);
    let every = std::time::Duration::from_millis((config.webhook_grace_ms / 4).clamp(50, 1000));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let Some(activity) = ticker.upgrade() else { return };
            activity.tick();
        }
    });
    let decider = match redis {
        Some(cluster) => Decider::Redis(cluster::Decider::start(cluster, Arc::downgrade(&activity))),
        None => Decider::Local,
    };
    tokio::spawn(decide(transitions, decider, endpoints.clone(), Arc::clone(&activity)));
    Some(Arc::new(Webhooks { activity, endpoints, saved }))
}

// === impl Webhooks ===

impl Webhooks {
    /// Where connections report who is here.
    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// Stops at shutdown, once the connections are closed: every subject held gets its down
    /// now, the endpoints get up to `within` to deliver, and with `data_dir` what is left is
    /// saved for the next start.
    pub async fn stop(&self, within: Duration) {
        self.activity.release_all();
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline
            && (self.activity.in_flight.load(Ordering::Acquire) > 0 || self.endpoints.iter().any(|e| !e.is_idle()))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let Some(dir) = &self.saved else { return };
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            let left = endpoint.take_all();
            let path = saved_path(dir, i);
            if left.is_empty() {
                continue;
            }
            let events: Vec<&Event> = left.iter().map(|e| &**e).collect();
            match serde_json::to_vec(&events).map(|json| std::fs::write(&path, json)) {
                Ok(Ok(())) => {
                    tracing::info!(events = left.len(), path = %path.display(), "saved undelivered webhook events");
                }
                Ok(Err(e)) => tracing::warn!(path = %path.display(), error = %e, "could not save webhook events"),
                Err(e) => tracing::warn!(error = %e, "could not encode webhook events"),
            }
        }
    }
}

/// Where endpoint `index`'s undelivered events wait in `dir` between a stop and a start.
fn saved_path(dir: &std::path::Path, index: usize) -> PathBuf {
    dir.join(format!("webhooks-{index}.json"))
}

/// The events saved at `path` (removing the file), oldest first; none when there is no file.
fn load(path: &std::path::Path) -> Vec<Event> {
    let Ok(json) = std::fs::read(path) else { return Vec::new() };
    let _ = std::fs::remove_file(path);
    let saved: Vec<Saved> = serde_json::from_slice(&json).unwrap_or_else(|e| {
        tracing::warn!(path = %path.display(), error = %e, "saved webhook events are unreadable; dropped");
        Vec::new()
    });
    saved
        .into_iter()
        .filter_map(|s| {
            let kind = EVENT_KINDS.into_iter().find(|k| *k == s.kind)?;
            Some(Event { id: s.id, kind, time: s.time, user: s.user, channel: s.channel, info: s.info })
        })
        .collect()
}

/// Where a node's ups and downs become events.
enum Decider {
    /// One node: each is an event.
    Local,
    /// Several nodes on Redis: only the first up and the last down of a subject over all
    /// nodes.
    Redis(cluster::Decider),
}

/// Turns the node's transitions into events (see [`Decider`]) and hands each to the endpoints
/// that want it.
async fn decide(
    mut transitions: mpsc::UnboundedReceiver<Transition>,
    decider: Decider,
    endpoints: Vec<Arc<delivery::Endpoint>>,
    activity: Arc<Activity>,
) {
    // This node's part of every event id.
    let node = crate::ids::random_id(8);
    let sequence = AtomicU64::new(0);
    while let Some(transition) = transitions.recv().await {
        let sends = match &decider {
            Decider::Local => true,
            Decider::Redis(redis) => redis.decide(&transition).await,
        };
        if sends {
            let id = format!("{node}-{}", sequence.fetch_add(1, Ordering::Relaxed) + 1);
            let event = Arc::new(Event::new(id, transition));
            for endpoint in &endpoints {
                endpoint.queue(&event);
            }
        }
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
