//! Adding posts to many feeds at once: the script that writes the feeds
//! Redis keeps, one call per shard and chunk of feeds, and [`FeedWriter`],
//! which merges the calls of posts fanned out concurrently.

use redis::RedisResult;
use redis::aio::ConnectionLike;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{FeedLimits, FeedPost, TRIM_SLACK, Timeline, entries, lua_helpers};
use crate::bus::{Conn, Keyspace};
use crate::keys::{self, Shard};

/// Feeds one script call writes. The script runs atomically, so it holds
/// Redis for its whole length: 100 feeds take well under a millisecond,
/// short enough that readers queued behind it barely notice.
const FEEDS_PER_CALL: usize = 100;

/// Adds posts to each feed of `KEYS` that exists, and trims each back to
/// `ARGV[1]` posts once it is `ARGV[2]` (the slack) over. The call holds
/// `ARGV[3]` *sections*, each the posts of one author for some feeds;
/// returns, per section, how many feeds it wrote.
///
/// A section's keys are its author's unfollow marks, the tombstones of its
/// `p` posts, then its `f` feeds; its arguments `p`, `f` and `u`, then the
/// posts' (score, member) pairs, then `u` pairs added with no tombstone to
/// check (the author's pull member). A deleted post is not added, nor are
/// the author's posts to the feed of a user who unfollowed them (see
/// [`crate::removals`]).
///
/// A feed that does not exist is left alone: nobody read it lately (or
/// Redis lost it), and its next read builds it from PostgreSQL, this post
/// included. Writing it would fill Redis with feeds of users who are not
/// reading. One call instead of pipelined commands per feed: Redis parses,
/// queues and answers one command, which is most of a small command's cost.
///
/// A feed that gained a member is announced on its live channel when an
/// API replica holds a stream on it ([`crate::live`]); the live key is not
/// among `KEYS`, which a cluster allows as it shares the feed's hash slot.
///
/// All keys are of one shard (see [`crate::keys`]): the marks are the
/// shard's own.
static ADD_TO_KEPT_FEEDS: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(concat!(
        lua_helpers!(),
        r"
local max_len = tonumber(ARGV[1])
local most = max_len + 1 + tonumber(ARGV[2])
local k, a = 1, 4
local written = {}
for s = 1, tonumber(ARGV[3]) do
  local posts, feeds, extra = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  local marks = KEYS[k]
  local live = {}
  for i = 1, posts do
    if redis.call('EXISTS', KEYS[k + i]) == 0 then
      live[#live + 1] = ARGV[a + 2 * i - 2]
      live[#live + 1] = ARGV[a + 2 * i - 1]
    end
  end
  a = a + 2 * posts
  for i = 0, 2 * extra - 1 do
    live[#live + 1] = ARGV[a + i]
  end
  a = a + 2 * extra
  k = k + 1 + posts
  local count = 0
  if #live > 0 then
    -- Whether the feed's user unfollowed the author: looked up only when
    -- someone did lately.
    local marked = redis.call('EXISTS', marks) == 1
    for j = k, k + feeds - 1 do
      local key = KEYS[j]
      -- An empty sorted set does not exist: 0 means no feed is kept. (One
      -- call instead of EXISTS, then ZCARD after the add.)
      local n = redis.call('ZCARD', key)
      if n > 0 and not (marked and redis.call('ZSCORE', marks, user_of(key))) then
        local added = zadd_all(key, live)
        if n + added > most then
          trim(key, max_len)
        end
        if added > 0 then
          notify(key, live)
        end
        count = count + 1
      end
    end
  end
  k = k + feeds
  written[s] = count
end
return written
",
    ))
});

/// Posts of one author for some feeds: what a fan-out asks for.
#[derive(Debug, Clone)]
struct Delivery {
    author: Uuid,
    /// Ids and [`super::score`]s.
    posts: Vec<(Uuid, i64)>,
    /// A member with no tombstone to check (a pull).
    untombstoned: Option<(i64, String)>,
    feeds: Vec<Timeline>,
}

/// One script call: of one shard, [`FEEDS_PER_CALL`] feeds at most, in
/// sections, each some feeds of the delivery at its index.
struct Call {
    shard: Shard,
    sections: Vec<(usize, Vec<Timeline>)>,
    feeds: usize,
}

/// Runs the calls that write `deliveries`, all in flight at once: per
/// shard, their sections packed [`FEEDS_PER_CALL`] feeds to a call. Returns
/// how many feeds each delivery wrote.
async fn deliver(
    conn: &(impl ConnectionLike + Keyspace + Clone),
    deliveries: &[Delivery],
    limits: FeedLimits,
) -> RedisResult<Vec<u64>> {
    let layout = conn.layout();
    let mut calls: Vec<Call> = Vec::new();
    for (at, delivery) in deliveries.iter().enumerate() {
        for (shard, feeds) in layout.group(delivery.feeds.iter().copied(), |feed| feed.owner()) {
            let mut rest = &feeds[..];
            while !rest.is_empty() {
                let open = calls
                    .iter()
                    .rposition(|c| c.shard == shard && c.feeds < FEEDS_PER_CALL);
                let call = match open {
                    Some(i) => &mut calls[i],
                    None => {
                        calls.push(Call {
                            shard,
                            sections: Vec::new(),
                            feeds: 0,
                        });
                        calls.last_mut().expect("just pushed")
                    }
                };
                let room = FEEDS_PER_CALL - call.feeds;
                let (taken, left) = rest.split_at(room.min(rest.len()));
                call.feeds += taken.len();
                call.sections.push((at, taken.to_vec()));
                rest = left;
            }
        }
    }
    let invocations = calls.iter().map(|call| {
        let mut invocation = ADD_TO_KEPT_FEEDS.prepare_invoke();
        invocation
            .arg(limits.max_len)
            .arg(TRIM_SLACK)
            .arg(call.sections.len());
        for (at, feeds) in &call.sections {
            let delivery = &deliveries[*at];
            invocation.key(keys::unfollowed(call.shard, delivery.author));
            for (id, _) in &delivery.posts {
                invocation.key(keys::deleted(call.shard, *id));
            }
            for feed in feeds {
                invocation.key(feed.key(layout));
            }
            invocation
                .arg(delivery.posts.len())
                .arg(feeds.len())
                .arg(usize::from(delivery.untombstoned.is_some()));
            for (score, member) in entries(&delivery.posts) {
                invocation.arg(score).arg(member);
            }
            if let Some((score, member)) = &delivery.untombstoned {
                invocation.arg(score).arg(member);
            }
        }
        let mut conn = conn.clone();
        async move { invocation.invoke_async::<Vec<u64>>(&mut conn).await }
    });
    let answers = futures_util::future::try_join_all(invocations).await?;
    let mut written = vec![0; deliveries.len()];
    for (call, answer) in calls.iter().zip(answers) {
        for ((at, _), count) in call.sections.iter().zip(answer) {
            written[*at] += count;
        }
    }
    Ok(written)
}

/// Runs [`ADD_TO_KEPT_FEEDS`] over `feeds`, a call per shard and
/// [`FEEDS_PER_CALL`] feeds, all calls in flight at once: `author`'s posts
/// (ids and [`super::score`]s), and a member with no tombstone to check (a
/// pull); returns how many feeds were written.
pub(super) async fn add_to_kept(
    conn: &(impl ConnectionLike + Keyspace + Clone),
    feeds: &[Timeline],
    author: Uuid,
    posts: &[(Uuid, i64)],
    untombstoned: Option<(i64, String)>,
    limits: FeedLimits,
) -> RedisResult<u64> {
    let delivery = Delivery {
        author,
        posts: posts.to_vec(),
        untombstoned,
        feeds: feeds.to_vec(),
    };
    Ok(deliver(conn, std::slice::from_ref(&delivery), limits).await?[0])
}

/// Fan-out's writes of many posts in flight, merged: the posts a worker's
/// handlers fan out at the same moment share script calls, a call per shard
/// rather than per post and shard. While one batch of calls is in flight,
/// the next gathers what arrives meanwhile, as group commit does for
/// PostgreSQL. On a cluster, where a post to 100 followers would otherwise
/// make a call to each of [`keys::CLUSTER_SHARDS`] shards, this keeps
/// Redis' cost per delivery near what one server pays.
#[derive(Clone)]
pub struct FeedWriter {
    requests: mpsc::Sender<Request>,
}

struct Request {
    delivery: Delivery,
    written: oneshot::Sender<RedisResult<u64>>,
}

/// Deliveries one batch takes at most: a worker holds 16 events at once by
/// default, and a batch much larger than that only delays its first
/// delivery's answer.
const DELIVERIES_PER_BATCH: usize = 64;

impl FeedWriter {
    /// Starts the writer on `conn`; it stops once every clone is dropped.
    pub fn spawn(conn: Conn, limits: FeedLimits) -> FeedWriter {
        let (requests, mut queue) = mpsc::channel::<Request>(DELIVERIES_PER_BATCH);
        tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
                let mut batch = vec![first];
                while batch.len() < DELIVERIES_PER_BATCH
                    && let Ok(more) = queue.try_recv()
                {
                    batch.push(more);
                }
                let (deliveries, answers): (Vec<Delivery>, Vec<_>) =
                    batch.into_iter().map(|r| (r.delivery, r.written)).unzip();
                match deliver(&conn, &deliveries, limits).await {
                    Ok(written) => {
                        for (answer, count) in answers.into_iter().zip(written) {
                            let _ = answer.send(Ok(count));
                        }
                    }
                    // Every delivery of a failed batch is retried with its
                    // event: writing a post again changes nothing.
                    Err(e) => {
                        for answer in answers {
                            let _ = answer.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        FeedWriter { requests }
    }

    /// Adds one post to those of many feeds that exist, as
    /// [`super::add_to_feeds`] does, in a batch with the posts fanned out
    /// meanwhile; returns how many feeds were written.
    pub async fn add_to_feeds<T: Into<Timeline> + Copy>(
        &self,
        feeds: &[T],
        post: FeedPost,
    ) -> RedisResult<u64> {
        let (written, answer) = oneshot::channel();
        let delivery = Delivery {
            author: post.author,
            posts: vec![(post.id, post.score)],
            untombstoned: None,
            feeds: feeds.iter().map(|f| (*f).into()).collect(),
        };
        let gone =
            || redis::RedisError::from((redis::ErrorKind::Io, "the feed writer has stopped"));
        self.requests
            .send(Request { delivery, written })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}
