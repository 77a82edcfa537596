//! Operating the API: probes, metrics, and the `/debug` views.

use std::time::Instant;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use feed_core::bus::Redis;
use feed_core::db;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::bearer_token;
use crate::config::RedactedConfig;
use crate::error::{ApiError, Problem};
use crate::state::AppState;

/// Probes and metrics: always served.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// Admission to `/debug/*`: anyone, unless `FANOUT_DEBUG_TOKEN` is set;
/// then only requests that bear it.
pub struct DebugAccess;

impl FromRequestParts<AppState> for DebugAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let expected = state.config.debug_token.as_bytes();
        if expected.is_empty() {
            return Ok(DebugAccess);
        }
        let given = bearer_token(&parts.headers).unwrap_or("");
        // Compared as digests: the time taken says nothing about how much
        // of a guess was right.
        if Sha256::digest(given.as_bytes()) == Sha256::digest(expected) {
            Ok(DebugAccess)
        } else {
            Err(ApiError::Unauthorized(
                "/debug needs 'Authorization: Bearer <FANOUT_DEBUG_TOKEN>'".into(),
            ))
        }
    }
}

/// The `/debug` views: served unless `FANOUT_DEBUG_ENDPOINTS=false`.
pub fn debug_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(debug_health))
        .routes(routes!(metrics_summary))
        .routes(routes!(debug_config))
}

/// Liveness: the process is serving.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// One dependency's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct DependencyHealth {
    /// `up` or `down`.
    pub status: &'static str,
    /// Round-trip time of the check, in milliseconds.
    pub latency_ms: f64,
    /// Why it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every dependency's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when every dependency is up, else `degraded`.
    pub status: &'static str,
    pub postgres: DependencyHealth,
    pub redis: DependencyHealth,
    /// The feeds' own Redis, when FANOUT_FEED_REDIS_URL names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed_redis: Option<DependencyHealth>,
}

async fn check<F, E>(probe: F) -> DependencyHealth
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let result = tokio::time::timeout(std::time::Duration::from_secs(2), probe).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let error = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("timed out after 2 s".to_owned()),
    };
    DependencyHealth {
        status: if error.is_none() { "up" } else { "down" },
        latency_ms,
        error,
    }
}

async fn health(state: &AppState) -> Health {
    let postgres = check(async { sqlx::query("SELECT 1").execute(&state.db).await.map(drop) });
    let ping = |redis: &Redis| {
        let redis = redis.clone();
        check(async move {
            let mut conn = redis.conn().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map(drop)
        })
    };
    let feeds_apart = state.config.redis.feed_redis_url.is_some();
    let feed_redis = async {
        if feeds_apart {
            Some(ping(&state.feeds).await)
        } else {
            None
        }
    };
    let (postgres, redis, feed_redis) = tokio::join!(postgres, ping(&state.redis), feed_redis);
    let all_up = postgres.error.is_none()
        && redis.error.is_none()
        && feed_redis.as_ref().is_none_or(|f| f.error.is_none());
    Health {
        status: if all_up { "ok" } else { "degraded" },
        postgres,
        redis,
        feed_redis,
    }
}

/// Readiness: PostgreSQL and the streams' Redis answer. The feeds' own
/// Redis is reported but not required: without it, reads are served from
/// PostgreSQL, and taking every API pod out of service would serve none.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = Health), (status = 503, description = "A dependency is down", body = Health)))]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let health = health(&state).await;
    let status = if health.postgres.error.is_none() && health.redis.error.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(health))
}

/// Per-dependency status and latency (always 200; see `status`).
#[utoipa::path(get, path = "/debug/health", tag = "ops", responses((status = 200, body = Health)))]
async fn debug_health(_: DebugAccess, State(state): State<AppState>) -> axum::Json<Health> {
    axum::Json(health(&state).await)
}

/// Prometheus metrics in the text format.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, body = String)))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// One stream and the workers' group on it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamSummary {
    pub stream: String,
    /// Entries in the stream (acknowledged ones until trimmed).
    pub length: u64,
    /// Entries not yet delivered to any worker; null when Redis cannot tell.
    pub lag: Option<u64>,
    /// Entries delivered but not acknowledged.
    pub pending: u64,
    /// Workers in the group.
    pub consumers: u64,
    /// Entries ever added.
    pub entries_added: u64,
}

/// A dead letter, abbreviated.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterSummary {
    pub stream: String,
    pub entry_id: String,
    pub event_type: Option<String>,
    pub error: String,
    pub attempts: i32,
    pub last_failed_at: DateTime<Utc>,
}

/// The event pipeline at a glance.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricsSummary {
    pub streams: Vec<StreamSummary>,
    /// Events committed but not yet on a stream.
    pub outbox_unpublished: i64,
    pub oldest_unpublished_at: Option<DateTime<Utc>>,
    /// Events on a stream but not yet known to be applied by the workers
    /// (published again if the streams lose them first).
    pub outbox_unapplied: i64,
    pub dead_letters: i64,
    /// The ten most recent dead letters.
    pub recent_dead_letters: Vec<DeadLetterSummary>,
}

/// Per-stream length, lag and pending entries; the outbox and dead letters.
#[utoipa::path(get, path = "/debug/metrics-summary", tag = "ops",
    responses((status = 200, body = MetricsSummary), (status = 503, body = Problem)))]
async fn metrics_summary(
    _: DebugAccess,
    State(state): State<AppState>,
) -> Result<axum::Json<MetricsSummary>, ApiError> {
    let stats = state.stream_stats().await.map_err(|e| {
        tracing::warn!(error = %e, "reading stream statistics failed");
        ApiError::Unavailable("Redis")
    })?;
    let streams = stats
        .iter()
        .map(|s| StreamSummary {
            stream: s.stream.clone(),
            length: s.length,
            lag: s.lag,
            pending: s.pending,
            consumers: s.consumers,
            entries_added: s.entries_added,
        })
        .collect();
    let (outbox_unpublished, oldest_unpublished_at) = db::outbox::backlog(&state.db).await?;
    let outbox_unapplied = db::outbox::unapplied(&state.db).await?;
    let dead_letters = db::dead_letters::count(&state.db).await?;
    let recent_dead_letters = db::dead_letters::recent(&state.db, 10)
        .await?
        .into_iter()
        .map(|r| DeadLetterSummary {
            stream: r.letter.stream,
            entry_id: r.letter.entry_id,
            event_type: r.letter.event_type,
            error: r.letter.error,
            attempts: r.letter.attempts,
            last_failed_at: r.last_failed_at,
        })
        .collect();
    Ok(axum::Json(MetricsSummary {
        streams,
        outbox_unpublished,
        oldest_unpublished_at,
        outbox_unapplied,
        dead_letters,
        recent_dead_letters,
    }))
}

/// The running configuration, secrets redacted.
#[utoipa::path(get, path = "/debug/config", tag = "ops", responses((status = 200, body = RedactedConfig)))]
async fn debug_config(_: DebugAccess, State(state): State<AppState>) -> axum::Json<RedactedConfig> {
    axum::Json(state.config.redacted())
}
