//! What each event does to the derived state in Redis.
//!
//! Every handler is idempotent and tolerates reordering: it re-reads the
//! current truth from PostgreSQL (does the post still exist, does the follow
//! still stand, is the like still there) and writes set-like effects to Redis
//! (sorted-set adds and removes). Handling an event twice, or a `post.liked`
//! after its `post.unliked`, leaves the same state as handling it once in
//! order. Anything a race still lets through (a post fanned out just as it is
//! deleted) is filtered out when the feed is read, which checks PostgreSQL.

use feed_core::db;
use feed_core::events::{Event, FollowChanged, LikeChanged, PostCreated, PostDeleted};
use feed_core::feed_store::{self, FeedLimits};
use redis::aio::ConnectionManager;
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
            // TRYAGAIN, ...), and READONLY: a primary demoted by a failover
            // that the connection still points at.
            HandleError::Redis(e) => {
                e.is_io_error()
                    || matches!(
                        e.retry_method(),
                        redis::RetryMethod::WaitAndRetry | redis::RetryMethod::Reconnect
                    )
                    || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
            }
        }
    }
}

/// What handling an event did, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Effect {
    /// Feeds written (posts added to or removed from a feed).
    pub feed_writes: u64,
    /// Followers whose feed Redis does not keep (nobody read it lately):
    /// not written, their next read builds it from PostgreSQL.
    pub feeds_skipped: u64,
}

/// The handlers and what they need.
#[derive(Clone)]
pub struct Fanout {
    pub db: PgPool,
    pub redis: ConnectionManager,
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
            Event::FollowCreated(e) => self.follow_created(e).await,
            Event::FollowRemoved(e) => self.follow_removed(e).await,
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
        let post = to_fan_out.post;
        // Readers fall back on this copy while PostgreSQL is down.
        let cached = feed_store::CachedPost {
            id: post.id,
            author_id: post.author_id,
            author_handle: post.author_handle,
            content: post.content,
            created_at: post.created_at,
            like_count: post.like_count,
        };
        feed_store::cache_post(&mut self.redis.clone(), &cached, self.limits).await?;
        let Some(first) = to_fan_out.followers else {
            // A celebrity: readers pull their posts; writing to every
            // follower's feed would cost more than it saves.
            return Ok(Effect::default());
        };
        let score = feed_store::score(e.created_at);
        let (followers, feed_writes) = self
            .for_each_follower_chunk(e.author_id, Some(first), |chunk| {
                let conn = self.redis.clone();
                async move {
                    feed_store::add_to_feeds(&conn, &chunk, e.post_id, score, self.limits).await
                }
            })
            .await?;
        Ok(Effect {
            feed_writes,
            feeds_skipped: followers.saturating_sub(feed_writes),
        })
    }

    async fn post_deleted(&self, e: &PostDeleted) -> Result<Effect, HandleError> {
        let posts = [e.post_id];
        let (_, feed_writes) = self
            .for_each_follower_chunk(e.author_id, None, |chunk| {
                let mut conn = self.redis.clone();
                async move {
                    feed_store::remove_from_feeds(&mut conn, &chunk, &posts).await?;
                    Ok(chunk.len() as u64)
                }
            })
            .await?;
        feed_store::forget_post(&mut self.redis.clone(), e.post_id).await?;
        Ok(Effect {
            feed_writes,
            ..Effect::default()
        })
    }

    async fn follow_created(&self, e: &FollowChanged) -> Result<Effect, HandleError> {
        if !db::follows::is_following(&self.db, e.follower_id, e.followee_id).await? {
            // Unfollowed since: nothing to backfill.
            return Ok(Effect::default());
        }
        if db::users::follower_count(&self.db, e.followee_id).await? >= self.celebrity_threshold {
            return Ok(Effect::default());
        }
        let recent =
            db::feed::recent_by_author(&self.db, e.followee_id, self.backfill_posts).await?;
        let posts: Vec<(Uuid, i64)> = recent
            .iter()
            .map(|p| (p.post_id, feed_store::score(p.created_at)))
            .collect();
        let written =
            feed_store::add_posts(&mut self.redis.clone(), e.follower_id, &posts, self.limits)
                .await?;
        Ok(Effect {
            feed_writes: u64::from(written),
            feeds_skipped: u64::from(!written && !posts.is_empty()),
        })
    }

    async fn follow_removed(&self, e: &FollowChanged) -> Result<Effect, HandleError> {
        if db::follows::is_following(&self.db, e.follower_id, e.followee_id).await? {
            // Followed again since: keep the posts.
            return Ok(Effect::default());
        }
        // A feed holds at most `max_len` posts (and fan-out's slack), so no
        // more than that many of the author's newest posts can be in it.
        let limit = (self.limits.max_len + feed_store::TRIM_SLACK) as i64;
        let posts: Vec<Uuid> = db::feed::recent_by_author(&self.db, e.followee_id, limit)
            .await?
            .into_iter()
            .map(|p| p.post_id)
            .collect();
        feed_store::remove_from_feeds(&mut self.redis.clone(), &[e.follower_id], &posts).await?;
        Ok(Effect {
            feed_writes: u64::from(!posts.is_empty()),
            ..Effect::default()
        })
    }

    async fn like_changed(&self, e: &LikeChanged) -> Result<Effect, HandleError> {
        // The like's current state, not the event's direction: liked and
        // unliked travel on different streams and may arrive out of order.
        let liked = db::posts::is_liked(&self.db, e.post_id, e.user_id).await?;
        feed_store::set_liked(&mut self.redis.clone(), e.post_id, e.user_id, liked).await?;
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
