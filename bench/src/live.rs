//! Live feed streams (`GET /feed/stream`): how long a post takes to reach
//! an open stream of a follower, at rest and while the fan-out scenario
//! runs, and what idle streams cost the API in memory.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::scenarios::{self, Bench};

/// Idle streams one API replica is asked to hold (the figure).
pub const IDLE_STREAMS: usize = 10_000;
/// Streams opened at once while filling the replica: enough to take
/// seconds, not minutes, without queueing thousands of connects.
const OPENING_AT_ONCE: usize = 64;
/// The longest a post may take to reach a stream before the run fails.
const EVENT_DEADLINE: Duration = Duration::from_secs(30);
/// Posts of the probe at rest: 20 a second, a light load.
const AT_REST_PACE: Duration = Duration::from_millis(50);
/// Time for the API's allocator to settle once the streams are open.
const SETTLE: Duration = Duration::from_secs(2);

/// Post → event latencies, from sending `POST /posts` to the `post` event
/// on a follower's open stream.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The live scenario's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct Live {
    pub at_rest: Latency,
    pub during_fanout: Latency,
    /// The fan-out scenario's rate while `during_fanout` was measured.
    pub fanout_rate: f64,
    /// Idle streams held open when memory was read.
    pub idle_streams: usize,
    pub api_rss_before_mib: f64,
    pub api_rss_after_mib: f64,
    /// The growth, scaled to 10,000 streams when fewer were measured.
    pub mib_per_10k_streams: f64,
}

/// An open stream's events, read off the socket.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(b: &Bench, user: usize) -> anyhow::Result<Events> {
        let response = b
            .http
            .get(format!("{}/feed/stream", b.stack.api_url))
            .bearer_auth(&b.tokens[user])
            .timeout(Duration::from_secs(24 * 3600))
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == reqwest::StatusCode::OK,
            "GET /feed/stream answered {}",
            response.status()
        );
        let mut events = Events {
            response,
            buffer: String::new(),
        };
        while events.next().await?.context("the stream ended")?.0 != "ready" {}
        Ok(events)
    }

    /// The next event's type and data; `None` once the stream ends.
    async fn next(&mut self) -> anyhow::Result<Option<(String, String)>> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut kind, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if kind.is_empty() {
                    continue;
                }
                return Ok(Some((kind, data)));
            }
            match self.response.chunk().await? {
                Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                None => return Ok(None),
            }
        }
    }
}

/// A typical author (the median follower count among authors with any)
/// and one of their followers: the most followed authors' posts take the
/// longest to reach every follower, and a probe posting as one of them
/// would load the workers itself.
fn pair(b: &Bench) -> anyhow::Result<(usize, usize)> {
    let mut authors: Vec<(usize, usize)> = b
        .followers_of
        .iter()
        .enumerate()
        .filter(|(_, followers)| !followers.is_empty())
        .map(|(author, followers)| (followers.len(), author))
        .collect();
    authors.sort_unstable();
    let (_, author) = *authors
        .get(authors.len() / 2)
        .context("the graph has no follows")?;
    Ok((author, b.followers_of[author][0] as usize))
}

/// `samples` posts by an author, sent `pace` apart whether or not the
/// previous one arrived (so a backlog shows in the figures rather than
/// slowing the probe), each timed until it reaches a follower's open
/// stream.
async fn post_to_event(b: &Bench, samples: usize, pace: Duration) -> anyhow::Result<Latency> {
    let (author, reader) = pair(b)?;
    let mut events = Events::open(b, reader).await?;
    let (heard, mut arrivals) = mpsc::unbounded_channel::<(Uuid, Instant)>();
    let listening = tokio::spawn(async move {
        while let Ok(Some((kind, data))) = events.next().await {
            if kind != "post" {
                continue;
            }
            let id = serde_json::from_str::<serde_json::Value>(&data)
                .ok()
                .and_then(|post| post["id"].as_str()?.parse().ok());
            if let Some(id) = id
                && heard.send((id, Instant::now())).is_err()
            {
                return;
            }
        }
    });
    let mut sent = HashMap::with_capacity(samples);
    let mut schedule = tokio::time::interval(pace);
    for n in 0..samples {
        schedule.tick().await;
        let at = Instant::now();
        let posted = Bench::post(&b.http, &b.stack.api_url, &b.tokens[author], n as u64)
            .await
            .context("a live probe's post failed")?;
        sent.insert(posted, at);
    }
    let mut took = Vec::with_capacity(samples);
    tokio::time::timeout(EVENT_DEADLINE, async {
        while took.len() < samples
            && let Some((id, at)) = arrivals.recv().await
        {
            if let Some(sent) = sent.remove(&id) {
                took.push(at - sent);
            }
        }
    })
    .await
    .context("posts did not reach the open stream")?;
    listening.abort();
    anyhow::ensure!(
        took.len() == samples,
        "{} posts never reached the stream",
        samples - took.len()
    );
    took.sort_unstable();
    let pick = |q: f64| {
        let i = ((q * took.len() as f64).ceil() as usize).clamp(1, took.len()) - 1;
        took[i].as_secs_f64() * 1000.0
    };
    Ok(Latency {
        samples: took.len(),
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
    })
}

/// The API's resident memory now (not its peak), MiB.
fn rss_now_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Post → event at rest and during the fan-out scenario at `fanout_rate`,
/// then the memory of up to [`IDLE_STREAMS`] idle streams (one per user:
/// the graph's users bound it).
pub async fn measure(
    b: &Bench,
    samples: usize,
    fanout_rate: f64,
    fanout_secs: u64,
    workers: u32,
) -> anyhow::Result<Live> {
    b.wait_drained().await?;
    let at_rest = post_to_event(b, samples, AT_REST_PACE).await?;

    // The probe runs inside the fan-out window: it starts once the
    // scenario's posts flow and spreads its posts over most of it.
    let window = Duration::from_secs(fanout_secs);
    let probe = async {
        tokio::time::sleep(window / 10).await;
        let pace = (window * 4 / 5) / samples as u32;
        post_to_event(b, samples, pace).await
    };
    let (fanout, during_fanout) =
        tokio::join!(scenarios::fanout(b, fanout_rate, window, workers), probe);
    fanout?;
    let during_fanout = during_fanout?;

    b.wait_drained().await?;
    let pid = b.stack.api_pid().context("the API is not running")?;
    let count = IDLE_STREAMS.min(b.tokens.len());
    let before = rss_now_mib(pid);
    let mut open = Vec::with_capacity(count);
    let users: Vec<usize> = (0..count).collect();
    for chunk in users.chunks(OPENING_AT_ONCE) {
        let opened =
            futures_util::future::try_join_all(chunk.iter().map(|u| Events::open(b, *u))).await?;
        open.extend(opened);
    }
    tokio::time::sleep(SETTLE).await;
    let after = rss_now_mib(pid);
    drop(open);
    Ok(Live {
        at_rest,
        during_fanout,
        fanout_rate,
        idle_streams: count,
        api_rss_before_mib: before,
        api_rss_after_mib: after,
        mib_per_10k_streams: (after - before) * IDLE_STREAMS as f64 / count.max(1) as f64,
    })
}
