//! Who may do what on a channel: a namespace's rules applied to a client's identity (or its
//! absence). Pure decisions, the same for every transport.

use crate::Identity;

/// The permission-related options of a namespace.
///
/// The zero value ([`Default`]) is Herald's secure default: anyone may subscribe and read
/// history, only a token that grants it may publish, presence and join/leave pushes are off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamespaceRules {
    /// Whether a client may subscribe (and read history) without a token granting the channel.
    /// When false, the namespace's channels are visible only to tokens that grant them.
    pub anonymous_subscribe: bool,
    /// Whether any client, with or without a token, may publish. Default false.
    pub anonymous_publish: bool,
    /// Whether clients may publish at all (with a token's `publish` grant, or anonymously where
    /// allowed). False leaves publishing to the server API. Default true.
    pub client_publish: bool,
    /// Whether subscribers can see who else is subscribed. Default false.
    pub presence: bool,
    /// Whether subscribers get `join` / `leave` pushes (needs `presence`). Default false.
    pub join_leave: bool,
}

/// What a client asks to do with a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Receive its messages (any transport).
    Subscribe,
    /// Read its history.
    History,
    /// Publish to it.
    Publish,
    /// List who is subscribed.
    Presence,
}

/// Why an action was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// A client without a token asked for what needs one.
    #[error("{0}: this needs a token that grants it")]
    TokenRequired(String),
    /// The client's token does not grant it, or the namespace forbids it.
    #[error("{0}")]
    Forbidden(String),
    /// The namespace has the feature (presence) turned off.
    #[error("{0}")]
    Disabled(String),
}

impl Default for NamespaceRules {
    fn default() -> Self {
        Self {
            anonymous_subscribe: true,
            anonymous_publish: false,
            client_publish: true,
            presence: false,
            join_leave: false,
        }
    }
}

// === impl NamespaceRules ===

impl NamespaceRules {
    /// Decides whether a client with `identity` (`None`: no token) may do `action` on
    /// `channel`, a channel of this namespace.
    pub fn check(&self, identity: Option<&Identity>, channel: &str, action: Action) -> Result<(), Denied> {
        match action {
            Action::Subscribe | Action::History => {
                let granted = identity.is_some_and(|i| i.may_subscribe(channel));
                self.grant(granted || self.anonymous_subscribe, identity, || {
                    format!("subscribing to {channel} is not granted")
                })
            }
            Action::Publish => {
                if !self.client_publish {
                    return Err(Denied::Forbidden(format!(
                        "clients may not publish to {channel}; publish through the server API"
                    )));
                }
                let granted = identity.is_some_and(|i| i.may_publish(channel));
                self.grant(granted || self.anonymous_publish, identity, || {
                    format!("publishing to {channel} is not granted")
                })
            }
            Action::Presence => {
                if !self.presence {
                    return Err(Denied::Disabled(format!("presence is off for {channel}'s namespace")));
                }
                self.check(identity, channel, Action::Subscribe)
            }
        }
    }

    fn grant(&self, allowed: bool, identity: Option<&Identity>, what: impl FnOnce() -> String) -> Result<(), Denied> {
        match (allowed, identity) {
            (true, _) => Ok(()),
            (false, None) => Err(Denied::TokenRequired(what())),
            (false, Some(_)) => Err(Denied::Forbidden(what())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{Claims, KeyConfig, Verifier, mint_hs256};

    const SECRET: &str = "a-development-secret-of-some-length";

    fn identity(channels: &[&str], publish: &[&str]) -> Identity {
        let claims = Claims {
            sub: "ada".into(),
            exp: 2_000_000_000,
            channels: channels.iter().map(|s| s.to_string()).collect(),
            publish: publish.iter().map(|s| s.to_string()).collect(),
            info: None,
            subs: Vec::new(),
        };
        let v =
            Verifier::new(&KeyConfig { hs256_secret: Some(SECRET.into()), ..KeyConfig::default() }).unwrap().unwrap();
        v.verify(&mint_hs256(SECRET, &claims).unwrap(), 1_900_000_000).unwrap()
    }

    #[test]
    fn the_default_lets_anyone_subscribe_and_only_granted_tokens_publish() {
        let rules = NamespaceRules::default();
        let ada = identity(&[], &["chat:*"]);
        assert_eq!(rules.check(None, "news", Action::Subscribe), Ok(()));
        assert_eq!(rules.check(None, "news", Action::History), Ok(()));
        assert!(matches!(rules.check(None, "chat:1", Action::Publish), Err(Denied::TokenRequired(_))));
        assert_eq!(rules.check(Some(&ada), "chat:1", Action::Publish), Ok(()));
        assert!(matches!(rules.check(Some(&ada), "news", Action::Publish), Err(Denied::Forbidden(_))));
        assert!(matches!(rules.check(Some(&ada), "chat:1", Action::Presence), Err(Denied::Disabled(_))));
    }

    #[test]
    fn a_private_namespace_is_visible_only_to_granted_tokens() {
        let rules = NamespaceRules { anonymous_subscribe: false, presence: true, ..NamespaceRules::default() };
        let ada = identity(&["user:ada"], &[]);
        assert!(matches!(rules.check(None, "user:ada", Action::Subscribe), Err(Denied::TokenRequired(_))));
        assert_eq!(rules.check(Some(&ada), "user:ada", Action::Subscribe), Ok(()));
        assert_eq!(rules.check(Some(&ada), "user:ada", Action::Presence), Ok(()));
        for action in [Action::Subscribe, Action::History, Action::Presence] {
            assert!(matches!(rules.check(Some(&ada), "user:bob", action), Err(Denied::Forbidden(_))), "{action:?}");
        }
    }

    #[test]
    fn anonymous_publish_opens_a_namespace_and_client_publish_closes_it() {
        let open = NamespaceRules { anonymous_publish: true, ..NamespaceRules::default() };
        assert_eq!(open.check(None, "demo:chat", Action::Publish), Ok(()));
        let closed = NamespaceRules { anonymous_publish: true, client_publish: false, ..NamespaceRules::default() };
        let ada = identity(&[], &["*"]);
        assert!(matches!(closed.check(None, "feed", Action::Publish), Err(Denied::Forbidden(_))));
        assert!(matches!(closed.check(Some(&ada), "feed", Action::Publish), Err(Denied::Forbidden(_))));
    }
}
