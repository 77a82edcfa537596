//! The write scenario: clients post as fast as they are answered, with the
//! workers stopped, and the CPU each layer spends per post.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use feed_core::autoscale::step::ScaleTarget;
use feed_core::{bus, db, keys};
use serde::Serialize;
use sqlx::PgPool;

use super::{Bench, CpuPerRequest, DRAIN_DEADLINE, cpu_per_request};
use crate::load::{self, Stats};

/// The write scenario's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct Write {
    pub clients: usize,
    pub stats: Stats,
    /// CPU per post, in microseconds, by layer: what separates the write
    /// path from pgbench's insert on a machine they all share.
    pub cpu: CpuPerRequest,
}

/// `clients` users post as fast as they are answered, for `duration`. The
/// workers are stopped meanwhile, so the write path alone is measured.
/// Their events are skipped afterwards: fanning out a hundred thousand
/// posts would take minutes and measure nothing the drain does not.
pub async fn write(b: &Bench, clients: usize, duration: Duration) -> anyhow::Result<Write> {
    b.stack.workers.scale(0).await?;
    let http = b.http.clone();
    let api = b.stack.api_url.clone();
    let tokens = b.tokens.clone();
    let users = tokens.len();
    let (stats, cpu) = cpu_per_request(
        b,
        load::closed(clients, duration, move |client, n| {
            let http = http.clone();
            let api = api.clone();
            let tokens = tokens.clone();
            async move {
                let author = (client + n as usize * clients) % users;
                Bench::post(&http, &api, &tokens[author], n).await.is_some()
            }
        }),
    )
    .await?;
    skip_published(b).await?;
    Ok(Write {
        clients,
        stats,
        cpu,
    })
}

/// Waits until the API has published every committed event, then drops
/// them: the streams start over, empty, with the workers' group. The
/// outbox is told they are settled first; otherwise the relay would find
/// them gone from the streams and publish them all again (as it did: the
/// next scenarios fanned out the write scenario's posts after all, and the
/// relay's passes ran in a later write round).
async fn skip_published(b: &Bench) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let (unpublished, _) = db::outbox::backlog(&b.db).await?;
        if unpublished == 0 {
            break;
        }
        if started.elapsed() > DRAIN_DEADLINE {
            bail!("the API left {unpublished} events unpublished for {DRAIN_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sqlx::query("UPDATE outbox SET applied_at = now() WHERE applied_at IS NULL")
        .execute(&b.db)
        .await
        .context("settling the write scenario's events in the outbox")?;
    let mut conn = b.redis.conn().await?;
    redis::cmd("DEL")
        .arg(keys::all_streams())
        .query_async::<()>(&mut conn)
        .await
        .context("dropping the write scenario's events")?;
    bus::ensure_groups(&mut conn).await?;
    Ok(())
}

/// Bytes of WAL PostgreSQL has written since its statistics were reset
/// (`pg_stat_wal`): the difference over a phase, per post or per pgbench
/// transaction, is what each costs the log.
pub async fn wal_bytes(db: &PgPool) -> anyhow::Result<f64> {
    Ok(
        sqlx::query_scalar::<_, f64>("SELECT wal_bytes::float8 FROM pg_stat_wal")
            .fetch_one(db)
            .await?,
    )
}

/// One statement's share of a phase, from `pg_stat_statements`.
#[derive(Debug, Clone)]
pub struct StatementCost {
    pub query: String,
    pub calls: i64,
    pub total_ms: f64,
    pub wal_bytes: f64,
}

/// Starts counting statements for [`top_statements`].
pub async fn count_statements(db: &PgPool) -> anyhow::Result<()> {
    super::read::start_counting_statements(db).await
}

/// The `limit` statements that took PostgreSQL longest since
/// [`count_statements`], longest first, their text cut to one short line.
pub async fn top_statements(db: &PgPool, limit: i64) -> anyhow::Result<Vec<StatementCost>> {
    let rows: Vec<(String, i64, f64, f64)> = sqlx::query_as(
        "SELECT s.query, s.calls, s.total_exec_time, s.wal_bytes::float8
         FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
         WHERE d.datname = current_database()
         ORDER BY s.total_exec_time DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(query, calls, total_ms, wal_bytes)| StatementCost {
            query: query
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(90)
                .collect(),
            calls,
            total_ms,
            wal_bytes,
        })
        .collect())
}
