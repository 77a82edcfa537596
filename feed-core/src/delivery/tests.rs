use super::*;

fn id(text: &str) -> EntryId {
    text.parse().unwrap()
}

/// A stream holding 100-0 to 200-0, its group at epoch "a", delivered up
/// to 150-0, with 140-0 the oldest pending.
fn busy() -> Progress {
    Progress {
        epoch: Some("a".into()),
        group: Some(GroupProgress {
            last_delivered: id("150-0"),
            oldest_pending: Some(id("140-0")),
        }),
        first: Some(id("100-0")),
        last: Some(id("200-0")),
    }
}

#[test]
fn entry_ids_order_as_redis_orders_them() {
    assert!(id("9-5") < id("10-0"));
    assert!(id("10-1") > id("10-0"));
    assert_eq!(id("10"), id("10-0"));
    assert_eq!(id("1700000000000-3").to_string(), "1700000000000-3");
    assert!("junk".parse::<EntryId>().is_err());
}

#[test]
fn delivered_and_no_longer_pending_is_applied() {
    let p = busy();
    assert_eq!(verdict(id("120-0"), Some("a"), &p), Verdict::Applied);
    // Trimmed away after it was finished: still applied.
    assert_eq!(verdict(id("50-0"), Some("a"), &p), Verdict::Applied);
    let idle = Progress {
        group: Some(GroupProgress {
            last_delivered: id("200-0"),
            oldest_pending: None,
        }),
        ..busy()
    };
    assert_eq!(verdict(id("200-0"), Some("a"), &idle), Verdict::Applied);
}

#[test]
fn pending_or_undelivered_entries_in_the_stream_are_in_flight() {
    let p = busy();
    let waiting = Verdict::InFlight { adopt: None };
    assert_eq!(verdict(id("140-0"), Some("a"), &p), waiting);
    assert_eq!(verdict(id("150-0"), Some("a"), &p), waiting);
    assert_eq!(verdict(id("180-0"), Some("a"), &p), waiting);
}

#[test]
fn an_entry_past_the_streams_end_was_lost_with_its_tail() {
    // Redis came back from an append-only file that missed the last second.
    assert_eq!(verdict(id("250-0"), Some("a"), &busy()), Verdict::Lost);
    // Trimmed before it was delivered.
    let trimmed = Progress {
        first: Some(id("170-0")),
        ..busy()
    };
    assert_eq!(verdict(id("160-0"), Some("a"), &trimmed), Verdict::Lost);
}

#[test]
fn another_epoch_or_no_group_means_looking_the_entry_up() {
    let p = busy();
    // The group was recreated (deleted, or Redis restarted empty).
    assert_eq!(verdict(id("120-0"), Some("old"), &p), Verdict::LookUp);
    // Published before any group existed.
    assert_eq!(verdict(id("120-0"), None, &p), Verdict::LookUp);
    let gone = Progress::default();
    assert_eq!(verdict(id("120-0"), Some("a"), &gone), Verdict::LookUp);
    let no_group = Progress {
        group: None,
        ..busy()
    };
    assert_eq!(verdict(id("120-0"), Some("a"), &no_group), Verdict::LookUp);
}

#[test]
fn a_looked_up_entry_still_in_the_stream_joins_the_current_group() {
    let p = busy();
    assert_eq!(
        after_lookup(true, &p),
        Verdict::InFlight {
            adopt: Some("a".into())
        }
    );
    assert_eq!(after_lookup(false, &p), Verdict::Lost);
    // No group yet: it waits for one (created from the stream's start).
    assert_eq!(
        after_lookup(true, &Progress::default()),
        Verdict::InFlight { adopt: None }
    );
}
