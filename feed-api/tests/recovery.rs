//! Nothing acknowledged is lost when the streams' Redis loses its data: the
//! outbox learns which events were applied, and publishes again those the
//! streams lost before the workers finished them.

mod common;

use common::{DEADLINE, Stack, eventually};
use fanout_testkit::{RedisServer, connect};
use sqlx::PgPool;
use uuid::Uuid;

/// The outbox row of the event about `post`: (published, applied).
async fn outbox_state(db: &PgPool, post: Uuid) -> (bool, bool) {
    sqlx::query_as(
        "SELECT published_at IS NOT NULL, applied_at IS NOT NULL FROM outbox
         WHERE event_type = 'post.created' AND envelope->'payload'->>'post_id' = $1",
    )
    .bind(post.to_string())
    .fetch_one(db)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn applied_events_are_marked_applied(db: PgPool) {
    let stack = Stack::start(db.clone()).await;
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    stack.follow(&bob, &alice).await;
    assert!(stack.feed_ids(&bob).await.is_empty());
    let post = stack.post(&alice, "seen through").await;
    eventually(DEADLINE, "the event to be marked applied", || async {
        (outbox_state(&db, post).await == (true, true)).then_some(())
    })
    .await;
    assert_eq!(stack.cached_feed(&bob).await, vec![post]);
    stack.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn events_the_streams_lost_before_they_were_applied_are_published_again(db: PgPool) {
    // Feeds on a Redis of their own, so losing the streams' Redis leaves
    // bob's cached feed in place: only fan-out can add the post to it.
    let feeds = RedisServer::start();
    let url = feeds.url();
    let mut stack = Stack::api_only_with(db.clone(), |c| {
        c.redis.feed_redis_url = Some(url.clone());
    })
    .await;
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    stack.follow(&bob, &alice).await;
    assert!(stack.feed_ids(&bob).await.is_empty(), "bob's feed is kept");

    // Acknowledged and published, but no worker has read it yet...
    let post = stack.post(&alice, "survives a flush").await;
    eventually(DEADLINE, "the event to be published", || async {
        outbox_state(&db, post).await.0.then_some(())
    })
    .await;
    // ...when the streams' Redis comes back empty (its data lost).
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut connect::redis(&stack.redis).await)
        .await
        .unwrap();

    stack.start_worker_with("worker-1", |c| c.redis.feed_redis_url = Some(url.clone()));
    eventually(
        DEADLINE,
        "the lost post to reach bob's cached feed",
        || async {
            let members = feed_core::feed_store::members(&mut connect::redis(&feeds).await, bob.id)
                .await
                .unwrap();
            (members == vec![post]).then_some(())
        },
    )
    .await;
    eventually(DEADLINE, "the event to be marked applied", || async {
        (outbox_state(&db, post).await == (true, true)).then_some(())
    })
    .await;
    // Both events no worker had read: bob's follow and alice's post.
    let metrics = stack.metrics().await;
    assert!(
        metrics.contains("fanout_events_published_total{path=\"recovered\"} 2"),
        "{metrics}"
    );
    stack.stop().await;
}
