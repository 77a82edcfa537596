//! Whether a published event reached the workers, told from Redis alone.
//!
//! When an event is published, the outbox records its stream entry id and
//! the *epoch* of its stream's consumer group: a random id stored beside
//! the stream and replaced whenever the group is created, so a group that
//! Redis lost (restarted empty, a flushed database, a deleted group or
//! stream) never passes for the one that received the entry. A later look
//! at the stream gives each event a [`Verdict`]:
//!
//! - **applied**: same epoch, delivered to the group and no longer pending
//!   (workers acknowledge an entry only once its effects are written);
//! - **in flight**: still in the stream, to be delivered or pending;
//! - **lost**: not in the stream and not finished by this group: it is
//!   published again.
//!
//! Entries leave a stream only from its front (trimming below what the
//! group finished; nothing deletes single entries), so with the epoch
//! unchanged, an entry between the stream's first and last ids exists, and
//! one past the last id was lost with the tail of an append-only file. Only
//! after an epoch change are entries looked up one by one.

use std::fmt;
use std::str::FromStr;

use redis::RedisResult;
use redis::aio::ConnectionLike;
use redis::streams::{StreamInfoGroupsReply, StreamPendingReply, StreamRangeReply};

use crate::keys;

/// A stream entry id, `<ms>-<seq>`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    pub ms: u64,
    pub seq: u64,
}

impl FromStr for EntryId {
    type Err = String;

    fn from_str(text: &str) -> Result<EntryId, String> {
        let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
        match (ms.parse(), seq.parse()) {
            (Ok(ms), Ok(seq)) => Ok(EntryId { ms, seq }),
            _ => Err(format!("not a stream entry id: {text:?}")),
        }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// What one look at a stream and the workers' group on it found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The group's epoch; `None` when there is none (no group yet, or Redis
    /// lost it).
    pub epoch: Option<String>,
    /// The group, if it exists.
    pub group: Option<GroupProgress>,
    /// The stream's first and last entry ids; `None` when it is empty or
    /// missing.
    pub first: Option<EntryId>,
    pub last: Option<EntryId>,
}

/// How far the group has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupProgress {
    /// The newest entry delivered to any consumer.
    pub last_delivered: EntryId,
    /// The oldest entry delivered and not acknowledged, if any.
    pub oldest_pending: Option<EntryId>,
}

/// What became of a published event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The group finished it: its effects are written.
    Applied,
    /// Still in the stream: to be delivered, or pending. `adopt` is the
    /// group's epoch when it differs from the recorded one: the entry now
    /// belongs to that group (created from the start of the stream, it
    /// delivers every entry in it).
    InFlight { adopt: Option<String> },
    /// Gone without being finished: publish it again.
    Lost,
    /// The epoch changed: whether the entry is still in the stream decides
    /// (see [`after_lookup`]).
    LookUp,
}

/// The verdict on an entry published with `epoch`, from `progress` alone.
pub fn verdict(entry: EntryId, epoch: Option<&str>, progress: &Progress) -> Verdict {
    let same_epoch = progress.epoch.is_some() && progress.epoch.as_deref() == epoch;
    let Some(group) = progress.group.filter(|_| same_epoch) else {
        return Verdict::LookUp;
    };
    if entry <= group.last_delivered {
        // Delivered; finished unless it may still be pending.
        return match group.oldest_pending {
            Some(oldest) if entry >= oldest => Verdict::InFlight { adopt: None },
            _ => Verdict::Applied,
        };
    }
    match (progress.first, progress.last) {
        (Some(first), Some(last)) if first <= entry && entry <= last => {
            Verdict::InFlight { adopt: None }
        }
        // Past the stream's end (a truncated append-only file), or before
        // its start though never delivered (trimmed too far).
        _ => Verdict::Lost,
    }
}

/// The verdict on an entry that needed a [`Verdict::LookUp`], once it is
/// known whether the stream still holds it.
pub fn after_lookup(exists: bool, progress: &Progress) -> Verdict {
    if exists {
        Verdict::InFlight {
            adopt: progress.epoch.clone(),
        }
    } else {
        Verdict::Lost
    }
}

/// The key holding a stream's group epoch.
pub fn epoch_key(stream: &str) -> String {
    format!("{stream}:epoch")
}

/// Creates the group from the start of the stream (and the stream), giving
/// it a new epoch, or gives an existing group without one an epoch. Atomic,
/// so no group is ever seen without its epoch for long, and never replaced
/// by a second caller.
const CREATE_GROUP: &str = r"
local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM', 'ENTRIESREAD', '0')
if ok then
  redis.call('SET', KEYS[2], ARGV[2])
  return 1
end
local message = type(err) == 'table' and err.err or tostring(err)
if string.find(message, 'BUSYGROUP', 1, true) then
  redis.call('SET', KEYS[2], ARGV[2], 'NX')
  return 0
end
return redis.error_reply(message)
";

/// Creates the consumer group on every stream (and the streams), from the
/// start of each stream, so events published before the first worker came
/// up are consumed too, each with an epoch. Safe to call again.
pub async fn ensure_groups(conn: &mut impl ConnectionLike) -> RedisResult<()> {
    let script = redis::Script::new(CREATE_GROUP);
    for stream in keys::all_streams() {
        let epoch = uuid::Uuid::now_v7().to_string();
        let _: i64 = script
            .key(&stream)
            .key(epoch_key(&stream))
            .arg(keys::CONSUMER_GROUP)
            .arg(epoch)
            .invoke_async(conn)
            .await?;
    }
    Ok(())
}

/// Looks at `stream` and the workers' group on it.
pub async fn progress(conn: &mut impl ConnectionLike, stream: &str) -> RedisResult<Progress> {
    let (epoch, first, last): (Option<String>, StreamRangeReply, StreamRangeReply) = redis::pipe()
        .get(epoch_key(stream))
        .cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .cmd("XREVRANGE")
        .arg(stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    let id = |reply: &StreamRangeReply| reply.ids.first().and_then(|e| e.id.parse().ok());
    let mut progress = Progress {
        epoch,
        group: None,
        first: id(&first),
        last: id(&last),
    };
    let groups: RedisResult<StreamInfoGroupsReply> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(conn)
        .await;
    let Some(group) = groups.ok().and_then(|g| {
        g.groups
            .into_iter()
            .find(|g| g.name == keys::CONSUMER_GROUP)
    }) else {
        return Ok(progress);
    };
    let Ok(last_delivered) = group.last_delivered_id.parse() else {
        return Ok(progress);
    };
    let pending: StreamPendingReply = redis::cmd("XPENDING")
        .arg(stream)
        .arg(keys::CONSUMER_GROUP)
        .query_async(conn)
        .await?;
    let oldest_pending = match pending {
        StreamPendingReply::Data(d) => d.start_id.parse().ok(),
        _ => None,
    };
    progress.group = Some(GroupProgress {
        last_delivered,
        oldest_pending,
    });
    Ok(progress)
}

/// Whether `stream` still holds each of `entries`, in one round trip.
pub async fn exist(
    conn: &mut impl ConnectionLike,
    stream: &str,
    entries: &[EntryId],
) -> RedisResult<Vec<bool>> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for entry in entries {
        let id = entry.to_string();
        pipe.cmd("XRANGE").arg(stream).arg(&id).arg(&id);
    }
    let found: Vec<StreamRangeReply> = pipe.query_async(conn).await?;
    Ok(found.iter().map(|r| !r.ids.is_empty()).collect())
}

#[cfg(test)]
mod tests;
