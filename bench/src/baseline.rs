//! The hardware's limits, measured by the datastores' own tools in the same
//! run: `pgbench` inserting one post per transaction, and
//! `redis-benchmark` with pipelined ZADD and XADD.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use serde::Serialize;
use sqlx::PgPool;
use tokio::process::Command;

/// Pipelined commands per round trip in redis-benchmark: what a worker's
/// fan-out does (a pipeline of ZADDs per chunk of followers).
const REDIS_PIPELINE: u32 = 16;

/// What the baselines measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Baselines {
    /// Posts inserted per second by pgbench, one per transaction.
    pub pgbench_tps: f64,
    /// PostgreSQL's CPU per pgbench transaction, in microseconds: beside
    /// the write scenario's per post, it shows whether the database or
    /// what sits in front of it separates the two.
    pub pgbench_postgres_us: f64,
    /// Pipelined ZADDs per second.
    pub zadd_per_s: f64,
    /// The time Redis spent in each of those ZADDs, in microseconds.
    pub zadd_us: f64,
    /// Pipelined XADDs per second.
    pub xadd_per_s: f64,
}

/// A PostgreSQL tool: on PATH, or in Debian's versioned folder.
fn pg_tool(name: &str) -> PathBuf {
    if let Some(paths) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&paths).find(|d| d.join(name).is_file())
    {
        return dir.join(name);
    }
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("bin").join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// What one pgbench run measured.
#[derive(Debug, Clone, Copy)]
pub struct Pgbench {
    pub tps: f64,
    /// PostgreSQL's CPU per transaction, in microseconds.
    pub postgres_us: f64,
}

/// `pgbench` inserting posts like the API does (a time-ordered id, an
/// existing author), with `clients` connections for `seconds`.
pub async fn pgbench(
    db: &PgPool,
    url: &str,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<Pgbench> {
    sqlx::query("DROP TABLE IF EXISTS bench_authors")
        .execute(db)
        .await?;
    sqlx::query("CREATE TABLE bench_authors AS SELECT row_number() OVER () AS n, id FROM users")
        .execute(db)
        .await?;
    sqlx::query("ALTER TABLE bench_authors ADD PRIMARY KEY (n)")
        .execute(db)
        .await?;
    let authors: i64 = sqlx::query_scalar("SELECT count(*) FROM bench_authors")
        .fetch_one(db)
        .await?;
    let dir = std::env::temp_dir().join(format!("fanout-pgbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("insert-post.sql");
    // A UUIDv7-like id (milliseconds first, then random), so the primary
    // key index sees the same append-mostly pattern as the API's ids.
    std::fs::write(
        &script,
        "\\set n random(1, :authors)\n\
         INSERT INTO posts (id, author_id, content, created_at) \
         SELECT (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0') \
         || substr(md5(random()::text), 1, 20))::uuid, id, 'a post from pgbench', now() \
         FROM bench_authors WHERE n = :n;\n",
    )?;
    let cpu_before = crate::scenarios::postgres_seconds(db).await?;
    let output = Command::new(pg_tool("pgbench"))
        .args(["-n", "-j", "2"])
        .args(["-c", &clients.to_string()])
        .args(["-T", &seconds.to_string()])
        .args(["-D", &format!("authors={authors}")])
        .arg("-f")
        .arg(&script)
        .arg(url)
        .output()
        .await
        .context("running pgbench (PostgreSQL's client tools)")?;
    let postgres_seconds = crate::scenarios::postgres_seconds(db).await? - cpu_before;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "pgbench failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    sqlx::query("DELETE FROM posts WHERE content = 'a post from pgbench'")
        .execute(db)
        .await?;
    let _ = std::fs::remove_dir_all(&dir);
    let (tps, transactions) =
        parse_pgbench(&text).with_context(|| format!("no tps in pgbench's output: {text}"))?;
    Ok(Pgbench {
        tps,
        postgres_us: postgres_seconds * 1e6 / transactions.max(1) as f64,
    })
}

/// pgbench's transactions per second and how many it processed.
fn parse_pgbench(text: &str) -> Option<(f64, u64)> {
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
    };
    let tps = field("tps = ")?.parse().ok()?;
    let transactions = field("number of transactions actually processed: ")?
        .parse()
        .ok()?;
    Some((tps, transactions))
}

/// `redis-benchmark` running one command, pipelined, over random keys;
/// returns requests per second.
pub async fn redis_benchmark(
    port: u16,
    clients: usize,
    requests: u64,
    command: &[&str],
) -> anyhow::Result<f64> {
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &clients.to_string()])
        .args(["-n", &requests.to_string()])
        .args(["-P", &REDIS_PIPELINE.to_string()])
        .args(["-r", "100000", "--csv"])
        .args(command)
        .output()
        .await
        .context("running redis-benchmark (Debian's redis-tools)")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!("redis-benchmark failed: {text}");
    }
    parse_redis_benchmark(&text)
        .with_context(|| format!("no rps in redis-benchmark's output: {text}"))
}

fn parse_redis_benchmark(text: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with("\"test\""))
        .find_map(|l| l.split("\",\"").nth(1))
        .and_then(|rps| rps.trim_matches('"').parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tools_outputs_are_read() {
        let pgbench = "transaction type: insert-post.sql\nnumber of clients: 8\n\
            number of transactions actually processed: 129658\n\
            latency average = 1.234 ms\ninitial connection time = 5.1 ms\n\
            tps = 6482.913557 (without initial connection time)\n";
        assert_eq!(parse_pgbench(pgbench), Some((6482.913557, 129658)));
        let redis = "\"test\",\"rps\",\"avg_latency_ms\"\n\
            \"ZADD bench:feed:__rand_int__ __rand_int__ __rand_int__\",\"259740.27\",\"0.286\"\n";
        assert_eq!(parse_redis_benchmark(redis), Some(259740.27));
        assert_eq!(parse_pgbench("nothing"), None);
        assert_eq!(parse_redis_benchmark("\"test\",\"rps\"\n"), None);
    }
}
