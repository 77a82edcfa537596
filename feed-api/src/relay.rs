//! The relay: the slow path of publishing, in every API replica.
//!
//! Every `FANOUT_RELAY_INTERVAL_MS` it publishes outbox rows still
//! unpublished after `FANOUT_RELAY_GRACE_MS` (Redis was down, the process
//! died, the publisher's queue was full), checks what was published
//! ([`crate::recover`]: applied events are marked so, lost ones published
//! again), counts what waits, and prunes applied rows past retention.
//! Several replicas may run it: each locks the rows it moves (`SKIP
//! LOCKED`).

use std::sync::Arc;
use std::time::Duration;

use feed_core::bus::{self, Redis};
use feed_core::db;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::publish::{Marks, RelayError, Unpublished};
use crate::recover::{self, Recovered};

/// Most outbox rows the relay moves per transaction.
const RELAY_BATCH: i64 = 500;
/// How often the relay deletes published events past retention.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// The relay's pace: how often it runs, how long an event may wait for the
/// fast path before the relay publishes (or checks) it, how long applied
/// events are kept.
#[derive(Debug, Clone, Copy)]
pub struct RelayTiming {
    pub interval: Duration,
    pub grace: Duration,
    pub retention: Duration,
}

/// Every `interval` until `shutdown`: publishes events committed but not
/// published within `grace`, checks those published, counts what is left
/// unpublished into `unpublished`, and prunes applied events past
/// retention.
pub async fn relay(
    db: PgPool,
    redis: Redis,
    metrics: Arc<Metrics>,
    unpublished: Arc<Unpublished>,
    timing: RelayTiming,
    shutdown: CancellationToken,
) {
    let RelayTiming {
        interval,
        grace,
        retention,
    } = timing;
    let mut last_prune = tokio::time::Instant::now();
    loop {
        let moved = match relay_once(&db, &redis, grace).await {
            Ok(n) => {
                if n > 0 {
                    info!(events = n, "relay published events the fast path missed");
                    metrics
                        .published
                        .with_label_values(&["relay"])
                        .inc_by(n as u64);
                }
                n
            }
            Err(e) => {
                debug!(error = %e, "relay pass failed");
                0
            }
        };
        let unapplied = db::outbox::unapplied(&db).await.ok();
        if let Some(count) = unapplied {
            metrics.outbox_unapplied.set(count);
        }
        // Nothing published awaits its verdict: no pass over the streams.
        let recovered = if unapplied == Some(0) {
            Recovered::default()
        } else {
            match recover::recover_once(&db, &redis, grace).await {
                Ok(done) => {
                    if done.republished > 0 {
                        warn!(
                            events = done.republished,
                            "published again events the streams lost before they were applied"
                        );
                        metrics
                            .published
                            .with_label_values(&["recovered"])
                            .inc_by(done.republished as u64);
                    }
                    done
                }
                Err(e) => {
                    debug!(error = %e, "checking published events failed");
                    Recovered::default()
                }
            }
        };
        if let Ok((count, oldest)) = db::outbox::backlog(&db).await {
            metrics.outbox_backlog.set(count);
            unpublished.set(count, oldest);
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            let before = chrono::Utc::now() - retention;
            if let Ok(n) = db::outbox::prune(&db, before, 10_000).await {
                debug!(events = n, "pruned published events past retention");
            }
            last_prune = tokio::time::Instant::now();
        }
        // A full batch means more are waiting: go again at once.
        if moved < RELAY_BATCH as usize && !recovered.more {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.cancelled() => return,
            }
        } else if shutdown.is_cancelled() {
            return;
        }
    }
}

/// One relay pass; returns how many events it published.
pub async fn relay_once(db: &PgPool, redis: &Redis, grace: Duration) -> Result<usize, RelayError> {
    let older_than = chrono::Utc::now() - grace;
    let mut tx = db.begin().await?;
    let events = db::outbox::lock_unpublished(&mut tx, older_than, RELAY_BATCH).await?;
    if events.is_empty() {
        return Ok(0);
    }
    let mut conn = redis.conn().await?;
    let published = bus::publish(&mut conn, &events).await?;
    Marks::of(&events, published).write(&mut *tx).await?;
    tx.commit().await?;
    Ok(events.len())
}
