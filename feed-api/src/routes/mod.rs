//! One router per resource; `openapi.rs` assembles them.

pub mod auth;
pub mod feed;
pub mod ops;
pub mod posts;
pub mod users;

use chrono::{DateTime, Utc};
use feed_core::cursor::Cursor;
use feed_core::validate;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use uuid::Uuid;

use crate::error::ApiError;

/// `?limit=&cursor=` of every list.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    /// Items per page, 1 to [`validate::PAGE_MAX`] (default
    /// [`validate::PAGE_DEFAULT`]).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
}

/// Written out rather than derived, so the documented page sizes are
/// [`validate`]'s (utoipa's `maximum` attribute takes only a literal).
impl IntoParams for PageQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let (max, default) = (validate::PAGE_MAX, validate::PAGE_DEFAULT);
        let limit = ParameterBuilder::new()
            .name("limit")
            .parameter_in(ParameterIn::Query)
            .description(Some(format!(
                "Items per page, 1 to {max} (default {default})."
            )))
            .required(Required::False)
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                    .minimum(Some(1))
                    .maximum(Some(max)),
            ))
            .build();
        let cursor = ParameterBuilder::new()
            .name("cursor")
            .parameter_in(ParameterIn::Query)
            .description(Some(
                "`next_cursor` of the previous page; absent for the first page.",
            ))
            .required(Required::False)
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build();
        vec![limit, cursor]
    }
}

impl PageQuery {
    /// The validated page size and decoded cursor.
    pub fn parse(&self) -> Result<(u32, Option<Cursor>), ApiError> {
        let limit = validate::page_size(self.limit)?;
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
