//! Getting committed events onto their streams.
//!
//! The fast path: after a request commits a change and its outbox row, the
//! envelope goes to the [`Publisher`], a background task that XADDs batches;
//! beside it, another marks them published, one `UPDATE` for what queued.
//! The slow path is the relay (`relay.rs`): it publishes outbox rows still
//! unpublished after a grace period (Redis was down, the process died, the
//! publisher's queue was full), and checks what was published (`recover.rs`).
//! Both mark what they publish with this module's [`Marks`]. Any of them may
//! publish an event twice; consumers are idempotent.

use std::sync::Arc;
use std::time::Duration;

use feed_core::bus::{self, Redis};
use feed_core::db;
use feed_core::events::Envelope;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use uuid::Uuid;

use crate::metrics::Metrics;

/// Events queued for the fast path before the relay is left to catch up.
const QUEUE_CAPACITY: usize = 10_000;
/// Most events per XADD pipeline.
const BATCH_MAX: usize = 256;
/// Published batches waiting to be marked; past it the relay republishes
/// them (marking is that far behind only if PostgreSQL is struggling).
const MARK_QUEUE: usize = 1_024;
/// Most batches merged into one `UPDATE` (64 × 256 ids at most), so a
/// backlog is marked in statements of bounded size. Under load a
/// [`MARK_WINDOW`] gathers a few dozen small batches.
const MARK_MERGE: usize = 64;
/// How long marking waits, once a batch is published, for more to merge
/// into the same `UPDATE`. Each marking statement is a commit of its own:
/// marking every batch at once ran about a thousand a second in the write
/// scenario, more statements and commits than the posts' own, and cost
/// PostgreSQL a third more CPU per post (docs/benchmarks.md, "Before and
/// after"). 20 ms caps marking at 50 statements a second. The marks are bookkeeping, not delivery (the events are on
/// their streams already): the relay leaves events alone for
/// `FANOUT_RELAY_GRACE_MS` (2 s by default), far longer; feed freshness
/// may count an event as unpublished for these 20 ms more.
const MARK_WINDOW: Duration = Duration::from_millis(20);

/// Hands committed events to the publishing task.
#[derive(Clone)]
pub struct Publisher {
    queue: mpsc::Sender<Envelope>,
    /// What the relay last found committed but on no stream yet.
    unpublished: Arc<Unpublished>,
}

/// Events committed but on no stream yet, as the relay last counted them
/// (every `FANOUT_RELAY_INTERVAL_MS`): how many, and the commit time of the
/// oldest. Feed reads take it into their freshness without a query.
#[derive(Debug, Default)]
pub struct Unpublished(std::sync::Mutex<(i64, Option<chrono::DateTime<chrono::Utc>>)>);

impl Unpublished {
    pub(crate) fn set(&self, count: i64, oldest: Option<chrono::DateTime<chrono::Utc>>) {
        *self.0.lock().expect("not poisoned") = (count, oldest);
    }

    /// How many, and the oldest's commit time.
    pub fn get(&self) -> (i64, Option<chrono::DateTime<chrono::Utc>>) {
        *self.0.lock().expect("not poisoned")
    }
}

impl Publisher {
    /// A publisher and the task that drains it; run the task with
    /// [`run_publisher`].
    pub fn new() -> (Publisher, mpsc::Receiver<Envelope>) {
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let unpublished = Arc::default();
        (Publisher { queue, unpublished }, rx)
    }

    /// What the relay last found committed but unpublished.
    pub fn unpublished(&self) -> Arc<Unpublished> {
        self.unpublished.clone()
    }

    /// Queues committed events for publishing. Never blocks a request: when
    /// the queue is full the relay publishes them from the outbox instead.
    pub fn publish(&self, events: Vec<Envelope>) {
        for event in events {
            if self.queue.try_send(event).is_err() {
                debug!("publish queue full; leaving the event to the relay");
            }
        }
    }
}

/// Publishes queued events in batches until the queue closes.
pub async fn run_publisher(
    mut rx: mpsc::Receiver<Envelope>,
    redis: Redis,
    db: PgPool,
    metrics: Arc<Metrics>,
) {
    // Marking runs beside publishing, so the next XADD does not wait for
    // the last batch's UPDATE and its commit.
    let (marks, marks_rx) = mpsc::channel::<Marks>(MARK_QUEUE);
    let marker = tokio::spawn(mark_published(db, marks_rx));
    let mut batch = Vec::with_capacity(BATCH_MAX);
    while rx.recv_many(&mut batch, BATCH_MAX).await > 0 {
        match publish_batch(&redis, &batch).await {
            Ok(published) => {
                metrics
                    .published
                    .with_label_values(&["fast"])
                    .inc_by(batch.len() as u64);
                if marks.try_send(Marks::of(&batch, published)).is_err() {
                    // The relay will publish them again: harmless duplicates,
                    // but a sign PostgreSQL is falling behind.
                    warn!("marking queue full; the relay will publish these events again");
                }
            }
            Err(e) => {
                metrics.publish_failures.inc_by(batch.len() as u64);
                warn!(error = %e, events = batch.len(), "publishing failed; the relay will retry");
            }
        }
        batch.clear();
    }
    drop(marks);
    let _ = marker.await;
}

/// Published events and where they landed, column by column, as the
/// outbox's marking `UPDATE` takes them.
#[derive(Debug, Default)]
pub(crate) struct Marks {
    ids: Vec<Uuid>,
    entries: Vec<String>,
    epochs: Vec<Option<String>>,
}

impl Marks {
    pub(crate) fn of(events: &[Envelope], published: Vec<bus::Published>) -> Marks {
        let mut marks = Marks::default();
        marks.add(events, published);
        marks
    }

    fn add(&mut self, events: &[Envelope], published: Vec<bus::Published>) {
        for (event, at) in events.iter().zip(published) {
            self.ids.push(event.event_id);
            self.entries.push(at.entry);
            self.epochs.push(at.epoch);
        }
    }

    fn merge(&mut self, other: Marks) {
        self.ids.extend(other.ids);
        self.entries.extend(other.entries);
        self.epochs.extend(other.epochs);
    }

    pub(crate) async fn write(&self, db: impl sqlx::PgExecutor<'_>) -> sqlx::Result<()> {
        db::outbox::mark_published(db, &self.ids, &self.entries, &self.epochs).await
    }
}

/// Marks published batches in the outbox, merging those that queue within
/// a [`MARK_WINDOW`] of the first into one `UPDATE`.
async fn mark_published(db: PgPool, mut rx: mpsc::Receiver<Marks>) {
    let mut batches = Vec::new();
    while rx.recv_many(&mut batches, MARK_MERGE).await > 0 {
        if batches.len() < MARK_MERGE {
            tokio::time::sleep(MARK_WINDOW).await;
            // What queued meanwhile, without waiting for more.
            while batches.len() < MARK_MERGE
                && let Ok(batch) = rx.try_recv()
            {
                batches.push(batch);
            }
        }
        let mut marks = Marks::default();
        for batch in batches.drain(..) {
            marks.merge(batch);
        }
        if let Err(e) = marks.write(&db).await {
            // The relay will publish them again: harmless duplicates.
            warn!(error = %e, events = marks.ids.len(), "marking events published failed");
        }
    }
}

async fn publish_batch(
    redis: &Redis,
    batch: &[Envelope],
) -> redis::RedisResult<Vec<bus::Published>> {
    let mut conn = redis.conn().await?;
    bus::publish(&mut conn, batch).await
}

/// Creates the workers' consumer group on every stream as soon as Redis
/// answers, so backlog and lag are known (and kept for the workers) even
/// before the first worker starts.
pub async fn ensure_groups(redis: Redis, shutdown: CancellationToken) {
    loop {
        let created = async {
            let mut conn = redis.conn().await?;
            bus::ensure_groups(&mut conn).await
        };
        match created.await {
            Ok(()) => return,
            Err(e) => debug!(error = %e, "creating consumer groups failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Why a pass over the outbox (the relay's, or recovery's) failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("PostgreSQL: {0}")]
    Db(#[from] sqlx::Error),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}
