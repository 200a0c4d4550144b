//! Deciding through Redis which node sends each event ([`crate::cluster::occupancy`]): a
//! node's up of a subject is an event only when no other node holds it, its down only when no
//! other node still does. The node renews its leases on what it holds every [`RENEW_EVERY`].

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use herald_core::occupancy::Change;

use super::{Activity, Subject, Transition};
use crate::cluster::{Cluster, occupancy::Occupy};

/// How long a node's hold lasts without renewal: a node that dies lets go after it.
const LEASE: Duration = Duration::from_secs(60);
/// How often a node renews its holds.
const RENEW_EVERY: Duration = Duration::from_secs(20);
/// Tries of one decision before the node sends the event on its own word (at least once).
const TRIES: usize = 3;

/// The Redis side of [`super::decide`].
pub(super) struct Decider {
    cluster: Arc<Cluster>,
}

// === impl Decider ===

impl Decider {
    /// The decider, renewing the leases of what `activity` holds while it lives.
    pub(super) fn start(cluster: Arc<Cluster>, activity: Weak<Activity>) -> Self {
        let renewing = Arc::clone(&cluster);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RENEW_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(held) = activity.upgrade().map(|a| a.held()) else { return };
                for subject in held {
                    let (tag, rest) = key(&subject);
                    let _ = renewing.occupy(&tag, &rest, Occupy::Renew, lease_ms()).await;
                }
            }
        });
        Self { cluster }
    }

    /// Whether this node sends the event of `transition`: it was the subject's first hold or
    /// last release over all nodes. When Redis cannot say, yes (an event twice rather than
    /// none).
    pub(super) async fn decide(&self, transition: &Transition) -> bool {
        let op = match transition.change {
            Change::Up => Occupy::Up,
            Change::Down => Occupy::Down,
        };
        let (tag, rest) = key(&transition.subject);
        for _ in 0..TRIES {
            match self.cluster.occupy(&tag, &rest, op, lease_ms()).await {
                Ok(decided) => return decided,
                Err(e) => {
                    tracing::debug!(error = %e.message, "a webhook decision failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        tracing::warn!(
            kind = transition.subject.kind(transition.change),
            "Redis could not decide a webhook event; this node sends it"
        );
        true
    }
}

fn lease_ms() -> u64 {
    LEASE.as_millis() as u64
}

/// A subject's key in Redis: its hash tag and the rest (`{o:u:<user>}`, `{<channel>}:o:c`,
/// `{<channel>}:o:m:<user>`).
fn key(subject: &Subject) -> (String, String) {
    match subject {
        Subject::User(user) => (format!("o:u:{user}"), String::new()),
        Subject::Channel(channel) => (channel.to_string(), ":o:c".into()),
        Subject::Member(channel, user) => (channel.to_string(), format!(":o:m:{user}")),
    }
}
