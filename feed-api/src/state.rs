//! What every handler shares.

use std::sync::Arc;
use std::time::{Duration, Instant};

use feed_core::bus::{self, Redis, StreamStats};
use sqlx::PgPool;
use tokio::sync::Mutex;

use crate::auth::TokenKeys;
use crate::config::Config;
use crate::group_commit::PostWriter;
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::ratelimit::Limits;

/// How long stream statistics are reused before asking Redis again: feed
/// reads show freshness without each paying for `XINFO` round trips.
const STREAM_STATS_MAX_AGE: Duration = Duration::from_millis(500);

/// Stream statistics and when they were read.
type CachedStats = (Instant, Arc<Vec<StreamStats>>);

/// Shared by all requests; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub redis: Redis,
    pub tokens: Arc<TokenKeys>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub publisher: Publisher,
    pub posts: PostWriter,
    pub limits: Arc<Limits>,
    stream_stats: Arc<Mutex<Option<CachedStats>>>,
}

impl AppState {
    pub fn new(
        db: PgPool,
        redis: Redis,
        tokens: TokenKeys,
        config: Config,
        metrics: Arc<Metrics>,
        publisher: Publisher,
        posts: PostWriter,
    ) -> Self {
        AppState {
            db,
            redis,
            tokens: Arc::new(tokens),
            limits: Arc::new(Limits::new(&config)),
            config: Arc::new(config),
            metrics,
            publisher,
            posts,
            stream_stats: Default::default(),
        }
    }

    /// Per-stream statistics, at most [`STREAM_STATS_MAX_AGE`] old.
    pub async fn stream_stats(&self) -> redis::RedisResult<Arc<Vec<StreamStats>>> {
        let mut cached = self.stream_stats.lock().await;
        if let Some((at, stats)) = cached.as_ref()
            && at.elapsed() < STREAM_STATS_MAX_AGE
        {
            return Ok(stats.clone());
        }
        let mut conn = self.redis.conn().await?;
        let stats = Arc::new(bus::stream_stats(&mut conn).await?);
        *cached = Some((Instant::now(), stats.clone()));
        Ok(stats)
    }
}
