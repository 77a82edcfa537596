//! The autoscaler on real workers: a burst of events on real streams, the
//! operator's autoscaling step (`feed_core::autoscale::step`: observe,
//! decide, scale) run on `feed-worker` processes started and stopped
//! (SIGTERM) by the autoscale lab's `LocalWorkers`, a `ScaleTarget` as the
//! operator's Deployment is. Every event must reach every feed once,
//! whatever was scaled down under it.

use std::time::{Duration, Instant};

use autoscale_lab::local_workers::LocalWorkers;
use chrono::Utc;
use fanout_testkit::RedisServer;
use feed_core::autoscale::step::{self, BacklogSource, ScaleTarget, Step};
use feed_core::autoscale::{Memory, Settings};
use feed_core::events::{Envelope, Event, PostCreated};
use feed_core::{bus, db, feed_store};
use sqlx::PgPool;
use uuid::Uuid;

/// Followers of the one author: each post is one event and this many feed
/// writes.
const FANS: usize = 20;
/// The burst, and a second wave published as the first scale-down starts.
const BURST: usize = 1_500;
const SECOND_WAVE: usize = 300;
/// The policy polls this often.
const POLL: Duration = Duration::from_millis(500);
const DEADLINE: Duration = Duration::from_secs(180);

/// The streams, read as the operator reads them; a failed read is an
/// unknown backlog.
struct Streams<'a>(&'a bus::Redis);

impl BacklogSource for Streams<'_> {
    async fn backlog(&self) -> Option<bus::Backlog> {
        let mut conn = self.0.conn().await.ok()?;
        bus::backlog(&mut conn, bus::DEFAULT_MAX_DELIVERIES)
            .await
            .ok()
    }
}

async fn posts(db: &PgPool, author: Uuid, n: usize) -> (Vec<Uuid>, Vec<Envelope>) {
    let mut ids = Vec::with_capacity(n);
    let mut envelopes = Vec::with_capacity(n);
    for i in 0..n {
        let (id, at) = feed_core::ids::new_with_time();
        db::posts::insert(db, id, author, &format!("post {i}"), at)
            .await
            .unwrap();
        let event = Event::PostCreated(PostCreated {
            post_id: id,
            author_id: author,
            created_at: at,
        });
        ids.push(id);
        envelopes.push(Envelope::new(&event, author, Utc::now(), None));
    }
    (ids, envelopes)
}

async fn publish(redis: &bus::Redis, envelopes: &[Envelope]) {
    let mut conn = redis.conn().await.unwrap();
    for chunk in envelopes.chunks(500) {
        bus::publish(&mut conn, chunk).await.unwrap();
    }
}

/// The tests here run one at a time: each measures how fast real workers
/// serve, which workers of the other would skew.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An author with [`FANS`] followers whose feeds Redis keeps, and the
/// streams.
struct Cast {
    redis: RedisServer,
    probe: bus::Redis,
    author: Uuid,
    fans: Vec<Uuid>,
}

async fn cast(db: &PgPool) -> Cast {
    let redis = RedisServer::start();
    let probe = bus::Redis::new(&redis.url(), Duration::from_secs(2)).unwrap();
    bus::ensure_groups(&mut probe.conn().await.unwrap())
        .await
        .unwrap();
    let author = db::users::insert(db, Uuid::now_v7(), "author", "author", "unused")
        .await
        .unwrap()
        .id;
    let mut fans = Vec::new();
    for i in 0..FANS {
        let fan = db::users::insert(db, Uuid::now_v7(), &format!("fan{i}"), "fan", "unused")
            .await
            .unwrap()
            .id;
        let mut conn = db.acquire().await.unwrap();
        db::follows::follow(&mut conn, fan, author).await.unwrap();
        fans.push(fan);
    }
    // Every fan has read (an empty feed), so Redis keeps their feeds.
    let mut conn = probe.conn().await.unwrap();
    let limits = feed_store::FeedLimits {
        max_len: 1_000,
        ttl: Duration::from_secs(3_600),
    };
    for fan in &fans {
        let started = feed_store::begin_rebuild(&mut conn, *fan).await.unwrap();
        let built = feed_store::rebuild(&mut conn, *fan, &started, &[], &[], limits).await;
        assert!(built.unwrap());
    }
    Cast {
        redis,
        probe,
        author,
        fans,
    }
}

/// Real `feed-worker` processes on the cast's streams and `db`.
fn local_workers(db: &PgPool, redis: &RedisServer) -> LocalWorkers {
    let url = fanout_testkit::connect::database_url(db);
    let env = [
        ("FANOUT_DATABASE_URL", url.as_str()),
        ("FANOUT_REDIS_URL", &redis.url()),
        ("FANOUT_FEED_MAX_LEN", "5000"),
        ("FANOUT_BLOCK_MS", "200"),
        ("FANOUT_CLAIM_IDLE_MS", "1000"),
        ("FANOUT_CLAIM_INTERVAL_MS", "500"),
        ("FANOUT_LOG_FORMAT", "json"),
        ("RUST_LOG", "warn"),
    ];
    LocalWorkers::new(
        env!("CARGO_BIN_EXE_feed-worker"),
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// Every post in every fan's feed, once, and nothing pending or dead.
async fn every_post_landed_once(db: &PgPool, cast: &Cast, posts: &[Uuid]) {
    let mut conn = cast.probe.conn().await.unwrap();
    let mut expected = posts.to_vec();
    expected.sort();
    for fan in &cast.fans {
        let mut ids = feed_store::members(&mut conn, *fan).await.unwrap();
        ids.sort();
        assert_eq!(ids.len(), expected.len(), "fan {fan}");
        assert_eq!(ids, expected, "fan {fan}");
    }
    let backlog = bus::backlog(&mut conn, bus::DEFAULT_MAX_DELIVERIES)
        .await
        .unwrap();
    assert_eq!(backlog.entries_added, posts.len() as u64);
    assert_eq!(backlog.pending, 0);
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(dead, 0);
}

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn a_burst_scales_real_workers_up_and_down_and_every_event_lands_once(db: PgPool) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let cast = cast(&db).await;
    let (redis, probe, author) = (&cast.redis, &cast.probe, cast.author);
    let (mut all, burst) = posts(&db, author, BURST).await;
    let (second_ids, second_wave) = posts(&db, author, SECOND_WAVE).await;
    all.extend(second_ids);

    let workers = local_workers(&db, redis);
    // Tight settings, so a test-sized burst exercises every rule.
    let settings = Settings {
        min_replicas: 1,
        max_replicas: 4,
        drain_seconds: 3.0,
        assumed_rate_per_replica: 100.0,
        scale_down_window_secs: 3.0,
        max_scale_up_step: 4,
        max_scale_down_step: 4,
        ..Settings::default()
    };
    workers.scale(1).await.unwrap();
    publish(probe, &burst).await;

    let started = Instant::now();
    let mut memory = Memory::default();
    let mut most = 1;
    let mut second_wave_sent = false;
    let mut scaled_down = false;
    loop {
        assert!(
            started.elapsed() < DEADLINE,
            "the backlog did not drain with the workers back at 1 (most: {most})"
        );
        let Step {
            backlog,
            replicas,
            decision,
        } = step::decide_step(&settings, &mut memory, &Streams(probe), &workers, || {
            started.elapsed().as_secs_f64()
        })
        .await
        .unwrap()
        .expect("local workers always exist");
        // Judged on what was just read: after the second wave went out and
        // a scale-down happened, nothing left and one worker.
        let drained = backlog.as_ref().is_some_and(|b| {
            b.lag == Some(0) && b.pending == 0 && b.entries_read == Some(b.entries_added)
        });
        if second_wave_sent && scaled_down && drained && replicas.desired == 1 {
            break;
        }
        most = most.max(decision.desired);
        if decision.desired < replicas.desired && !second_wave_sent {
            // Work arrives just as workers are being stopped: what they
            // hold must be finished, or reclaimed by the others.
            publish(probe, &second_wave).await;
            second_wave_sent = true;
        }
        if decision.desired != replicas.desired {
            println!(
                "{:>5.1} s: {} -> {}: {}",
                started.elapsed().as_secs_f64(),
                replicas.desired,
                decision.desired,
                decision.reason
            );
            scaled_down |= decision.desired < replicas.desired;
        }
        step::apply(&workers, &decision).await.unwrap();
        tokio::time::sleep(POLL).await;
    }
    assert!(most > 1, "the burst never scaled the workers up");
    workers.stop_all().await.unwrap();

    // Every post in every feed, once: nothing lost, nothing doubled.
    every_post_landed_once(&db, &cast, &all).await;
}

/// The spiky load, in ticks of one poll each (the operator polls every
/// 10 s; here every 2 s): a mean of this many events a tick...
const TICK: Duration = Duration::from_secs(2);
/// Light on purpose: a worker that falls behind the mean (a machine busy
/// with other work) is right to ask for help, and that is not the point.
const PER_TICK: usize = 10;
const TICKS: usize = 14;
/// ...and at these ticks a spike: ten times the mean for a tenth of the
/// tick, so that tick brings twice the mean.
const SPIKES_AT: [usize; 3] = [3, 7, 11];

#[sqlx::test(migrator = "feed_core::db::MIGRATOR")]
async fn spikes_one_worker_drains_in_time_pass_without_scaling_and_every_event_lands_once(
    db: PgPool,
) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let cast = cast(&db).await;
    let workers = local_workers(&db, &cast.redis);
    // One worker serves the mean at a twentieth of its assumed rate, and a
    // spike's tick within the drain target even at a tenth of it; the
    // policy must let spikes pass.
    let settings = Settings {
        min_replicas: 1,
        max_replicas: 4,
        drain_seconds: 10.0,
        assumed_rate_per_replica: 100.0,
        scale_down_window_secs: 5.0,
        max_scale_up_step: 4,
        max_scale_down_step: 4,
        ..Settings::default()
    };
    workers.scale(1).await.unwrap();
    let started = Instant::now();
    let mut memory = Memory::default();
    let mut all = Vec::new();
    let (mut seen_spike, mut counts) = (0u64, Vec::new());
    for tick in 0..TICKS {
        let n = if SPIKES_AT.contains(&tick) {
            2 * PER_TICK
        } else {
            PER_TICK
        };
        let (ids, envelopes) = posts(&db, cast.author, n).await;
        all.extend(ids);
        publish(&cast.probe, &envelopes).await;
        // Polled right after each tick's events go out, so the policy sees
        // every spike waiting.
        let Step {
            backlog, decision, ..
        } = step::decide_step(
            &settings,
            &mut memory,
            &Streams(&cast.probe),
            &workers,
            || started.elapsed().as_secs_f64(),
        )
        .await
        .unwrap()
        .expect("local workers always exist");
        if SPIKES_AT.contains(&tick)
            && let Some(b) = &backlog
        {
            seen_spike = seen_spike.max(b.lag.unwrap_or(0) + b.pending);
        }
        counts.push(decision.desired);
        step::apply(&workers, &decision).await.unwrap();
        tokio::time::sleep(TICK).await;
    }
    assert!(
        seen_spike > PER_TICK as u64,
        "the policy saw a spike waiting (largest backlog seen: {seen_spike})"
    );
    assert!(
        counts.iter().all(|&n| n == 1),
        "spikes one worker drains in time pass without scaling: {counts:?}"
    );
    // The load drains on the one worker.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut conn = cast.probe.conn().await.unwrap();
        let b = bus::backlog(&mut conn, bus::DEFAULT_MAX_DELIVERIES)
            .await
            .unwrap();
        if b.lag == Some(0) && b.pending == 0 && b.entries_read == Some(b.entries_added) {
            break;
        }
        assert!(Instant::now() < deadline, "the load did not drain: {b:?}");
        tokio::time::sleep(POLL).await;
    }
    workers.stop_all().await.unwrap();
    every_post_landed_once(&db, &cast, &all).await;
}
