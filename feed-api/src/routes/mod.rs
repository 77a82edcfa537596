//! One router per resource; `openapi.rs` assembles them.

pub mod auth;
pub mod feed;
pub mod ops;
pub mod posts;
pub mod users;

use chrono::{DateTime, Utc};
use feed_core::cursor::Cursor;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::ApiError;

/// `?limit=&cursor=` of every list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The validated page size and decoded cursor.
    pub fn parse(&self) -> Result<(u32, Option<Cursor>), ApiError> {
        let limit = feed_core::validate::page_size(self.limit)?;
        let cursor = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(raw) => {
                Some(Cursor::decode(raw).map_err(|e| ApiError::BadRequest(e.to_string()))?)
            }
        };
        Ok((limit, cursor))
    }
}

/// The cursor that resumes after an item.
pub fn cursor_after(at: DateTime<Utc>, id: Uuid) -> String {
    Cursor {
        at_micros: at.timestamp_micros(),
        id,
    }
    .encode()
}

/// Maps a write's error: a foreign-key violation on the caller's own id
/// means the token outlived its user.
pub fn caller_gone(e: sqlx::Error) -> ApiError {
    if feed_core::db::is_foreign_key_violation(&e) {
        ApiError::account_gone()
    } else {
        e.into()
    }
}
