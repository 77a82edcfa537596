//! What every Fanout binary's `main` shares: the settings for PostgreSQL,
//! Redis and feeds (flags with `FANOUT_*` environment variables), logging,
//! and the signal that starts a graceful shutdown.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::bus::Redis;
use crate::feed_store::FeedLimits;

/// How to reach PostgreSQL.
#[derive(Debug, Clone, Args)]
pub struct PostgresArgs {
    /// PostgreSQL URL, e.g. postgres://user:pass@host:5432/fanout?sslmode=require.
    #[arg(long, env = "FANOUT_DATABASE_URL")]
    pub database_url: String,
    /// Most connections this process opens.
    #[arg(long, env = "FANOUT_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// How long a query waits for a free connection before failing (and the
    /// API answering 503), in milliseconds.
    #[arg(long, env = "FANOUT_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 2_000)]
    pub db_acquire_timeout_ms: u64,
}

impl PostgresArgs {
    /// Rejects settings that cannot work, saying what to change.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            return Err("FANOUT_DATABASE_URL must start with postgres:// or postgresql://".into());
        }
        if self.db_max_connections == 0 {
            return Err("FANOUT_DB_MAX_CONNECTIONS must be at least 1".into());
        }
        Ok(())
    }

    /// The acquire timeout as a duration.
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.db_acquire_timeout_ms)
    }

    /// The connection pool these settings describe (connecting lazily).
    #[cfg(feature = "db")]
    pub fn pool(&self) -> Result<sqlx::PgPool, sqlx::Error> {
        crate::db::pool(
            &self.database_url,
            self.db_max_connections,
            self.acquire_timeout(),
        )
    }
}

/// How to reach Redis.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis URL: redis://[:password@]host:port[/db], or rediss:// for TLS.
    /// A node of a Redis Cluster works as well: the others are found from
    /// it.
    #[arg(
        long,
        env = "FANOUT_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// PEM file with the CA certificate(s) that signed the Redis server's
    /// certificate, for a private CA; when set, only these CAs are trusted.
    /// Needs a rediss:// URL. Unset, rediss:// trusts the built-in roots.
    #[arg(long, env = "FANOUT_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// Redis URL for home feeds, the posts cached beside them and the posts'
    /// like sets, to keep them apart from the event streams. All of it is
    /// derived (feeds are rebuilt from PostgreSQL on read; like sets are
    /// not rebuilt), so this Redis needs no persistence, where the streams'
    /// does: fan-out then stops filling the streams' append-only file.
    /// Unset, FANOUT_REDIS_URL holds both. FANOUT_REDIS_CA_FILE applies to
    /// both.
    #[arg(long, env = "FANOUT_FEED_REDIS_URL")]
    pub feed_redis_url: Option<String>,
}

/// Why the Redis settings cannot be used; each says what to change.
#[derive(Debug, thiserror::Error)]
pub enum RedisConfigError {
    #[error("{var} is not a valid Redis URL: {source}")]
    Url {
        var: &'static str,
        source: redis::RedisError,
    },
    #[error(
        "FANOUT_REDIS_CA_FILE is set but {var} is not rediss://; use rediss:// for TLS or unset FANOUT_REDIS_CA_FILE"
    )]
    CaWithoutTls { var: &'static str },
    #[error("FANOUT_REDIS_CA_FILE {}: cannot read it: {source}", path.display())]
    ReadCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "FANOUT_REDIS_CA_FILE {}: {reason}; it must hold the CA certificate(s) in PEM (-----BEGIN CERTIFICATE-----)",
        path.display()
    )]
    BadCa { path: PathBuf, reason: String },
}

impl RedisArgs {
    /// Rejects settings that cannot work, saying what to change: a bad URL,
    /// or a CA file that is unreadable, holds no certificate or comes with a
    /// URL that would not use TLS.
    pub fn validate(&self) -> Result<(), String> {
        self.client().map_err(|e| e.to_string())?;
        if let Some(url) = &self.feed_redis_url {
            self.client_for(url, FEED_URL_VAR)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The Redis client these settings describe (see [`crate::bus::client`]),
    /// with the CA file read now.
    pub fn client(&self) -> Result<redis::Client, RedisConfigError> {
        Ok(self.client_for(&self.redis_url, URL_VAR)?.0)
    }

    /// A client for `url`, named by the variable `var` in errors, and the
    /// CA certificates it trusts.
    fn client_for(
        &self,
        url: &str,
        var: &'static str,
    ) -> Result<(redis::Client, Option<Vec<u8>>), RedisConfigError> {
        let url_error = |source| RedisConfigError::Url { var, source };
        let Some(path) = &self.redis_ca_file else {
            return Ok((crate::bus::client(url, None).map_err(url_error)?, None));
        };
        if !url.starts_with("rediss://") {
            return Err(RedisConfigError::CaWithoutTls { var });
        }
        let pem = std::fs::read(path).map_err(|source| RedisConfigError::ReadCa {
            path: path.clone(),
            source,
        })?;
        let bad = |reason: String| RedisConfigError::BadCa {
            path: path.clone(),
            reason,
        };
        // The redis crate skips what is not a certificate, so a key or an
        // empty file would otherwise leave nothing trusted, and every
        // connection would fail later with a less helpful error.
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut certificates = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            cert.map_err(|e| bad(format!("not valid PEM ({e})")))?;
            certificates += 1;
        }
        if certificates == 0 {
            return Err(bad("no certificate found".into()));
        }
        let client = crate::bus::client(url, Some(&pem)).map_err(|e| match e.kind() {
            redis::ErrorKind::InvalidClientConfig => url_error(e),
            _ => bad(format!("not a usable CA certificate ({e})")),
        })?;
        Ok((client, Some(pem)))
    }

    /// A [`Redis`] handle from these settings; `response_timeout` as for
    /// [`Redis::new`].
    pub fn connect(&self, response_timeout: Duration) -> Result<Redis, RedisConfigError> {
        let (client, ca) = self.client_for(&self.redis_url, URL_VAR)?;
        Ok(Redis::with_client(client, ca, response_timeout))
    }

    /// The handle for home feeds: on FANOUT_FEED_REDIS_URL when it is set,
    /// else `streams` itself (one connection for both).
    pub fn connect_feeds(
        &self,
        streams: &Redis,
        response_timeout: Duration,
    ) -> Result<Redis, RedisConfigError> {
        match &self.feed_redis_url {
            Some(url) => {
                let (client, ca) = self.client_for(url, FEED_URL_VAR)?;
                Ok(Redis::with_client(client, ca, response_timeout))
            }
            None => Ok(streams.clone()),
        }
    }
}

const URL_VAR: &str = "FANOUT_REDIS_URL";
const FEED_URL_VAR: &str = "FANOUT_FEED_REDIS_URL";

/// Posts kept per home feed by default (`FANOUT_FEED_MAX_LEN`, and a
/// FeedCluster's `spec.feed.maxLength`): a feed ends there, as timelines
/// commonly do (docs/architecture.md), which bounds each feed's memory in
/// Redis and the cost of every write into it.
pub const DEFAULT_FEED_MAX_LEN: usize = 800;
/// Followers from which an author's posts are merged into feeds at read
/// time instead of fanned out, by default (`FANOUT_CELEBRITY_THRESHOLD`,
/// and a FeedCluster's `spec.feed.celebrityThreshold`): past it one post
/// would be that many feed writes.
pub const DEFAULT_CELEBRITY_THRESHOLD: i64 = 10_000;

/// How home feeds are kept; the API and the workers must agree.
#[derive(Debug, Clone, Args)]
pub struct FeedArgs {
    /// Posts kept in a user's feed in Redis. Fan-out trims in steps, so a
    /// feed may hold up to 32 more.
    #[arg(long, env = "FANOUT_FEED_MAX_LEN", default_value_t = DEFAULT_FEED_MAX_LEN)]
    pub feed_max_len: usize,
    /// A feed nobody reads for this many seconds leaves Redis (it is rebuilt
    /// from PostgreSQL on the next read).
    #[arg(long, env = "FANOUT_FEED_TTL_SECS", default_value_t = 7 * 24 * 3600)]
    pub feed_ttl_secs: u64,
    /// Authors with at least this many followers are not fanned out on
    /// write; their posts are merged into feeds at read time.
    #[arg(long, env = "FANOUT_CELEBRITY_THRESHOLD", default_value_t = DEFAULT_CELEBRITY_THRESHOLD)]
    pub celebrity_threshold: i64,
}

impl FeedArgs {
    /// Rejects settings that cannot work, saying what to change.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=100_000).contains(&self.feed_max_len) {
            return Err("FANOUT_FEED_MAX_LEN must be between 1 and 100000".into());
        }
        if self.feed_ttl_secs == 0 {
            return Err("FANOUT_FEED_TTL_SECS must be at least 1".into());
        }
        if self.celebrity_threshold < 1 {
            return Err("FANOUT_CELEBRITY_THRESHOLD must be at least 1".into());
        }
        Ok(())
    }

    /// The limits the feed store applies.
    pub fn limits(&self) -> FeedLimits {
        FeedLimits {
            max_len: self.feed_max_len,
            ttl: Duration::from_secs(self.feed_ttl_secs),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Pretty in a terminal, JSON otherwise (containers, files, pipes).
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Logging settings. The filter comes from `RUST_LOG` (default `info`).
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log line format.
    #[arg(long, env = "FANOUT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

/// Installs the global tracing subscriber.
pub fn init_logging(args: &LogArgs) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match args.log_format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    } else {
        builder.compact().init();
    }
}

/// Resolves when the process is asked to stop: SIGTERM (Kubernetes) or
/// Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("interrupted, shutting down"),
        _ = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// A token cancelled when the process is asked to stop; pass it to
/// everything that must shut down gracefully.
pub fn shutdown_token() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let on_signal = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        on_signal.cancel();
    });
    token
}

/// A registry holding `collectors`. Metric names are fixed in code, so a
/// clash is a bug and panics at start-up.
pub fn registry(collectors: Vec<Box<dyn prometheus::core::Collector>>) -> prometheus::Registry {
    let registry = prometheus::Registry::new();
    for collector in collectors {
        registry
            .register(collector)
            .expect("metric names are unique");
    }
    registry
}

/// A registry's metrics in Prometheus' text format.
pub fn render_metrics(registry: &prometheus::Registry) -> String {
    prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap_or_default()
}

/// A URL with its password replaced by `***`, for logs and `/debug/config`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_survive_redaction() {
        assert_eq!(
            redact_url("postgres://fanout:s3cret@db:5432/fanout"),
            "postgres://fanout:***@db:5432/fanout"
        );
        assert_eq!(
            redact_url("redis://:s3cret@redis:6379/0"),
            "redis://:***@redis:6379/0"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            redact_url("postgres://fanout@db/fanout"),
            "postgres://fanout@db/fanout"
        );
        assert_eq!(redact_url("garbage-with-s3cret"), "***");
    }
}
