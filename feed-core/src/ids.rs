//! Ids: UUIDv7 everywhere, so ids sort by creation time and ordering by id
//! and by time agree (in PostgreSQL indexes, cursors and Redis scores).

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A new time-ordered id and the creation time it encodes (millisecond
/// precision), to store beside it.
pub fn new_with_time() -> (Uuid, DateTime<Utc>) {
    let id = Uuid::now_v7();
    let at = time_of(id).unwrap_or_else(Utc::now);
    (id, at)
}

/// The creation time a UUIDv7 encodes, to the millisecond; `None` for ids of
/// other versions.
pub fn time_of(id: Uuid) -> Option<DateTime<Utc>> {
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos - nanos % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_times_sort_alike() {
        let (a, at_a) = new_with_time();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let (b, at_b) = new_with_time();
        assert!(a < b);
        assert!(at_a < at_b);
        assert_eq!(time_of(a), Some(at_a));
        assert_eq!(time_of(Uuid::new_v4()), None);
    }
}
