//! PostgreSQL: the pool, the schema migrations and one repository module per
//! table group. Repositories are plain async functions over an executor, so a
//! caller composes several in one transaction (a change and its outbox event).

pub mod audit;
pub mod dead_letters;
pub mod feed;
pub mod follows;
pub mod outbox;
pub mod posts;
pub mod tokens;
pub mod users;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, migrate::Migrator};

/// The schema, embedded in every binary that needs it.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Opens a pool lazily: a process starts (and answers `/healthz`) while
/// PostgreSQL is still coming up, and each query waits at most
/// `acquire_timeout` for a connection before failing fast.
pub fn pool(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options.application_name("fanout")))
}

/// True when the error is a unique-constraint violation (SQLSTATE 23505).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

/// True when the error is a foreign-key violation (SQLSTATE 23503): the row
/// referred to does not exist (or was deleted concurrently).
pub fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.is_foreign_key_violation())
}

/// True when the error means PostgreSQL is unreachable or overloaded rather
/// than that the query was wrong: callers answer 503 and retry later.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
    ) || err
        .as_database_error()
        .and_then(|e| e.code())
        // Class 08: connection exception; 57P0x: the server is shutting down
        // or starting up; 53300: too many connections; 25006: a read-only
        // transaction (a primary demoted by a failover, still connected).
        .is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P0") || code == "53300" || code == "25006"
        })
}
