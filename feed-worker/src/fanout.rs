//! What each event does to the derived state in Redis.
//!
//! Every handler is idempotent and tolerates reordering: it re-reads the
//! current truth from PostgreSQL (does the post still exist, does the follow
//! still stand, is the like still there) and writes set-like effects to Redis
//! (sorted-set adds and removes). Handling an event twice, or a `post.liked`
//! after its `post.unliked`, leaves the same state as handling it once in
//! order.
//!
//! Handlers also race each other, as events of one post or one follow may
//! be handled by different workers at once. Two rules keep the result equal
//! to the truth:
//!
//! - A removal (a delete, an unfollow) marks what it removes before it
//!   removes it, and every feed write checks the marks atomically (see
//!   `feed_core::removals`): an add that read PostgreSQL before the removal
//!   committed cannot put back what the removal took out.
//! - A handler that changed a follow's or a like's effects reads the truth
//!   again afterwards and settles again if it changed meanwhile: a change
//!   committed after that second read is handled by its own event, which
//!   starts after the commit and so writes after this handler did.

use feed_core::bus::{Conn, Keyspace};
use feed_core::events::{Event, FollowChanged, LikeChanged, PostCreated, PostDeleted};
use feed_core::feed_store::{self, FeedLimits, FeedPost, FeedWriter, Timeline};
use feed_core::{db, keys, live, removals};
use sqlx::PgPool;
use uuid::Uuid;

/// A failure that may pass: PostgreSQL or Redis unreachable or erroring.
/// The entry stays pending and is retried.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("PostgreSQL: {0}")]
    Db(#[from] sqlx::Error),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl HandleError {
    /// True when a datastore could not be reached (down, restarting, a
    /// connection lost or timed out), not when it refused this event: such
    /// an event is retried for as long as the outage lasts, never given up
    /// on, or its post would miss the feeds built meanwhile.
    pub fn is_outage(&self) -> bool {
        match self {
            HandleError::Db(e) => db::is_unavailable(e),
            // Any I/O failure (refused, dropped, timed out), what the server
            // says while it starts or fails over (LOADING, MASTERDOWN,
            // TRYAGAIN, CLUSTERDOWN, ...), a cluster none of whose nodes
            // answers, and READONLY: a primary demoted by a failover that
            // the connection still points at.
            HandleError::Redis(e) => {
                e.is_io_error()
                    || matches!(
                        e.retry_method(),
                        redis::RetryMethod::WaitAndRetry
                            | redis::RetryMethod::Reconnect
                            | redis::RetryMethod::ReconnectFromInitialConnections
                    )
                    || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
            }
        }
    }
}

/// How many times a handler settles a follow or a like that keeps changing
/// while it works. Past that, the handler of the latest change, which starts
/// after that change commits, settles it: more rounds would only repeat
/// that handler's work.
const SETTLE_ROUNDS: usize = 4;

/// What handling an event did, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Effect {
    /// Feeds written (posts added to or removed from a feed).
    pub feed_writes: u64,
    /// Followers whose feed Redis does not keep (nobody read it lately):
    /// not written, their next read builds it from PostgreSQL.
    pub feeds_skipped: u64,
}

impl std::ops::AddAssign for Effect {
    fn add_assign(&mut self, other: Effect) {
        self.feed_writes += other.feed_writes;
        self.feeds_skipped += other.feeds_skipped;
    }
}

/// The handlers and what they need.
#[derive(Clone)]
pub struct Fanout {
    pub db: PgPool,
    pub redis: Conn,
    /// Writes new posts into followers' feeds, in batches with the posts
    /// other handlers fan out meanwhile (on [`Fanout::redis`]).
    pub writer: FeedWriter,
    pub limits: FeedLimits,
    pub celebrity_threshold: i64,
    pub chunk: i64,
    pub backfill_posts: i64,
}

impl Fanout {
    /// Applies one event.
    pub async fn handle(&self, event: &Event) -> Result<Effect, HandleError> {
        match event {
            Event::PostCreated(e) => self.post_created(e).await,
            Event::PostDeleted(e) => self.post_deleted(e).await,
            Event::FollowCreated(e) => self.follow_changed(e, true).await,
            Event::FollowRemoved(e) => self.follow_changed(e, false).await,
            Event::PostLiked(e) | Event::PostUnliked(e) => self.like_changed(e).await,
        }
    }

    async fn post_created(&self, e: &PostCreated) -> Result<Effect, HandleError> {
        let Some(to_fan_out) =
            db::posts::to_fan_out(&self.db, e.post_id, self.chunk, self.celebrity_threshold)
                .await?
        else {
            // Deleted before we got to it.
            return Ok(Effect::default());
        };
        // The post's copy, which pages show, and its place in its author's
        // own feed, in one call: what the API did before the create
        // answered, done again for a create whose Redis write failed.
        let cached = feed_store::CachedPost::from(to_fan_out.post);
        feed_store::show_to_author(&self.redis, &cached, self.limits).await?;
        let post = FeedPost {
            id: e.post_id,
            author: e.author_id,
            score: feed_store::score(e.created_at),
        };
        let Some(first) = to_fan_out.followers else {
            // A celebrity: readers pull their posts from their timeline;
            // writing to every follower's feed would cost more than it
            // saves.
            let timeline = [Timeline::Author(e.author_id)];
            self.writer.add_to_feeds(&timeline, post).await?;
            return self.announce(e.author_id).await;
        };
        // Not (or no longer) a celebrity: should they become one again, the
        // feeds built meanwhile lack their pull, so they are announced anew.
        redis::cmd("DEL")
            .arg(keys::announced(e.author_id))
            .query_async::<i64>(&mut self.redis.clone())
            .await?;
        let (followers, feed_writes) = self
            .for_each_follower_chunk(e.author_id, Some(first), |chunk| async move {
                self.writer.add_to_feeds(&chunk, post).await
            })
            .await?;
        Ok(Effect {
            feed_writes,
            feeds_skipped: followers.saturating_sub(feed_writes),
        })
    }

    /// Tells every follower's kept feed to pull a celebrity's timeline,
    /// once per time they become one: a feed built while they were not one
    /// has no pull member for them, and their posts are no longer fanned
    /// out. (Feeds built later read the pull from PostgreSQL.)
    async fn announce(&self, author: Uuid) -> Result<Effect, HandleError> {
        let mut conn = self.redis.clone();
        let key = keys::announced(author);
        if redis::cmd("EXISTS")
            .arg(&key)
            .query_async::<bool>(&mut conn)
            .await?
        {
            return Ok(Effect::default());
        }
        let (_, feed_writes) = self
            .for_each_follower_chunk(author, None, |chunk| {
                let conn = self.redis.clone();
                async move { feed_store::add_pulls(&conn, &chunk, author, self.limits).await }
            })
            .await?;
        // Only once every follower's feed has it: a pass cut short is
        // retried with the event.
        redis::cmd("SET")
            .arg(&key)
            .arg(1)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(Effect {
            feed_writes,
            ..Effect::default()
        })
    }

    async fn post_deleted(&self, e: &PostDeleted) -> Result<Effect, HandleError> {
        // First the tombstone: a fan-out still writing the post skips it.
        removals::mark_deleted(&self.redis, e.post_id).await?;
        let posts = [e.post_id];
        let own = [Timeline::Home(e.author_id), Timeline::Author(e.author_id)];
        feed_store::remove_from_feeds(&self.redis, &own, &posts, &[]).await?;
        let removed = [live::Note::Removed(e.post_id)];
        let layout = self.redis.layout();
        let own_keys = [
            keys::feed(layout, e.author_id),
            keys::timeline(layout, e.author_id),
        ];
        live::notify(&self.redis, &own_keys, &removed).await?;
        let (_, feed_writes) = self
            .for_each_follower_chunk(e.author_id, None, |chunk| {
                let conn = self.redis.clone();
                async move {
                    feed_store::remove_from_feeds(&conn, &chunk, &posts, &[]).await?;
                    let feeds: Vec<String> = chunk.iter().map(|u| keys::feed(layout, *u)).collect();
                    live::notify(&conn, &feeds, &removed).await?;
                    Ok(chunk.len() as u64)
                }
            })
            .await?;
        Ok(Effect {
            feed_writes,
            ..Effect::default()
        })
    }

    /// Makes the follower's feed agree with whether they follow the
    /// followee now, as `followed` (the event's direction) says they did.
    async fn follow_changed(
        &self,
        e: &FollowChanged,
        followed: bool,
    ) -> Result<Effect, HandleError> {
        let (follower, followee) = (e.follower_id, e.followee_id);
        let mut following = db::follows::is_following(&self.db, follower, followee).await?;
        if following != followed {
            // Changed back since: that change's own event settles it.
            return Ok(Effect::default());
        }
        let mut effect = Effect::default();
        for _ in 0..SETTLE_ROUNDS {
            effect += if following {
                self.backfill(follower, followee).await?
            } else {
                self.prune(follower, followee).await?
            };
            let now = db::follows::is_following(&self.db, follower, followee).await?;
            if now == following {
                break;
            }
            following = now;
        }
        Ok(effect)
    }

    /// Adds the followee's newest posts to the follower's feed.
    async fn backfill(&self, follower: Uuid, followee: Uuid) -> Result<Effect, HandleError> {
        // Before reading the posts, so the add below is not refused for a
        // mark of an earlier unfollow.
        let mut conn = self.redis.clone();
        removals::clear_unfollowed(&mut conn, follower, followee).await?;
        if db::users::is_celebrity(&self.db, followee, self.celebrity_threshold).await? {
            // Their posts are pulled from their timeline, not backfilled.
            let written =
                feed_store::add_pulls(&self.redis, &[follower], followee, self.limits).await?;
            return Ok(Effect {
                feed_writes: written,
                feeds_skipped: 1 - written.min(1),
            });
        }
        let recent = db::feed::recent_by_author(&self.db, followee, self.backfill_posts).await?;
        let posts: Vec<(Uuid, i64)> = recent
            .iter()
            .map(|p| (p.post_id, feed_store::score(p.created_at)))
            .collect();
        let written =
            feed_store::add_posts(&self.redis, follower, followee, &posts, self.limits).await?;
        Ok(Effect {
            feed_writes: u64::from(written),
            feeds_skipped: u64::from(!written && !posts.is_empty()),
        })
    }

    /// Takes the followee's posts out of the follower's feed, and any post
    /// deleted since it was added.
    async fn prune(&self, follower: Uuid, followee: Uuid) -> Result<Effect, HandleError> {
        let mut conn = self.redis.clone();
        // Before reading the feed: a fan-out still writing one of the
        // followee's posts skips this feed from now on.
        removals::mark_unfollowed(&mut conn, follower, followee).await?;
        let hidden = removals::hidden_since(&mut conn, follower, followee).await?;
        let held = feed_store::members(&mut conn, follower).await?;
        let kept: std::collections::HashSet<Uuid> =
            db::feed::kept_after_unfollow(&self.db, &held, followee)
                .await?
                .into_iter()
                .collect();
        let gone: Vec<Uuid> = held.into_iter().filter(|id| !kept.contains(id)).collect();
        feed_store::remove_from_feeds(&conn, &[follower], &gone, &[followee]).await?;
        // The feed no longer holds them: pages need not hide them, unless
        // an unfollow since hid them again.
        if let Some(since) = hidden {
            removals::unhide_if_since(&mut conn, follower, followee, since).await?;
        }
        Ok(Effect {
            feed_writes: u64::from(!gone.is_empty()),
            ..Effect::default()
        })
    }

    async fn like_changed(&self, e: &LikeChanged) -> Result<Effect, HandleError> {
        // The post's count now, not the event's direction: liked and
        // unliked travel on different streams and may arrive out of order.
        let Some(mut count) = db::posts::like_count(&self.db, e.post_id).await? else {
            return Ok(Effect::default());
        };
        for _ in 0..SETTLE_ROUNDS {
            feed_store::set_like_count(&mut self.redis.clone(), e.post_id, count).await?;
            match db::posts::like_count(&self.db, e.post_id).await? {
                Some(now) if now != count => count = now,
                _ => break,
            }
        }
        Ok(Effect::default())
    }

    /// Walks an author's followers in keyset-ordered chunks, starting from
    /// `first` when the caller read the first chunk already, applying
    /// `write` to each; returns how many followers there were and how many
    /// feeds `write` says it wrote.
    async fn for_each_follower_chunk<F, Fut>(
        &self,
        author: Uuid,
        first: Option<Vec<Uuid>>,
        mut write: F,
    ) -> Result<(u64, u64), HandleError>
    where
        F: FnMut(Vec<Uuid>) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<u64>>,
    {
        let mut chunk = match first {
            Some(chunk) => chunk,
            None => db::follows::follower_ids(&self.db, author, None, self.chunk).await?,
        };
        let (mut followers, mut written) = (0u64, 0u64);
        while let Some(last) = chunk.last().copied() {
            let full = chunk.len() as i64 == self.chunk;
            followers += chunk.len() as u64;
            written += write(chunk).await?;
            if !full {
                break;
            }
            chunk = db::follows::follower_ids(&self.db, author, Some(last), self.chunk).await?;
        }
        Ok((followers, written))
    }
}
