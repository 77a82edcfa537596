//! Load: closed loops (N clients, each sending its next request when the
//! last is answered) and an open loop (requests at a fixed rate, answered or
//! not), recording every request's latency and outcome.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;

/// One request: when it started (since the load began), how long it took,
/// whether it succeeded.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Duration,
    pub latency: Duration,
    pub ok: bool,
}

/// Everything a load recorded.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub samples: Vec<Sample>,
    pub elapsed: Duration,
}

/// A load's numbers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stats {
    pub requests: usize,
    pub errors: usize,
    /// Successful requests per second.
    pub per_s: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Successful requests completed in each second of the load.
    pub per_second: Vec<u64>,
}

impl Recorded {
    pub fn stats(&self) -> Stats {
        let mut latencies: Vec<Duration> = self
            .samples
            .iter()
            .filter(|s| s.ok)
            .map(|s| s.latency)
            .collect();
        latencies.sort_unstable();
        let ms = |q: f64| {
            if latencies.is_empty() {
                return 0.0;
            }
            let i = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1;
            latencies[i].as_secs_f64() * 1000.0
        };
        let seconds = self.elapsed.as_secs_f64().ceil().max(1.0) as usize;
        let mut per_second = vec![0u64; seconds];
        for s in self.samples.iter().filter(|s| s.ok) {
            let done = (s.at + s.latency).as_secs() as usize;
            if let Some(slot) = per_second.get_mut(done.min(seconds - 1)) {
                *slot += 1;
            }
        }
        let ok = latencies.len();
        Stats {
            requests: self.samples.len(),
            errors: self.samples.len() - ok,
            per_s: ok as f64 / self.elapsed.as_secs_f64().max(1e-9),
            p50_ms: ms(0.50),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            max_ms: ms(1.0),
            per_second,
        }
    }
}

/// `clients` loops for `duration`, each calling `request(client, n)` for
/// its n-th request; a request answers whether it succeeded.
pub async fn closed<F, Fut>(clients: usize, duration: Duration, request: F) -> Recorded
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut n = 0;
            while start.elapsed() < duration {
                let at = start.elapsed();
                let began = Instant::now();
                let ok = request(client, n).await;
                samples.push(Sample {
                    at,
                    latency: began.elapsed(),
                    ok,
                });
                n += 1;
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.unwrap_or_default());
    }
    Recorded {
        samples,
        elapsed: start.elapsed(),
    }
}

/// `request(i)` once for each `i` in `0..items`, `clients` at a time.
pub async fn each<F, Fut>(items: usize, clients: usize, request: F) -> Recorded
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (request, next) = (request.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= items {
                    return samples;
                }
                let at = start.elapsed();
                let began = Instant::now();
                let ok = request(i).await;
                samples.push(Sample {
                    at,
                    latency: began.elapsed(),
                    ok,
                });
            }
        }));
    }
    let mut samples = Vec::with_capacity(items);
    for task in tasks {
        samples.extend(task.await.unwrap_or_default());
    }
    Recorded {
        samples,
        elapsed: start.elapsed(),
    }
}

/// Requests at `rate` per second for `duration`, whether or not earlier ones
/// were answered (at most `max_in_flight` at once: beyond that the load
/// generator, not the system, would be measured).
pub async fn open<F, Fut>(
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
    request: F,
) -> Recorded
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let request = Arc::new(request);
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
    let mut tasks = Vec::new();
    let mut n = 0u64;
    loop {
        let due = interval.mul_f64(n as f64);
        if due >= duration {
            break;
        }
        tokio::time::sleep_until((start + due).into()).await;
        let permit = slots.clone().acquire_owned().await.expect("never closed");
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let at = start.elapsed();
            let began = Instant::now();
            let ok = request(n).await;
            drop(permit);
            Sample {
                at,
                latency: began.elapsed(),
                ok,
            }
        }));
        n += 1;
    }
    let mut samples = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(sample) = task.await {
            samples.push(sample);
        }
    }
    Recorded {
        samples,
        elapsed: start.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_take_percentiles_of_successes_and_count_errors() {
        let samples = (1..=100)
            .map(|i| Sample {
                at: Duration::from_millis(i * 10),
                latency: Duration::from_millis(i),
                ok: true,
            })
            .chain(std::iter::once(Sample {
                at: Duration::ZERO,
                latency: Duration::from_secs(9),
                ok: false,
            }))
            .collect();
        let stats = Recorded {
            samples,
            elapsed: Duration::from_secs(2),
        }
        .stats();
        assert_eq!(stats.requests, 101);
        assert_eq!(stats.errors, 1);
        assert_eq!(stats.per_s, 50.0);
        assert_eq!(stats.p50_ms, 50.0);
        assert_eq!(stats.p99_ms, 99.0);
        assert_eq!(stats.max_ms, 100.0);
        assert_eq!(stats.per_second.iter().sum::<u64>(), 100);
    }

    #[tokio::test]
    async fn each_item_is_requested_once() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let recorded = each(50, 4, move |i| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(i);
                i % 10 != 0
            }
        })
        .await;
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
        assert_eq!(recorded.stats().errors, 5);
    }

    #[tokio::test]
    async fn an_open_loop_keeps_its_rate() {
        let recorded = open(200.0, Duration::from_millis(500), 10, |_| async { true }).await;
        assert_eq!(recorded.samples.len(), 100);
    }
}
