//! A page served from the feeds' Redis: the home feed, the timelines of
//! the celebrities it pulls, and the posts' cached copies. PostgreSQL is
//! asked only for what Redis lacks: posts with no copy (new, expired, or
//! being deleted) and timelines not built.
//!
//! Why such a page shows what PostgreSQL would (the guarantees are in
//! `docs/architecture.md`, "Pages from Redis alone"):
//!
//! - a delete withdraws its post before it commits, dropping the copy; a
//!   post with no copy is hydrated from PostgreSQL, which knows the delete;
//! - an unfollow hides the author from the reader before it commits, until
//!   the workers have taken the author's posts out of the feed;
//! - the author's own post is in their feed and cached before the create
//!   answers (and, should that fail, hydrated from PostgreSQL once fanned
//!   out);
//! - a feed or a copy from before a Redis restart counts as missing.

use std::collections::BTreeSet;

use feed_core::db;
use feed_core::feed_store::{self, FeedPost, Page, Timeline};
use uuid::Uuid;

use super::{Source, Unserved};
use crate::routes::posts::PostView;
use crate::state::AppState;

/// Why a page could not be served from Redis.
pub(super) enum Unwarm {
    /// The feeds' Redis failed half-way: PostgreSQL serves the page.
    RedisDown,
    /// PostgreSQL, asked for what Redis lacks, failed: as any page.
    Unserved(Unserved),
}

impl From<redis::RedisError> for Unwarm {
    fn from(e: redis::RedisError) -> Unwarm {
        tracing::warn!(error = %e, "Redis unavailable; reading the feed from PostgreSQL");
        Unwarm::RedisDown
    }
}

impl From<sqlx::Error> for Unwarm {
    fn from(e: sqlx::Error) -> Unwarm {
        Unwarm::Unserved(e.into())
    }
}

/// What a page asks of each source.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wanted {
    /// The cursor: a post id and its score.
    pub(super) before: Option<(Uuid, i64)>,
    /// Entries to read from each source (over-read, as some drop out).
    pub(super) want: usize,
    /// Posts on the page.
    pub(super) limit: usize,
}

/// The candidates of a page served from Redis, hydrated.
pub(super) struct Served {
    /// Where the candidates came from, for the page's horizon.
    pub(super) sources: Vec<Source>,
    /// The candidates the reader may see.
    pub(super) posts: Vec<PostView>,
    /// Whether PostgreSQL was asked for anything.
    pub(super) asked_database: bool,
}

/// Merges the pushed feed with the timelines of the followed celebrities
/// not hidden, and hydrates the newest `limit + 1` candidates the reader may
/// see (one more than the page, to tell whether another follows) from their
/// copies.
pub(super) async fn serve(
    state: &AppState,
    viewer: Uuid,
    pushed: Source,
    pulls: &[Uuid],
    hidden: &[Uuid],
    wanted: Wanted,
) -> Result<Served, Unwarm> {
    let Wanted {
        before,
        want,
        limit,
    } = wanted;
    let mut asked_database = false;
    let mut sources = vec![pushed];
    let pulled = pulls.iter().filter(|author| !hidden.contains(author));
    let timelines = futures_util::future::try_join_all(
        pulled.map(|author| timeline(state, *author, before, want)),
    )
    .await?;
    for (source, rebuilt) in timelines {
        asked_database |= rebuilt;
        sources.push(source);
    }

    // The candidates the page can show, newest first: hydrating the rest
    // would be work thrown away.
    let horizon = super::horizon(&sources);
    let mut ids: Vec<Uuid> = sources
        .iter()
        .flat_map(|s| s.entries.iter().copied())
        .filter(|id| horizon.is_none_or(|h| *id >= h))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .rev()
        .collect();
    let conn = state.feeds.conn().await?;
    let mut posts = Vec::with_capacity(limit + 1);
    while posts.len() <= limit && !ids.is_empty() {
        let rest = ids.split_off((limit + 1 - posts.len()).min(ids.len()));
        let chunk = std::mem::replace(&mut ids, rest);
        let copies = feed_store::copies(&conn, &chunk).await?;
        let mut missing = Vec::new();
        for (id, copy) in chunk.into_iter().zip(copies) {
            match copy {
                Some(copy) if !hidden.contains(&copy.author_id) => posts.push(PostView::from(copy)),
                Some(_) => {}
                None => missing.push(id),
            }
        }
        if !missing.is_empty() {
            asked_database = true;
            let found = db::feed::visible(&state.db, viewer, &missing).await?;
            let copies: Vec<feed_store::CachedPost> =
                found.iter().cloned().map(Into::into).collect();
            // So the next page finds them; a post deleted meanwhile is
            // refused by the cache (see `feed_core::removals`).
            if let Err(e) =
                feed_store::cache_posts(&conn, &copies, state.config.feed.limits()).await
            {
                tracing::warn!(error = %e, "caching a page's posts failed");
            }
            posts.extend(found.into_iter().map(PostView::from));
        }
    }
    Ok(Served {
        sources,
        posts,
        asked_database,
    })
}

/// A page of a celebrity's timeline, rebuilt from PostgreSQL if Redis does
/// not hold it (then `true`).
pub(super) async fn timeline(
    state: &AppState,
    author: Uuid,
    before: Option<(Uuid, i64)>,
    want: usize,
) -> Result<(Source, bool), Unwarm> {
    let limits = state.config.feed.limits();
    let mut conn = state.feeds.conn().await?;
    let feed = Timeline::Author(author);
    if let Page::Entries { posts, more } =
        feed_store::read(&mut conn, feed, before, want, limits).await?
    {
        let entries = posts.into_iter().map(|(id, _)| id).collect();
        return Ok((Source { entries, more }, false));
    }
    let started = feed_store::begin_rebuild(&mut conn, feed).await?;
    let recent = db::feed::recent_by_author(&state.db, author, limits.max_len as i64).await?;
    let posts: Vec<FeedPost> = recent
        .iter()
        .map(|p| FeedPost {
            id: p.post_id,
            author,
            score: feed_store::score(p.created_at),
        })
        .collect();
    if let Err(e) = feed_store::rebuild(&mut conn, feed, &started, &posts, &[], limits).await {
        tracing::warn!(error = %e, "rebuilding a timeline in Redis failed");
    }
    let source = Source::older_than(recent.into_iter().map(|p| p.post_id), before, want);
    Ok((source, true))
}
