//! Request extractors whose failures are [`ApiError`]s (problem+json), not
//! axum's plain-text rejections.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use uuid::Uuid;

use crate::error::ApiError;

/// A JSON body; malformed or mistyped JSON is a 400/422 naming the problem.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

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
