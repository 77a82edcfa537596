//! The group commit of new posts, against real PostgreSQL (a fresh database
//! per test).

use chrono::Utc;
use feed_api::group_commit::PostWriter;
use feed_core::db::{self, posts::NewPost};
use feed_core::events::{Envelope, Event, PostCreated};
use prometheus::Histogram;
use prometheus::HistogramOpts;
use sqlx::PgPool;
use uuid::Uuid;

fn new_post(author_id: Uuid, content: &str) -> NewPost {
    let (id, created_at) = feed_core::ids::new_with_time();
    let event = Event::PostCreated(PostCreated {
        post_id: id,
        author_id,
        created_at,
    });
    NewPost {
        id,
        author_id,
        content: content.to_owned(),
        created_at,
        event: Envelope::new(&event, author_id, Utc::now(), None),
    }
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn concurrent_posts_commit_together_and_one_bad_post_fails_alone(db: PgPool) {
    let mut authors = Vec::new();
    for i in 0..50 {
        let id = Uuid::now_v7();
        db::users::insert(&db, id, &format!("author{i}"), "Author", "x")
            .await
            .unwrap();
        authors.push(id);
    }
    // Its user is gone (deleted after signing in): only its post may fail.
    let ghost = Uuid::now_v7();
    authors[17] = ghost;

    let sizes = Histogram::with_opts(HistogramOpts::new("sizes", "batch sizes")).unwrap();
    let (writer, task) = PostWriter::start(db.clone(), sizes.clone());
    let posts: Vec<NewPost> = authors
        .iter()
        .enumerate()
        .map(|(i, a)| new_post(*a, &format!("post {i}")))
        .collect();
    let results =
        futures_util::future::join_all(posts.iter().map(|p| writer.insert(p.clone()))).await;

    for (post, result) in posts.iter().zip(&results) {
        if post.author_id == ghost {
            let e = result.as_ref().expect_err("the ghost's post fails");
            assert!(db::is_foreign_key_violation(e), "{e}");
        } else {
            let written = result.as_ref().expect("every other post commits");
            assert_eq!(written.id, post.id);
            assert_eq!(written.content, post.content);
            assert_eq!(
                written.author_handle,
                format!("author{}", &post.content[5..])
            );
        }
    }
    // Some went together: fewer statements than posts.
    assert_eq!(sizes.get_sample_sum() as usize, 50);
    assert!(
        sizes.get_sample_count() < 50,
        "{}",
        sizes.get_sample_count()
    );
    // Nothing half-written: each post once, each with its event once.
    let (post_rows, outbox_rows): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM posts), (SELECT count(*) FROM outbox WHERE event_type = 'post.created')",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((post_rows, outbox_rows), (49, 49));

    drop(writer);
    task.await.unwrap();
}
