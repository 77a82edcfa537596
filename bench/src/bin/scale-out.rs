//! `scale-out`: fan-out on one Redis server and on a Redis Cluster of three
//! primaries, side by side: deliveries per second, Redis' CPU per delivery
//! (every node's, from `INFO cpu`) and script calls per post. The workers'
//! own path writes the feeds, 16 posts in flight as a worker holds them,
//! into feeds of the bench's size: each post on its own
//! (`feed_store::add_to_feeds`), and the posts in flight merged
//! (`feed_store::FeedWriter`).
//!
//! Then warm pages, as the API reads them from Redis alone: the page of a
//! reader's feed, then its posts' copies (one `MGET` per shard holding
//! them, on a cluster), 4 readers at once; Redis' CPU and commands per
//! page.
//!
//! On one machine the cluster's nodes share its cores, so deliveries per
//! second say little about a real cluster's capacity: the point is that
//! nothing breaks and what a delivery costs Redis stays flat.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use fanout_testkit::RedisServer;
use feed_core::bus::{self, Conn};
use feed_core::feed_store::{self, CachedPost, FeedLimits, FeedPost, FeedWriter, Page};
use futures_util::StreamExt;
use rand::seq::IndexedRandom;
use uuid::Uuid;

/// Readers whose feeds Redis keeps, each built with [`POSTS_PER_FEED`]
/// posts: 400,000 members, small enough to build in seconds.
const FEEDS: usize = 4_000;
const POSTS_PER_FEED: usize = 100;
/// Followers per post, all of them readers: the bench's drain, where every
/// follower's feed is written.
const FOLLOWERS: usize = 100;
/// Posts per try: 3,000 × 100 = 300,000 deliveries.
const POSTS: usize = 3_000;
/// Posts in flight at once, as a worker with 16 handlers holds them.
const IN_FLIGHT: usize = 16;
/// Pages read per try, and readers at once (the bench's warm-read
/// concurrency).
const PAGES: usize = 4_000;
const READERS: usize = 4;
const PAGE: usize = 20;
/// Tries per layout, alternating; the median is reported.
const TRIES: usize = 3;

const LIMITS: FeedLimits = FeedLimits {
    max_len: 800,
    ttl: Duration::from_secs(3600),
};

struct Setup {
    name: &'static str,
    server: RedisServer,
    conn: Conn,
    writer: FeedWriter,
    nodes: Vec<Conn>,
    feeds: Vec<Uuid>,
}

/// One try's figures.
struct Try {
    deliveries_per_sec: f64,
    cpu_us_per_delivery: f64,
    calls_per_post: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut setups = vec![
        setup("one server", RedisServer::start_single()).await?,
        setup("cluster of 3 primaries", RedisServer::start_cluster()).await?,
    ];
    // Pages first: fan-out adds posts newer than the copies cached.
    let mut reads: Vec<Vec<Read>> = setups.iter().map(|_| Vec::new()).collect();
    for _ in 0..TRIES {
        for (setup, tries) in setups.iter().zip(&mut reads) {
            tries.push(read_pages(setup).await?);
        }
    }
    let runs: Vec<(usize, bool)> = (0..setups.len())
        .flat_map(|s| [(s, false), (s, true)])
        .collect();
    let mut results: Vec<Vec<Try>> = runs.iter().map(|_| Vec::new()).collect();
    for _ in 0..TRIES {
        for ((setup, batched), tries) in runs.iter().zip(&mut results) {
            tries.push(fan_out(&setups[*setup], *batched).await?);
        }
    }
    println!(
        "| Redis | posts | deliveries/s | Redis CPU µs per delivery | script calls per post |"
    );
    println!("|---|---|---|---|---|");
    for ((setup, batched), tries) in runs.iter().zip(&mut results) {
        let setup = &setups[*setup];
        let mode = if *batched {
            "merged"
        } else {
            "each on its own"
        };
        println!(
            "| {} | {mode} | {:.0} | {:.2} | {:.1} |",
            setup.name,
            median(tries, |t| t.deliveries_per_sec),
            median(tries, |t| t.cpu_us_per_delivery),
            median(tries, |t| t.calls_per_post),
        );
    }
    println!();
    println!("| Redis | warm pages/s | Redis CPU µs per page | commands per page |");
    println!("|---|---|---|---|");
    for (setup, tries) in setups.iter().zip(&mut reads) {
        println!(
            "| {} | {:.0} | {:.1} | {:.1} |",
            setup.name,
            median(tries, |t| t.pages_per_sec),
            median(tries, |t| t.cpu_us_per_page),
            median(tries, |t| t.commands_per_page),
        );
    }
    for setup in &mut setups {
        setup.server.stop();
    }
    Ok(())
}

/// The median of one figure over the tries.
fn median<T>(tries: &[T], figure: impl Fn(&T) -> f64) -> f64 {
    let mut values: Vec<f64> = tries.iter().map(figure).collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Connects to `server`, and builds the readers' feeds.
async fn setup(name: &'static str, server: RedisServer) -> anyhow::Result<Setup> {
    let open = |url: String| async move {
        anyhow::Ok(
            bus::Redis::new(&url, Duration::from_secs(10))?
                .conn()
                .await?,
        )
    };
    let conn = open(server.url()).await?;
    let mut nodes = Vec::new();
    for url in server.node_urls() {
        let client = redis::Client::open(url)?;
        nodes.push(Conn::Single(client.get_connection_manager().await?));
    }
    let feeds: Vec<Uuid> = (0..FEEDS).map(|_| Uuid::now_v7()).collect();
    let built = futures_util::stream::iter(feeds.iter().copied())
        .map(|user| {
            let mut conn = conn.clone();
            async move {
                let posts: Vec<FeedPost> = (0..POSTS_PER_FEED)
                    .map(|i| FeedPost {
                        id: Uuid::now_v7(),
                        author: Uuid::now_v7(),
                        score: 1 + i as i64,
                    })
                    .collect();
                // The newest posts' copies, which pages read.
                let copies: Vec<CachedPost> = posts[POSTS_PER_FEED - PAGE - 1..]
                    .iter()
                    .map(|post| CachedPost {
                        id: post.id,
                        author_id: post.author,
                        author_handle: "author".into(),
                        content: "a post of ordinary length, about as long as most".into(),
                        created_at: chrono::Utc::now(),
                        like_count: 0,
                    })
                    .collect();
                feed_store::cache_posts(&conn, &copies, LIMITS).await?;
                let started = feed_store::begin_rebuild(&mut conn, user).await?;
                feed_store::rebuild(&mut conn, user, &started, &posts, &[], LIMITS).await
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    anyhow::ensure!(
        built.into_iter().all(|b| matches!(b, Ok(true))),
        "every feed built on {name}"
    );
    Ok(Setup {
        name,
        server,
        writer: FeedWriter::spawn(conn.clone(), LIMITS),
        conn,
        nodes,
        feeds,
    })
}

/// Fans [`POSTS`] posts out to [`FOLLOWERS`] random readers each, each
/// post on its own or `batched` by the writer.
async fn fan_out(setup: &Setup, batched: bool) -> anyhow::Result<Try> {
    let before = usage(&setup.nodes).await?;
    let started = Instant::now();
    let written: Vec<anyhow::Result<u64>> = futures_util::stream::iter(0..POSTS)
        .map(|_| {
            let followers: Vec<Uuid> = setup
                .feeds
                .choose_multiple(&mut rand::rng(), FOLLOWERS)
                .copied()
                .collect();
            async move {
                let post = FeedPost {
                    id: Uuid::now_v7(),
                    author: Uuid::now_v7(),
                    score: chrono::Utc::now().timestamp_millis(),
                };
                Ok(if batched {
                    setup.writer.add_to_feeds(&followers, post).await?
                } else {
                    feed_store::add_to_feeds(&setup.conn, &followers, post, LIMITS).await?
                })
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let wall = started.elapsed().as_secs_f64();
    let mut deliveries = 0;
    for w in written {
        deliveries += w?;
    }
    anyhow::ensure!(
        deliveries == (POSTS * FOLLOWERS) as u64,
        "{}: every follower's feed written ({deliveries})",
        setup.name
    );
    let after = usage(&setup.nodes).await?;
    let deliveries = deliveries as f64;
    Ok(Try {
        deliveries_per_sec: deliveries / wall,
        cpu_us_per_delivery: (after.cpu_secs - before.cpu_secs) * 1e6 / deliveries,
        calls_per_post: (after.script_calls - before.script_calls) / POSTS as f64,
    })
}

/// One try's reads.
struct Read {
    pages_per_sec: f64,
    cpu_us_per_page: f64,
    commands_per_page: f64,
}

/// Reads [`PAGES`] warm pages of random readers, [`READERS`] at once, as
/// the API serves them from Redis alone.
async fn read_pages(setup: &Setup) -> anyhow::Result<Read> {
    let before = usage(&setup.nodes).await?;
    let started = Instant::now();
    let pages: Vec<anyhow::Result<usize>> = futures_util::stream::iter(0..PAGES)
        .map(|_| {
            let user = *setup.feeds.choose(&mut rand::rng()).expect("readers");
            let mut conn = setup.conn.clone();
            async move {
                let home = feed_store::read_home(&mut conn, user, None, PAGE, LIMITS).await?;
                let Page::Entries { posts, .. } = home.page else {
                    anyhow::bail!("a built feed reads as built");
                };
                let ids: Vec<Uuid> = posts.iter().map(|(id, _)| *id).collect();
                let copies = feed_store::copies(&conn, &ids).await?;
                Ok(copies.iter().flatten().count())
            }
        })
        .buffer_unordered(READERS)
        .collect()
        .await;
    let wall = started.elapsed().as_secs_f64();
    for page in pages {
        anyhow::ensure!(
            page? == PAGE,
            "{}: every post of a page has its copy",
            setup.name
        );
    }
    let after = usage(&setup.nodes).await?;
    let pages = PAGES as f64;
    Ok(Read {
        pages_per_sec: pages / wall,
        cpu_us_per_page: (after.cpu_secs - before.cpu_secs) * 1e6 / pages,
        // The two INFO calls of `usage` itself are left out.
        commands_per_page: (after.commands - before.commands - setup.nodes.len() as f64) / pages,
    })
}

/// Redis' CPU time, script calls and commands so far, summed over every
/// node.
struct Usage {
    cpu_secs: f64,
    script_calls: f64,
    commands: f64,
}

async fn usage(nodes: &[Conn]) -> anyhow::Result<Usage> {
    let mut total = Usage {
        cpu_secs: 0.0,
        script_calls: 0.0,
        commands: 0.0,
    };
    for node in nodes {
        let info: String = redis::cmd("INFO")
            .arg("everything")
            .query_async(&mut node.clone())
            .await?;
        for line in info.lines() {
            let field = |name: &str| line.strip_prefix(name)?.parse::<f64>().ok();
            if let Some(secs) = field("used_cpu_user:").or_else(|| field("used_cpu_sys:")) {
                total.cpu_secs += secs;
            }
            if let Some(commands) = field("total_commands_processed:") {
                total.commands += commands;
            }
            if let Some(stats) = line.strip_prefix("cmdstat_evalsha:") {
                let calls = stats
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("calls=")?.parse::<f64>().ok());
                total.script_calls += calls.unwrap_or(0.0);
            }
        }
    }
    Ok(total)
}
