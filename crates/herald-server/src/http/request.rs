//! What the API routes read from a request besides its path: the API key, the body within
//! its limit, and whether the body is JSON.

use axum::{
    body::Bytes,
    extract::rejection::BytesRejection,
    http::{HeaderMap, HeaderName, header},
};
use herald_core::ErrorCode;

use super::head::RequestHeaders;
use crate::reply::ApiError;

/// Whether `headers` carry the API key (`Authorization: Bearer` or `X-API-Key`; never the
/// query string), unless the check is off.
pub fn check_api_key(config: &crate::Config, headers: &impl RequestHeaders) -> Result<(), ApiError> {
    if config.insecure_no_api_key {
        return Ok(());
    }
    let Some(expected) = config.api_key.as_deref() else {
        return Err(ApiError::new(ErrorCode::Unauthorized, "no API key is configured"));
    };
    let admin = config.admin_password.as_deref();
    let bearer = headers
        .first_str(&header::AUTHORIZATION)
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let given = bearer.or_else(|| headers.first_str(&HeaderName::from_static("x-api-key")));
    match given {
        None => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
        )),
        Some(key) if constant_time_eq(key.trim().as_bytes(), expected.as_bytes()) => Ok(()),
        Some(key) if admin.is_some_and(|a| constant_time_eq(key.trim().as_bytes(), a.as_bytes())) => Ok(()),
        Some(_) => Err(ApiError::new(ErrorCode::Unauthorized, "wrong API key")),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a request's `Content-Type` is JSON (else its body is taken as text).
pub fn is_json(headers: &HeaderMap) -> bool {
    has_media_type(headers, "application/json")
}

/// Whether a request's `Content-Type` is `application/octet-stream` (a binary message).
pub fn is_binary(headers: &HeaderMap) -> bool {
    has_media_type(headers, "application/octet-stream")
}

fn has_media_type(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case(media_type)))
}

/// Reads a request body, mapping an over-limit body to `message_too_large`.
pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(ErrorCode::MessageTooLarge, "request body is over the size limit")
        } else {
            ApiError::new(ErrorCode::BadRequest, e.body_text())
        }
    })
}
