//! The one error type of the HTTP layer. Every failure leaves as an RFC 9457
//! problem (`application/problem+json`) that names what is wrong; internals
//! (SQL, Redis, stack) are logged, never sent.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use feed_core::validate::Invalid;
use serde::Serialize;
use utoipa::ToSchema;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field's value breaks a rule (422).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The request cannot be parsed (400).
    #[error("{0}")]
    BadRequest(String),
    /// No or bad credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The route exists, but not with this method (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than accepted (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body is not JSON (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Over a rate limit (429 with Retry-After).
    #[error("{detail}")]
    TooManyRequests {
        detail: String,
        retry_after_secs: u64,
    },
    /// A dependency is down; retry shortly (503 with Retry-After).
    #[error("{0} is unavailable")]
    Unavailable(&'static str),
    /// A bug or an unexpected failure (500); details only in the logs.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The body of every error response (RFC 9457).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type; `about:blank` means "see `status`".
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The HTTP status phrase.
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// What is wrong, for a human.
    pub detail: String,
    /// The request field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    /// A 404 for a missing resource of a kind, e.g. `not_found("post", id)`.
    pub fn not_found(kind: &str, id: impl std::fmt::Display) -> ApiError {
        ApiError::NotFound(format!("no {kind} with id '{id}'"))
    }

    /// A 401 for a validly signed token whose account was deleted since.
    pub fn account_gone() -> ApiError {
        ApiError::Unauthorized("the token's user no longer exists".into())
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "request failed");
                "an internal error occurred; it has been logged".to_owned()
            }
            ApiError::Unavailable(what) => {
                tracing::warn!(dependency = what, "dependency unavailable");
                format!("{what} is unavailable; retry shortly")
            }
            ApiError::Invalid { message, .. } => message.clone(),
            other => other.to_string(),
        };
        let field = match &self {
            ApiError::Invalid { field, .. } => Some(field.clone()),
            _ => None,
        };
        let problem = Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            field,
        };
        let mut response = (status, axum::Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::TooManyRequests {
                retry_after_secs, ..
            } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs.max(1)),
                );
            }
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::Invalid {
            field: e.field.to_owned(),
            message: e.message,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if feed_core::db::is_unavailable(&e) {
            tracing::warn!(error = %e, "PostgreSQL unavailable");
            ApiError::Unavailable("the database")
        } else {
            ApiError::Internal(e.into())
        }
    }
}

/// The feeds' Redis, which takes a removal's marks before the removal
/// commits (see `feed_core::removals`).
impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        tracing::warn!(error = %e, "the feeds' Redis unavailable");
        ApiError::Unavailable("the feed store")
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            // Well-formed JSON of the wrong shape: name the field.
            JsonRejection::JsonDataError(e) => ApiError::Invalid {
                field: data_error_field(&e.body_text()),
                message: e.body_text(),
            },
            JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                "expected a JSON body with 'Content-Type: application/json'".into(),
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge(e.body_text())
            }
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

/// serde's messages read "Failed to deserialize the JSON body into the target
/// type: content: invalid type ..."; the path before the last ': ' pair is the
/// field.
fn data_error_field(text: &str) -> String {
    let rest = text.split_once("target type: ").map_or(text, |(_, r)| r);
    match rest.split_once(": ") {
        Some((path, _)) if !path.contains(' ') => path.to_owned(),
        // "missing field `handle`" and the like.
        _ => rest
            .split('`')
            .nth(1)
            .map_or_else(|| "body".to_owned(), str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_is_found_in_serde_messages() {
        assert_eq!(
            data_error_field(
                "Failed to deserialize the JSON body into the target type: content: invalid type: integer `5`, expected a string at line 1 column 13"
            ),
            "content"
        );
        assert_eq!(
            data_error_field(
                "Failed to deserialize the JSON body into the target type: missing field `handle` at line 1 column 2"
            ),
            "handle"
        );
    }
}
