//! The system under test: `feed-api` and `feed-worker` processes on this
//! machine, against the PostgreSQL and Redis that `make bench` started, and
//! what can be read off them (metrics, memory).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use autoscale_lab::local_workers::LocalWorkers;
use fanout_testkit::process::{Output, Process};
use feed_core::autoscale::step::ScaleTarget;

/// How long the API may take to exit after SIGTERM before it is killed:
/// the measurements are over by then, so waiting longer would only delay
/// the next run.
const API_STOP_GRACE: Duration = Duration::from_secs(10);

/// Where the binaries and the datastores are.
#[derive(Debug, Clone)]
pub struct Setup {
    pub bin_dir: PathBuf,
    pub database_url: String,
    pub redis_url: String,
    /// The feeds' own Redis, if they get one.
    pub feed_redis_url: Option<String>,
    pub api_port: u16,
    /// Workers serve their metrics on this port and the next ones.
    pub worker_port_base: u16,
    pub jwt_secret: String,
}

/// The API and the workers, running.
pub struct Stack {
    pub api_url: String,
    api: Process,
    pub workers: LocalWorkers,
}

/// Settings both processes get: the bench's own secret, quiet logs, and no
/// rate limits (one address sends everything).
fn common_env(setup: &Setup) -> Vec<(String, String)> {
    [
        ("FANOUT_DATABASE_URL", Some(setup.database_url.as_str())),
        ("FANOUT_REDIS_URL", Some(setup.redis_url.as_str())),
        ("FANOUT_FEED_REDIS_URL", setup.feed_redis_url.as_deref()),
        ("FANOUT_LOG_FORMAT", Some("json")),
        ("RUST_LOG", Some("warn")),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
    .collect()
}

impl Stack {
    /// Starts the API (applying migrations) and `workers` workers, and
    /// waits for the API to be ready.
    pub async fn start(setup: &Setup, workers: u32) -> anyhow::Result<Stack> {
        let api_bin = setup.bin_dir.join("feed-api");
        let worker_bin = setup.bin_dir.join("feed-worker");
        for bin in [&api_bin, &worker_bin] {
            if !bin.is_file() {
                bail!(
                    "{} is missing: build it first (make bench does)",
                    bin.display()
                );
            }
        }
        let api_url = format!("http://127.0.0.1:{}", setup.api_port);
        let mut api = Process::new("feed-api", &api_bin)
            .args(["--migrate"])
            .envs(common_env(setup))
            .envs([
                ("FANOUT_HTTP_ADDR", format!("127.0.0.1:{}", setup.api_port)),
                ("FANOUT_JWT_SECRET", setup.jwt_secret.clone()),
                ("FANOUT_RATE_LIMIT_USER_PER_MIN", "0".into()),
                ("FANOUT_RATE_LIMIT_ADDRESS_PER_MIN", "0".into()),
                ("FANOUT_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MIN", "0".into()),
                ("FANOUT_LOGIN_ATTEMPTS_PER_HANDLE", "0".into()),
            ])
            .output(Output::DiscardStdout)
            .grace(API_STOP_GRACE);
        api.start()?;
        let workers_target = LocalWorkers::new(worker_bin, common_env(setup))
            .with_probe_ports(setup.worker_port_base);
        let stack = Stack {
            api_url,
            api,
            workers: workers_target,
        };
        stack.wait_ready().await?;
        stack.workers.scale(workers).await?;
        Ok(stack)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        wait_ready_at(&format!("{}/readyz", self.api_url)).await
    }

    /// Waits until every running worker answers its readiness probe.
    pub async fn wait_workers_ready(&self) -> anyhow::Result<()> {
        for addr in self.workers.probe_addrs().await {
            wait_ready_at(&format!("http://{addr}/readyz")).await?;
        }
        Ok(())
    }

    /// Peak resident memory (high-water mark) of the API and of the largest
    /// worker, in MiB.
    /// The API's process id, while it runs.
    pub fn api_pid(&self) -> Option<u32> {
        self.api.id()
    }

    pub async fn rss_mib(&self) -> (f64, f64) {
        let api = self.api.id().map_or(0.0, rss_mib_of);
        let worker = self
            .workers
            .pids()
            .await
            .into_iter()
            .map(rss_mib_of)
            .fold(0.0, f64::max);
        (api, worker)
    }

    /// The workers' metrics, summed: feed writes, and the propagation
    /// histogram of `post.created` as cumulative bucket counts.
    pub async fn worker_metrics(&self) -> anyhow::Result<WorkerMetrics> {
        let client = reqwest::Client::new();
        let mut total = WorkerMetrics::default();
        for addr in self.workers.probe_addrs().await {
            let text = client
                .get(format!("http://{addr}/metrics"))
                .send()
                .await?
                .text()
                .await?;
            total.add(&WorkerMetrics::parse(&text));
        }
        Ok(total)
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.workers.stop_all().await?;
        self.api.terminate().await?;
        Ok(())
    }
}

fn rss_mib_of(pid: u32) -> f64 {
    let status = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status"))
        .unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// What the bench reads off the workers' `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerMetrics {
    /// Posts written into followers' feeds.
    pub feed_writes: f64,
    /// Followers passed over: Redis keeps no feed for them (they do not read).
    pub feeds_skipped: f64,
    /// Propagation of `post.created` (commit to applied): (upper bound in
    /// seconds, cumulative count), ascending, `+Inf` last.
    pub propagation: Vec<(f64, f64)>,
}

impl WorkerMetrics {
    /// Reads the two series out of Prometheus' text format.
    pub fn parse(text: &str) -> WorkerMetrics {
        let mut m = WorkerMetrics::default();
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("fanout_worker_feed_writes_total ") {
                m.feed_writes += v.trim().parse::<f64>().unwrap_or(0.0);
            } else if let Some(v) = line.strip_prefix("fanout_worker_feeds_skipped_total ") {
                m.feeds_skipped += v.trim().parse::<f64>().unwrap_or(0.0);
            } else if let Some(rest) =
                line.strip_prefix("fanout_worker_propagation_seconds_bucket{")
                && rest.contains("event_type=\"post.created\"")
                && let Some((labels, value)) = rest.split_once("} ")
                && let Some(le) = labels
                    .split(',')
                    .find_map(|l| l.trim().strip_prefix("le=\""))
            {
                let le = le.trim_end_matches('"');
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::INFINITY)
                };
                m.propagation
                    .push((bound, value.trim().parse().unwrap_or(0.0)));
            }
        }
        m.propagation.sort_by(|a, b| a.0.total_cmp(&b.0));
        m
    }

    fn add(&mut self, other: &WorkerMetrics) {
        self.feed_writes += other.feed_writes;
        self.feeds_skipped += other.feeds_skipped;
        if self.propagation.is_empty() {
            self.propagation = other.propagation.clone();
        } else {
            for (mine, theirs) in self.propagation.iter_mut().zip(&other.propagation) {
                mine.1 += theirs.1;
            }
        }
    }

    /// What happened between `earlier` and `self` (counters subtracted).
    pub fn since(&self, earlier: &WorkerMetrics) -> WorkerMetrics {
        WorkerMetrics {
            feed_writes: self.feed_writes - earlier.feed_writes,
            feeds_skipped: self.feeds_skipped - earlier.feeds_skipped,
            propagation: self
                .propagation
                .iter()
                .map(|(le, n)| {
                    let before = earlier
                        .propagation
                        .iter()
                        .find(|(l, _)| l == le)
                        .map_or(0.0, |(_, c)| *c);
                    (*le, n - before)
                })
                .collect(),
        }
    }

    /// A quantile of propagation, interpolated within its bucket as
    /// Prometheus' `histogram_quantile` does; `None` without observations.
    pub fn propagation_quantile(&self, q: f64) -> Option<f64> {
        let total = self.propagation.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut previous = (0.0, 0.0);
        for &(le, count) in &self.propagation {
            if count >= rank {
                if le.is_infinite() {
                    return Some(previous.0);
                }
                let in_bucket = count - previous.1;
                let fraction = if in_bucket > 0.0 {
                    (rank - previous.1) / in_bucket
                } else {
                    0.0
                };
                return Some(previous.0 + (le - previous.0) * fraction);
            }
            previous = (le, count);
        }
        Some(previous.0)
    }
}

/// Waits up to 30 s for a readiness probe to answer with success.
async fn wait_ready_at(url: &str) -> anyhow::Result<()> {
    fanout_testkit::wait_ready(url, Duration::from_secs(30))
        .await
        .map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_metrics_are_read_and_quantiles_interpolated() {
        let text = "\
# HELP fanout_worker_feed_writes_total Feeds written
fanout_worker_feed_writes_total 1200
fanout_worker_propagation_seconds_bucket{event_type=\"post.created\",le=\"0.001\"} 0
fanout_worker_propagation_seconds_bucket{event_type=\"post.created\",le=\"0.005\"} 50
fanout_worker_propagation_seconds_bucket{event_type=\"post.created\",le=\"0.01\"} 90
fanout_worker_propagation_seconds_bucket{event_type=\"post.created\",le=\"+Inf\"} 100
fanout_worker_propagation_seconds_bucket{event_type=\"post.liked\",le=\"0.001\"} 7
";
        let m = WorkerMetrics::parse(text);
        assert_eq!(m.feed_writes, 1200.0);
        assert_eq!(m.propagation.len(), 4);
        // The 50th of 100 is the last of the (0.001, 0.005] bucket.
        assert!((m.propagation_quantile(0.5).unwrap() - 0.005).abs() < 1e-9);
        // The 70th is half way through (0.005, 0.01].
        assert!((m.propagation_quantile(0.7).unwrap() - 0.0075).abs() < 1e-9);
        let earlier = WorkerMetrics::parse(
            &text
                .replace("} 90", "} 40")
                .replace("} 100", "} 40")
                .replace("} 50", "} 40"),
        );
        let delta = m.since(&earlier);
        assert_eq!(delta.propagation.last().unwrap().1, 60.0);
        assert_eq!(WorkerMetrics::default().propagation_quantile(0.5), None);
    }
}
