//! What a delete or an unfollow leaves in the feeds' Redis, so that a feed
//! write racing it cannot undo it.
//!
//! Every write to a feed reads PostgreSQL first and writes Redis after:
//! fan-out reads a post and its followers, a rebuild reads whom a reader
//! follows, a backfill reads an author's posts. A delete or an unfollow
//! that commits between that read and that write is handled by a worker
//! that takes the post (or the author's posts) out of the feeds; if the
//! worker gets there first, the racing write puts the post back, and
//! nothing would take it out again.
//!
//! So a removal first leaves a mark, and every feed script checks the
//! marks in the same atomic step that writes:
//!
//! - a deleted post's tombstone ([`keys::deleted`]): no feed script adds
//!   the post and its cached copy is not written again;
//! - an unfollow ([`keys::unfollowed`]): no feed script adds the author's
//!   posts to the unfollower's feed.
//!
//! A write that ran before the mark ran before the removal's own pass over
//! the feeds, which comes after the mark and removes what the write added.
//! A follow clears its follower's mark before it reads the author's posts
//! (see `feed-worker`'s `fanout.rs`), and re-checks the follow afterwards.

use std::time::Duration;

use redis::RedisResult;
use redis::aio::ConnectionLike;
use uuid::Uuid;

use crate::keys;

/// How long a mark lasts. It must outlast the span between any feed
/// write's read of PostgreSQL and its write to Redis: milliseconds
/// normally, and a write that loses Redis fails and starts over with a new
/// read. Ten minutes also covers a process paused mid-write and a chunked
/// fan-out to a hundred thousand followers, with a wide margin, at the cost
/// of a small key per deleted post and a set member per unfollow.
pub const MARK_TTL: Duration = Duration::from_secs(600);

/// Leaves a deleted post's tombstone, and drops its cached copy. Call
/// before removing it from feeds.
pub async fn mark_deleted(conn: &mut impl ConnectionLike, post_id: Uuid) -> RedisResult<()> {
    redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(keys::deleted(post_id))
        .arg(1)
        .arg("EX")
        .arg(MARK_TTL.as_secs())
        .ignore()
        .cmd("DEL")
        .arg(keys::post(post_id))
        .ignore()
        .query_async(conn)
        .await
}

/// Marks that `follower` no longer follows `author`, and forgets marks
/// older than [`MARK_TTL`]. Call before removing the author's posts from
/// the follower's feed.
pub async fn mark_unfollowed(
    conn: &mut impl ConnectionLike,
    follower: Uuid,
    author: Uuid,
) -> RedisResult<()> {
    let key = keys::unfollowed(author);
    let now = chrono::Utc::now().timestamp_millis();
    let ttl_ms = MARK_TTL.as_millis() as i64;
    redis::pipe()
        .atomic()
        .zadd(&key, follower.to_string(), now)
        .ignore()
        .zrembyscore(&key, "-inf", now - ttl_ms)
        .ignore()
        .pexpire(&key, ttl_ms)
        .ignore()
        .query_async(conn)
        .await
}

/// Clears `follower`'s unfollow mark on `author`, once they follow again.
/// Call before reading the author's posts to add.
pub async fn clear_unfollowed(
    conn: &mut impl ConnectionLike,
    follower: Uuid,
    author: Uuid,
) -> RedisResult<()> {
    redis::cmd("ZREM")
        .arg(keys::unfollowed(author))
        .arg(follower.to_string())
        .query_async::<i64>(conn)
        .await?;
    Ok(())
}
