//! The faults, each injected while the writer posts and healed again.

use std::fmt;
use std::time::Duration;

use crate::system::System;

/// How long a fault lasts before it heals.
const HOLD: Duration = Duration::from_secs(2);

/// One drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL of one worker, restarted: its unacknowledged entries are
    /// claimed by the other.
    WorkerKilled,
    /// SIGKILL of the API right after acknowledged commits, restarted:
    /// the outbox relay publishes what it had not.
    ApiKilled,
    /// The streams' Redis stopped with SIGTERM (it writes its file) and
    /// started again.
    RedisTerminated,
    /// The streams' Redis killed with SIGKILL (its append-only file may
    /// miss the last second) and started again.
    RedisKilled,
    /// The workers stopped, a backlog waits, and the streams' Redis comes
    /// back empty (a lost volume, a failover to an empty replica).
    RedisLostWithBacklog,
    /// The workers' consumer group deleted on every stream.
    GroupDeleted,
    /// The feeds' Redis killed and started again empty.
    FeedRedisKilled,
    /// PostgreSQL stopped for a while during writes.
    PostgresStopped,
}

impl Fault {
    pub const ALL: [Fault; 8] = [
        Fault::WorkerKilled,
        Fault::ApiKilled,
        Fault::RedisTerminated,
        Fault::RedisKilled,
        Fault::RedisLostWithBacklog,
        Fault::GroupDeleted,
        Fault::FeedRedisKilled,
        Fault::PostgresStopped,
    ];

    pub async fn inject(self, system: &mut System) -> anyhow::Result<()> {
        match self {
            Fault::WorkerKilled => system.workers[0].kill().await,
            Fault::ApiKilled => system.api.kill().await,
            Fault::RedisTerminated => system.redis.terminate().await?,
            Fault::RedisKilled => system.redis.kill().await,
            Fault::RedisLostWithBacklog => {
                for worker in &mut system.workers {
                    worker.terminate().await?;
                }
                tokio::time::sleep(HOLD).await;
                system.redis.kill().await;
            }
            Fault::GroupDeleted => {
                let client = redis::Client::open(system.setup.redis_url())?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                for stream in feed_core::keys::all_streams() {
                    let _: redis::RedisResult<i64> = redis::cmd("XGROUP")
                        .arg("DESTROY")
                        .arg(&stream)
                        .arg(feed_core::keys::CONSUMER_GROUP)
                        .query_async(&mut conn)
                        .await;
                }
            }
            Fault::FeedRedisKilled => system.feed_redis.kill().await,
            Fault::PostgresStopped => system.stop_postgres().await?,
        }
        tokio::time::sleep(HOLD).await;
        Ok(())
    }

    pub async fn heal(self, system: &mut System) -> anyhow::Result<()> {
        match self {
            Fault::WorkerKilled => system.workers[0].start()?,
            Fault::ApiKilled => {
                system.api.start()?;
                system.wait_api().await?;
            }
            Fault::RedisTerminated | Fault::RedisKilled => system.restart_redis(false).await?,
            Fault::RedisLostWithBacklog => {
                system.restart_redis(true).await?;
                for worker in &mut system.workers {
                    worker.start()?;
                }
            }
            // The workers make the group again when they find it gone.
            Fault::GroupDeleted => {}
            Fault::FeedRedisKilled => system.restart_feed_redis().await?,
            Fault::PostgresStopped => system.start_postgres().await?,
        }
        Ok(())
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::WorkerKilled => "a worker killed (SIGKILL) mid-batch",
            Fault::ApiKilled => "the API killed (SIGKILL) after acknowledged commits",
            Fault::RedisTerminated => "the streams' Redis stopped (SIGTERM) and restarted",
            Fault::RedisKilled => "the streams' Redis killed (SIGKILL) and restarted from its file",
            Fault::RedisLostWithBacklog => "the streams' Redis back empty while a backlog waits",
            Fault::GroupDeleted => "the consumer group deleted",
            Fault::FeedRedisKilled => "the feeds' Redis killed and back empty",
            Fault::PostgresStopped => "PostgreSQL stopped for 2 s during writes",
        })
    }
}
