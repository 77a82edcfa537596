//! The worker's Prometheus metrics.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

/// Buckets for event handling and propagation, in seconds: 1 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Everything the worker counts.
pub struct Metrics {
    pub registry: Registry,
    /// Events handled, by type and outcome (`ok`, `retry`, `dead_letter`).
    pub events: IntCounterVec,
    /// Time to apply one event.
    pub handle_seconds: HistogramVec,
    /// Commit (the event's `occurred_at`) to applied: how stale feeds are.
    pub propagation_seconds: HistogramVec,
    /// Feeds written by fan-out, backfill and clean-up.
    pub feed_writes: IntCounter,
    /// Followers fan-out passed over: Redis keeps no feed for them (they
    /// have not read lately), and their next read builds it.
    pub feeds_skipped: IntCounter,
    /// Entries taken over from idle consumers.
    pub claimed: IntCounter,
    /// Entries per read.
    pub batch_size: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        let events = IntCounterVec::new(
            Opts::new(
                "fanout_worker_events_total",
                "Events handled, by type and outcome",
            ),
            &["event_type", "outcome"],
        )
        .expect("valid metric");
        let handle_seconds = HistogramVec::new(
            HistogramOpts::new("fanout_worker_handle_seconds", "Time to apply one event")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["event_type"],
        )
        .expect("valid metric");
        let propagation_seconds = HistogramVec::new(
            HistogramOpts::new(
                "fanout_worker_propagation_seconds",
                "Time from an event's commit to its effect being applied",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["event_type"],
        )
        .expect("valid metric");
        let feed_writes = IntCounter::new(
            "fanout_worker_feed_writes_total",
            "Feeds written by the worker",
        )
        .expect("valid metric");
        let feeds_skipped = IntCounter::new(
            "fanout_worker_feeds_skipped_total",
            "Followers passed over by fan-out: no feed kept for them in Redis",
        )
        .expect("valid metric");
        let claimed = IntCounter::new(
            "fanout_worker_claimed_total",
            "Stream entries claimed from idle consumers",
        )
        .expect("valid metric");
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("fanout_worker_batch_size", "Entries per read").buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
            ]),
        )
        .expect("valid metric");
        let registry = feed_core::runtime::registry(vec![
            Box::new(events.clone()),
            Box::new(handle_seconds.clone()),
            Box::new(propagation_seconds.clone()),
            Box::new(feed_writes.clone()),
            Box::new(feeds_skipped.clone()),
            Box::new(claimed.clone()),
            Box::new(batch_size.clone()),
        ]);
        Metrics {
            registry,
            events,
            handle_seconds,
            propagation_seconds,
            feed_writes,
            feeds_skipped,
            claimed,
            batch_size,
        }
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        feed_core::runtime::render_metrics(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
