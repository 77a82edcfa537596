//! The API's settings: flags, each with a `FANOUT_*` environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use feed_core::runtime::{FeedArgs, LogArgs, PostgresArgs, RedisArgs, redact_url};
use serde::Serialize;

/// Shortest accepted JWT signing secret: HS256 needs 256 bits of key.
const JWT_SECRET_MIN_BYTES: usize = 32;

/// Serves Fanout's REST API.
#[derive(Debug, Clone, Parser)]
#[command(name = "feed-api", version)]
pub struct Config {
    #[command(flatten)]
    pub postgres: PostgresArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub feed: FeedArgs,
    #[command(flatten)]
    pub log: LogArgs,

    /// Address to listen on.
    #[arg(long, env = "FANOUT_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Apply database migrations at start-up (on Kubernetes a Job does it).
    #[arg(long, env = "FANOUT_MIGRATE", default_value_t = false)]
    pub migrate: bool,
    /// Apply database migrations and exit (the operator's migration Job).
    #[arg(long)]
    pub migrate_only: bool,
    /// Secret that signs access tokens (HS256), at least 32 bytes. Keep it in
    /// a Secret; every API replica needs the same one.
    #[arg(
        long,
        env = "FANOUT_JWT_SECRET",
        hide_env_values = true,
        default_value = ""
    )]
    pub jwt_secret: String,
    /// `iss` of the access tokens, checked on every request.
    #[arg(long, env = "FANOUT_JWT_ISSUER", default_value = "fanout")]
    pub jwt_issuer: String,
    /// `aud` of the access tokens, checked on every request.
    #[arg(long, env = "FANOUT_JWT_AUDIENCE", default_value = "fanout-api")]
    pub jwt_audience: String,
    /// Lifetime of an access token, in seconds.
    #[arg(long, env = "FANOUT_ACCESS_TOKEN_TTL_SECS", default_value_t = 900)]
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh token, in seconds.
    #[arg(long, env = "FANOUT_REFRESH_TOKEN_TTL_SECS", default_value_t = 30 * 24 * 3600)]
    pub refresh_token_ttl_secs: u64,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "FANOUT_BODY_LIMIT_BYTES", default_value_t = 16 * 1024)]
    pub body_limit_bytes: usize,
    /// How often the outbox relay looks for unpublished events, in ms.
    #[arg(long, env = "FANOUT_RELAY_INTERVAL_MS", default_value_t = 1_000)]
    pub relay_interval_ms: u64,
    /// The relay leaves events younger than this to the request that wrote
    /// them (the fast path), in ms.
    #[arg(long, env = "FANOUT_RELAY_GRACE_MS", default_value_t = 2_000)]
    pub relay_grace_ms: u64,
    /// Published events stay in the outbox (the event log) this long, in
    /// seconds.
    #[arg(long, env = "FANOUT_OUTBOX_RETENTION_SECS", default_value_t = 7 * 24 * 3600)]
    pub outbox_retention_secs: u64,
    /// Serve /debug/health, /debug/metrics-summary and /debug/config.
    #[arg(long, env = "FANOUT_DEBUG_ENDPOINTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub debug_endpoints: bool,
}

impl Config {
    /// Rejects settings that cannot work, saying what to change.
    pub fn validate(&self) -> Result<(), String> {
        self.postgres.validate()?;
        self.redis.validate()?;
        self.feed.validate()?;
        if self.migrate_only {
            return Ok(());
        }
        if self.jwt_secret.len() < JWT_SECRET_MIN_BYTES {
            return Err(format!(
                "FANOUT_JWT_SECRET must be at least {JWT_SECRET_MIN_BYTES} bytes (e.g. `openssl rand -hex 32`)"
            ));
        }
        if self.access_token_ttl_secs == 0 || self.refresh_token_ttl_secs == 0 {
            return Err("token lifetimes must be at least 1 second".into());
        }
        if self.body_limit_bytes < 1024 {
            return Err("FANOUT_BODY_LIMIT_BYTES must be at least 1024".into());
        }
        if self.relay_interval_ms == 0 {
            return Err("FANOUT_RELAY_INTERVAL_MS must be at least 1".into());
        }
        Ok(())
    }

    pub fn relay_interval(&self) -> Duration {
        Duration::from_millis(self.relay_interval_ms)
    }

    /// The settings as `/debug/config` shows them: secrets redacted.
    pub fn redacted(&self) -> RedactedConfig {
        RedactedConfig {
            http_addr: self.http_addr.to_string(),
            database_url: redact_url(&self.postgres.database_url),
            db_max_connections: self.postgres.db_max_connections,
            db_acquire_timeout_ms: self.postgres.db_acquire_timeout_ms,
            redis_url: redact_url(&self.redis.redis_url),
            feed_max_len: self.feed.feed_max_len,
            feed_ttl_secs: self.feed.feed_ttl_secs,
            celebrity_threshold: self.feed.celebrity_threshold,
            jwt_secret: "***",
            jwt_issuer: self.jwt_issuer.clone(),
            jwt_audience: self.jwt_audience.clone(),
            access_token_ttl_secs: self.access_token_ttl_secs,
            refresh_token_ttl_secs: self.refresh_token_ttl_secs,
            body_limit_bytes: self.body_limit_bytes,
            relay_interval_ms: self.relay_interval_ms,
            relay_grace_ms: self.relay_grace_ms,
            outbox_retention_secs: self.outbox_retention_secs,
        }
    }
}

/// The API's settings with secrets replaced by `***`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RedactedConfig {
    pub http_addr: String,
    pub database_url: String,
    pub db_max_connections: u32,
    pub db_acquire_timeout_ms: u64,
    pub redis_url: String,
    pub feed_max_len: usize,
    pub feed_ttl_secs: u64,
    pub celebrity_threshold: i64,
    pub jwt_secret: &'static str,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub body_limit_bytes: usize,
    pub relay_interval_ms: u64,
    pub relay_grace_ms: u64,
    pub outbox_retention_secs: u64,
}
