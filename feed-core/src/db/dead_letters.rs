//! Stream entries the workers gave up on, kept with the reason so an
//! operator can inspect and replay them.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// A stream entry that could not be handled.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub stream: String,
    pub entry_id: String,
    pub event_id: Option<Uuid>,
    pub event_type: Option<String>,
    /// The entry's bytes as text (lossy if they were not UTF-8).
    pub payload: String,
    pub error: String,
    /// How many times the entry was delivered before giving up.
    pub attempts: i32,
}

/// A recorded dead letter, with when it failed.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub letter: DeadLetter,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
}

/// Records a dead letter; recording the same entry again updates it.
pub async fn record(db: impl PgExecutor<'_>, letter: &DeadLetter) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO dead_letters (stream, entry_id, event_id, event_type, payload, error, attempts)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (stream, entry_id) DO UPDATE
         SET error = EXCLUDED.error, attempts = EXCLUDED.attempts, last_failed_at = now()",
        letter.stream,
        letter.entry_id,
        letter.event_id,
        letter.event_type,
        letter.payload,
        letter.error,
        letter.attempts
    )
    .execute(db)
    .await?;
    Ok(())
}

/// How many dead letters there are.
pub async fn count(db: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM dead_letters"#)
        .fetch_one(db)
        .await
}

/// The most recent dead letters, newest first.
pub async fn recent(db: impl PgExecutor<'_>, limit: i64) -> sqlx::Result<Vec<Recorded>> {
    let rows = sqlx::query!(
        "SELECT stream, entry_id, event_id, event_type, payload, error, attempts, first_failed_at, last_failed_at
         FROM dead_letters ORDER BY last_failed_at DESC LIMIT $1",
        limit
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Recorded {
            letter: DeadLetter {
                stream: r.stream,
                entry_id: r.entry_id,
                event_id: r.event_id,
                event_type: r.event_type,
                payload: r.payload,
                error: r.error,
                attempts: r.attempts,
            },
            first_failed_at: r.first_failed_at,
            last_failed_at: r.last_failed_at,
        })
        .collect())
}
