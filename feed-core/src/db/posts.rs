//! Posts and likes.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// A post as readers see it, with its author's handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    pub id: Uuid,
    pub author_id: Uuid,
    pub author_handle: String,
    pub content: String,
    pub like_count: i64,
    pub created_at: DateTime<Utc>,
}

/// The copy cached for pages served from Redis: the same fields, so one
/// conversion serves every writer of the cache.
#[cfg(feature = "redis")]
impl From<Post> for crate::feed_store::CachedPost {
    fn from(p: Post) -> Self {
        crate::feed_store::CachedPost {
            id: p.id,
            author_id: p.author_id,
            author_handle: p.author_handle,
            content: p.content,
            created_at: p.created_at,
            like_count: p.like_count,
        }
    }
}

/// Inserts a post; an unknown author is a foreign-key violation.
pub async fn insert(
    db: impl PgExecutor<'_>,
    id: Uuid,
    author_id: Uuid,
    content: &str,
    created_at: DateTime<Utc>,
) -> sqlx::Result<Post> {
    sqlx::query_as!(
        Post,
        r#"WITH p AS (
             INSERT INTO posts (id, author_id, content, created_at) VALUES ($1, $2, $3, $4)
             RETURNING id, author_id, content, like_count, created_at)
           SELECT p.id, p.author_id, u.handle AS author_handle, p.content, p.like_count, p.created_at
           FROM p JOIN users u ON u.id = p.author_id"#,
        id,
        author_id,
        content,
        created_at
    )
    .fetch_one(db)
    .await
}

/// A post to insert with its `post.created` event.
#[derive(Debug, Clone)]
pub struct NewPost {
    pub id: Uuid,
    pub author_id: Uuid,
    pub content: String,
    pub created_at: DateTime<Utc>,
    pub event: crate::events::Envelope,
}

/// Inserts many posts and their events in one statement: one commit for
/// all. Atomic: an unknown author fails the whole statement, and nothing
/// is written.
pub async fn insert_many_with_events(
    db: impl PgExecutor<'_>,
    posts: &[NewPost],
) -> sqlx::Result<Vec<Post>> {
    let ids: Vec<Uuid> = posts.iter().map(|p| p.id).collect();
    let authors: Vec<Uuid> = posts.iter().map(|p| p.author_id).collect();
    let contents: Vec<String> = posts.iter().map(|p| p.content.clone()).collect();
    let created: Vec<DateTime<Utc>> = posts.iter().map(|p| p.created_at).collect();
    let event_ids: Vec<Uuid> = posts.iter().map(|p| p.event.event_id).collect();
    let event_types: Vec<String> = posts.iter().map(|p| p.event.event_type.clone()).collect();
    let envelopes: Vec<serde_json::Value> = posts
        .iter()
        .map(|p| serde_json::to_value(&p.event).expect("an envelope always serializes"))
        .collect();
    let occurred: Vec<DateTime<Utc>> = posts.iter().map(|p| p.event.occurred_at).collect();
    sqlx::query_as!(
        Post,
        r#"WITH input AS (
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[],
                                  $5::uuid[], $6::text[], $7::jsonb[], $8::timestamptz[])
               AS t(id, author_id, content, created_at, event_id, event_type, envelope, occurred_at)),
           p AS (
             INSERT INTO posts (id, author_id, content, created_at)
             SELECT id, author_id, content, created_at FROM input
             RETURNING id, author_id, content, like_count, created_at),
           o AS (
             INSERT INTO outbox (event_id, event_type, envelope, created_at)
             SELECT event_id, event_type, envelope, occurred_at FROM input)
           SELECT p.id AS "id!", p.author_id AS "author_id!", u.handle AS "author_handle!",
                  p.content AS "content!", p.like_count AS "like_count!",
                  p.created_at AS "created_at!"
           FROM p JOIN users u ON u.id = p.author_id"#,
        &ids,
        &authors,
        &contents,
        &created,
        &event_ids,
        &event_types,
        &envelopes,
        &occurred
    )
    .fetch_all(db)
    .await
}

/// What fanning a post out starts from, read in one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToFanOut {
    pub post: Post,
    /// The author's first `chunk` followers in id order (where
    /// [`super::follows::follower_ids`] goes on); `None` if the author has
    /// `celebrity_threshold` followers or more, as a celebrity's posts are
    /// pulled by readers, not fanned out.
    pub followers: Option<Vec<Uuid>>,
}

/// A post by id with its author's first chunk of followers, unless the
/// author is a celebrity: what fanning it out needs, in one round trip
/// instead of two per post.
pub async fn to_fan_out(
    db: impl PgExecutor<'_>,
    id: Uuid,
    chunk: i64,
    celebrity_threshold: i64,
) -> sqlx::Result<Option<ToFanOut>> {
    let row = sqlx::query!(
        r#"SELECT p.id, p.author_id, u.handle AS author_handle, p.content, p.like_count,
                  p.created_at,
                  CASE WHEN NOT is_celebrity(u.follower_count, $3) THEN ARRAY(
                    SELECT f.follower_id FROM follows f WHERE f.followee_id = p.author_id
                    ORDER BY f.follower_id LIMIT $2) END AS "followers?"
           FROM posts p JOIN users u ON u.id = p.author_id WHERE p.id = $1"#,
        id,
        chunk,
        celebrity_threshold
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| ToFanOut {
        post: Post {
            id: r.id,
            author_id: r.author_id,
            author_handle: r.author_handle,
            content: r.content,
            like_count: r.like_count,
            created_at: r.created_at,
        },
        followers: r.followers,
    }))
}

/// A post's like count; `None` if the post does not exist.
pub async fn like_count(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!("SELECT like_count FROM posts WHERE id = $1", id)
        .fetch_optional(db)
        .await
}

/// A post by id.
pub async fn by_id(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<Post>> {
    sqlx::query_as!(
        Post,
        r#"SELECT p.id, p.author_id, u.handle AS author_handle, p.content, p.like_count, p.created_at
           FROM posts p JOIN users u ON u.id = p.author_id WHERE p.id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
}

/// A post's author and creation time, locked against a concurrent delete.
pub async fn lock(db: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<(Uuid, DateTime<Utc>)>> {
    let row = sqlx::query!(
        "SELECT author_id, created_at FROM posts WHERE id = $1 FOR UPDATE",
        id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.author_id, r.created_at)))
}

/// Deletes a post (its likes go with it).
pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<bool> {
    let deleted = sqlx::query!("DELETE FROM posts WHERE id = $1", id)
        .execute(db)
        .await?;
    Ok(deleted.rows_affected() == 1)
}

/// One page of a user's posts, newest first (ids are time-ordered).
pub async fn by_author(
    db: impl PgExecutor<'_>,
    author_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<Post>> {
    sqlx::query_as!(
        Post,
        r#"SELECT p.id, p.author_id, u.handle AS author_handle, p.content, p.like_count, p.created_at
           FROM posts p JOIN users u ON u.id = p.author_id
           WHERE p.author_id = $1 AND ($2::uuid IS NULL OR p.id < $2)
           ORDER BY p.id DESC LIMIT $3"#,
        author_id,
        before,
        limit
    )
    .fetch_all(db)
    .await
}

/// Records a like and counts it, in one statement; false if the user
/// already liked the post. The post must have been locked by [`lock`] in the
/// same transaction.
pub async fn like(db: &mut PgConnection, post_id: Uuid, user_id: Uuid) -> sqlx::Result<bool> {
    let counted = sqlx::query_scalar!(
        "WITH edge AS (
           INSERT INTO likes (post_id, user_id) VALUES ($1, $2)
           ON CONFLICT DO NOTHING RETURNING post_id)
         UPDATE posts SET like_count = like_count + 1
         FROM edge WHERE posts.id = edge.post_id
         RETURNING posts.id",
        post_id,
        user_id
    )
    .fetch_optional(db)
    .await?;
    Ok(counted.is_some())
}

/// Removes a like and uncounts it, in one statement; false if there was
/// none.
pub async fn unlike(db: &mut PgConnection, post_id: Uuid, user_id: Uuid) -> sqlx::Result<bool> {
    let counted = sqlx::query_scalar!(
        "WITH edge AS (
           DELETE FROM likes WHERE post_id = $1 AND user_id = $2 RETURNING post_id)
         UPDATE posts SET like_count = greatest(like_count - 1, 0)
         FROM edge WHERE posts.id = edge.post_id
         RETURNING posts.id",
        post_id,
        user_id
    )
    .fetch_optional(db)
    .await?;
    Ok(counted.is_some())
}
