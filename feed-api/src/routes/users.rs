//! Users: sign-up, profiles, the follow graph and a user's posts.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use feed_core::bus::Keyspace;
use feed_core::events::{Event, FollowChanged, PostDeleted};
use feed_core::validate;
use feed_core::{db, keys, removals};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::posts::{PostPage, PostView};
use super::{PageQuery, caller_gone, cursor_after};
use crate::audit::{self, Action, Origin};
use crate::auth::{AuthUser, hash_password, verify_password};
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiQuery, RequestId, parse_id};
use crate::state::AppState;
use crate::write_tx::WriteTx;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user))
        .routes(routes!(get_me, delete_me))
        .routes(routes!(get_user))
        .routes(routes!(get_user_by_handle))
        .routes(routes!(follow))
        .routes(routes!(unfollow))
        .routes(routes!(followers))
        .routes(routes!(following))
        .routes(routes!(user_posts))
}

/// A user as anyone may see them.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    /// Unique, lower case, 3 to 30 of `a-z`, `0-9`, `_`.
    pub handle: String,
    pub display_name: String,
    pub follower_count: i64,
    pub created_at: DateTime<Utc>,
}

impl From<db::users::User> for UserView {
    fn from(u: db::users::User) -> Self {
        UserView {
            id: u.id,
            handle: u.handle,
            display_name: u.display_name,
            follower_count: u.follower_count,
            created_at: u.created_at,
        }
    }
}

/// Sign-up.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// As [`validate::handle`] accepts it (`handle_schema`).
    #[schema(schema_with = handle_schema)]
    pub handle: String,
    /// As [`validate::password`] accepts it (`password_schema`).
    #[schema(schema_with = password_schema)]
    pub password: String,
    /// As [`validate::display_name`] accepts it (`display_name_schema`).
    #[schema(schema_with = display_name_schema)]
    pub display_name: Option<String>,
}

// The sign-up fields' schemas take their limits from `feed_core::validate`:
// utoipa's `min_length`/`max_length` attributes accept only literals.

/// `handle`: [`validate::HANDLE_MIN`] to [`validate::HANDLE_MAX`] characters.
fn handle_schema() -> Object {
    let (min, max) = (validate::HANDLE_MIN, validate::HANDLE_MAX);
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!(
            "{min} to {max} of letters, digits and `_`; stored lower case."
        )))
        .pattern(Some(format!("^[A-Za-z0-9_]{{{min},{max}}}$")))
        .build()
}

/// `password`: [`validate::PASSWORD_MIN`] to [`validate::PASSWORD_MAX`]
/// characters.
fn password_schema() -> Object {
    let (min, max) = (validate::PASSWORD_MIN, validate::PASSWORD_MAX);
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!("{min} to {max} characters.")))
        .min_length(Some(min))
        .max_length(Some(max))
        .build()
}

/// `display_name`, optional: up to [`validate::DISPLAY_NAME_MAX`]
/// characters.
fn display_name_schema() -> Object {
    let max = validate::DISPLAY_NAME_MAX;
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some(format!(
            "Shown instead of the handle (the default): 1 to {max} characters once\ntrimmed, not blank, no control characters."
        )))
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(
            r"^[^\u0000-\u001F\u007F-\u009F]*\S[^\u0000-\u001F\u007F-\u009F]*$",
        ))
        .build()
}

/// Creates a user.
#[utoipa::path(post, path = "/users", tag = "users", request_body = CreateUser,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 400, body = Problem), (status = 409, description = "Handle taken", body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn create_user(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<(StatusCode, axum::Json<UserView>), ApiError> {
    let handle = validate::handle(&body.handle)?;
    validate::password(&body.password)?;
    let display_name = match body.display_name.as_deref() {
        Some(name) => validate::display_name(name)?,
        None => handle.clone(),
    };
    let hash = hash_password(body.password).await?;
    let user = db::users::insert(&state.db, Uuid::now_v7(), &handle, &display_name, &hash)
        .await
        .map_err(|e| {
            if db::is_unique_violation(&e) {
                ApiError::Conflict(format!("handle '{handle}' is taken"))
            } else {
                e.into()
            }
        })?;
    Ok((StatusCode::CREATED, axum::Json(user.into())))
}

/// A user's profile.
#[utoipa::path(get, path = "/users/{id}", tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, body = UserView), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn get_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<UserView>, ApiError> {
    let id = parse_id(&id, "user")?;
    let user = db::users::by_id(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("user", id))?;
    Ok(axum::Json(user.into()))
}

/// A user's profile by handle (case-insensitive), to find whom to follow.
#[utoipa::path(get, path = "/users/by-handle/{handle}", tag = "users",
    params(("handle" = String, Path, description = "Handle")),
    responses((status = 200, body = UserView), (status = 404, body = Problem)))]
async fn get_user_by_handle(
    State(state): State<AppState>,
    Path(handle): Path<String>,
) -> Result<axum::Json<UserView>, ApiError> {
    let missing = || {
        let shown: String = handle.chars().take(64).collect();
        ApiError::NotFound(format!("no user with handle '{shown}'"))
    };
    // A handle that could not be stored matches no one.
    let normalized = validate::handle(&handle).map_err(|_| missing())?;
    let (id, _) = db::users::credentials(&state.db, &normalized)
        .await?
        .ok_or_else(missing)?;
    let user = db::users::by_id(&state.db, id).await?.ok_or_else(missing)?;
    Ok(axum::Json(user.into()))
}

/// The caller's own profile.
#[utoipa::path(get, path = "/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = Problem)))]
async fn get_me(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<axum::Json<UserView>, ApiError> {
    let user = db::users::by_id(&state.db, caller.id)
        .await?
        .ok_or_else(ApiError::account_gone)?;
    Ok(axum::Json(user.into()))
}

/// The password again, to confirm an irreversible action.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmPassword {
    pub password: String,
}

/// Deletes the caller's account, for good: their posts leave every feed,
/// their likes and follows are undone, every session ends. The password is
/// asked again, so a stolen access token cannot do it.
#[utoipa::path(delete, path = "/users/me", tag = "users", security(("bearer" = [])),
    request_body = ConfirmPassword,
    responses((status = 204, description = "Deleted"), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, description = "Wrong password", body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem),
        (status = 503, description = "Database or feed store unavailable; nothing deleted, retry", body = Problem)))]
async fn delete_me(
    State(state): State<AppState>,
    caller: AuthUser,
    origin: Origin,
    ApiJson(body): ApiJson<ConfirmPassword>,
) -> Result<StatusCode, ApiError> {
    let stored = db::users::password_hash(&state.db, caller.id).await?;
    if stored.is_none() {
        return Err(ApiError::account_gone());
    }
    if body.password.len() > validate::PASSWORD_MAX_BYTES
        || !verify_password(body.password, stored).await?
    {
        return Err(ApiError::Forbidden("the password is not right".into()));
    }
    let mut write =
        WriteTx::begin(&state.db, &state.publisher, caller.id, &origin.request_id).await?;
    let Some(posts) = db::users::delete(write.conn(), caller.id).await? else {
        return Err(ApiError::account_gone());
    };
    // Before the delete commits: pages served from Redis stop showing the
    // posts, and tokens issued before stop being served the feed.
    let mut conn = state.feeds.conn().await?;
    removals::withdraw(&conn, &posts).await?;
    removals::forget_reader(&mut conn, caller.id).await?;
    // Each post leaves the feeds and caches it reached.
    for post_id in posts {
        write
            .record(Event::PostDeleted(PostDeleted {
                post_id,
                author_id: caller.id,
            }))
            .await?;
    }
    audit::record(
        write.conn(),
        Action::UserDeleted,
        Some(caller.id),
        Some(caller.id.to_string()),
        &origin,
    )
    .await?;
    write.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether the caller follows a user, after a follow or unfollow.
#[derive(Debug, Serialize, ToSchema)]
pub struct FollowState {
    pub follower_id: Uuid,
    pub followee_id: Uuid,
    pub following: bool,
}

/// Follows a user (idempotent). Their recent posts appear in the caller's
/// feed shortly after.
#[utoipa::path(post, path = "/users/{id}/follow", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User to follow")),
    responses((status = 200, body = FollowState), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 422, description = "Following yourself", body = Problem),
        (status = 503, description = "Database or feed store unavailable; nothing changed, retry", body = Problem)))]
async fn follow(
    State(state): State<AppState>,
    caller: AuthUser,
    request_id: RequestId,
    Path(id): Path<String>,
) -> Result<axum::Json<FollowState>, ApiError> {
    let followee = parse_id(&id, "user")?;
    if followee == caller.id {
        return Err(ApiError::Invalid {
            field: "id".into(),
            message: "you cannot follow yourself".into(),
        });
    }
    let mut write = WriteTx::begin(&state.db, &state.publisher, caller.id, &request_id).await?;
    if !db::users::exists(write.conn(), followee).await? {
        return Err(ApiError::not_found("user", followee));
    }
    let followed = db::follows::follow(write.conn(), caller.id, followee)
        .await
        .map_err(caller_gone)?;
    // Before the follow commits: an earlier unfollow no longer hides them.
    removals::unhide(&mut state.feeds.conn().await?, caller.id, followee).await?;
    if followed {
        write
            .record(Event::FollowCreated(FollowChanged {
                follower_id: caller.id,
                followee_id: followee,
            }))
            .await?;
    }
    write.commit().await?;
    Ok(axum::Json(FollowState {
        follower_id: caller.id,
        followee_id: followee,
        following: true,
    }))
}

/// Unfollows a user (idempotent). Their posts leave the caller's feed.
#[utoipa::path(post, path = "/users/{id}/unfollow", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User to unfollow")),
    responses((status = 200, body = FollowState), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem),
        (status = 503, description = "Database or feed store unavailable; nothing changed, retry", body = Problem)))]
async fn unfollow(
    State(state): State<AppState>,
    caller: AuthUser,
    request_id: RequestId,
    Path(id): Path<String>,
) -> Result<axum::Json<FollowState>, ApiError> {
    let followee = parse_id(&id, "user")?;
    let mut write = WriteTx::begin(&state.db, &state.publisher, caller.id, &request_id).await?;
    if !db::users::exists(write.conn(), followee).await? {
        return Err(ApiError::not_found("user", followee));
    }
    let unfollowed = db::follows::unfollow(write.conn(), caller.id, followee).await?;
    if unfollowed {
        // Before the unfollow commits: pages served from Redis stop showing
        // their posts the moment this answers (see `feed_core::removals`).
        removals::hide(&mut state.feeds.conn().await?, caller.id, followee).await?;
        write
            .record(Event::FollowRemoved(FollowChanged {
                follower_id: caller.id,
                followee_id: followee,
            }))
            .await?;
    }
    write.commit().await?;
    if unfollowed {
        // The caller's open streams drop the author's posts now; the feed
        // itself loses them when the workers get there.
        let note = [feed_core::live::Note::Unfollowed(followee)];
        let told = async {
            let conn = state.feeds.conn().await?;
            let feed = keys::feed(conn.layout(), caller.id);
            feed_core::live::notify(&conn, &[feed], &note).await
        };
        if let Err(e) = told.await {
            tracing::warn!(error = %e, "telling live streams of an unfollow failed");
        }
    }
    Ok(axum::Json(FollowState {
        follower_id: caller.id,
        followee_id: followee,
        following: false,
    }))
}

/// A user in a followers or following list.
#[derive(Debug, Serialize, ToSchema)]
pub struct FollowEntry {
    pub id: Uuid,
    pub handle: String,
    pub display_name: String,
    pub created_at: DateTime<Utc>,
    /// When the follow began.
    pub followed_at: DateTime<Utc>,
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct FollowPage {
    pub items: Vec<FollowEntry>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

async fn follow_page(
    state: &AppState,
    id: &str,
    query: &PageQuery,
    followers: bool,
) -> Result<axum::Json<FollowPage>, ApiError> {
    let user = parse_id(id, "user")?;
    let (limit, cursor) = query.parse()?;
    if !db::users::exists(&state.db, user).await? {
        return Err(ApiError::not_found("user", user));
    }
    let fetch = i64::from(limit) + 1;
    let mut rows = if followers {
        db::follows::followers(&state.db, user, cursor, fetch).await?
    } else {
        db::follows::following(&state.db, user, cursor, fetch).await?
    };
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|(u, at)| cursor_after(*at, u.id)))
        .flatten();
    let items = rows
        .into_iter()
        .map(|(u, followed_at)| FollowEntry {
            id: u.id,
            handle: u.handle,
            display_name: u.display_name,
            created_at: u.created_at,
            followed_at,
        })
        .collect();
    Ok(axum::Json(FollowPage { items, next_cursor }))
}

/// Who follows a user, most recent first.
#[utoipa::path(get, path = "/users/{id}/followers", tag = "users",
    params(("id" = Uuid, Path, description = "User id"), PageQuery),
    responses((status = 200, body = FollowPage), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
async fn followers(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<axum::Json<FollowPage>, ApiError> {
    follow_page(&state, &id, &query, true).await
}

/// Whom a user follows, most recent first.
#[utoipa::path(get, path = "/users/{id}/following", tag = "users",
    params(("id" = Uuid, Path, description = "User id"), PageQuery),
    responses((status = 200, body = FollowPage), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
async fn following(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<axum::Json<FollowPage>, ApiError> {
    follow_page(&state, &id, &query, false).await
}

/// A user's posts, newest first.
#[utoipa::path(get, path = "/users/{id}/posts", tag = "users",
    params(("id" = Uuid, Path, description = "User id"), PageQuery),
    responses((status = 200, body = PostPage), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
async fn user_posts(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<axum::Json<PostPage>, ApiError> {
    let user = parse_id(&id, "user")?;
    let (limit, cursor) = query.parse()?;
    if !db::users::exists(&state.db, user).await? {
        return Err(ApiError::not_found("user", user));
    }
    let mut posts =
        db::posts::by_author(&state.db, user, cursor.map(|c| c.id), i64::from(limit) + 1).await?;
    let more = posts.len() > limit as usize;
    posts.truncate(limit as usize);
    let next_cursor = more
        .then(|| posts.last().map(|p| cursor_after(p.created_at, p.id)))
        .flatten();
    Ok(axum::Json(PostPage {
        items: posts.into_iter().map(PostView::from).collect(),
        next_cursor,
    }))
}
