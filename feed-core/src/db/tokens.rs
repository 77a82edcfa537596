//! Refresh tokens, stored as hashes, rotated on every use.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// A stored refresh token.
#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub id: Uuid,
    pub user_id: Uuid,
    pub family_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Stores a new refresh token's hash.
pub async fn insert(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    family_id: Uuid,
    token_hash: &[u8],
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at) VALUES ($1, $2, $3, $4, $5)",
        Uuid::now_v7(),
        user_id,
        family_id,
        token_hash,
        expires_at
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Finds a token by hash and locks it, so two refreshes with the same token
/// cannot both succeed.
pub async fn lock_by_hash(
    db: &mut PgConnection,
    token_hash: &[u8],
) -> sqlx::Result<Option<RefreshToken>> {
    sqlx::query_as!(
        RefreshToken,
        "SELECT id, user_id, family_id, expires_at, used_at, revoked_at
         FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
        token_hash
    )
    .fetch_optional(db)
    .await
}

/// Serializes every rotation and revocation of one token family until the
/// transaction ends: otherwise a revocation could miss a token that a
/// concurrent refresh is inserting.
pub async fn lock_family(db: &mut PgConnection, family_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))",
        family_id.to_string()
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Marks a token spent.
pub async fn mark_used(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE refresh_tokens SET used_at = now() WHERE id = $1",
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Revokes every token of a family (a spent token was presented again: it
/// may have been stolen).
pub async fn revoke_family(db: impl PgExecutor<'_>, family_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
        family_id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Revokes the session a refresh token belongs to (logout): every token of
/// its family. Returns the token's user, or `None` for an unknown token.
pub async fn revoke_session(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        r#"WITH token AS (SELECT user_id, family_id FROM refresh_tokens WHERE token_hash = $1),
                revoked AS (
                    UPDATE refresh_tokens SET revoked_at = now()
                    WHERE family_id = (SELECT family_id FROM token) AND revoked_at IS NULL)
           SELECT user_id AS "user_id!" FROM token"#,
        token_hash
    )
    .fetch_optional(db)
    .await
}
