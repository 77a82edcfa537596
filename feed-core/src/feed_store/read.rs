//! Reading a page of a feed, or of an author's timeline.

use redis::RedisResult;
use redis::aio::ConnectionLike;
use uuid::Uuid;

use super::{FeedLimits, PULL_SCORE, Timeline, built, epoch, newest_first, parse, pulled, stored};
use crate::bus::Keyspace;
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

/// Reads up to `limit` posts older than `before` (a post id and its score),
/// newest first, and renews the feed's TTL.
pub async fn read(
    conn: &mut (impl ConnectionLike + Keyspace),
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
    conn: &mut (impl ConnectionLike + Keyspace),
    user: Uuid,
    before: Option<(Uuid, i64)>,
    limit: usize,
    limits: FeedLimits,
) -> RedisResult<HomePage> {
    let hidden = keys::hidden(conn.layout(), user);
    read_with(
        conn,
        Timeline::Home(user),
        Some(hidden),
        before,
        limit,
        limits,
    )
    .await
}

async fn read_with(
    conn: &mut (impl ConnectionLike + Keyspace),
    feed: Timeline,
    hidden_key: Option<String>,
    before: Option<(Uuid, i64)>,
    limit: usize,
    limits: FeedLimits,
) -> RedisResult<HomePage> {
    let key = feed.key(conn.layout());
    // A timeline has no hidden authors: its read asks for a key that does
    // not exist, in the feed's hash slot, so both reads are one pipeline.
    let hidden_key = hidden_key.unwrap_or_else(|| keys::nothing_beside(&key));
    let min = before.map_or_else(|| "-inf".to_owned(), |(_, score)| stored(score).to_string());
    // Posts sharing the cursor's millisecond come back first and are skipped
    // below; over-fetch so a page is still full after skipping them.
    let mut offset = 0usize;
    let batch = limit + 16;
    let mut found: Vec<(Uuid, i64)> = Vec::with_capacity(batch);
    let mut extras = (Vec::new(), Vec::new());
    loop {
        // Plain commands, pipelined: a Lua script doing the same costs
        // Redis several times as much, most of it converting the replies
        // (27 against 5 µs, measured with 800-post feeds).
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(0)
            .arg("BYSCORE")
            .cmd("ZRANGE")
            .arg(&key)
            .arg(&min)
            .arg("(0")
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(offset)
            .arg(batch)
            .arg("WITHSCORES")
            .cmd("ZRANGE")
            .arg(&key)
            .arg(PULL_SCORE)
            .arg(PULL_SCORE)
            .arg("BYSCORE")
            .cmd("ZRANGE")
            .arg(&hidden_key)
            .arg(0)
            .arg(-1)
            .cmd("INFO")
            .arg("server")
            .expire(&key, limits.ttl.as_secs() as i64)
            .ignore();
        type Read = (
            Vec<String>,
            Vec<(String, f64)>,
            Vec<String>,
            Vec<String>,
            String,
        );
        let (sentinel, raw, pulls, hidden, info): Read = pipe.query_async(conn).await?;
        if sentinel.first().map(String::as_str) != epoch(&info).map(built).as_deref() {
            return Ok(HomePage {
                page: Page::NotBuilt,
                pulls: Vec::new(),
                hidden: Vec::new(),
            });
        }
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
