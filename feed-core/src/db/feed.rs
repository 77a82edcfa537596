//! The queries behind home feeds: what fan-out would have written, read
//! straight from the source of truth.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// A feed entry: a post id and its creation time (the feed's sort key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub post_id: Uuid,
    pub created_at: DateTime<Utc>,
}

/// The newest posts fan-out would have put in `user`'s feed: those of the
/// users they follow with fewer than `celebrity_threshold` followers. Used to
/// rebuild a feed missing from Redis.
pub async fn fanned_out(
    db: impl PgExecutor<'_>,
    user: Uuid,
    celebrity_threshold: i64,
    limit: i64,
) -> sqlx::Result<Vec<Entry>> {
    // LATERAL bounds the work per followee, so a user following prolific
    // authors does not sort their whole history.
    sqlx::query_as!(
        Entry,
        r#"SELECT p.id AS "post_id!", p.created_at AS "created_at!"
           FROM follows f
           JOIN users u ON u.id = f.followee_id AND u.follower_count < $2
           CROSS JOIN LATERAL (
             SELECT id, created_at FROM posts WHERE author_id = f.followee_id
             ORDER BY id DESC LIMIT $3) p
           WHERE f.follower_id = $1
           ORDER BY p.id DESC LIMIT $3"#,
        user,
        celebrity_threshold,
        limit
    )
    .fetch_all(db)
    .await
}

/// The newest posts before `before` that `user`'s feed pulls at read time
/// rather than receiving by fan-out: their own (read-your-writes) and those of
/// the celebrities they follow.
pub async fn pulled(
    db: impl PgExecutor<'_>,
    user: Uuid,
    celebrity_threshold: i64,
    before: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<Entry>> {
    sqlx::query_as!(
        Entry,
        r#"SELECT p.id AS "post_id!", p.created_at AS "created_at!"
           FROM (SELECT $1::uuid AS author_id
                 UNION ALL
                 SELECT f.followee_id FROM follows f
                 JOIN users u ON u.id = f.followee_id AND u.follower_count >= $2
                 WHERE f.follower_id = $1) a
           CROSS JOIN LATERAL (
             SELECT id, created_at FROM posts
             WHERE author_id = a.author_id AND ($3::uuid IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4) p
           ORDER BY p.id DESC LIMIT $4"#,
        user,
        celebrity_threshold,
        before,
        limit
    )
    .fetch_all(db)
    .await
}

/// A user's newest posts, for backfilling a new follower's feed.
pub async fn recent_by_author(
    db: impl PgExecutor<'_>,
    author: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<Entry>> {
    sqlx::query_as!(
        Entry,
        "SELECT id AS post_id, created_at FROM posts WHERE author_id = $1 ORDER BY id DESC LIMIT $2",
        author,
        limit
    )
    .fetch_all(db)
    .await
}
