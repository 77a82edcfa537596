//! The audit log: security-relevant actions, kept for a retention period.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// One security-relevant action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What happened, e.g. `login.failed` (see the API's `audit` module).
    pub action: String,
    /// Who did it, when known.
    pub actor_id: Option<Uuid>,
    /// What it was done to: a user or post id, the handle a login tried.
    pub subject: Option<String>,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
}

/// A recorded entry.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: DateTime<Utc>,
    pub entry: Entry,
}

/// Records an action (in the caller's transaction, when it is part of one).
pub async fn insert(db: impl PgExecutor<'_>, entry: &Entry) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO audit_log (action, actor_id, subject, client_ip, request_id)
         VALUES ($1, $2, $3, $4, $5)",
        entry.action,
        entry.actor_id,
        entry.subject,
        entry.client_ip,
        entry.request_id,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The newest `limit` entries, newest first.
pub async fn recent(db: impl PgExecutor<'_>, limit: i64) -> sqlx::Result<Vec<Recorded>> {
    let rows = sqlx::query!(
        "SELECT at, action, actor_id, subject, client_ip, request_id
         FROM audit_log ORDER BY id DESC LIMIT $1",
        limit
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Recorded {
            at: r.at,
            entry: Entry {
                action: r.action,
                actor_id: r.actor_id,
                subject: r.subject,
                client_ip: r.client_ip,
                request_id: r.request_id,
            },
        })
        .collect())
}

/// Deletes entries older than `before`; returns how many.
pub async fn prune(db: impl PgExecutor<'_>, before: DateTime<Utc>) -> sqlx::Result<u64> {
    let done = sqlx::query!("DELETE FROM audit_log WHERE at < $1", before)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}
