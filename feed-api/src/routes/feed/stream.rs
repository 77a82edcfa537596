//! The live home feed: `GET /feed/stream`, Server-Sent Events.
//!
//! A stream first sends what the feed gained after the client's cursor
//! (`Last-Event-ID` or `?cursor=`), read as `GET /feed` reads it, then
//! every change as the workers (or the API, for the reader's own posts)
//! apply it. The hub ([`crate::live`]) is subscribed *before* the feed is
//! read, so a post added meanwhile is heard; it is sent once, as the stream
//! remembers what it sent.
//!
//! Each post's SSE `id:` is a feed cursor: the newest position the stream
//! has sent, so a post that reaches the feed late (out of creation order)
//! does not move a resuming client back. A browser's `EventSource` cannot
//! send headers, so it authenticates with a single-use ticket from
//! `POST /feed/stream/tickets`: the access token never appears in a URL.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use feed_core::cursor::Cursor;
use feed_core::keys::Layout;
use feed_core::live::{self, Note};
use feed_core::{db, feed_store, keys, validate};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{PostView, SignedCaller, page};
use crate::auth::AuthUser;
use crate::error::{ApiError, Problem};
use crate::extract::ApiQuery;
use crate::live::{Ending, Refused, Subscription, reason};
use crate::state::AppState;

/// Posts a resuming stream replays at most; a client further behind is
/// told to reload (`event: reset`): replaying more would hold the stream's
/// first event for long and a page is the better way to catch up.
const BACKLOG_MAX: usize = 500;
/// Post ids a stream remembers having sent, to skip a note of one it
/// already sent (the backlog and the live notes overlap at the seam, and a
/// retried fan-out may publish again). Notes arrive within seconds of the
/// backlog's read, so a few hundred newest ids cover the seam.
const REMEMBERED: usize = 1024;
/// A newly followed celebrity's posts a stream sends: a page's worth, as a
/// follow's backfill brings recent posts of an author who is fanned out.
const BACKFILL: usize = validate::PAGE_DEFAULT as usize;
/// Notes the hub may queue for one stream while it hydrates or waits for
/// its client: one script call publishes a whole backfill at once
/// (FANOUT_BACKFILL_POSTS, 100 by default), which must not look like a slow
/// client. A stream whose notes overflow this is dropped. The queue grows
/// as used, so an idle stream does not hold it.
const NOTES_QUEUED: usize = 1024;
/// Notes hydrated together: one `MGET` for a burst.
const NOTES_PER_BATCH: usize = 64;
/// Bounds on how often an open stream reads its feed to keep it in Redis
/// (a third of the feed's TTL): at least a second apart, and at least
/// hourly, which costs one page read of one post.
const KEEP_MIN: Duration = Duration::from_secs(1);
const KEEP_MAX: Duration = Duration::from_secs(3600);
/// The reconnection delay a stream ended by the server suggests: a second
/// spreads the reconnects of a replica's clients over a moment.
const RETRY: Duration = Duration::from_secs(1);

/// `?ticket=&cursor=` of a stream.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct StreamQuery {
    /// A ticket from `POST /feed/stream/tickets` (single use), for clients
    /// that cannot send an `Authorization` header (a browser's
    /// `EventSource`).
    ticket: Option<String>,
    /// Resume after this cursor (an event's `id`, or a page's item), as
    /// `Last-Event-ID` does; the header wins when both are sent.
    cursor: Option<String>,
}

/// A single-use ticket that opens one stream.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct StreamTicket {
    /// Pass as `?ticket=` to `GET /feed/stream`.
    ticket: String,
    /// Seconds the ticket stays valid unless used.
    expires_in_secs: u64,
}

/// The data of a `removed` event: a post left the feed (`post_id`, it was
/// deleted), or every post of an author did (`author_id`, unfollowed).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct FeedRemoval {
    #[serde(skip_serializing_if = "Option::is_none")]
    post_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    author_id: Option<Uuid>,
}

/// A ticket for one `GET /feed/stream`, valid for a few seconds.
#[utoipa::path(post, path = "/feed/stream/tickets", tag = "feed", security(("bearer" = [])),
    responses((status = 201, body = StreamTicket), (status = 401, body = Problem), (status = 503, body = Problem)))]
pub(super) async fn ticket(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<(StatusCode, axum::Json<StreamTicket>), ApiError> {
    let ticket = crate::auth::new_refresh_token();
    let ttl = state.config.stream.stream_ticket_ttl_secs;
    let mut conn = state.feeds.conn().await?;
    redis::cmd("SET")
        .arg(keys::stream_ticket(&ticket))
        .arg(caller.id.to_string())
        .arg("EX")
        .arg(ttl)
        .query_async::<()>(&mut conn)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(StreamTicket {
            ticket,
            expires_in_secs: ttl,
        }),
    ))
}

/// The caller's home feed as it changes, as Server-Sent Events.
///
/// Events: `post` (data: a post as `GET /feed` shows it; `id`: the cursor
/// to resume after), `removed` (data: `{"post_id"}` of a deleted post or
/// `{"author_id"}` of an unfollowed author), `ready` (the replay
/// after the cursor is sent; live from here), `reset` (the client is too
/// far behind to replay: it reads `GET /feed` instead; live follows),
/// `bye` (the server ends the stream: reconnect, resuming by cursor, after
/// the `retry` delay). Comments are heartbeats.
#[utoipa::path(get, path = "/feed/stream", tag = "feed", security(("bearer" = [])), params(StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this cursor (sent by `EventSource` when it reconnects).")),
    responses((status = 200, content_type = "text/event-stream", body = String,
            description = "Server-Sent Events: `post`, `removed`, `ready`, `reset` and `bye`."),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 429, body = Problem),
        (status = 503, body = Problem)))]
pub(super) async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let resume = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("\u{0}").to_owned())
        .or(query.cursor)
        .filter(|raw| !raw.is_empty())
        .map(|raw| Cursor::decode(&raw).map_err(|e| ApiError::BadRequest(e.to_string())))
        .transpose()?;
    let user = match query.ticket {
        Some(ticket) => redeem(&state, &ticket).await?,
        None => state.tokens.caller(&headers)?,
    };
    let refused = |e: Refused| {
        state
            .metrics
            .stream_drops
            .with_label_values(&["refused"])
            .inc();
        match e {
            Refused::PerUser(_) => ApiError::TooManyRequests {
                detail: e.to_string(),
                retry_after_secs: 5,
            },
            Refused::PerReplica | Refused::Unavailable => {
                ApiError::Unavailable("the live feed stream")
            }
        }
    };
    let permit = state.live.admit(user).map_err(refused)?;
    let stream = &state.config.stream;
    let layout = state
        .feeds
        .layout()
        .await
        .map_err(|_| refused(Refused::Unavailable))?;
    let (mut subscription, notes, ending) = state.live.subscriber(NOTES_QUEUED);
    subscription
        .listen(live::home(layout, user))
        .await
        .map_err(refused)?;
    let threshold = state.config.feed.celebrity_threshold;
    for author in db::feed::followed_celebrities(&state.db, user, threshold).await? {
        subscription
            .listen(live::timeline(layout, author))
            .await
            .map_err(refused)?;
        keep_timeline(&state, author, 1).await?;
    }
    let (events, queued) = mpsc::channel(stream.stream_buffer_events);
    // The goodbye comes after whatever is queued, once the pusher is done.
    let (bye, goodbye) = oneshot::channel();
    let heartbeat = Duration::from_secs(stream.stream_heartbeat_secs);
    let pusher = Pusher {
        state: state.clone(),
        user,
        layout,
        events,
        bye: Some(bye),
        position: resume,
        sent: Remembered::default(),
        idle: Duration::from_secs(stream.stream_idle_timeout_secs),
        slow: Duration::from_secs(stream.stream_slow_client_secs),
    };
    tokio::spawn(async move {
        let _permit = permit;
        pusher.run(resume, subscription, notes, ending).await;
    });
    let body = futures_util::stream::unfold(
        (queued, Some(goodbye)),
        |(mut queued, mut goodbye)| async move {
            let event = match queued.recv().await {
                Some(event) => event,
                None => goodbye.take()?.await.ok()?,
            };
            Some((Ok::<_, Infallible>(event), (queued, goodbye)))
        },
    );
    let sse = Sse::new(body).keep_alive(KeepAlive::new().interval(heartbeat));
    // nginx (and ingress-nginx) buffer responses unless told not to, which
    // would hold events back until a buffer fills.
    Ok(([(HeaderName::from_static("x-accel-buffering"), "no")], sse))
}

/// Builds a followed celebrity's timeline if Redis does not hold it (their
/// posts reach the timeline, and so the stream, only if it exists); returns
/// its newest `newest` posts.
async fn keep_timeline(
    state: &AppState,
    author: Uuid,
    newest: usize,
) -> Result<Vec<Uuid>, ApiError> {
    match super::warm::timeline(state, author, None, newest).await {
        Ok((source, _)) => Ok(source.entries),
        Err(super::warm::Unwarm::Unserved(super::Unserved::Failed(e))) => Err(e),
        Err(_) => Err(ApiError::Unavailable("the live feed stream")),
    }
}

/// The user a stream ticket was issued to; the ticket is used up.
async fn redeem(state: &AppState, ticket: &str) -> Result<Uuid, ApiError> {
    let unknown = || ApiError::Unauthorized("the stream ticket is unknown, used or expired".into());
    // Tickets are 43 characters; anything much longer is not one.
    if ticket.is_empty() || ticket.len() > 64 {
        return Err(unknown());
    }
    let mut conn = state.feeds.conn().await?;
    let user: Option<String> = redis::cmd("GETDEL")
        .arg(keys::stream_ticket(ticket))
        .query_async(&mut conn)
        .await?;
    user.and_then(|u| Uuid::try_parse(&u).ok())
        .ok_or_else(unknown)
}

/// The most recent post ids a stream sent.
#[derive(Default)]
struct Remembered {
    order: VecDeque<Uuid>,
    ids: HashSet<Uuid>,
}

impl Remembered {
    /// Remembers `id`; false if it was already.
    fn insert(&mut self, id: Uuid) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        true
    }
}

/// What one stream's task holds.
struct Pusher {
    state: AppState,
    user: Uuid,
    /// How the feeds' Redis lays out keys, for the channels to listen to.
    layout: Layout,
    events: mpsc::Sender<Event>,
    /// Where the goodbye goes: sent after the queued events.
    bye: Option<oneshot::Sender<Event>>,
    /// The newest cursor sent (or resumed from).
    position: Option<Cursor>,
    sent: Remembered,
    idle: Duration,
    /// How long an event may wait for room in a full queue.
    slow: Duration,
}

/// Why pushing stopped.
enum Stop {
    /// The client went away.
    Gone,
    /// The server ends the stream (a `live::reason`).
    End(&'static str),
}

impl Pusher {
    async fn run(
        mut self,
        resume: Option<Cursor>,
        mut subscription: Subscription,
        mut notes: mpsc::Receiver<Note>,
        ending: Ending,
    ) {
        let stopped = async {
            match resume {
                Some(after) => self.replay(after).await?,
                None => self.keep_feed().await?,
            }
            self.push("ready", None, "{}".to_owned()).await?;
            self.listen(&mut subscription, &mut notes).await
        };
        let why = tokio::select! {
            stop = stopped => stop.err().unwrap_or(Stop::Gone),
            why = ending.ended() => Stop::End(why),
        };
        if let Stop::End(why) = why {
            self.state
                .metrics
                .stream_drops
                .with_label_values(&[why])
                .inc();
            let bye = Event::default()
                .event("bye")
                .retry(RETRY)
                .data(format!("{{\"reason\":\"{why}\"}}"));
            if let Some(goodbye) = self.bye.take() {
                let _ = goodbye.send(bye);
            }
        }
        ending.finish();
    }

    /// Sends what the feed holds after `after`, oldest first.
    async fn replay(&mut self, after: Cursor) -> Result<(), Stop> {
        let mut newer: Vec<PostView> = Vec::new();
        let mut before = None;
        let caller = SignedCaller { id: self.user };
        let limit = validate::PAGE_MAX as usize;
        loop {
            let served = page(&self.state, caller, limit, before).await;
            let Ok(served) = served else {
                // The client retries, resuming from the same cursor.
                return Err(Stop::End(reason::LOST));
            };
            let mut reached = served.next_cursor.is_none();
            for post in served.items {
                if position(&post) <= after {
                    reached = true;
                    break;
                }
                newer.push(post);
            }
            if reached {
                break;
            }
            if newer.len() > BACKLOG_MAX {
                // The client reads the feed by pages; the stream goes on
                // live.
                return self.push("reset", None, "{}".to_owned()).await;
            }
            let Some(last) = newer.last() else { break };
            before = Some((last.id, last.created_at.timestamp_millis()));
        }
        for post in newer.into_iter().rev() {
            self.push_post(post).await?;
        }
        Ok(())
    }

    /// Reads the feed's first post as `GET /feed` would: fan-out writes
    /// only to feeds Redis keeps, so a stream's feed (and the timelines it
    /// pulls) is built when the stream opens, and read again before it
    /// expires, so it is kept for as long as the stream is open.
    async fn keep_feed(&self) -> Result<(), Stop> {
        let caller = SignedCaller { id: self.user };
        match page(&self.state, caller, 1, None).await {
            Ok(_) => Ok(()),
            Err(_) => Err(Stop::End(reason::LOST)),
        }
    }

    /// Pushes notes as they come, until the client leaves or idles out.
    async fn listen(
        &mut self,
        subscription: &mut Subscription,
        notes: &mut mpsc::Receiver<Note>,
    ) -> Result<(), Stop> {
        let ttl = self.state.config.feed.feed_ttl_secs;
        let mut keep =
            tokio::time::interval(Duration::from_secs(ttl / 3).clamp(KEEP_MIN, KEEP_MAX));
        keep.tick().await;
        let mut idle = Box::pin(tokio::time::sleep(self.idle));
        loop {
            let first = tokio::select! {
                note = notes.recv() => note.ok_or(Stop::End(reason::LOST))?,
                _ = self.events.closed() => return Err(Stop::Gone),
                _ = &mut idle => return Err(Stop::End(reason::IDLE)),
                _ = keep.tick() => {
                    self.keep_feed().await?;
                    continue;
                }
            };
            idle.as_mut().reset(tokio::time::Instant::now() + self.idle);
            let mut batch = vec![first];
            while batch.len() < NOTES_PER_BATCH
                && let Ok(note) = notes.try_recv()
            {
                batch.push(note);
            }
            let mut added = Vec::new();
            for note in batch {
                match note {
                    Note::Added(id) if !self.sent.ids.contains(&id) => added.push(id),
                    Note::Added(_) => {}
                    Note::Pulls(author) => {
                        // Refused only while Redis is unreachable: the
                        // client resumes once it is back.
                        subscription
                            .listen(live::timeline(self.layout, author))
                            .await
                            .map_err(|_| Stop::End(reason::LOST))?;
                        // As a follow's backfill brings a fanned-out
                        // author's recent posts, so it brings these (and
                        // any posted before the stream listened).
                        let recent = keep_timeline(&self.state, author, BACKFILL)
                            .await
                            .map_err(|_| Stop::End(reason::LOST))?;
                        added.extend(recent.into_iter().filter(|id| !self.sent.ids.contains(id)));
                    }
                    Note::Removed(post) => {
                        self.push_removal(FeedRemoval {
                            post_id: Some(post),
                            author_id: None,
                        })
                        .await?
                    }
                    Note::Unfollowed(author) => {
                        subscription.forget(&live::timeline(self.layout, author));
                        self.push_removal(FeedRemoval {
                            post_id: None,
                            author_id: Some(author),
                        })
                        .await?;
                    }
                }
            }
            if !added.is_empty() {
                for post in self.hydrate(&added).await? {
                    self.push_post(post).await?;
                }
            }
        }
    }

    /// The posts the reader may see, from their cached copies, or from
    /// PostgreSQL for those with none; in the notes' order.
    async fn hydrate(&self, ids: &[Uuid]) -> Result<Vec<PostView>, Stop> {
        let lost = |_| Stop::End(reason::LOST);
        let conn = self.state.feeds.conn().await.map_err(lost)?;
        let copies = feed_store::copies(&conn, ids).await.map_err(lost)?;
        let missing: Vec<Uuid> = ids
            .iter()
            .zip(&copies)
            .filter(|(_, c)| c.is_none())
            .map(|(id, _)| *id)
            .collect();
        let mut found: Vec<PostView> = copies.into_iter().flatten().map(PostView::from).collect();
        if !missing.is_empty() {
            let visible = db::feed::visible(&self.state.db, self.user, &missing)
                .await
                .map_err(|_| Stop::End(reason::LOST))?;
            found.extend(visible.into_iter().map(PostView::from));
        }
        found.sort_by_key(position);
        Ok(found)
    }

    async fn push_post(&mut self, post: PostView) -> Result<(), Stop> {
        if !self.sent.insert(post.id) {
            return Ok(());
        }
        let at = position(&post);
        if self.position.is_none_or(|p| at > p) {
            self.position = Some(at);
        }
        let data = serde_json::to_string(&post).map_err(|_| Stop::End(reason::LOST))?;
        self.push("post", self.position, data).await
    }

    async fn push_removal(&mut self, removal: FeedRemoval) -> Result<(), Stop> {
        let data = serde_json::to_string(&removal).map_err(|_| Stop::End(reason::LOST))?;
        self.push("removed", None, data).await
    }

    /// Queues an event for the client; a client that leaves the queue full
    /// for longer than the slow-client timeout is dropped rather than
    /// buffered for without bound.
    async fn push(
        &mut self,
        kind: &'static str,
        id: Option<Cursor>,
        data: String,
    ) -> Result<(), Stop> {
        let mut event = Event::default().event(kind).data(data);
        if let Some(id) = id {
            event = event.id(id.encode());
        }
        match tokio::time::timeout(self.slow, self.events.send(event)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(Stop::Gone),
            Err(_) => return Err(Stop::End(reason::SLOW)),
        }
        let counted = if kind == "post" || kind == "removed" {
            kind
        } else {
            return Ok(());
        };
        self.state
            .metrics
            .stream_events
            .with_label_values(&[counted])
            .inc();
        Ok(())
    }
}

/// A post's position in the feed, as its cursor names it.
fn position(post: &PostView) -> Cursor {
    Cursor {
        at_micros: post.created_at.timestamp_micros(),
        id: post.id,
    }
}
