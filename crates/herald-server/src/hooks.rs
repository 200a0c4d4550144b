//! Backend hooks: HTTP endpoints of the application that Herald asks before it accepts a
//! connection (`[hooks] connect`), a subscription (`subscribe`) or a client's publish
//! (`publish`) — authorization without JWTs, decided by the backend that knows its users.
//!
//! Each hook is a `POST` of a JSON question; a 2xx answer with `{"allow":true,…}` allows (and
//! may change the outcome), `{"allow":false,"reason"?}` refuses with `403 forbidden` (a
//! WebSocket command: its error reply). An endpoint that fails (no 2xx, a body that is not the
//! answer, no answer within `timeout_ms`) gets `on_failure`: `"refuse"` (the default) or
//! `"allow"`.
//!
//! - connect: `{"transport","ip","headers":{…forward_headers},"user"?}` (the token's user,
//!   when a token came) → `{"allow","user"?,"info"?,"channels"?}`: the connection is that user,
//!   shown with that `info` in presence, subscribed to `channels` without asking (server-side
//!   subscriptions);
//! - subscribe: `{"transport","user"?,"channel"}` → `{"allow"}`. Asked for every channel the
//!   connection's server-side subscriptions do not name; an allow stands in for the
//!   namespace's rules;
//! - publish: `{"user"?,"channel","data","event"?}` → `{"allow","data"?}`: the data to
//!   broadcast instead (a client's publish, over a WebSocket or `POST /publish`); its allow
//!   stands in for the namespace's rules.
//!
//! Answers are cached for `cache_secs` (0: never): a connect answer by the forwarded headers
//! and the token, so that a long poll does not ask on every poll; a subscribe answer by user
//! (or, anonymous, the connect answer's key) and channel.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash},
    net::IpAddr,
    sync::Arc,
    time::Duration,
};

use herald_auth::Identity;
use herald_core::{ChannelName, ErrorCode, ProtocolError};
use herald_http1::RequestHeaders;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Value, json, value::RawValue};

use crate::config::HooksConfig;

/// Most answers kept in the cache; past it the expired ones go, then all.
const CACHE_MAX: usize = 100_000;

/// The configured hooks.
pub struct Hooks {
    config: HooksConfig,
    client: reqwest::Client,
    cache: Mutex<HashMap<u64, (Cached, u64)>>,
    hasher: foldhash::quality::RandomState,
}

/// A cached answer.
#[derive(Clone)]
enum Cached {
    Connect(Option<Arc<Identity>>),
    Subscribe(bool),
}

/// What a connect hook decided: who the connection is (`None`: anonymous), and the key its
/// subscribe answers are cached under.
pub struct Admitted {
    /// The connection's identity.
    pub identity: Option<Identity>,
    /// Who the connection is to the subscribe hook's cache.
    pub key: u64,
}

#[derive(Deserialize)]
struct Answer {
    allow: bool,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    info: Option<Value>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
}

// === impl Hooks ===

impl Hooks {
    /// The hooks of `config`, `None` when none is configured.
    pub fn new(config: &HooksConfig) -> Option<Arc<Self>> {
        if config.connect.is_none() && config.subscribe.is_none() && config.publish.is_none() {
            return None;
        }
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let client = reqwest::Client::builder().timeout(timeout).build().ok()?;
        Some(Arc::new(Self {
            config: config.clone(),
            client,
            cache: Mutex::new(HashMap::new()),
            hasher: foldhash::quality::RandomState::default(),
        }))
    }

    /// Asks the connect hook (when configured) about a connection over `transport` (`ws`,
    /// `sse`, `poll`, or `http` for the client routes) from `ip`
    /// with request `headers` and the token's `identity`. Without a connect hook, the token's
    /// identity stands.
    pub async fn connect(
        &self,
        transport: &'static str,
        ip: IpAddr,
        headers: &impl RequestHeaders,
        identity: Option<Identity>,
    ) -> Result<Admitted, ProtocolError> {
        if self.config.connect.is_none() && self.config.subscribe.is_none() {
            // Only a publish hook: nothing to ask, no subscribe answer to cache.
            return Ok(Admitted { identity, key: 0 });
        }
        let forwarded: serde_json::Map<String, Value> = self
            .config
            .forward_headers
            .iter()
            .filter_map(|name| {
                let header = axum::http::HeaderName::from_bytes(name.as_bytes()).ok()?;
                let value = headers.first_str(&header)?;
                Some((name.to_ascii_lowercase(), Value::String(value.to_string())))
            })
            .collect();
        let user = identity.as_ref().map(|i| i.user.clone());
        let key = self.hash(&("connect", &forwarded, &user));
        let Some(url) = &self.config.connect else { return Ok(Admitted { identity, key }) };
        if let Some(Cached::Connect(cached)) = self.cached(key) {
            return Ok(Admitted { identity: cached.map(|i| (*i).clone()), key });
        }
        let question = json!({ "transport": transport, "ip": ip.to_string(), "headers": forwarded, "user": user });
        let answer = self.ask("connect", url, &question).await?;
        let identity = match (answer.user, identity) {
            (Some(user), _) => Some(Identity::granted(user, answer.info, answer.channels)),
            (None, Some(token)) => Some(token.with_subs(answer.channels)),
            (None, None) if !answer.channels.is_empty() => {
                return Err(ProtocolError::new(ErrorCode::Internal, "the connect hook named channels but no user"));
            }
            (None, None) => None,
        };
        self.remember(key, Cached::Connect(identity.clone().map(Arc::new)));
        Ok(Admitted { identity, key })
    }

    /// Asks the subscribe hook (when configured) whether the connection `admitted` under `key`
    /// as `identity` may subscribe to `channel`: `Ok(Some(true))` allows, an error refuses,
    /// `Ok(None)` leaves it to the namespace's rules (no subscribe hook, or a channel the
    /// connection's server-side subscriptions name).
    pub async fn subscribe(
        &self,
        transport: &'static str,
        key: u64,
        identity: Option<&Identity>,
        channel: &ChannelName,
    ) -> Result<Option<bool>, ProtocolError> {
        let Some(url) = &self.config.subscribe else { return Ok(None) };
        if identity.is_some_and(|i| i.subs().iter().any(|c| c == channel.as_str())) {
            return Ok(None);
        }
        let user = identity.map(|i| i.user.as_str());
        let cache_key = self.hash(&("subscribe", key, user, channel.as_str()));
        if let Some(Cached::Subscribe(allowed)) = self.cached(cache_key) {
            return allowed.then_some(Some(true)).ok_or_else(|| refused("subscribe", None));
        }
        let question = json!({ "transport": transport, "user": user, "channel": channel.as_str() });
        let answer = self.ask("subscribe", url, &question).await;
        self.remember(cache_key, Cached::Subscribe(answer.is_ok()));
        answer.map(|_| Some(true))
    }

    /// Whether a subscribe hook is configured.
    pub fn asks_subscribe(&self) -> bool {
        self.config.subscribe.is_some()
    }

    /// Asks the publish hook (when configured) about a client's publish of `data` (`event`)
    /// to `channel` as `identity`: the data to broadcast (`None`: as sent), or the refusal.
    pub async fn publish(
        &self,
        identity: Option<&Identity>,
        channel: &ChannelName,
        data: &RawValue,
        event: Option<&str>,
    ) -> Result<Option<Box<RawValue>>, ProtocolError> {
        let Some(url) = &self.config.publish else { return Ok(None) };
        let question = json!({ "user": identity.map(|i| i.user.as_str()), "channel": channel.as_str(), "data": data, "event": event });
        Ok(self.ask("publish", url, &question).await?.data)
    }

    /// Whether a publish hook is configured.
    pub fn asks_publish(&self) -> bool {
        self.config.publish.is_some()
    }

    /// POSTs `question` to the `hook` at `url`; the answer when it allows, else the refusal
    /// (or `on_failure`'s outcome when the hook fails).
    async fn ask(&self, hook: &str, url: &str, question: &Value) -> Result<Answer, ProtocolError> {
        let failed = |why: String| {
            tracing::warn!(hook, url, error = %why, on_failure = %self.config.on_failure, "a hook failed");
            if self.config.on_failure == "allow" {
                Ok(Answer { allow: true, reason: None, user: None, info: None, channels: Vec::new(), data: None })
            } else {
                Err(refused(hook, Some(format!("the {hook} hook failed: {why}"))))
            }
        };
        let response = match self.client.post(url).json(question).send().await {
            Ok(response) => response,
            Err(e) => return failed(e.to_string()),
        };
        if !response.status().is_success() {
            return failed(format!("it answered {}", response.status()));
        }
        let answer: Answer = match response.json().await {
            Ok(answer) => answer,
            Err(e) => return failed(format!("its answer is not {{\"allow\":…}}: {e}")),
        };
        if answer.allow { Ok(answer) } else { Err(refused(hook, answer.reason)) }
    }

    fn hash(&self, value: &impl Hash) -> u64 {
        self.hasher.hash_one(value)
    }

    fn cached(&self, key: u64) -> Option<Cached> {
        let cache = self.cache.lock();
        let (answer, expires) = cache.get(&key)?;
        (*expires > crate::now_ms()).then(|| answer.clone())
    }

    fn remember(&self, key: u64, answer: Cached) {
        if self.config.cache_secs == 0 {
            return;
        }
        let now = crate::now_ms();
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (_, expires)| *expires > now);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, (answer, now + self.config.cache_secs.saturating_mul(1000)));
    }
}

/// The refusal of `hook`, with the backend's reason.
fn refused(hook: &str, reason: Option<String>) -> ProtocolError {
    let reason = reason.unwrap_or_else(|| format!("the {hook} hook refused"));
    ProtocolError::new(ErrorCode::Forbidden, reason)
}
