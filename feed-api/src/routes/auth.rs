//! Logging in and refreshing tokens.

use axum::extract::State;
use chrono::Utc;
use feed_core::db;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::auth::{hash_refresh_token, new_refresh_token, verify_password};
use crate::error::{ApiError, Problem};
use crate::extract::ApiJson;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
}

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub handle: String,
    pub password: String,
}

/// A refresh token to trade for new tokens.
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

/// Logs in. A wrong password and an unknown handle get the same answer.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = Login,
    responses((status = 200, body = TokenPair), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn login(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Login>,
) -> Result<axum::Json<TokenPair>, ApiError> {
    let denied = || ApiError::Unauthorized("invalid handle or password".into());
    // An over-long password cannot match and must not cost a hash.
    if body.password.len() > feed_core::validate::PASSWORD_MAX_BYTES {
        return Err(denied());
    }
    // A handle no one could have signed up with matches no one.
    let found = match feed_core::validate::handle(&body.handle) {
        Ok(handle) => db::users::credentials(&state.db, &handle).await?,
        Err(_) => None,
    };
    let (user, stored) = match found {
        Some((id, hash)) => (Some(id), Some(hash)),
        None => (None, None),
    };
    let ok = verify_password(body.password, stored).await?;
    let user = user.filter(|_| ok).ok_or_else(denied)?;
    let mut conn = state.db.acquire().await?;
    Ok(axum::Json(
        issue(&state, &mut conn, user, Uuid::now_v7()).await?,
    ))
}

/// Trades a refresh token for new tokens. Each refresh token works once;
/// presenting a spent one revokes every token descended from the same login.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = Refresh,
    responses((status = 200, body = TokenPair), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn refresh(
    State(state): State<AppState>,
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
        tx.commit().await?;
        tracing::warn!(user_id = %token.user_id, "refresh token reused; session revoked");
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
