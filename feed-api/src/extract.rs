//! Request extractors whose failures are [`ApiError`]s (problem+json), not
//! axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::ApiError;

/// Deepest nesting of arrays and objects a JSON body may have. Fanout's
/// bodies are flat; the limit keeps a hostile body from costing deep
/// recursion (serde_json's own limit is 128).
pub const JSON_MAX_DEPTH: usize = 32;

/// A JSON body; malformed or mistyped JSON is a 400/422 naming the problem,
/// a body nested deeper than [`JSON_MAX_DEPTH`] a 400, one over the body
/// limit a 413, one not declared JSON a 415.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "expected a JSON body with 'Content-Type: application/json'".into(),
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(e.body_text())
            } else {
                ApiError::BadRequest(e.body_text())
            }
        })?;
        if nesting_exceeds(&bytes, JSON_MAX_DEPTH) {
            return Err(ApiError::BadRequest(format!(
                "the JSON body is nested deeper than {JSON_MAX_DEPTH} levels"
            )));
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(ApiJson(value))
    }
}

/// `application/json` or any `application/*+json`, parameters allowed.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let essence = essence.to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Whether arrays and objects nest deeper than `max` anywhere in `body`,
/// brackets inside strings not counted. Works on any bytes, JSON or not.
pub fn nesting_exceeds(body: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Query parameters; bad ones are a 400 naming the parameter.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Parses an id from a path segment: anything but a UUID is a 400.
pub fn parse_id(raw: &str, kind: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw).map_err(|_| {
        let shown: String = raw.chars().take(64).collect();
        ApiError::BadRequest(format!(
            "'{shown}' is not a valid {kind} id (expected a UUID)"
        ))
    })
}

/// The request id (`x-request-id`, set by the middleware when the client
/// sent none). It becomes the `correlation_id` of the events a request
/// causes, so a post can be followed from the API into the workers' logs.
#[derive(Debug, Clone, Default)]
pub struct RequestId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            // A client-chosen id is kept only if it is short and printable.
            .filter(|v| v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_owned);
        Ok(RequestId(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nesting_is_measured_outside_strings() {
        assert!(!nesting_exceeds(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(nesting_exceeds(br#"{"a":[1,{"b":[2]}]}"#, 3));
        assert!(!nesting_exceeds(br#"{"a":"[[[[[[\"[[[["}"#, 1));
        assert!(nesting_exceeds(&[b'['; 33], JSON_MAX_DEPTH));
        assert!(!nesting_exceeds(&[b'['; 32], JSON_MAX_DEPTH));
    }

    proptest! {
        /// Any bytes: an answer, never a panic; and a body the limit admits
        /// never trips serde_json's own recursion limit.
        #[test]
        fn any_bytes_are_judged_without_panicking(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            if !nesting_exceeds(&body, JSON_MAX_DEPTH)
                && let Err(e) = serde_json::from_slice::<serde_json::Value>(&body)
            {
                prop_assert!(!e.to_string().contains("recursion limit"));
            }
        }

        /// Nesting built to a known depth is measured exactly.
        #[test]
        fn built_nesting_is_measured(depth in 0usize..80, noise in "[a-z\\[\\]{}]{0,8}") {
            let body = format!(
                "{}\"{}\"{}",
                "[".repeat(depth),
                noise,
                "]".repeat(depth)
            );
            prop_assert_eq!(nesting_exceeds(body.as_bytes(), JSON_MAX_DEPTH), depth > JSON_MAX_DEPTH);
        }
    }
}
