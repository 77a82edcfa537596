//! The worker's settings: flags, each with a `FANOUT_*` environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use feed_core::bus;
use feed_core::runtime::{FeedArgs, LogArgs, PostgresArgs, RedisArgs};

/// Consumes Fanout's event streams and fans posts out to followers' feeds.
#[derive(Debug, Clone, Parser)]
#[command(name = "feed-worker", version)]
pub struct Config {
    #[command(flatten)]
    pub postgres: PostgresArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub feed: FeedArgs,
    #[command(flatten)]
    pub log: LogArgs,

    /// This worker's name in the consumer group. Must be unique among live
    /// workers and stable across restarts (the pod name on Kubernetes), so a
    /// restarted worker finishes its own pending entries first. Defaults to
    /// $POD_NAME, else the host name and process id.
    #[arg(long, env = "FANOUT_CONSUMER_NAME")]
    pub consumer_name: Option<String>,
    /// Address of the worker's /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "FANOUT_WORKER_HTTP_ADDR",
        default_value = "127.0.0.1:9091"
    )]
    pub http_addr: SocketAddr,
    /// Most entries read per stream per round trip.
    #[arg(long, env = "FANOUT_BATCH_SIZE", default_value_t = bus::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// Events handled at once; another read goes out whenever half of
    /// these slots are free.
    #[arg(long, env = "FANOUT_CONCURRENCY", default_value_t = 16)]
    pub concurrency: usize,
    /// How long one read waits for new entries, in ms. Bounds how long a
    /// shutdown waits for the read in flight.
    #[arg(long, env = "FANOUT_BLOCK_MS", default_value_t = 1_000)]
    pub block_ms: u64,
    /// An entry pending this long on any consumer (crashed, or failed to
    /// handle it) is claimed and retried, in ms.
    #[arg(long, env = "FANOUT_CLAIM_IDLE_MS", default_value_t = 15_000)]
    pub claim_idle_ms: u64,
    /// How often to look for such entries, in ms.
    #[arg(long, env = "FANOUT_CLAIM_INTERVAL_MS", default_value_t = 5_000)]
    pub claim_interval_ms: u64,
    /// An entry delivered this many times without success goes to the dead
    /// letters.
    #[arg(long, env = "FANOUT_MAX_DELIVERIES", default_value_t = bus::DEFAULT_MAX_DELIVERIES)]
    pub max_deliveries: usize,
    /// Followers read from PostgreSQL and written to Redis per round trip.
    #[arg(long, env = "FANOUT_FANOUT_CHUNK", default_value_t = 1_000)]
    pub fanout_chunk: i64,
    /// Recent posts of a newly followed user copied into the follower's feed.
    #[arg(long, env = "FANOUT_BACKFILL_POSTS", default_value_t = 100)]
    pub backfill_posts: i64,
    /// How often to trim acknowledged entries off the streams, in ms.
    #[arg(long, env = "FANOUT_TRIM_INTERVAL_MS", default_value_t = 30_000)]
    pub trim_interval_ms: u64,
}

impl Config {
    /// Rejects settings that cannot work, saying what to change.
    pub fn validate(&self) -> Result<(), String> {
        self.postgres.validate()?;
        self.redis.validate()?;
        self.feed.validate()?;
        let positive = [
            ("FANOUT_BATCH_SIZE", self.batch_size as u64),
            ("FANOUT_CONCURRENCY", self.concurrency as u64),
            ("FANOUT_BLOCK_MS", self.block_ms),
            ("FANOUT_CLAIM_IDLE_MS", self.claim_idle_ms),
            ("FANOUT_CLAIM_INTERVAL_MS", self.claim_interval_ms),
            ("FANOUT_MAX_DELIVERIES", self.max_deliveries as u64),
            ("FANOUT_FANOUT_CHUNK", self.fanout_chunk.max(0) as u64),
            ("FANOUT_TRIM_INTERVAL_MS", self.trim_interval_ms),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be at least 1"));
        }
        if self.backfill_posts < 0 {
            return Err("FANOUT_BACKFILL_POSTS must not be negative".into());
        }
        if self.claim_idle_ms <= self.block_ms {
            return Err("FANOUT_CLAIM_IDLE_MS must exceed FANOUT_BLOCK_MS, or live workers' entries get stolen".into());
        }
        Ok(())
    }

    /// The consumer name: explicit, else $POD_NAME, else host and pid.
    pub fn consumer(&self) -> String {
        self.consumer_name
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| {
                let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
                format!("{host}-{}", std::process::id())
            })
    }

    pub fn block(&self) -> Duration {
        Duration::from_millis(self.block_ms)
    }

    pub fn claim_idle(&self) -> Duration {
        Duration::from_millis(self.claim_idle_ms)
    }
}
