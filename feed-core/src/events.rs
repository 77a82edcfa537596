//! Domain events: one envelope for all, a versioned payload per type.
//!
//! Every change a worker must react to is written to the outbox as an
//! [`Envelope`] in the same transaction as the change, then published to the
//! event type's stream. Consumers decode an envelope into an [`Event`]; an
//! unknown type or an unsupported version is a [`DecodeError`] and the entry
//! goes to the dead letters with that reason instead of blocking the stream.
//!
//! Versioning: the envelope's `version` is the payload's schema version. A
//! consumer reads every version up to [`Event::CURRENT_VERSION`]; an older
//! payload is upcast in [`Envelope::decode`] (one `match` arm per version).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The kinds of domain event, each with its own stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum EventType {
    /// A post was written.
    #[serde(rename = "post.created")]
    PostCreated,
    /// A post was deleted by its author.
    #[serde(rename = "post.deleted")]
    PostDeleted,
    /// A user liked a post.
    #[serde(rename = "post.liked")]
    PostLiked,
    /// A user took a like back.
    #[serde(rename = "post.unliked")]
    PostUnliked,
    /// A user followed another.
    #[serde(rename = "follow.created")]
    FollowCreated,
    /// A user unfollowed another.
    #[serde(rename = "follow.removed")]
    FollowRemoved,
}

impl EventType {
    /// Every event type, in the order workers read their streams.
    pub const ALL: [EventType; 6] = [
        EventType::PostCreated,
        EventType::PostDeleted,
        EventType::FollowCreated,
        EventType::FollowRemoved,
        EventType::PostLiked,
        EventType::PostUnliked,
    ];

    /// The wire name, e.g. `post.created`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PostCreated => "post.created",
            EventType::PostDeleted => "post.deleted",
            EventType::PostLiked => "post.liked",
            EventType::PostUnliked => "post.unliked",
            EventType::FollowCreated => "follow.created",
            EventType::FollowRemoved => "follow.removed",
        }
    }

    /// Parses a wire name; `None` for a type this build does not know.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What every event carries, whatever its type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Envelope {
    /// Unique per event (UUIDv7); handlers use it to recognise redelivery.
    pub event_id: Uuid,
    /// The wire name of the event type, e.g. `post.created`. Kept as a string
    /// so an envelope of a type this build does not know still decodes far
    /// enough to be dead-lettered with its id.
    pub event_type: String,
    /// Schema version of `payload`.
    pub version: u32,
    /// When the change committed (the API's clock).
    pub occurred_at: DateTime<Utc>,
    /// The id of the HTTP request that caused the event, for tracing it
    /// through the workers' logs.
    pub correlation_id: Option<String>,
    /// The user whose action caused the event.
    pub actor_id: Uuid,
    /// The type-specific body; see the `*.schema.json` of each type.
    pub payload: serde_json::Value,
}

/// Payload of `post.created` (v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PostCreated {
    /// The new post.
    pub post_id: Uuid,
    /// Its author, whose followers receive it.
    pub author_id: Uuid,
    /// Creation time; the feed's sort key.
    pub created_at: DateTime<Utc>,
}

/// Payload of `post.deleted` (v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PostDeleted {
    /// The deleted post.
    pub post_id: Uuid,
    /// Its author, whose followers' feeds must drop it.
    pub author_id: Uuid,
}

/// Payload of `post.liked` and `post.unliked` (v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LikeChanged {
    /// The post liked or unliked.
    pub post_id: Uuid,
    /// The user who liked or unliked it.
    pub user_id: Uuid,
}

/// Payload of `follow.created` and `follow.removed` (v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FollowChanged {
    /// The user who follows (or stopped following).
    pub follower_id: Uuid,
    /// The user followed (or no longer followed).
    pub followee_id: Uuid,
}

/// A decoded event: its type and its payload at the current version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    PostCreated(PostCreated),
    PostDeleted(PostDeleted),
    PostLiked(LikeChanged),
    PostUnliked(LikeChanged),
    FollowCreated(FollowChanged),
    FollowRemoved(FollowChanged),
}

/// Why bytes from a stream are not an event this build can handle. Each is
/// permanent: retrying the same bytes cannot succeed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("the entry is not a JSON event envelope: {0}")]
    Envelope(String),
    #[error("unknown event type '{0}'")]
    UnknownType(String),
    #[error("event type '{event_type}' has no version {version} (this build reads 1..={current})")]
    UnsupportedVersion {
        event_type: String,
        version: u32,
        current: u32,
    },
    #[error("payload of '{event_type}' v{version} does not match its schema: {reason}")]
    Payload {
        event_type: String,
        version: u32,
        reason: String,
    },
}

impl Event {
    /// The payload version this build writes.
    pub const CURRENT_VERSION: u32 = 1;

    /// The event's type.
    pub fn event_type(&self) -> EventType {
        match self {
            Event::PostCreated(_) => EventType::PostCreated,
            Event::PostDeleted(_) => EventType::PostDeleted,
            Event::PostLiked(_) => EventType::PostLiked,
            Event::PostUnliked(_) => EventType::PostUnliked,
            Event::FollowCreated(_) => EventType::FollowCreated,
            Event::FollowRemoved(_) => EventType::FollowRemoved,
        }
    }

    fn payload_json(&self) -> serde_json::Value {
        let value = match self {
            Event::PostCreated(p) => serde_json::to_value(p),
            Event::PostDeleted(p) => serde_json::to_value(p),
            Event::PostLiked(p) | Event::PostUnliked(p) => serde_json::to_value(p),
            Event::FollowCreated(p) | Event::FollowRemoved(p) => serde_json::to_value(p),
        };
        value.expect("payloads are plain structs that always serialize")
    }
}

impl Envelope {
    /// Wraps an event for publishing, with a fresh time-ordered id.
    pub fn new(
        event: &Event,
        actor_id: Uuid,
        occurred_at: DateTime<Utc>,
        correlation_id: Option<String>,
    ) -> Envelope {
        Envelope {
            event_id: Uuid::now_v7(),
            event_type: event.event_type().as_str().to_owned(),
            version: Event::CURRENT_VERSION,
            occurred_at,
            correlation_id,
            actor_id,
            payload: event.payload_json(),
        }
    }

    /// Parses an envelope from the bytes of a stream entry.
    pub fn from_json(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Envelope(e.to_string()))
    }

    /// The envelope as the JSON stored in the outbox and on streams.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an envelope always serializes")
    }

    /// Decodes the payload, upcasting older versions to the current one.
    pub fn decode(&self) -> Result<Event, DecodeError> {
        let event_type = EventType::parse(&self.event_type)
            .ok_or_else(|| DecodeError::UnknownType(self.event_type.clone()))?;
        if self.version == 0 || self.version > Event::CURRENT_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                event_type: self.event_type.clone(),
                version: self.version,
                current: Event::CURRENT_VERSION,
            });
        }
        // Every type is at v1 today. When a payload changes, its v1 arm here
        // deserializes the old struct and converts it to the new one.
        let payload = self.payload.clone();
        let event = match event_type {
            EventType::PostCreated => serde_json::from_value(payload).map(Event::PostCreated),
            EventType::PostDeleted => serde_json::from_value(payload).map(Event::PostDeleted),
            EventType::PostLiked => serde_json::from_value(payload).map(Event::PostLiked),
            EventType::PostUnliked => serde_json::from_value(payload).map(Event::PostUnliked),
            EventType::FollowCreated => serde_json::from_value(payload).map(Event::FollowCreated),
            EventType::FollowRemoved => serde_json::from_value(payload).map(Event::FollowRemoved),
        };
        event.map_err(|e| DecodeError::Payload {
            event_type: self.event_type.clone(),
            version: self.version,
            reason: e.to_string(),
        })
    }
}

/// The JSON Schemas of the envelope and every payload, by file name, as
/// published under `docs/events/`.
pub fn json_schemas() -> Vec<(&'static str, serde_json::Value)> {
    fn schema<T: JsonSchema>() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(T)).expect("schemas serialize")
    }
    vec![
        ("envelope.schema.json", schema::<Envelope>()),
        ("post.created.v1.schema.json", schema::<PostCreated>()),
        ("post.deleted.v1.schema.json", schema::<PostDeleted>()),
        ("post.liked.v1.schema.json", schema::<LikeChanged>()),
        ("post.unliked.v1.schema.json", schema::<LikeChanged>()),
        ("follow.created.v1.schema.json", schema::<FollowChanged>()),
        ("follow.removed.v1.schema.json", schema::<FollowChanged>()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Event {
        Event::FollowCreated(FollowChanged {
            follower_id: Uuid::now_v7(),
            followee_id: Uuid::now_v7(),
        })
    }

    #[test]
    fn envelope_round_trips_through_json() {
        let event = sample();
        let envelope = Envelope::new(&event, Uuid::now_v7(), Utc::now(), Some("req-1".into()));
        let parsed = Envelope::from_json(envelope.to_json().as_bytes()).unwrap();
        assert_eq!(parsed, envelope);
        assert_eq!(parsed.decode().unwrap(), event);
    }

    #[test]
    fn every_type_name_parses_back() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("post.exploded"), None);
    }

    #[test]
    fn unknown_type_and_future_version_are_named_in_the_error() {
        let mut envelope = Envelope::new(&sample(), Uuid::now_v7(), Utc::now(), None);
        envelope.version = 9;
        let err = envelope.decode().unwrap_err();
        assert!(err.to_string().contains("no version 9"), "{err}");
        envelope.event_type = "post.exploded".into();
        assert_eq!(
            envelope.decode().unwrap_err(),
            DecodeError::UnknownType("post.exploded".into())
        );
    }

    #[test]
    fn payload_of_the_wrong_shape_is_rejected() {
        let mut envelope = Envelope::new(&sample(), Uuid::now_v7(), Utc::now(), None);
        envelope.payload = serde_json::json!({"follower_id": "not-a-uuid"});
        assert!(matches!(
            envelope.decode(),
            Err(DecodeError::Payload { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(envelope) = Envelope::from_json(&bytes) {
                let _ = envelope.decode();
            }
        }

        #[test]
        fn arbitrary_payloads_never_panic(kind in 0usize..6, version in 0u32..4, text in ".{0,64}") {
            let envelope = Envelope {
                event_id: Uuid::nil(),
                event_type: EventType::ALL[kind].as_str().into(),
                version,
                occurred_at: Utc::now(),
                correlation_id: None,
                actor_id: Uuid::nil(),
                payload: serde_json::json!({ "post_id": text }),
            };
            prop_assert!(envelope.decode().is_err());
        }
    }
}
