//! `GET /feed/stream`: every source of the home feed streams live, a
//! stream resumes by cursor with no gap and no duplicate, tickets open one
//! stream each, and the limits hold. Real sockets, PostgreSQL and Redis.

mod common;

use std::time::{Duration, Instant};

use common::{DEADLINE, Stack, User};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// One Server-Sent Event.
#[derive(Debug, Clone, Default)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: String,
    retry: Option<u64>,
}

impl SseEvent {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }

    fn post_id(&self) -> Uuid {
        self.json()["id"].as_str().unwrap().parse().unwrap()
    }
}

/// A client reading a stream over its own socket.
struct Client {
    response: reqwest::Response,
    buffer: String,
}

impl Client {
    /// The next event (comments skipped), failing the test after
    /// [`DEADLINE`].
    async fn next(&mut self) -> SseEvent {
        self.next_within(DEADLINE)
            .await
            .expect("an event before the deadline")
    }

    /// The next event within `wait`, or `None` if none came (or the stream
    /// ended).
    async fn next_within(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent::default();
                let mut is_comment = true;
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "" => continue,
                        "event" => event.event = value.to_owned(),
                        "id" => event.id = Some(value.to_owned()),
                        "data" => event.data.push_str(value),
                        "retry" => event.retry = value.parse().ok(),
                        _ => {}
                    }
                    is_comment = false;
                }
                if is_comment {
                    continue;
                }
                return Some(event);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }

    /// Events up to and including the next of `kind`.
    async fn until(&mut self, kind: &str) -> Vec<SseEvent> {
        let mut seen = Vec::new();
        loop {
            let event = self.next().await;
            let done = event.event == kind;
            seen.push(event);
            if done {
                return seen;
            }
        }
    }

    /// Fails with `why` if a `post` event arrives within half a second:
    /// long enough for a duplicate or a stray post to have been sent.
    async fn expect_no_post(&mut self, why: &str) {
        let posts = self.posts_within(Duration::from_millis(500)).await;
        assert!(posts.is_empty(), "{why}: {:?}", post_ids(&posts));
    }

    /// Every `post` event that arrives within `wait` (other events
    /// skipped).
    async fn posts_within(&mut self, wait: Duration) -> Vec<SseEvent> {
        let deadline = Instant::now() + wait;
        let mut posts = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next_within(left).await {
                Some(event) if event.event == "post" => posts.push(event),
                Some(_) => {}
                None => break,
            }
        }
        posts
    }

    /// The next `post` event.
    async fn next_post(&mut self) -> SseEvent {
        loop {
            let event = self.next().await;
            if event.event == "post" {
                return event;
            }
        }
    }
}

/// Opens `user`'s stream with their access token, resuming after `cursor`.
async fn open(stack: &Stack, user: &User, cursor: Option<&str>) -> reqwest::Response {
    let mut request = stack
        .http
        .get(stack.url("/feed/stream"))
        .bearer_auth(&user.token);
    if let Some(cursor) = cursor {
        request = request.header("Last-Event-ID", cursor);
    }
    request.send().await.unwrap()
}

/// A stream that answered 200 and has sent `ready`.
async fn stream(stack: &Stack, user: &User, cursor: Option<&str>) -> (Client, Vec<SseEvent>) {
    let response = open(stack, user, cursor).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    assert_eq!(
        response.headers()["x-accel-buffering"],
        "no",
        "proxies are told not to hold events back"
    );
    let mut client = Client {
        response,
        buffer: String::new(),
    };
    let before_ready = client.until("ready").await;
    (client, before_ready)
}

fn post_ids(events: &[SseEvent]) -> Vec<Uuid> {
    events
        .iter()
        .filter(|e| e.event == "post")
        .map(SseEvent::post_id)
        .collect()
}

#[sqlx::test(migrations = "../feed-core/migrations")]
async fn fanned_out_and_own_posts_stream_as_they_are_applied(db: PgPool) {
    let stack = Stack::start(db).await;
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    stack.follow(&bob, &alice).await;
    let (mut live, _) = stream(&stack, &bob, None).await;

    let posted = stack.post(&alice, "hello from alice").await;
    let event = live.next_post().await;
    assert_eq!(event.post_id(), posted);
    let post = event.json();
    assert_eq!(post["author_handle"], "alice");
    assert_eq!(post["content"], "hello from alice");
    assert_eq!(post["like_count"], 0);
    assert!(event.id.is_some(), "a post carries its cursor");

    let own = stack.post(&bob, "bob's own").await;
    assert_eq!(live.next_post().await.post_id(), own);
    // Each once: the API and the worker both add the author's own post.
    live.expect_no_post("no post is sent twice").await;
    stack.stop().await;
}

#[sqlx::test(migrations = "../feed-core/migrations")]
async fn a_followed_celebritys_posts_stream_though_they_are_not_fanned_out(db: PgPool) {
    // With a threshold of 2 followers, `star` is a celebrity.
    const THRESHOLD: i64 = 2;
    let stack = Stack::with_celebrity_threshold(db, THRESHOLD).await;
    let star = stack.signup("star").await;
    let bob = stack.signup("bob").await;
    let carol = stack.signup("carol").await;
    stack.follow(&bob, &star).await;
    stack.follow(&carol, &star).await;
    let (mut bobs, _) = stream(&stack, &bob, None).await;
    let (mut carols, _) = stream(&stack, &carol, None).await;

    let posted = stack.post(&star, "to the crowd").await;
    assert_eq!(bobs.next_post().await.post_id(), posted);
    assert_eq!(carols.next_post().await.post_id(), posted);
    assert!(
        !stack.cached_feed(&bob).await.contains(&posted),
        "a celebrity's posts are not fanned out"
    );

    // An unfollow removes the author at once, and their later posts no
    // longer reach the stream.
    stack.unfollow(&bob, &star).await;
    let removed = bobs.until("removed").await.pop().unwrap().json();
    assert_eq!(removed["author_id"], star.id.to_string());
    let later = stack.post(&star, "after bob left").await;
    assert_eq!(carols.next_post().await.post_id(), later);
    bobs.expect_no_post("an unfollowed celebrity's post reached the stream")
        .await;
    stack.stop().await;
}

#[sqlx::test(migrations = "../feed-core/migrations")]
async fn a_stream_resumes_after_its_cursor_with_no_gap_and_no_duplicate(db: PgPool) {
    // A queue of two events: the replay waits for the client rather than
    // dropping it.
    let mut stack = Stack::api_only_with(db, |c| c.stream.stream_buffer_events = 2).await;
    stack.start_worker("worker-1");
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    stack.follow(&bob, &alice).await;
    let (mut live, _) = stream(&stack, &bob, None).await;
    let first = stack.post(&alice, "one").await;
    let second = stack.post(&alice, "two").await;
    let heard = [live.next_post().await, live.next_post().await];
    let mut ids = post_ids(&heard);
    ids.sort();
    assert_eq!(ids, vec![first, second]);
    // The newest position sent so far, as `EventSource` keeps it.
    let last_id = heard[1].id.clone().unwrap();
    drop(live);

    // Missed while disconnected: posted, and fanned out, before the resume.
    let mut missed = Vec::new();
    for n in 0..5 {
        missed.push(stack.post(&alice, &format!("missed {n}")).await);
    }
    common::eventually(DEADLINE, "fanned out", || async {
        let feed = stack.cached_feed(&bob).await;
        missed.iter().all(|id| feed.contains(id)).then_some(())
    })
    .await;

    let (mut resumed, replayed) = stream(&stack, &bob, Some(&last_id)).await;
    assert_eq!(
        post_ids(&replayed),
        missed,
        "what was missed, oldest first, and nothing already seen"
    );
    let fifth = stack.post(&alice, "five").await;
    assert_eq!(resumed.next_post().await.post_id(), fifth);
    resumed
        .expect_no_post("no post is sent twice across the seam")
        .await;

    // `?cursor=` resumes too; a bad cursor is a 400.
    let by_query = stack
        .http
        .get(stack.url(&format!("/feed/stream?cursor={last_id}")))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), 200);
    let bad = open(&stack, &bob, Some("not-a-cursor")).await;
    assert_eq!(bad.status(), 400);
    stack.stop().await;
}

#[sqlx::test(migrations = "../feed-core/migrations")]
async fn a_deleted_post_is_removed_from_open_streams(db: PgPool) {
    let stack = Stack::start(db).await;
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    stack.follow(&bob, &alice).await;
    let (mut live, _) = stream(&stack, &bob, None).await;
    let posted = stack.post(&alice, "regrettable").await;
    assert_eq!(live.next_post().await.post_id(), posted);
    stack
        .call(&alice, reqwest::Method::DELETE, &format!("/posts/{posted}"))
        .await;
    let removed = live.until("removed").await.pop().unwrap().json();
    assert_eq!(removed["post_id"], posted.to_string());
    stack.stop().await;
}

#[sqlx::test(migrations = "../feed-core/migrations")]
async fn a_ticket_opens_one_stream_and_only_for_its_user(db: PgPool) {
    let stack = Stack::start(db).await;
    let bob = stack.signup("bob").await;
    let ticket = stack
        .call(&bob, reqwest::Method::POST, "/feed/stream/tickets")
        .await;
    let ticket = ticket["ticket"].as_str().unwrap().to_owned();
    let url = stack.url(&format!("/feed/stream?ticket={ticket}"));
    let opened = stack.http.get(&url).send().await.unwrap();
    assert_eq!(opened.status(), 200);
    let mut client = Client {
        response: opened,
        buffer: String::new(),
    };
    client.until("ready").await;
    let own = stack.post(&bob, "mine").await;
    assert_eq!(client.next_post().await.post_id(), own);

    let again = stack.http.get(&url).send().await.unwrap();
    assert_eq!(again.status(), 401, "a ticket is used once");
    for refused in [
        stack.url("/feed/stream"),
        stack.url("/feed/stream?ticket=forged"),
        stack.url(&format!("/feed/stream?ticket={}", "x".repeat(500))),
    ] {
        let response = stack.http.get(&refused).send().await.unwrap();
        assert_eq!(response.status(), 401, "{refused}");
    }
    let anonymous = stack
        .http
        .post(stack.url("/feed/stream/tickets"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    stack.stop().await;
}

#[sqlx::test(migrations = "../feed-core/migrations")]
async fn streams_per_user_are_limited_and_idle_streams_end_with_a_retry_hint(db: PgPool) {
    let mut stack = Stack::api_only_with(db, |c| {
        c.stream.stream_max_per_user = 1;
        c.stream.stream_heartbeat_secs = 1;
        c.stream.stream_idle_timeout_secs = 2;
    })
    .await;
    stack.start_worker("worker-1");
    let bob = stack.signup("bob").await;
    let (mut live, _) = stream(&stack, &bob, None).await;
    let second = open(&stack, &bob, None).await;
    assert_eq!(second.status(), 429, "a second stream of one user");
    assert!(second.headers().contains_key("retry-after"));

    let started = Instant::now();
    let bye = live.until("bye").await.pop().unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(bye.json()["reason"], "idle");
    assert_eq!(
        bye.retry,
        Some(1000),
        "the client is told when to come back"
    );
    assert!(
        live.next_within(DEADLINE).await.is_none(),
        "the stream ended"
    );
    // Its slot is free again.
    common::eventually(DEADLINE, "the slot freed", || async {
        (open(&stack, &bob, None).await.status() == 200).then_some(())
    })
    .await;
    let metrics = stack.metrics().await;
    assert!(
        metrics.contains("fanout_stream_drops_total{reason=\"idle\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fanout_stream_drops_total{reason=\"refused\"}"),
        "{metrics}"
    );
    // A client that hangs up frees its slot.
    common::eventually(DEADLINE, "no stream left open", || async {
        stack
            .metrics()
            .await
            .contains("fanout_streams_open 0")
            .then_some(())
    })
    .await;
    stack.stop().await;
}

#[sqlx::test(migrations = "../feed-core/migrations")]
async fn heartbeats_flow_while_nothing_happens(db: PgPool) {
    let stack = Stack::api_only_with(db, |c| c.stream.stream_heartbeat_secs = 1).await;
    let bob = stack.signup("bob").await;
    let (mut live, _) = stream(&stack, &bob, None).await;
    let deadline = Instant::now() + DEADLINE;
    while !live.buffer.contains(':') {
        assert!(Instant::now() < deadline, "no heartbeat");
        let chunk = live.response.chunk().await.unwrap().unwrap();
        live.buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(live.buffer.starts_with(':'), "{:?}", live.buffer);
    stack.stop().await;
}

#[sqlx::test(migrations = "../feed-core/migrations")]
async fn a_follow_made_while_streaming_brings_the_followees_posts_in(db: PgPool) {
    // `star` has two followers already: a celebrity at this threshold.
    const THRESHOLD: i64 = 2;
    let stack = Stack::with_celebrity_threshold(db, THRESHOLD).await;
    let alice = stack.signup("alice").await;
    let star = stack.signup("star").await;
    let bob = stack.signup("bob").await;
    for handle in ["fan1", "fan2"] {
        let fan = stack.signup(handle).await;
        stack.follow(&fan, &star).await;
    }
    let earlier = stack.post(&alice, "before bob followed").await;
    let (mut live, _) = stream(&stack, &bob, None).await;

    // A fanned-out author: the follow's backfill reaches the stream.
    stack.follow(&bob, &alice).await;
    assert_eq!(live.next_post().await.post_id(), earlier);

    // A celebrity: their recent posts arrive as a backfill would bring
    // them, and the stream listens to their timeline from then on.
    let before = stack.post(&star, "before bob followed").await;
    stack.follow(&bob, &star).await;
    assert_eq!(live.next_post().await.post_id(), before);
    let posted = stack.post(&star, "hello new fan").await;
    assert_eq!(live.next_post().await.post_id(), posted);
    assert!(!stack.cached_feed(&bob).await.contains(&posted));
    stack.stop().await;
}

#[sqlx::test(migrations = "../feed-core/migrations")]
async fn a_lost_pub_sub_connection_ends_streams_and_clients_resume_by_cursor(db: PgPool) {
    let mut stack = Stack::start(db).await;
    let alice = stack.signup("alice").await;
    let bob = stack.signup("bob").await;
    stack.follow(&bob, &alice).await;
    let (mut live, _) = stream(&stack, &bob, None).await;
    let first = stack.post(&alice, "before the restart").await;
    let heard = live.next_post().await;
    assert_eq!(heard.post_id(), first);
    let cursor = heard.id.unwrap();

    // Notes published while the hub reconnects would be lost: the stream
    // ends, telling the client when to come back.
    stack.redis.restart();
    let bye = live.until("bye").await.pop().unwrap();
    assert_eq!(bye.json()["reason"], "lost");
    assert_eq!(bye.retry, Some(1000));

    let second = stack.post(&alice, "after the restart").await;
    let (mut resumed, replayed) = common::eventually(DEADLINE, "the stream reopens", || async {
        let response = open(&stack, &bob, Some(&cursor)).await;
        if response.status() != 200 {
            return None;
        }
        let mut client = Client {
            response,
            buffer: String::new(),
        };
        let before_ready = client.until("ready").await;
        Some((client, before_ready))
    })
    .await
    .0;
    let mut got = post_ids(&replayed);
    if !got.contains(&second) {
        got.push(resumed.next_post().await.post_id());
    }
    assert_eq!(got, vec![second], "the post made meanwhile, and only it");
    stack.stop().await;
}

#[sqlx::test(migrations = "../feed-core/migrations")]
async fn a_client_that_stops_reading_is_dropped_with_a_retry_hint(db: PgPool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut stack = Stack::api_only_with(db, |c| {
        c.stream.stream_buffer_events = 1;
        c.stream.stream_slow_client_secs = 1;
    })
    .await;
    stack.start_worker("worker-1");
    let bob = stack.signup("bob").await;
    // A socket that takes little and is not read: the server's buffers
    // fill after a few dozen events.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr = stack.base.trim_start_matches("http://").parse().unwrap();
    let mut stalled = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET /feed/stream HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\r\n",
        bob.token
    );
    stalled.write_all(request.as_bytes()).await.unwrap();

    // Bob's own posts reach his stream; he never reads it. Filling the
    // server's socket buffers takes a few hundred 500-character posts.
    let long = "x".repeat(500);
    let deadline = Instant::now() + 3 * DEADLINE;
    loop {
        if stack
            .metrics()
            .await
            .contains("fanout_stream_drops_total{reason=\"slow\"} 1")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled stream was never dropped"
        );
        futures_util::future::join_all((0..20).map(|_| stack.post(&bob, &long))).await;
    }
    common::eventually(DEADLINE, "its slot freed", || async {
        stack
            .metrics()
            .await
            .contains("fanout_streams_open 0")
            .then_some(())
    })
    .await;
    // What was queued, then the goodbye with its retry hint.
    let mut received = Vec::new();
    let mut chunk = [0u8; 65536];
    while !String::from_utf8_lossy(&received).contains("event: bye") {
        let n = tokio::time::timeout(DEADLINE, stalled.read(&mut chunk))
            .await
            .expect("the goodbye arrives")
            .unwrap();
        assert!(n > 0, "the connection closed before the goodbye");
        received.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&received);
    let bye = &text[text.find("event: bye").unwrap()..];
    assert!(bye.contains("\"reason\":\"slow\""), "{bye}");
    assert!(bye.contains("retry: 1000"), "{bye}");
    stack.stop().await;
}
