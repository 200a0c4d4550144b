//! JWT verification and minting.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode};
use serde::{Deserialize, Serialize};

use crate::Pattern;

/// Keys tokens may be signed with. The zero value has none: no token verifies.
#[derive(Clone, Debug, Default)]
pub struct KeyConfig {
    /// The shared secret for HS256.
    pub hs256_secret: Option<String>,
    /// An RSA public key (PEM) for RS256.
    pub rs256_public_key_pem: Option<String>,
    /// An EC P-256 public key (PEM) for ES256.
    pub es256_public_key_pem: Option<String>,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The token's `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// The token is malformed, signed with another key or algorithm, or misses a claim.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A configured key could not be read.
    #[error("bad key in configuration: {0}")]
    BadKey(String),
}

/// A token's claims, as Herald reads and mints them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Patterns of channels the user may subscribe to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// Patterns of channels the user may publish to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
    /// Public data about the user (shown in presence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
    /// Channels (exact names) the connection is subscribed to without asking — server-side
    /// subscriptions, e.g. `user:42` for the user's own notifications. Naming one also grants
    /// subscribing to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subs: Vec<String>,
}

/// Who a verified token says the client is, and what it may do.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// The user id (`sub`).
    pub user: String,
    /// When the token expires, seconds since the Unix epoch.
    pub expires_at: u64,
    /// Public data about the user.
    pub info: Option<serde_json::Value>,
    subscribe: Vec<Pattern>,
    publish: Vec<Pattern>,
    /// Server-side subscriptions (`subs`).
    subs: Vec<String>,
}

/// Checks tokens against the configured keys.
pub struct Verifier {
    keys: Vec<(Algorithm, DecodingKey)>,
}

// === impl Identity ===

impl Identity {
    /// Whether the token grants subscribing to `channel`.
    pub fn may_subscribe(&self, channel: &str) -> bool {
        self.subs.iter().any(|c| c == channel) || self.subscribe.iter().any(|p| p.matches(channel))
    }

    /// An identity the application's backend vouched for (a connect hook's answer), not a
    /// token: `user`, its `info`, and its server-side subscriptions `subs` (which it may
    /// subscribe to); it grants nothing else by itself, and does not expire.
    pub fn granted(user: String, info: Option<serde_json::Value>, subs: Vec<String>) -> Self {
        Self { user, expires_at: u64::MAX, info, subscribe: Vec::new(), publish: Vec::new(), subs }
    }

    /// This identity with `more` server-side subscriptions.
    pub fn with_subs(mut self, more: Vec<String>) -> Self {
        for channel in more {
            if !self.subs.contains(&channel) {
                self.subs.push(channel);
            }
        }
        self
    }

    /// The channels the connection is subscribed to without asking (`subs`).
    pub fn subs(&self) -> &[String] {
        &self.subs
    }

    /// Whether the token grants publishing to `channel`.
    pub fn may_publish(&self, channel: &str) -> bool {
        self.publish.iter().any(|p| p.matches(channel))
    }

    /// Whether the token has expired at `now` (seconds since the Unix epoch).
    pub fn expired(&self, now: u64) -> bool {
        now >= self.expires_at
    }
}

// === impl Verifier ===

impl Verifier {
    /// A verifier for the configured keys; `Ok(None)` when none is configured.
    pub fn new(config: &KeyConfig) -> Result<Option<Self>, AuthError> {
        let bad = |e: jsonwebtoken::errors::Error| AuthError::BadKey(e.to_string());
        let mut keys = Vec::new();
        if let Some(secret) = config.hs256_secret.as_deref() {
            if secret.len() < 16 {
                return Err(AuthError::BadKey("the HS256 secret must be at least 16 bytes".into()));
            }
            keys.push((Algorithm::HS256, DecodingKey::from_secret(secret.as_bytes())));
        }
        if let Some(pem) = config.rs256_public_key_pem.as_deref() {
            keys.push((Algorithm::RS256, DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(bad)?));
        }
        if let Some(pem) = config.es256_public_key_pem.as_deref() {
            keys.push((Algorithm::ES256, DecodingKey::from_ec_pem(pem.as_bytes()).map_err(bad)?));
        }
        Ok((!keys.is_empty()).then_some(Self { keys }))
    }

    /// Verifies `token` at `now` (seconds since the Unix epoch): the signature with the key of
    /// the token's algorithm (only configured algorithms are accepted), `exp` in the future
    /// and `sub` present.
    pub fn verify(&self, token: &str, now: u64) -> Result<Identity, AuthError> {
        let invalid = |e: jsonwebtoken::errors::Error| AuthError::Invalid(e.to_string());
        let header = decode_header(token).map_err(invalid)?;
        let (algorithm, key) = self
            .keys
            .iter()
            .find(|(algorithm, _)| *algorithm == header.alg)
            .ok_or_else(|| AuthError::Invalid(format!("{:?} tokens are not accepted here", header.alg)))?;
        let mut validation = Validation::new(*algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Expiry is checked below against the caller's clock, to the second.
        validation.validate_exp = false;
        let claims = decode::<Claims>(token, key, &validation).map_err(invalid)?.claims;
        if claims.sub.is_empty() {
            return Err(AuthError::Invalid("sub is empty".into()));
        }
        let identity = Identity {
            user: claims.sub,
            expires_at: claims.exp,
            info: claims.info,
            subscribe: claims.channels.iter().map(|p| Pattern::new(p)).collect(),
            publish: claims.publish.iter().map(|p| Pattern::new(p)).collect(),
            subs: claims.subs,
        };
        if identity.expired(now) {
            return Err(AuthError::Expired);
        }
        Ok(identity)
    }
}

/// Signs `claims` with the HS256 `secret` (development tokens: `herald token`).
pub fn mint_hs256(secret: &str, claims: &Claims) -> Result<String, AuthError> {
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .map_err(|e| AuthError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const SECRET: &str = "a-development-secret-of-some-length";
    const NOW: u64 = 1_800_000_000;

    fn claims() -> Claims {
        Claims {
            sub: "ada".into(),
            exp: NOW + 3600,
            channels: vec!["chat:*".into(), "user:ada".into()],
            publish: vec!["chat:*".into()],
            info: Some(serde_json::json!({ "name": "Ada" })),
            subs: vec!["user:ada".into()],
        }
    }

    fn verifier() -> Verifier {
        Verifier::new(&KeyConfig { hs256_secret: Some(SECRET.into()), ..KeyConfig::default() }).unwrap().unwrap()
    }

    #[test]
    fn a_minted_token_verifies_and_grants_its_patterns() {
        let token = mint_hs256(SECRET, &claims()).unwrap();
        let identity = verifier().verify(&token, NOW).unwrap();
        assert_eq!(identity.user, "ada");
        assert_eq!(identity.info, Some(serde_json::json!({ "name": "Ada" })));
        assert!(identity.may_subscribe("chat:lobby") && identity.may_subscribe("user:ada"));
        assert!(!identity.may_subscribe("user:bob") && !identity.may_subscribe("admin"));
        assert!(identity.may_publish("chat:lobby") && !identity.may_publish("user:ada"));
    }

    #[test]
    fn a_server_side_subscription_also_grants_subscribing_to_it() {
        let claims = Claims { channels: Vec::new(), subs: vec!["user:ada".into()], ..claims() };
        let identity = verifier().verify(&mint_hs256(SECRET, &claims).unwrap(), NOW).unwrap();
        assert_eq!(identity.subs(), ["user:ada"]);
        assert!(identity.may_subscribe("user:ada") && !identity.may_subscribe("user:ada2"), "exact names");
    }

    #[test]
    fn expired_foreign_and_broken_tokens_are_refused() {
        let v = verifier();
        let token = mint_hs256(SECRET, &claims()).unwrap();
        assert_eq!(v.verify(&token, NOW + 3600), Err(AuthError::Expired));
        let foreign = mint_hs256("another-secret-of-enough-length", &claims()).unwrap();
        assert!(matches!(v.verify(&foreign, NOW), Err(AuthError::Invalid(_))));
        assert!(matches!(v.verify("not.a.token", NOW), Err(AuthError::Invalid(_))));
        assert!(matches!(v.verify("", NOW), Err(AuthError::Invalid(_))));
        let mut tampered = token.clone();
        tampered.insert(token.find('.').unwrap() + 5, 'x');
        assert!(matches!(v.verify(&tampered, NOW), Err(AuthError::Invalid(_))));
        let anonymous = mint_hs256(SECRET, &Claims { sub: String::new(), ..claims() }).unwrap();
        assert!(matches!(v.verify(&anonymous, NOW), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn keys_are_checked_when_configured() {
        assert!(Verifier::new(&KeyConfig::default()).unwrap().is_none(), "no keys: no verifier");
        let short = KeyConfig { hs256_secret: Some("short".into()), ..KeyConfig::default() };
        assert!(matches!(Verifier::new(&short), Err(AuthError::BadKey(_))));
        let garbage = KeyConfig { es256_public_key_pem: Some("not a pem".into()), ..KeyConfig::default() };
        assert!(matches!(Verifier::new(&garbage), Err(AuthError::BadKey(_))));
    }

    const RS256_PRIVATE: &str = include_str!("../testdata/rs256-private.pem");
    const RS256_PUBLIC: &str = include_str!("../testdata/rs256-public.pem");
    const ES256_PRIVATE: &str = include_str!("../testdata/es256-private.pem");
    const ES256_PUBLIC: &str = include_str!("../testdata/es256-public.pem");

    fn sign(algorithm: Algorithm, key: &EncodingKey) -> String {
        encode(&Header::new(algorithm), &claims(), key).unwrap()
    }

    #[test]
    fn rs256_and_es256_tokens_verify_with_their_public_keys() {
        let keys = KeyConfig {
            hs256_secret: None,
            rs256_public_key_pem: Some(RS256_PUBLIC.into()),
            es256_public_key_pem: Some(ES256_PUBLIC.into()),
        };
        let v = Verifier::new(&keys).unwrap().unwrap();
        let rs = sign(Algorithm::RS256, &EncodingKey::from_rsa_pem(RS256_PRIVATE.as_bytes()).unwrap());
        let es = sign(Algorithm::ES256, &EncodingKey::from_ec_pem(ES256_PRIVATE.as_bytes()).unwrap());
        assert_eq!(v.verify(&rs, NOW).unwrap().user, "ada");
        assert_eq!(v.verify(&es, NOW).unwrap().user, "ada");
        // An HS256 token is refused by a verifier without an HS256 secret (no algorithm
        // confusion with a public key used as an HMAC secret).
        let hs = mint_hs256(SECRET, &claims()).unwrap();
        assert!(matches!(v.verify(&hs, NOW), Err(AuthError::Invalid(m)) if m.contains("HS256")));
    }
}
