//! Home feeds on a Redis of their own (`FANOUT_FEED_REDIS_URL`): fan-out
//! writes there, the event streams stay on the main Redis, and the feeds'
//! Redis restarting empty, or down for a while, loses no post.

mod common;

use common::{DEADLINE, Stack, eventually, ids};
use fanout_testkit::{RedisServer, connect};
use feed_core::bus::Keyspace;
use feed_core::events::EventType;
use feed_core::{feed_store, keys};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

async fn exists(redis: &RedisServer, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<bool>(&mut connect::redis(redis).await)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn feeds_live_on_their_own_redis_and_losing_it_loses_nothing(db: PgPool) {
    let mut feeds = RedisServer::start();
    let url = feeds.url();
    let mut stack = Stack::api_only_with(db, |c| c.redis.feed_redis_url = Some(url.clone())).await;
    stack.start_worker_with("worker-1", |c| c.redis.feed_redis_url = Some(url.clone()));
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    stack.follow(&bob, &alice).await;
    // Bob reads: the feeds' Redis keeps his feed from now on.
    assert!(stack.feed_ids(&bob).await.is_empty());
    let first = stack.post(&alice, "kept apart").await;

    eventually(DEADLINE, "fan-out to the feeds' Redis", || async {
        let members = feed_store::members(&mut connect::redis(&feeds).await, bob.id)
            .await
            .unwrap();
        (members == vec![first]).then_some(())
    })
    .await;
    let stream = keys::stream(EventType::PostCreated);
    assert!(
        exists(&stack.redis, &stream).await,
        "streams on the main Redis"
    );
    assert!(!exists(&feeds, &stream).await);
    let layout = connect::redis(&feeds).await.layout();
    assert!(!exists(&stack.redis, &keys::feed(layout, bob.id)).await);
    assert!(!exists(&stack.redis, &keys::post(layout, first)).await);
    assert!(
        exists(&feeds, &keys::post(layout, first)).await,
        "the cached post"
    );

    let ready = stack.http.get(stack.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let health: Value = ready.json().await.unwrap();
    assert_eq!(health["feed_redis"]["status"], "up", "{health}");

    // The feeds' Redis keeps nothing on disk: it comes back empty.
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut connect::redis(&feeds).await)
        .await
        .unwrap();
    feeds.restart();
    // (The first read may find the API's connection still broken and read
    // PostgreSQL alone; the next rebuilds.)
    eventually(DEADLINE, "the feed rebuilt", || async {
        let page = stack.feed(&bob, "").await;
        (ids(&page) == vec![first] && page["freshness"]["source"] == "rebuilt").then_some(())
    })
    .await;
    let second = stack.post(&alice, "after the restart").await;
    eventually(DEADLINE, "fan-out after the restart", || async {
        let page = stack.feed(&bob, "").await;
        (ids(&page) == vec![second, first] && page["freshness"]["source"] == "cache").then_some(())
    })
    .await;
    stack.stop().await;
}

/// How many times the oldest pending entry of a stream has been delivered.
async fn deliveries(redis: &RedisServer, stream: &str) -> u64 {
    let pending: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(stream)
        .arg(keys::CONSUMER_GROUP)
        .arg("-")
        .arg("+")
        .arg(1)
        .query_async(&mut connect::redis(redis).await)
        .await
        .unwrap();
    pending.first().map_or(0, |p| p.3)
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn an_outage_of_the_feeds_redis_is_waited_out_not_dead_lettered(db: PgPool) {
    const MAX_DELIVERIES: usize = 2;
    let mut feeds = RedisServer::start();
    let url = feeds.url();
    let mut stack = Stack::api_only_with(db, |c| c.redis.feed_redis_url = Some(url.clone())).await;
    stack.start_worker_with("worker-1", |c| {
        c.redis.feed_redis_url = Some(url.clone());
        c.max_deliveries = MAX_DELIVERIES;
    });
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    stack.follow(&bob, &alice).await;
    // Bob reads: the feeds' Redis keeps his feed from now on.
    assert!(stack.feed_ids(&bob).await.is_empty());

    feeds.stop();
    // Still ready: reads fall back to PostgreSQL, writes do not need it.
    let ready = stack.http.get(stack.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let health: Value = ready.json().await.unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["feed_redis"]["status"], "down", "{health}");
    let page = stack.feed(&bob, "").await;
    assert_eq!(page["freshness"]["source"], "database");
    let post = stack.post(&alice, "while the feeds' Redis is down").await;
    // Past the deliveries after which an event failing on its own is given up.
    let stream = keys::stream(EventType::PostCreated);
    eventually(DEADLINE, "redeliveries during the outage", || async {
        (deliveries(&stack.redis, &stream).await > MAX_DELIVERIES as u64).then_some(())
    })
    .await;
    feeds.restart();

    eventually(
        DEADLINE,
        "fan-out once the feeds' Redis is back",
        || async {
            let members = feed_store::members(&mut connect::redis(&feeds).await, bob.id)
                .await
                .unwrap();
            (members == vec![post]).then_some(())
        },
    )
    .await;
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(&stack.db)
        .await
        .unwrap();
    assert_eq!(dead, 0, "an outage is not the event's fault");
    stack.stop().await;
}
