//! Fan-out writes to home feeds, against a real redis-server.
#![cfg(feature = "redis")]

use std::time::Duration;

use fanout_testkit::RedisServer;
use feed_core::feed_store::{self, FeedLimits, Page, TRIM_SLACK};
use feed_core::keys;
use redis::aio::MultiplexedConnection;
use uuid::Uuid;

const LIMITS: FeedLimits = FeedLimits {
    max_len: 5,
    ttl: Duration::from_secs(1_000),
};

async fn connect(redis: &RedisServer) -> MultiplexedConnection {
    let client = redis::Client::open(redis.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

async fn ttl(conn: &mut MultiplexedConnection, user: Uuid) -> i64 {
    redis::cmd("TTL")
        .arg(keys::feed(user))
        .query_async(conn)
        .await
        .unwrap()
}

/// The posts a feed holds, oldest first.
async fn members(conn: &mut MultiplexedConnection, user: Uuid) -> Vec<Uuid> {
    let mut newest_first = feed_store::members(conn, user).await.unwrap();
    newest_first.reverse();
    newest_first
}

#[tokio::test]
async fn fan_out_adds_to_every_feed_keeps_built_feeds_whole_and_trims_to_length() {
    let redis = RedisServer::start();
    let mut conn = connect(&redis).await;
    // More followers than one script call takes.
    let followers: Vec<Uuid> = (0..250).map(|_| Uuid::now_v7()).collect();
    let reader = followers[0];
    let old: Vec<(Uuid, i64)> = (1..=5).map(|i| (Uuid::now_v7(), i * 1_000)).collect();
    feed_store::rebuild(&mut conn, reader, &old, LIMITS)
        .await
        .unwrap();

    // Enough new posts to take a full feed past its slack.
    let new: Vec<(Uuid, i64)> = (1..=TRIM_SLACK as i64 + 1)
        .map(|i| (Uuid::now_v7(), 10_000 + i))
        .collect();
    for &(post, score) in &new {
        for _ in 0..2 {
            // Twice, as a redelivered event would: the same state either way.
            feed_store::add_to_feeds(&conn, &followers, post, score, LIMITS)
                .await
                .unwrap();
        }
    }

    // The built feed: still built, trimmed back to its length, the newest
    // posts kept.
    let page = feed_store::read(&mut conn, reader, None, 100, LIMITS)
        .await
        .unwrap();
    let newest: Vec<(Uuid, i64)> = new.iter().rev().take(LIMITS.max_len).copied().collect();
    assert_eq!(
        page,
        Page::Entries {
            posts: newest,
            more: false
        }
    );

    // Feeds fan-out created: every post once (within the slack), and a TTL.
    for &user in &followers[1..] {
        let expected: Vec<Uuid> = new.iter().map(|(id, _)| *id).collect();
        assert_eq!(members(&mut conn, user).await, expected);
        let left = ttl(&mut conn, user).await;
        assert!(
            (1..=1_000).contains(&left),
            "a feed fan-out created expires: TTL {left}"
        );
    }
}

#[tokio::test]
async fn fan_out_leaves_a_readers_ttl_alone() {
    let redis = RedisServer::start();
    let mut conn = connect(&redis).await;
    let user = Uuid::now_v7();
    feed_store::rebuild(&mut conn, user, &[(Uuid::now_v7(), 1_000)], LIMITS)
        .await
        .unwrap();
    redis::cmd("EXPIRE")
        .arg(keys::feed(user))
        .arg(50)
        .query_async::<i64>(&mut conn)
        .await
        .unwrap();
    feed_store::add_to_feeds(&conn, &[user], Uuid::now_v7(), 2_000, LIMITS)
        .await
        .unwrap();
    let left = ttl(&mut conn, user).await;
    assert!((1..=50).contains(&left), "TTL {left}");
    assert_eq!(members(&mut conn, user).await.len(), 2);
}

#[tokio::test]
async fn fan_out_works_again_after_redis_forgets_its_scripts() {
    let redis = RedisServer::start();
    let mut conn = connect(&redis).await;
    let user = Uuid::now_v7();
    feed_store::add_to_feeds(&conn, &[user], Uuid::now_v7(), 1_000, LIMITS)
        .await
        .unwrap();
    // As after a restart or a failover.
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    feed_store::add_to_feeds(&conn, &[user], Uuid::now_v7(), 2_000, LIMITS)
        .await
        .unwrap();
    assert_eq!(members(&mut conn, user).await.len(), 2);
}

#[tokio::test]
async fn a_feed_fan_out_created_is_trimmed_once_past_its_slack() {
    let redis = RedisServer::start();
    let mut conn = connect(&redis).await;
    let user = Uuid::now_v7();
    let posts: Vec<Uuid> = (0..LIMITS.max_len + TRIM_SLACK + 2)
        .map(|_| Uuid::now_v7())
        .collect();
    for (i, post) in posts.iter().enumerate() {
        feed_store::add_to_feeds(&conn, &[user], *post, 1_000 + i as i64, LIMITS)
            .await
            .unwrap();
    }
    let kept = members(&mut conn, user).await;
    // Not built, so never served as it is (a reader rebuilds it); trimmed
    // all the same, the newest posts kept.
    assert!(
        kept.len() <= LIMITS.max_len + 1 + TRIM_SLACK,
        "{}",
        kept.len()
    );
    assert!(kept.len() < posts.len());
    let newest = &posts[posts.len() - LIMITS.max_len..];
    assert_eq!(kept[kept.len() - LIMITS.max_len..], *newest);
}

#[tokio::test]
async fn a_feed_in_the_older_layout_is_rebuilt_never_misread() {
    let redis = RedisServer::start();
    let mut conn = connect(&redis).await;
    let user = Uuid::now_v7();
    // As a release before the newest-first layout left it: positive scores
    // and a sentinel named `built`.
    let old = Uuid::now_v7();
    let _: () = redis::cmd("ZADD")
        .arg(keys::feed(user))
        .arg(0)
        .arg("built")
        .arg(1_000)
        .arg(old.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    let page = feed_store::read(&mut conn, user, None, 10, LIMITS).await;
    assert_eq!(page.unwrap(), Page::NotBuilt);

    let posts = [(Uuid::now_v7(), 2_000), (old, 1_000)];
    feed_store::rebuild(&mut conn, user, &posts, LIMITS)
        .await
        .unwrap();
    let page = feed_store::read(&mut conn, user, None, 10, LIMITS).await;
    let expected = Page::Entries {
        posts: posts.to_vec(),
        more: false,
    };
    assert_eq!(page.unwrap(), expected);

    // A writer of the older layout adding to a built feed (a worker not yet
    // upgraded) makes it unbuilt again, not half-read.
    let _: () = redis::cmd("ZADD")
        .arg(keys::feed(user))
        .arg(3_000)
        .arg(Uuid::now_v7().to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    let page = feed_store::read(&mut conn, user, None, 10, LIMITS).await;
    assert_eq!(page.unwrap(), Page::NotBuilt);
    feed_store::rebuild(&mut conn, user, &posts, LIMITS)
        .await
        .unwrap();
    let page = feed_store::read(&mut conn, user, None, 10, LIMITS).await;
    assert_eq!(page.unwrap(), expected);
    let entries: u64 = redis::cmd("ZCARD")
        .arg(keys::feed(user))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(entries, 3, "the two posts and the sentinel, nothing else");
}

#[tokio::test]
async fn pages_of_a_feed_follow_the_cursor_newest_first() {
    let redis = RedisServer::start();
    let mut conn = connect(&redis).await;
    let user = Uuid::now_v7();
    // Two posts share a millisecond, across the page boundary.
    let posts: Vec<(Uuid, i64)> = [5_000, 4_000, 4_000, 3_000, 2_000]
        .into_iter()
        .map(|score| (Uuid::now_v7(), score))
        .collect();
    let mut posts = posts;
    posts.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    feed_store::rebuild(&mut conn, user, &posts, LIMITS)
        .await
        .unwrap();
    let none = feed_store::read(&mut conn, user, None, 0, LIMITS).await;
    assert_eq!(
        none.unwrap(),
        Page::Entries {
            posts: vec![],
            more: true
        }
    );
    let first = feed_store::read(&mut conn, user, None, 2, LIMITS).await;
    assert_eq!(
        first.unwrap(),
        Page::Entries {
            posts: posts[..2].to_vec(),
            more: true
        }
    );
    let second = feed_store::read(&mut conn, user, Some(posts[1]), 10, LIMITS).await;
    assert_eq!(
        second.unwrap(),
        Page::Entries {
            posts: posts[2..].to_vec(),
            more: false
        }
    );

    // A millisecond holding more posts than one read from Redis fetches.
    let crowded = Uuid::now_v7();
    let long = FeedLimits {
        max_len: 100,
        ..LIMITS
    };
    let same_ms: Vec<(Uuid, i64)> = (0..40).map(|_| (Uuid::now_v7(), 9_000)).collect();
    feed_store::rebuild(&mut conn, crowded, &same_ms, long)
        .await
        .unwrap();
    let page = feed_store::read(&mut conn, crowded, None, 1, long).await;
    assert_eq!(
        page.unwrap(),
        Page::Entries {
            posts: vec![same_ms[39]],
            more: true
        }
    );
}
