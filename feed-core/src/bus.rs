//! The event bus on Redis Streams: publishing envelopes, consuming them in
//! the `feed-workers` group, reclaiming what crashed consumers left pending,
//! trimming what every consumer has acknowledged, and the per-stream
//! statistics that `/debug/metrics-summary` and the autoscaler read.

use std::collections::HashMap;
use std::time::Duration;

use redis::RedisResult;
use redis::aio::ConnectionLike;
use redis::streams::{
    StreamAutoClaimOptions, StreamId, StreamInfoGroupsReply, StreamPendingCountReply,
    StreamPendingReply, StreamReadOptions, StreamReadReply, StreamTrimOptions, StreamTrimmingMode,
};

use crate::delivery;
use crate::events::Envelope;
use crate::keys;

mod conn;
mod stats;

pub use conn::{Conn, Keyspace, Redis, client};
pub use stats::{Backlog, StreamStats, backlog, stream_stats, total_lag};

/// The stream entry field that holds the JSON envelope.
pub const ENVELOPE_FIELD: &str = "event";

/// Where a published event landed: its entry id, and the epoch of the
/// stream's group when it was published (`None`: no group yet). The outbox
/// keeps both, so [`crate::delivery`] can tell later whether it was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub entry: String,
    pub epoch: Option<String>,
}

/// Publishes envelopes to their streams in one round trip; where each
/// landed, in order.
pub async fn publish(
    conn: &mut impl ConnectionLike,
    envelopes: &[Envelope],
) -> RedisResult<Vec<Published>> {
    // The distinct streams, and each envelope's among them.
    let mut streams: Vec<String> = Vec::new();
    let mut stream_at = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        let stream = keys::stream_named(&envelope.event_type);
        let at = match streams.iter().position(|s| *s == stream) {
            Some(at) => at,
            None => {
                streams.push(stream);
                streams.len() - 1
            }
        };
        stream_at.push(at);
    }
    let mut pipe = redis::pipe();
    // Each stream's epoch before its entries: an epoch that changes in
    // between makes the entry look lost later, and published again, never
    // applied when it was not.
    for stream in &streams {
        pipe.get(delivery::epoch_key(stream));
    }
    for (envelope, at) in envelopes.iter().zip(&stream_at) {
        pipe.xadd(&streams[*at], "*", &[(ENVELOPE_FIELD, envelope.to_json())]);
    }
    let replies: Vec<redis::Value> = pipe.query_async(conn).await?;
    let (epochs, entries) = replies.split_at(streams.len());
    let epochs: Vec<Option<String>> = epochs
        .iter()
        .map(|v| redis::from_redis_value_ref(v).map_err(Into::into))
        .collect::<RedisResult<_>>()?;
    entries
        .iter()
        .zip(stream_at)
        .map(|(entry, at)| {
            Ok(Published {
                entry: redis::from_redis_value_ref(entry).map_err(redis::RedisError::from)?,
                epoch: epochs[at].clone(),
            })
        })
        .collect()
}

/// Creates the consumer group on every stream, with its epoch (see
/// [`crate::delivery`]).
pub use crate::delivery::ensure_groups;

/// True when Redis answered that the stream or the group does not exist (as
/// after Redis restarted empty): the caller recreates them with
/// [`ensure_groups`].
pub fn is_missing_group(err: &redis::RedisError) -> bool {
    err.code() == Some("NOGROUP")
}

/// One stream entry handed to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub stream: String,
    pub entry_id: String,
    /// The envelope's bytes; `None` if the entry has no envelope field.
    pub body: Option<Vec<u8>>,
}

impl Delivery {
    fn from_entry(stream: &str, entry: StreamId) -> Delivery {
        Delivery {
            stream: stream.to_owned(),
            body: entry.get::<Vec<u8>>(ENVELOPE_FIELD),
            entry_id: entry.id,
        }
    }
}

/// The millisecond part of a stream entry id.
pub fn entry_id_ms(entry_id: &str) -> Option<i64> {
    entry_id.split_once('-').and_then(|(ms, _)| ms.parse().ok())
}

/// Reads up to `count` entries per stream for `consumer`, waiting up to
/// `block` for new ones. With `own_pending` it re-reads the consumer's own
/// unacknowledged entries instead (after a restart under the same name).
pub async fn read_group(
    conn: &mut impl ConnectionLike,
    consumer: &str,
    streams: &[String],
    count: usize,
    block: Duration,
    own_pending: bool,
) -> RedisResult<Vec<Delivery>> {
    let mut options = StreamReadOptions::default()
        .group(keys::CONSUMER_GROUP, consumer)
        .count(count);
    if !own_pending {
        options = options.block(block.as_millis() as usize);
    }
    let id = if own_pending { "0" } else { ">" };
    let ids = vec![id; streams.len()];
    let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
        .arg(&options)
        .arg("STREAMS")
        .arg(streams)
        .arg(&ids)
        .query_async(conn)
        .await?;
    Ok(reply
        .map(|r| {
            r.keys
                .into_iter()
                .flat_map(|k| {
                    let stream = k.key;
                    k.ids
                        .into_iter()
                        .map(move |e| Delivery::from_entry(&stream, e))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Acknowledges entries of one stream.
pub async fn ack(
    conn: &mut impl ConnectionLike,
    stream: &str,
    entry_ids: &[String],
) -> RedisResult<()> {
    if entry_ids.is_empty() {
        return Ok(());
    }
    let _: usize = redis::cmd("XACK")
        .arg(stream)
        .arg(keys::CONSUMER_GROUP)
        .arg(entry_ids)
        .query_async(conn)
        .await?;
    Ok(())
}

/// Entries taken over from idle consumers, and where the next scan of the
/// pending list starts.
#[derive(Debug, Default)]
pub struct Claimed {
    /// Each entry with how many times it has now been delivered (this claim
    /// included).
    pub entries: Vec<(Delivery, usize)>,
    /// Pass as `start` next time; `0-0` once the scan wrapped around.
    pub next_start: String,
}

/// Takes over up to `count` entries of `stream` that have been pending on any
/// consumer for at least `min_idle`, scanning the pending list from `start`.
pub async fn claim_idle(
    conn: &mut impl ConnectionLike,
    stream: &str,
    consumer: &str,
    min_idle: Duration,
    count: usize,
    start: &str,
) -> RedisResult<Claimed> {
    let reply: redis::streams::StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
        .arg(stream)
        .arg(keys::CONSUMER_GROUP)
        .arg(consumer)
        .arg(min_idle.as_millis() as u64)
        .arg(start)
        .arg(StreamAutoClaimOptions::default().count(count))
        .query_async(conn)
        .await?;
    if reply.claimed.is_empty() {
        return Ok(Claimed {
            entries: Vec::new(),
            next_start: reply.next_stream_id,
        });
    }
    // XAUTOCLAIM does not say how often an entry was delivered; XPENDING
    // does, asked entry by entry (a range could hold other pending entries).
    let mut pipe = redis::pipe();
    for entry in &reply.claimed {
        pipe.cmd("XPENDING")
            .arg(stream)
            .arg(keys::CONSUMER_GROUP)
            .arg(&entry.id)
            .arg(&entry.id)
            .arg(1);
    }
    let pending: Vec<StreamPendingCountReply> = pipe.query_async(conn).await?;
    let counts: HashMap<String, usize> = pending
        .into_iter()
        .flat_map(|p| p.ids)
        .map(|p| (p.id, p.times_delivered))
        .collect();
    let entries = reply
        .claimed
        .into_iter()
        .map(|entry| {
            let delivered = counts.get(&entry.id).copied().unwrap_or(1);
            (Delivery::from_entry(stream, entry), delivered)
        })
        .collect();
    Ok(Claimed {
        entries,
        next_start: reply.next_stream_id,
    })
}

/// Deliveries after which a worker dead-letters an entry, by default
/// (`FANOUT_MAX_DELIVERIES`). The autoscaler reads pending entries
/// delivered more often as poison: about to be dead-lettered, they are
/// work more workers would not help with.
pub const DEFAULT_MAX_DELIVERIES: usize = 5;
/// Entries a worker reads per stream per round trip, by default
/// (`FANOUT_BATCH_SIZE`); the autoscale lab's queue model takes it for
/// what one worker holds delivered but unacknowledged.
pub const DEFAULT_BATCH_SIZE: usize = 64;

/// One consumer of the group, over all streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consumer {
    /// Entries it holds unacknowledged.
    pub pending: u64,
    /// Milliseconds since it last read or claimed, on its most recent stream.
    pub idle_ms: u64,
}

/// The group's consumers on one stream; none when the stream or the group
/// does not exist yet.
async fn consumers_on(
    conn: &mut impl ConnectionLike,
    stream: &str,
) -> RedisResult<Vec<redis::streams::StreamInfoConsumer>> {
    let reply: RedisResult<redis::streams::StreamInfoConsumersReply> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg(keys::CONSUMER_GROUP)
        .query_async(conn)
        .await;
    match reply {
        Ok(reply) => Ok(reply.consumers),
        Err(e) if is_missing_group(&e) || e.to_string().contains("no such key") => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Every consumer of the group, by name.
pub async fn consumers(conn: &mut impl ConnectionLike) -> RedisResult<HashMap<String, Consumer>> {
    let mut all: HashMap<String, Consumer> = HashMap::new();
    for stream in keys::all_streams() {
        for c in consumers_on(conn, &stream).await? {
            let entry = all.entry(c.name).or_insert(Consumer {
                pending: 0,
                idle_ms: u64::MAX,
            });
            entry.pending += c.pending as u64;
            entry.idle_ms = entry.idle_ms.min(c.idle as u64);
        }
    }
    Ok(all)
}

/// Removes a consumer from the group on every stream where it holds nothing
/// pending (removing it would drop those entries' delivery state); returns
/// whether it is gone everywhere.
pub async fn remove_consumer(conn: &mut impl ConnectionLike, name: &str) -> RedisResult<bool> {
    let mut gone = true;
    for stream in keys::all_streams() {
        let consumers = consumers_on(conn, &stream).await?;
        match consumers.iter().find(|c| c.name == name) {
            None => {}
            Some(c) if c.pending > 0 => gone = false,
            Some(_) => {
                let _: i64 = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&stream)
                    .arg(keys::CONSUMER_GROUP)
                    .arg(name)
                    .query_async(conn)
                    .await?;
            }
        }
    }
    Ok(gone)
}

/// Trims a stream below the oldest entry the group has not finished, so
/// nothing pending or undelivered is ever trimmed. Returns entries removed.
pub async fn trim_finished(conn: &mut impl ConnectionLike, stream: &str) -> RedisResult<u64> {
    let exists: bool = redis::cmd("EXISTS").arg(stream).query_async(conn).await?;
    if !exists {
        return Ok(0);
    }
    let groups: StreamInfoGroupsReply = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(conn)
        .await?;
    let Some(group) = groups
        .groups
        .iter()
        .find(|g| g.name == keys::CONSUMER_GROUP)
    else {
        return Ok(0);
    };
    let summary: StreamPendingReply = redis::cmd("XPENDING")
        .arg(stream)
        .arg(keys::CONSUMER_GROUP)
        .query_async(conn)
        .await?;
    // Keep the oldest pending entry, or everything after the last delivered.
    let keep_from = match summary {
        StreamPendingReply::Data(d) => d.start_id,
        _ => next_id(&group.last_delivered_id),
    };
    let trimmed: usize = redis::cmd("XTRIM")
        .arg(stream)
        .arg(StreamTrimOptions::minid(
            StreamTrimmingMode::Exact,
            keep_from,
        ))
        .query_async(conn)
        .await?;
    Ok(trimmed as u64)
}

/// The smallest entry id greater than `id`.
fn next_id(id: &str) -> String {
    match id
        .split_once('-')
        .map(|(ms, seq)| (ms.parse::<u64>(), seq.parse::<u64>()))
    {
        Some((Ok(ms), Ok(seq))) => match seq.checked_add(1) {
            Some(seq) => format!("{ms}-{seq}"),
            None => format!("{}-0", ms + 1),
        },
        _ => "0-0".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_order_as_expected() {
        assert_eq!(next_id("1700000000000-4"), "1700000000000-5");
        assert_eq!(next_id("0-0"), "0-1");
        assert_eq!(entry_id_ms("1700000000000-4"), Some(1_700_000_000_000));
        assert_eq!(entry_id_ms("junk"), None);
    }
}
