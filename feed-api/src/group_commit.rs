//! Group commit for new posts: posts that arrive while earlier ones are
//! being written share one statement and one commit.
//!
//! Each `POST /posts` hands its post to the [`PostWriter`] and waits for its
//! own commit, so a 201 still means durable. When the writer is idle a post
//! is written at once, alone; under load, those that queued meanwhile go
//! together. A commit (a WAL flush) costs PostgreSQL about as much as the
//! rows it carries, so posts per second grow with the batch, while no post
//! waits longer than one statement ahead of it.
//!
//! A batch is atomic: if PostgreSQL refuses it (an author deleted
//! meanwhile) its posts are retried one by one, so each request gets its own
//! answer and one bad post fails nobody else's. If PostgreSQL cannot be
//! reached, every request of the batch gets that failure at once.

use std::collections::HashMap;
use std::sync::Arc;

use feed_core::db::{self, posts::NewPost, posts::Post};
use prometheus::Histogram;
use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::debug;
use uuid::Uuid;

/// Most posts in one statement. Past a few dozen rows the commit is a small
/// share of the statement's cost, and bigger batches only add latency.
const BATCH_MAX: usize = 64;
/// Statements in flight at once. One: while it runs (and its commit waits
/// for the WAL flush) the next posts queue, and the next statement takes
/// them all. A second statement in flight halved the batches and doubled
/// the statements and commits per post: on the bench's 2-core machine,
/// where PostgreSQL shares the cores with the API, it cost PostgreSQL 14 to
/// 36 % more CPU per post, and posts per second fell in 5 of 8 paired
/// rounds (docs/benchmarks.md, "Before and after"). It paid only on an
/// idle machine, where it overlaps a commit's wait for the disk.
const IN_FLIGHT: usize = 1;
/// Posts waiting for a statement; beyond it, requests wait to queue.
const QUEUE_CAPACITY: usize = 1_024;

type Reply = oneshot::Sender<sqlx::Result<Post>>;

/// Writes posts with their events, grouping concurrent ones. Cheap to
/// clone.
#[derive(Clone)]
pub struct PostWriter {
    queue: mpsc::Sender<(NewPost, Reply)>,
}

impl PostWriter {
    /// A writer and its task; the task ends once every writer is dropped
    /// and the posts in hand are written.
    pub fn start(db: PgPool, batch_sizes: Histogram) -> (PostWriter, tokio::task::JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let task = tokio::spawn(run(db, rx, batch_sizes));
        (PostWriter { queue }, task)
    }

    /// Inserts a post and its event, returning once they are committed.
    pub async fn insert(&self, post: NewPost) -> sqlx::Result<Post> {
        let (reply, answer) = oneshot::channel();
        // The task outlives every writer; were it gone, the pool is too.
        self.queue
            .send((post, reply))
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

async fn run(db: PgPool, mut rx: mpsc::Receiver<(NewPost, Reply)>, batch_sizes: Histogram) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut batch = Vec::with_capacity(BATCH_MAX);
    loop {
        // Wait for a free slot first: posts keep queueing meanwhile, and
        // the next batch takes them all.
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        if rx.recv_many(&mut batch, BATCH_MAX).await == 0 {
            break;
        }
        batch_sizes.observe(batch.len() as f64);
        let items = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_MAX));
        let db = db.clone();
        tokio::spawn(async move {
            write(&db, items).await;
            drop(slot);
        });
    }
    // Every writer is gone: let the statements in flight finish.
    let _ = slots.acquire_many(IN_FLIGHT as u32).await;
}

async fn write(db: &PgPool, items: Vec<(NewPost, Reply)>) {
    let (posts, replies): (Vec<NewPost>, Vec<Reply>) = items.into_iter().unzip();
    // The requester may have gone; the post stands regardless.
    match db::posts::insert_many_with_events(db, &posts).await {
        Ok(written) => {
            let mut written: HashMap<Uuid, Post> = written.into_iter().map(|p| (p.id, p)).collect();
            for (post, reply) in posts.iter().zip(replies) {
                let _ = reply.send(written.remove(&post.id).ok_or(sqlx::Error::RowNotFound));
            }
        }
        // PostgreSQL refused the batch (an author deleted meanwhile): one
        // post is to blame, so each goes alone and gets its own answer.
        Err(e) if posts.len() > 1 && e.as_database_error().is_some() => {
            debug!(error = %e, posts = posts.len(), "group insert refused; inserting one by one");
            for (post, reply) in posts.iter().zip(replies) {
                let one = db::posts::insert_many_with_events(db, std::slice::from_ref(post))
                    .await
                    .and_then(|mut rows| rows.pop().ok_or(sqlx::Error::RowNotFound));
                let _ = reply.send(one);
            }
        }
        // Not the posts' fault (PostgreSQL unreachable, the pool timed
        // out): retrying each would only make every request wait longer.
        Err(e) => {
            let mut replies = replies.into_iter();
            if let Some(first) = replies.next() {
                for reply in replies {
                    let _ = reply.send(Err(same_failure(&e)));
                }
                let _ = first.send(Err(e));
            }
        }
    }
}

/// An error for another request of a batch that failed with `e` (sqlx's
/// errors cannot be cloned), still read as "unavailable" when `e` is.
fn same_failure(e: &sqlx::Error) -> sqlx::Error {
    if db::is_unavailable(e) {
        sqlx::Error::Io(std::io::Error::other(e.to_string()))
    } else {
        sqlx::Error::Protocol(e.to_string())
    }
}
