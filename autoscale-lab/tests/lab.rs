//! The autoscaling lab's results: every shipped trace through the policy and
//! the KEDA + HPA model, as the table in docs/autoscaling.md (between its
//! `lab-results` markers). The test fails when the committed table differs
//! from what the code gives now; `make autoscale-lab` rewrites it (and draws
//! the plots).

mod common;

use std::fmt::Write as _;

use autoscale_lab::simulate::policies::{Fanout, KedaHpa};
use autoscale_lab::simulate::sweep::DEFAULT_LAG_COUNT;
use autoscale_lab::simulate::{Facts, Summary, Trace, run};

/// The traces, in the order the table shows them.
const TRACES: &[&str] = &["steady", "burst", "diurnal", "sawtooth", "idle-then-one"];
/// The workers the lab assumes: 200 events/s each, ready 10 s after asked.
const FACTS: Facts = Facts {
    service_rate: 200.0,
    start_delay_secs: 10,
    initial_replicas: 0,
};
/// KEDA's `activationLagCount` in the baseline (see docs/autoscaling.md).
const KEDA_ACTIVATION_LAG: u64 = 1;

fn cells(s: &Summary) -> String {
    format!(
        "{} | {} | {} | {} | {} | {} |",
        s.replica_seconds,
        s.drain_target_missed_seconds,
        s.peak_backlog,
        s.scale_changes,
        s.reversals_inside_window,
        s.wake_seconds
            .map_or_else(|| "never".to_owned(), |w| format!("{w} s")),
    )
}

fn table() -> String {
    let (settings, poll) = common::shipped_settings();
    let mut out = String::from(
        "| trace | policy | pod-seconds | drain target missed (s) | peak backlog | scale changes | reversals inside a window | wake from zero |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let mut savings = Vec::new();
    for name in TRACES {
        let trace =
            Trace::read(&common::repo(&format!("autoscale-lab/traces/{name}.csv"))).unwrap();
        let ours = run(&mut Fanout::new(settings.clone(), poll), &trace, &FACTS);
        let keda = run(
            &mut KedaHpa::new(&settings, DEFAULT_LAG_COUNT, KEDA_ACTIVATION_LAG),
            &trace,
            &FACTS,
        );
        writeln!(out, "| {name} | Fanout | {}", cells(&ours.summary)).unwrap();
        writeln!(out, "| {name} | KEDA + HPA | {}", cells(&keda.summary)).unwrap();
        let saved =
            1.0 - ours.summary.replica_seconds as f64 / keda.summary.replica_seconds.max(1) as f64;
        savings.push(if keda.summary.replica_seconds == 0 {
            format!("{name}: KEDA + HPA never woke")
        } else {
            format!("{name} {:.0} %", saved * 100.0)
        });
    }
    writeln!(
        out,
        "\nPod-seconds Fanout saves against KEDA + HPA: {}.",
        savings.join(", ")
    )
    .unwrap();
    out
}

#[test]
fn the_committed_lab_results_match_the_code() {
    common::section_matches("lab-results", &table());
}
