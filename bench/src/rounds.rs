//! `--write-only`: pgbench and the write scenario alone, in rounds, with
//! other builds of the API compared against the same pgbench in each
//! round. On a machine shared with builds and tests, posts per second move
//! by half between rounds; builds compared within a round, in alternating
//! order, move together.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::baseline;
use crate::scenarios::{self, Bench};
use crate::stack::{Setup, Stack};

/// What `--write-only` runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Folders holding a `feed-api` (and `feed-worker`) build each; the
    /// first is the one running when the rounds start.
    pub builds: Vec<PathBuf>,
    pub rounds: u32,
    pub database_url: String,
    /// HTTP clients of the write scenario, and pgbench's connections.
    pub clients: usize,
    pub pgbench_secs: u64,
    pub write_secs: u64,
}

/// `--write-only`: pgbench, then the write scenario against each build of
/// the API (`--bin-dir`, then each `--compare-bin-dir`, in alternating
/// order), `rounds` times; each result printed as it ends.
pub async fn run(mut bench: Bench, setup: &Setup, plan: &Plan) -> anyhow::Result<()> {
    let builds = &plan.builds;
    let mut running = 0;
    for round in 1..=plan.rounds {
        eprintln!("round {round}: pgbench ...");
        let wal_at_start = scenarios::wal_bytes(&bench.db).await?;
        let pgbench = baseline::pgbench(
            &bench.db,
            &plan.database_url,
            plan.clients,
            plan.pgbench_secs,
        )
        .await?;
        let pgbench_wal = (scenarios::wal_bytes(&bench.db).await? - wal_at_start)
            / (pgbench.tps * plan.pgbench_secs as f64);
        println!(
            "round {round}: pgbench {:.0} tps, PostgreSQL {:.0} µs and {pgbench_wal:.0} WAL bytes per transaction",
            pgbench.tps, pgbench.postgres_us,
        );
        let order: Vec<usize> = if round % 2 == 1 {
            (0..builds.len()).collect()
        } else {
            (0..builds.len()).rev().collect()
        };
        for build in order {
            if build != running {
                let old = std::mem::replace(
                    &mut bench.stack,
                    Stack::start(
                        &Setup {
                            bin_dir: builds[build].clone(),
                            // Beside the one running, which stops next.
                            api_port: setup.api_port + build as u16,
                            ..setup.clone()
                        },
                        0,
                    )
                    .await?,
                );
                old.stop().await?;
                running = build;
            }
            write_round(&bench, plan, pgbench.tps, &builds[build]).await?;
        }
    }
    bench.stack.stop().await
}

/// One write scenario, printed with its CPU and WAL per post and the
/// statements that took PostgreSQL longest.
async fn write_round(
    bench: &Bench,
    plan: &Plan,
    pgbench_tps: f64,
    build: &Path,
) -> anyhow::Result<()> {
    let wal_before = scenarios::wal_bytes(&bench.db).await?;
    scenarios::count_statements(&bench.db).await?;
    eprintln!("write ({}) ...", build.display());
    let write = scenarios::write(bench, plan.clients, Duration::from_secs(plan.write_secs)).await?;
    let wal = scenarios::wal_bytes(&bench.db).await? - wal_before;
    let (s, c) = (&write.stats, &write.cpu);
    let posts = s.requests.max(1) as f64;
    println!(
        "  {}: {:.0} posts/s, ratio {:.2}, p50 / p99 {:.1} / {:.1} ms, {} errors; per post: \
         API {:.0}, Redis {:.0}, PostgreSQL {:.0}, client {:.0} µs, {:.0} WAL bytes",
        build.display(),
        s.per_s,
        s.per_s / pgbench_tps.max(1e-9),
        s.p50_ms,
        s.p99_ms,
        s.errors,
        c.api_us,
        c.redis_us,
        c.postgres_us,
        c.client_us,
        wal / posts,
    );
    for st in scenarios::top_statements(&bench.db, 6).await? {
        println!(
            "    {:>7.1} µs {:>6.0} WAL B per post, {:>7} calls  {}",
            st.total_ms * 1e3 / posts,
            st.wal_bytes / posts,
            st.calls,
            st.query
        );
    }
    Ok(())
}
