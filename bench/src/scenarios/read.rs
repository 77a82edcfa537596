//! The read scenario: first reads (rebuilt from PostgreSQL), warm reads
//! beside `GET /healthz`, the CPU each layer spends per request, and the
//! statements PostgreSQL runs per warm read.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;

use super::{Bench, CpuPerRequest, cpu_per_request};
use crate::load::{self, Stats};

/// The read scenario's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct Read {
    pub clients: usize,
    pub readers: usize,
    /// Each reader's first read: the feed is rebuilt from PostgreSQL.
    pub cold: Stats,
    /// Reads of feeds already in Redis: the common case.
    pub warm: Stats,
    /// `GET /healthz` by as many clients for as long: the API's HTTP floor.
    pub healthz: Stats,
    /// CPU per warm read, in microseconds, by layer.
    pub warm_cpu: CpuPerRequest,
    /// CPU per `GET /healthz`, in microseconds, by layer.
    pub healthz_cpu: CpuPerRequest,
    /// Statements PostgreSQL ran per warm read (from `pg_stat_statements`,
    /// leaving out the relay's outbox statements); `None` when the server
    /// was not started with it.
    pub pg_statements_per_read: Option<f64>,
}

/// Reads the 20-item home feed of user `user_of(i)` for request `i`.
fn read_feed(
    b: &Bench,
    user_of: impl Fn(usize) -> usize + Clone + Send + Sync + 'static,
) -> impl Fn(usize) -> BoxedRead + Clone + Send + Sync + 'static {
    let (http, api, tokens) = (b.http.clone(), b.stack.api_url.clone(), b.tokens.clone());
    move |i: usize| {
        let (http, api, tokens) = (http.clone(), api.clone(), tokens.clone());
        let user = user_of(i);
        Box::pin(async move { get_feed(&http, &api, &tokens[user]).await })
    }
}

/// Reads the feed of reader `i` (any `i`: it wraps around).
fn read_readers_feed(b: &Bench) -> impl Fn(usize) -> BoxedRead + Clone + Send + Sync + 'static {
    let (readers, stride) = (b.readers.max(1), b.reader_stride);
    read_feed(b, move |i| (i % readers) * stride)
}

/// Reads a 20-item home feed; whether it was answered in full.
async fn get_feed(http: &reqwest::Client, api: &str, token: &str) -> bool {
    match http
        .get(format!("{api}/feed?limit=20"))
        .bearer_auth(token)
        .send()
        .await
    {
        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
        Err(_) => false,
    }
}

type BoxedRead = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>;

/// Every reader reads their feed once, by `clients` clients: each feed is
/// rebuilt from PostgreSQL, and Redis keeps it from then on.
pub async fn first_reads(b: &Bench, clients: usize) -> anyhow::Result<Stats> {
    b.wait_drained().await?;
    Ok(load::each(b.readers, clients, read_readers_feed(b))
        .await
        .stats())
}

/// Every other user reads their feed once too, so that Redis keeps every
/// feed: fan-out then writes to every follower, the worst case the drain
/// measures.
pub async fn everyone_reads(b: &Bench, clients: usize) -> anyhow::Result<Stats> {
    b.wait_drained().await?;
    let others: Arc<Vec<usize>> = Arc::new((0..b.tokens.len()).filter(|&u| !b.reads(u)).collect());
    let count = others.len();
    let read = read_feed(b, move |i| others[i]);
    Ok(load::each(count, clients, read).await.stats())
}

/// The readers read their feeds, already in Redis, by `clients` clients as
/// fast as they are answered for `duration`, again and again.
pub async fn read(
    b: &Bench,
    clients: usize,
    cold: Stats,
    duration: Duration,
) -> anyhow::Result<Read> {
    b.wait_drained().await?;
    let (http, api) = (b.http.clone(), b.stack.api_url.clone());
    let (healthz, healthz_cpu) = cpu_per_request(
        b,
        load::closed(clients, duration, move |_, _| {
            let (http, api) = (http.clone(), api.clone());
            async move {
                match http.get(format!("{api}/healthz")).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                }
            }
        }),
    )
    .await?;
    let counting = start_counting_statements(&b.db).await;
    let read_one = read_readers_feed(b);
    let (warm, warm_cpu) = cpu_per_request(
        b,
        load::closed(clients, duration, move |client, n| {
            read_one(client * 7919 + n as usize * clients)
        }),
    )
    .await?;
    let pg_statements_per_read = match counting {
        Ok(()) => Some(statements_run(&b.db).await? as f64 / warm.requests.max(1) as f64),
        Err(e) => {
            eprintln!("not counting PostgreSQL statements: {e}");
            None
        }
    };
    Ok(Read {
        clients,
        readers: b.readers,
        cold,
        warm,
        healthz,
        warm_cpu,
        healthz_cpu,
        pg_statements_per_read,
    })
}

/// Starts counting the statements PostgreSQL runs (`pg_stat_statements`,
/// which `scripts/services.sh` preloads).
pub(super) async fn start_counting_statements(db: &PgPool) -> anyhow::Result<()> {
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(db)
        .await?;
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(db)
        .await?;
    Ok(())
}

/// Statements run in this database since [`start_counting_statements`],
/// apart from the relay's (it polls the outbox whatever the load) and the
/// counting's own.
async fn statements_run(db: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(sum(s.calls), 0)::bigint
         FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
         WHERE d.datname = current_database()
           AND s.query NOT ILIKE '%outbox%'
           AND s.query NOT ILIKE '%pg_stat_statements%'
           AND s.query NOT IN ('BEGIN', 'COMMIT', 'ROLLBACK')",
    )
    .fetch_one(db)
    .await?)
}
