//! The consume loop: read from every stream, apply events as they come
//! (up to a bound at once), acknowledge what is finished; take over entries
//! other consumers left pending too long; dead-letter what cannot succeed;
//! on shutdown, finish the events in hand and stop.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use feed_core::bus::Conn;
use feed_core::bus::{self, Delivery};
use feed_core::db::{self, dead_letters::DeadLetter};
use feed_core::events::{Envelope, EventType};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use redis::RedisResult;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::fanout::Fanout;
use crate::metrics::Metrics;

/// How the loop paces itself.
#[derive(Debug, Clone)]
pub struct Settings {
    pub consumer: String,
    pub batch_size: usize,
    pub concurrency: usize,
    pub block: Duration,
    pub claim_idle: Duration,
    pub claim_interval: Duration,
    pub max_deliveries: usize,
    pub trim_interval: Duration,
}

/// A read of the streams in flight.
type Read<'a> = Pin<Box<dyn Future<Output = RedisResult<Vec<Delivery>>> + Send + 'a>>;

/// One member of the consumer group.
pub struct Consumer {
    pub settings: Settings,
    pub fanout: Fanout,
    /// The event streams: acknowledgements, claims and trims.
    pub streams: Conn,
    /// For blocking reads only: a blocked connection answers nothing else.
    pub reader: Conn,
    pub db: PgPool,
    pub metrics: Arc<Metrics>,
}

/// What became of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Applied: acknowledge.
    Done,
    /// Recorded as a dead letter: acknowledge.
    DeadLettered,
    /// Failed for now: leave pending, to be claimed and retried.
    Retry,
}

impl Consumer {
    /// Runs until `shutdown` is cancelled, then returns once the events in
    /// hand are applied and acknowledged.
    ///
    /// Events stream through: at most `concurrency` are handled at once, and
    /// a new read goes out as soon as half of those slots are free, so one
    /// slow event (a post to thousands of followers) holds up only its own
    /// slot, not the next read.
    pub async fn run(self, shutdown: CancellationToken) {
        let streams = feed_core::keys::all_streams();
        let mut conn = self.streams.clone();
        // A restarted worker (same name) first re-reads its own pending entries.
        let mut own_pending = true;
        let mut last_claim: Option<Instant> = None;
        // Where each stream's scan of the pending list resumes.
        let mut claim_from: HashMap<String, String> = HashMap::new();
        let mut last_trim = Instant::now();
        let concurrency = self.settings.concurrency.max(1);
        // Entries read or claimed, waiting for a slot (a read's count is per
        // stream, so it may bring more than the free slots).
        let mut waiting: VecDeque<(Delivery, usize)> = VecDeque::new();
        let mut in_flight = FuturesUnordered::new();
        // Every entry waiting or in flight: a claim must not hand this worker
        // an entry it is still handling (one slower than the claim's idle
        // time) a second time.
        let mut in_hand: HashSet<(String, String)> = HashSet::new();
        let mut finished: HashMap<String, Vec<String>> = HashMap::new();
        let mut read: Option<Read<'_>> = None;
        // After a failed read the next one waits; shutdown need not.
        let mut retry_at: Option<Instant> = None;
        info!(consumer = %self.settings.consumer, "consuming {}", streams.join(", "));

        loop {
            let stopping = shutdown.is_cancelled();
            if !stopping && read.is_none() {
                if last_claim.is_none_or(|t| t.elapsed() >= self.settings.claim_interval) {
                    for (delivery, attempts) in self.claim_idle(&streams, &mut claim_from).await {
                        if in_hand.insert(entry_key(&delivery)) {
                            waiting.push_back((delivery, attempts));
                        }
                    }
                    last_claim = Some(Instant::now());
                }
                if last_trim.elapsed() >= self.settings.trim_interval {
                    self.trim(&streams).await;
                    last_trim = Instant::now();
                }
            }
            while in_flight.len() < concurrency {
                let Some((delivery, attempts)) = waiting.pop_front() else {
                    break;
                };
                in_flight.push(self.handle_owned(delivery, attempts));
            }
            if stopping && read.is_none() && in_flight.is_empty() {
                break;
            }
            let free = concurrency.saturating_sub(in_flight.len());
            if !stopping && read.is_none() && waiting.is_empty() && free * 2 >= concurrency {
                self.ack(&mut finished).await;
                let mut reader = self.reader.clone();
                let (streams, consumer) = (&streams, self.settings.consumer.as_str());
                let (count, block) = (
                    free.clamp(1, self.settings.batch_size.max(1)),
                    self.settings.block,
                );
                let delay = retry_at.map(|t| t.saturating_duration_since(Instant::now()));
                read = Some(Box::pin(async move {
                    if let Some(delay) = delay {
                        tokio::time::sleep(delay).await;
                    }
                    bus::read_group(&mut reader, consumer, streams, count, block, own_pending).await
                }));
            }
            tokio::select! {
                Some((delivery, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    in_hand.remove(&entry_key(&delivery));
                    if outcome != Outcome::Retry {
                        finished.entry(delivery.stream).or_default().push(delivery.entry_id);
                    }
                    if in_flight.is_empty() && waiting.is_empty() {
                        self.ack(&mut finished).await;
                    }
                }
                result = async { read.as_mut().expect("guarded").await }, if read.is_some() => {
                    read = None;
                    retry_at = None;
                    match result {
                        Ok(batch) => {
                            own_pending = false;
                            if !batch.is_empty() {
                                self.metrics.batch_size.observe(batch.len() as f64);
                            }
                            for delivery in batch {
                                in_hand.insert(entry_key(&delivery));
                                waiting.push_back((delivery, 1));
                            }
                        }
                        Err(e) if bus::is_missing_group(&e) => {
                            // Redis lost the streams (restarted empty): recreate them.
                            warn!("consumer group missing; recreating it");
                            if let Err(e) = bus::ensure_groups(&mut conn).await {
                                warn!(error = %e, "recreating the consumer group failed");
                                retry_at = Some(Instant::now() + RETRY_PAUSE);
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, "reading the streams failed; retrying");
                            retry_at = Some(Instant::now() + RETRY_PAUSE);
                        }
                    }
                }
                _ = shutdown.cancelled(), if !stopping => {
                    // A read still waiting out its pause has sent nothing.
                    if retry_at.is_some_and(|t| t > Instant::now()) {
                        read = None;
                    }
                }
            }
        }
        self.ack(&mut finished).await;
        info!(consumer = %self.settings.consumer, "stopped consuming");
    }

    /// Takes over entries idle on any consumer too long, with how often
    /// each has been delivered.
    async fn claim_idle(
        &self,
        streams: &[String],
        claim_from: &mut HashMap<String, String>,
    ) -> Vec<(Delivery, usize)> {
        let mut conn = self.streams.clone();
        let mut taken = Vec::new();
        for stream in streams {
            let start = claim_from.get(stream).map_or("0-0", String::as_str);
            let claimed = bus::claim_idle(
                &mut conn,
                stream,
                &self.settings.consumer,
                self.settings.claim_idle,
                self.settings.batch_size,
                start,
            )
            .await;
            match claimed {
                Ok(claimed) => {
                    claim_from.insert(stream.clone(), claimed.next_start);
                    if !claimed.entries.is_empty() {
                        info!(
                            stream,
                            entries = claimed.entries.len(),
                            "claimed idle entries"
                        );
                        self.metrics.claimed.inc_by(claimed.entries.len() as u64);
                        taken.extend(claimed.entries);
                    }
                }
                Err(e) if bus::is_missing_group(&e) => {}
                Err(e) => warn!(stream, error = %e, "claiming idle entries failed"),
            }
        }
        taken
    }

    /// Trims acknowledged entries off the streams.
    async fn trim(&self, streams: &[String]) {
        let mut conn = self.streams.clone();
        for stream in streams {
            match bus::trim_finished(&mut conn, stream).await {
                Ok(n) if n > 0 => debug!(stream, trimmed = n, "trimmed acknowledged entries"),
                Ok(_) => {}
                Err(e) => warn!(stream, error = %e, "trimming failed"),
            }
        }
    }

    /// Acknowledges finished entries, one XACK per stream.
    async fn ack(&self, finished: &mut HashMap<String, Vec<String>>) {
        let mut conn = self.streams.clone();
        for (stream, ids) in finished.drain() {
            if let Err(e) = bus::ack(&mut conn, &stream, &ids).await {
                // Not lost: the entries stay pending and are claimed again;
                // applying them twice is harmless.
                warn!(stream, error = %e, "acknowledging failed");
            }
        }
    }

    async fn handle_owned(&self, delivery: Delivery, attempts: usize) -> (Delivery, Outcome) {
        let outcome = self.handle(&delivery, attempts).await;
        (delivery, outcome)
    }

    async fn handle(&self, delivery: &Delivery, attempts: usize) -> Outcome {
        let Some(body) = delivery.body.as_deref() else {
            return self
                .dead_letter(delivery, None, "the entry has no 'event' field", attempts)
                .await;
        };
        let envelope = match Envelope::from_json(body) {
            Ok(envelope) => envelope,
            Err(e) => {
                return self
                    .dead_letter(delivery, None, &e.to_string(), attempts)
                    .await;
            }
        };
        let span = info_span!(
            "event",
            event_id = %envelope.event_id,
            event_type = %envelope.event_type,
            correlation_id = envelope.correlation_id.as_deref().unwrap_or(""),
            entry_id = %delivery.entry_id,
        );
        async {
            let event = match envelope.decode() {
                Ok(event) => event,
                Err(e) => {
                    return self
                        .dead_letter(delivery, Some(&envelope), &e.to_string(), attempts)
                        .await;
                }
            };
            let event_type = envelope.event_type.as_str();
            let started = Instant::now();
            match self.fanout.handle(&event).await {
                Ok(effect) => {
                    let took = started.elapsed();
                    self.metrics
                        .handle_seconds
                        .with_label_values(&[event_type])
                        .observe(took.as_secs_f64());
                    let age = (chrono::Utc::now() - envelope.occurred_at)
                        .num_milliseconds()
                        .max(0);
                    self.metrics
                        .propagation_seconds
                        .with_label_values(&[event_type])
                        .observe(age as f64 / 1000.0);
                    self.metrics.feed_writes.inc_by(effect.feed_writes);
                    self.metrics.feeds_skipped.inc_by(effect.feeds_skipped);
                    self.metrics
                        .events
                        .with_label_values(&[event_type, "ok"])
                        .inc();
                    info!(
                        feeds = effect.feed_writes,
                        skipped = effect.feeds_skipped,
                        took_ms = took.as_millis() as u64,
                        "applied"
                    );
                    Outcome::Done
                }
                // An outage is waited out however long it lasts; only an
                // event failing on its own is given up on.
                Err(e) if attempts >= self.settings.max_deliveries && !e.is_outage() => {
                    let reason = format!("gave up after {attempts} deliveries: {e}");
                    self.dead_letter(delivery, Some(&envelope), &reason, attempts)
                        .await
                }
                Err(e) => {
                    self.metrics
                        .events
                        .with_label_values(&[event_type, "retry"])
                        .inc();
                    warn!(attempts, error = %e, "handling failed; will retry");
                    Outcome::Retry
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn dead_letter(
        &self,
        delivery: &Delivery,
        envelope: Option<&Envelope>,
        error: &str,
        attempts: usize,
    ) -> Outcome {
        let letter = DeadLetter {
            stream: delivery.stream.clone(),
            entry_id: delivery.entry_id.clone(),
            event_id: envelope.map(|e| e.event_id),
            event_type: envelope.map(|e| e.event_type.clone()),
            payload: delivery
                .body
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).replace('\0', "\u{FFFD}"))
                .unwrap_or_default(),
            error: error.to_owned(),
            attempts: attempts.min(i32::MAX as usize) as i32,
        };
        match db::dead_letters::record(&self.db, &letter).await {
            Ok(()) => {
                // Only known types become labels: junk must not mint series.
                let event_type = letter
                    .event_type
                    .as_deref()
                    .and_then(EventType::parse)
                    .map_or("unknown", EventType::as_str);
                self.metrics
                    .events
                    .with_label_values(&[event_type, "dead_letter"])
                    .inc();
                warn!(stream = %letter.stream, entry_id = %letter.entry_id, error, "dead-lettered");
                Outcome::DeadLettered
            }
            Err(e) => {
                warn!(error = %e, "recording a dead letter failed; will retry");
                Outcome::Retry
            }
        }
    }
}

/// An entry's identity across streams.
fn entry_key(delivery: &Delivery) -> (String, String) {
    (delivery.stream.clone(), delivery.entry_id.clone())
}

/// How long to wait before reading again after a failed read.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
