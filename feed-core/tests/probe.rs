//! The autoscaler's view of the streams, against a real redis-server with a
//! real consumer group and backlog.
#![cfg(feature = "redis")]

use fanout_testkit::RedisServer;
use fanout_testkit::connect::redis as connect;
use feed_core::bus::{self, Conn};
use feed_core::events::EventType;
use feed_core::keys;

async fn add(conn: &mut Conn, stream: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id: String = redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg(bus::ENVELOPE_FIELD)
            .arg(format!("{{\"n\":{i}}}"))
            .query_async(conn)
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn lag_pending_poison_and_rates_are_read_per_stream() {
    let redis = RedisServer::start();
    let mut conn = connect(&redis).await;
    let created = keys::stream(EventType::PostCreated);
    let liked = keys::stream(EventType::PostLiked);

    // Before any group exists, a non-empty stream's lag is unknown.
    add(&mut conn, &created, 1).await;
    let backlog = bus::backlog(&mut conn, 5).await.unwrap();
    assert_eq!(backlog.lag, None, "no group: unknown, never zero");

    bus::ensure_groups(&mut conn).await.unwrap();
    let ids = add(&mut conn, &created, 9).await;
    add(&mut conn, &liked, 5).await;
    // A worker takes 4 entries of post.created and does not acknowledge them.
    let taken = bus::read_group(
        &mut conn,
        "w1",
        std::slice::from_ref(&created),
        4,
        std::time::Duration::ZERO,
        false,
    )
    .await
    .unwrap();
    assert_eq!(taken.len(), 4);
    // One of them keeps failing: delivered 7 times (> 5).
    for _ in 0..6 {
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(&created)
            .arg(keys::CONSUMER_GROUP)
            .arg("w1")
            .arg(0)
            .arg(&taken[0].entry_id)
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    let backlog = bus::backlog(&mut conn, 5).await.unwrap();
    assert_eq!(
        backlog.lag,
        Some(6 + 5),
        "undelivered: 6 of post.created, 5 of post.liked"
    );
    assert_eq!(backlog.pending, 3, "4 pending, one of them poison");
    assert_eq!(backlog.poison, 1);
    assert_eq!(backlog.entries_added, 15);
    assert_eq!(backlog.entries_read, Some(4));
    let stream = backlog
        .streams
        .iter()
        .find(|s| s.stream == created)
        .unwrap();
    assert_eq!(
        (stream.lag, stream.pending, stream.consumers),
        (Some(6), 4, 1)
    );

    // Deleting an undelivered entry leaves Redis unable to count the lag:
    // the probe says unknown rather than a guess.
    let _: usize = redis::cmd("XDEL")
        .arg(&created)
        .arg(&ids[8])
        .query_async(&mut conn)
        .await
        .unwrap();
    let backlog = bus::backlog(&mut conn, 5).await.unwrap();
    assert_eq!(backlog.lag, None);
}

#[tokio::test]
async fn a_group_that_delivered_everything_has_no_lag_whatever_its_read_counter_says() {
    let redis = RedisServer::start();
    let mut conn = connect(&redis).await;
    bus::ensure_groups(&mut conn).await.unwrap();
    let created = keys::stream(EventType::PostCreated);
    add(&mut conn, &created, 7).await;
    let taken = bus::read_group(
        &mut conn,
        "w1",
        std::slice::from_ref(&created),
        10,
        std::time::Duration::ZERO,
        false,
    )
    .await
    .unwrap();
    let ids: Vec<&str> = taken.iter().map(|d| d.entry_id.as_str()).collect();
    let _: u64 = redis::cmd("XACK")
        .arg(&created)
        .arg(keys::CONSUMER_GROUP)
        .arg(&ids)
        .query_async(&mut conn)
        .await
        .unwrap();
    // The group's read counter lost, as after a restart that once came back
    // with 0 read: Redis then reports every entry as lag.
    let _: () = redis::cmd("XGROUP")
        .arg("SETID")
        .arg(&created)
        .arg(keys::CONSUMER_GROUP)
        .arg("$")
        .arg("ENTRIESREAD")
        .arg(0)
        .query_async(&mut conn)
        .await
        .unwrap();
    let backlog = bus::backlog(&mut conn, 5).await.unwrap();
    assert_eq!(backlog.lag, Some(0));
    assert_eq!(backlog.pending, 0);
    assert_eq!(backlog.entries_read, Some(backlog.entries_added));
}

#[tokio::test]
async fn consumers_are_listed_and_only_idle_empty_ones_removed() {
    let redis = RedisServer::start();
    let mut conn = connect(&redis).await;
    bus::ensure_groups(&mut conn).await.unwrap();
    let created = keys::stream(EventType::PostCreated);
    add(&mut conn, &created, 3).await;
    let streams = keys::all_streams();
    let zero = std::time::Duration::ZERO;
    let held = bus::read_group(
        &mut conn,
        "busy",
        std::slice::from_ref(&created),
        2,
        zero,
        false,
    )
    .await
    .unwrap();
    assert_eq!(held.len(), 2);
    bus::read_group(&mut conn, "gone", &streams, 10, zero, false)
        .await
        .unwrap();
    let done: Vec<String> = bus::read_group(&mut conn, "gone", &streams, 10, zero, true)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.entry_id)
        .collect();
    bus::ack(&mut conn, &created, &done).await.unwrap();

    let consumers = bus::consumers(&mut conn).await.unwrap();
    assert_eq!(consumers["busy"].pending, 2);
    assert_eq!(consumers["gone"].pending, 0);

    assert!(bus::remove_consumer(&mut conn, "gone").await.unwrap());
    assert!(
        !bus::remove_consumer(&mut conn, "busy").await.unwrap(),
        "its entries must be claimed first"
    );
    let consumers = bus::consumers(&mut conn).await.unwrap();
    assert!(!consumers.contains_key("gone"));
    assert_eq!(
        consumers["busy"].pending, 2,
        "nothing of a busy consumer is lost"
    );
}
