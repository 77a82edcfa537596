//! Fan-out writes to home feeds, against a real redis-server.
#![cfg(feature = "redis")]

use std::time::Duration;

use fanout_testkit::RedisServer;
use fanout_testkit::connect::redis as connect;
use feed_core::bus::{Conn, Keyspace};
use feed_core::feed_store::{self, FeedLimits, FeedPost, Page, TRIM_SLACK};
use feed_core::{keys, removals};
use uuid::Uuid;

const LIMITS: FeedLimits = FeedLimits {
    max_len: 5,
    ttl: Duration::from_secs(1_000),
};

/// The author of every post here, unless a test says otherwise.
const AUTHOR: Uuid = Uuid::from_u128(1);

/// Posts of [`AUTHOR`] as a rebuild or a fan-out writes them.
fn by_author(posts: &[(Uuid, i64)]) -> Vec<FeedPost> {
    posts
        .iter()
        .map(|&(id, score)| FeedPost {
            id,
            author: AUTHOR,
            score,
        })
        .collect()
}

/// A new post of [`AUTHOR`] at `score`.
fn new_post(score: i64) -> FeedPost {
    by_author(&[(Uuid::now_v7(), score)])[0]
}

async fn ttl(conn: &mut Conn, user: Uuid) -> i64 {
    redis::cmd("TTL")
        .arg(keys::feed(conn.layout(), user))
        .query_async(conn)
        .await
        .unwrap()
}

/// The posts a feed holds, oldest first.
async fn members(conn: &mut Conn, user: Uuid) -> Vec<Uuid> {
    let mut newest_first = feed_store::members(conn, user).await.unwrap();
    newest_first.reverse();
    newest_first
}

/// Script calls every node of `redis` has run so far.
async fn script_calls(redis: &RedisServer) -> u64 {
    let mut calls = 0;
    for url in redis.node_urls() {
        let mut node = redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut node)
            .await
            .unwrap();
        calls += stats
            .lines()
            .filter_map(|line| line.strip_prefix("cmdstat_evalsha:"))
            .filter_map(|line| line.split(',').find_map(|kv| kv.strip_prefix("calls=")))
            .map(|n| n.parse::<u64>().unwrap())
            .sum::<u64>();
    }
    calls
}

/// Builds a feed as a reader does: placeholder first, then the rebuild.
async fn build(conn: &mut Conn, user: Uuid, posts: &[(Uuid, i64)], limits: FeedLimits) {
    let started = feed_store::begin_rebuild(conn, user).await.unwrap();
    let written = feed_store::rebuild(conn, user, &started, &by_author(posts), &[], limits).await;
    assert!(written.unwrap(), "a feed Redis kept is written");
}

#[tokio::test]
async fn fan_out_writes_the_feeds_redis_keeps_whole_and_trimmed_and_no_others() {
    let redis = RedisServer::start();
    let mut conn = connect(&redis).await;
    // More followers than one script call takes.
    let followers: Vec<Uuid> = (0..250).map(|_| Uuid::now_v7()).collect();
    let (reader, rebuilding) = (followers[0], followers[200]);
    let old: Vec<(Uuid, i64)> = (1..=5).map(|i| (Uuid::now_v7(), i * 1_000)).collect();
    build(&mut conn, reader, &old, LIMITS).await;
    // A reader between its placeholder and its rebuild.
    let started = feed_store::begin_rebuild(&mut conn, rebuilding)
        .await
        .unwrap();

    // Enough new posts to take a full feed past its slack.
    let new: Vec<(Uuid, i64)> = (1..=TRIM_SLACK as i64 + 1)
        .map(|i| (Uuid::now_v7(), 10_000 + i))
        .collect();
    for &(post, score) in &new {
        for _ in 0..2 {
            // Twice, as a redelivered event would: the same state either way.
            let written =
                feed_store::add_to_feeds(&conn, &followers, by_author(&[(post, score)])[0], LIMITS)
                    .await;
            assert_eq!(
                written.unwrap(),
                2,
                "the built feed and the one being built"
            );
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
            posts: newest.clone(),
            more: false
        }
    );

    // The feed being built is not served before its rebuild, which keeps
    // what fan-out added meanwhile beside what PostgreSQL had.
    let page = feed_store::read(&mut conn, rebuilding, None, 100, LIMITS).await;
    assert_eq!(page.unwrap(), Page::NotBuilt);
    let rebuilt = feed_store::rebuild(
        &mut conn,
        rebuilding,
        &started,
        &by_author(&old),
        &[],
        LIMITS,
    )
    .await;
    assert!(rebuilt.unwrap());
    let page = feed_store::read(&mut conn, rebuilding, None, 100, LIMITS).await;
    assert_eq!(
        page.unwrap(),
        Page::Entries {
            posts: newest,
            more: false
        }
    );
    let left = ttl(&mut conn, rebuilding).await;
    assert!(
        (1..=1_000).contains(&left),
        "a rebuilt feed expires: TTL {left}"
    );

    // Nobody else reads: Redis keeps no feed for them.
    for &user in followers
        .iter()
        .filter(|u| ![reader, rebuilding].contains(u))
    {
        assert!(members(&mut conn, user).await.is_empty());
        assert_eq!(ttl(&mut conn, user).await, -2, "no key");
    }
}

#[tokio::test]
async fn fan_out_leaves_a_readers_ttl_alone() {
    let redis = RedisServer::start();
    let mut conn = connect(&redis).await;
    let user = Uuid::now_v7();
    build(&mut conn, user, &[(Uuid::now_v7(), 1_000)], LIMITS).await;
    redis::cmd("EXPIRE")
        .arg(keys::feed(conn.layout(), user))
        .arg(50)
        .query_async::<i64>(&mut conn)
        .await
        .unwrap();
    feed_store::add_to_feeds(&conn, &[user], new_post(2_000), LIMITS)
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
    build(&mut conn, user, &[], LIMITS).await;
    feed_store::add_to_feeds(&conn, &[user], new_post(1_000), LIMITS)
        .await
        .unwrap();
    // As after a restart or a failover.
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    feed_store::add_to_feeds(&conn, &[user], new_post(2_000), LIMITS)
        .await
        .unwrap();
    assert_eq!(members(&mut conn, user).await.len(), 2);
}

#[tokio::test]
async fn a_rebuild_is_not_written_over_a_feed_redis_lost_meanwhile() {
    let redis = RedisServer::start();
    let mut conn = connect(&redis).await;
    let user = Uuid::now_v7();
    let started = feed_store::begin_rebuild(&mut conn, user).await.unwrap();
    // Redis restarts empty while the reader reads PostgreSQL, and a post
    // committed after that read is fanned out meanwhile: skipped.
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let skipped = feed_store::add_to_feeds(&conn, &[user], new_post(2_000), LIMITS).await;
    assert_eq!(skipped.unwrap(), 0);
    let backfilled =
        feed_store::add_posts(&conn, user, AUTHOR, &[(Uuid::now_v7(), 1_500)], LIMITS).await;
    assert!(!backfilled.unwrap());

    // Another reader marks the feed meanwhile (its read of PostgreSQL will
    // have the post).
    let second = feed_store::begin_rebuild(&mut conn, user).await.unwrap();

    // The first rebuild lacks that post, so it must not be marked built.
    let older = (Uuid::now_v7(), 1_000);
    let rebuilt =
        feed_store::rebuild(&mut conn, user, &started, &by_author(&[older]), &[], LIMITS).await;
    assert!(!rebuilt.unwrap());
    let page = feed_store::read(&mut conn, user, None, 10, LIMITS).await;
    assert_eq!(page.unwrap(), Page::NotBuilt);

    // The second is written, and is then the feed; a rebuild begun before
    // it was written does not write over it.
    let late = feed_store::begin_rebuild(&mut conn, user).await.unwrap();
    let post = (Uuid::now_v7(), 2_000);
    let rebuilt = feed_store::rebuild(
        &mut conn,
        user,
        &second,
        &by_author(&[post, older]),
        &[],
        LIMITS,
    )
    .await;
    assert!(rebuilt.unwrap());
    let rebuilt =
        feed_store::rebuild(&mut conn, user, &late, &by_author(&[older]), &[], LIMITS).await;
    assert!(!rebuilt.unwrap());
    let page = feed_store::read(&mut conn, user, None, 10, LIMITS).await;
    assert_eq!(
        page.unwrap(),
        Page::Entries {
            posts: vec![post, older],
            more: false
        }
    );
}

#[tokio::test]
async fn a_backfill_is_added_to_a_kept_feed_and_trimmed() {
    let redis = RedisServer::start();
    let mut conn = connect(&redis).await;
    let user = Uuid::now_v7();
    build(&mut conn, user, &[(Uuid::now_v7(), 1_000)], LIMITS).await;
    // More than the feed holds and its slack, from a newly followed author.
    let posts: Vec<(Uuid, i64)> = (0..(LIMITS.max_len + TRIM_SLACK + 2) as i64)
        .map(|i| (Uuid::now_v7(), 2_000 + i))
        .collect();
    let added = feed_store::add_posts(&conn, user, AUTHOR, &posts, LIMITS).await;
    assert!(added.unwrap());
    let page = feed_store::read(&mut conn, user, None, 100, LIMITS).await;
    let newest: Vec<(Uuid, i64)> = posts.iter().rev().take(LIMITS.max_len).copied().collect();
    assert_eq!(
        page.unwrap(),
        Page::Entries {
            posts: newest,
            more: false
        }
    );
}

#[tokio::test]
async fn a_placeholder_beside_a_built_feed_is_never_read_as_a_post() {
    let redis = RedisServer::start();
    let mut conn = connect(&redis).await;
    let user = Uuid::now_v7();
    let posts = [(Uuid::now_v7(), 2_000), (Uuid::now_v7(), 1_000)];
    build(&mut conn, user, &posts, LIMITS).await;
    // A reader that found the feed unbuilt adds its placeholder just after
    // another reader's rebuild was written.
    let late = feed_store::begin_rebuild(&mut conn, user).await.unwrap();
    let expected = Page::Entries {
        posts: posts.to_vec(),
        more: false,
    };
    let page = feed_store::read(&mut conn, user, None, 10, LIMITS).await;
    assert_eq!(page.unwrap(), expected);

    // Its rebuild is written too, and leaves the feed as one rebuild does.
    let rebuilt =
        feed_store::rebuild(&mut conn, user, &late, &by_author(&posts), &[], LIMITS).await;
    assert!(rebuilt.unwrap());
    let page = feed_store::read(&mut conn, user, None, 10, LIMITS).await;
    assert_eq!(page.unwrap(), expected);
    let entries: u64 = redis::cmd("ZCARD")
        .arg(keys::feed(conn.layout(), user))
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
    build(&mut conn, user, &posts, LIMITS).await;
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
    build(&mut conn, crowded, &same_ms, long).await;
    let page = feed_store::read(&mut conn, crowded, None, 1, long).await;
    assert_eq!(
        page.unwrap(),
        Page::Entries {
            posts: vec![same_ms[39]],
            more: true
        }
    );
}

#[tokio::test]
async fn removals_marked_meanwhile_stay_out_of_rebuilds_fan_out_and_the_post_cache() {
    let redis = RedisServer::start();
    let mut conn = connect(&redis).await;
    let (user, unfollowed) = (Uuid::now_v7(), Uuid::now_v7());
    let started = feed_store::begin_rebuild(&mut conn, user).await.unwrap();
    // While the reader reads PostgreSQL, a post is deleted and an author
    // unfollowed: the rebuild has both, and writes neither.
    let deleted = new_post(3_000);
    removals::mark_deleted(&conn, deleted.id).await.unwrap();
    removals::mark_unfollowed(&mut conn, user, unfollowed)
        .await
        .unwrap();
    let theirs = FeedPost {
        id: Uuid::now_v7(),
        author: unfollowed,
        score: 2_000,
    };
    let kept = new_post(1_000);
    let read_before = [deleted, theirs, kept];
    let rebuilt = feed_store::rebuild(&mut conn, user, &started, &read_before, &[], LIMITS).await;
    assert!(rebuilt.unwrap());
    let page = feed_store::read(&mut conn, user, None, 10, LIMITS).await;
    let only_kept = Page::Entries {
        posts: vec![(kept.id, kept.score)],
        more: false,
    };
    assert_eq!(page.unwrap(), only_kept);

    // A fan-out or a backfill that read them before is refused too.
    for post in [deleted, theirs] {
        let written = feed_store::add_to_feeds(&conn, &[user], post, LIMITS).await;
        assert_eq!(written.unwrap(), 0);
        let backfill = [(post.id, post.score)];
        let added = feed_store::add_posts(&conn, user, post.author, &backfill, LIMITS).await;
        assert!(!added.unwrap());
    }
    let page = feed_store::read(&mut conn, user, None, 10, LIMITS).await;
    assert_eq!(page.unwrap(), only_kept);

    // So is caching the deleted post again.
    let copy = feed_store::CachedPost {
        id: deleted.id,
        author_id: AUTHOR,
        author_handle: "author".into(),
        content: "gone".into(),
        created_at: chrono::Utc::now(),
        like_count: 0,
    };
    feed_store::cache_posts(&conn, std::slice::from_ref(&copy), LIMITS)
        .await
        .unwrap();
    let cached = feed_store::cached_posts(&conn, &[deleted.id]).await;
    assert!(cached.unwrap().is_empty());

    // The marks expire.
    let shard = conn.layout().shard(user);
    for key in [
        keys::deleted(shard, deleted.id),
        keys::unfollowed(shard, unfollowed),
    ] {
        let left: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            (1..=removals::MARK_TTL.as_secs() as i64).contains(&left),
            "{key}: TTL {left}"
        );
    }

    // Following again lets the author's posts in.
    removals::clear_unfollowed(&mut conn, user, unfollowed)
        .await
        .unwrap();
    let written = feed_store::add_to_feeds(&conn, &[user], theirs, LIMITS).await;
    assert_eq!(written.unwrap(), 1);
}

#[tokio::test]
async fn a_restart_from_old_data_is_a_new_epoch_whose_reads_rebuild() {
    let mut redis = RedisServer::start();
    let mut conn = connect(&redis).await;
    let (built, building) = (Uuid::now_v7(), Uuid::now_v7());
    let kept = [(Uuid::now_v7(), 1_000)];
    build(&mut conn, built, &kept, LIMITS).await;
    let started = feed_store::begin_rebuild(&mut conn, building)
        .await
        .unwrap();
    let copy = feed_store::CachedPost {
        id: kept[0].0,
        author_id: AUTHOR,
        author_handle: "author".into(),
        content: "kept".into(),
        created_at: chrono::Utc::now(),
        like_count: 0,
    };
    feed_store::cache_posts(&conn, std::slice::from_ref(&copy), LIMITS)
        .await
        .unwrap();
    let before = feed_store::copies(&conn, &[copy.id]).await.unwrap();
    assert_eq!(before, vec![Some(copy.clone())]);

    // Restarted from its own data: the built feed, the placeholder and the
    // copy are all there, and none is trusted.
    let data = redis.copy_data();
    redis.restart_from(&data);
    let mut conn = connect(&redis).await;
    assert_eq!(members(&mut conn, built).await, vec![kept[0].0]);
    let page = feed_store::read(&mut conn, built, None, 10, LIMITS).await;
    assert_eq!(page.unwrap(), Page::NotBuilt, "built in another epoch");
    let copies = feed_store::copies(&conn, &[copy.id]).await.unwrap();
    assert_eq!(copies, vec![None], "a copy of another epoch is missing");
    let rebuilt = feed_store::rebuild(&mut conn, building, &started, &[], &[], LIMITS).await;
    assert!(!rebuilt.unwrap(), "a placeholder of another epoch");

    // Rebuilding drops what the old epoch left before it begins.
    let fresh = [(Uuid::now_v7(), 2_000)];
    build(&mut conn, built, &fresh, LIMITS).await;
    let page = feed_store::read(&mut conn, built, None, 10, LIMITS).await;
    assert_eq!(
        page.unwrap(),
        Page::Entries {
            posts: fresh.to_vec(),
            more: false
        }
    );
}

#[tokio::test]
async fn pulls_and_the_sentinel_outlive_trims_and_pages_never_meet_them() {
    let redis = RedisServer::start();
    let mut conn = connect(&redis).await;
    let (user, star, unfollowed) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    removals::mark_unfollowed(&mut conn, user, unfollowed)
        .await
        .unwrap();
    let started = feed_store::begin_rebuild(&mut conn, user).await.unwrap();
    let old: Vec<(Uuid, i64)> = (1..=5).map(|i| (Uuid::now_v7(), i * 1_000)).collect();
    let rebuilt = feed_store::rebuild(
        &mut conn,
        user,
        &started,
        &by_author(&old),
        &[star, unfollowed],
        LIMITS,
    )
    .await;
    assert!(rebuilt.unwrap());
    // Far past the slack: trimmed, more than once.
    for i in 0..3 * TRIM_SLACK as i64 {
        feed_store::add_to_feeds(&conn, &[user], new_post(10_000 + i), LIMITS)
            .await
            .unwrap();
    }
    let home = feed_store::read_home(&mut conn, user, None, 100, LIMITS)
        .await
        .unwrap();
    assert_eq!(
        home.pulls,
        vec![star],
        "the unfollowed author's pull is left out"
    );
    let feed_store::Page::Entries { posts, .. } = home.page else {
        panic!("still built after trims");
    };
    assert!((LIMITS.max_len..=LIMITS.max_len + TRIM_SLACK).contains(&posts.len()));
    assert!(posts.iter().all(|(_, score)| *score >= 10_000));

    // A pull added later (a follow, an announcement) reaches kept feeds only.
    let later = Uuid::now_v7();
    let written = feed_store::add_pulls(&conn, &[user, Uuid::now_v7()], later, LIMITS).await;
    assert_eq!(written.unwrap(), 1);
    let home = feed_store::read_home(&mut conn, user, None, 1, LIMITS)
        .await
        .unwrap();
    assert_eq!(home.pulls.len(), 2);
    assert!(home.pulls.contains(&later));
}

#[tokio::test]
async fn a_new_post_is_shown_to_its_author_unless_it_is_being_deleted() {
    let redis = RedisServer::start();
    let mut conn = connect(&redis).await;
    let (reader, idle) = (Uuid::now_v7(), Uuid::now_v7());
    build(&mut conn, reader, &[], LIMITS).await;
    let copy = |author: Uuid| feed_store::CachedPost {
        id: Uuid::now_v7(),
        author_id: author,
        author_handle: "author".into(),
        content: "mine".into(),
        created_at: chrono::Utc::now(),
        like_count: 0,
    };

    let shown = copy(reader);
    feed_store::show_to_author(&conn, &shown, LIMITS)
        .await
        .unwrap();
    assert_eq!(members(&mut conn, reader).await, [shown.id]);
    let cached = feed_store::copies(&conn, &[shown.id]).await.unwrap();
    assert_eq!(cached, [Some(shown.clone())]);

    // An author whose feed Redis does not keep: the copy only.
    let unread = copy(idle);
    feed_store::show_to_author(&conn, &unread, LIMITS)
        .await
        .unwrap();
    assert!(members(&mut conn, idle).await.is_empty());
    assert_eq!(
        feed_store::cached_posts(&conn, &[unread.id])
            .await
            .unwrap()
            .len(),
        1
    );

    // A post whose delete is committing: neither.
    let withdrawn = copy(reader);
    removals::withdraw(&conn, &[withdrawn.id]).await.unwrap();
    feed_store::show_to_author(&conn, &withdrawn, LIMITS)
        .await
        .unwrap();
    assert_eq!(members(&mut conn, reader).await, [shown.id]);
    assert!(
        feed_store::cached_posts(&conn, &[withdrawn.id])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn posts_fanned_out_together_share_calls_and_each_keeps_its_own_marks() {
    let redis = RedisServer::start();
    let mut conn = connect(&redis).await;
    // Readers enough to span every shard of a cluster.
    let readers: Vec<Uuid> = (0..40).map(|_| Uuid::now_v7()).collect();
    for reader in &readers {
        build(&mut conn, *reader, &[], LIMITS).await;
    }
    let idle = Uuid::now_v7();
    let (unfollower, unfollowed) = (readers[0], Uuid::now_v7());
    removals::mark_unfollowed(&mut conn, unfollower, unfollowed)
        .await
        .unwrap();
    let deleted = new_post(1_000);
    removals::mark_deleted(&conn, deleted.id).await.unwrap();
    let kept = new_post(2_000);
    let theirs = FeedPost {
        author: unfollowed,
        ..new_post(3_000)
    };
    let mut to_all = readers.clone();
    to_all.push(idle);

    let writer = feed_store::FeedWriter::spawn(conn.clone(), LIMITS);
    // The script loaded on every node first, so the calls counted below are
    // the deliveries' own.
    writer.add_to_feeds(&[idle], new_post(500)).await.unwrap();
    let before = script_calls(&redis).await;
    // Queued together (the test's runtime runs the writer only once all
    // three wait), so the writer takes them as one batch.
    let (kept_written, theirs_written, deleted_written) = tokio::join!(
        writer.add_to_feeds(&to_all, kept),
        writer.add_to_feeds(&readers, theirs),
        writer.add_to_feeds(&readers, deleted),
    );
    // One call per shard and 100 feeds, whichever post the feeds are for.
    let mut all_feeds = to_all.clone();
    all_feeds.extend(&readers);
    all_feeds.extend(&readers);
    let shared: usize = conn
        .layout()
        .group(all_feeds, |user| *user)
        .iter()
        .map(|(_, feeds)| feeds.len().div_ceil(100))
        .sum();
    assert_eq!(script_calls(&redis).await - before, shared as u64);
    assert_eq!(
        kept_written.unwrap(),
        readers.len() as u64,
        "not the idle one"
    );
    assert_eq!(
        theirs_written.unwrap(),
        readers.len() as u64 - 1,
        "not the unfollower's"
    );
    assert_eq!(deleted_written.unwrap(), 0);
    assert_eq!(members(&mut conn, unfollower).await, [kept.id]);
    for reader in &readers[1..] {
        assert_eq!(members(&mut conn, *reader).await, [kept.id, theirs.id]);
    }
    assert!(members(&mut conn, idle).await.is_empty());
}
