//! The audit log of security-relevant actions: a row in PostgreSQL's
//! `audit_log` (kept `FANOUT_AUDIT_RETENTION_DAYS`), and a log line with
//! target `fanout::audit`, so it can be routed apart from the rest.

use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use feed_core::db;
use sqlx::{PgExecutor, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::RequestId;
use crate::ratelimit::{ClientIp, TrustedProxies};

/// Longest subject recorded, in characters: ids and handles fit.
const SUBJECT_MAX_CHARS: usize = 64;

/// How often entries past retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A login succeeded (subject: the handle).
    LoginSucceeded,
    /// A login was refused: unknown handle or wrong password (subject: the
    /// handle tried).
    LoginFailed,
    /// A login was refused unchecked: too many attempts for the handle.
    LoginThrottled,
    /// A session was ended with its refresh token.
    Logout,
    /// A spent refresh token was presented again: its session was revoked.
    RefreshReused,
    /// A post was deleted (subject: the post id).
    PostDeleted,
    /// An account was deleted (subject: the user id).
    UserDeleted,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::LoginSucceeded => "login.succeeded",
            Action::LoginFailed => "login.failed",
            Action::LoginThrottled => "login.throttled",
            Action::Logout => "logout",
            Action::RefreshReused => "refresh.reused",
            Action::PostDeleted => "post.deleted",
            Action::UserDeleted => "user.deleted",
        }
    }
}

/// Who asked, as the audit log records it.
#[derive(Debug, Clone)]
pub struct Origin {
    pub ip: ClientIp,
    pub request_id: RequestId,
}

/// Records an action; in the caller's transaction when given one, so the
/// record and the change commit together.
pub async fn record(
    db: impl PgExecutor<'_>,
    action: Action,
    actor: Option<Uuid>,
    subject: Option<String>,
    origin: &Origin,
) -> Result<(), ApiError> {
    // A subject may come from the client (a handle tried at login): kept
    // printable and short, and free of the NUL PostgreSQL text refuses.
    let subject = subject.map(|s| {
        s.chars()
            .filter(|c| !c.is_control())
            .take(SUBJECT_MAX_CHARS)
            .collect::<String>()
    });
    let entry = db::audit::Entry {
        action: action.as_str().to_owned(),
        actor_id: actor,
        subject,
        client_ip: origin.ip.0.map(|ip| ip.to_string()),
        request_id: origin.request_id.0.clone(),
    };
    db::audit::insert(db, &entry).await?;
    info!(
        target: "fanout::audit",
        action = entry.action,
        actor_id = ?entry.actor_id,
        subject = entry.subject,
        client_ip = entry.client_ip,
        request_id = entry.request_id,
        "audit"
    );
    Ok(())
}

/// Deletes entries past `retention`, hourly, until `shutdown`.
pub async fn prune(db: PgPool, retention: Duration, shutdown: CancellationToken) {
    loop {
        let before = chrono::Utc::now() - retention;
        match db::audit::prune(&db, before).await {
            Ok(n) if n > 0 => info!(entries = n, "pruned audit log entries past retention"),
            Ok(_) => {}
            Err(e) => debug!(error = %e, "pruning the audit log failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

impl<S> FromRequestParts<S> for Origin
where
    S: Send + Sync,
    TrustedProxies: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ip = ClientIp::from_request_parts(parts, state).await?;
        let request_id = RequestId::from_request_parts(parts, state).await?;
        Ok(Origin { ip, request_id })
    }
}
