//! Users and their credentials.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// A user as others may see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub handle: String,
    pub display_name: String,
    pub follower_count: i64,
    pub created_at: DateTime<Utc>,
}

/// Inserts a user; a taken handle is a unique violation.
pub async fn insert(
    db: impl PgExecutor<'_>,
    id: Uuid,
    handle: &str,
    display_name: &str,
    password_hash: &str,
) -> sqlx::Result<User> {
    sqlx::query_as!(
        User,
        r#"INSERT INTO users (id, handle, display_name, password_hash)
           VALUES ($1, $2, $3, $4)
           RETURNING id, handle, display_name, follower_count, created_at"#,
        id,
        handle,
        display_name,
        password_hash
    )
    .fetch_one(db)
    .await
}

/// A user by id.
pub async fn by_id(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<User>> {
    sqlx::query_as!(
        User,
        "SELECT id, handle, display_name, follower_count, created_at FROM users WHERE id = $1",
        id
    )
    .fetch_optional(db)
    .await
}

/// Whether a user exists.
pub async fn exists(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<bool> {
    let found = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM users WHERE id = $1) AS "found!""#,
        id
    )
    .fetch_one(db)
    .await?;
    Ok(found)
}

/// The id and password hash for a (normalized) handle, to check a login.
pub async fn credentials(
    db: impl PgExecutor<'_>,
    handle: &str,
) -> sqlx::Result<Option<(Uuid, String)>> {
    let row = sqlx::query!(
        "SELECT id, password_hash FROM users WHERE handle = $1",
        handle
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.id, r.password_hash)))
}

/// How many followers a user has (0 for an unknown user).
pub async fn follower_count(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<i64> {
    let count = sqlx::query_scalar!("SELECT follower_count FROM users WHERE id = $1", id)
        .fetch_optional(db)
        .await?;
    Ok(count.unwrap_or(0))
}
