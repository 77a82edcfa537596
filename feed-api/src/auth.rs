//! Who is calling: password hashing (argon2id), access tokens (JWT, HS256
//! pinned), refresh tokens (random, stored hashed, rotated on use), and the
//! extractor that turns `Authorization: Bearer` into a user id.

use std::time::Duration;

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ApiError;

/// Leeway for `exp` between replicas' clocks, in seconds.
const CLOCK_SKEW_LEEWAY_SECS: u64 = 30;

/// Why a caller could not be identified, or a credential not made: the
/// crypto's own failures, mapped to an HTTP answer only at the edge (the
/// `From` impl for [`ApiError`] below).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("missing 'Authorization: Bearer <token>' header")]
    MissingHeader,
    /// An `Authorization` header that is not `Bearer <token>`.
    #[error("the Authorization header must be 'Bearer <token>'")]
    MalformedHeader,
    /// A genuine access token past its `exp`.
    #[error("the access token has expired; refresh it")]
    Expired,
    /// An access token of another issuer or audience.
    #[error("the access token was not issued for this API")]
    WrongIssuer,
    /// Anything else wrong with an access token: signature, algorithm,
    /// claims, encoding.
    #[error("the access token is not valid")]
    InvalidToken,
    /// Signing a token failed (a bug or a broken key).
    #[error("signing an access token: {0}")]
    Signing(#[source] jsonwebtoken::errors::Error),
    /// Hashing a password failed.
    #[error("hashing a password: {0}")]
    Hashing(String),
    /// The blocking task hashing or checking a password died.
    #[error("the password task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        match e {
            AuthError::MissingHeader
            | AuthError::MalformedHeader
            | AuthError::Expired
            | AuthError::WrongIssuer
            | AuthError::InvalidToken => ApiError::Unauthorized(e.to_string()),
            AuthError::Signing(_) | AuthError::Hashing(_) | AuthError::Task(_) => {
                ApiError::Internal(e.into())
            }
        }
    }
}

/// The token of a request's `Authorization: Bearer <token>` header: the one
/// place that header is read (the caller extractors, the per-user rate
/// limit, `/debug` admission).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::MissingHeader)?;
    header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::MalformedHeader)
}

/// Signs and checks access tokens.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    /// Lifetime of an access token.
    pub access_ttl: Duration,
    /// Lifetime of a refresh token.
    pub refresh_ttl: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    iss: String,
    aud: String,
    iat: u64,
    exp: u64,
}

impl TokenKeys {
    pub fn new(
        secret: &[u8],
        issuer: &str,
        audience: &str,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Self {
        // One algorithm only: a token claiming "none" or RS256 is rejected.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.leeway = CLOCK_SKEW_LEEWAY_SECS;
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            access_ttl,
            refresh_ttl,
        }
    }

    /// A signed access token for a user.
    pub fn access_token(&self, user: Uuid) -> Result<String, AuthError> {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let claims = Claims {
            sub: user,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now + self.access_ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(AuthError::Signing)
    }

    /// The user an access token was issued to, if it is valid now.
    pub fn verify(&self, token: &str) -> Result<Uuid, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims.sub)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => AuthError::WrongIssuer,
                _ => AuthError::InvalidToken,
            })
    }

    /// The user a request's bearer token names, by its signature alone.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Uuid, AuthError> {
        self.verify(bearer_token(headers)?)
    }
}

/// A fresh refresh token: 256 random bits, URL-safe.
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database stores for a refresh token.
pub fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Hashes a password with argon2id, off the async threads (it takes tens of
/// milliseconds by design).
pub async fn hash_password(password: String) -> Result<String, AuthError> {
    tokio::task::spawn_blocking(move || {
        let hash: PasswordHash = Argon2::default()
            .hash_password(password.as_bytes())
            .map_err(|e| AuthError::Hashing(e.to_string()))?;
        Ok(hash.to_string())
    })
    .await?
}

/// A hash of a password nobody has, checked when a handle is unknown so a
/// failed login takes as long whether or not the handle exists.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let hash: PasswordHash = Argon2::default()
        .hash_password(b"not-a-real-password")
        .expect("argon2 with default parameters hashes");
    hash.to_string()
});

/// Checks a password against a stored hash (or against a dummy when the user
/// is unknown), off the async threads.
pub async fn verify_password(password: String, stored: Option<String>) -> Result<bool, AuthError> {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.clone());
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            && known
    })
    .await
    .map_err(AuthError::from)
}

/// The authenticated caller.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub id: Uuid,
}

/// Checks that the signed caller's account still exists: a token outlives
/// an account deleted after it was issued. With PostgreSQL unreachable the
/// signature is trusted: reads go on from the cache, writes fail on their
/// own.
impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    Arc<TokenKeys>: FromRef<S>,
    PgPool: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let id = Arc::<TokenKeys>::from_ref(state).caller(&parts.headers)?;
        match feed_core::db::users::exists(&PgPool::from_ref(state), id).await {
            Ok(true) => Ok(AuthUser { id }),
            Ok(false) => Err(ApiError::account_gone()),
            Err(e) if feed_core::db::is_unavailable(&e) => Ok(AuthUser { id }),
            Err(e) => Err(e.into()),
        }
    }
}

/// The caller by the token's signature alone, not checked against the
/// database here: for writes whose foreign key on the caller's id rejects a
/// deleted account anyway (mapped to 401 by `routes::caller_gone`), and for
/// the feed, whose one query checks the account with everything else. It
/// saves the hottest requests a round trip.
#[derive(Debug, Clone, Copy)]
pub struct SignedCaller {
    pub id: Uuid,
}

impl<S> FromRequestParts<S> for SignedCaller
where
    S: Send + Sync,
    Arc<TokenKeys>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(SignedCaller {
            id: Arc::<TokenKeys>::from_ref(state).caller(&parts.headers)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_bearer_token_is_read_once_for_everyone() {
        assert!(matches!(
            bearer_token(&HeaderMap::new()),
            Err(AuthError::MissingHeader)
        ));
        for malformed in ["Basic dXNlcjpwdw==", "bearer abc", "Bearer ", "Bearer    "] {
            assert!(
                matches!(
                    bearer_token(&with_authorization(malformed)),
                    Err(AuthError::MalformedHeader)
                ),
                "{malformed:?}"
            );
        }
        assert_eq!(
            bearer_token(&with_authorization("Bearer abc")).unwrap(),
            "abc"
        );
        assert_eq!(
            bearer_token(&with_authorization("Bearer  abc")).unwrap(),
            "abc"
        );
    }

    #[test]
    fn token_failures_answer_401_and_crypto_failures_500() {
        let keys = TokenKeys::new(
            b"a-secret-that-is-at-least-32-bytes-long",
            "fanout",
            "fanout-api",
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let user = Uuid::now_v7();
        let token = keys.access_token(user).unwrap();
        let headers = with_authorization(&format!("Bearer {token}"));
        assert_eq!(keys.caller(&headers).unwrap(), user);

        let other = TokenKeys::new(
            b"a-secret-that-is-at-least-32-bytes-long",
            "fanout",
            "another-api",
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let refused = other.caller(&headers).unwrap_err();
        assert!(matches!(refused, AuthError::WrongIssuer));
        assert!(matches!(
            ApiError::from(refused),
            ApiError::Unauthorized(why) if why == "the access token was not issued for this API"
        ));
        assert!(matches!(
            ApiError::from(AuthError::Hashing("broken".into())),
            ApiError::Internal(_)
        ));
    }
}
