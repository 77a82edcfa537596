//! What the streams say about the work waiting: per-stream statistics
//! (`/debug/metrics-summary`, feed freshness) and the backlog the
//! autoscaler acts on.

use std::collections::HashMap;

use redis::RedisResult;
use redis::aio::ConnectionLike;
use redis::streams::{StreamInfoGroupsReply, StreamPendingCountReply, StreamPendingReply};

use super::entry_id_ms;
use crate::keys;

/// What Redis knows about one stream and the workers' group on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub stream: String,
    /// Entries in the stream now (acknowledged ones included until trimmed).
    pub length: u64,
    /// Entries ever added (a counter: its growth is the arrival rate).
    pub entries_added: u64,
    /// Entries the group has read (its growth is the service rate);
    /// `None` when Redis cannot tell.
    pub entries_read: Option<u64>,
    /// Entries not yet delivered to the group; `None` when unknown (no
    /// group, or Redis cannot compute it after deletions). Never read
    /// unknown as zero.
    pub lag: Option<u64>,
    /// Entries delivered but not acknowledged.
    pub pending: u64,
    /// Consumers registered in the group.
    pub consumers: u64,
    /// Whether the `feed-workers` group exists on the stream.
    pub group_exists: bool,
    /// Unix ms of the oldest entry the group has not finished (pending or
    /// not yet delivered); `None` when the group has caught up.
    pub oldest_unfinished_ms: Option<i64>,
}

/// The entries of these streams not yet delivered to the group; `None` if
/// any stream's lag is unknown (an unknown lag is never read as zero). A
/// stream with no group and nothing in it has none waiting.
pub fn total_lag<'a>(streams: impl IntoIterator<Item = &'a StreamStats>) -> Option<u64> {
    streams
        .into_iter()
        .try_fold(0u64, |sum, s| match (s.lag, s.group_exists, s.length) {
            (Some(lag), true, _) => Some(sum + lag),
            (_, false, 0) => Some(sum),
            _ => None,
        })
}

/// Statistics for every event stream; a missing stream reads as empty with
/// no group.
pub async fn stream_stats(conn: &mut impl ConnectionLike) -> RedisResult<Vec<StreamStats>> {
    let mut all = Vec::new();
    for stream in keys::all_streams() {
        all.push(one_stream_stats(conn, stream).await?);
    }
    Ok(all)
}

async fn one_stream_stats(
    conn: &mut impl ConnectionLike,
    stream: String,
) -> RedisResult<StreamStats> {
    let mut stats = StreamStats {
        stream,
        ..Default::default()
    };
    let exists: bool = redis::cmd("EXISTS")
        .arg(&stats.stream)
        .query_async(conn)
        .await?;
    if !exists {
        return Ok(stats);
    }
    let (info, groups): (HashMap<String, redis::Value>, StreamInfoGroupsReply) = redis::pipe()
        .cmd("XINFO")
        .arg("STREAM")
        .arg(&stats.stream)
        .cmd("XINFO")
        .arg("GROUPS")
        .arg(&stats.stream)
        .query_async(conn)
        .await?;
    let int = |field: &str| {
        info.get(field)
            .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
            .unwrap_or(0)
    };
    stats.length = int("length");
    stats.entries_added = int("entries-added");
    let Some(group) = groups
        .groups
        .into_iter()
        .find(|g| g.name == keys::CONSUMER_GROUP)
    else {
        return Ok(stats);
    };
    stats.group_exists = true;
    stats.entries_read = group.entries_read.map(|n| n as u64);
    stats.lag = group.lag.map(|n| n as u64);
    stats.pending = group.pending as u64;
    stats.consumers = group.consumers as u64;

    let (summary, next): (StreamPendingReply, redis::streams::StreamRangeReply) = redis::pipe()
        .cmd("XPENDING")
        .arg(&stats.stream)
        .arg(keys::CONSUMER_GROUP)
        .cmd("XRANGE")
        .arg(&stats.stream)
        .arg(format!("({}", group.last_delivered_id))
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    let oldest_pending = match &summary {
        StreamPendingReply::Data(d) => entry_id_ms(&d.start_id),
        _ => None,
    };
    if next.ids.is_empty() {
        // Nothing after the group's last delivered entry: nothing is
        // undelivered, whatever the group's read counter says. That counter
        // can come back wrong from a restart (seen once: 0 read, so a lag of
        // every entry ever added, which scaled the workers to their
        // maximum with nothing to do).
        stats.lag = Some(0);
        stats.entries_read = Some(stats.entries_added);
    }
    let oldest_undelivered = next.ids.first().and_then(|e| entry_id_ms(&e.id));
    stats.oldest_unfinished_ms = match (oldest_pending, oldest_undelivered) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(stats)
}

/// The backlog the autoscaler acts on, summed over every stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Per stream, as read.
    pub streams: Vec<StreamStats>,
    /// Undelivered entries; `None` if any stream's lag is unknown.
    pub lag: Option<u64>,
    /// Delivered, unacknowledged entries, without poison.
    pub pending: u64,
    /// Pending entries delivered more than `max_deliveries` times: they will
    /// be dead-lettered, and more workers would not help.
    pub poison: u64,
    /// Entries ever added (a counter).
    pub entries_added: u64,
    /// Entries ever read by the group; `None` if any stream cannot tell.
    pub entries_read: Option<u64>,
}

/// Most pending entries inspected per stream for poison: the oldest, where
/// poison collects; a bound on what one probe costs.
const POISON_SCAN: usize = 1_000;

/// Reads every stream's backlog for the autoscaler.
pub async fn backlog(
    conn: &mut impl ConnectionLike,
    max_deliveries: usize,
) -> RedisResult<Backlog> {
    let streams = stream_stats(conn).await?;
    let mut total = Backlog {
        lag: total_lag(&streams),
        entries_read: Some(0),
        ..Default::default()
    };
    for s in &streams {
        total.entries_added += s.entries_added;
        total.entries_read = match (total.entries_read, s.entries_read, s.group_exists) {
            (Some(sum), Some(read), true) => Some(sum + read),
            (sum, _, false) => sum,
            _ => None,
        };
        let poison = if s.pending == 0 {
            0
        } else {
            let oldest: StreamPendingCountReply = redis::cmd("XPENDING")
                .arg(&s.stream)
                .arg(keys::CONSUMER_GROUP)
                .arg("-")
                .arg("+")
                .arg(POISON_SCAN)
                .query_async(conn)
                .await?;
            oldest
                .ids
                .iter()
                .filter(|p| p.times_delivered > max_deliveries)
                .count() as u64
        };
        total.poison += poison;
        total.pending += s.pending.saturating_sub(poison);
    }
    total.streams = streams;
    Ok(total)
}
