//! The operator's Prometheus metrics.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

/// Everything the operator counts.
pub struct Metrics {
    pub registry: Registry,
    /// Reconciliations by outcome (`ok`, `error`).
    pub reconciles: IntCounterVec,
    /// Reconcile errors by kind.
    pub errors: IntCounterVec,
    /// Time one reconciliation takes.
    pub duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciles = IntCounterVec::new(
            Opts::new(
                "fanout_operator_reconciles_total",
                "Reconciliations by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "fanout_operator_reconcile_errors_total",
                "Reconcile errors by kind",
            ),
            &["error"],
        )
        .expect("valid metric");
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "fanout_operator_reconcile_duration_seconds",
                "Time one reconciliation takes",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )
        .expect("valid metric");
        let registry = feed_core::runtime::registry(vec![
            Box::new(reconciles.clone()),
            Box::new(errors.clone()),
            Box::new(duration.clone()),
        ]);
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
        }
    }
}
