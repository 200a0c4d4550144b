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

mod cluster;
mod delivery;

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use herald_core::{
    ChannelName,
    occupancy::{Change, Occupancy},
};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::{config::Config, metrics::Metrics, registry::Registry};

/// Every kind of event, as `[[webhooks]] events` names them.
pub const EVENT_KINDS: [&str; 6] =
    ["user_online", "user_offline", "channel_occupied", "channel_vacated", "presence_join", "presence_leave"];

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

/// What holds each subject on this node, and the downs waiting for their grace delay.
pub struct Activity {
    held: Mutex<Occupancy<Subject>>,
    changes: mpsc::UnboundedSender<Transition>,
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
            let transition =
                Transition { subject: subject.clone(), change: Change::Up, time_ms: crate::now_ms(), info };
            let _ = self.changes.send(transition);
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
            let _ = self.changes.send(Transition { subject, change: Change::Down, time_ms: now, info: None });
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
    registry: &Arc<Registry>,
    redis: Option<Arc<crate::cluster::Cluster>>,
) -> Option<Arc<Activity>> {
    if config.webhooks.is_empty() {
        return None;
    }
    let (changes, transitions) = mpsc::unbounded_channel();
    let activity = Arc::new(Activity { held: Mutex::new(Occupancy::new(config.webhook_grace_ms)), changes });
    let endpoints: Vec<Arc<delivery::Endpoint>> = config
        .webhooks
        .iter()
        .map(|hook| delivery::Endpoint::start(hook.clone(), config.webhook_queue_max, metrics.clone(), registry))
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
    tokio::spawn(decide(transitions, decider, endpoints));
    Some(activity)
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
) {
    let node = crate::broker::new_epoch();
    let sequence = AtomicU64::new(0);
    while let Some(transition) = transitions.recv().await {
        let sends = match &decider {
            Decider::Local => true,
            Decider::Redis(redis) => redis.decide(&transition).await,
        };
        if !sends {
            continue;
        }
        let id = format!("{node}-{}", sequence.fetch_add(1, Ordering::Relaxed) + 1);
        let event = Arc::new(Event::new(id, transition));
        for endpoint in &endpoints {
            endpoint.queue(&event);
        }
    }
}
