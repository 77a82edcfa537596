//! KEDA's `lagCount` swept over a range: the baseline at its best, not only
//! at [`DEFAULT_LAG_COUNT`]. Issue 17 asks the policy to miss
//! the drain target no more often than KEDA at its best `lagCount`, so the
//! lab reports, per trace, each `lagCount`'s missed seconds and cost and
//! the best of them.

use feed_core::autoscale::Settings;
use serde::Serialize;

use super::policies::KedaHpa;
use super::{Facts, Summary, Trace, run};

/// The `lagCount` the KEDA + HPA model runs at unless told otherwise: a
/// replica per 1,000 undelivered entries, what FeedClusters set as
/// `lagPerReplica` before issue 17 dropped it from the policy.
pub const DEFAULT_LAG_COUNT: u64 = 1_000;

/// The `lagCount`s swept by default: lag per replica, roughly doubling
/// from 50 to 10,000. At the lab's 200 events/s per worker and 30 s drain
/// target one worker drains 6,000 events in time, so the range runs from
/// far more eager than needed (50: a worker per quarter second of work) to
/// too lazy to meet the target at all (10,000).
pub const LAG_COUNTS: &[u64] = &[50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000];

/// One `lagCount` of a sweep and how the trace went with it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub lag_count: u64,
    pub summary: Summary,
}

/// Runs `trace` through the KEDA + HPA model once per `lag_counts` entry,
/// with the bounds of `settings` and `activation_lag` as
/// `activationLagCount`.
pub fn keda_lag_counts(
    trace: &Trace,
    facts: &Facts,
    settings: &Settings,
    activation_lag: u64,
    lag_counts: &[u64],
) -> Vec<Point> {
    lag_counts
        .iter()
        .map(|&lag_count| Point {
            lag_count,
            summary: run(
                &mut KedaHpa::new(settings, lag_count, activation_lag),
                trace,
                facts,
            )
            .summary,
        })
        .collect()
}

/// The best point: the fewest seconds over the drain target, then the
/// fewest replica-seconds (the cheapest way to KEDA's best service), then
/// the first. `None` for an empty sweep.
pub fn best(points: &[Point]) -> Option<&Point> {
    points.iter().min_by_key(|p| {
        (
            p.summary.drain_target_missed_seconds,
            p.summary.replica_seconds,
        )
    })
}
