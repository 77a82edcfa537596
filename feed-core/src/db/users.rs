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

/// Whether a user is a celebrity at this threshold (the rule is the
/// migrations' `is_celebrity`); false for an unknown user.
pub async fn is_celebrity(
    db: impl PgExecutor<'_>,
    id: Uuid,
    celebrity_threshold: i64,
) -> sqlx::Result<bool> {
    let celebrity = sqlx::query_scalar!(
        r#"SELECT is_celebrity(follower_count, $2) AS "celebrity!" FROM users WHERE id = $1"#,
        id,
        celebrity_threshold
    )
    .fetch_optional(db)
    .await?;
    Ok(celebrity.unwrap_or(false))
}

/// A user's password hash, to confirm a sensitive action.
pub async fn password_hash(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!("SELECT password_hash FROM users WHERE id = $1", id)
        .fetch_optional(db)
        .await
}

/// Deletes a user and everything that is theirs (posts, likes, follows,
/// tokens), keeping the counters of what remains right: the users they
/// followed lose a follower, the posts they liked lose a like. Returns the
/// ids of their deleted posts (for `post.deleted` events), or `None` when
/// there is no such user.
pub async fn delete(db: &mut sqlx::PgConnection, id: Uuid) -> sqlx::Result<Option<Vec<Uuid>>> {
    // The row lock orders this against a concurrent follow or like by the
    // same user (their foreign keys take a share lock on it).
    let found = sqlx::query_scalar!("SELECT id FROM users WHERE id = $1 FOR UPDATE", id)
        .fetch_optional(&mut *db)
        .await?;
    if found.is_none() {
        return Ok(None);
    }
    sqlx::query!(
        "UPDATE users u SET follower_count = u.follower_count - 1
         FROM follows f WHERE f.follower_id = $1 AND u.id = f.followee_id",
        id
    )
    .execute(&mut *db)
    .await?;
    sqlx::query!(
        "UPDATE posts p SET like_count = p.like_count - 1
         FROM likes l WHERE l.user_id = $1 AND p.id = l.post_id AND p.author_id <> $1",
        id
    )
    .execute(&mut *db)
    .await?;
    let posts = sqlx::query_scalar!("SELECT id FROM posts WHERE author_id = $1", id)
        .fetch_all(&mut *db)
        .await?;
    // Posts, likes, follows and refresh tokens go with the row (ON DELETE
    // CASCADE).
    sqlx::query!("DELETE FROM users WHERE id = $1", id)
        .execute(&mut *db)
        .await?;
    Ok(Some(posts))
}
