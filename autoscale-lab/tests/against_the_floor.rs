//! Issue 17's measurements: every trace of the wider set
//! (`autoscale-lab/traces/wide/`) through the policy and the KEDA + HPA
//! model, against the cost floor, with KEDA's `lagCount` swept. The tables
//! sit in docs/autoscaling.md between its `floor-results` markers; the test
//! fails when they differ from what the code gives now, and
//! `make autoscale-lab` rewrites them.

mod common;

use std::fmt::Write as _;

use autoscale_lab::generate::Shape;
use autoscale_lab::simulate::policies::{Fanout, KedaHpa};
use autoscale_lab::simulate::sweep::{self, LAG_COUNTS};
use autoscale_lab::simulate::{Facts, Summary, Trace, run};

/// The workers the lab assumes: 200 events/s each, ready 10 s after asked,
/// none at the start (as `tests/lab.rs`).
const FACTS: Facts = Facts {
    service_rate: 200.0,
    start_delay_secs: 10,
    initial_replicas: 0,
};
/// KEDA's `activationLagCount` in the baseline (see docs/autoscaling.md).
const KEDA_ACTIVATION_LAG: u64 = 1;

/// A ratio to the floor: two decimals, or a whole number once it is
/// large (a trickle's floor is a fraction of a replica-second).
fn times(ratio: Option<f64>) -> String {
    match ratio {
        None => "no floor".to_owned(),
        Some(r) if r >= 100.0 => format!("{r:.0}×"),
        Some(r) => format!("{r:.2}×"),
    }
}

fn cells(s: &Summary) -> String {
    format!(
        "{} | {} | {} | {} | {} | {} |",
        s.replica_seconds,
        times(s.ratio_to_floor),
        s.drain_target_missed_seconds,
        s.reversals_within_300s,
        s.seconds_at_zero,
        s.wake_seconds
            .map_or_else(|| "never".to_owned(), |w| format!("{w} s")),
    )
}

fn tables() -> String {
    let (settings, poll) = common::shipped_settings();
    let mut main = String::from(
        "| trace | floor (pod-s) | policy | pod-seconds | × floor | drain target missed (s) | reversals within 300 s | at zero (s) | wake from zero |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let mut swept = format!(
        "KEDA + HPA at each `lagCount` (drain target missed in seconds / × floor):\n\n| trace | {} |\n|---|{}\n",
        LAG_COUNTS
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(LAG_COUNTS.len()),
    );
    for shape in Shape::ALL {
        let name = shape.name();
        let trace = Trace::read(&common::repo(&format!(
            "autoscale-lab/traces/wide/{name}.csv"
        )))
        .unwrap();
        let ours = run(&mut Fanout::new(settings.clone(), poll), &trace, &FACTS).summary;
        let keda = run(
            &mut KedaHpa::new(&settings, sweep::DEFAULT_LAG_COUNT, KEDA_ACTIVATION_LAG),
            &trace,
            &FACTS,
        )
        .summary;
        let points =
            sweep::keda_lag_counts(&trace, &FACTS, &settings, KEDA_ACTIVATION_LAG, LAG_COUNTS);
        let best = sweep::best(&points).unwrap();
        // A trickle's floor is a fraction of a pod-second: show it.
        let floor = match ours.floor_replica_seconds {
            f if f >= 10.0 => format!("{f:.0}"),
            f => format!("{f:.3}"),
        };
        writeln!(main, "| {name} | {floor} | Fanout | {}", cells(&ours)).unwrap();
        writeln!(
            main,
            "| {name} | {floor} | KEDA + HPA, lagCount {} | {}",
            sweep::DEFAULT_LAG_COUNT,
            cells(&keda)
        )
        .unwrap();
        writeln!(
            main,
            "| {name} | {floor} | KEDA + HPA at its best, lagCount {} | {}",
            best.lag_count,
            cells(&best.summary)
        )
        .unwrap();
        let row: Vec<String> = points
            .iter()
            .map(|p| {
                format!(
                    "{} / {}",
                    p.summary.drain_target_missed_seconds,
                    times(p.summary.ratio_to_floor)
                )
            })
            .collect();
        writeln!(swept, "| {name} | {} |", row.join(" | ")).unwrap();
    }
    format!("{main}\n{swept}")
}

#[test]
fn the_committed_floor_results_match_the_code() {
    common::section_matches("floor-results", &tables());
}
