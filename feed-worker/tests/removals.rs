//! Deletes and unfollows take effect in every feed Redis keeps, whatever
//! order their events and the events they race are handled in: against
//! real PostgreSQL (a fresh database per test) and a real redis-server.

mod common;

use common::{connect, fanout, feed, follow, post, reads, user};
use fanout_testkit::RedisServer;
use feed_core::db;
use feed_core::events::{Event, FollowChanged, PostDeleted};
use sqlx::PgPool;
use uuid::Uuid;

async fn unfollow(db: &PgPool, follower: Uuid, followee: Uuid) -> Event {
    let mut conn = db.acquire().await.unwrap();
    assert!(
        db::follows::unfollow(&mut conn, follower, followee)
            .await
            .unwrap()
    );
    Event::FollowRemoved(FollowChanged {
        follower_id: follower,
        followee_id: followee,
    })
}

async fn delete(db: &PgPool, post_id: Uuid, author: Uuid) -> Event {
    assert!(db::posts::delete(db, post_id).await.unwrap());
    Event::PostDeleted(PostDeleted {
        post_id,
        author_id: author,
    })
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn a_post_deleted_after_its_author_was_unfollowed_leaves_the_feed(db: PgPool) {
    let redis = RedisServer::start();
    let conn = connect(&redis).await;
    let (author, other, reader) = (
        user(&db, "author").await,
        user(&db, "other").await,
        user(&db, "reader").await,
    );
    reads(&conn, &[reader]).await;
    let handlers = fanout(&db, &conn);
    for followee in [author, other] {
        let followed = follow(&db, reader, followee).await;
        handlers.handle(&followed.decode().unwrap()).await.unwrap();
    }
    let (gone, created) = post(&db, author, "soon gone").await;
    handlers.handle(&created.decode().unwrap()).await.unwrap();
    let (kept, created) = post(&db, other, "stays").await;
    handlers.handle(&created.decode().unwrap()).await.unwrap();
    assert_eq!(feed(&conn, reader).await, [kept, gone]);

    // Both commit before either event is handled: the delete no longer
    // reaches the reader (not a follower), and the unfollow no longer
    // finds the post among the author's.
    let removed = unfollow(&db, reader, author).await;
    let deleted = delete(&db, gone, author).await;
    handlers.handle(&deleted).await.unwrap();
    handlers.handle(&removed).await.unwrap();
    assert_eq!(feed(&conn, reader).await, [kept]);
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn a_fan_out_or_backfill_after_a_removal_does_not_put_it_back(db: PgPool) {
    let redis = RedisServer::start();
    let conn = connect(&redis).await;
    let (author, reader, other) = (
        user(&db, "author").await,
        user(&db, "reader").await,
        user(&db, "other").await,
    );
    reads(&conn, &[reader, other]).await;
    let handlers = fanout(&db, &conn);
    let followed = follow(&db, reader, author).await;
    handlers.handle(&followed.decode().unwrap()).await.unwrap();
    let other_followed = follow(&db, other, author).await;
    handlers
        .handle(&other_followed.decode().unwrap())
        .await
        .unwrap();

    // The unfollow is handled first; the post's fan-out, which read the
    // follow before it went, writes after (the follower list it read is
    // replayed here by writing to the feeds directly).
    let (id, created) = post(&db, author, "after the unfollow").await;
    let removed = unfollow(&db, reader, author).await;
    handlers.handle(&removed).await.unwrap();
    let Event::PostCreated(e) = created.decode().unwrap() else {
        unreachable!()
    };
    let fanned = feed_core::feed_store::FeedPost {
        id,
        author,
        score: feed_core::feed_store::score(e.created_at),
    };
    let written =
        feed_core::feed_store::add_to_feeds(&conn, &[reader, other], fanned, common::limits())
            .await
            .unwrap();
    assert_eq!(written, 1, "only the feed of the user still following");
    assert!(feed(&conn, reader).await.is_empty());
    assert_eq!(feed(&conn, other).await, [id]);

    // A late backfill of the old follow, too, adds nothing.
    handlers.handle(&followed.decode().unwrap()).await.unwrap();
    assert!(feed(&conn, reader).await.is_empty());

    // The post is deleted, then a redelivered post.created is handled.
    let deleted = delete(&db, id, author).await;
    handlers.handle(&deleted).await.unwrap();
    let written =
        feed_core::feed_store::add_to_feeds(&conn, &[reader, other], fanned, common::limits())
            .await
            .unwrap();
    assert_eq!(written, 0);
    assert!(feed(&conn, other).await.is_empty());

    // Following again lets the author's posts in again.
    let (newer, created) = post(&db, author, "after following again").await;
    let refollowed = follow(&db, reader, author).await;
    handlers
        .handle(&refollowed.decode().unwrap())
        .await
        .unwrap();
    handlers.handle(&created.decode().unwrap()).await.unwrap();
    assert_eq!(feed(&conn, reader).await, [newer]);
}
