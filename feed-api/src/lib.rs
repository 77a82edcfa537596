//! Fanout's REST API.
//!
//! # Layout
//!
//! - [`config`]: settings (flags and `FANOUT_*` variables).
//! - [`routes`]: one router per resource (`users`, `auth`, `posts`, `feed`,
//!   `ops`), assembled with their OpenAPI docs in [`openapi`].
//! - [`error`]: the problem+json error every handler returns.
//! - [`extract`]: extractors whose rejections are problems too.
//! - [`auth`]: passwords, tokens and the authenticated-caller extractor.
//! - [`ratelimit`]: write and login limits (429), the client's address.
//! - [`audit`]: the audit log of security-relevant actions.
//! - [`write_tx`]: a write and the outbox events it publishes once
//!   committed.
//! - [`group_commit`]: new posts written together under load.
//! - [`publish`]: the fast-path publisher, and the marks every publishing
//!   path writes to the outbox.
//! - [`relay`]: the slow path: what the fast path missed, and the checks
//!   of [`recover`]: events the streams lost before they were applied,
//!   published again.
//! - [`live`]: the replica's Pub/Sub hub for live feed streams.
//! - [`web`]: the web client at `/`.
//! - [`state`], [`metrics`]: what handlers share, and what they count.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
pub mod group_commit;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod publish;
pub mod ratelimit;
pub mod recover;
pub mod relay;
pub mod routes;
pub mod state;
pub mod web;
pub mod write_tx;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, header};
use axum::response::IntoResponse;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::info;

use crate::auth::TokenKeys;
use crate::config::Config;
use crate::error::ApiError;
use crate::group_commit::PostWriter;
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::state::AppState;

/// The HTTP application over a state.
pub fn app(state: AppState) -> Router {
    let (router, openapi) = openapi::api(state.config.debug_endpoints).split_for_parts();
    let openapi = Arc::new(openapi.to_json().expect("the OpenAPI document serializes"));
    let body_limit = state.config.body_limit_bytes;
    router
        .merge(web::router())
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = openapi.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], doc.as_ref().clone()) }
            }),
        )
        .fallback(|req: Request<axum::body::Body>| async move {
            ApiError::NotFound(format!("no route for {} {}", req.method(), req.uri().path()))
        })
        .method_not_allowed_fallback(|req: Request<axum::body::Body>| async move {
            ApiError::MethodNotAllowed(format!("{} is not allowed on {}", req.method(), req.uri().path()))
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ratelimit::limit,
        ))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), metrics::record))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal(anyhow::anyhow!("a handler panicked")).into_response()
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<axum::body::Body>| {
                    let request_id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id)
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Builds the state from settings and a pool, starts the publisher and the
/// outbox relay, and serves on `listener` until `shutdown`; in-flight
/// requests finish first.
pub async fn serve(
    config: Config,
    db: PgPool,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let redis = config.redis.connect(state::REDIS_TIMEOUT)?;
    let metrics = Arc::new(Metrics::new());
    let (publisher, queue) = Publisher::new();
    let tokens = TokenKeys::new(
        config.jwt_secret.as_bytes(),
        &config.jwt_issuer,
        &config.jwt_audience,
        Duration::from_secs(config.access_token_ttl_secs),
        Duration::from_secs(config.refresh_token_ttl_secs),
    );
    tokio::spawn(publish::ensure_groups(redis.clone(), shutdown.clone()));
    let relay = tokio::spawn(relay::relay(
        db.clone(),
        redis.clone(),
        metrics.clone(),
        publisher.unpublished(),
        relay::RelayTiming {
            interval: config.relay_interval(),
            grace: Duration::from_millis(config.relay_grace_ms),
            retention: Duration::from_secs(config.outbox_retention_secs),
        },
        shutdown.clone(),
    ));
    let publisher_task = tokio::spawn(publish::run_publisher(
        queue,
        redis.clone(),
        db.clone(),
        metrics.clone(),
    ));
    let audit_retention = Duration::from_secs(u64::from(config.audit_retention_days) * 86_400);
    let (posts, post_writer) = PostWriter::start(db.clone(), metrics.post_batch_size.clone());
    let state = AppState::new(db, redis, tokens, config, metrics, publisher, posts)?;
    // Open streams end with the server, or a graceful shutdown would wait
    // for clients that never hang up.
    state.live.stop_with(shutdown.clone());
    tokio::spawn(audit::prune(
        state.db.clone(),
        audit_retention,
        shutdown.clone(),
    ));
    tokio::spawn(forget_idle_limits(state.clone(), shutdown.clone()));

    info!(addr = %listener.local_addr()?, "feed-api listening");
    // The peer's address reaches the rate limits and the audit log.
    let service = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("serving HTTP")?;
    // The state (and with it the queues) is dropped: the post writer
    // finishes the statements in flight, the publisher what is queued.
    let _ = tokio::time::timeout(Duration::from_secs(5), post_writer).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), publisher_task).await;
    let _ = relay.await;
    Ok(())
}

/// How often rate-limit state of clients that went quiet is dropped.
const FORGET_IDLE_LIMITS_EVERY: Duration = Duration::from_secs(60);

async fn forget_idle_limits(state: AppState, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(FORGET_IDLE_LIMITS_EVERY) => state.limits.forget_idle(),
            _ = shutdown.cancelled() => return,
        }
    }
}
