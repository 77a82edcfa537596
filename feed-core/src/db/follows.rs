//! The follow graph.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::users::User;
use crate::cursor::Cursor;

/// Adds a follow edge and counts it, in one statement; false if it already
/// existed. An unknown followee is a foreign-key violation.
pub async fn follow(db: &mut PgConnection, follower: Uuid, followee: Uuid) -> sqlx::Result<bool> {
    let counted = sqlx::query_scalar!(
        "WITH edge AS (
           INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2)
           ON CONFLICT DO NOTHING RETURNING followee_id)
         UPDATE users SET follower_count = follower_count + 1
         FROM edge WHERE users.id = edge.followee_id
         RETURNING users.id",
        follower,
        followee
    )
    .fetch_optional(db)
    .await?;
    Ok(counted.is_some())
}

/// Removes a follow edge and uncounts it, in one statement; false if there
/// was none.
pub async fn unfollow(db: &mut PgConnection, follower: Uuid, followee: Uuid) -> sqlx::Result<bool> {
    let counted = sqlx::query_scalar!(
        "WITH edge AS (
           DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2
           RETURNING followee_id)
         UPDATE users SET follower_count = greatest(follower_count - 1, 0)
         FROM edge WHERE users.id = edge.followee_id
         RETURNING users.id",
        follower,
        followee
    )
    .fetch_optional(db)
    .await?;
    Ok(counted.is_some())
}

/// Whether `follower` follows `followee` now.
pub async fn is_following(
    db: impl PgExecutor<'_>,
    follower: Uuid,
    followee: Uuid,
) -> sqlx::Result<bool> {
    let found = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM follows WHERE follower_id = $1 AND followee_id = $2) AS "found!""#,
        follower,
        followee
    )
    .fetch_one(db)
    .await?;
    Ok(found)
}

/// One page of a user's followers, most recent first, with when each followed.
pub async fn followers(
    db: impl PgExecutor<'_>,
    user: Uuid,
    after: Option<Cursor>,
    limit: i64,
) -> sqlx::Result<Vec<(User, DateTime<Utc>)>> {
    let (at, id) = split(after);
    let rows = sqlx::query_as!(
        EdgeRow,
        r#"SELECT u.id, u.handle, u.display_name, u.follower_count, u.created_at, f.created_at AS followed_at
           FROM follows f JOIN users u ON u.id = f.follower_id
           WHERE f.followee_id = $1
             AND ($2::timestamptz IS NULL OR (f.created_at, f.follower_id) < ($2, $3))
           ORDER BY f.created_at DESC, f.follower_id DESC
           LIMIT $4"#,
        user,
        at,
        id,
        limit
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(EdgeRow::split).collect())
}

/// One page of the users a user follows, most recent first.
pub async fn following(
    db: impl PgExecutor<'_>,
    user: Uuid,
    after: Option<Cursor>,
    limit: i64,
) -> sqlx::Result<Vec<(User, DateTime<Utc>)>> {
    let (at, id) = split(after);
    let rows = sqlx::query_as!(
        EdgeRow,
        r#"SELECT u.id, u.handle, u.display_name, u.follower_count, u.created_at, f.created_at AS followed_at
           FROM follows f JOIN users u ON u.id = f.followee_id
           WHERE f.follower_id = $1
             AND ($2::timestamptz IS NULL OR (f.created_at, f.followee_id) < ($2, $3))
           ORDER BY f.created_at DESC, f.followee_id DESC
           LIMIT $4"#,
        user,
        at,
        id,
        limit
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(EdgeRow::split).collect())
}

/// A chunk of a user's follower ids in id order, after `after`: the keyset
/// walk fan-out uses, so a celebrity's million followers stream in chunks.
pub async fn follower_ids(
    db: impl PgExecutor<'_>,
    followee: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        "SELECT follower_id FROM follows
         WHERE followee_id = $1 AND ($2::uuid IS NULL OR follower_id > $2)
         ORDER BY follower_id LIMIT $3",
        followee,
        after,
        limit
    )
    .fetch_all(db)
    .await
}

/// A user at one end of a follow edge, and when the edge was made.
struct EdgeRow {
    id: Uuid,
    handle: String,
    display_name: String,
    follower_count: i64,
    created_at: DateTime<Utc>,
    followed_at: DateTime<Utc>,
}

impl EdgeRow {
    fn split(self) -> (User, DateTime<Utc>) {
        let user = User {
            id: self.id,
            handle: self.handle,
            display_name: self.display_name,
            follower_count: self.follower_count,
            created_at: self.created_at,
        };
        (user, self.followed_at)
    }
}

fn split(after: Option<Cursor>) -> (Option<DateTime<Utc>>, Uuid) {
    match after {
        Some(c) => (DateTime::from_timestamp_micros(c.at_micros), c.id),
        None => (None, Uuid::nil()),
    }
}
