//! The worker against real PostgreSQL (a fresh database per test) and a real
//! redis-server (one per test).

use std::time::Duration;

use clap::Parser;
use fanout_testkit::{RedisServer, eventually};
use feed_core::bus;
use feed_core::db;
use feed_core::events::{Envelope, Event, FollowChanged, LikeChanged, PostDeleted};
use feed_core::keys;
use feed_worker::config::Config;
use feed_worker::fanout::Fanout;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

mod common;

use common::{cached_like_count, connect, fanout, feed, follow, pending, post, reads, user};

const DEADLINE: Duration = Duration::from_secs(20);

fn config(redis: &RedisServer, consumer: &str) -> Config {
    Config::try_parse_from([
        "feed-worker",
        "--database-url",
        "postgres://unused",
        "--redis-url",
        &redis.url(),
        "--consumer-name",
        consumer,
        "--http-addr",
        "127.0.0.1:0",
        "--block-ms",
        "100",
        "--claim-idle-ms",
        "300",
        "--claim-interval-ms",
        "100",
        "--max-deliveries",
        "3",
        "--fanout-chunk",
        "2",
    ])
    .unwrap()
}

struct Running {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn start(config: Config, db: &PgPool) -> Running {
        config.validate().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(feed_worker::run(config, db.clone(), shutdown.clone()));
        Running { shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the worker stops promptly")
            .unwrap()
            .unwrap();
    }
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn redelivered_events_leave_one_feed_entry_and_one_like(db: PgPool) {
    let redis = RedisServer::start();
    let conn = connect(&redis).await;
    let author = user(&db, "author").await;
    let fan = user(&db, "fan").await;
    follow(&db, fan, author).await;
    reads(&conn, &[fan]).await;
    let (post_id, created) = post(&db, author, "hello").await;
    let mut c = db.acquire().await.unwrap();
    db::posts::like(&mut c, post_id, fan).await.unwrap();
    let liked = Event::PostLiked(LikeChanged {
        post_id,
        user_id: fan,
    });
    let handlers = fanout(&db, &conn);

    for _ in 0..2 {
        handlers.handle(&created.decode().unwrap()).await.unwrap();
        handlers.handle(&liked).await.unwrap();
    }
    assert_eq!(feed(&conn, fan).await, vec![post_id]);
    assert_eq!(cached_like_count(&conn, post_id).await, Some(1));

    // The same through the streams: an event published twice (as the fast
    // path and the relay may) is applied once.
    let (second, envelope) = post(&db, author, "again").await;
    bus::publish(&mut conn.clone(), &[envelope.clone(), envelope])
        .await
        .unwrap();
    let worker = Running::start(config(&redis, "w1"), &db);
    eventually(DEADLINE, "both entries handled", || async {
        (pending(
            &conn,
            &keys::stream(feed_core::events::EventType::PostCreated),
        )
        .await
            == 0
            && feed(&conn, fan).await.len() == 2)
            .then_some(())
    })
    .await;
    worker.stop().await;
    assert_eq!(feed(&conn, fan).await, vec![second, post_id]);
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn a_like_and_its_unlike_converge_whatever_order_they_arrive_in(db: PgPool) {
    let redis = RedisServer::start();
    let conn = connect(&redis).await;
    let author = user(&db, "author").await;
    let fan = user(&db, "fan").await;
    let (post_id, created) = post(&db, author, "hello").await;
    let handlers = fanout(&db, &conn);
    handlers.handle(&created.decode().unwrap()).await.unwrap();
    assert_eq!(cached_like_count(&conn, post_id).await, Some(0));
    let change = LikeChanged {
        post_id,
        user_id: fan,
    };
    let mut c = db.acquire().await.unwrap();
    db::posts::like(&mut c, post_id, fan).await.unwrap();
    handlers
        .handle(&Event::PostLiked(change.clone()))
        .await
        .unwrap();
    assert_eq!(cached_like_count(&conn, post_id).await, Some(1));
    db::posts::unlike(&mut c, post_id, fan).await.unwrap();
    // The unlike overtakes a redelivered like (they travel on different
    // streams): the count is PostgreSQL's either way.
    handlers
        .handle(&Event::PostUnliked(change.clone()))
        .await
        .unwrap();
    handlers.handle(&Event::PostLiked(change)).await.unwrap();
    assert_eq!(cached_like_count(&conn, post_id).await, Some(0));
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn follow_backfills_and_unfollow_and_delete_clean_up(db: PgPool) {
    let redis = RedisServer::start();
    let conn = connect(&redis).await;
    let author = user(&db, "author").await;
    let reader = user(&db, "reader").await;
    reads(&conn, &[reader]).await;
    let mut posts = Vec::new();
    for i in 0..3 {
        posts.push(post(&db, author, &format!("post {i}")).await.0);
    }
    let handlers = fanout(&db, &conn);

    let followed = follow(&db, reader, author).await;
    handlers.handle(&followed.decode().unwrap()).await.unwrap();
    posts.reverse();
    assert_eq!(feed(&conn, reader).await, posts, "backfilled, newest first");

    db::posts::delete(&db, posts[0]).await.unwrap();
    let deleted = Event::PostDeleted(PostDeleted {
        post_id: posts[0],
        author_id: author,
    });
    handlers.handle(&deleted).await.unwrap();
    assert_eq!(feed(&conn, reader).await, posts[1..]);

    let mut c = db.acquire().await.unwrap();
    db::follows::unfollow(&mut c, reader, author).await.unwrap();
    let removed = Event::FollowRemoved(FollowChanged {
        follower_id: reader,
        followee_id: author,
    });
    handlers.handle(&removed).await.unwrap();
    assert!(feed(&conn, reader).await.is_empty());
    // A stale follow event (the follow is gone) backfills nothing.
    handlers.handle(&followed.decode().unwrap()).await.unwrap();
    assert!(feed(&conn, reader).await.is_empty());
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn entries_of_a_worker_killed_mid_batch_are_claimed_and_finished(db: PgPool) {
    let redis = RedisServer::start();
    let conn = connect(&redis).await;
    let author = user(&db, "author").await;
    let mut followers = Vec::new();
    for i in 0..5 {
        let f = user(&db, &format!("follower{i}")).await;
        follow(&db, f, author).await;
        followers.push(f);
    }
    reads(&conn, &followers).await;
    let mut envelopes = Vec::new();
    let mut post_ids = Vec::new();
    for i in 0..20 {
        let (id, envelope) = post(&db, author, &format!("post {i}")).await;
        post_ids.push(id);
        envelopes.push(envelope);
    }
    bus::publish(&mut conn.clone(), &envelopes).await.unwrap();

    // A worker reads a batch, applies part of it, and dies before acking.
    let streams = vec![keys::stream(feed_core::events::EventType::PostCreated)];
    let batch = bus::read_group(
        &mut conn.clone(),
        "doomed",
        &streams,
        20,
        Duration::from_millis(100),
        false,
    )
    .await
    .unwrap();
    assert_eq!(batch.len(), 20);
    let handlers = fanout(&db, &conn);
    for delivery in &batch[..7] {
        let envelope = Envelope::from_json(delivery.body.as_deref().unwrap()).unwrap();
        handlers.handle(&envelope.decode().unwrap()).await.unwrap();
    }
    drop(batch);
    assert_eq!(pending(&conn, &streams[0]).await, 20);

    let survivor = Running::start(config(&redis, "survivor"), &db);
    let (_, took) = eventually(DEADLINE, "every follower to have every post", || async {
        for f in &followers {
            if feed(&conn, *f).await.len() != post_ids.len() {
                return None;
            }
        }
        (pending(&conn, &streams[0]).await == 0).then_some(())
    })
    .await;
    survivor.stop().await;
    println!("claimed and finished a dead worker's batch in {took:?}");
    post_ids.reverse();
    for f in &followers {
        assert_eq!(
            feed(&conn, *f).await,
            post_ids,
            "each post exactly once, newest first"
        );
    }
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn poison_entries_go_to_dead_letters_and_the_worker_keeps_going(db: PgPool) {
    let redis = RedisServer::start();
    let conn = connect(&redis).await;
    let author = user(&db, "author").await;
    let fan = user(&db, "fan").await;
    follow(&db, fan, author).await;
    reads(&conn, &[fan]).await;
    let stream = keys::stream(feed_core::events::EventType::PostCreated);
    let mut c = conn.clone();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg(bus::ENVELOPE_FIELD)
        .arg("{not json")
        .query_async(&mut c)
        .await
        .unwrap();
    let (_, mut future) = post(&db, author, "from the future").await;
    future.version = 99;
    let (good, envelope) = post(&db, author, "fine").await;
    bus::publish(&mut c, &[future, envelope]).await.unwrap();

    let worker = Running::start(config(&redis, "w1"), &db);
    eventually(DEADLINE, "the good post to be delivered", || async {
        (feed(&conn, fan).await == vec![good]).then_some(())
    })
    .await;
    let letters = eventually(DEADLINE, "two dead letters", || async {
        let letters = db::dead_letters::recent(&db, 10).await.unwrap();
        (letters.len() == 2).then_some(letters)
    })
    .await
    .0;
    worker.stop().await;
    let errors: Vec<&str> = letters.iter().map(|l| l.letter.error.as_str()).collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("not a JSON event envelope")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("no version 99")),
        "{errors:?}"
    );
    assert_eq!(
        pending(&conn, &stream).await,
        0,
        "dead letters are acknowledged"
    );
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn the_worker_recreates_its_group_after_redis_loses_everything(db: PgPool) {
    let redis = RedisServer::start();
    let conn = connect(&redis).await;
    let author = user(&db, "author").await;
    let fan = user(&db, "fan").await;
    follow(&db, fan, author).await;
    let worker = Running::start(config(&redis, "w1"), &db);
    eventually(DEADLINE, "the worker to join the group", || async {
        let consumers = bus::consumers(&mut conn.clone()).await.unwrap();
        consumers.contains_key("w1").then_some(())
    })
    .await;
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    // The fan reads again: their feed is rebuilt.
    reads(&conn, &[fan]).await;

    let (id, envelope) = post(&db, author, "after the flush").await;
    // Publishing recreates the stream but not the group: the worker must.
    eventually(DEADLINE, "the post to reach the feed", || async {
        let _ = bus::publish(&mut conn.clone(), std::slice::from_ref(&envelope)).await;
        (feed(&conn, fan).await == vec![id]).then_some(())
    })
    .await;
    worker.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn sigterm_finishes_the_batch_and_exits_cleanly(db: PgPool) {
    let redis = RedisServer::start();
    let conn = connect(&redis).await;
    let author = user(&db, "author").await;
    let fan = user(&db, "fan").await;
    follow(&db, fan, author).await;
    reads(&conn, &[fan]).await;
    let mut envelopes = Vec::new();
    for i in 0..50 {
        envelopes.push(post(&db, author, &format!("post {i}")).await.1);
    }
    bus::publish(&mut conn.clone(), &envelopes).await.unwrap();

    let url = fanout_testkit::connect::database_url(&db);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_feed-worker"))
        .env("FANOUT_DATABASE_URL", url)
        .env("FANOUT_REDIS_URL", redis.url())
        .env("FANOUT_CONSUMER_NAME", "w-bin")
        .env("FANOUT_WORKER_HTTP_ADDR", "127.0.0.1:0")
        .env("FANOUT_BATCH_SIZE", "5")
        .env("FANOUT_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually(DEADLINE, "the worker to start applying posts", || async {
        (!feed(&conn, fan).await.is_empty()).then_some(())
    })
    .await;
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status}");
    // Whatever it read, it applied and acknowledged before exiting.
    let stream = keys::stream(feed_core::events::EventType::PostCreated);
    assert_eq!(pending(&conn, &stream).await, 0);
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn the_worker_serves_its_probes_and_metrics(db: PgPool) {
    let redis = RedisServer::start();
    let conn = connect(&redis).await;
    let author = user(&db, "author").await;
    let fan = user(&db, "fan").await;
    let absent = user(&db, "absent").await;
    follow(&db, fan, author).await;
    follow(&db, absent, author).await;
    // The fan reads; the other follower does not.
    reads(&conn, &[fan]).await;
    let port = fanout_testkit::free_port();
    let mut cfg = config(&redis, "probed");
    cfg.http_addr = format!("127.0.0.1:{port}").parse().unwrap();
    let worker = Running::start(cfg, &db);
    let get = |path: &'static str| async move {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        Some(response)
    };
    let (ready, _) = eventually(DEADLINE, "the worker to be ready", || async {
        get("/readyz")
            .await
            .filter(|r| r.starts_with("HTTP/1.1 200"))
    })
    .await;
    assert!(ready.ends_with("ready"));
    assert!(get("/healthz").await.unwrap().starts_with("HTTP/1.1 200"));

    let (_, envelope) = post(&db, author, "counted").await;
    bus::publish(&mut conn.clone(), &[envelope]).await.unwrap();
    let (metrics, _) = eventually(DEADLINE, "the event to be counted", || async {
        get("/metrics").await.filter(|m| {
            m.contains(r#"fanout_worker_events_total{event_type="post.created",outcome="ok"} 1"#)
        })
    })
    .await;
    assert!(metrics.contains("fanout_worker_propagation_seconds_bucket"));
    assert!(metrics.contains("fanout_worker_feed_writes_total 1"));
    assert!(metrics.contains("fanout_worker_feeds_skipped_total 1"));
    assert!(feed(&conn, absent).await.is_empty());
    worker.stop().await;
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn an_event_slower_than_the_claim_idle_time_is_handled_once(db: PgPool) {
    use feed_worker::consumer::{Consumer, Settings};
    use feed_worker::metrics::Metrics;

    let redis = RedisServer::start();
    let conn = connect(&redis).await;
    let author = user(&db, "author").await;
    let mut followers = Vec::new();
    for i in 0..100 {
        let f = user(&db, &format!("follower{i}")).await;
        follow(&db, f, author).await;
        followers.push(f);
    }
    reads(&conn, &followers).await;
    let (post_id, envelope) = post(&db, author, "to many").await;
    bus::publish(&mut conn.clone(), &[envelope]).await.unwrap();

    let metrics = std::sync::Arc::new(Metrics::new());
    let consumer = Consumer {
        settings: Settings {
            consumer: "slow".into(),
            batch_size: 8,
            concurrency: 4,
            block: Duration::from_millis(50),
            // Far shorter than the post takes: a chunk of one follower at a
            // time is hundreds of round trips.
            claim_idle: Duration::from_millis(1),
            claim_interval: Duration::from_millis(20),
            max_deliveries: 3,
            trim_interval: Duration::from_secs(60),
        },
        fanout: Fanout {
            chunk: 1,
            ..fanout(&db, &conn)
        },
        streams: conn.clone(),
        reader: conn.clone(),
        db: db.clone(),
        metrics: metrics.clone(),
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(consumer.run(shutdown.clone()));
    let stream = keys::stream(feed_core::events::EventType::PostCreated);
    eventually(
        DEADLINE,
        "the post in every feed and acknowledged",
        || async {
            for f in &followers {
                if feed(&conn, *f).await != vec![post_id] {
                    return None;
                }
            }
            (pending(&conn, &stream).await == 0).then_some(())
        },
    )
    .await;
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();

    // Claimed back while in hand (its idle time passed), but not handled a
    // second time beside the first, and never dead-lettered.
    assert!(metrics.claimed.get() >= 1, "the claim did happen");
    let handled = metrics
        .events
        .with_label_values(&["post.created", "ok"])
        .get();
    assert_eq!(handled, 1);
    assert_eq!(db::dead_letters::count(&db).await.unwrap(), 0);
}
