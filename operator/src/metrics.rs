//! The operator's Prometheus metrics.

use prometheus::{GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The `measure`s of [`Metrics::observed`].
pub const OBSERVED_MEASURES: [&str; 6] = [
    "lag",
    "pending",
    "poison",
    "desired",
    "replicas",
    "max_replicas",
];

/// Everything the operator counts.
pub struct Metrics {
    pub registry: Registry,
    /// Reconciliations by outcome (`ok`, `error`, `paused`).
    pub reconciles: IntCounterVec,
    /// Reconcile errors by kind.
    pub errors: IntCounterVec,
    /// Time one reconciliation takes.
    pub duration: Histogram,
    /// Autoscaler decisions by FeedCluster, direction and whether applied.
    pub decisions: IntCounterVec,
    /// Observed backlog parts per FeedCluster: `lag`, `pending`, `poison`
    /// (absent while unknown), the `desired` worker count, the `replicas`
    /// the Deployment asked for when it decided and `max_replicas`.
    pub observed: IntGaugeVec,
    /// 1 while a FeedCluster is paused (`fanout.dev/paused`), else 0; kept
    /// by the autoscaler's loop, which sees every FeedCluster each tick.
    pub paused: IntGaugeVec,
    /// Autoscaler polls skipped because the FeedCluster is paused.
    pub paused_polls: IntCounterVec,
    /// Per FeedCluster and stream, as last read: entries not yet delivered
    /// to the workers (absent while unknown).
    pub stream_lag: IntGaugeVec,
    /// Per FeedCluster and stream: entries delivered, not acknowledged.
    pub stream_pending: IntGaugeVec,
    /// Per FeedCluster and stream: how long the oldest unfinished entry
    /// has waited (0 when caught up): how stale followers' feeds may be.
    pub stream_oldest_unfinished: GaugeVec,
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
        let decisions = IntCounterVec::new(
            Opts::new("fanout_autoscaler_decisions_total", "Autoscaler decisions"),
            &["feedcluster", "direction", "applied"],
        )
        .expect("valid metric");
        let observed = IntGaugeVec::new(
            Opts::new(
                "fanout_autoscaler_observed",
                "What the autoscaler last saw and wanted",
            ),
            &["feedcluster", "measure"],
        )
        .expect("valid metric");
        let paused = IntGaugeVec::new(
            Opts::new(
                "fanout_operator_paused",
                "1 while a FeedCluster is paused by its fanout.dev/paused annotation",
            ),
            &["feedcluster"],
        )
        .expect("valid metric");
        let paused_polls = IntCounterVec::new(
            Opts::new(
                "fanout_autoscaler_paused_polls_total",
                "Autoscaler polls skipped because the FeedCluster is paused",
            ),
            &["feedcluster"],
        )
        .expect("valid metric");
        let per_stream = ["feedcluster", "stream"];
        let stream_lag = IntGaugeVec::new(
            Opts::new(
                "fanout_autoscaler_stream_lag",
                "Stream entries not yet delivered to the workers, as last read",
            ),
            &per_stream,
        )
        .expect("valid metric");
        let stream_pending = IntGaugeVec::new(
            Opts::new(
                "fanout_autoscaler_stream_pending",
                "Stream entries delivered to workers and not acknowledged, as last read",
            ),
            &per_stream,
        )
        .expect("valid metric");
        let stream_oldest_unfinished = GaugeVec::new(
            Opts::new(
                "fanout_autoscaler_stream_oldest_unfinished_seconds",
                "Age of the oldest stream entry not yet handled (0 when caught up), as last read",
            ),
            &per_stream,
        )
        .expect("valid metric");
        // Every outcome and error kind from zero, so a first failure is a
        // rise (which rate() and alerts see), not a series appearing.
        for outcome in ["ok", "error", "paused"] {
            reconciles.with_label_values(&[outcome]);
        }
        for kind in crate::context::Error::LABELS {
            errors.with_label_values(&[kind]);
        }
        let registry = feed_core::runtime::registry(vec![
            Box::new(reconciles.clone()),
            Box::new(errors.clone()),
            Box::new(duration.clone()),
            Box::new(decisions.clone()),
            Box::new(observed.clone()),
            Box::new(paused.clone()),
            Box::new(paused_polls.clone()),
            Box::new(stream_lag.clone()),
            Box::new(stream_pending.clone()),
            Box::new(stream_oldest_unfinished.clone()),
        ]);
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            decisions,
            observed,
            paused,
            paused_polls,
            stream_lag,
            stream_pending,
            stream_oldest_unfinished,
        }
    }
}

impl Metrics {
    /// Drops the gauges of what the autoscaler last saw of a FeedCluster
    /// (backlog, streams, worker counts) once it no longer looks (paused,
    /// autoscaling off, deleted): a stale value would keep dashboards and
    /// alerts on a state long gone. Counters stay; they just stop rising.
    pub fn forget_observed(&self, feedcluster: &str) {
        for measure in OBSERVED_MEASURES {
            let _ = self.observed.remove_label_values(&[feedcluster, measure]);
        }
        for stream in feed_core::keys::all_streams() {
            let labels = [feedcluster, stream.as_str()];
            let _ = self.stream_lag.remove_label_values(&labels);
            let _ = self.stream_pending.remove_label_values(&labels);
            let _ = self.stream_oldest_unfinished.remove_label_values(&labels);
        }
    }
}
