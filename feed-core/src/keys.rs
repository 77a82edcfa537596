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
    format!("events:{}", event_type.as_str())
}

/// Every stream the workers consume.
pub fn all_streams() -> Vec<String> {
    EventType::ALL.iter().map(|t| stream(*t)).collect()
}

/// A user's home feed: a sorted set of post ids scored by their negated
/// creation time in ms, newest first (see [`crate::feed_store`]).
pub fn feed(user_id: Uuid) -> String {
    format!("feed:{user_id}")
}

/// The users who like a post (a set): the engagement counter the workers
/// keep for ranking. A set, not a counter, so redelivery cannot double count.
pub fn likers(post_id: Uuid) -> String {
    format!("likers:{post_id}")
}

/// A post's public fields (JSON), so feeds can still be served while
/// PostgreSQL is down.
pub fn post(post_id: Uuid) -> String {
    format!("post:{post_id}")
}
