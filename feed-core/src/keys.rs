//! Names of everything Fanout keeps in Redis.
//!
//! All of it is derived state: it can be dropped and rebuilt from PostgreSQL.

use uuid::Uuid;

use crate::events::EventType;

/// The consumer group every feed worker joins, on every stream.
pub const CONSUMER_GROUP: &str = "feed-workers";

/// The stream an event type is published to: one stream per type, so a
/// backlog of likes never delays fan-out of new posts.
pub fn stream(event_type: EventType) -> String {
    stream_named(event_type.as_str())
}

/// The stream of an event type given by its wire name, as an envelope
/// carries it.
pub fn stream_named(event_type: &str) -> String {
    format!("events:{event_type}")
}

/// Every stream the workers consume.
pub fn all_streams() -> Vec<String> {
    EventType::ALL.iter().map(|t| stream(*t)).collect()
}

/// A user's home feed: a sorted set of post ids scored by their negated
/// creation time in ms, newest first (see [`crate::feed_store`]). The
/// feed scripts read the user id back as what follows the first colon.
pub fn feed(user_id: Uuid) -> String {
    format!("feed:{user_id}")
}

/// An author's own timeline: their newest posts, kept only for authors
/// whose posts are pulled by readers instead of fanned out (celebrities),
/// laid out as a home feed is.
pub fn timeline(author_id: Uuid) -> String {
    format!("timeline:{author_id}")
}

/// Marks a celebrity whose followers' feeds have been told to pull their
/// timeline (see `feed-worker`'s `fanout.rs`).
pub fn announced(author_id: Uuid) -> String {
    format!("announced:{author_id}")
}

/// Marks a post deleted (see [`crate::removals`]), so that a fan-out or a
/// rebuild that read it before the delete does not write it back.
pub fn deleted(post_id: Uuid) -> String {
    format!("deleted:{post_id}")
}

/// The users who recently unfollowed an author (a sorted set scored by
/// when), so that a fan-out or a rebuild that read the follow before it
/// went does not write the author's posts back (see [`crate::removals`]).
pub fn unfollowed(author_id: Uuid) -> String {
    format!("unfollowed:{author_id}")
}

/// Marks a post whose delete is committing (see [`crate::removals`]): no
/// copy of it is cached meanwhile.
pub fn withdrawn(post_id: Uuid) -> String {
    format!("withdrawn:{post_id}")
}

/// The authors a reader unfollowed whose posts the workers may not have
/// taken out of the reader's feed yet (a sorted set scored by when), so
/// reads served from Redis alone skip them (see [`crate::removals`]).
pub fn hidden(reader_id: Uuid) -> String {
    format!("hidden:{reader_id}")
}

/// A post's public fields (JSON), so feeds can still be served while
/// PostgreSQL is down.
pub fn post(post_id: Uuid) -> String {
    format!("post:{post_id}")
}

/// A single-use ticket that opens one live feed stream (`GET
/// /feed/stream?ticket=`), holding the user it was issued to.
pub fn stream_ticket(ticket: &str) -> String {
    format!("stream-ticket:{ticket}")
}
