//! Browser origins: which pages may open a WebSocket (cross-site WebSocket hijacking) or call
//! the client routes across origins (CORS for SSE, long polling, `/publish`, `/history`).
//!
//! A request without `Origin` is not a browser's cross-site request and passes; a page of the
//! server's own origin (the `Origin` names the request's `Host`) passes; any other origin
//! passes only when `allowed_origins` lists it (or `*`). A refused origin gets `403
//! origin_not_allowed` — refused outright rather than merely unreadable, since a cross-site
//! form or `fetch` would otherwise still publish.

use axum::http::{HeaderMap, HeaderValue, header};

use super::head::RequestHeaders;
use crate::config::Config;

/// The verdict on a request's `Origin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginCheck {
    /// No `Origin` header, or the server's own origin: no CORS headers needed.
    SameSite,
    /// A listed foreign origin: answer with CORS headers echoing it.
    Allowed(HeaderValue),
    /// A foreign origin not on the list.
    Refused,
}

/// Checks the `Origin` of a request with `headers` against `config.allowed_origins`.
pub fn check(config: &Config, headers: &impl RequestHeaders) -> OriginCheck {
    let Some(origin) = headers.first(&header::ORIGIN) else { return OriginCheck::SameSite };
    let text = headers.first_str(&header::ORIGIN).unwrap_or("");
    let host = headers.first_str(&header::HOST).unwrap_or("");
    let own = text.split_once("://").is_some_and(|(_, rest)| !host.is_empty() && rest.eq_ignore_ascii_case(host));
    if own {
        return OriginCheck::SameSite;
    }
    let listed = config.allowed_origins.iter().any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(text));
    match HeaderValue::from_bytes(origin) {
        Ok(origin) if listed => OriginCheck::Allowed(origin),
        _ => OriginCheck::Refused,
    }
}

/// Adds the CORS headers of an allowed cross-origin response.
pub fn add_cors_headers(headers: &mut HeaderMap, origin: &HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    headers.insert(header::VARY, HeaderValue::from_static("origin"));
}

/// The CORS header lines of an allowed cross-origin response, for responses written by hand.
pub fn cors_header_lines(origin: &HeaderValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"access-control-allow-origin: ");
    out.extend_from_slice(origin.as_bytes());
    out.extend_from_slice(b"\r\naccess-control-allow-credentials: true\r\nvary: origin\r\n");
    out
}

/// The headers of a preflight (`OPTIONS`) answer for an allowed origin: the methods and the
/// request headers clients use (`Authorization` for tokens, `Last-Event-ID` for SSE resume).
pub fn add_preflight_headers(headers: &mut HeaderMap) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, last-event-id"),
    );
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&'static str>, host: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static(host));
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_static(o));
        }
        h
    }

    #[test]
    fn own_origin_and_no_origin_pass_others_need_the_list() {
        let mut config = Config::default();
        assert_eq!(check(&config, &headers(None, "a.test")), OriginCheck::SameSite);
        assert_eq!(check(&config, &headers(Some("https://a.test"), "a.test")), OriginCheck::SameSite);
        assert_eq!(check(&config, &headers(Some("https://evil.test"), "a.test")), OriginCheck::Refused);
        assert_eq!(check(&config, &headers(Some("null"), "a.test")), OriginCheck::Refused);
        config.allowed_origins = vec!["https://app.test/".into()];
        assert!(matches!(check(&config, &headers(Some("https://app.test"), "a.test")), OriginCheck::Allowed(_)));
        assert_eq!(check(&config, &headers(Some("https://evil.test"), "a.test")), OriginCheck::Refused);
        config.allowed_origins = vec!["*".into()];
        assert!(matches!(check(&config, &headers(Some("https://evil.test"), "a.test")), OriginCheck::Allowed(_)));
    }
}
