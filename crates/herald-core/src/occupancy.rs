//! Who is here: counts of what holds a key (a user's connections, a channel's subscriptions, a
//! user's presence in a channel) and the moments a key becomes held and stops being held, with
//! a grace delay on the second, so that a reconnect or a transport switch is not a leave and a
//! join. No clock: callers pass the time.
//!
//! Guarantees:
//! - [`Occupancy::enter`] reports [`Change::Up`] exactly when the key was not held and no
//!   [`Change::Down`] of it is pending: ups and downs of a key alternate, starting with an up;
//! - [`Occupancy::leave`] of the last holder reports nothing at once: the key's down is due
//!   `grace_ms` later ([`Occupancy::due`]), unless it is entered again before that, which
//!   cancels it and reports nothing;
//! - memory is one entry per held key, plus one per pending down.

use std::{collections::HashMap, hash::Hash};

/// A key's change, as reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The key became held.
    Up,
    /// The key stopped being held (after the grace delay).
    Down,
}

/// How many hold each key, and the downs waiting for their grace delay. The zero value
/// (`Occupancy::new(0)`) reports downs at once on [`Occupancy::due`].
#[derive(Debug)]
pub struct Occupancy<K> {
    grace_ms: u64,
    held: HashMap<K, Holders>,
}

#[derive(Debug)]
struct Holders {
    count: usize,
    /// When the last holder left: the down is due at this plus the grace.
    left_at: Option<u64>,
}

// === impl Occupancy ===

impl<K: Hash + Eq + Clone> Occupancy<K> {
    /// No key held; downs wait `grace_ms`.
    pub fn new(grace_ms: u64) -> Self {
        Self { grace_ms, held: HashMap::new() }
    }

    /// One more holder of `key`: [`Change::Up`] when that makes it held (no down pending).
    pub fn enter(&mut self, key: &K) -> Option<Change> {
        match self.held.get_mut(key) {
            Some(holders) => {
                holders.count += 1;
                holders.left_at = None;
                None
            }
            None => {
                self.held.insert(key.clone(), Holders { count: 1, left_at: None });
                Some(Change::Up)
            }
        }
    }

    /// One holder of `key` less, at `now_ms`; the last one starts the grace delay. A key not
    /// held is ignored.
    pub fn leave(&mut self, key: &K, now_ms: u64) {
        if let Some(holders) = self.held.get_mut(key)
            && holders.count > 0
        {
            holders.count -= 1;
            if holders.count == 0 {
                holders.left_at = Some(now_ms);
            }
        }
    }

    /// The keys whose grace delay ended by `now_ms`: they are no longer held, and each is
    /// reported ([`Change::Down`]) once.
    pub fn due(&mut self, now_ms: u64) -> Vec<K> {
        let grace = self.grace_ms;
        let mut down = Vec::new();
        self.held.retain(|key, holders| match holders.left_at {
            Some(left) if now_ms.saturating_sub(left) >= grace => {
                down.push(key.clone());
                false
            }
            _ => true,
        });
        down
    }

    /// Whether `key` is held (or within its grace delay).
    pub fn is_held(&self, key: &K) -> bool {
        self.held.contains_key(key)
    }

    /// The keys held or within their grace delay.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.held.keys()
    }

    /// How many keys are held or within their grace delay.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_holder_is_an_up_and_the_last_a_down_after_the_grace() {
        let mut users = Occupancy::new(3_000);
        assert_eq!(users.enter(&"ada"), Some(Change::Up));
        assert_eq!(users.enter(&"ada"), None, "a second tab");
        users.leave(&"ada", 1_000);
        users.leave(&"ada", 2_000);
        assert_eq!(users.due(4_999), Vec::<&str>::new(), "within the grace");
        assert_eq!(users.due(5_000), ["ada"]);
        assert_eq!(users.due(9_000), Vec::<&str>::new(), "once");
        assert_eq!(users.enter(&"ada"), Some(Change::Up), "back later: up again");
    }

    #[test]
    fn a_reconnect_within_the_grace_is_neither_a_down_nor_an_up() {
        let mut users = Occupancy::new(3_000);
        users.enter(&"ada");
        users.leave(&"ada", 1_000);
        assert_eq!(users.enter(&"ada"), None, "a transport switch");
        assert!(users.due(10_000).is_empty());
        users.leave(&"ada", 10_000);
        assert_eq!(users.due(13_000), ["ada"]);
        assert!(users.is_empty());
    }

    #[test]
    fn a_leave_without_an_enter_is_ignored() {
        let mut channels = Occupancy::new(0);
        channels.leave(&"c", 0);
        assert!(channels.due(0).is_empty());
        channels.enter(&"c");
        channels.leave(&"c", 0);
        channels.leave(&"c", 0);
        assert_eq!(channels.due(0), ["c"]);
        assert_eq!(channels.enter(&"c"), Some(Change::Up));
    }
}
