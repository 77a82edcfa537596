//! What every handler shares.
//!
//! Arrows point one way: this module assembles the state from the others
//! ([`crate::auth`], [`crate::metrics`], [`crate::publish`],
//! [`crate::ratelimit`], [`crate::live`]), and hands each extractor and middleware the part
//! it needs through axum's [`FromRef`]; none of them knows [`AppState`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRef;
use feed_core::bus::{self, Redis, StreamStats};
use feed_core::runtime::RedisConfigError;
use sqlx::PgPool;

use crate::auth::TokenKeys;
use crate::config::Config;
use crate::group_commit::PostWriter;
use crate::live::{Live, LiveLimits};
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::ratelimit::{Limits, TrustedProxies};

/// The longest a Redis command of a request may take: a request answers
/// 503 rather than hang on a Redis that stopped answering.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// How long stream statistics are reused before asking Redis again: feed
/// reads show freshness without each paying for `XINFO` round trips.
const STREAM_STATS_MAX_AGE: Duration = Duration::from_millis(500);
/// Statistics older than the above are still served while a background
/// refresh runs, so no read waits for one; older than this (Redis down,
/// refreshes failing) they are not trusted, and a read asks Redis itself.
const STREAM_STATS_MAX_STALE: Duration = Duration::from_secs(5);

/// Stream statistics and when they were read.
type CachedStats = (Instant, Arc<Vec<StreamStats>>);

/// The latest stream statistics, and whether a refresh is under way.
#[derive(Default)]
struct StatsCache {
    latest: Mutex<Option<CachedStats>>,
    refreshing: AtomicBool,
    /// Held by a request reading the statistics itself, so the others
    /// wait for its result instead of each asking Redis.
    reading: tokio::sync::Mutex<()>,
}

/// Shared by all requests; cheap to clone (one reference count: axum
/// clones the state for each extractor and middleware of every request).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] shares.
pub struct Shared {
    pub db: PgPool,
    /// The event streams (and their statistics).
    pub redis: Redis,
    /// Home feeds and cached posts: `redis` itself unless
    /// FANOUT_FEED_REDIS_URL names another instance.
    pub feeds: Redis,
    pub tokens: Arc<TokenKeys>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub publisher: Publisher,
    pub posts: PostWriter,
    pub limits: Arc<Limits>,
    /// The live hub of this replica's feed streams.
    pub live: Live,
    stream_stats: Arc<StatsCache>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
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
    ) -> Result<Self, RedisConfigError> {
        let feeds = config.redis.connect_feeds(&redis, REDIS_TIMEOUT)?;
        let live_limits = LiveLimits {
            per_user: config.stream.stream_max_per_user,
            per_replica: config.stream.stream_max_per_replica,
        };
        let live = Live::start(feeds.clone(), live_limits, metrics.clone());
        Ok(AppState(Arc::new(Shared {
            live,
            db,
            redis,
            feeds,
            tokens: Arc::new(tokens),
            limits: Arc::new(Limits::new(&config)),
            config: Arc::new(config),
            metrics,
            publisher,
            posts,
            stream_stats: Default::default(),
        })))
    }

    /// Per-stream statistics, refreshed in the background once
    /// [`STREAM_STATS_MAX_AGE`] old; read from Redis in the request only
    /// when there are none or they are past [`STREAM_STATS_MAX_STALE`].
    pub async fn stream_stats(&self) -> redis::RedisResult<Arc<Vec<StreamStats>>> {
        match self.stream_stats.latest() {
            Some((at, stats)) if at.elapsed() < STREAM_STATS_MAX_STALE => {
                if at.elapsed() >= STREAM_STATS_MAX_AGE
                    && !self.stream_stats.refreshing.swap(true, Ordering::AcqRel)
                {
                    let (redis, cache) = (self.redis.clone(), self.stream_stats.clone());
                    tokio::spawn(async move {
                        // A failure leaves the old figures to age out.
                        let _ = cache.refresh(&redis).await;
                        cache.refreshing.store(false, Ordering::Release);
                    });
                }
                Ok(stats)
            }
            _ => {
                let _reading = self.stream_stats.reading.lock().await;
                match self.stream_stats.latest() {
                    // Another request read them while this one waited.
                    Some((at, stats)) if at.elapsed() < STREAM_STATS_MAX_AGE => Ok(stats),
                    _ => self.stream_stats.refresh(&self.redis).await,
                }
            }
        }
    }
}

impl FromRef<AppState> for PgPool {
    fn from_ref(state: &AppState) -> PgPool {
        state.db.clone()
    }
}

impl FromRef<AppState> for Arc<TokenKeys> {
    fn from_ref(state: &AppState) -> Arc<TokenKeys> {
        state.tokens.clone()
    }
}

impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(state: &AppState) -> Arc<Metrics> {
        state.metrics.clone()
    }
}

impl FromRef<AppState> for Arc<Limits> {
    fn from_ref(state: &AppState) -> Arc<Limits> {
        state.limits.clone()
    }
}

impl FromRef<AppState> for Publisher {
    fn from_ref(state: &AppState) -> Publisher {
        state.publisher.clone()
    }
}

impl FromRef<AppState> for TrustedProxies {
    fn from_ref(state: &AppState) -> TrustedProxies {
        TrustedProxies(state.config.trusted_proxy_hops)
    }
}

impl StatsCache {
    /// The figures kept, and when they were read.
    fn latest(&self) -> Option<CachedStats> {
        self.latest.lock().expect("never poisoned").clone()
    }

    /// Reads the statistics from Redis and keeps them.
    async fn refresh(&self, redis: &Redis) -> redis::RedisResult<Arc<Vec<StreamStats>>> {
        let mut conn = redis.conn().await?;
        let stats = Arc::new(bus::stream_stats(&mut conn).await?);
        *self.latest.lock().expect("never poisoned") = Some((Instant::now(), stats.clone()));
        Ok(stats)
    }
}
