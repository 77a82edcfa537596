//! Names of everything Fanout keeps in Redis.
//!
//! All of it is derived state: it can be dropped and rebuilt from PostgreSQL.
//!
//! # Layout
//!
//! On a Redis Cluster a script or a pipeline may only touch keys of one
//! hash slot, so the keys are grouped by hash tag ([`Layout`]):
//!
//! - the event streams, and everything kept beside them, share the tag
//!   `{events}`: a worker reads every stream in one `XREADGROUP`;
//! - a user's feed keys (their home feed, their hidden authors, the live
//!   key of their streams) share the tag of the user's *shard*, one of
//!   [`CLUSTER_SHARDS`]; so do an author's timeline, and a post's copy and
//!   its withdrawal mark (the shard of the post's id);
//! - the marks every feed write checks (a deleted post's tombstone, an
//!   author's unfollowers) are kept once per shard, each beside the feeds
//!   it guards, so a fan-out checks them in the same atomic call that
//!   writes the feeds of one shard.
//!
//! On one server there is a single shard and the feed keys carry no tag.

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
/// carries it. Every stream shares one hash tag (see the module's layout).
pub fn stream_named(event_type: &str) -> String {
    format!("{{events}}:{event_type}")
}

/// Every stream the workers consume.
pub fn all_streams() -> Vec<String> {
    EventType::ALL.iter().map(|t| stream(*t)).collect()
}

/// Shards of a cluster's feed keys. A fan-out makes one script call per
/// shard among a post's followers, so more shards spread the feeds over
/// more nodes at the cost of more, smaller calls: each call costs Redis a
/// few microseconds of its own, about what two feed writes cost. Sixteen
/// spread evenly enough over the clusters this is built for (up to about
/// sixteen primaries: the capacity model in docs/benchmarks.md) while a
/// post to 100 followers still writes about six feeds per call. Every
/// process must agree on it, so it is a constant, not a setting.
pub const CLUSTER_SHARDS: u16 = 16;

/// How the keys are laid out over the servers behind a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One server: one shard, and no hash tags in feed keys.
    Single,
    /// A Redis Cluster: [`CLUSTER_SHARDS`] shards, each under a hash tag.
    Cluster,
}

impl Layout {
    /// The shard of a user's, an author's or a post's keys.
    pub fn shard(self, id: Uuid) -> Shard {
        match self {
            Layout::Single => Shard(None),
            Layout::Cluster => Shard(Some((id.as_u128() % u128::from(CLUSTER_SHARDS)) as u16)),
        }
    }

    /// Every shard, to leave a mark in each.
    pub fn shards(self) -> Vec<Shard> {
        match self {
            Layout::Single => vec![Shard(None)],
            Layout::Cluster => (0..CLUSTER_SHARDS).map(|s| Shard(Some(s))).collect(),
        }
    }

    /// `items` grouped by the shard of `id(item)`, in order within each
    /// group: what one script call or pipeline may touch together. On one
    /// server, a single group.
    pub fn group<T>(
        self,
        items: impl IntoIterator<Item = T>,
        id: impl Fn(&T) -> Uuid,
    ) -> Vec<(Shard, Vec<T>)> {
        group_by(items, |item| self.shard(id(item)))
    }
}

/// `items` grouped by `key`, groups in the order their first item came,
/// items in order within each. A list rather than a map: there are a few
/// groups at most (a shard's worth), and callers want them in order.
fn group_by<T, K: PartialEq>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
) -> Vec<(K, Vec<T>)> {
    let mut groups: Vec<(K, Vec<T>)> = Vec::new();
    for item in items {
        let k = key(&item);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, group)) => group.push(item),
            None => groups.push((k, vec![item])),
        }
    }
    groups
}

/// One shard of the feed keys (see [`Layout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard(Option<u16>);

impl std::fmt::Display for Shard {
    /// The shard's part of a key: its hash tag and a colon, or nothing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(shard) => write!(f, "{{{shard}}}:"),
            None => Ok(()),
        }
    }
}

/// `keys` grouped by their hash tag, the part of a key Redis Cluster
/// places it by: what one pipeline or script call may touch together. On
/// one server (no tags), a single group.
pub fn by_tag(keys: impl IntoIterator<Item = String>) -> Vec<Vec<String>> {
    let tag = |key: &String| {
        key.split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
            .map_or("", |(tag, _)| tag)
            .to_owned()
    };
    group_by(keys, tag)
        .into_iter()
        .map(|(_, group)| group)
        .collect()
}

/// A key nobody writes, in the hash slot of `key`: what a script or a
/// pipeline that must name a key there, but has none to touch, is given.
pub fn nothing_beside(key: &str) -> String {
    format!("{key}:none")
}

/// A user's home feed: a sorted set of post ids scored by their negated
/// creation time in ms, newest first (see [`crate::feed_store`]). The
/// feed scripts read the user id back as what follows the last colon.
pub fn feed(layout: Layout, user_id: Uuid) -> String {
    format!("feed:{}{user_id}", layout.shard(user_id))
}

/// An author's own timeline: their newest posts, kept only for authors
/// whose posts are pulled by readers instead of fanned out (celebrities),
/// laid out as a home feed is.
pub fn timeline(layout: Layout, author_id: Uuid) -> String {
    format!("timeline:{}{author_id}", layout.shard(author_id))
}

/// Marks a celebrity whose followers' feeds have been told to pull their
/// timeline (see `feed-worker`'s `fanout.rs`).
pub fn announced(author_id: Uuid) -> String {
    format!("announced:{author_id}")
}

/// Marks a post deleted (see [`crate::removals`]), so that a fan-out or a
/// rebuild that read it before the delete does not write it back: one
/// mark per shard, beside the feeds it guards.
pub fn deleted(shard: Shard, post_id: Uuid) -> String {
    format!("deleted:{shard}{post_id}")
}

/// The users who recently unfollowed an author (a sorted set scored by
/// when), so that a fan-out or a rebuild that read the follow before it
/// went does not write the author's posts back (see [`crate::removals`]);
/// each shard holds its own users' unfollows.
pub fn unfollowed(shard: Shard, author_id: Uuid) -> String {
    format!("unfollowed:{shard}{author_id}")
}

/// Marks a post whose delete is committing (see [`crate::removals`]): no
/// copy of it is cached meanwhile.
pub fn withdrawn(layout: Layout, post_id: Uuid) -> String {
    format!("withdrawn:{}{post_id}", layout.shard(post_id))
}

/// The authors a reader unfollowed whose posts the workers may not have
/// taken out of the reader's feed yet (a sorted set scored by when), so
/// reads served from Redis alone skip them (see [`crate::removals`]).
pub fn hidden(layout: Layout, reader_id: Uuid) -> String {
    format!("hidden:{}{reader_id}", layout.shard(reader_id))
}

/// A post's public fields (JSON), so feeds can still be served while
/// PostgreSQL is down.
pub fn post(layout: Layout, post_id: Uuid) -> String {
    format!("post:{}{post_id}", layout.shard(post_id))
}

/// A single-use ticket that opens one live feed stream (`GET
/// /feed/stream?ticket=`), holding the user it was issued to.
pub fn stream_ticket(ticket: &str) -> String {
    format!("stream-ticket:{ticket}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_keeps_the_untagged_names_in_one_group() {
        let user = Uuid::from_u128(7);
        assert_eq!(feed(Layout::Single, user), format!("feed:{user}"));
        assert_eq!(
            deleted(Layout::Single.shard(user), user),
            format!("deleted:{user}")
        );
        assert_eq!(Layout::Single.shards().len(), 1);
        let ids: Vec<Uuid> = (0..100).map(Uuid::from_u128).collect();
        let groups = Layout::Single.group(ids.clone(), |id| *id);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].1, ids, "in order");
    }

    #[test]
    fn on_a_cluster_a_readers_keys_share_a_tag_and_users_spread_over_every_shard() {
        let user = Uuid::new_v4();
        let shard = Layout::Cluster.shard(user);
        let tag = shard.to_string();
        for key in [
            feed(Layout::Cluster, user),
            hidden(Layout::Cluster, user),
            timeline(Layout::Cluster, user),
            unfollowed(shard, Uuid::new_v4()),
            deleted(shard, Uuid::new_v4()),
        ] {
            assert!(key.contains(&tag), "{key} has {tag}");
        }
        assert!(tag.starts_with('{') && tag.ends_with("}:"), "{tag}");
        let users: Vec<Uuid> = (0..2_000).map(|_| Uuid::now_v7()).collect();
        let groups = Layout::Cluster.group(users, |id| *id);
        assert_eq!(groups.len(), usize::from(CLUSTER_SHARDS));
        assert_eq!(Layout::Cluster.shards().len(), usize::from(CLUSTER_SHARDS));
        for (shard, members) in &groups {
            assert!(members.len() > 60, "{shard}: {}", members.len());
            assert!(members.iter().all(|m| Layout::Cluster.shard(*m) == *shard));
        }
    }

    #[test]
    fn streams_share_one_tag_and_keys_group_by_theirs() {
        assert!(all_streams().iter().all(|s| s.starts_with("{events}:")));
        let keys = [
            "live:feed:{3}:a".to_owned(),
            "live:feed:b".to_owned(),
            "live:feed:{3}:c".to_owned(),
            "live:feed:{12}:d".to_owned(),
            "live:feed:e".to_owned(),
        ];
        assert_eq!(
            by_tag(keys),
            vec![
                vec!["live:feed:{3}:a".to_owned(), "live:feed:{3}:c".to_owned()],
                vec!["live:feed:b".to_owned(), "live:feed:e".to_owned()],
                vec!["live:feed:{12}:d".to_owned()],
            ]
        );
    }
}
