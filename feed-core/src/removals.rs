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
//!
//! Warm pages are served from Redis alone, so a removal must show there
//! as soon as it answers, before any worker has handled it. The API leaves
//! two more marks before the removal commits, and answers an error, writing
//! nothing, when it cannot:
//!
//! - a delete [`withdraw`]s the post: its copy is dropped and none is
//!   cached while the delete commits, so a page that finds no copy asks
//!   PostgreSQL, the truth;
//! - an unfollow [`hide`]s the author from the reader's pages until the
//!   workers have taken the author's posts out of the reader's feed.
//!
//! Should the removal not commit after all, both only cost a page a trip
//! to PostgreSQL or a post hidden a while: they never show what they should
//! not.

use std::time::Duration;

use redis::RedisResult;
use redis::aio::ConnectionLike;
use uuid::Uuid;

use crate::bus::Keyspace;
use crate::keys;

/// How long a mark lasts. It must outlast the span between any feed
/// write's read of PostgreSQL and its write to Redis: milliseconds
/// normally, and a write that loses Redis fails and starts over with a new
/// read. Ten minutes also covers a process paused mid-write and a chunked
/// fan-out to a hundred thousand followers, with a wide margin, at the cost
/// of a small key per deleted post and a set member per unfollow.
pub const MARK_TTL: Duration = Duration::from_secs(600);

/// Leaves a deleted post's tombstone, in every shard (see [`crate::keys`]),
/// and drops its cached copy. Call before removing it from feeds.
pub async fn mark_deleted(
    conn: &(impl ConnectionLike + Keyspace + Clone),
    post_id: Uuid,
) -> RedisResult<()> {
    let layout = conn.layout();
    let calls = layout.shards().into_iter().map(|shard| {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(keys::deleted(shard, post_id))
            .arg(1)
            .arg("EX")
            .arg(MARK_TTL.as_secs())
            .ignore();
        if shard == layout.shard(post_id) {
            pipe.cmd("DEL").arg(keys::post(layout, post_id)).ignore();
        }
        let mut conn = conn.clone();
        async move { pipe.query_async::<()>(&mut conn).await }
    });
    futures_util::future::try_join_all(calls).await?;
    Ok(())
}

/// Marks that `follower` no longer follows `author`, and forgets marks
/// older than [`MARK_TTL`]. Call before removing the author's posts from
/// the follower's feed.
pub async fn mark_unfollowed(
    conn: &mut (impl ConnectionLike + Keyspace),
    follower: Uuid,
    author: Uuid,
) -> RedisResult<()> {
    let key = keys::unfollowed(conn.layout().shard(follower), author);
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
    conn: &mut (impl ConnectionLike + Keyspace),
    follower: Uuid,
    author: Uuid,
) -> RedisResult<()> {
    redis::cmd("ZREM")
        .arg(keys::unfollowed(conn.layout().shard(follower), author))
        .arg(follower.to_string())
        .query_async::<i64>(conn)
        .await?;
    Ok(())
}

/// How long a hidden author stays hidden at most. The workers unhide an
/// author once they have taken the author's posts out of the reader's feed,
/// normally milliseconds after the unfollow; the mark must outlast any
/// backlog or worker outage before that, and a day covers any the
/// autoscaler and the alerts let stand. Should an unfollow not commit after
/// all, its author stays hidden from the reader's Redis-served pages until
/// the API unhides it or the mark expires: it never shows what it should
/// not.
pub const HIDE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Withdraws posts about to be deleted: drops their cached copies, and
/// blocks caching them again for [`MARK_TTL`], so a page served from Redis
/// finds no copy and asks PostgreSQL, which knows the delete once it
/// commits. Call before the delete commits (see `feed-api`'s delete
/// handlers): if it fails, the delete must not commit.
pub async fn withdraw(
    conn: &(impl ConnectionLike + Keyspace + Clone),
    posts: &[Uuid],
) -> RedisResult<()> {
    let layout = conn.layout();
    let calls = layout
        .group(posts, |post| **post)
        .into_iter()
        .map(|(_, posts)| {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for post in posts {
                pipe.cmd("SET")
                    .arg(keys::withdrawn(layout, *post))
                    .arg(1)
                    .arg("EX")
                    .arg(MARK_TTL.as_secs())
                    .ignore()
                    .cmd("DEL")
                    .arg(keys::post(layout, *post))
                    .ignore();
            }
            let mut conn = conn.clone();
            async move { pipe.query_async::<()>(&mut conn).await }
        });
    futures_util::future::try_join_all(calls).await?;
    Ok(())
}

/// Hides `author` from `reader`'s pages served from Redis until the workers
/// have taken the author's posts out of the reader's feed (see [`unhide`]).
/// Call before the unfollow commits: if it fails, the unfollow must not
/// commit.
pub async fn hide(
    conn: &mut (impl ConnectionLike + Keyspace),
    reader: Uuid,
    author: Uuid,
) -> RedisResult<()> {
    let key = keys::hidden(conn.layout(), reader);
    redis::pipe()
        .atomic()
        .zadd(
            &key,
            author.to_string(),
            chrono::Utc::now().timestamp_millis(),
        )
        .ignore()
        .expire(&key, HIDE_TTL.as_secs() as i64)
        .ignore()
        .query_async(conn)
        .await
}

/// Shows `author` in `reader`'s pages again: the reader follows them
/// again. Call before the follow commits.
pub async fn unhide(
    conn: &mut (impl ConnectionLike + Keyspace),
    reader: Uuid,
    author: Uuid,
) -> RedisResult<()> {
    redis::cmd("ZREM")
        .arg(keys::hidden(conn.layout(), reader))
        .arg(author.to_string())
        .query_async::<i64>(conn)
        .await?;
    Ok(())
}

/// When `author` was hidden from `reader`'s pages, if they are.
pub async fn hidden_since(
    conn: &mut (impl ConnectionLike + Keyspace),
    reader: Uuid,
    author: Uuid,
) -> RedisResult<Option<i64>> {
    redis::cmd("ZSCORE")
        .arg(keys::hidden(conn.layout(), reader))
        .arg(author.to_string())
        .query_async(conn)
        .await
}

/// Removes the mark `KEYS[1]` holds for `ARGV[1]` if it is still the one
/// of time `ARGV[2]`.
static UNHIDE_IF_SINCE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1])) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 1
",
    )
});

/// Shows `author` in `reader`'s pages again once the workers have taken
/// the author's posts out of the reader's feed, unless they were hidden
/// again after `since` ([`hidden_since`], read before the feed was).
pub async fn unhide_if_since(
    conn: &mut (impl ConnectionLike + Keyspace),
    reader: Uuid,
    author: Uuid,
    since: i64,
) -> RedisResult<()> {
    UNHIDE_IF_SINCE
        .key(keys::hidden(conn.layout(), reader))
        .arg(author.to_string())
        .arg(since)
        .invoke_async::<i64>(conn)
        .await?;
    Ok(())
}

/// Drops what Redis keeps for a reader whose account is being deleted: a
/// token issued before the delete must not be served their feed from Redis.
pub async fn forget_reader(
    conn: &mut (impl ConnectionLike + Keyspace),
    reader: Uuid,
) -> RedisResult<()> {
    let layout = conn.layout();
    redis::cmd("DEL")
        .arg(keys::feed(layout, reader))
        .arg(keys::hidden(layout, reader))
        .arg(keys::timeline(layout, reader))
        .query_async::<i64>(conn)
        .await?;
    Ok(())
}
