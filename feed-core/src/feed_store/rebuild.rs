//! Building a feed (or an author's timeline) from PostgreSQL: a
//! placeholder first, so fan-out writes to it meanwhile, then the rebuild
//! (see the parent module).

use std::time::Duration;

use redis::RedisResult;
use redis::aio::ConnectionLike;
use uuid::Uuid;

use super::{FeedLimits, FeedPost, Timeline, lua_helpers, pull_member, stored};
use crate::bus::Keyspace;
use crate::keys;

/// The TTL of a feed that holds nothing but placeholders: a rebuild takes
/// milliseconds and sets the feed's TTL itself, so this only bounds how
/// long the key of a reader that failed in between stays (reads renew it,
/// as they renew every feed's).
const PLACEHOLDER_TTL: Duration = Duration::from_secs(60);

/// A rebuild under way: the placeholder its reader added (`building:`, the
/// epoch, a random id), so that fan-out writes to the feed from then on.
/// The feed is not built until a rebuild adds the sentinel and removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuild {
    placeholder: String,
}

/// Adds a placeholder to the feed `KEYS[1]`, named for this epoch and the
/// random id `ARGV[1]`, giving a feed with no TTL the TTL `ARGV[2]`;
/// returns the placeholder. A feed built in another epoch is dropped first:
/// what it holds may predate a removal (see the parent module).
static BEGIN_REBUILD: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(concat!(
        lua_helpers!(),
        r"
local key = KEYS[1]
local now = epoch()
local sentinel = redis.call('ZRANGE', key, 0, 0, 'BYSCORE')[1]
if sentinel and sentinel ~= 'built:' .. now then
  redis.call('DEL', key)
end
local placeholder = 'building:' .. now .. ':' .. ARGV[1]
redis.call('ZADD', key, 1, placeholder)
redis.call('EXPIRE', key, ARGV[2], 'NX')
return placeholder
",
    ))
});

/// Writes a rebuilt feed over `KEYS[1]`, trimmed to `ARGV[1]` posts and
/// living `ARGV[2]` seconds, marked built in this epoch; but only if the
/// reader's placeholder `ARGV[3]` is still there, added in this epoch. The
/// reader added it before reading PostgreSQL; if Redis lost the key since
/// (a restart, an eviction), fan-out passed over the feed meanwhile, so the
/// rebuild may lack a post committed after the read and must not be marked
/// built, even if another reader has re-created the key since, or a
/// restart from a snapshot has brought the placeholder back. Returns 1 if
/// written.
///
/// The `n = ARGV[4]` posts are triples in `ARGV[6..]`: score, member, and
/// the index of their author's unfollow marks among `KEYS[n+2..]`;
/// `KEYS[2..n+1]` are their tombstones. The `ARGV[5]` pull members follow
/// as pairs: member, and the index of their celebrity's unfollow marks. A
/// post deleted, or by an author the feed's reader unfollowed, since
/// PostgreSQL was read is left out (see [`crate::removals`]).
static REBUILD: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(concat!(
        lua_helpers!(),
        r"
local key = KEYS[1]
local this_epoch = 'building:' .. epoch() .. ':'
if string.sub(ARGV[3], 1, #this_epoch) ~= this_epoch or not redis.call('ZSCORE', key, ARGV[3]) then
  return 0
end
local posts = tonumber(ARGV[4])
local user = user_of(key)
local unfollowed = {}
for k = posts + 2, #KEYS do
  unfollowed[k - posts - 1] = redis.call('ZSCORE', KEYS[k], user) ~= false
end
local live = {'0', 'built:' .. epoch()}
for i = 1, posts do
  local at = 3 + 3 * i
  if not unfollowed[tonumber(ARGV[at + 2])] and redis.call('EXISTS', KEYS[1 + i]) == 0 then
    live[#live + 1] = ARGV[at]
    live[#live + 1] = ARGV[at + 1]
  end
end
for at = 6 + 3 * posts, #ARGV, 2 do
  if not unfollowed[tonumber(ARGV[at + 1])] then
    live[#live + 1] = '2'
    live[#live + 1] = ARGV[at]
  end
end
-- The placeholders and any sentinel go: scores 0 and 1. The posts and
-- pulls stay, as fan-out may have added to them meanwhile.
redis.call('ZREMRANGEBYSCORE', key, 0, 1)
zadd_all(key, live)
trim(key, tonumber(ARGV[1]))
redis.call('EXPIRE', key, ARGV[2])
return 1
",
    ))
});

/// Marks a feed about to be read from PostgreSQL and rebuilt: from now
/// on fan-out writes to it, so a post committed after that read still
/// reaches it. Call before reading PostgreSQL, then [`rebuild`].
pub async fn begin_rebuild(
    conn: &mut (impl ConnectionLike + Keyspace),
    feed: impl Into<Timeline>,
) -> RedisResult<Rebuild> {
    let placeholder = BEGIN_REBUILD
        .key(feed.into().key(conn.layout()))
        .arg(Uuid::new_v4().to_string())
        .arg(PLACEHOLDER_TTL.as_secs())
        .invoke_async(conn)
        .await?;
    Ok(Rebuild { placeholder })
}

/// Replaces a feed with posts, and pulls of followed celebrities, read from
/// PostgreSQL after [`begin_rebuild`], marked as built, leaving out what
/// was deleted or unfollowed since that read (see [`crate::removals`]).
/// Returns false, writing nothing, if Redis lost the feed since (it may
/// then lack a post fan-out passed over), or if another reader's rebuild
/// has been written since; the next read rebuilds it if it is not built.
pub async fn rebuild(
    conn: &mut (impl ConnectionLike + Keyspace),
    feed: impl Into<Timeline>,
    started: &Rebuild,
    posts: &[FeedPost],
    pulls: &[Uuid],
    limits: FeedLimits,
) -> RedisResult<bool> {
    let mut authors: Vec<Uuid> = posts
        .iter()
        .map(|p| p.author)
        .chain(pulls.iter().copied())
        .collect();
    authors.sort_unstable();
    authors.dedup();
    let index = |author: &Uuid| authors.binary_search(author).unwrap_or_default() + 1;
    let feed = feed.into();
    let layout = conn.layout();
    let shard = layout.shard(feed.owner());
    let mut invocation = REBUILD.prepare_invoke();
    invocation.key(feed.key(layout));
    for post in posts {
        invocation.key(keys::deleted(shard, post.id));
    }
    for author in &authors {
        invocation.key(keys::unfollowed(shard, *author));
    }
    invocation
        .arg(limits.max_len)
        .arg(limits.ttl.as_secs())
        .arg(&started.placeholder)
        .arg(posts.len())
        .arg(pulls.len());
    for post in posts {
        invocation
            .arg(stored(post.score))
            .arg(post.id.to_string())
            .arg(index(&post.author));
    }
    for author in pulls {
        invocation.arg(pull_member(*author)).arg(index(author));
    }
    Ok(invocation.invoke_async::<u64>(conn).await? > 0)
}
