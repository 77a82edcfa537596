//! A whole Fanout stack per test: the API on a loopback port, workers, a
//! fresh PostgreSQL database (from `#[sqlx::test]`) and a redis-server of
//! its own. Tests talk to it over HTTP, as clients do.
#![allow(dead_code, unused_imports)]

use std::time::Duration;

use clap::Parser;
use fanout_testkit::RedisServer;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use fanout_testkit::eventually;

/// How long eventual consistency may take in a test before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub const JWT_SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";

struct Task {
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Task {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.handle)
            .await
            .expect("stops promptly")
            .expect("did not panic")
            .expect("stopped cleanly");
    }
}

pub struct Stack {
    pub base: String,
    pub http: reqwest::Client,
    pub redis: RedisServer,
    pub db: PgPool,
    api: Option<Task>,
    workers: Vec<Task>,
}

/// A signed-up, logged-in user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub handle: String,
    pub token: String,
}

pub fn api_config(redis_url: &str) -> feed_api::config::Config {
    feed_api::config::Config::try_parse_from([
        "feed-api",
        "--database-url",
        "postgres://unused",
        "--redis-url",
        redis_url,
        "--jwt-secret",
        JWT_SECRET,
        "--http-addr",
        "127.0.0.1:0",
        "--relay-interval-ms",
        "100",
        "--relay-grace-ms",
        "300",
        // Tests make many writes from one address; the limits have tests
        // of their own, which turn them on.
        "--rate-limit-user-per-min",
        "0",
        "--rate-limit-address-per-min",
        "0",
        "--login-attempts-per-address-per-min",
        "0",
        "--login-attempts-per-handle",
        "0",
    ])
    .unwrap()
}

impl Stack {
    /// The API and one worker.
    pub async fn start(db: PgPool) -> Stack {
        let mut stack = Stack::api_only(db).await;
        stack.start_worker("worker-1");
        stack
    }

    /// The API alone: nothing fans out until a worker starts.
    pub async fn api_only(db: PgPool) -> Stack {
        Stack::api_only_with(db, |_| {}).await
    }

    /// The API and one worker, both taking authors with `threshold`
    /// followers or more for celebrities (a few, so tests can make one).
    pub async fn with_celebrity_threshold(db: PgPool, threshold: i64) -> Stack {
        let mut stack = Stack::api_only_with(db, |c| c.feed.celebrity_threshold = threshold).await;
        stack.start_worker_with("worker-1", |c| c.feed.celebrity_threshold = threshold);
        stack
    }

    /// The API alone, with settings changed by `adjust`.
    pub async fn api_only_with(
        db: PgPool,
        adjust: impl FnOnce(&mut feed_api::config::Config),
    ) -> Stack {
        let redis = RedisServer::start();
        let mut config = api_config(&redis.url());
        adjust(&mut config);
        config.validate().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(feed_api::serve(
            config,
            db.clone(),
            listener,
            shutdown.clone(),
        ));
        Stack {
            base,
            http: reqwest::Client::new(),
            redis,
            db,
            api: Some(Task { shutdown, handle }),
            workers: Vec::new(),
        }
    }

    pub fn start_worker(&mut self, name: &str) {
        self.start_worker_with(name, |_| {});
    }

    /// A worker with settings changed by `adjust`.
    pub fn start_worker_with(
        &mut self,
        name: &str,
        adjust: impl FnOnce(&mut feed_worker::config::Config),
    ) {
        let mut config = feed_worker::config::Config::try_parse_from([
            "feed-worker",
            "--database-url",
            "postgres://unused",
            "--redis-url",
            &self.redis.url(),
            "--consumer-name",
            name,
            "--http-addr",
            "127.0.0.1:0",
            "--block-ms",
            "200",
            "--claim-idle-ms",
            "1000",
            "--claim-interval-ms",
            "200",
        ])
        .unwrap();
        adjust(&mut config);
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(feed_worker::run(config, self.db.clone(), shutdown.clone()));
        self.workers.push(Task { shutdown, handle });
    }

    /// Stops the workers, leaving the API running: nothing fans out from
    /// now on.
    pub async fn stop_workers(&mut self) {
        for worker in self.workers.drain(..) {
            worker.stop().await;
        }
    }

    /// Stops everything, checking each part shuts down cleanly.
    pub async fn stop(mut self) {
        for worker in self.workers.drain(..) {
            worker.stop().await;
        }
        if let Some(api) = self.api.take() {
            api.stop().await;
        }
    }

    /// The API's `/metrics`, as text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn signup(&self, handle: &str) -> User {
        let created = self
            .http
            .post(self.url("/users"))
            .json(&json!({"handle": handle, "password": "correct horse battery"}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
        let user: Value = created.json().await.unwrap();
        let tokens: Value = self
            .http
            .post(self.url("/auth/login"))
            .json(&json!({"handle": handle, "password": "correct horse battery"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        User {
            id: user["id"].as_str().unwrap().parse().unwrap(),
            handle: handle.to_owned(),
            token: tokens["access_token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn post(&self, user: &User, content: &str) -> Uuid {
        let response = self
            .http
            .post(self.url("/posts"))
            .bearer_auth(&user.token)
            .json(&json!({ "content": content }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        let post: Value = response.json().await.unwrap();
        post["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn follow(&self, user: &User, other: &User) {
        self.call(
            user,
            reqwest::Method::POST,
            &format!("/users/{}/follow", other.id),
        )
        .await;
    }

    pub async fn unfollow(&self, user: &User, other: &User) {
        self.call(
            user,
            reqwest::Method::POST,
            &format!("/users/{}/unfollow", other.id),
        )
        .await;
    }

    /// An authenticated request that must succeed; returns its JSON body.
    pub async fn call(&self, user: &User, method: reqwest::Method, path: &str) -> Value {
        let response = self
            .http
            .request(method.clone(), self.url(path))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A page of the user's home feed.
    pub async fn feed(&self, user: &User, query: &str) -> Value {
        self.call(user, reqwest::Method::GET, &format!("/feed{query}"))
            .await
    }

    /// The post ids on the first page of the user's home feed.
    pub async fn feed_ids(&self, user: &User) -> Vec<Uuid> {
        ids(&self.feed(user, "?limit=100").await)
    }

    /// The post ids fan-out put in the user's feed in Redis, newest first.
    pub async fn cached_feed(&self, user: &User) -> Vec<Uuid> {
        let mut conn = fanout_testkit::connect::redis(&self.redis).await;
        feed_core::feed_store::members(&mut conn, user.id)
            .await
            .unwrap()
    }
}

/// The ids of a list's items.
pub fn ids(page: &Value) -> Vec<Uuid> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().parse().unwrap())
        .collect()
}
