//! Posts' cached copies: what a feed page shows of each post, so a warm
//! page is served from Redis alone, and still served while PostgreSQL is
//! down.
//!
//! A copy is written by whoever read the post from PostgreSQL last: the
//! API when it creates a post or hydrates one a page missed, the workers
//! when they fan it out. A copy is dropped when its post is deleted, and
//! none is written while the delete commits or after it (see
//! [`crate::removals`]), so a page that finds no copy asks PostgreSQL,
//! which knows.
//!
//! Each copy is stamped with the epoch of the Redis server that holds it
//! (see the parent module): a copy restored from a snapshot by a restart
//! may predate its post's delete, so it counts as missing.

use redis::RedisResult;
use redis::aio::ConnectionLike;
use uuid::Uuid;

use super::FeedLimits;
use crate::bus::Keyspace;
use crate::keys;

/// A post as cached for serving feeds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedPost {
    pub id: Uuid,
    pub author_id: Uuid,
    pub author_handle: String,
    pub content: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// As the workers or the API last read it (see [`set_like_count`]).
    pub like_count: i64,
}

/// Sets posts' copies, stamped with this server's epoch and living
/// `ARGV[1]` seconds: for the `i`th post, `KEYS[3i-2]` its copy and
/// `ARGV[i+1]` its JSON; unless it has a tombstone (`KEYS[3i-1]`) or its
/// delete is committing (`KEYS[3i]`): a writer that read a post before its
/// delete must not cache it again once the delete has dropped the copy.
static CACHE_UNLESS_DELETED: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(concat!(
        super::lua_helpers!(),
        r"
local stamp = epoch() .. ' '
for i = 1, #KEYS / 3 do
  if redis.call('EXISTS', KEYS[3 * i - 1], KEYS[3 * i]) == 0 then
    redis.call('SET', KEYS[3 * i - 2], stamp .. ARGV[i + 1], 'EX', ARGV[1])
  end
end
return 1
",
    ))
});

/// Sets the like count (`ARGV[1]`) in a post's copy (`KEYS[1]`), if it has
/// one; keeps its stamp and TTL. Returns 1 if it did.
static SET_LIKE_COUNT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local copy = redis.call('GET', KEYS[1])
if not copy then
  return 0
end
local at = string.find(copy, ' ', 1, true)
local post = cjson.decode(string.sub(copy, at + 1))
post.like_count = tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.sub(copy, 1, at) .. cjson.encode(post), 'KEEPTTL')
return 1
",
    )
});

/// Caches posts for as long as feeds live, unless one was deleted since it
/// was read (see [`crate::removals`]), in one call (on a cluster, one per
/// shard, in flight together).
pub async fn cache_posts(
    conn: &(impl ConnectionLike + Keyspace + Clone),
    posts: &[CachedPost],
    limits: FeedLimits,
) -> RedisResult<()> {
    let layout = conn.layout();
    let calls = layout
        .group(posts, |post| post.id)
        .into_iter()
        .map(|(shard, posts)| {
            let mut invocation = CACHE_UNLESS_DELETED.prepare_invoke();
            invocation.arg(limits.ttl.as_secs());
            for post in posts {
                let json = serde_json::to_string(post).expect("a cached post always serializes");
                invocation
                    .key(keys::post(layout, post.id))
                    .key(keys::deleted(shard, post.id))
                    .key(keys::withdrawn(layout, post.id))
                    .arg(json);
            }
            let mut conn = conn.clone();
            async move { invocation.invoke_async::<i64>(&mut conn).await }
        });
    futures_util::future::try_join_all(calls).await?;
    Ok(())
}

/// The copies of `ids`, in the order asked: `None` where Redis holds none
/// of this epoch. One round trip; on a cluster, one per shard (each asking
/// the epoch of the node that holds its copies), in flight together.
pub async fn copies(
    conn: &(impl ConnectionLike + Keyspace + Clone),
    ids: &[Uuid],
) -> RedisResult<Vec<Option<CachedPost>>> {
    let layout = conn.layout();
    let groups = layout.group(ids.iter().enumerate(), |(_, id)| **id);
    let reads = groups.into_iter().map(|(_, group)| {
        // MGET and the stamps checked here: a Lua script checking them
        // costs Redis twenty times as much (51 against 2.3 µs for 34
        // copies).
        let keys: Vec<String> = group
            .iter()
            .map(|(_, id)| keys::post(layout, **id))
            .collect();
        let mut conn = conn.clone();
        async move {
            let (info, found): (String, Vec<Option<String>>) = redis::pipe()
                .cmd("INFO")
                .arg("server")
                .cmd("MGET")
                .arg(&keys)
                .query_async(&mut conn)
                .await?;
            let stamp = super::epoch(&info).map(|epoch| format!("{epoch} "));
            let copies = found.into_iter().map(move |copy| {
                let copy = copy?;
                let json = copy.strip_prefix(stamp.as_deref()?)?;
                serde_json::from_str::<CachedPost>(json).ok()
            });
            RedisResult::Ok(
                group
                    .into_iter()
                    .map(|(at, _)| at)
                    .zip(copies)
                    .collect::<Vec<_>>(),
            )
        }
    });
    let mut all = vec![None; ids.len()];
    for (at, copy) in futures_util::future::try_join_all(reads)
        .await?
        .into_iter()
        .flatten()
    {
        all[at] = copy;
    }
    Ok(all)
}

/// The copies of those posts that have one, in the order asked.
pub async fn cached_posts(
    conn: &(impl ConnectionLike + Keyspace + Clone),
    ids: &[Uuid],
) -> RedisResult<Vec<CachedPost>> {
    Ok(copies(conn, ids).await?.into_iter().flatten().collect())
}

/// Keeps a cached post's like count as PostgreSQL has it, so pages served
/// from Redis show likes as last applied. A post with no copy (deleted,
/// expired, or not read yet) is left alone.
pub async fn set_like_count(
    conn: &mut (impl ConnectionLike + Keyspace),
    post_id: Uuid,
    like_count: i64,
) -> RedisResult<()> {
    SET_LIKE_COUNT
        .key(keys::post(conn.layout(), post_id))
        .arg(like_count)
        .invoke_async::<i64>(conn)
        .await?;
    Ok(())
}
