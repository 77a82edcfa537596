//! The home feed: fanned-out posts from Redis merged with what is pulled at
//! read time (the caller's own posts and followed celebrities'), hydrated
//! and filtered against PostgreSQL.

use std::collections::BTreeMap;

use axum::extract::State;
use chrono::{DateTime, Utc};
use feed_core::events::EventType;
use feed_core::feed_store::{self, FeedPost, Page};
use feed_core::{bus, db, keys};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::posts::PostView;
use super::{PageQuery, cursor_after};
use crate::auth::SignedCaller;
use crate::error::{ApiError, Problem};
use crate::extract::ApiQuery;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(home_feed))
}

/// Where the page came from and how far fan-out has caught up.
#[derive(Debug, Serialize, ToSchema)]
pub struct Freshness {
    /// `cache`: the feed in Redis; `rebuilt`: Redis had no feed, it was
    /// rebuilt from PostgreSQL now; `database`: Redis is unreachable, the
    /// page was read from PostgreSQL; `degraded`: PostgreSQL is unreachable,
    /// the page is Redis' copy (likes as the workers last applied them, deletes
    /// not yet applied may show).
    pub source: &'static str,
    /// Every event committed before this time has been applied to feeds:
    /// the oldest not finished on a stream, or committed and not yet
    /// published (null when Redis cannot tell).
    pub caught_up_to: Option<DateTime<Utc>>,
    /// How far behind now that is, in milliseconds.
    pub lag_ms: Option<i64>,
    /// Feed events published but not yet applied, and events committed but
    /// not yet published (null when unknown).
    pub pending_events: Option<u64>,
}

/// A page of the home feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedPage {
    pub items: Vec<PostView>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
    pub freshness: Freshness,
}

/// A candidate post and whether its source has more beyond what was read.
struct Source {
    entries: Vec<Uuid>,
    more: bool,
}

/// The caller's home feed, newest first.
#[utoipa::path(get, path = "/feed", tag = "feed", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = FeedPage), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 422, body = Problem), (status = 503, body = Problem)))]
async fn home_feed(
    State(state): State<AppState>,
    caller: SignedCaller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<axum::Json<FeedPage>, ApiError> {
    let (limit, cursor) = query.parse()?;
    let limit = limit as usize;
    let before = cursor.map(|c| (c.id, c.at_micros.div_euclid(1000)));
    match page(&state, caller, limit, before).await {
        Ok(page) => Ok(page),
        // The caller could not be checked: the signature is trusted, as
        // `AuthUser` does.
        Err(Unserved::DatabaseDown) => degraded(&state, caller.id, limit, before).await,
        Err(Unserved::Failed(e)) => Err(e),
    }
    .map(axum::Json)
}

/// Why [`page`] served nothing: the decision to fall back on Redis alone
/// rests on this, not on which HTTP error a failure would become.
enum Unserved {
    /// PostgreSQL is unreachable: [`degraded`] may still serve the page.
    DatabaseDown,
    /// Any other failure, as it is answered.
    Failed(ApiError),
}

impl From<sqlx::Error> for Unserved {
    fn from(e: sqlx::Error) -> Unserved {
        if db::is_unavailable(&e) {
            tracing::warn!(error = %e, "PostgreSQL unavailable");
            Unserved::DatabaseDown
        } else {
            Unserved::Failed(e.into())
        }
    }
}

/// A page built from Redis and PostgreSQL together: the pushed feed from
/// Redis, then one query that checks the caller, pulls and hydrates.
async fn page(
    state: &AppState,
    caller: SignedCaller,
    limit: usize,
    before: Option<(Uuid, i64)>,
) -> Result<FeedPage, Unserved> {
    let threshold = state.config.feed.celebrity_threshold;
    let limits = state.config.feed.limits();
    // Over-read: entries of deleted posts or unfollowed authors drop out
    // when hydrated.
    let want = limit + limit / 2 + 4;

    let (pushed, source, rebuilt) = match read_or_begin(state, caller.id, before, want).await {
        Ok(Cached::Page(page)) => (page, "cache", None),
        Ok(Cached::Rebuilding(started)) => {
            let all = db::feed::fanned_out(&state.db, caller.id, threshold, limits.max_len as i64)
                .await?;
            let scored: Vec<FeedPost> = all
                .iter()
                .map(|e| FeedPost {
                    id: e.post_id,
                    author: e.author_id,
                    score: feed_store::score(e.created_at),
                })
                .collect();
            (
                from_database(all, before, want),
                "rebuilt",
                Some((started, scored)),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "Redis unavailable; reading the feed from PostgreSQL");
            let all = db::feed::fanned_out(&state.db, caller.id, threshold, limits.max_len as i64)
                .await?;
            (from_database(all, before, want), "database", None)
        }
    };
    let rows = db::feed::page(
        &state.db,
        caller.id,
        threshold,
        before.map(|b| b.0),
        want as i64,
        &pushed.entries,
    )
    .await?;
    if !rows.viewer_exists {
        return Err(Unserved::Failed(ApiError::account_gone()));
    }
    // Written back only now, so a deleted account's token cannot leave a
    // built (empty) feed behind, only its placeholder, which expires.
    if let Some((started, scored)) = rebuilt
        && let Ok(mut conn) = state.feeds.conn().await
    {
        match feed_store::rebuild(&mut conn, caller.id, &started, &scored, limits).await {
            Ok(true) => {}
            Ok(false) => tracing::info!(
                "the feed was lost or rebuilt by another read meanwhile; not written"
            ),
            Err(e) => tracing::warn!(error = %e, "rebuilding a feed in Redis failed"),
        }
    }
    state.metrics.feed_reads.with_label_values(&[source]).inc();

    // Nothing older than the oldest entry read from a source that has more
    // may be returned: that source's unread entries could be newer.
    let pushed_horizon = pushed
        .more
        .then(|| pushed.entries.iter().min().copied())
        .flatten();
    let pulled_horizon = (rows.pulled == want)
        .then_some(rows.oldest_pulled)
        .flatten();
    let horizon = pushed_horizon.max(pulled_horizon);
    let ordered: BTreeMap<std::cmp::Reverse<Uuid>, db::posts::Post> = rows
        .visible
        .into_iter()
        .filter(|p| horizon.is_none_or(|h| p.id >= h))
        .map(|p| (std::cmp::Reverse(p.id), p))
        .collect();
    let more_after_page = ordered.len() > limit || horizon.is_some();
    let items: Vec<PostView> = ordered
        .into_values()
        .take(limit)
        .map(PostView::from)
        .collect();
    let next_cursor = if more_after_page {
        match items.last() {
            Some(last) => Some(cursor_after(last.created_at, last.id)),
            // Every candidate dropped out but more exist: resume past them.
            None => {
                horizon.map(|h| cursor_after(feed_core::ids::time_of(h).unwrap_or_default(), h))
            }
        }
    } else {
        None
    };
    Ok(FeedPage {
        items,
        next_cursor,
        freshness: freshness(state, source).await,
    })
}

/// While PostgreSQL is down: the cached feed with the posts' cached copies.
/// Nothing is filtered against the truth, so a post deleted or unfollowed
/// since the workers last ran may show; likes are as they last applied them.
async fn degraded(
    state: &AppState,
    user: Uuid,
    limit: usize,
    before: Option<(Uuid, i64)>,
) -> Result<FeedPage, ApiError> {
    let unavailable = || ApiError::Unavailable("the database");
    let Ok(Some(cached)) = read_cached(state, user, before, limit).await else {
        return Err(unavailable());
    };
    let mut conn = state.feeds.conn().await.map_err(|_| unavailable())?;
    let posts = feed_store::cached_posts(&mut conn, &cached.entries)
        .await
        .map_err(|_| unavailable())?;
    tracing::warn!("PostgreSQL unavailable; serving a feed from Redis alone");
    state
        .metrics
        .feed_reads
        .with_label_values(&["degraded"])
        .inc();
    let next_cursor = cached
        .more
        .then(|| {
            cached
                .entries
                .last()
                .map(|id| cursor_after(feed_core::ids::time_of(*id).unwrap_or_default(), *id))
        })
        .flatten();
    let items = posts.into_iter().map(PostView::from).collect();
    Ok(FeedPage {
        items,
        next_cursor,
        freshness: freshness(state, "degraded").await,
    })
}

/// What Redis had for a page.
enum Cached {
    Page(Source),
    /// No built feed: a rebuild is begun, so fan-out writes to the feed
    /// from now on, before PostgreSQL is read (a post committed after that
    /// read still reaches it).
    Rebuilding(feed_store::Rebuild),
}

/// Reads the cached feed, or begins rebuilding it.
async fn read_or_begin(
    state: &AppState,
    user: Uuid,
    before: Option<(Uuid, i64)>,
    want: usize,
) -> redis::RedisResult<Cached> {
    Ok(match read_cached(state, user, before, want).await? {
        Some(page) => Cached::Page(page),
        None => Cached::Rebuilding(
            feed_store::begin_rebuild(&mut state.feeds.conn().await?, user).await?,
        ),
    })
}

/// Reads the cached feed; `Ok(None)` when it must be rebuilt.
async fn read_cached(
    state: &AppState,
    user: Uuid,
    before: Option<(Uuid, i64)>,
    want: usize,
) -> redis::RedisResult<Option<Source>> {
    let mut conn = state.feeds.conn().await?;
    match feed_store::read(&mut conn, user, before, want, state.config.feed.limits()).await? {
        Page::NotBuilt => Ok(None),
        Page::Entries { posts, more } => Ok(Some(Source {
            entries: posts.into_iter().map(|(id, _)| id).collect(),
            more,
        })),
    }
}

/// The page of a feed read from PostgreSQL, as Redis would have served it.
fn from_database(all: Vec<db::feed::Entry>, before: Option<(Uuid, i64)>, want: usize) -> Source {
    let mut entries: Vec<Uuid> = all
        .into_iter()
        .map(|e| e.post_id)
        .filter(|id| before.is_none_or(|(b, _)| *id < b))
        .collect();
    let more = entries.len() > want;
    entries.truncate(want);
    Source { entries, more }
}

async fn freshness(state: &AppState, source: &'static str) -> Freshness {
    let now = Utc::now();
    let unknown = Freshness {
        source,
        caught_up_to: None,
        lag_ms: None,
        pending_events: None,
    };
    let Ok(stats) = state.stream_stats().await else {
        return unknown;
    };
    // Likes do not change feeds; the other streams do.
    let feed_streams: Vec<String> = [
        EventType::PostCreated,
        EventType::PostDeleted,
        EventType::FollowCreated,
        EventType::FollowRemoved,
    ]
    .map(keys::stream)
    .into();
    let feed_streams: Vec<_> = stats
        .iter()
        .filter(|s| feed_streams.contains(&s.stream))
        .collect();
    let mut pending = bus::total_lag(feed_streams.iter().copied())
        .map(|lag| lag + feed_streams.iter().map(|s| s.pending).sum::<u64>());
    let oldest = feed_streams
        .iter()
        .filter_map(|s| s.oldest_unfinished_ms)
        .min();
    // Committed events not on a stream yet (Redis was down, or the relay
    // has yet to publish them) are not applied either.
    let (unpublished, oldest_unpublished) = state.publisher.unpublished().get();
    pending = pending.map(|p| p + unpublished.max(0) as u64);
    let oldest_unpublished = oldest_unpublished.map(|t| t.timestamp_millis());
    let oldest = match (oldest, oldest_unpublished) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let caught_up_to = match oldest {
        Some(ms) => DateTime::from_timestamp_millis(ms),
        None => Some(now),
    };
    Freshness {
        source,
        lag_ms: caught_up_to.map(|t| (now - t).num_milliseconds().max(0)),
        caught_up_to,
        pending_events: pending,
    }
}
