//! Home feeds in Redis: one sorted set per user of post ids, newest kept,
//! oldest trimmed.
//!
//! # Layout
//!
//! A post is stored under its *negated* creation time in milliseconds, so a
//! feed's newest post is its first member. Fan-out almost always adds a
//! post newer than everything in the feed, and Redis' skiplist places a new
//! first member in a few steps, where a new last member takes a walk
//! across every level: 2.9 against 5.1 µs per ZADD into 10,000 feeds of 800
//! posts, measured on the bench machine. Callers see plain milliseconds
//! ([`score`]); the negation stays in this module.
//!
//! Redis keeps the feeds of users who read, not of everyone followed. A
//! feed is created by its reader, built from PostgreSQL, and expires once
//! nobody reads it; fan-out writes only to feeds that exist. A reader first
//! adds a placeholder ([`begin_rebuild`]), so fan-out writes to the feed
//! from then on, then reads PostgreSQL and writes the feed ([`rebuild`])
//! with a [`SENTINEL`] member (score 0, after every post) that marks it
//! complete. A reader that finds no sentinel (a feed never built, lost, or
//! in the middle of a rebuild) rebuilds it instead of trusting it.
//!
//! Placeholders score 1 and the sentinel 0, so a page, which reads only
//! negative scores, never meets either.
//!
//! Every script here that adds posts checks, in the same atomic step, the
//! marks deletes and unfollows leave ([`crate::removals`]), so a write
//! that read PostgreSQL before a removal cannot put back what the removal
//! took out.

use std::time::Duration;

use redis::RedisResult;
use redis::aio::ConnectionLike;
use uuid::Uuid;

use crate::keys;

/// The member that marks a feed as built from PostgreSQL.
pub const SENTINEL: &str = "built:newest-first";

/// How feeds are kept.
#[derive(Debug, Clone, Copy)]
pub struct FeedLimits {
    /// Posts a feed holds (fan-out lets it grow [`TRIM_SLACK`] past this
    /// before trimming); older ones are trimmed, and the home feed ends
    /// there (a user's own and followed celebrities' posts go further).
    pub max_len: usize,
    /// A feed nobody reads expires after this long; reading renews it.
    pub ttl: Duration,
}

/// A post's score: its creation time in Unix milliseconds.
pub fn score(created_at: chrono::DateTime<chrono::Utc>) -> i64 {
    created_at.timestamp_millis()
}

/// The score Redis stores for a post's [`score`] (see the module's layout).
fn stored(score: i64) -> i64 {
    -score
}

/// Feeds one script call writes. The script runs atomically, so it holds
/// Redis for its whole length: 100 feeds take well under a millisecond,
/// short enough that readers queued behind it barely notice.
const FEEDS_PER_CALL: usize = 100;

/// How far past its length fan-out lets a feed grow before trimming it back.
/// Trimming on every add would cost a command per delivery, which Redis
/// executes and appends to its AOF (doubling the AOF's growth, and so its
/// rewrites); in steps of 32, trims are a thirty-second of the deliveries.
/// Readers page into the extra, older posts at most.
pub const TRIM_SLACK: usize = 32;

/// What a reader's placeholder member is called, followed by a random id:
/// the member a reader adds before reading a feed from PostgreSQL, so that
/// fan-out writes to the feed from then on (see [`begin_rebuild`]). The
/// feed is not built until a rebuild adds the sentinel and removes it.
const PLACEHOLDER_PREFIX: &str = "building:";

/// The TTL of a feed that holds nothing but placeholders: a rebuild takes
/// milliseconds and sets the feed's TTL itself, so this only bounds how
/// long the key of a reader that failed in between stays (reads renew it,
/// as they renew every feed's).
const PLACEHOLDER_TTL: Duration = Duration::from_secs(60);

/// A rebuild under way: the placeholder its reader added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuild {
    placeholder: String,
}

/// Lua shared by the scripts below: `zadd_all(key, pairs)` adds a table of
/// (score, member) pairs to `key`, in slices, since Lua's `unpack` takes a
/// few thousand values at most, and returns how many were new;
/// `user_of(key)` is the user a feed key ([`keys::feed`]) belongs to, what
/// follows its first colon.
macro_rules! lua_helpers {
    () => {
        r"
local function user_of(key)
  return string.sub(key, string.find(key, ':', 1, true) + 1)
end
local function zadd_all(key, pairs)
  local added = 0
  for i = 1, #pairs, 512 do
    added = added + redis.call('ZADD', key, unpack(pairs, i, math.min(i + 511, #pairs)))
  end
  return added
end
"
    };
}

/// Adds posts of one author to each feed of `KEYS` that exists, and trims
/// each back to `ARGV[1]` posts once it is `ARGV[2]` (the slack) over;
/// returns how many feeds it wrote.
///
/// `KEYS[1]` holds the author's unfollow marks and `KEYS[2..n+1]` the
/// tombstones of the `n = ARGV[3]` posts, whose (score, member) pairs are
/// `ARGV[4..]`; the feeds follow. A deleted post is not added, nor are the
/// author's posts to the feed of a user who unfollowed them (see
/// [`crate::removals`]).
///
/// A feed that does not exist is left alone: nobody read it lately (or
/// Redis lost it), and its next read builds it from PostgreSQL, this post
/// included. Writing it would fill Redis with feeds of users who are not
/// reading. One call instead of pipelined commands per feed: Redis parses,
/// queues and answers one command, which is most of a small command's cost.
static ADD_TO_KEPT_FEEDS: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(concat!(
        lua_helpers!(),
        r"
local max_len = tonumber(ARGV[1])
local most = max_len + 1 + tonumber(ARGV[2])
local posts = tonumber(ARGV[3])
local live = {}
for i = 1, posts do
  if redis.call('EXISTS', KEYS[1 + i]) == 0 then
    live[#live + 1] = ARGV[2 + 2 * i]
    live[#live + 1] = ARGV[3 + 2 * i]
  end
end
if #live == 0 then
  return 0
end
-- Whether the feed's user unfollowed the author: looked up only when
-- someone did lately.
local marked = redis.call('EXISTS', KEYS[1]) == 1
local function unfollowed(key)
  return redis.call('ZSCORE', KEYS[1], user_of(key))
end
local written = 0
for k = posts + 2, #KEYS do
  local key = KEYS[k]
  -- An empty sorted set does not exist: 0 means no feed is kept. (One call
  -- instead of EXISTS, then ZCARD after the add.)
  local n = redis.call('ZCARD', key)
  if n > 0 and not (marked and unfollowed(key)) then
    if n + zadd_all(key, live) > most then
      -- The last rank is the sentinel when the feed is built: keep it and
      -- the newest max_len posts. (Of posts sharing the last millisecond
      -- kept, the older stay: rare, and the feed ends there either way.)
      redis.call('ZREMRANGEBYRANK', key, max_len, -2)
    end
    written = written + 1
  end
end
return written
",
    ))
});

/// Writes a rebuilt feed over `KEYS[1]`, trimmed to `ARGV[1]` posts and
/// living `ARGV[2]` seconds, with the sentinel `ARGV[5]`; but only if the
/// reader's placeholder `ARGV[3]` is still there. The reader added it
/// before reading PostgreSQL; if Redis lost the key since (a restart, an
/// eviction), fan-out passed over the feed meanwhile, so the rebuild may
/// lack a post committed after the read and must not be marked built, even
/// if another reader has re-created the key since. Returns 1 if written.
///
/// The `n = ARGV[4]` posts are triples in `ARGV[6..]`: score, member, and
/// the index of their author's unfollow marks among `KEYS[n+2..]`;
/// `KEYS[2..n+1]` are their tombstones. A post deleted, or by an author
/// the feed's reader unfollowed, since PostgreSQL was read is left
/// out (see [`crate::removals`]).
static REBUILD: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(concat!(
        lua_helpers!(),
        r"
local key = KEYS[1]
if not redis.call('ZSCORE', key, ARGV[3]) then
  return 0
end
local posts = tonumber(ARGV[4])
local user = user_of(key)
local unfollowed = {}
for k = posts + 2, #KEYS do
  unfollowed[k - posts - 1] = redis.call('ZSCORE', KEYS[k], user) ~= false
end
local live = {'0', ARGV[5]}
for i = 1, posts do
  local at = 3 + 3 * i
  if not unfollowed[tonumber(ARGV[at + 2])] and redis.call('EXISTS', KEYS[1 + i]) == 0 then
    live[#live + 1] = ARGV[at]
    live[#live + 1] = ARGV[at + 1]
  end
end
-- The placeholders (and a sentinel, if another rebuild was written) go:
-- scores 0 and up. The posts stay, as fan-out may have added to them
-- meanwhile.
redis.call('ZREMRANGEBYSCORE', key, 0, '+inf')
zadd_all(key, live)
redis.call('ZREMRANGEBYRANK', key, tonumber(ARGV[1]), -2)
redis.call('EXPIRE', key, ARGV[2])
return 1
",
    ))
});

/// Sets a post's cached copy (`ARGV[1]`, living `ARGV[2]` seconds) unless
/// it has a tombstone (`KEYS[2]`): a fan-out that read the post before its
/// delete must not cache it again once the delete has dropped the copy.
static CACHE_UNLESS_DELETED: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
",
    )
});

/// A post as a rebuild writes it to a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedPost {
    pub id: Uuid,
    pub author: Uuid,
    /// Its [`score`].
    pub score: i64,
}

/// Adds one post to those of many feeds that exist, trimming each (see
/// [`TRIM_SLACK`]), unless the post was deleted or the feed's user
/// unfollowed its author since PostgreSQL was read (see
/// [`crate::removals`]); the calls for all of them are in flight at once.
/// Returns how many feeds were written: the others are rebuilt from
/// PostgreSQL when next read.
pub async fn add_to_feeds(
    conn: &(impl ConnectionLike + Clone),
    users: &[Uuid],
    post: FeedPost,
    limits: FeedLimits,
) -> RedisResult<u64> {
    let member = post.id.to_string();
    let calls = users.chunks(FEEDS_PER_CALL).map(|chunk| {
        let mut invocation = ADD_TO_KEPT_FEEDS.prepare_invoke();
        invocation
            .key(keys::unfollowed(post.author))
            .key(keys::deleted(post.id));
        for user in chunk {
            invocation.key(keys::feed(*user));
        }
        invocation
            .arg(limits.max_len)
            .arg(TRIM_SLACK)
            .arg(1)
            .arg(stored(post.score))
            .arg(&member);
        let mut conn = conn.clone();
        async move { invocation.invoke_async::<u64>(&mut conn).await }
    });
    Ok(futures_util::future::try_join_all(calls)
        .await?
        .iter()
        .sum())
}

/// Adds posts of one author to one feed (a backfill after a follow), if
/// the feed exists, leaving out what was deleted or unfollowed since
/// PostgreSQL was read; returns whether it wrote the feed.
pub async fn add_posts(
    conn: &mut impl ConnectionLike,
    user: Uuid,
    author: Uuid,
    posts: &[(Uuid, i64)],
    limits: FeedLimits,
) -> RedisResult<bool> {
    if posts.is_empty() {
        return Ok(false);
    }
    let mut invocation = ADD_TO_KEPT_FEEDS.prepare_invoke();
    invocation.key(keys::unfollowed(author));
    for (id, _) in posts {
        invocation.key(keys::deleted(*id));
    }
    invocation
        .key(keys::feed(user))
        .arg(limits.max_len)
        .arg(TRIM_SLACK)
        .arg(posts.len());
    for (score, member) in entries(posts) {
        invocation.arg(score).arg(member);
    }
    Ok(invocation.invoke_async::<u64>(conn).await? > 0)
}

/// Removes posts from many feeds in one round trip.
pub async fn remove_from_feeds(
    conn: &mut impl ConnectionLike,
    users: &[Uuid],
    posts: &[Uuid],
) -> RedisResult<()> {
    if users.is_empty() || posts.is_empty() {
        return Ok(());
    }
    let members: Vec<String> = posts.iter().map(Uuid::to_string).collect();
    let mut pipe = redis::pipe();
    for user in users {
        pipe.zrem(keys::feed(*user), &members).ignore();
    }
    pipe.query_async(conn).await
}

/// Marks a feed about to be read from PostgreSQL and rebuilt: from now
/// on fan-out writes to it, so a post committed after that read still
/// reaches it. Call before reading PostgreSQL, then [`rebuild`].
pub async fn begin_rebuild(conn: &mut impl ConnectionLike, user: Uuid) -> RedisResult<Rebuild> {
    let key = keys::feed(user);
    let placeholder = format!("{PLACEHOLDER_PREFIX}{}", Uuid::new_v4());
    redis::pipe()
        .zadd(&key, &placeholder, 1)
        .ignore()
        .cmd("EXPIRE")
        .arg(&key)
        .arg(PLACEHOLDER_TTL.as_secs())
        .arg("NX")
        .ignore()
        .query_async::<()>(conn)
        .await?;
    Ok(Rebuild { placeholder })
}

/// Replaces a feed with entries read from PostgreSQL after
/// [`begin_rebuild`], marked as built, leaving out posts deleted or
/// unfollowed since that read (see [`crate::removals`]). Returns false,
/// writing nothing, if Redis lost the feed since (it may then lack a post
/// fan-out passed over), or if another reader's rebuild has been written
/// since; the next read rebuilds it if it is not built.
pub async fn rebuild(
    conn: &mut impl ConnectionLike,
    user: Uuid,
    started: &Rebuild,
    posts: &[FeedPost],
    limits: FeedLimits,
) -> RedisResult<bool> {
    let mut authors: Vec<Uuid> = posts.iter().map(|p| p.author).collect();
    authors.sort_unstable();
    authors.dedup();
    let mut invocation = REBUILD.prepare_invoke();
    invocation.key(keys::feed(user));
    for post in posts {
        invocation.key(keys::deleted(post.id));
    }
    for author in &authors {
        invocation.key(keys::unfollowed(*author));
    }
    invocation
        .arg(limits.max_len)
        .arg(limits.ttl.as_secs())
        .arg(&started.placeholder)
        .arg(posts.len())
        .arg(SENTINEL);
    for post in posts {
        let author = authors.binary_search(&post.author).unwrap_or_default() + 1;
        invocation
            .arg(stored(post.score))
            .arg(post.id.to_string())
            .arg(author);
    }
    Ok(invocation.invoke_async::<u64>(conn).await? > 0)
}

/// A page read from a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    /// The feed has not been built (or was lost): rebuild it first.
    NotBuilt,
    /// Up to `limit` entries older than the cursor, newest first, and
    /// whether the feed holds more beyond them.
    Entries { posts: Vec<(Uuid, i64)>, more: bool },
}

/// Reads up to `limit` posts older than `before` (a post id and its score),
/// newest first, and renews the feed's TTL.
pub async fn read(
    conn: &mut impl ConnectionLike,
    user: Uuid,
    before: Option<(Uuid, i64)>,
    limit: usize,
    limits: FeedLimits,
) -> RedisResult<Page> {
    let key = keys::feed(user);
    let min = before.map_or_else(|| "-inf".to_owned(), |(_, score)| stored(score).to_string());
    // Posts sharing the cursor's millisecond come back first and are skipped
    // below; over-fetch so a page is still full after skipping them.
    let mut offset = 0usize;
    let batch = limit + 16;
    let mut found: Vec<(Uuid, i64)> = Vec::with_capacity(batch);
    loop {
        let (sentinel, raw): (Option<f64>, Vec<(String, f64)>) = redis::pipe()
            .zscore(&key, SENTINEL)
            .cmd("ZRANGE")
            .arg(&key)
            .arg(&min)
            .arg("(0")
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(offset)
            .arg(batch)
            .arg("WITHSCORES")
            .expire(&key, limits.ttl.as_secs() as i64)
            .ignore()
            .query_async(conn)
            .await?;
        if sentinel.is_none() {
            return Ok(Page::NotBuilt);
        }
        let fetched = raw.len();
        found.extend(parse(raw).filter(|&(id, score)| {
            before.is_none_or(|(cursor_id, cursor_score)| score != cursor_score || id < cursor_id)
        }));
        // Done once past the page and past the millisecond it ends in:
        // within a millisecond Redis returns the oldest post first, so that
        // millisecond's posts must all be in hand to pick the newest.
        let past_page =
            found.len() > limit && (limit == 0 || found[limit - 1].1 != found[found.len() - 1].1);
        if fetched < batch || past_page {
            break;
        }
        offset += fetched;
    }
    newest_first(&mut found);
    let more = found.len() > limit;
    found.truncate(limit);
    Ok(Page::Entries { posts: found, more })
}

/// Posts and their [`score`]s as the members and scores Redis stores.
fn entries(posts: &[(Uuid, i64)]) -> Vec<(i64, String)> {
    posts
        .iter()
        .map(|(id, score)| (stored(*score), id.to_string()))
        .collect()
}

/// Posts and their [`score`]s from `ZRANGE ... WITHSCORES`.
fn parse(raw: Vec<(String, f64)>) -> impl Iterator<Item = (Uuid, i64)> {
    raw.into_iter().filter_map(|(member, score)| {
        Uuid::try_parse(&member)
            .ok()
            .map(|id| (id, stored(score as i64)))
    })
}

/// Orders posts as feeds are read: by score, then id, newest first.
fn newest_first(posts: &mut [(Uuid, i64)]) {
    posts.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
}

/// Every post a feed holds, newest first, built or not: for
/// tests and for operators looking into a feed.
pub async fn members(conn: &mut impl ConnectionLike, user: Uuid) -> RedisResult<Vec<Uuid>> {
    let raw: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(keys::feed(user))
        .arg("-inf")
        .arg("(0")
        .arg("BYSCORE")
        .arg("WITHSCORES")
        .query_async(conn)
        .await?;
    let mut posts: Vec<(Uuid, i64)> = parse(raw).collect();
    newest_first(&mut posts);
    Ok(posts.into_iter().map(|(id, _)| id).collect())
}

/// Sets the like count (`ARGV[1]`) in a post's cached copy (`KEYS[1]`),
/// if it has one; keeps its TTL. Returns 1 if it did.
static SET_LIKE_COUNT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local json = redis.call('GET', KEYS[1])
if not json then
  return 0
end
local post = cjson.decode(json)
post.like_count = tonumber(ARGV[1])
redis.call('SET', KEYS[1], cjson.encode(post), 'KEEPTTL')
return 1
",
    )
});

/// Keeps a cached post's like count as PostgreSQL has it, so feeds served
/// from Redis alone show likes as the workers last applied them. A post
/// with no cached copy (deleted, expired, or not fanned out yet) is left
/// alone. The engagement counter a ranking would read.
pub async fn set_like_count(
    conn: &mut impl ConnectionLike,
    post_id: Uuid,
    like_count: i64,
) -> RedisResult<()> {
    SET_LIKE_COUNT
        .key(keys::post(post_id))
        .arg(like_count)
        .invoke_async::<i64>(conn)
        .await?;
    Ok(())
}

/// A post as cached for serving feeds while PostgreSQL is down.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedPost {
    pub id: Uuid,
    pub author_id: Uuid,
    pub author_handle: String,
    pub content: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// As the workers last applied it (see [`set_like_count`]).
    pub like_count: i64,
}

/// Caches a post for as long as feeds live, unless it has been deleted
/// since it was read (see [`crate::removals`]).
pub async fn cache_post(
    conn: &mut impl ConnectionLike,
    post: &CachedPost,
    limits: FeedLimits,
) -> RedisResult<()> {
    let json = serde_json::to_string(post).expect("a cached post always serializes");
    CACHE_UNLESS_DELETED
        .key(keys::post(post.id))
        .key(keys::deleted(post.id))
        .arg(json)
        .arg(limits.ttl.as_secs())
        .invoke_async::<i64>(conn)
        .await?;
    Ok(())
}

/// The cached copies of those posts that have one, in the order asked.
pub async fn cached_posts(
    conn: &mut impl ConnectionLike,
    ids: &[Uuid],
) -> RedisResult<Vec<CachedPost>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = ids.iter().map(|id| keys::post(*id)).collect();
    let found: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(conn).await?;
    Ok(found
        .into_iter()
        .flatten()
        .filter_map(|json| serde_json::from_str(&json).ok())
        .collect())
}
