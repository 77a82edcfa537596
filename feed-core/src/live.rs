//! Live feed notes: what the feed scripts and the workers tell the API
//! replicas holding open streams (`GET /feed/stream`) over Redis Pub/Sub.
//!
//! Each feed key (`feed:<user>`, `timeline:<author>`) has a channel and a
//! *live key* of the same name, `live:<feed key>`. An API replica holding a
//! stream on a feed sets the live key with a TTL ([`mark_live`]) and renews
//! it while the stream is open; the scripts that write feeds publish on the
//! channel only when the live key exists, so fan-out to users with no open
//! stream costs one `EXISTS` per feed written and nothing more.
//!
//! Notes are hints, never the record: a replica that missed one (it
//! restarted, or lost its Pub/Sub connection) ends its streams, and the
//! clients resume from the feed itself by cursor.

use std::time::Duration;

use redis::RedisResult;
use redis::aio::ConnectionLike;
use uuid::Uuid;

use crate::keys::{self, Layout};

/// The prefix of every live key and channel.
pub const PREFIX: &str = "live:";

/// The channel (and live key) of a feed key such as [`crate::keys::feed`].
pub fn channel(feed_key: &str) -> String {
    format!("{PREFIX}{feed_key}")
}

/// The channel of a user's home feed.
pub fn home(layout: Layout, user: Uuid) -> String {
    channel(&keys::feed(layout, user))
}

/// The channel of a celebrity's timeline, which their followers' streams
/// listen to as their posts are not fanned out.
pub fn timeline(layout: Layout, author: Uuid) -> String {
    channel(&keys::timeline(layout, author))
}

/// One change to a feed, as published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// A post was added to the feed.
    Added(Uuid),
    /// The feed now pulls this celebrity's timeline (a follow).
    Pulls(Uuid),
    /// A post was taken out of the feed (deleted).
    Removed(Uuid),
    /// The reader unfollowed this author: their posts leave the feed.
    Unfollowed(Uuid),
}

/// The marks on the wire: `+` added (a post id, or `pull:` and an author
/// id), `-` removed, `~` unfollowed. The feed scripts write `+` themselves.
impl Note {
    /// The message published.
    pub fn encode(self) -> String {
        match self {
            Note::Added(id) => format!("+{id}"),
            Note::Pulls(author) => format!("+pull:{author}"),
            Note::Removed(id) => format!("-{id}"),
            Note::Unfollowed(author) => format!("~{author}"),
        }
    }

    /// Reads a message; `None` for anything else (ignored by readers).
    pub fn decode(raw: &str) -> Option<Note> {
        let (mark, rest) = raw.split_at_checked(1)?;
        match mark {
            "+" => match rest.strip_prefix("pull:") {
                Some(author) => Uuid::try_parse(author).ok().map(Note::Pulls),
                None => Uuid::try_parse(rest).ok().map(Note::Added),
            },
            "-" => Uuid::try_parse(rest).ok().map(Note::Removed),
            "~" => Uuid::try_parse(rest).ok().map(Note::Unfollowed),
            _ => None,
        }
    }
}

/// Sets (or renews) the live keys of `channels` for `ttl`, in one round
/// trip (on a cluster, one per hash tag, in flight together).
pub async fn mark_live(
    conn: &(impl ConnectionLike + Clone),
    channels: &[String],
    ttl: Duration,
) -> RedisResult<()> {
    let calls = keys::by_tag(channels.iter().cloned())
        .into_iter()
        .map(|group| {
            let mut pipe = redis::pipe();
            for channel in group {
                pipe.set_ex(channel, 1, ttl.as_secs().max(1)).ignore();
            }
            let mut conn = conn.clone();
            async move { pipe.query_async::<()>(&mut conn).await }
        });
    futures_util::future::try_join_all(calls).await?;
    Ok(())
}

/// Publishes `note` on each channel whose live key exists: one script call
/// for all of them, so a removal from many feeds costs one round trip.
static PUBLISH_IF_LIVE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local sent = 0
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    for j = 1, #ARGV do
      redis.call('PUBLISH', KEYS[i], ARGV[j])
    end
    sent = sent + 1
  end
end
return sent
",
    )
});

/// Tells the streams open on `feed_keys` (feed or timeline keys) about
/// `notes`; returns how many of those feeds had a stream open.
pub async fn notify(
    conn: &(impl ConnectionLike + Clone),
    feed_keys: &[String],
    notes: &[Note],
) -> RedisResult<u64> {
    if notes.is_empty() {
        return Ok(0);
    }
    let notes: Vec<String> = notes.iter().map(|note| note.encode()).collect();
    let calls = keys::by_tag(feed_keys.iter().map(|key| channel(key)))
        .into_iter()
        .map(|group| {
            let mut invocation = PUBLISH_IF_LIVE.prepare_invoke();
            for channel in group {
                invocation.key(channel);
            }
            for note in &notes {
                invocation.arg(note);
            }
            let mut conn = conn.clone();
            async move { invocation.invoke_async::<u64>(&mut conn).await }
        });
    Ok(futures_util::future::try_join_all(calls)
        .await?
        .iter()
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_and_junk_is_ignored() {
        let id = Uuid::now_v7();
        for note in [
            Note::Added(id),
            Note::Pulls(id),
            Note::Removed(id),
            Note::Unfollowed(id),
        ] {
            assert_eq!(Note::decode(&note.encode()), Some(note));
        }
        for junk in ["", "+", "+pull:", "?abc", "-not-a-uuid", "é"] {
            assert_eq!(Note::decode(junk), None, "{junk:?}");
        }
    }
}
