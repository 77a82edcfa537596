//! The queries behind home feeds: what fan-out would have written, read
//! straight from the source of truth.
//!
//! Whether a followee is a celebrity is read by key, one followee at a time
//! (a scalar subquery on `users`), never by joining `users` on the follower
//! count: statements are prepared, PostgreSQL soon plans them for any
//! threshold, and for `follower_count >= $2` it guesses that a third of all
//! users match, so the join scanned the whole `users` table on every feed
//! read and rebuild (0.6 ms of a 1.3 ms read at 10,000 users, and growing
//! with every signup); the lookups cost one index probe per followed user.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::posts::Post;

/// A feed entry: a post id, its author and its creation time (the feed's
/// sort key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub post_id: Uuid,
    pub author_id: Uuid,
    pub created_at: DateTime<Utc>,
}

/// The newest posts fan-out would have put in `user`'s feed: their own, and
/// those of the users they follow who are not celebrities. Used to rebuild
/// a feed missing from Redis.
pub async fn fanned_out(
    db: impl PgExecutor<'_>,
    user: Uuid,
    celebrity_threshold: i64,
    limit: i64,
) -> sqlx::Result<Vec<Entry>> {
    // LATERAL bounds the work per followee, so a user following prolific
    // authors does not sort their whole history. Each followee's follower
    // count is looked up by key (see the module documentation).
    sqlx::query_as!(
        Entry,
        r#"SELECT p.id AS "post_id!", f.followee_id AS "author_id!", p.created_at AS "created_at!"
           FROM (SELECT $1::uuid AS followee_id
                 UNION ALL
                 SELECT f.followee_id FROM follows f
                 WHERE f.follower_id = $1
                   AND NOT is_celebrity((SELECT follower_count FROM users WHERE id = f.followee_id), $2)) f
           CROSS JOIN LATERAL (
             SELECT id, created_at FROM posts WHERE author_id = f.followee_id
             ORDER BY id DESC LIMIT $3) p
           ORDER BY p.id DESC LIMIT $3"#,
        user,
        celebrity_threshold,
        limit
    )
    .fetch_all(db)
    .await
}

/// The celebrities `user` follows: the authors whose timelines their feed
/// pulls.
pub async fn followed_celebrities(
    db: impl PgExecutor<'_>,
    user: Uuid,
    celebrity_threshold: i64,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        r#"SELECT f.followee_id AS "id!" FROM follows f
           WHERE f.follower_id = $1
             AND is_celebrity((SELECT follower_count FROM users WHERE id = f.followee_id), $2)"#,
        user,
        celebrity_threshold
    )
    .fetch_all(db)
    .await
}

/// Of the posts in `ids`, those `viewer` may see in their feed now (they
/// exist, and are the viewer's own or by someone the viewer follows),
/// hydrated: the posts a page found no cached copy of.
pub async fn visible(
    db: impl PgExecutor<'_>,
    viewer: Uuid,
    ids: &[Uuid],
) -> sqlx::Result<Vec<Post>> {
    sqlx::query_as!(
        Post,
        r#"SELECT p.id, p.author_id, u.handle AS author_handle, p.content, p.like_count, p.created_at
           FROM posts p JOIN users u ON u.id = p.author_id
           WHERE p.id = ANY($2)
             AND (p.author_id = $1 OR EXISTS (
               SELECT 1 FROM follows f WHERE f.follower_id = $1 AND f.followee_id = p.author_id))"#,
        viewer,
        ids
    )
    .fetch_all(db)
    .await
}

/// What PostgreSQL contributes to one page of a home feed, read in one
/// statement: a feed read is the hottest request, and each extra round trip
/// costs a connection and CPU on every layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRows {
    /// False when the viewer's account no longer exists (a token outlives
    /// an account deleted after it was issued).
    pub viewer_exists: bool,
    /// How many posts were pulled (at most the `want` asked for).
    pub pulled: usize,
    /// The oldest pulled post, if any.
    pub oldest_pulled: Option<Uuid>,
    /// The candidates the viewer may see now, in no particular order: the
    /// pushed ids still visible (not deleted, author still followed) and
    /// every pulled post.
    pub visible: Vec<Post>,
}

/// Reads a page's posts for `viewer`: it pulls the newest `want` posts before
/// `before` that are read at read time rather than received by fan-out
/// (their own, for read-your-writes, and those of the celebrities they
/// follow), and hydrates them together with `pushed`, the ids read from
/// the viewer's fanned-out feed, dropping those no longer visible.
pub async fn page(
    db: impl PgExecutor<'_>,
    viewer: Uuid,
    celebrity_threshold: i64,
    before: Option<Uuid>,
    want: i64,
    pushed: &[Uuid],
) -> sqlx::Result<PageRows> {
    // The one-row `head` LEFT JOINed to the posts answers the viewer check
    // and the pulled count even when no post is visible. Followed
    // celebrities are found by looking up each followee's follower count
    // by key (see the module documentation).
    let rows = sqlx::query!(
        r#"WITH pulled AS (
             SELECT p.id
             FROM (SELECT $1::uuid AS author_id
                   UNION ALL
                   SELECT f.followee_id FROM follows f
                   WHERE f.follower_id = $1
                     AND is_celebrity((SELECT follower_count FROM users WHERE id = f.followee_id), $2)) a
             CROSS JOIN LATERAL (
               SELECT id FROM posts
               WHERE author_id = a.author_id AND ($3::uuid IS NULL OR id < $3)
               ORDER BY id DESC LIMIT $4) p
             ORDER BY p.id DESC LIMIT $4),
           head AS (
             SELECT EXISTS (SELECT 1 FROM users WHERE id = $1) AS viewer_exists,
                    (SELECT count(*) FROM pulled) AS pulled,
                    (SELECT id FROM pulled ORDER BY id LIMIT 1) AS oldest_pulled),
           visible AS (
             SELECT p.id, p.author_id, u.handle, p.content, p.like_count, p.created_at
             FROM (SELECT unnest($5::uuid[]) AS id UNION SELECT id FROM pulled) c
             JOIN posts p ON p.id = c.id
             JOIN users u ON u.id = p.author_id
             WHERE p.author_id = $1 OR EXISTS (
               SELECT 1 FROM follows f WHERE f.follower_id = $1 AND f.followee_id = p.author_id))
           SELECT h.viewer_exists AS "viewer_exists!", h.pulled AS "pulled!", h.oldest_pulled,
                  v.id AS "id?", v.author_id AS "author_id?", v.handle AS "author_handle?",
                  v.content AS "content?", v.like_count AS "like_count?", v.created_at AS "created_at?"
           FROM head h LEFT JOIN visible v ON true"#,
        viewer,
        celebrity_threshold,
        before,
        want,
        pushed
    )
    .fetch_all(db)
    .await?;
    let Some(head) = rows.first() else {
        return Err(sqlx::Error::RowNotFound);
    };
    let mut page = PageRows {
        viewer_exists: head.viewer_exists,
        pulled: usize::try_from(head.pulled).unwrap_or(0),
        oldest_pulled: head.oldest_pulled,
        visible: Vec::with_capacity(rows.len()),
    };
    for row in rows {
        if let (
            Some(id),
            Some(author_id),
            Some(author_handle),
            Some(content),
            Some(like_count),
            Some(created_at),
        ) = (
            row.id,
            row.author_id,
            row.author_handle,
            row.content,
            row.like_count,
            row.created_at,
        ) {
            page.visible.push(Post {
                id,
                author_id,
                author_handle,
                content,
                like_count,
                created_at,
            });
        }
    }
    Ok(page)
}

/// A user's newest posts, for backfilling a new follower's feed.
pub async fn recent_by_author(
    db: impl PgExecutor<'_>,
    author: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<Entry>> {
    sqlx::query_as!(
        Entry,
        "SELECT id AS post_id, author_id, created_at FROM posts
         WHERE author_id = $1 ORDER BY id DESC LIMIT $2",
        author,
        limit
    )
    .fetch_all(db)
    .await
}

/// Of the posts in `ids`, those that still exist and are not by `author`:
/// what the feed of a user who unfollowed `author` may keep. Deleted posts
/// go too: a post deleted after its author was unfollowed is no longer
/// among the author's posts, and its delete no longer reaches the
/// unfollower's feed.
pub async fn kept_after_unfollow(
    db: impl PgExecutor<'_>,
    ids: &[Uuid],
    author: Uuid,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        "SELECT id FROM posts WHERE id = ANY($1) AND author_id <> $2",
        ids,
        author
    )
    .fetch_all(db)
    .await
}
