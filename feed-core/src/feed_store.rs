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
//! A home feed holds everything its reader's page needs from Redis alone:
//! the posts fanned out to them, their own posts, and one `pull:` member
//! (score 2) per followed author whose posts are pulled instead of fanned
//! out (a celebrity), whose newest posts are in that author's timeline
//! ([`Timeline::Author`], laid out as a feed). Each post's copy is cached
//! beside it ([`post_cache`]).
//!
//! Redis keeps the feeds of users who read, not of everyone followed. A
//! feed is created by its reader, built from PostgreSQL, and expires once
//! nobody reads it; fan-out writes only to feeds that exist. A reader first
//! adds a placeholder ([`begin_rebuild`]), so fan-out writes to the feed
//! from then on, then reads PostgreSQL and writes the feed ([`rebuild`])
//! with a sentinel member (score 0, after every post) that marks it
//! complete. A reader that finds no sentinel (a feed never built, lost, or
//! in the middle of a rebuild) rebuilds it instead of trusting it.
//!
//! The sentinel names the *epoch* it was built in: the run id of the Redis
//! server, which changes on every restart. A server restarted from a
//! snapshot or a truncated append-only file may hold a feed, or a post's
//! copy, from before a delete or an unfollow that has answered since, along
//! with every mark that removal left; so what another epoch wrote counts as
//! missing, and is built again from PostgreSQL when next read. Every read
//! and every script asks the server for its epoch (`INFO server`, in the
//! same round trip), so no process has to notice the restart.
//!
//! Placeholders score 1, the sentinel 0 and pulls 2, so a page, which
//! reads only negative scores, never meets them.
//!
//! Every script here that adds posts checks, in the same atomic step, the
//! marks deletes and unfollows leave ([`crate::removals`]), so a write
//! that read PostgreSQL before a removal cannot put back what the removal
//! took out.

use std::time::Duration;

use redis::RedisResult;
use redis::aio::ConnectionLike;
use uuid::Uuid;

use crate::bus::Keyspace;
use crate::keys::{self, Layout};

mod deliver;
mod post_cache;
mod read;
mod rebuild;

pub use deliver::FeedWriter;
use deliver::add_to_kept;
pub use post_cache::{CachedPost, cache_posts, cached_posts, copies, set_like_count};
pub use read::{HomePage, Page, read, read_home};
pub use rebuild::{Rebuild, begin_rebuild, rebuild};

/// How feeds are kept.
#[derive(Debug, Clone, Copy)]
pub struct FeedLimits {
    /// Posts a feed holds (fan-out lets it grow [`TRIM_SLACK`] past this
    /// before trimming); older ones are trimmed, and the home feed ends
    /// there.
    pub max_len: usize,
    /// A feed nobody reads expires after this long; reading renews it.
    pub ttl: Duration,
}

/// A sorted set of posts laid out as this module describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeline {
    /// A user's home feed.
    Home(Uuid),
    /// An author's own newest posts, kept for celebrities only.
    Author(Uuid),
}

impl Timeline {
    fn key(self, layout: Layout) -> String {
        match self {
            Timeline::Home(user) => keys::feed(layout, user),
            Timeline::Author(author) => keys::timeline(layout, author),
        }
    }

    /// Whose it is, which decides its shard.
    fn owner(self) -> Uuid {
        match self {
            Timeline::Home(id) | Timeline::Author(id) => id,
        }
    }
}

/// A bare user id is their home feed.
impl From<Uuid> for Timeline {
    fn from(user: Uuid) -> Timeline {
        Timeline::Home(user)
    }
}

/// A post's score: its creation time in Unix milliseconds.
pub fn score(created_at: chrono::DateTime<chrono::Utc>) -> i64 {
    created_at.timestamp_millis()
}

/// The score Redis stores for a post's [`score`] (see the module's layout).
fn stored(score: i64) -> i64 {
    -score
}

/// How far past its length fan-out lets a feed grow before trimming it back.
/// Trimming on every add would cost a command per delivery, which Redis
/// executes and appends to its AOF (doubling the AOF's growth, and so its
/// rewrites); in steps of 32, trims are a thirty-second of the deliveries.
/// Readers page into the extra, older posts at most.
pub const TRIM_SLACK: usize = 32;

/// What a followed celebrity's member in a home feed is called, followed
/// by their id.
const PULL_PREFIX: &str = "pull:";

/// Lua shared by the scripts: `zadd_all(key, pairs)` adds a table of
/// (score, member) pairs to `key`, in slices, since Lua's `unpack` takes a
/// few thousand values at most, and returns how many were new;
/// `user_of(key)` is the user a feed key ([`keys::feed`]) belongs to, what
/// follows its last colon; `trim(key, n)` keeps a feed's newest `n` posts
/// and every member that is not a post; `epoch()` is this server's run id
/// (see the module's layout); `notify(key, pairs)` tells streams open on a
/// feed what it gained.
macro_rules! lua_helpers {
    () => {
        r"
local function user_of(key)
  return string.match(key, '[^:]+$')
end
local function zadd_all(key, pairs)
  local added = 0
  for i = 1, #pairs, 512 do
    added = added + redis.call('ZADD', key, unpack(pairs, i, math.min(i + 511, #pairs)))
  end
  return added
end
local function trim(key, n)
  local posts = redis.call('ZCOUNT', key, '-inf', '(0')
  if posts > n then
    redis.call('ZREMRANGEBYRANK', key, n, posts - 1)
  end
end
-- A plain find, not a pattern: the run id is always 40 hex digits, and a
-- pattern scanning the whole section cost 1.3 µs more per call.
local function epoch()
  local info = redis.call('INFO', 'server')
  local at = string.find(info, 'run_id:', 1, true)
  return string.sub(info, at + 7, at + 46)
end
-- Streams open on the feed hear of what it gained (see `crate::live`): a
-- feed with no live key costs one EXISTS.
local function notify(key, pairs)
  local channel = 'live:' .. key
  if redis.call('EXISTS', channel) == 1 then
    for i = 2, #pairs, 2 do
      redis.call('PUBLISH', channel, '+' .. pairs[i])
    end
  end
end
"
    };
}
pub(crate) use lua_helpers;

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
pub async fn add_to_feeds<T: Into<Timeline> + Copy>(
    conn: &(impl ConnectionLike + Keyspace + Clone),
    feeds: &[T],
    post: FeedPost,
    limits: FeedLimits,
) -> RedisResult<u64> {
    let feeds: Vec<Timeline> = feeds.iter().map(|f| (*f).into()).collect();
    add_to_kept(
        conn,
        &feeds,
        post.author,
        &[(post.id, post.score)],
        None,
        limits,
    )
    .await
}

/// Adds posts of one author to one feed (a backfill after a follow), if
/// the feed exists, leaving out what was deleted or unfollowed since
/// PostgreSQL was read; returns whether it wrote the feed.
pub async fn add_posts(
    conn: &(impl ConnectionLike + Keyspace + Clone),
    user: Uuid,
    author: Uuid,
    posts: &[(Uuid, i64)],
    limits: FeedLimits,
) -> RedisResult<bool> {
    if posts.is_empty() {
        return Ok(false);
    }
    let feeds = [Timeline::Home(user)];
    Ok(add_to_kept(conn, &feeds, author, posts, None, limits).await? > 0)
}

/// Caches a new post's copy (`KEYS[1]`, `ARGV[1]`, living `ARGV[2]`
/// seconds, stamped with the epoch) and adds the post (`ARGV[5]`, stored
/// score `ARGV[4]`) to its author's feed `KEYS[4]` if Redis keeps it,
/// trimming it back to `ARGV[3]` posts once [`TRIM_SLACK`] over; neither if
/// the post has a tombstone (`KEYS[2]`) or is being deleted (`KEYS[3]`).
/// What [`cache_posts`] and [`add_to_feeds`] do for the author's own feed, in
/// one call: the create waits for it. Returns 1 if it wrote the copy.
static SHOW_TO_AUTHOR: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(concat!(
        lua_helpers!(),
        r"
if redis.call('EXISTS', KEYS[2], KEYS[3]) > 0 then
  return 0
end
redis.call('SET', KEYS[1], epoch() .. ' ' .. ARGV[1], 'EX', ARGV[2])
local key = KEYS[4]
local n = redis.call('ZCARD', key)
if n > 0 then
  local pair = {ARGV[4], ARGV[5]}
  local added = redis.call('ZADD', key, ARGV[4], ARGV[5])
  if n + added > tonumber(ARGV[3]) + 1 + tonumber(ARGV[6]) then
    trim(key, tonumber(ARGV[3]))
  end
  if added > 0 then
    notify(key, pair)
  end
end
return 1
",
    ))
});

/// Shows a new post to its author at once: caches its copy and adds it to
/// the author's own feed if Redis keeps it, in one round trip, unless it
/// was deleted meanwhile (see [`crate::removals`]). On a cluster, where the
/// post's copy and its author's feed are mostly in different shards, the
/// copy first (the marks beside it decide), then the feed.
pub async fn show_to_author(
    conn: &(impl ConnectionLike + Keyspace + Clone),
    post: &CachedPost,
    limits: FeedLimits,
) -> RedisResult<()> {
    let layout = conn.layout();
    let shard = layout.shard(post.id);
    let together = shard == layout.shard(post.author_id);
    let copy_key = keys::post(layout, post.id);
    // Apart, the script is given a feed in the copy's slot that no reader
    // has: it writes the copy alone.
    let feed_key = match together {
        true => keys::feed(layout, post.author_id),
        false => keys::nothing_beside(&copy_key),
    };
    let json = serde_json::to_string(post).expect("a cached post always serializes");
    let shown: i64 = SHOW_TO_AUTHOR
        .key(&copy_key)
        .key(keys::deleted(shard, post.id))
        .key(keys::withdrawn(layout, post.id))
        .key(feed_key)
        .arg(json)
        .arg(limits.ttl.as_secs())
        .arg(limits.max_len)
        .arg(stored(score(post.created_at)))
        .arg(post.id.to_string())
        .arg(TRIM_SLACK)
        .invoke_async(&mut conn.clone())
        .await?;
    if shown == 1 && !together {
        let feed = [Timeline::Home(post.author_id)];
        let own = [(post.id, score(post.created_at))];
        add_to_kept(conn, &feed, post.author_id, &own, None, limits).await?;
    }
    Ok(())
}

/// Tells those of many feeds that exist to pull `author`'s timeline (they
/// became a celebrity, or were followed as one), unless the feed's user
/// unfollowed them since PostgreSQL was read; returns how many feeds were
/// written.
pub async fn add_pulls(
    conn: &(impl ConnectionLike + Keyspace + Clone),
    users: &[Uuid],
    author: Uuid,
    limits: FeedLimits,
) -> RedisResult<u64> {
    let feeds: Vec<Timeline> = users.iter().map(|u| Timeline::Home(*u)).collect();
    let pull = (PULL_SCORE, pull_member(author));
    add_to_kept(conn, &feeds, author, &[], Some(pull), limits).await
}

/// Removes posts, and the pull members of `pulls`, from many feeds: one
/// round trip (on a cluster, one per shard, all in flight at once).
pub async fn remove_from_feeds<T: Into<Timeline> + Copy>(
    conn: &(impl ConnectionLike + Keyspace + Clone),
    feeds: &[T],
    posts: &[Uuid],
    pulls: &[Uuid],
) -> RedisResult<()> {
    let mut members: Vec<String> = posts.iter().map(Uuid::to_string).collect();
    members.extend(pulls.iter().map(|author| pull_member(*author)));
    if feeds.is_empty() || members.is_empty() {
        return Ok(());
    }
    let layout = conn.layout();
    let groups = layout.group(feeds.iter().map(|f| (*f).into()), |f: &Timeline| f.owner());
    let calls = groups.into_iter().map(|(_, feeds)| {
        let mut pipe = redis::pipe();
        for feed in feeds {
            pipe.zrem(feed.key(layout), &members).ignore();
        }
        let mut conn = conn.clone();
        async move { pipe.query_async::<()>(&mut conn).await }
    });
    futures_util::future::try_join_all(calls).await?;
    Ok(())
}

/// The score of pull members (see the module's layout).
pub(crate) const PULL_SCORE: i64 = 2;

/// A followed celebrity's member in a home feed.
fn pull_member(author: Uuid) -> String {
    format!("{PULL_PREFIX}{author}")
}

/// The epoch (see the module's layout) in the answer to `INFO server`.
fn epoch(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .map(str::trim)
}

/// The sentinel of a feed built in `epoch`.
fn built(epoch: &str) -> String {
    format!("built:{epoch}")
}

/// The celebrity a pull member names.
fn pulled(member: &str) -> Option<Uuid> {
    Uuid::try_parse(member.strip_prefix(PULL_PREFIX)?).ok()
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
pub async fn members(
    conn: &mut (impl ConnectionLike + Keyspace),
    feed: impl Into<Timeline>,
) -> RedisResult<Vec<Uuid>> {
    let raw: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(feed.into().key(conn.layout()))
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
