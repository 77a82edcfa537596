//! Helpers the worker's test files share: users, follows and posts written
//! to PostgreSQL with the events the API would publish, and a look at feeds.
#![allow(dead_code)]

use std::time::Duration;

use chrono::Utc;
use fanout_testkit::RedisServer;
use feed_core::bus;
use feed_core::bus::Conn;
use feed_core::db;
use feed_core::events::{Envelope, Event, FollowChanged, PostCreated};
use feed_core::feed_store::{self, FeedLimits, FeedWriter};
use feed_worker::fanout::Fanout;
use sqlx::PgPool;
use uuid::Uuid;

pub async fn user(db: &PgPool, handle: &str) -> Uuid {
    db::users::insert(db, Uuid::now_v7(), handle, handle, "unused")
        .await
        .unwrap()
        .id
}

pub async fn follow(db: &PgPool, follower: Uuid, followee: Uuid) -> Envelope {
    let mut conn = db.acquire().await.unwrap();
    assert!(
        db::follows::follow(&mut conn, follower, followee)
            .await
            .unwrap()
    );
    let event = Event::FollowCreated(FollowChanged {
        follower_id: follower,
        followee_id: followee,
    });
    Envelope::new(&event, follower, Utc::now(), None)
}

pub async fn post(db: &PgPool, author: Uuid, text: &str) -> (Uuid, Envelope) {
    let (id, at) = feed_core::ids::new_with_time();
    db::posts::insert(db, id, author, text, at).await.unwrap();
    let event = Event::PostCreated(PostCreated {
        post_id: id,
        author_id: author,
        created_at: at,
    });
    (
        id,
        Envelope::new(&event, author, at, Some(format!("req-{id}"))),
    )
}

pub async fn connect(redis: &RedisServer) -> Conn {
    let mut conn = fanout_testkit::connect::redis(redis).await;
    bus::ensure_groups(&mut conn).await.unwrap();
    conn
}

pub fn limits() -> FeedLimits {
    FeedLimits {
        max_len: 800,
        ttl: Duration::from_secs(3600),
    }
}

pub fn fanout(db: &PgPool, conn: &Conn) -> Fanout {
    Fanout {
        db: db.clone(),
        redis: conn.clone(),
        writer: FeedWriter::spawn(conn.clone(), limits()),
        limits: limits(),
        celebrity_threshold: 10_000,
        chunk: 2,
        backfill_posts: 100,
    }
}

/// The post ids in a user's feed in Redis, newest first.
pub async fn feed(conn: &Conn, user: Uuid) -> Vec<Uuid> {
    feed_store::members(&mut conn.clone(), user).await.unwrap()
}

/// Builds (empty) feeds for these users, as their first read does before
/// anything is posted: fan-out writes only the feeds Redis keeps.
pub async fn reads(conn: &Conn, users: &[Uuid]) {
    for user in users {
        let mut conn = conn.clone();
        let started = feed_store::begin_rebuild(&mut conn, *user).await.unwrap();
        let built = feed_store::rebuild(&mut conn, *user, &started, &[], &[], limits()).await;
        assert!(built.unwrap());
    }
}

pub async fn pending(conn: &Conn, stream: &str) -> u64 {
    let stats = bus::stream_stats(&mut conn.clone()).await.unwrap();
    stats.iter().find(|s| s.stream == stream).unwrap().pending
}

/// The like count of a post's cached copy, if it has one.
pub async fn cached_like_count(conn: &Conn, post_id: Uuid) -> Option<i64> {
    feed_store::cached_posts(&conn.clone(), &[post_id])
        .await
        .unwrap()
        .first()
        .map(|p| p.like_count)
}
