//! A celebrity's posts reach their followers' pages through their
//! timeline: the worker keeps it, and tells followers' feeds to pull it
//! when the author becomes a celebrity or is followed as one. Against real
//! PostgreSQL and a real redis-server.

mod common;

use common::{connect, fanout, feed, follow, post, reads, user};
use fanout_testkit::RedisServer;
use feed_core::bus::Conn;
use feed_core::events::{Event, FollowChanged};
use feed_core::feed_store::{self, Timeline};
use feed_core::{db, removals};
use sqlx::PgPool;
use uuid::Uuid;

/// The celebrities a user's feed pulls.
async fn pulls(conn: &Conn, user: Uuid) -> Vec<Uuid> {
    let limits = common::limits();
    let home = feed_store::read_home(&mut conn.clone(), user, None, 1, limits)
        .await
        .unwrap();
    home.pulls
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn becoming_a_celebrity_is_announced_to_followers_feeds_and_their_posts_go_to_a_timeline(
    db: PgPool,
) {
    let redis = RedisServer::start();
    let conn = connect(&redis).await;
    let (star, early, late, idle) = (
        user(&db, "star").await,
        user(&db, "early").await,
        user(&db, "late").await,
        user(&db, "idle").await,
    );
    // Feeds built while star had one follower: no pull for them.
    reads(&conn, &[early, late, star]).await;
    let mut handlers = fanout(&db, &conn);
    handlers.celebrity_threshold = 3;
    for follower in [early, idle] {
        let followed = follow(&db, follower, star).await;
        handlers.handle(&followed.decode().unwrap()).await.unwrap();
    }
    let (first, created) = post(&db, star, "not yet famous").await;
    handlers.handle(&created.decode().unwrap()).await.unwrap();
    assert_eq!(feed(&conn, early).await, [first], "fanned out");
    assert_eq!(feed(&conn, star).await, [first], "the author's own feed");

    // A third follower makes star a celebrity: that follow's backfill
    // already pulls instead of copying posts.
    let followed = follow(&db, late, star).await;
    handlers.handle(&followed.decode().unwrap()).await.unwrap();
    assert_eq!(pulls(&conn, late).await, [star]);
    assert!(feed(&conn, late).await.is_empty());

    // Their next post is not fanned out: it goes to their own feed and,
    // once a reader keeps it, their timeline; and the feeds built before
    // are told to pull it, once.
    let started = feed_store::begin_rebuild(&mut conn.clone(), Timeline::Author(star))
        .await
        .unwrap();
    let limits = common::limits();
    let rebuilt = feed_store::rebuild(
        &mut conn.clone(),
        Timeline::Author(star),
        &started,
        &[],
        &[],
        limits,
    )
    .await;
    assert!(rebuilt.unwrap());
    let (second, created) = post(&db, star, "famous now").await;
    for _ in 0..2 {
        handlers.handle(&created.decode().unwrap()).await.unwrap();
    }
    assert_eq!(feed(&conn, early).await, [first], "not fanned out");
    assert_eq!(pulls(&conn, early).await, [star], "announced");
    assert!(pulls(&conn, idle).await.is_empty(), "a feed not kept");
    assert_eq!(feed(&conn, star).await, [second, first]);
    assert_eq!(
        feed_store::members(&mut conn.clone(), Timeline::Author(star))
            .await
            .unwrap(),
        [second]
    );

    // Unfollowing takes the pull out, and then the hidden mark the API
    // left (unless an unfollow since set it again).
    let mut redis_conn = conn.clone();
    removals::hide(&mut redis_conn, early, star).await.unwrap();
    let mut pg = db.acquire().await.unwrap();
    assert!(db::follows::unfollow(&mut pg, early, star).await.unwrap());
    let removed = Event::FollowRemoved(FollowChanged {
        follower_id: early,
        followee_id: star,
    });
    handlers.handle(&removed).await.unwrap();
    assert!(pulls(&conn, early).await.is_empty());
    assert_eq!(feed(&conn, early).await, Vec::<Uuid>::new());
    let home = feed_store::read_home(&mut redis_conn, early, None, 1, limits)
        .await
        .unwrap();
    assert!(home.hidden.is_empty(), "unhidden once the feed is clean");
}
