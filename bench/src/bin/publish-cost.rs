//! `publish-cost`: what announcing feed changes to live streams costs
//! fan-out. Times the fan-out script (`feed_store::add_to_feeds`) on a Redis
//! server of its own, as Redis' own CPU time per feed written
//! (`INFO commandstats`), with no live key (the common case: nobody has a
//! stream open), with a live key on every feed and nobody subscribed, and
//! with a live key on every feed and a subscriber reading every channel.
//! Run it on two commits to compare the script before and after.
#![forbid(unsafe_code)]

use std::time::Duration;

use feed_core::feed_store::{self, FeedLimits, FeedPost};
use feed_core::keys::Layout;
use futures_util::StreamExt;
use uuid::Uuid;

/// Feeds written per post: 2,000 feeds of 200 posts keep the server small
/// (400,000 members) while each call writes its full 100 feeds.
const FEEDS: usize = 2_000;
const POSTS_PER_FEED: usize = 200;
/// Posts fanned out per try: 200 posts × 2,000 feeds = 400,000 writes.
const ROUNDS: usize = 200;
/// Tries per mode; the least is reported, the one least disturbed by
/// whatever else the machine runs (the median is shown beside it).
const TRIES: usize = 5;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = fanout_testkit::RedisServer::start();
    let client = redis::Client::open(server.url())?;
    let conn = client.get_connection_manager().await?;
    let limits = FeedLimits {
        max_len: 800,
        ttl: Duration::from_secs(3600),
    };
    let feeds: Vec<Uuid> = (0..FEEDS).map(|_| Uuid::now_v7()).collect();
    let mut fill = conn.clone();
    for chunk in feeds.chunks(100) {
        let mut pipe = redis::pipe();
        for user in chunk {
            let members: Vec<(i64, String)> = (0..POSTS_PER_FEED)
                .map(|i| (-(i as i64), Uuid::now_v7().to_string()))
                .collect();
            pipe.zadd_multiple(feed_core::keys::feed(Layout::Single, *user), &members)
                .ignore();
        }
        pipe.query_async::<()>(&mut fill).await?;
    }
    let author = Uuid::now_v7();
    let run = |label: &'static str| {
        let conn = conn.clone();
        let feeds = feeds.clone();
        async move {
            let mut tries = Vec::with_capacity(TRIES);
            for _ in 0..TRIES {
                let mut stats = conn.clone();
                redis::cmd("CONFIG")
                    .arg("RESETSTAT")
                    .query_async::<()>(&mut stats)
                    .await?;
                let started = std::time::Instant::now();
                for _ in 0..ROUNDS {
                    let post = FeedPost {
                        id: Uuid::now_v7(),
                        author,
                        score: chrono::Utc::now().timestamp_millis(),
                    };
                    feed_store::add_to_feeds(&conn, &feeds, post, limits).await?;
                }
                let wall = started.elapsed();
                let info: String = redis::cmd("INFO")
                    .arg("commandstats")
                    .query_async(&mut stats)
                    .await?;
                let usec: f64 = info
                    .lines()
                    .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
                    .filter_map(|l| {
                        l.split("usec=")
                            .nth(1)?
                            .split(',')
                            .next()?
                            .parse::<f64>()
                            .ok()
                    })
                    .sum();
                let writes = (ROUNDS * FEEDS) as f64;
                tries.push((usec / writes, wall.as_secs_f64() * 1e6 / writes));
            }
            tries.sort_by(|a, b| a.0.total_cmp(&b.0));
            println!(
                "{label:<48} {:>6.3} µs of Redis CPU per feed written (median {:.3}; wall {:.3} µs)",
                tries[0].0,
                tries[TRIES / 2].0,
                tries[0].1
            );
            anyhow::Ok(())
        }
    };
    run("no live key (nobody streaming)").await?;
    let channels: Vec<String> = feeds
        .iter()
        .map(|u| format!("live:{}", feed_core::keys::feed(Layout::Single, *u)))
        .collect();
    let mut keys = conn.clone();
    for chunk in channels.chunks(500) {
        let mut pipe = redis::pipe();
        for channel in chunk {
            pipe.set_ex(channel, 1, 3600).ignore();
        }
        pipe.query_async::<()>(&mut keys).await?;
    }
    run("a live key on every feed, nobody subscribed").await?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.psubscribe("live:*").await?;
    let reader = tokio::spawn(async move {
        let mut messages = pubsub.into_on_message();
        let mut heard = 0u64;
        while messages.next().await.is_some() {
            heard += 1;
        }
        heard
    });
    run("a live key on every feed, a subscriber reading").await?;
    reader.abort();
    Ok(())
}
