//! The cost floor: the replica-seconds physics sets for a trace. Every
//! event takes `1 / μ` seconds of one worker, μ being the per-worker
//! service rate in the second it arrives (the trace's `service_rate`, else
//! the run's). However the workers are scaled, they cannot be paid for
//! less than the work itself, so
//!
//! ```text
//! replica-seconds ≥ Σ arrivals(t) / μ(t)
//! ```
//!
//! A policy's replica-seconds over this floor is what it spends on
//! headroom, pod starts, stabilization windows and idling before scaling
//! to zero. The floor ignores the start delay and the drain target, so no
//! real policy reaches 1.0; issue 17 asks for 1.3 on steady loads.

use super::{Facts, Trace};

/// The replica-seconds needed to serve every event of `trace` at the
/// per-worker rate (each second's own, else `facts.service_rate`).
pub fn replica_seconds(trace: &Trace, facts: &Facts) -> f64 {
    trace
        .seconds
        .iter()
        .map(|s| s.arrivals as f64 / s.service_rate.unwrap_or(facts.service_rate))
        .sum()
}

/// `paid` replica-seconds as a multiple of `floor`; `None` when the floor
/// is zero (a trace without events, where any cost is infinitely many
/// times the floor).
pub fn ratio(paid: u64, floor: f64) -> Option<f64> {
    (floor > 0.0).then(|| paid as f64 / floor)
}
