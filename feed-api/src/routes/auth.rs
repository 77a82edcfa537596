//! Logging in, refreshing tokens and logging out.

use axum::extract::State;
use chrono::Utc;
use feed_core::db;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::audit::{self, Action, Origin};
use crate::auth::{hash_refresh_token, new_refresh_token, verify_password};
use crate::error::{ApiError, Problem};
use crate::extract::ApiJson;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
}

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub handle: String,
    pub password: String,
}

/// A refresh token: to trade for new tokens, or to end its session.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    pub refresh_token: String,
}

/// Tokens: send `Authorization: Bearer <access_token>`; trade the refresh
/// token at `/auth/refresh` before the access token expires.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

async fn issue(
    state: &AppState,
    db: &mut sqlx::PgConnection,
    user: Uuid,
    family: Uuid,
) -> Result<TokenPair, ApiError> {
    let refresh_token = new_refresh_token();
    let expires_at = Utc::now() + state.tokens.refresh_ttl;
    db::tokens::insert(
        &mut *db,
        user,
        family,
        &hash_refresh_token(&refresh_token),
        expires_at,
    )
    .await?;
    Ok(TokenPair {
        access_token: state.tokens.access_token(user)?,
        refresh_token,
        token_type: "Bearer",
        expires_in: state.tokens.access_ttl.as_secs(),
    })
}

/// Logs in. A wrong password and an unknown handle get the same answer, in
/// about the same time; attempts per handle and per address are limited.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = Login,
    responses((status = 200, body = TokenPair), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem),
        (status = 429, description = "Too many attempts; see Retry-After", body = Problem)))]
async fn login(
    State(state): State<AppState>,
    origin: Origin,
    ApiJson(body): ApiJson<Login>,
) -> Result<axum::Json<TokenPair>, ApiError> {
    let denied = || ApiError::Unauthorized("invalid handle or password".into());
    // The handle as it would be stored; junk can match no one, and is
    // recorded as given (the audit log makes it printable).
    let normalized = feed_core::validate::handle(&body.handle).ok();
    let subject = normalized.clone().unwrap_or_else(|| body.handle.clone());
    if let Err(e) = state.limits.login_attempt(&subject) {
        state
            .metrics
            .rate_limited
            .with_label_values(&["login_handle"])
            .inc();
        audit::record(
            &state.db,
            Action::LoginThrottled,
            None,
            Some(subject),
            &origin,
        )
        .await?;
        return Err(e);
    }
    // An over-long password cannot match and must not cost a hash.
    let found = match &normalized {
        Some(handle) if body.password.len() <= feed_core::validate::PASSWORD_MAX_BYTES => {
            db::users::credentials(&state.db, handle).await?
        }
        _ => None,
    };
    let (user, stored) = match found {
        Some((id, hash)) => (Some(id), Some(hash)),
        None => (None, None),
    };
    let ok = body.password.len() <= feed_core::validate::PASSWORD_MAX_BYTES
        && verify_password(body.password, stored).await?;
    let Some(user) = user.filter(|_| ok) else {
        state.metrics.login_failures.inc();
        audit::record(&state.db, Action::LoginFailed, None, Some(subject), &origin).await?;
        return Err(denied());
    };
    let mut tx = state.db.begin().await?;
    let pair = issue(&state, &mut tx, user, Uuid::now_v7()).await?;
    audit::record(
        &mut *tx,
        Action::LoginSucceeded,
        Some(user),
        Some(subject),
        &origin,
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(pair))
}

/// Trades a refresh token for new tokens. Each refresh token works once;
/// presenting a spent one revokes every token descended from the same login.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = Refresh,
    responses((status = 200, body = TokenPair), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn refresh(
    State(state): State<AppState>,
    origin: Origin,
    ApiJson(body): ApiJson<Refresh>,
) -> Result<axum::Json<TokenPair>, ApiError> {
    let denied = |why: &str| ApiError::Unauthorized(why.to_owned());
    let mut tx = state.db.begin().await?;
    let token = db::tokens::lock_by_hash(&mut tx, &hash_refresh_token(&body.refresh_token))
        .await?
        .ok_or_else(|| denied("unknown refresh token"))?;
    db::tokens::lock_family(&mut tx, token.family_id).await?;
    if token.revoked_at.is_some() {
        return Err(denied("the refresh token has been revoked; log in again"));
    }
    if token.used_at.is_some() {
        // Someone holds a copy: end the whole session.
        db::tokens::revoke_family(&mut *tx, token.family_id).await?;
        audit::record(
            &mut *tx,
            Action::RefreshReused,
            Some(token.user_id),
            Some(token.family_id.to_string()),
            &origin,
        )
        .await?;
        tx.commit().await?;
        return Err(denied(
            "the refresh token was already used; the session has been revoked",
        ));
    }
    if token.expires_at <= Utc::now() {
        return Err(denied("the refresh token has expired; log in again"));
    }
    db::tokens::mark_used(&mut *tx, token.id).await?;
    let pair = issue(&state, &mut tx, token.user_id, token.family_id).await?;
    tx.commit().await?;
    Ok(axum::Json(pair))
}

/// Logs out: ends the session the refresh token belongs to (every token
/// rotated from the same login). Access tokens already issued stay valid
/// until they expire (minutes); an unknown token is not an error.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = Refresh,
    responses((status = 204, description = "The session is over"), (status = 400, body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn logout(
    State(state): State<AppState>,
    origin: Origin,
    ApiJson(body): ApiJson<Refresh>,
) -> Result<axum::http::StatusCode, ApiError> {
    let mut tx = state.db.begin().await?;
    if let Some(user) =
        db::tokens::revoke_session(&mut *tx, &hash_refresh_token(&body.refresh_token)).await?
    {
        audit::record(&mut *tx, Action::Logout, Some(user), None, &origin).await?;
    }
    tx.commit().await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
