//! The eventual-consistency story over HTTP, end to end: users follow,
//! post, like, unfollow and delete; feeds converge.

mod common;

use common::{DEADLINE, Stack, eventually, ids};
use fanout_testkit::connect;
use reqwest::Method;
use sqlx::PgPool;
use uuid::Uuid;

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn followers_feeds_converge_and_the_author_sees_their_post_at_once(db: PgPool) {
    let stack = Stack::start(db).await;
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    let carol = stack.signup("carol").await;
    let dave = stack.signup("dave").await;
    stack.follow(&bob, &alice).await;
    stack.follow(&carol, &alice).await;
    stack.follow(&dave, &alice).await;
    stack.follow(&alice, &bob).await;
    // Bob and Carol read their feeds (empty so far): Redis keeps them from
    // now on. Dave does not read.
    for reader in [&bob, &carol] {
        let page = stack.feed(reader, "").await;
        assert_eq!(page["freshness"]["source"], "rebuilt");
    }

    let mut took = Vec::new();
    for i in 0..5 {
        let post = stack.post(&alice, &format!("post {i}")).await;
        // Read-your-writes: no waiting for the workers.
        assert_eq!(stack.feed_ids(&alice).await.first(), Some(&post));
        let (_, t) = eventually(DEADLINE, "bob and carol to see the post", || async {
            let bob_sees = stack.cached_feed(&bob).await.first() == Some(&post);
            let carol_sees = stack.cached_feed(&carol).await.first() == Some(&post);
            (bob_sees && carol_sees).then_some(())
        })
        .await;
        took.push(t);
    }
    took.sort();
    println!(
        "post -> followers' feeds at rest: min {:?}, median {:?}, max {:?}",
        took[0],
        took[took.len() / 2],
        took[took.len() - 1]
    );

    // Bob's feed is served from Redis, whole.
    let page = stack.feed(&bob, "").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    let first = &page["items"][0];
    assert_eq!(first["content"], "post 4");
    assert_eq!(first["author_id"], alice.id.to_string());
    assert_eq!(first["author_handle"], "alice");
    assert_eq!(first["like_count"], 0);
    assert!(first["created_at"].is_string());
    assert!(page["next_cursor"].is_null());
    assert_eq!(page["freshness"]["source"], "cache");
    // Fan-out passed Dave over (in the same calls as Bob and Carol): his
    // first read builds his feed from PostgreSQL, every post in it.
    assert!(stack.cached_feed(&dave).await.is_empty());
    let page = stack.feed(&dave, "").await;
    assert_eq!(page["freshness"]["source"], "rebuilt");
    assert_eq!(ids(&page), stack.cached_feed(&bob).await);
    assert_eq!(stack.cached_feed(&dave).await, ids(&page));
    // Bob's own feed does not include posts by people he does not follow.
    let bob_post = stack.post(&bob, "bob here").await;
    assert!(!stack.feed_ids(&carol).await.contains(&bob_post));
    stack.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn unfollow_removes_follow_backfills_delete_removes_and_likes_count(db: PgPool) {
    let stack = Stack::start(db).await;
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    let first = stack.post(&alice, "first").await;
    let second = stack.post(&alice, "second").await;

    // Bob's feed exists (and is empty) before he follows: the posts must
    // come from the worker's backfill, not from a rebuild.
    assert!(stack.feed_ids(&bob).await.is_empty());
    stack.follow(&bob, &alice).await;
    eventually(DEADLINE, "the follow to backfill alice's posts", || async {
        (stack.feed_ids(&bob).await == vec![second, first]).then_some(())
    })
    .await;
    assert_eq!(stack.cached_feed(&bob).await, vec![second, first]);

    // Likes count once per user, and the worker's engagement set agrees.
    let liked = stack
        .call(&bob, Method::POST, &format!("/posts/{first}/like"))
        .await;
    assert_eq!(liked["like_count"], 1);
    let again = stack
        .call(&bob, Method::POST, &format!("/posts/{first}/like"))
        .await;
    assert_eq!(again["like_count"], 1);
    let post = stack
        .call(&bob, Method::GET, &format!("/posts/{first}"))
        .await;
    assert_eq!(post["like_count"], 1);
    let feed = stack.feed(&bob, "").await;
    assert_eq!(feed["items"][1]["like_count"], 1);
    eventually(
        DEADLINE,
        "the worker to count the like in the cached copy",
        || async {
            let conn = connect::redis(&stack.redis).await;
            let cached = feed_core::feed_store::cached_posts(&conn, &[first])
                .await
                .unwrap();
            (cached.first().map(|p| p.like_count) == Some(1)).then_some(())
        },
    )
    .await;
    let unliked = stack
        .call(&bob, Method::DELETE, &format!("/posts/{first}/like"))
        .await;
    assert_eq!(unliked["like_count"], 0);

    // Delete: gone from the feed at once, and from Redis once the worker ran.
    stack
        .call(&alice, Method::DELETE, &format!("/posts/{second}"))
        .await;
    assert_eq!(stack.feed_ids(&bob).await, vec![first]);
    let gone = stack
        .http
        .get(stack.url(&format!("/posts/{second}")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    eventually(DEADLINE, "the delete to reach Redis", || async {
        (stack.cached_feed(&bob).await == vec![first]).then_some(())
    })
    .await;

    // Unfollow: gone from the feed, and from Redis.
    stack.unfollow(&bob, &alice).await;
    assert!(stack.feed_ids(&bob).await.is_empty());
    eventually(DEADLINE, "the unfollow to reach Redis", || async {
        stack.cached_feed(&bob).await.is_empty().then_some(())
    })
    .await;

    // The lists reflect the graph.
    let followers = stack
        .call(&bob, Method::GET, &format!("/users/{}/followers", alice.id))
        .await;
    assert!(ids(&followers).is_empty());
    stack.follow(&bob, &alice).await;
    let followers = stack
        .call(&bob, Method::GET, &format!("/users/{}/followers", alice.id))
        .await;
    assert_eq!(ids(&followers), vec![bob.id]);
    let following = stack
        .call(&bob, Method::GET, &format!("/users/{}/following", bob.id))
        .await;
    assert_eq!(ids(&following), vec![alice.id]);
    stack.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn feed_and_list_pages_are_complete_and_disjoint(db: PgPool) {
    let stack = Stack::start(db).await;
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    stack.follow(&bob, &alice).await;
    assert!(stack.feed_ids(&bob).await.is_empty());
    // Bob's own post and alice's reach his feed by different paths (the
    // API puts his own there before answering): the pages must interleave
    // them correctly.
    let mut posted = Vec::new();
    for i in 0..25 {
        let author = if i == 11 { &bob } else { &alice };
        posted.push(stack.post(author, &format!("post {i}")).await);
    }
    let bobs = posted[11];
    posted.reverse();
    eventually(DEADLINE, "fan-out of every post", || async {
        (stack.cached_feed(&bob).await.len() == 25).then_some(())
    })
    .await;

    for path in ["/feed", &format!("/users/{}/posts", alice.id)] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let query = match &cursor {
                Some(c) => format!("?limit=10&cursor={c}"),
                None => "?limit=10".to_owned(),
            };
            let page = stack
                .call(&bob, Method::GET, &format!("{path}{query}"))
                .await;
            seen.extend(ids(&page));
            pages += 1;
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
            assert!(pages < 10, "pagination does not end");
        }
        let expected: Vec<_> = if path == "/feed" {
            posted.clone()
        } else {
            posted.iter().copied().filter(|p| *p != bobs).collect()
        };
        assert_eq!(seen, expected, "{path}: every item once, newest first");
        assert_eq!(pages, 3, "{path}");
    }
    stack.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn a_celebritys_posts_are_pulled_into_followers_feeds_in_order(db: PgPool) {
    // With a threshold of 2 followers, `star` is a celebrity: workers skip
    // their posts, and feeds merge them in at read time.
    const THRESHOLD: i64 = 2;
    let stack = Stack::with_celebrity_threshold(db, THRESHOLD).await;
    let star = stack.signup("star").await;
    let dave = stack.signup("dave").await;
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    stack.follow(&alice, &star).await;
    stack.follow(&bob, &star).await;
    stack.follow(&bob, &dave).await;
    // Both read first, so Redis keeps their feeds and fan-out writes them.
    assert!(stack.feed_ids(&alice).await.is_empty());
    assert!(stack.feed_ids(&bob).await.is_empty());

    let mut posted = Vec::new();
    let mut by_star = Vec::new();
    for i in 0..21 {
        let author = match i % 3 {
            0 => &star,
            1 => &dave,
            _ if i == 5 => &bob,
            _ => &star,
        };
        let id = stack.post(author, &format!("post {i}")).await;
        if author.id == star.id {
            by_star.push(id);
        }
        posted.push((author.id, id));
    }
    posted.reverse();
    by_star.reverse();
    // Bob's feed in Redis holds dave's posts and his own, not star's.
    let pushed: Vec<Uuid> = posted
        .iter()
        .filter(|(a, _)| *a == dave.id || *a == bob.id)
        .map(|(_, id)| *id)
        .collect();
    eventually(DEADLINE, "fan-out of dave's posts", || async {
        (stack.cached_feed(&bob).await == pushed).then_some(())
    })
    .await;
    assert!(
        stack.cached_feed(&alice).await.is_empty(),
        "a celebrity's posts are not fanned out"
    );

    // Small pages, so pushed, pulled and own posts interleave across pages.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let query = match &cursor {
            Some(c) => format!("?limit=4&cursor={c}"),
            None => "?limit=4".to_owned(),
        };
        let page = stack.feed(&bob, &query).await;
        seen.extend(ids(&page));
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    let expected: Vec<Uuid> = posted.iter().map(|(_, id)| *id).collect();
    assert_eq!(seen, expected, "every post once, newest first");
    assert_eq!(stack.feed_ids(&alice).await, by_star);

    // Unfollowing a celebrity takes their posts out of the feed at once.
    stack
        .call(&bob, Method::POST, &format!("/users/{}/unfollow", star.id))
        .await;
    let left: Vec<Uuid> = expected
        .into_iter()
        .filter(|id| !by_star.contains(id))
        .collect();
    assert_eq!(stack.feed_ids(&bob).await, left);
    stack.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn a_feed_lost_from_redis_is_rebuilt_from_postgres(db: PgPool) {
    let stack = Stack::start(db).await;
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    stack.follow(&bob, &alice).await;
    assert!(stack.feed_ids(&bob).await.is_empty());
    let post = stack.post(&alice, "survives").await;
    eventually(DEADLINE, "fan-out", || async {
        (stack.cached_feed(&bob).await == vec![post]).then_some(())
    })
    .await;

    let mut conn = connect::redis(&stack.redis).await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();

    let page = stack.feed(&bob, "").await;
    assert_eq!(ids(&page), vec![post]);
    assert_eq!(page["freshness"]["source"], "rebuilt");
    let page = stack.feed(&bob, "").await;
    assert_eq!(page["freshness"]["source"], "cache");
    assert_eq!(ids(&page), vec![post]);

    // And the pipeline still works after Redis lost its streams and group.
    let next = stack.post(&alice, "after the loss").await;
    eventually(DEADLINE, "fan-out after the loss", || async {
        (stack.cached_feed(&bob).await == vec![next, post]).then_some(())
    })
    .await;
    stack.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn freshness_shows_a_backlog_while_no_worker_runs(db: PgPool) {
    let mut stack = Stack::api_only(db).await;
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    stack.follow(&bob, &alice).await;
    assert!(stack.feed_ids(&bob).await.is_empty());
    stack.post(&alice, "waiting").await;
    let (freshness, _) = eventually(DEADLINE, "the backlog to show", || async {
        let page = stack.feed(&bob, "").await;
        let f = page["freshness"].clone();
        (f["pending_events"].as_u64().is_some_and(|n| n >= 1)).then_some(f)
    })
    .await;
    assert!(freshness["lag_ms"].as_i64().is_some());
    assert!(freshness["caught_up_to"].is_string());
    stack.start_worker("late");
    eventually(DEADLINE, "the backlog to drain", || async {
        let page = stack.feed(&bob, "").await;
        (page["freshness"]["pending_events"] == 0 && ids(&page).len() == 1).then_some(())
    })
    .await;
    stack.stop().await;
}
