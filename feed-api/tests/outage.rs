//! Degrade, never lose: what happens while Redis is down.

mod common;

use common::{DEADLINE, Stack, eventually, ids};
use feed_core::bus::Keyspace;
use sqlx::PgPool;

/// A reader's home feed, as the API at `base` answers it.
async fn feed_from(stack: &Stack, base: &str, reader: &common::User) -> serde_json::Value {
    let read = stack
        .http
        .get(format!("{base}/feed"))
        .bearer_auth(&reader.token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    read.json().await.unwrap()
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn a_post_written_while_redis_is_down_reaches_followers_once_it_is_back(db: PgPool) {
    let mut stack = Stack::start(db.clone()).await;
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    stack.follow(&bob, &alice).await;
    let before = stack.post(&alice, "before the outage").await;
    eventually(DEADLINE, "fan-out before the outage", || async {
        (stack.feed_ids(&bob).await == vec![before]).then_some(())
    })
    .await;
    assert_eq!(stack.feed(&bob, "").await["freshness"]["source"], "cache");

    stack.redis.stop();
    let during = stack.post(&alice, "during the outage").await;
    // Reads fall back to PostgreSQL, writes still commit.
    let page = stack.feed(&bob, "").await;
    assert_eq!(page["freshness"]["source"], "database");
    assert_eq!(ids(&page), vec![during, before]);
    let unpublished: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(unpublished >= 1, "the event waits in the outbox");

    // Redis comes back with its data (bob's cached feed lacks the post):
    // the relay publishes the event and the worker fans it out.
    stack.redis.restart();
    eventually(DEADLINE, "the post to reach bob's cached feed", || async {
        (stack.cached_feed(&bob).await == vec![during, before]).then_some(())
    })
    .await;
    // A restarted Redis is a new epoch: its feeds may predate a removal, so
    // the first read from it rebuilds the feed (one read may come first
    // from PostgreSQL, on the connection the restart broke).
    let mut sources = Vec::new();
    while sources.last().is_none_or(|s| s == "database") {
        let page = stack.feed(&bob, "").await;
        assert_eq!(ids(&page), vec![during, before]);
        sources.push(page["freshness"]["source"].as_str().unwrap().to_owned());
        assert!(sources.len() < 5, "{sources:?}");
    }
    assert_eq!(sources.last().unwrap(), "rebuilt");
    let page = stack.feed(&bob, "").await;
    assert_eq!(page["freshness"]["source"], "cache");
    assert_eq!(ids(&page), vec![during, before]);
    let published: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT published_at FROM outbox WHERE envelope->'payload'->>'post_id' = $1",
    )
    .bind(during.to_string())
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(published.is_some(), "the relay marked the event published");
    stack.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn health_reports_redis_down_and_up_again(db: PgPool) {
    let mut stack = Stack::api_only(db).await;
    let ready = stack.http.get(stack.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    stack.redis.stop();
    let ready = stack.http.get(stack.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let health: serde_json::Value = stack
        .http
        .get(stack.url("/debug/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["postgres"]["status"], "up");
    assert_eq!(health["redis"]["status"], "down");
    stack.redis.restart();
    eventually(DEADLINE, "readiness to return", || async {
        let ready = stack.http.get(stack.url("/readyz")).send().await.unwrap();
        (ready.status() == 200).then_some(())
    })
    .await;
    stack.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn with_postgres_down_writes_answer_503_and_cached_feeds_are_still_served(db: PgPool) {
    let stack = Stack::start(db).await;
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    stack.follow(&bob, &alice).await;
    assert!(stack.feed_ids(&bob).await.is_empty());
    let post = stack.post(&alice, "cached for bad days").await;
    eventually(DEADLINE, "fan-out", || async {
        (stack.cached_feed(&bob).await == vec![post]).then_some(())
    })
    .await;

    // A second API replica, sharing Redis, whose PostgreSQL is unreachable.
    let unreachable = format!(
        "postgres://fanout@127.0.0.1:{}/fanout",
        fanout_testkit::free_port()
    );
    let dead_db =
        feed_core::db::pool(&unreachable, 2, std::time::Duration::from_millis(300)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let replica = tokio::spawn(feed_api::serve(
        common::api_config(&stack.redis.url()),
        dead_db,
        listener,
        shutdown.clone(),
    ));

    let write = stack
        .http
        .post(format!("{base}/posts"))
        .bearer_auth(&alice.token)
        .json(&serde_json::json!({"content": "not now"}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 503);
    assert_eq!(write.headers()["retry-after"], "1");
    assert!(write.text().await.unwrap().contains("unavailable"));

    let page = feed_from(&stack, &base, &bob).await;
    // A warm page needs no PostgreSQL.
    assert_eq!(page["freshness"]["source"], "cache");
    assert_eq!(ids(&page), vec![post]);
    assert_eq!(page["items"][0]["content"], "cached for bad days");
    assert_eq!(page["items"][0]["author_handle"], "alice");

    // A post whose copy expired needs PostgreSQL: the page still answers,
    // without it, and says so.
    let mut conn = fanout_testkit::connect::redis(&stack.redis).await;
    let _: () = redis::cmd("DEL")
        .arg(feed_core::keys::post(conn.layout(), post))
        .query_async(&mut conn)
        .await
        .unwrap();
    let page = feed_from(&stack, &base, &bob).await;
    assert_eq!(page["freshness"]["source"], "degraded");
    assert!(ids(&page).is_empty());

    let ready = stack
        .http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    shutdown.cancel();
    replica.await.unwrap().unwrap();
    stack.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn freshness_counts_events_committed_but_not_yet_published(db: PgPool) {
    // The relay counts the outbox every 100 ms but publishes nothing for a
    // minute, so an event the fast path missed stays unpublished.
    let mut stack = Stack::api_only_with(db, |c| c.relay_grace_ms = 60_000).await;
    stack.start_worker("worker-1");
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    stack.follow(&bob, &alice).await;
    eventually(DEADLINE, "a fresh feed", || async {
        let page = stack.feed(&bob, "").await;
        (page["freshness"]["pending_events"] == 0).then_some(())
    })
    .await;

    stack.redis.stop();
    let before = chrono::Utc::now();
    stack.post(&alice, "committed, on no stream").await;
    stack.redis.restart();
    let freshness = eventually(DEADLINE, "the unpublished event in freshness", || async {
        let page = stack.feed(&bob, "").await;
        let freshness = page["freshness"].clone();
        (freshness["pending_events"].as_u64() >= Some(1)).then_some(freshness)
    })
    .await
    .0;
    let caught_up_to: chrono::DateTime<chrono::Utc> =
        freshness["caught_up_to"].as_str().unwrap().parse().unwrap();
    assert!(
        caught_up_to <= before + chrono::Duration::seconds(1),
        "{freshness}"
    );
    assert!(freshness["lag_ms"].as_i64().unwrap() > 0, "{freshness}");
    stack.stop().await;
}
