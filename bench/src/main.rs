//! `fanout-bench`: measures Fanout on this machine against PostgreSQL's and
//! Redis' own limits, in one run. `make bench` starts the datastores, builds
//! the release binaries and runs it.
//!
//! # Layout
//!
//! - [`seed`]: a power-law social graph, written with COPY;
//! - [`stack`]: the API and worker processes, their metrics and memory;
//! - [`load`]: closed- and open-loop load with latency percentiles;
//! - [`baseline`]: pgbench and redis-benchmark;
//! - [`cpu`]: CPU time of processes and of the machine, from `/proc`;
//! - [`scenarios`]: write, fan-out, read, drain;
//! - [`live`]: post → event on open streams, and idle streams' memory;
//! - [`rounds`]: `--write-only`, write path variants compared in rounds;
//! - [`report`]: the JSON, the table in docs/benchmarks.md, the plots.
#![forbid(unsafe_code)]

mod baseline;
mod cpu;
mod live;
mod load;
mod report;
mod rounds;
mod scenarios;
mod seed;
mod stack;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use feed_core::autoscale::step::ScaleTarget;

use crate::seed::{Graph, GraphParams};
use crate::stack::{Setup, Stack};

/// Measures Fanout (write, fan-out, read, drain) beside pgbench and
/// redis-benchmark on the same machine.
#[derive(Debug, Parser)]
#[command(name = "fanout-bench")]
struct Args {
    /// A smaller graph and short loads: under two minutes, for CI.
    #[arg(long)]
    quick: bool,
    /// Where feed-api and feed-worker are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// The bench's PostgreSQL database (emptied by the run).
    #[arg(long, env = "FANOUT_BENCH_DATABASE_URL")]
    database_url: String,
    /// The bench's Redis (flushed by the run).
    #[arg(long, env = "FANOUT_BENCH_REDIS_URL")]
    redis_url: String,
    /// A Redis for the feeds alone, as FANOUT_FEED_REDIS_URL gives them
    /// (flushed by the run). Unset, feeds share the bench's Redis.
    #[arg(long, env = "FANOUT_BENCH_FEED_REDIS_URL")]
    feed_redis_url: Option<String>,
    #[arg(long, default_value_t = 28180)]
    api_port: u16,
    #[arg(long, default_value_t = 28190)]
    worker_port_base: u16,
    /// The results as JSON.
    #[arg(long, default_value = "bench/results/latest.json")]
    out: PathBuf,
    /// Also update docs/benchmarks.md's table and plots.
    #[arg(long)]
    docs: bool,
    /// Only pgbench and the write scenario, back to back, `--rounds`
    /// times, each round printed: a variant of the write path compared in
    /// a few minutes instead of a full run. Writes no JSON and no docs.
    #[arg(long)]
    write_only: bool,
    /// Rounds of `--write-only`.
    #[arg(long, default_value_t = 3, requires = "write_only")]
    rounds: u32,
    /// With `--write-only`: other builds of feed-api to compare (the flag
    /// repeated), each run in every round beside the one in `--bin-dir`
    /// against the same pgbench (the order reversed every other round), so
    /// a noisy machine affects them all.
    #[arg(long, requires = "write_only")]
    compare_bin_dir: Vec<PathBuf>,
}

/// The port of a `redis://host:PORT` URL, which redis-benchmark needs.
fn port_of(url: &str, var: &str) -> anyhow::Result<u16> {
    url.rsplit(':')
        .next()
        .and_then(|p| {
            p.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
        .with_context(|| format!("{var} needs an explicit port (redis://127.0.0.1:PORT)"))
}

/// Posts timed from `POST /posts` to a follower's open stream, at rest
/// and again during fan-out: enough for a p99 that is not the maximum of a
/// handful.
const LIVE_SAMPLES: usize = 100;

/// Every user's password in the seeded graph (hashed once, shared).
const PASSWORD: &str = "correct horse battery";
/// The API's token settings, which the bench signs with.
const ISSUER: &str = "fanout";
const AUDIENCE: &str = "fanout-api";

/// How big and how long.
#[derive(Debug, Clone, serde::Serialize)]
struct Params {
    graph: GraphParams,
    workers: u32,
    write_clients: usize,
    write_secs: u64,
    fanout_rate: f64,
    /// A rate the machine sustains, for propagation when not saturated.
    fanout_sustainable_rate: f64,
    fanout_secs: u64,
    read_clients: usize,
    read_readers: usize,
    read_secs: u64,
    drain_events: usize,
    baseline_secs: u64,
    redis_benchmark_requests: u64,
}

impl Params {
    fn new(quick: bool) -> Params {
        if quick {
            Params {
                graph: GraphParams {
                    users: 1_000,
                    follows_per_user: 20,
                    zipf_exponent: 0.8,
                    seed: 7,
                },
                workers: 2,
                write_clients: 8,
                write_secs: 4,
                fanout_rate: 200.0,
                fanout_sustainable_rate: 50.0,
                fanout_secs: 4,
                read_clients: 4,
                read_readers: 200,
                read_secs: 4,
                drain_events: 1_000,
                baseline_secs: 4,
                redis_benchmark_requests: 100_000,
            }
        } else {
            Params {
                graph: GraphParams {
                    users: 10_000,
                    follows_per_user: 100,
                    zipf_exponent: 0.8,
                    seed: 7,
                },
                workers: 2,
                write_clients: 16,
                write_secs: 20,
                fanout_rate: 1_000.0,
                fanout_sustainable_rate: 250.0,
                fanout_secs: 20,
                read_clients: 4,
                read_readers: 2_000,
                read_secs: 15,
                drain_events: 10_000,
                baseline_secs: 20,
                redis_benchmark_requests: 1_000_000,
            }
        }
    }
}

fn token(secret: &[u8], user: uuid::Uuid) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp();
    let claims =
        json!({"sub": user, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 24 * 3600});
    Ok(jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret),
    )?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let params = Params::new(args.quick);
    let jwt_secret = format!("bench-secret-{:032x}", rand::random::<u128>());
    let setup = Setup {
        bin_dir: args.bin_dir.clone(),
        database_url: args.database_url.clone(),
        redis_url: args.redis_url.clone(),
        feed_redis_url: args.feed_redis_url.clone(),
        api_port: args.api_port,
        worker_port_base: args.worker_port_base,
        jwt_secret: jwt_secret.clone(),
    };
    let redis_port = port_of(&args.redis_url, "FANOUT_BENCH_REDIS_URL")?;
    let feed_redis_port = match &args.feed_redis_url {
        Some(url) => port_of(url, "FANOUT_BENCH_FEED_REDIS_URL")?,
        None => redis_port,
    };

    eprintln!("starting feed-api and {} workers ...", params.workers);
    let stack = Stack::start(&setup, 0).await?;
    let db = feed_core::db::pool(&args.database_url, 32, Duration::from_secs(10))?;
    let redis = feed_core::bus::Redis::new(&args.redis_url, Duration::from_secs(5))?;
    let feed_redis = match &args.feed_redis_url {
        Some(url) => Some(feed_core::bus::Redis::new(url, Duration::from_secs(5))?),
        None => None,
    };
    for instance in std::iter::once(&redis).chain(&feed_redis) {
        redis::cmd("FLUSHALL")
            .query_async::<()>(&mut instance.conn().await?)
            .await?;
    }
    feed_core::bus::ensure_groups(&mut redis.conn().await?).await?;

    eprintln!(
        "seeding {} users following {} each ...",
        params.graph.users, params.graph.follows_per_user
    );
    let graph = Graph::generate(params.graph);
    let max_followers = graph.max_followers();
    let hash = {
        use argon2::PasswordHasher;
        argon2::Argon2::default()
            .hash_password(PASSWORD.as_bytes())
            .map_err(|e| anyhow::anyhow!("hashing: {e}"))?
            .to_string()
    };
    seed::write(&db, &graph, &hash).await?;
    let tokens = graph
        .users
        .iter()
        .map(|u| token(jwt_secret.as_bytes(), *u))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut followers_of = vec![Vec::new(); graph.users.len()];
    for &(follower, followee) in &graph.follows {
        followers_of[followee as usize].push(follower);
    }
    let bench = scenarios::Bench {
        db: db.clone(),
        redis,
        feed_redis,
        tokens: Arc::new(tokens),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .timeout(Duration::from_secs(30))
            .build()?,
        stack,
        followers_of: Arc::new(followers_of),
        readers: params.read_readers.clamp(1, graph.users.len()),
        reader_stride: (graph.users.len() / params.read_readers.max(1)).max(1),
    };

    if args.write_only {
        let plan = rounds::Plan {
            builds: std::iter::once(args.bin_dir.clone())
                .chain(args.compare_bin_dir.clone())
                .collect(),
            rounds: args.rounds,
            database_url: args.database_url.clone(),
            clients: params.write_clients,
            pgbench_secs: params.baseline_secs,
            write_secs: params.write_secs,
        };
        return rounds::run(bench, &setup, &plan).await;
    }

    eprintln!("baselines: pgbench and redis-benchmark ...");
    let pgbench = baseline::pgbench(
        &db,
        &args.database_url,
        params.write_clients,
        params.baseline_secs,
    )
    .await?;
    // ZADD where the feeds are, XADD where the streams are.
    scenarios::reset_redis_stats(&mut bench.feeds().conn().await?).await?;
    let zadd_per_s = baseline::redis_benchmark(
        feed_redis_port,
        params.write_clients,
        params.redis_benchmark_requests,
        &[
            "ZADD",
            "bench:feed:__rand_int__",
            "__rand_int__",
            "__rand_int__",
        ],
    )
    .await?;
    let zadd_us = scenarios::redis_usec_per_call(&mut bench.feeds().conn().await?, "zadd").await?;
    let baselines = baseline::Baselines {
        pgbench_tps: pgbench.tps,
        pgbench_postgres_us: pgbench.postgres_us,
        zadd_per_s,
        zadd_us,
        xadd_per_s: baseline::redis_benchmark(
            redis_port,
            params.write_clients,
            params.redis_benchmark_requests,
            &["XADD", "bench:stream", "*", "f", "v"],
        )
        .await?,
    };
    redis::cmd("DEL")
        .arg("bench:stream")
        .query_async::<()>(&mut bench.redis.conn().await?)
        .await?;

    eprintln!(
        "write: {} clients for {} s ...",
        params.write_clients, params.write_secs
    );
    let write = scenarios::write(
        &bench,
        params.write_clients,
        Duration::from_secs(params.write_secs),
    )
    .await?;
    bench.stack.workers.scale(params.workers).await?;
    bench.wait_drained().await?;
    let mut memory = bench.stack.rss_mib().await;

    // The readers read first: Redis keeps their feeds from then on, and
    // fan-out writes those, not the feeds of users who never read.
    eprintln!(
        "first reads: {} readers of {} users ...",
        bench.readers, params.graph.users
    );
    let cold = scenarios::first_reads(&bench, params.read_clients).await?;

    let fanout_at = |rate: f64| {
        eprintln!("fan-out: {rate} posts/s for {} s ...", params.fanout_secs);
        scenarios::fanout(
            &bench,
            rate,
            Duration::from_secs(params.fanout_secs),
            params.workers,
        )
    };
    let fanout = fanout_at(params.fanout_rate).await?;
    let after = bench.stack.rss_mib().await;
    memory = (memory.0.max(after.0), memory.1.max(after.1));
    let sustainable = fanout_at(params.fanout_sustainable_rate).await?;

    eprintln!(
        "read: {} clients for {} s ...",
        params.read_clients, params.read_secs
    );
    let read = scenarios::read(
        &bench,
        params.read_clients,
        cold,
        Duration::from_secs(params.read_secs),
    )
    .await?;
    let after = bench.stack.rss_mib().await;
    memory = (memory.0.max(after.0), memory.1.max(after.1));

    eprintln!("the other users read their feeds once, so Redis keeps every feed ...");
    let rest = scenarios::everyone_reads(&bench, params.read_clients).await?;
    anyhow::ensure!(
        rest.errors == 0,
        "{} of the other users' first reads failed",
        rest.errors
    );
    eprintln!(
        "live: post → event at rest and during fan-out, then up to {} idle streams ...",
        live::IDLE_STREAMS
    );
    // At the rate the machine sustains: at the saturating rate every
    // event queues, and the probe would measure the queue.
    let live = live::measure(
        &bench,
        LIVE_SAMPLES,
        params.fanout_sustainable_rate,
        params.fanout_secs,
        params.workers,
    )
    .await?;
    eprintln!(
        "drain: {} events, 1 then 2 workers ...",
        params.drain_events
    );
    let drain = scenarios::drain(&bench, params.drain_events).await?;
    let aof_rewrites = scenarios::redis_aof_rewrites(&bench).await?;
    bench.stack.stop().await?;

    let results = report::Results {
        params: {
            let mut p = serde_json::to_value(&params)?;
            p["max_followers"] = json!(max_followers);
            p["quick"] = json!(args.quick);
            p["feed_redis_apart"] = json!(args.feed_redis_url.is_some());
            p
        },
        baselines,
        write,
        fanout,
        sustainable,
        read,
        drain,
        live,
        api_rss_mib: memory.0,
        worker_rss_mib: memory.1,
        aof_rewrites,
    };
    let json = serde_json::to_string_pretty(&results.json())?;
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, json.clone() + "\n")
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("{}", results.table());
    if args.docs {
        report::update_doc(&PathBuf::from("docs/benchmarks.md"), &results.table())?;
        report::plots(&results, &PathBuf::from("docs/benchmarks"))?;
    }
    Ok(())
}
