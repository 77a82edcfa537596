//! The API's Prometheus metrics and the middleware that records requests.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Request latency buckets, in seconds: 0.5 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Everything the API counts.
pub struct Metrics {
    pub registry: Registry,
    /// Requests by method, route template and status.
    pub requests: IntCounterVec,
    /// Request latency by method and route template.
    pub latency: HistogramVec,
    /// Events put on streams, by path (`fast`, `relay`, or `recovered`: again,
    /// after the streams lost them).
    pub published: IntCounterVec,
    /// Events the fast path failed to publish (left to the relay).
    pub publish_failures: IntCounter,
    /// Events committed but not yet on a stream.
    pub outbox_backlog: IntGauge,
    /// Events on a stream but not yet known to be applied by the workers.
    pub outbox_unapplied: IntGauge,
    /// Feed reads by where the feed came from (`cache`, `rebuilt`, `database`).
    pub feed_reads: IntCounterVec,
    /// Requests refused by a rate limit, by limit (`user`, `address`,
    /// `login_address`, `login_handle`).
    pub rate_limited: IntCounterVec,
    /// Logins refused for a wrong handle or password.
    pub login_failures: IntCounter,
    /// Posts written per statement by the group commit.
    pub post_batch_size: Histogram,
    /// Live feed streams open on this replica.
    pub streams_open: IntGauge,
    /// Events pushed on live streams, by kind (`post`, `removed`).
    pub stream_events: IntCounterVec,
    /// Streams this replica ended, by reason (`slow`, `idle`, `lost`,
    /// `shutdown`; see `live::reason`), and streams refused (`refused`).
    pub stream_drops: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let requests = IntCounterVec::new(
            Opts::new("fanout_http_requests_total", "HTTP requests"),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "fanout_http_request_duration_seconds",
                "HTTP request latency",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "route"],
        )
        .expect("valid metric");
        let published = IntCounterVec::new(
            Opts::new(
                "fanout_events_published_total",
                "Events published to streams",
            ),
            &["path"],
        )
        .expect("valid metric");
        let publish_failures = IntCounter::new(
            "fanout_publish_failures_total",
            "Events the fast path could not publish",
        )
        .expect("valid metric");
        let outbox_backlog = IntGauge::new(
            "fanout_outbox_backlog",
            "Events committed but not yet published",
        )
        .expect("valid metric");
        let outbox_unapplied = IntGauge::new(
            "fanout_outbox_unapplied",
            "Events published but not yet known to be applied",
        )
        .expect("valid metric");
        let feed_reads = IntCounterVec::new(
            Opts::new("fanout_feed_reads_total", "Home feed reads by source"),
            &["source"],
        )
        .expect("valid metric");
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "fanout_rate_limited_total",
                "Requests refused by a rate limit",
            ),
            &["scope"],
        )
        .expect("valid metric");
        let login_failures = IntCounter::new(
            "fanout_login_failures_total",
            "Logins refused for a wrong handle or password",
        )
        .expect("valid metric");
        let post_batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "fanout_post_batch_size",
                "Posts written per statement (group commit)",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
        )
        .expect("valid metric");
        let streams_open = IntGauge::new(
            "fanout_streams_open",
            "Live feed streams open on this replica",
        )
        .expect("valid metric");
        let stream_events = IntCounterVec::new(
            Opts::new(
                "fanout_stream_events_total",
                "Events pushed on live feed streams",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let stream_drops = IntCounterVec::new(
            Opts::new(
                "fanout_stream_drops_total",
                "Live feed streams ended or refused by the server",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let registry = feed_core::runtime::registry(vec![
            Box::new(streams_open.clone()),
            Box::new(stream_events.clone()),
            Box::new(stream_drops.clone()),
            Box::new(post_batch_size.clone()),
            Box::new(rate_limited.clone()),
            Box::new(login_failures.clone()),
            Box::new(requests.clone()),
            Box::new(latency.clone()),
            Box::new(published.clone()),
            Box::new(publish_failures.clone()),
            Box::new(outbox_backlog.clone()),
            Box::new(outbox_unapplied.clone()),
            Box::new(feed_reads.clone()),
        ]);
        Metrics {
            registry,
            requests,
            latency,
            published,
            publish_failures,
            outbox_backlog,
            outbox_unapplied,
            feed_reads,
            rate_limited,
            login_failures,
            post_batch_size,
            streams_open,
            stream_events,
            stream_drops,
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

/// Records every request's status and latency under its route template (not
/// the raw path, so ids do not mint new series).
pub async fn record(State(m): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Only standard methods become labels: a client must not mint series.
    let method: &'static str = match request.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let response = next.run(request).await;
    m.latency
        .with_label_values(&[method, route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[method, route.as_str(), response.status().as_str()])
        .inc();
    response
}
