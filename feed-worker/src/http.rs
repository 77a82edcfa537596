//! The worker's own small HTTP server: liveness, readiness and metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use feed_core::bus::Redis;
use sqlx::PgPool;

use crate::metrics::Metrics;

/// What the probes look at.
#[derive(Clone)]
pub struct Probes {
    pub db: PgPool,
    pub redis: Redis,
    /// The feeds' own Redis, when FANOUT_FEED_REDIS_URL names one.
    pub feed_redis: Option<Redis>,
    pub metrics: Arc<Metrics>,
    /// Set once the consumer group exists and the loop is reading.
    pub consuming: Arc<AtomicBool>,
}

/// `/healthz`, `/readyz` and `/metrics`.
pub fn router(probes: Probes) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(probes)
}

async fn ready(State(p): State<Probes>) -> (StatusCode, String) {
    if !p.consuming.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not consuming yet".into());
    }
    if let Err(e) = sqlx::query("SELECT 1").execute(&p.db).await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("postgres: {e}"));
    }
    let feed_redis = p.feed_redis.iter().map(|r| ("feed redis", r));
    for (name, redis) in std::iter::once(("redis", &p.redis)).chain(feed_redis) {
        let ping = async {
            let mut conn = redis.conn().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        if let Err(e) = ping.await {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("{name}: {e}"));
        }
    }
    (StatusCode::OK, "ready".into())
}

async fn metrics(State(p): State<Probes>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        p.metrics.render(),
    )
}
