//! The four scenarios: write, fan-out (with propagation), read and drain.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use feed_core::autoscale::step::ScaleTarget;
use feed_core::bus;
use feed_core::events::{Envelope, Event, PostCreated};
use rand::Rng;
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::cpu;
use crate::load::{self, Stats};
use crate::stack::{Stack, WorkerMetrics};

mod read;
mod write;

pub use read::{Read, everyone_reads, first_reads, read};
pub use write::{Write, count_statements, top_statements, wal_bytes, write};

/// What the scenarios share.
pub struct Bench {
    pub db: PgPool,
    /// The streams' Redis.
    pub redis: bus::Redis,
    /// The feeds' own Redis, when they have one.
    pub feed_redis: Option<bus::Redis>,
    /// An access token per user, by index.
    pub tokens: Arc<Vec<String>>,
    pub http: reqwest::Client,
    pub stack: Stack,
    /// Followers of each user, by index (for sampling feeds).
    pub followers_of: Arc<Vec<Vec<u32>>>,
    /// The users who read their feeds, by index: every `reader_stride`-th
    /// user, `readers` of them. Redis keeps their feeds, and fan-out writes
    /// only those.
    pub readers: usize,
    pub reader_stride: usize,
}

impl Bench {
    /// Whether the user at this index is one of the readers.
    pub fn reads(&self, user: usize) -> bool {
        user.is_multiple_of(self.reader_stride) && user / self.reader_stride < self.readers
    }
}

/// Longest wait for the workers to finish what a scenario queued.
const DRAIN_DEADLINE: Duration = Duration::from_secs(300);

impl Bench {
    /// Where the feeds are: their own Redis, or the streams'.
    pub fn feeds(&self) -> &bus::Redis {
        self.feed_redis.as_ref().unwrap_or(&self.redis)
    }

    /// Each Redis the stack uses, once.
    fn redis_instances(&self) -> impl Iterator<Item = &bus::Redis> {
        std::iter::once(&self.redis).chain(&self.feed_redis)
    }

    /// Waits until every stream's backlog is gone; returns how long it took.
    pub async fn wait_drained(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let mut conn = self.redis.conn().await?;
            let b = bus::backlog(&mut conn, usize::MAX).await?;
            if b.lag == Some(0) && b.pending == 0 {
                return Ok(started.elapsed());
            }
            if started.elapsed() > DRAIN_DEADLINE {
                bail!(
                    "the workers did not drain the backlog within {DRAIN_DEADLINE:?} (lag {:?}, pending {})",
                    b.lag,
                    b.pending
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn post(
        http: &reqwest::Client,
        api: &str,
        token: &str,
        n: u64,
    ) -> Option<Uuid> {
        let response = http
            .post(format!("{api}/posts"))
            .bearer_auth(token)
            .json(&json!({ "content": format!("bench post {n}") }))
            .send()
            .await
            .ok()?;
        if response.status() != reqwest::StatusCode::CREATED {
            return None;
        }
        let body: serde_json::Value = response.json().await.ok()?;
        body["id"].as_str()?.parse().ok()
    }
}

/// CPU time per request of one phase, in microseconds, by layer.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct CpuPerRequest {
    pub api_us: f64,
    pub redis_us: f64,
    pub postgres_us: f64,
    /// The bench's own HTTP clients, on the same cores.
    pub client_us: f64,
}

/// Runs `phase`, and splits the CPU time it took among the layers per
/// request it made.
pub(crate) async fn cpu_per_request<F>(
    b: &Bench,
    phase: F,
) -> anyhow::Result<(Stats, CpuPerRequest)>
where
    F: std::future::Future<Output = load::Recorded>,
{
    let api = b.stack.api_pid().context("the API is running")?;
    let me = std::process::id();
    let before = (
        cpu::process_seconds(api),
        redis_cpu_seconds(b).await?,
        postgres_seconds(&b.db).await?,
        cpu::process_seconds(me),
    );
    let stats = phase.await.stats();
    let after = (
        cpu::process_seconds(api),
        redis_cpu_seconds(b).await?,
        postgres_seconds(&b.db).await?,
        cpu::process_seconds(me),
    );
    let per = |a: f64, b: f64| (a - b) * 1e6 / stats.requests.max(1) as f64;
    let cpu = CpuPerRequest {
        api_us: per(after.0, before.0),
        redis_us: per(after.1, before.1),
        postgres_us: per(after.2, before.2),
        client_us: per(after.3, before.3),
    };
    Ok((stats, cpu))
}

/// The fan-out scenario's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct Fanout {
    pub rate: f64,
    pub workers: u32,
    pub posts: Stats,
    /// Posts written into followers' feeds.
    pub deliveries: f64,
    /// Deliveries per second at this rate, from the first post until every
    /// feed had it (the offered load, when the workers keep up).
    pub deliveries_per_s: f64,
    /// Followers the posts reached per second: feeds written, and followers
    /// passed over as they do not read (their next read rebuilds).
    pub followers_reached_per_s: f64,
    /// Commit to applied, from the workers' histogram.
    pub propagation_p50_ms: f64,
    pub propagation_p99_ms: f64,
    /// Answered post to seen in a follower's feed over HTTP (sampled).
    pub http_samples: usize,
    pub http_p50_ms: f64,
    pub http_p95_ms: f64,
    pub http_p99_ms: f64,
}

/// Posts followed over HTTP into a follower's feed, per second of load,
/// whatever the rate: the samplers' reads are the bench's, not the load
/// under test. At one post in 25 and 1,000 posts/s, 40 samplers a second,
/// each polling every 5 ms for 200 ms, read feeds up to 1,600 times a
/// second while propagation lagged: more than the read scenario's load.
const SAMPLES_PER_S: f64 = 10.0;
/// How often a sampled follower's feed is read at first, and for how long.
const SAMPLE_POLL: Duration = Duration::from_millis(5);
const SAMPLE_POLL_FAST_FOR: Duration = Duration::from_millis(200);
/// After that a sampler backs off, as a client does: from 50 ms, doubling
/// up to 1 s. Polling faster, the samplers of a run that falls behind
/// become the API's main load and push it further behind (800 of them at
/// 50 ms were 16,000 reads/s asked of an API that answers about 1,000):
/// the measure would feed on itself. The resolution stays 5 ms below
/// 200 ms; above, a post is seen at most one pause late (up to 1 s).
const SAMPLE_POLL_BACKOFF: Duration = Duration::from_millis(50);
const SAMPLE_POLL_MAX: Duration = Duration::from_secs(1);

/// Posts at `rate` per second for `duration` by random authors, with
/// `workers` workers fanning out; then waits for every feed.
pub async fn fanout(
    b: &Bench,
    rate: f64,
    duration: Duration,
    workers: u32,
) -> anyhow::Result<Fanout> {
    b.stack.workers.scale(workers).await?;
    b.stack.wait_workers_ready().await?;
    b.wait_drained().await?;
    let before = b.stack.worker_metrics().await?;
    let seen: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let started = Instant::now();
    let sample_every = (rate / SAMPLES_PER_S).round().max(1.0) as u64;
    // For each author, a follower who reads, to sample its feed.
    let sampled: Arc<Vec<Option<u32>>> = Arc::new(
        b.followers_of
            .iter()
            .map(|f| f.iter().copied().find(|&f| b.reads(f as usize)))
            .collect(),
    );
    let (http, api, tokens, sink) = (
        b.http.clone(),
        b.stack.api_url.clone(),
        b.tokens.clone(),
        seen.clone(),
    );
    let users = tokens.len();
    let recorded = load::open(rate, duration, 512, move |n| {
        let (http, api, tokens, sampled, sink) = (
            http.clone(),
            api.clone(),
            tokens.clone(),
            sampled.clone(),
            sink.clone(),
        );
        async move {
            let author = rand::rng().random_range(0..users);
            let Some(post) = Bench::post(&http, &api, &tokens[author], n).await else {
                return false;
            };
            let answered = Instant::now();
            if n % sample_every == 0
                && let Some(fan) = sampled[author]
            {
                let token = tokens[fan as usize].clone();
                tokio::spawn(async move {
                    let deadline = answered + Duration::from_secs(30);
                    let mut backoff = SAMPLE_POLL_BACKOFF / 2;
                    while Instant::now() < deadline {
                        let page = http
                            .get(format!("{api}/feed?limit=50"))
                            .bearer_auth(&token)
                            .send()
                            .await;
                        if let Ok(page) = page
                            && let Ok(text) = page.text().await
                            && text.contains(&post.to_string())
                        {
                            sink.lock().expect("not poisoned").push(answered.elapsed());
                            return;
                        }
                        let pause = if answered.elapsed() < SAMPLE_POLL_FAST_FOR {
                            SAMPLE_POLL
                        } else {
                            backoff = (backoff * 2).min(SAMPLE_POLL_MAX);
                            backoff
                        };
                        tokio::time::sleep(pause).await;
                    }
                });
            }
            true
        }
    })
    .await;
    b.wait_drained().await?;
    let elapsed = started.elapsed();
    // Sampling tasks finish within their deadline once the feeds are whole.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let delta = b.stack.worker_metrics().await?.since(&before);
    let mut http_seen = seen.lock().expect("not poisoned").clone();
    http_seen.sort_unstable();
    let pick = |q: f64| -> f64 {
        if http_seen.is_empty() {
            return 0.0;
        }
        let i = ((q * http_seen.len() as f64).ceil() as usize).clamp(1, http_seen.len()) - 1;
        http_seen[i].as_secs_f64() * 1000.0
    };
    Ok(Fanout {
        rate,
        workers,
        posts: recorded.stats(),
        deliveries: delta.feed_writes,
        deliveries_per_s: delta.feed_writes / elapsed.as_secs_f64(),
        followers_reached_per_s: (delta.feed_writes + delta.feeds_skipped) / elapsed.as_secs_f64(),
        propagation_p50_ms: quantile_ms(&delta, 0.50),
        propagation_p99_ms: quantile_ms(&delta, 0.99),
        http_samples: http_seen.len(),
        http_p50_ms: pick(0.50),
        http_p95_ms: pick(0.95),
        http_p99_ms: pick(0.99),
    })
}

fn quantile_ms(m: &WorkerMetrics, q: f64) -> f64 {
    m.propagation_quantile(q).map_or(0.0, |s| s * 1000.0)
}

/// The drain scenario's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct Drain {
    pub events: usize,
    pub one_worker_s: f64,
    pub two_workers_s: f64,
    /// How much faster two workers drain than one.
    pub speedup: f64,
    /// Feed deliveries per second while two workers drained: the fan-out
    /// capacity, as the backlog never ran dry.
    pub deliveries_per_s: f64,
    /// Followers reached per second in that drain: feeds written and
    /// followers passed over as they do not read.
    pub followers_reached_per_s: f64,
    /// Redis' CPU time (both servers' when feeds have their own) over the
    /// two-worker drain's wall time; each server runs on one thread, so
    /// near 1 for one server, Redis is what limits the drain.
    pub redis_cpu_share: f64,
    /// Redis' CPU time per feed delivery in that drain, in microseconds.
    pub redis_us_per_delivery: f64,
    /// The time Redis spent in each ZADD in that drain (inside the fan-out
    /// script), in microseconds: what a delivery cannot go below.
    pub redis_zadd_us: f64,
    /// The workers' CPU time per delivery in that drain, in microseconds.
    pub worker_us_per_delivery: f64,
    /// PostgreSQL's CPU time per delivery in that drain, in microseconds.
    pub postgres_us_per_delivery: f64,
    /// The machine's busy CPU time over its capacity (wall time × cores)
    /// in that drain: near 1, the shared cores are what limits it.
    pub machine_busy_share: f64,
}

/// A backlog of `events` post.created events (of posts that exist; every
/// user has read by then, so every follower's feed is written), drained
/// by 1 and then by 2 workers from a standing start.
pub async fn drain(b: &Bench, events: usize) -> anyhow::Result<Drain> {
    let authors: Vec<Uuid> = sqlx::query_scalar("SELECT author_id FROM posts ORDER BY id LIMIT $1")
        .bind(events as i64)
        .fetch_all(&b.db)
        .await?;
    if authors.len() < events {
        bail!(
            "the drain scenario needs {events} posts' authors; the earlier scenarios made {}",
            authors.len()
        );
    }
    let mut times = Vec::new();
    let mut deliveries = 0.0;
    let mut skipped = 0.0;
    let mut redis_cpu = 0.0;
    let mut postgres_cpu = 0.0;
    let mut worker_cpu = 0.0;
    let mut machine_busy = 0.0;
    let mut zadd_us = 0.0;
    for workers in [1, 2] {
        b.stack.workers.scale(0).await?;
        // Each run its own backlog of new posts, newer than every feed
        // holds, as after an outage of the workers: the same posts again
        // would be redeliveries, which change nothing in Redis.
        let envelopes = commit_posts(&b.db, &authors).await?;
        let mut conn = b.redis.conn().await?;
        for chunk in envelopes.chunks(1_000) {
            bus::publish(&mut conn, chunk)
                .await
                .context("publishing the backlog")?;
        }
        let cpu_before = redis_cpu_seconds(b).await?;
        let postgres_before = postgres_seconds(&b.db).await?;
        let machine_before = cpu::machine_seconds();
        reset_redis_stats(&mut b.feeds().conn().await?).await?;
        b.stack.workers.scale(workers).await?;
        times.push(b.wait_drained().await?.as_secs_f64());
        redis_cpu = redis_cpu_seconds(b).await? - cpu_before;
        postgres_cpu = postgres_seconds(&b.db).await? - postgres_before;
        let machine_after = cpu::machine_seconds();
        machine_busy =
            (machine_after.0 - machine_before.0) / (machine_after.1 - machine_before.1).max(1e-9);
        // Fresh processes: their CPU time is this drain's.
        worker_cpu = b
            .stack
            .workers
            .pids()
            .await
            .into_iter()
            .map(cpu::process_seconds)
            .sum();
        zadd_us = redis_usec_per_call(&mut b.feeds().conn().await?, "zadd").await?;
        // Fresh processes: their counters hold this drain alone.
        let counted = b.stack.worker_metrics().await?;
        (deliveries, skipped) = (counted.feed_writes, counted.feeds_skipped);
    }
    Ok(Drain {
        events,
        one_worker_s: times[0],
        two_workers_s: times[1],
        speedup: times[0] / times[1].max(1e-9),
        deliveries_per_s: deliveries / times[1].max(1e-9),
        followers_reached_per_s: (deliveries + skipped) / times[1].max(1e-9),
        redis_cpu_share: redis_cpu / times[1].max(1e-9),
        redis_us_per_delivery: redis_cpu * 1e6 / deliveries.max(1.0),
        redis_zadd_us: zadd_us,
        worker_us_per_delivery: worker_cpu * 1e6 / deliveries.max(1.0),
        postgres_us_per_delivery: postgres_cpu * 1e6 / deliveries.max(1.0),
        machine_busy_share: machine_busy,
    })
}

/// Commits a post by each of `authors`, 100 µs apart up to now (as if
/// posted while no worker ran, and newer than the previous drain's), and
/// returns their events, for the caller to publish instead of the API's
/// relay.
async fn commit_posts(db: &PgPool, authors: &[Uuid]) -> anyhow::Result<Vec<Envelope>> {
    let now = chrono::Utc::now();
    let posts: Vec<(Uuid, Uuid, chrono::DateTime<chrono::Utc>)> = authors
        .iter()
        .enumerate()
        .map(|(i, author)| {
            let at = now - chrono::Duration::microseconds(100 * (authors.len() - i) as i64);
            let ts = uuid::Timestamp::from_unix(
                uuid::NoContext,
                at.timestamp() as u64,
                at.timestamp_subsec_nanos(),
            );
            (Uuid::new_v7(ts), *author, at)
        })
        .collect();
    let ids: Vec<Uuid> = posts.iter().map(|p| p.0).collect();
    let times: Vec<chrono::DateTime<chrono::Utc>> = posts.iter().map(|p| p.2).collect();
    sqlx::query(
        "INSERT INTO posts (id, author_id, content, created_at)
         SELECT id, author_id, 'a post of the drain backlog', created_at
         FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[]) AS t(id, author_id, created_at)",
    )
    .bind(&ids)
    .bind(authors)
    .bind(&times)
    .execute(db)
    .await
    .context("committing the drain backlog")?;
    Ok(posts
        .into_iter()
        .map(|(post_id, author_id, created_at)| {
            let event = Event::PostCreated(PostCreated {
                post_id,
                author_id,
                created_at,
            });
            Envelope::new(&event, author_id, now, None)
        })
        .collect())
}

/// How many times Redis has rewritten its append-only file since it
/// started, from `INFO persistence`.
pub async fn redis_aof_rewrites(b: &Bench) -> anyhow::Result<u64> {
    let mut rewrites = 0;
    for instance in b.redis_instances() {
        let info = redis_info(&mut instance.conn().await?, "persistence").await?;
        rewrites += info_field(&info, "aof_rewrites")?.parse::<u64>()?;
    }
    Ok(rewrites)
}

/// One section of Redis' `INFO`.
async fn redis_info(
    conn: &mut impl redis::aio::ConnectionLike,
    section: &str,
) -> anyhow::Result<String> {
    Ok(redis::cmd("INFO").arg(section).query_async(conn).await?)
}

/// The value of a `key:value` line of an `INFO` section.
fn info_field<'a>(info: &'a str, key: &str) -> anyhow::Result<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
        .with_context(|| format!("no {key} in Redis' INFO"))
}

/// Zeroes Redis' per-command statistics.
pub async fn reset_redis_stats(conn: &mut impl redis::aio::ConnectionLike) -> anyhow::Result<()> {
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(conn)
        .await?;
    Ok(())
}

/// The microseconds Redis spent per call of `command` since its statistics
/// were reset, from `INFO commandstats` (calls from scripts included).
pub async fn redis_usec_per_call(
    conn: &mut impl redis::aio::ConnectionLike,
    command: &str,
) -> anyhow::Result<f64> {
    let info = redis_info(conn, "commandstats").await?;
    info_field(&info, &format!("cmdstat_{command}"))?
        .split(',')
        .find_map(|f| f.strip_prefix("usec_per_call="))
        .with_context(|| format!("no usec_per_call for {command} in Redis' INFO"))?
        .parse()
        .map_err(Into::into)
}

/// The CPU seconds the bench's PostgreSQL cluster has used: its
/// postmaster (found as the parent of one of the pool's backends) and
/// every backend it started, those that ended included.
pub(crate) async fn postgres_seconds(db: &PgPool) -> anyhow::Result<f64> {
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(db)
        .await?;
    let postmaster = u32::try_from(backend)
        .ok()
        .and_then(cpu::parent)
        .context("PostgreSQL's postmaster is not on this machine")?;
    Ok(cpu::tree_seconds(postmaster))
}

/// The CPU time Redis has used since it started (all its threads), from
/// `INFO cpu`.
/// The CPU seconds Redis has used, both instances' when feeds have their
/// own.
pub(crate) async fn redis_cpu_seconds(b: &Bench) -> anyhow::Result<f64> {
    let mut seconds = 0.0;
    for instance in b.redis_instances() {
        let info = redis_info(&mut instance.conn().await?, "cpu").await?;
        seconds += info_field(&info, "used_cpu_user")?.parse::<f64>()?
            + info_field(&info, "used_cpu_sys")?.parse::<f64>()?;
    }
    Ok(seconds)
}
