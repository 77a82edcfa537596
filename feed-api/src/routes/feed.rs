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

mod stream;
mod warm;

use super::posts::PostView;
use super::{PageQuery, cursor_after};
use crate::auth::SignedCaller;
use crate::error::{ApiError, Problem};
use crate::extract::ApiQuery;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(home_feed))
        .routes(routes!(stream::stream))
        .routes(routes!(stream::ticket))
}

/// Where the page came from and how far fan-out has caught up.
#[derive(Debug, Serialize, ToSchema)]
pub struct Freshness {
    /// `cache`: the feed and every post from Redis alone; `hydrated`: the
    /// feed from Redis, some posts (new or changed) from PostgreSQL;
    /// `rebuilt`: Redis had no feed, it was
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

/// Candidate posts read from one source of a page (the home feed, a
/// followed celebrity's timeline, PostgreSQL's pull), newest first, and
/// whether the source has more beyond them.
pub(super) struct Source {
    pub(super) entries: Vec<Uuid>,
    pub(super) more: bool,
}

impl Source {
    /// The first `want` of `newest_first` (ids, newest first) older than
    /// the cursor `before`.
    fn older_than(
        newest_first: impl IntoIterator<Item = Uuid>,
        before: Option<(Uuid, i64)>,
        want: usize,
    ) -> Source {
        let mut entries: Vec<Uuid> = newest_first
            .into_iter()
            .filter(|id| before.is_none_or(|(b, _)| *id < b))
            .collect();
        let more = entries.len() > want;
        entries.truncate(want);
        Source { entries, more }
    }
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

/// A page of the home feed: from Redis alone when Redis holds the feed
/// ([`warm`]), otherwise rebuilt from PostgreSQL (and written back), or read
/// from PostgreSQL when Redis is unreachable.
async fn page(
    state: &AppState,
    caller: SignedCaller,
    limit: usize,
    before: Option<(Uuid, i64)>,
) -> Result<FeedPage, Unserved> {
    let limits = state.config.feed.limits();
    // Over-read: entries of deleted posts or unfollowed authors drop out
    // when hydrated.
    let want = limit + limit / 2 + 4;
    let home = match state.feeds.conn().await {
        Ok(mut conn) => feed_store::read_home(&mut conn, caller.id, before, want, limits).await,
        Err(e) => Err(e),
    };
    match home {
        Ok(home) => match home.page {
            Page::Entries { posts, more } => {
                let pushed = Source {
                    entries: posts.into_iter().map(|(id, _)| id).collect(),
                    more,
                };
                let wanted = warm::Wanted {
                    before,
                    want,
                    limit,
                };
                let served =
                    warm::serve(state, caller.id, pushed, &home.pulls, &home.hidden, wanted).await;
                match served {
                    Ok(served) => {
                        let source = if served.asked_database {
                            "hydrated"
                        } else {
                            "cache"
                        };
                        Ok(assemble(state, source, &served.sources, served.posts, limit).await)
                    }
                    // Lost Redis half-way: PostgreSQL has it all.
                    Err(warm::Unwarm::RedisDown) => {
                        from_database(state, caller, None, limit, before, want).await
                    }
                    Err(warm::Unwarm::Unserved(e)) => Err(e),
                }
            }
            // No built feed: a rebuild is begun, so fan-out writes to the
            // feed from now on, before PostgreSQL is read (a post committed
            // after that read still reaches it).
            Page::NotBuilt => {
                let started = match state.feeds.conn().await {
                    Ok(mut conn) => feed_store::begin_rebuild(&mut conn, caller.id).await,
                    Err(e) => Err(e),
                };
                match started {
                    Ok(started) => {
                        from_database(state, caller, Some(started), limit, before, want).await
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Redis unavailable; reading the feed from PostgreSQL");
                        from_database(state, caller, None, limit, before, want).await
                    }
                }
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "Redis unavailable; reading the feed from PostgreSQL");
            from_database(state, caller, None, limit, before, want).await
        }
    }
}

/// A page read from PostgreSQL in one query: the caller checked, the
/// pushed feed read as fan-out would have written it, the pulled posts,
/// everything hydrated. With `started`, the feed is then written back to
/// Redis, and the page's posts cached, so the next read is warm.
async fn from_database(
    state: &AppState,
    caller: SignedCaller,
    started: Option<feed_store::Rebuild>,
    limit: usize,
    before: Option<(Uuid, i64)>,
    want: usize,
) -> Result<FeedPage, Unserved> {
    let threshold = state.config.feed.celebrity_threshold;
    let limits = state.config.feed.limits();
    let all = db::feed::fanned_out(&state.db, caller.id, threshold, limits.max_len as i64).await?;
    let pulls = match started {
        Some(_) => db::feed::followed_celebrities(&state.db, caller.id, threshold).await?,
        None => Vec::new(),
    };
    let scored: Vec<FeedPost> = all
        .iter()
        .map(|e| FeedPost {
            id: e.post_id,
            author: e.author_id,
            score: feed_store::score(e.created_at),
        })
        .collect();
    let pushed = Source::older_than(all.into_iter().map(|e| e.post_id), before, want);
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
    let source = if started.is_some() {
        "rebuilt"
    } else {
        "database"
    };
    // Written back only now, so a deleted account's token cannot leave a
    // built (empty) feed behind, only its placeholder, which expires.
    if let Some(started) = started
        && let Ok(mut conn) = state.feeds.conn().await
    {
        match feed_store::rebuild(&mut conn, caller.id, &started, &scored, &pulls, limits).await {
            Ok(true) => {}
            Ok(false) => tracing::info!(
                "the feed was lost or rebuilt by another read meanwhile; not written"
            ),
            Err(e) => tracing::warn!(error = %e, "rebuilding a feed in Redis failed"),
        }
        let copies: Vec<feed_store::CachedPost> =
            rows.visible.iter().cloned().map(Into::into).collect();
        if let Err(e) = feed_store::cache_posts(&conn, &copies, limits).await {
            tracing::warn!(error = %e, "caching a page's posts failed");
        }
    }
    let pulled = Source {
        entries: rows.oldest_pulled.into_iter().collect(),
        more: rows.pulled == want,
    };
    let posts = rows.visible.into_iter().map(PostView::from).collect();
    Ok(assemble(state, source, &[pushed, pulled], posts, limit).await)
}

/// Nothing older than the oldest entry read from a source that has more
/// may be returned: that source's unread entries could be newer.
fn horizon(sources: &[Source]) -> Option<Uuid> {
    sources
        .iter()
        .filter(|s| s.more)
        .filter_map(|s| s.entries.iter().min().copied())
        .max()
}

/// The page of `limit` posts from the visible candidates of `sources`,
/// newest first, and the cursor after it.
async fn assemble(
    state: &AppState,
    source: &'static str,
    sources: &[Source],
    visible: Vec<PostView>,
    limit: usize,
) -> FeedPage {
    state.metrics.feed_reads.with_label_values(&[source]).inc();
    let horizon = horizon(sources);
    let ordered: BTreeMap<std::cmp::Reverse<Uuid>, PostView> = visible
        .into_iter()
        .filter(|p| horizon.is_none_or(|h| p.id >= h))
        .map(|p| (std::cmp::Reverse(p.id), p))
        .collect();
    let more_after_page = ordered.len() > limit || horizon.is_some();
    let items: Vec<PostView> = ordered.into_values().take(limit).collect();
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
    FeedPage {
        items,
        next_cursor,
        freshness: freshness(state, source).await,
    }
}

/// While PostgreSQL is down: the cached feed with the posts' cached copies,
/// leaving out hidden authors. Posts with no copy are left out too; a feed
/// not built in this epoch cannot be served.
async fn degraded(
    state: &AppState,
    user: Uuid,
    limit: usize,
    before: Option<(Uuid, i64)>,
) -> Result<FeedPage, ApiError> {
    let unavailable = |_| ApiError::Unavailable("the database");
    let mut conn = state.feeds.conn().await.map_err(unavailable)?;
    let limits = state.config.feed.limits();
    let home = feed_store::read_home(&mut conn, user, before, limit, limits)
        .await
        .map_err(unavailable)?;
    let Page::Entries { posts, more } = home.page else {
        return Err(ApiError::Unavailable("the database"));
    };
    let ids: Vec<Uuid> = posts.iter().map(|(id, _)| *id).collect();
    let copies = feed_store::cached_posts(&conn, &ids)
        .await
        .map_err(unavailable)?;
    tracing::warn!("PostgreSQL unavailable; serving a feed from Redis alone");
    let posts = copies
        .into_iter()
        .filter(|p| !home.hidden.contains(&p.author_id))
        .map(PostView::from)
        .collect();
    let pushed = Source { entries: ids, more };
    Ok(assemble(state, "degraded", &[pushed], posts, limit).await)
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
