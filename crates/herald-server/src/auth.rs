//! Client identity: the token a request or WebSocket carries, verified against the configured
//! keys, and the namespace rules applied to it. The decisions themselves are `herald-auth`'s.
//!
//! A client token arrives as `Authorization: Bearer <token>` or `?token=<token>` (browsers'
//! `EventSource` and `WebSocket` cannot set headers), or in the WebSocket `auth` command. No
//! token means an anonymous client; a token that does not verify is refused, never treated as
//! anonymous.

use axum::http::header;

use herald_auth::{Action, AuthError, Denied, Identity, KeyConfig, Verifier};
use herald_core::{ChannelName, ErrorCode, ProtocolError};
use herald_http1::{RequestHeaders, query};

use crate::config::{Config, ConfigError};

/// Verifies client tokens. The zero value of its configuration (no key) refuses every token.
pub struct Auth {
    verifier: Option<Verifier>,
}

// === impl Auth ===

impl Auth {
    /// Reads the token keys `config` names (files are read here, once).
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let read = |path: &Option<std::path::PathBuf>| -> Result<Option<String>, ConfigError> {
            path.as_ref()
                .map(|p| {
                    std::fs::read_to_string(p)
                        .map_err(|source| ConfigError::Read { path: p.display().to_string(), source })
                })
                .transpose()
        };
        let keys = KeyConfig {
            hs256_secret: config.token_hs256_secret.clone(),
            rs256_public_key_pem: read(&config.token_rs256_public_key)?,
            es256_public_key_pem: read(&config.token_es256_public_key)?,
        };
        let verifier = Verifier::new(&keys).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(Self { verifier })
    }

    /// Whether any token key is configured.
    pub fn enabled(&self) -> bool {
        self.verifier.is_some()
    }

    /// Verifies `token` now.
    pub fn verify(&self, token: &str) -> Result<Identity, ProtocolError> {
        let Some(verifier) = &self.verifier else {
            return Err(ProtocolError::new(
                ErrorCode::InvalidToken,
                "this server accepts no tokens (no token key is configured)",
            ));
        };
        verifier.verify(token, crate::now_ms() / 1000).map_err(|e| match e {
            AuthError::Expired => ProtocolError::new(ErrorCode::TokenExpired, "the token has expired"),
            e => ProtocolError::new(ErrorCode::InvalidToken, e.to_string()),
        })
    }

    /// The identity of a request: its bearer token, else its `token` query parameter, else
    /// none (anonymous).
    pub fn identify(
        &self,
        headers: &impl RequestHeaders,
        query: Option<&str>,
    ) -> Result<Option<Identity>, ProtocolError> {
        match request_token(headers, query)? {
            Some(token) => self.verify(&token).map(Some),
            None => Ok(None),
        }
    }
}

/// The token of a request: `Authorization: Bearer <token>`, else `?token=<token>`.
pub fn request_token(headers: &impl RequestHeaders, query: Option<&str>) -> Result<Option<String>, ProtocolError> {
    match bearer_token(headers)? {
        Some(token) => Ok(Some(token)),
        None => Ok(query.and_then(|query| query::find(query, "token")).map(std::borrow::Cow::into_owned)),
    }
}

/// The token of `Authorization: Bearer <token>`, which wins over a `token` query parameter:
/// `None` without the header, an error when the header holds no bearer token. (Streams read
/// the query's `token` as they read the rest of their query, in one pass.)
pub fn bearer_token(headers: &impl RequestHeaders) -> Result<Option<String>, ProtocolError> {
    if headers.first(&header::AUTHORIZATION).is_none() {
        return Ok(None);
    }
    let token = headers.first_str(&header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
    match token {
        Some(token) if !token.is_empty() => Ok(Some(token.to_string())),
        _ => Err(ProtocolError::new(ErrorCode::InvalidToken, "Authorization must be \"Bearer <token>\"")),
    }
}

/// Whether a client with `identity` may do `action` on `channel` under its namespace's rules,
/// as a protocol error when not.
pub fn check(
    config: &Config,
    identity: Option<&Identity>,
    channel: &ChannelName,
    action: Action,
) -> Result<(), ProtocolError> {
    config.rules(channel).check(identity, channel.as_str(), action).map_err(|denied| match denied {
        Denied::TokenRequired(m) => ProtocolError::new(ErrorCode::Unauthorized, m),
        Denied::Forbidden(m) => ProtocolError::new(ErrorCode::Forbidden, m),
        Denied::Disabled(m) => ProtocolError::new(ErrorCode::NotAvailable, m),
    })
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::*;

    #[test]
    fn the_header_wins_over_the_query_and_a_bad_header_is_an_error() {
        let mut headers = HeaderMap::new();
        assert_eq!(request_token(&headers, Some("channel=a&token=q%2Bt")), Ok(Some("q+t".to_string())));
        assert_eq!(request_token(&headers, Some("channel=a")), Ok(None));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer h.t"));
        assert_eq!(request_token(&headers, Some("token=q")), Ok(Some("h.t".to_string())));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(request_token(&headers, None).is_err());
    }
}
