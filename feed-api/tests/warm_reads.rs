//! Warm pages come from Redis alone, and still show every removal the
//! moment it answers, and the reader's own post at once.

mod common;

use common::{DEADLINE, Stack, User, eventually, ids};
use reqwest::Method;
use sqlx::PgPool;
use uuid::Uuid;

/// With a threshold of 2 followers, `star` (followed by bob and fan) is a
/// celebrity: their posts are pulled from their timeline, not fanned out.
const THRESHOLD: i64 = 2;

struct Cast {
    stack: Stack,
    alice: User,
    star: User,
    bob: User,
    /// Posts of alice, star and bob, in the order written.
    posts: [Uuid; 3],
}

/// Bob follows alice and the celebrity star; each of them and bob posts
/// once, and bob's page shows all three from Redis alone.
async fn warm_cast(db: PgPool) -> Cast {
    let stack = Stack::with_celebrity_threshold(db, THRESHOLD).await;
    let (alice, star, bob, fan) = (
        stack.signup("alice").await,
        stack.signup("star").await,
        stack.signup("bob").await,
        stack.signup("fan").await,
    );
    stack.follow(&bob, &alice).await;
    stack.follow(&bob, &star).await;
    stack.follow(&fan, &star).await;
    assert!(stack.feed_ids(&bob).await.is_empty());
    let posts = [
        stack.post(&alice, "from alice").await,
        stack.post(&star, "from star").await,
        stack.post(&bob, "from bob").await,
    ];
    let newest_first: Vec<Uuid> = posts.iter().rev().copied().collect();
    eventually(DEADLINE, "a warm page of all three", || async {
        let page = stack.feed(&bob, "").await;
        (ids(&page) == newest_first && page["freshness"]["source"] == "cache").then_some(())
    })
    .await;
    Cast {
        stack,
        alice,
        star,
        bob,
        posts,
    }
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn a_warm_page_needs_no_postgres(db: PgPool) {
    let mut cast = warm_cast(db).await;
    let stack = &mut cast.stack;
    stack.stop_workers().await;
    let warm = stack.feed(&cast.bob, "").await;
    // Every connection to PostgreSQL closed: a page that asked it for
    // anything would fail over to the degraded one.
    stack.db.close().await;
    let page = stack.feed(&cast.bob, "").await;
    assert_eq!(page["freshness"]["source"], "cache");
    assert_eq!(page["items"], warm["items"]);
    assert_eq!(ids(&page).len(), 3);
    // The next page, by cursor, too.
    let first = stack.feed(&cast.bob, "?limit=2").await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let next = stack
        .feed(&cast.bob, &format!("?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(next["freshness"]["source"], "cache");
    assert_eq!(ids(&next), vec![cast.posts[0]]);
    cast.stack.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn removals_and_own_posts_show_on_warm_pages_before_any_worker_runs(db: PgPool) {
    let mut cast = warm_cast(db).await;
    let [from_alice, from_star, from_bob] = cast.posts;
    // Nothing fans out, removes or caches from now on: what pages show is
    // what the API did before it answered.
    cast.stack.stop_workers().await;
    let stack = &cast.stack;
    let bob = &cast.bob;

    let again = stack.post(bob, "bob again").await;
    let page = stack.feed(bob, "").await;
    assert_eq!(ids(&page), vec![again, from_bob, from_star, from_alice]);
    assert_eq!(page["freshness"]["source"], "cache", "own post from Redis");

    stack
        .call(&cast.alice, Method::DELETE, &format!("/posts/{from_alice}"))
        .await;
    assert_eq!(
        stack.feed_ids(bob).await,
        vec![again, from_bob, from_star],
        "a deleted post is gone once its delete answers"
    );

    stack.unfollow(bob, &cast.star).await;
    assert_eq!(
        stack.feed_ids(bob).await,
        vec![again, from_bob],
        "an unfollowed celebrity's posts are gone once the unfollow answers"
    );
    stack.follow(bob, &cast.star).await;
    assert_eq!(
        stack.feed_ids(bob).await,
        vec![again, from_bob, from_star],
        "following again shows them again"
    );

    // A like shows on the liker's next page, from the post's cached copy.
    stack
        .call(bob, Method::POST, &format!("/posts/{from_star}/like"))
        .await;
    let page = stack.feed(bob, "").await;
    let liked = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == from_star.to_string())
        .unwrap();
    assert_eq!(liked["like_count"], 1);
    let conn = fanout_testkit::connect::redis(&stack.redis).await;
    let copies = feed_core::feed_store::copies(&conn, &[from_star]).await;
    assert_eq!(copies.unwrap()[0].as_ref().unwrap().like_count, 1);
    cast.stack.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn a_redis_restart_makes_warm_pages_rebuild_instead_of_trusting_old_data(db: PgPool) {
    let mut cast = warm_cast(db).await;
    let [from_alice, from_star, from_bob] = cast.posts;
    cast.stack.stop_workers().await;
    // A copy of Redis' data is taken, then alice deletes her post, then
    // Redis restarts from the copy: the feed, the post's copy and every
    // mark are as they were before the delete.
    let old = cast.stack.redis.copy_data();
    cast.stack
        .call(&cast.alice, Method::DELETE, &format!("/posts/{from_alice}"))
        .await;
    cast.stack.redis.restart_from(&old);
    let stack = &cast.stack;
    // The first read may find the connection broken by the restart, and
    // read PostgreSQL; the first read from Redis rebuilds the feed.
    let mut sources = Vec::new();
    while sources.last().is_none_or(|s| s == "database") {
        let page = stack.feed(&cast.bob, "").await;
        assert_eq!(ids(&page), vec![from_bob, from_star]);
        sources.push(page["freshness"]["source"].as_str().unwrap().to_owned());
        assert!(sources.len() < 5, "{sources:?}");
    }
    assert_eq!(sources.last().unwrap(), "rebuilt");
    // The next builds star's timeline again; after that, all from Redis.
    for expected in ["hydrated", "cache"] {
        let page = stack.feed(&cast.bob, "").await;
        assert_eq!(ids(&page), vec![from_bob, from_star]);
        assert_eq!(page["freshness"]["source"], expected);
    }
    cast.stack.stop().await;
}
