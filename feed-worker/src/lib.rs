//! Fanout's feed worker: a member of the `feed-workers` consumer group that
//! applies domain events to the derived state in Redis.
//!
//! # Layout
//!
//! - [`config`]: settings (flags and `FANOUT_*` variables).
//! - [`fanout`]: what each event does (fan-out, backfill, clean-up, likes).
//! - [`consumer`]: the read → apply → acknowledge loop, claiming, dead letters.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`metrics`]: the Prometheus metrics.
#![forbid(unsafe_code)]

pub mod config;
pub mod consumer;
pub mod fanout;
pub mod http;
pub mod metrics;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use feed_core::bus;
use feed_core::feed_store::FeedWriter;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::consumer::{Consumer, Settings};
use crate::fanout::Fanout;
use crate::metrics::Metrics;

/// Runs a worker until `shutdown` is cancelled: serves its probes, waits for
/// Redis, then consumes. Returns after the batch in hand is acknowledged.
pub async fn run(config: Config, db: PgPool, shutdown: CancellationToken) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let redis = config.redis.connect(Duration::from_secs(2))?;
    let feeds = config.redis.connect_feeds(&redis, Duration::from_secs(2))?;
    // A blocked XREADGROUP holds its connection: reads get their own, with a
    // response timeout longer than the block.
    let reader = config
        .redis
        .connect(config.block() + Duration::from_secs(5))?;
    let consuming = Arc::new(AtomicBool::new(false));

    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding FANOUT_WORKER_HTTP_ADDR {}", config.http_addr))?;
    info!(addr = %listener.local_addr()?, "worker probes listening");
    let probes = http::Probes {
        db: db.clone(),
        redis: redis.clone(),
        feed_redis: config.redis.feed_redis_url.is_some().then(|| feeds.clone()),
        metrics: metrics.clone(),
        consuming: consuming.clone(),
    };
    let http_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, http::router(probes))
            .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
            .await
    });

    // Wait for Redis rather than crash-looping while it starts.
    let (streams, feeds, reader) = loop {
        let connected = async {
            let mut conn = redis.conn().await?;
            bus::ensure_groups(&mut conn).await?;
            Ok::<_, redis::RedisError>((conn, feeds.conn().await?, reader.conn().await?))
        };
        match connected.await {
            Ok(conns) => break conns,
            Err(e) => {
                warn!(error = %e, "Redis not reachable yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
        }
    };
    consuming.store(true, Ordering::Relaxed);

    let consumer = Consumer {
        settings: Settings {
            consumer: config.consumer(),
            batch_size: config.batch_size,
            concurrency: config.concurrency,
            block: config.block(),
            claim_idle: config.claim_idle(),
            claim_interval: Duration::from_millis(config.claim_interval_ms),
            max_deliveries: config.max_deliveries,
            trim_interval: Duration::from_millis(config.trim_interval_ms),
        },
        fanout: Fanout {
            db: db.clone(),
            writer: FeedWriter::spawn(feeds.clone(), config.feed.limits()),
            redis: feeds,
            limits: config.feed.limits(),
            celebrity_threshold: config.feed.celebrity_threshold,
            chunk: config.fanout_chunk,
            backfill_posts: config.backfill_posts,
        },
        streams,
        reader,
        db,
        metrics,
    };
    consumer.run(shutdown.clone()).await;
    consuming.store(false, Ordering::Relaxed);
    shutdown.cancel();
    server.await??;
    Ok(())
}
