//! Posts and likes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use feed_core::events::{Envelope, Event, LikeChanged, PostCreated, PostDeleted};
use feed_core::validate;
use feed_core::{db, feed_store, removals};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::caller_gone;
use crate::audit::{self, Action, Origin};
use crate::auth::{AuthUser, SignedCaller};
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, RequestId, parse_id};
use crate::state::AppState;
use crate::write_tx::WriteTx;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_post))
        .routes(routes!(get_post, delete_post))
        .routes(routes!(get_feed_post))
        .routes(routes!(like, unlike))
}

/// A post.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PostView {
    pub id: Uuid,
    pub author_id: Uuid,
    pub author_handle: String,
    pub content: String,
    pub created_at: DateTime<Utc>,
    pub like_count: i64,
}

/// The one field-by-field copy: the API shows a post as it is cached, and
/// a post read from PostgreSQL goes through the same conversion
/// (`feed_core` maps it to its cached shape).
impl From<feed_store::CachedPost> for PostView {
    fn from(p: feed_store::CachedPost) -> Self {
        PostView {
            id: p.id,
            author_id: p.author_id,
            author_handle: p.author_handle,
            content: p.content,
            created_at: p.created_at,
            like_count: p.like_count,
        }
    }
}

impl From<db::posts::Post> for PostView {
    fn from(p: db::posts::Post) -> Self {
        feed_store::CachedPost::from(p).into()
    }
}

/// A page of posts, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct PostPage {
    pub items: Vec<PostView>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

/// A new post.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePost {
    /// The text, as [`validate::content`] accepts it (documented by
    /// `content_schema`).
    #[schema(schema_with = content_schema)]
    pub content: String,
}

/// `content` of a new post, its limit from [`validate::CONTENT_MAX`] (utoipa's
/// `max_length` takes only a literal).
fn content_schema() -> Object {
    let max = validate::CONTENT_MAX;
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!(
            "1 to {max} characters, not all blank; no control characters other\nthan newlines and tabs."
        )))
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(
            r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*\S[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$",
        ))
        .build()
}

/// Publishes a post. The author sees it in their feed at once; followers
/// once the workers have fanned it out.
#[utoipa::path(post, path = "/posts", tag = "posts", security(("bearer" = [])), request_body = CreatePost,
    responses((status = 201, body = PostView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem),
        (status = 503, description = "Database unavailable; retry", body = Problem)))]
async fn create_post(
    State(state): State<AppState>,
    caller: SignedCaller,
    request_id: RequestId,
    ApiJson(body): ApiJson<CreatePost>,
) -> Result<(StatusCode, axum::Json<PostView>), ApiError> {
    let content = validate::content(&body.content)?;
    let (id, created_at) = feed_core::ids::new_with_time();
    let event = Event::PostCreated(PostCreated {
        post_id: id,
        author_id: caller.id,
        created_at,
    });
    let envelope = Envelope::new(&event, caller.id, Utc::now(), request_id.0);
    // The post and its event in one statement, shared with the posts of
    // other requests under load: atomic, and one commit for all.
    let post = state
        .posts
        .insert(db::posts::NewPost {
            id,
            author_id: caller.id,
            content,
            created_at,
            event: envelope.clone(),
        })
        .await
        .map_err(caller_gone)?;
    state.publisher.publish(vec![envelope]);
    show_to_author(&state, &post).await;
    Ok((StatusCode::CREATED, axum::Json(post.into())))
}

/// Puts a new post in its author's own feed, and caches it, before the
/// create answers, so the author's next page shows it from Redis alone.
/// Should Redis fail here, the post is committed all the same: the workers
/// put it there, and until they do, pages served from Redis miss it (pages
/// served while Redis is unreachable come from PostgreSQL and show it).
async fn show_to_author(state: &AppState, post: &db::posts::Post) {
    let copy = feed_store::CachedPost::from(post.clone());
    let limits = state.config.feed.limits();
    let written =
        async { feed_store::show_to_author(&state.feeds.conn().await?, &copy, limits).await };
    if let Err(e) = written.await {
        tracing::warn!(error = %e, "putting a new post in its author's feed failed; the workers will");
    }
}

async fn load_post(state: &AppState, id: &str) -> Result<axum::Json<PostView>, ApiError> {
    let id = parse_id(id, "post")?;
    let post = db::posts::by_id(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("post", id))?;
    Ok(axum::Json(post.into()))
}

/// A post.
#[utoipa::path(get, path = "/posts/{id}", tag = "posts",
    params(("id" = Uuid, Path, description = "Post id")),
    responses((status = 200, body = PostView), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn get_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<PostView>, ApiError> {
    load_post(&state, &id).await
}

/// A post (the same as `/posts/{id}`, under the feed's prefix).
#[utoipa::path(get, path = "/feed/posts/{id}", tag = "feed",
    params(("id" = Uuid, Path, description = "Post id")),
    responses((status = 200, body = PostView), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn get_feed_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<PostView>, ApiError> {
    load_post(&state, &id).await
}

/// Deletes one of the caller's posts; it leaves every feed.
#[utoipa::path(delete, path = "/posts/{id}", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Post id")),
    responses((status = 204, description = "Deleted"), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, description = "Not the author", body = Problem), (status = 404, body = Problem),
        (status = 503, description = "Database or feed store unavailable; nothing deleted, retry", body = Problem)))]
async fn delete_post(
    State(state): State<AppState>,
    caller: AuthUser,
    origin: Origin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "post")?;
    let mut write =
        WriteTx::begin(&state.db, &state.publisher, caller.id, &origin.request_id).await?;
    let (author, _) = db::posts::lock(write.conn(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("post", id))?;
    if author != caller.id {
        return Err(ApiError::Forbidden(
            "only the author may delete a post".into(),
        ));
    }
    db::posts::delete(write.conn(), id).await?;
    // Before the delete commits: pages served from Redis stop showing the
    // post the moment this answers (see `feed_core::removals`).
    removals::withdraw(&state.feeds.conn().await?, &[id]).await?;
    write
        .record(Event::PostDeleted(PostDeleted {
            post_id: id,
            author_id: author,
        }))
        .await?;
    audit::record(
        write.conn(),
        Action::PostDeleted,
        Some(caller.id),
        Some(id.to_string()),
        &origin,
    )
    .await?;
    write.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether the caller likes a post, after a like or unlike.
#[derive(Debug, Serialize, ToSchema)]
pub struct LikeState {
    pub post_id: Uuid,
    pub liked: bool,
    pub like_count: i64,
}

async fn set_like(
    state: &AppState,
    caller: AuthUser,
    request_id: &RequestId,
    id: &str,
    liked: bool,
) -> Result<axum::Json<LikeState>, ApiError> {
    let id = parse_id(id, "post")?;
    let mut write = WriteTx::begin(&state.db, &state.publisher, caller.id, request_id).await?;
    if db::posts::lock(write.conn(), id).await?.is_none() {
        return Err(ApiError::not_found("post", id));
    }
    let changed = if liked {
        db::posts::like(write.conn(), id, caller.id)
            .await
            .map_err(caller_gone)?
    } else {
        db::posts::unlike(write.conn(), id, caller.id).await?
    };
    if changed {
        let change = LikeChanged {
            post_id: id,
            user_id: caller.id,
        };
        let event = if liked {
            Event::PostLiked(change)
        } else {
            Event::PostUnliked(change)
        };
        write.record(event).await?;
    }
    let like_count = db::posts::by_id(write.conn(), id)
        .await?
        .map_or(0, |p| p.like_count);
    write.commit().await?;
    // So the caller's next page shows their like; the workers keep the
    // count for everyone else (a racing write is settled by them).
    if let Ok(mut conn) = state.feeds.conn().await
        && let Err(e) = feed_store::set_like_count(&mut conn, id, like_count).await
    {
        tracing::warn!(error = %e, "caching a like count failed; the workers will");
    }
    Ok(axum::Json(LikeState {
        post_id: id,
        liked,
        like_count,
    }))
}

/// Likes a post (idempotent).
#[utoipa::path(post, path = "/posts/{id}/like", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Post id")),
    responses((status = 200, body = LikeState), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
async fn like(
    State(state): State<AppState>,
    caller: AuthUser,
    request_id: RequestId,
    Path(id): Path<String>,
) -> Result<axum::Json<LikeState>, ApiError> {
    set_like(&state, caller, &request_id, &id, true).await
}

/// Takes back a like (idempotent).
#[utoipa::path(delete, path = "/posts/{id}/like", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Post id")),
    responses((status = 200, body = LikeState), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
async fn unlike(
    State(state): State<AppState>,
    caller: AuthUser,
    request_id: RequestId,
    Path(id): Path<String>,
) -> Result<axum::Json<LikeState>, ApiError> {
    set_like(&state, caller, &request_id, &id, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A post cached by a worker of an earlier version still reads, and is
    /// shown with the same fields as one read from PostgreSQL.
    #[test]
    fn a_cached_post_reads_as_the_post_it_copies() {
        let written = r#"{"id":"01970000-0000-7000-8000-000000000001","author_id":"01970000-0000-7000-8000-000000000002","author_handle":"ada","content":"hello","created_at":"2025-06-01T12:00:00Z","like_count":3}"#;
        let cached: feed_store::CachedPost = serde_json::from_str(written).unwrap();
        let stored = db::posts::Post {
            id: cached.id,
            author_id: cached.author_id,
            author_handle: "ada".into(),
            content: "hello".into(),
            like_count: 3,
            created_at: cached.created_at,
        };
        let from_cache = serde_json::to_value(PostView::from(cached)).unwrap();
        let from_db = serde_json::to_value(PostView::from(stored)).unwrap();
        assert_eq!(from_cache, from_db);
        assert_eq!(
            from_cache,
            serde_json::from_str::<serde_json::Value>(written).unwrap()
        );
    }
}
