//! Reading a page of a feed, or of an author's timeline.

use redis::RedisResult;
use redis::aio::ConnectionLike;
use uuid::Uuid;

use super::{FeedLimits, Timeline, lua_helpers, newest_first, parse, pulled, stored};
use crate::keys;

/// A page read from a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    /// The feed has not been built in this epoch (or was lost): rebuild it
    /// first.
    NotBuilt,
    /// Up to `limit` entries older than the cursor, newest first, and
    /// whether the feed holds more beyond them.
    Entries { posts: Vec<(Uuid, i64)>, more: bool },
}

/// A page of a home feed and what the reader's page needs beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomePage {
    pub page: Page,
    /// Followed celebrities, whose timelines the page merges.
    pub pulls: Vec<Uuid>,
    /// Authors the reader unfollowed whose posts may still be in the feed
    /// (see [`crate::removals`]): the page leaves them out.
    pub hidden: Vec<Uuid>,
}

/// Reads `ARGV[3]` members of the feed `KEYS[1]` from offset `ARGV[2]`,
/// starting at the stored score `ARGV[1]`, with their scores, and renews
/// its TTL (`ARGV[4]`); false when the feed is not built in this epoch.
/// Also returns its pull members and, when `KEYS[2]` is given, the members
/// of that reader's hidden authors.
static READ: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(concat!(
        lua_helpers!(),
        r"
local key = KEYS[1]
if not redis.call('ZSCORE', key, 'built:' .. epoch()) then
  return false
end
local page = redis.call('ZRANGE', key, ARGV[1], '(0', 'BYSCORE', 'LIMIT', ARGV[2], ARGV[3], 'WITHSCORES')
redis.call('EXPIRE', key, ARGV[4])
local pulls = redis.call('ZRANGE', key, 2, 2, 'BYSCORE')
local hidden = {}
if KEYS[2] then
  hidden = redis.call('ZRANGE', KEYS[2], 0, -1)
end
return {page, pulls, hidden}
",
    ))
});

/// Reads up to `limit` posts older than `before` (a post id and its score),
/// newest first, and renews the feed's TTL.
pub async fn read(
    conn: &mut impl ConnectionLike,
    feed: impl Into<Timeline>,
    before: Option<(Uuid, i64)>,
    limit: usize,
    limits: FeedLimits,
) -> RedisResult<Page> {
    Ok(read_with(conn, feed.into(), None, before, limit, limits)
        .await?
        .page)
}

/// Reads a page of `user`'s home feed (see [`read`]), with the followed
/// celebrities and the hidden authors.
pub async fn read_home(
    conn: &mut impl ConnectionLike,
    user: Uuid,
    before: Option<(Uuid, i64)>,
    limit: usize,
    limits: FeedLimits,
) -> RedisResult<HomePage> {
    read_with(
        conn,
        Timeline::Home(user),
        Some(keys::hidden(user)),
        before,
        limit,
        limits,
    )
    .await
}

async fn read_with(
    conn: &mut impl ConnectionLike,
    feed: Timeline,
    hidden_key: Option<String>,
    before: Option<(Uuid, i64)>,
    limit: usize,
    limits: FeedLimits,
) -> RedisResult<HomePage> {
    let key = feed.key();
    let min = before.map_or_else(|| "-inf".to_owned(), |(_, score)| stored(score).to_string());
    // Posts sharing the cursor's millisecond come back first and are skipped
    // below; over-fetch so a page is still full after skipping them.
    let mut offset = 0usize;
    let batch = limit + 16;
    let mut found: Vec<(Uuid, i64)> = Vec::with_capacity(batch);
    let mut extras = (Vec::new(), Vec::new());
    loop {
        let mut invocation = READ.key(&key);
        if let Some(hidden) = &hidden_key {
            invocation.key(hidden);
        }
        invocation
            .arg(&min)
            .arg(offset)
            .arg(batch)
            .arg(limits.ttl.as_secs());
        type Read = Option<(Vec<(String, f64)>, Vec<String>, Vec<String>)>;
        let Some((raw, pulls, hidden)) = invocation.invoke_async::<Read>(conn).await? else {
            return Ok(HomePage {
                page: Page::NotBuilt,
                pulls: Vec::new(),
                hidden: Vec::new(),
            });
        };
        if offset == 0 {
            extras = (
                pulls.iter().filter_map(|m| pulled(m)).collect(),
                hidden
                    .iter()
                    .filter_map(|m| Uuid::try_parse(m).ok())
                    .collect(),
            );
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
    Ok(HomePage {
        page: Page::Entries { posts: found, more },
        pulls: extras.0,
        hidden: extras.1,
    })
}
