//! Publishing again what Redis lost.
//!
//! An event marked published is not yet an event applied: the streams'
//! Redis may come back empty or from a truncated append-only file, its
//! consumer group may be deleted, a stream trimmed too far. Each relay pass
//! therefore looks at the events published a while ago and not yet known to
//! be applied, and, by what their streams say now ([`feed_core::delivery`]),
//! marks the finished ones applied, leaves those still in the streams, and
//! publishes the lost ones again. Nothing on the request path or in the
//! workers pays for it: it costs one look per stream and one `UPDATE` per
//! pass.

use std::collections::HashMap;
use std::time::Duration;

use feed_core::bus::{self, Redis};
use feed_core::db;
use feed_core::delivery::{self, EntryId, Verdict};
use feed_core::events::EventType;
use sqlx::PgPool;
use uuid::Uuid;

use crate::publish::{Marks, RelayError};

/// Most events looked at per event type and pass: bounds one pass's
/// transaction and Redis round trips, and keeps a backlog on one stream
/// from hiding the others.
pub const CHECK_BATCH: i64 = 1_000;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Events found lost and published again.
    pub republished: usize,
    /// Whether a type had a full batch and settled most of it: more are
    /// waiting and the pass is getting through them, so the next one should
    /// not wait. (A full batch that stays in flight, as during a backlog,
    /// waits the relay's interval instead of spinning.)
    pub more: bool,
}

/// One pass over events published more than `grace` ago and not known to
/// be applied.
pub async fn recover_once(
    db: &PgPool,
    redis: &Redis,
    grace: Duration,
) -> Result<Recovered, RelayError> {
    let older_than = chrono::Utc::now() - grace;
    let mut conn = redis.conn().await?;
    let mut done = Recovered::default();
    for event_type in EventType::ALL {
        let mut tx = db.begin().await?;
        let rows =
            db::outbox::lock_unapplied(&mut tx, event_type.as_str(), older_than, CHECK_BATCH)
                .await?;
        if rows.is_empty() {
            continue;
        }
        let full = rows.len() as i64 == CHECK_BATCH;
        let stream = feed_core::keys::stream(event_type);
        let progress = delivery::progress(&mut conn, &stream).await?;

        let entries: Vec<Option<EntryId>> = rows
            .iter()
            .map(|row| row.stream_entry.as_deref()?.parse().ok())
            .collect();
        let mut verdicts: Vec<Verdict> = rows
            .iter()
            .zip(&entries)
            .map(|(row, entry)| match entry {
                Some(entry) => delivery::verdict(*entry, row.stream_epoch.as_deref(), &progress),
                // Marked published with no place recorded (by a replica of an
                // older version, during an upgrade): nothing to look up, so it
                // is published again; handlers are idempotent.
                None => Verdict::Lost,
            })
            .collect();
        let lookups: Vec<(usize, EntryId)> = verdicts
            .iter()
            .zip(&entries)
            .enumerate()
            .filter_map(|(i, (v, entry))| (*v == Verdict::LookUp).then_some((i, (*entry)?)))
            .collect();
        let looked_up: Vec<EntryId> = lookups.iter().map(|(_, e)| *e).collect();
        let found = delivery::exist(&mut conn, &stream, &looked_up).await?;
        for ((i, _), exists) in lookups.iter().zip(found) {
            verdicts[*i] = delivery::after_lookup(exists, &progress);
        }

        let mut applied = Vec::new();
        let mut lost = Vec::new();
        let mut adopted: HashMap<String, Vec<Uuid>> = HashMap::new();
        for (row, verdict) in rows.into_iter().zip(verdicts) {
            let id = row.envelope.event_id;
            match verdict {
                Verdict::Applied => applied.push(id),
                Verdict::Lost => lost.push(row.envelope),
                Verdict::InFlight { adopt: Some(epoch) } => {
                    adopted.entry(epoch).or_default().push(id)
                }
                Verdict::InFlight { adopt: None } | Verdict::LookUp => {}
            }
        }
        if !applied.is_empty() {
            db::outbox::mark_applied(&mut *tx, &applied).await?;
        }
        for (epoch, ids) in &adopted {
            db::outbox::adopt_epoch(&mut *tx, ids, epoch).await?;
        }
        if !lost.is_empty() {
            let published = bus::publish(&mut conn, &lost).await?;
            Marks::of(&lost, published).write(&mut *tx).await?;
        }
        tx.commit().await?;
        let settled = applied.len() + lost.len();
        done.more |= full && settled as i64 * 2 >= CHECK_BATCH;
        done.republished += lost.len();
    }
    Ok(done)
}
