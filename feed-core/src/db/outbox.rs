//! The transactional outbox: every domain event is written here in the
//! transaction of the change that caused it, so publishing can fail (Redis
//! down, process killed) without losing the event.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::events::Envelope;

/// Records an event in the caller's transaction.
pub async fn insert(db: impl PgExecutor<'_>, envelope: &Envelope) -> sqlx::Result<()> {
    let json = serde_json::to_value(envelope).expect("an envelope always serializes");
    sqlx::query!(
        "INSERT INTO outbox (event_id, event_type, envelope, created_at) VALUES ($1, $2, $3, $4)",
        envelope.event_id,
        envelope.event_type,
        json,
        envelope.occurred_at
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Marks events as being on their streams.
pub async fn mark_published(db: impl PgExecutor<'_>, event_ids: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE outbox SET published_at = now() WHERE event_id = ANY($1) AND published_at IS NULL",
        event_ids
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Locks up to `limit` unpublished events committed before `older_than`,
/// oldest first, skipping rows another relay holds. The caller publishes
/// them, marks them, and commits.
pub async fn lock_unpublished(
    db: &mut PgConnection,
    older_than: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<Vec<Envelope>> {
    let rows = sqlx::query_scalar!(
        "SELECT envelope FROM outbox
         WHERE published_at IS NULL AND created_at < $1
         ORDER BY created_at LIMIT $2
         FOR UPDATE SKIP LOCKED",
        older_than,
        limit
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|json| serde_json::from_value(json).map_err(|e| sqlx::Error::Decode(Box::new(e))))
        .collect()
}

/// How many events are committed but on no stream yet, and how old the
/// oldest is.
pub async fn backlog(db: impl PgExecutor<'_>) -> sqlx::Result<(i64, Option<DateTime<Utc>>)> {
    let row = sqlx::query!(
        r#"SELECT count(*) AS "count!", min(created_at) AS oldest FROM outbox WHERE published_at IS NULL"#
    )
    .fetch_one(db)
    .await?;
    Ok((row.count, row.oldest))
}

/// Deletes up to `limit` events published before `before`; returns how many.
pub async fn prune(
    db: impl PgExecutor<'_>,
    before: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM outbox WHERE event_id IN (
           SELECT event_id FROM outbox WHERE published_at < $1 LIMIT $2)",
        before,
        limit
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
