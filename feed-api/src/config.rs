//! The API's settings: flags, each with a `FANOUT_*` environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use feed_core::runtime::{FeedArgs, LogArgs, PostgresArgs, RedisArgs, redact_url};
use serde::Serialize;

/// Shortest accepted JWT signing secret: HS256 needs 256 bits of key.
const JWT_SECRET_MIN_BYTES: usize = 32;

/// Serves Fanout's REST API.
#[derive(Clone, Parser)]
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
    /// When set, /debug/* answers only requests with
    /// `Authorization: Bearer <this token>`.
    #[arg(
        long,
        env = "FANOUT_DEBUG_TOKEN",
        hide_env_values = true,
        default_value = ""
    )]
    pub debug_token: String,
    /// Writes (POST, DELETE) one user may make per minute, per API replica;
    /// 0 turns the limit off.
    #[arg(long, env = "FANOUT_RATE_LIMIT_USER_PER_MIN", default_value_t = 300)]
    pub rate_limit_user_per_min: u32,
    /// Writes (sign-up and login included) one client address may make per
    /// minute, per API replica; 0 turns the limit off. Behind a proxy, set
    /// FANOUT_TRUSTED_PROXY_HOPS, or every client shares the proxy's address.
    #[arg(long, env = "FANOUT_RATE_LIMIT_ADDRESS_PER_MIN", default_value_t = 600)]
    pub rate_limit_address_per_min: u32,
    /// Login attempts one client address may make per minute; 0: no limit.
    #[arg(
        long,
        env = "FANOUT_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MIN",
        default_value_t = 30
    )]
    pub login_attempts_per_address_per_min: u32,
    /// Login attempts per handle per 15 minutes, from anywhere (slows
    /// password guessing spread over many addresses); 0: no limit.
    #[arg(long, env = "FANOUT_LOGIN_ATTEMPTS_PER_HANDLE", default_value_t = 10)]
    pub login_attempts_per_handle: u32,
    /// Proxies in front of the API that append the client's address to
    /// X-Forwarded-For (e.g. 1 behind an ingress controller). 0 trusts no
    /// header: the client is the TCP peer.
    #[arg(long, env = "FANOUT_TRUSTED_PROXY_HOPS", default_value_t = 0)]
    pub trusted_proxy_hops: usize,
    /// Audit log entries are kept this many days.
    #[arg(long, env = "FANOUT_AUDIT_RETENTION_DAYS", default_value_t = 90)]
    pub audit_retention_days: u32,
    #[command(flatten)]
    pub stream: StreamArgs,
}

/// Live feed streams (`GET /feed/stream`).
#[derive(Debug, Clone, clap::Args)]
pub struct StreamArgs {
    /// Streams one user may hold open on one API replica (a few tabs and
    /// devices); more answer 429.
    #[arg(long, env = "FANOUT_STREAM_MAX_PER_USER", default_value_t = 5)]
    pub stream_max_per_user: usize,
    /// Streams one API replica holds open; more answer 503, and the
    /// client retries (on another replica behind a load balancer). An idle
    /// stream costs a few kilobytes and a socket: see `make bench`.
    #[arg(long, env = "FANOUT_STREAM_MAX_PER_REPLICA", default_value_t = 20_000)]
    pub stream_max_per_replica: usize,
    /// A stream that pushed nothing for this long is closed with a retry
    /// hint, in seconds: the client reconnects and resumes, and a client
    /// gone without a FIN cannot hold a slot for ever.
    #[arg(long, env = "FANOUT_STREAM_IDLE_TIMEOUT_SECS", default_value_t = 1_800)]
    pub stream_idle_timeout_secs: u64,
    /// A heartbeat comment is sent after this many seconds of silence, in
    /// seconds: proxies close connections idle for 60 s by default (nginx,
    /// AWS ALB).
    #[arg(long, env = "FANOUT_STREAM_HEARTBEAT_SECS", default_value_t = 15)]
    pub stream_heartbeat_secs: u64,
    /// Events queued for a client that is not reading (beside what the
    /// socket holds); see FANOUT_STREAM_SLOW_CLIENT_SECS.
    #[arg(long, env = "FANOUT_STREAM_BUFFER_EVENTS", default_value_t = 64)]
    pub stream_buffer_events: usize,
    /// A stream whose queue stays full this long is dropped with a retry
    /// hint rather than buffered without bound (the client resumes by
    /// cursor), in seconds: a reader on a slow link catches up in well
    /// under 10 s, a stalled one does not.
    #[arg(long, env = "FANOUT_STREAM_SLOW_CLIENT_SECS", default_value_t = 10)]
    pub stream_slow_client_secs: u64,
    /// How long a stream ticket (`POST /feed/stream/tickets`) may wait to
    /// be used, in seconds.
    #[arg(long, env = "FANOUT_STREAM_TICKET_TTL_SECS", default_value_t = 30)]
    pub stream_ticket_ttl_secs: u64,
}

impl StreamArgs {
    /// Rejects settings that cannot work.
    pub fn validate(&self) -> Result<(), String> {
        if self.stream_max_per_user == 0 || self.stream_max_per_replica == 0 {
            return Err(
                "FANOUT_STREAM_MAX_PER_USER and FANOUT_STREAM_MAX_PER_REPLICA must be at least 1"
                    .into(),
            );
        }
        if self.stream_heartbeat_secs == 0 {
            return Err("FANOUT_STREAM_HEARTBEAT_SECS must be at least 1".into());
        }
        if self.stream_idle_timeout_secs <= self.stream_heartbeat_secs {
            return Err(
                "FANOUT_STREAM_IDLE_TIMEOUT_SECS must exceed FANOUT_STREAM_HEARTBEAT_SECS".into(),
            );
        }
        if self.stream_buffer_events == 0 || self.stream_slow_client_secs == 0 {
            return Err(
                "FANOUT_STREAM_BUFFER_EVENTS and FANOUT_STREAM_SLOW_CLIENT_SECS must be at least 1"
                    .into(),
            );
        }
        if !(1..=600).contains(&self.stream_ticket_ttl_secs) {
            return Err("FANOUT_STREAM_TICKET_TTL_SECS must be 1 to 600".into());
        }
        Ok(())
    }
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
        if self.audit_retention_days == 0 {
            return Err("FANOUT_AUDIT_RETENTION_DAYS must be at least 1".into());
        }
        if self.relay_interval_ms == 0 {
            return Err("FANOUT_RELAY_INTERVAL_MS must be at least 1".into());
        }
        self.stream.validate()
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
            feed_redis_url: self.redis.feed_redis_url.as_deref().map(redact_url),
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
            debug_token: if self.debug_token.is_empty() {
                ""
            } else {
                "***"
            },
            rate_limit_user_per_min: self.rate_limit_user_per_min,
            rate_limit_address_per_min: self.rate_limit_address_per_min,
            login_attempts_per_address_per_min: self.login_attempts_per_address_per_min,
            login_attempts_per_handle: self.login_attempts_per_handle,
            trusted_proxy_hops: self.trusted_proxy_hops,
            audit_retention_days: self.audit_retention_days,
        }
    }
}

/// Debug output shows the redacted settings: a stray `?config` in a log
/// line must not leak the JWT secret or a database password.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.redacted().fmt(f)
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
    pub feed_redis_url: Option<String>,
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
    pub debug_token: &'static str,
    pub rate_limit_user_per_min: u32,
    pub rate_limit_address_per_min: u32,
    pub login_attempts_per_address_per_min: u32,
    pub login_attempts_per_handle: u32,
    pub trusted_proxy_hops: usize,
    pub audit_retention_days: u32,
}
