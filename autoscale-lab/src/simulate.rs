//! `autoscale-lab simulate`: replays a trace of arrivals, second by
//! second, through an autoscaling policy and a model of the workers' queue,
//! so a FeedCluster's `spec.autoscaling` can be tuned before it is deployed.
//!
//! # Layout
//!
//! - this module: the trace, the queue model, the run loop and its summary;
//! - [`policies`]: the policies a run can use, behind [`Policy`]: Fanout's
//!   own ([`policies::Fanout`], which calls `feed_core::autoscale::decide`,
//!   the code the operator runs) and a model of KEDA's redis-streams scaler
//!   with the HPA's defaults ([`policies::KedaHpa`]);
//! - [`floor`]: the replica-seconds physics sets as a lower bound, which
//!   each run's cost is measured against;
//! - [`sweep`]: the KEDA + HPA model over a range of `lagCount`s;
//! - [`plot`]: backlog and replicas over time, as a PNG;
//! - [`frontier`]: cost against missed seconds, KEDA's sweep and Fanout's
//!   policy, as a PNG;
//! - [`command`]: the subcommand (reading settings, writing JSON).
//!
//! # The model
//!
//! Each second: the trace's arrivals join the backlog; ready workers serve
//! it oldest first, each at the worker's rate (the trace's `service_rate`
//! for that second, else `--service-rate`); a pod becomes ready
//! `--start-delay` seconds after the policy asked for it, and leaves at
//! once when it asks for fewer (not-ready pods first, as a ReplicaSet
//! does). Between polls a policy sees nothing; at a poll it sees what the
//! operator's probe would: lag, pending (entries handed to workers and not
//! yet acknowledged, up to a batch per ready worker), and the entries-added
//! and entries-read counters.

pub mod command;
pub mod floor;
pub mod frontier;
pub mod plot;
pub mod policies;
pub mod sweep;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::path::Path;

use feed_core::autoscale::Observation;
use feed_core::bus;
use serde::Serialize;

/// Entries a worker holds delivered but unacknowledged at a time, at most:
/// the workers' default `FANOUT_BATCH_SIZE`.
const IN_FLIGHT_PER_WORKER: u64 = bus::DEFAULT_BATCH_SIZE as u64;

/// Direction changes closer than this count in
/// [`Summary::reversals_within_300s`]: the HPA's default scale-down window,
/// the yardstick issue 17 uses for both policies whatever their own windows.
pub const REVERSAL_HORIZON_SECS: u64 = 300;

/// Why a trace or a setting was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {message}")]
    Trace {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// One second of a trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Second {
    /// Events arriving in this second.
    pub arrivals: u64,
    /// Events one worker handles per second now, when the trace says.
    pub service_rate: Option<f64>,
}

/// Arrivals per second, from `t_seconds` 0 on; seconds the file skips have
/// no arrivals.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trace {
    pub seconds: Vec<Second>,
}

/// Longest trace accepted: a week, second by second.
const MAX_TRACE_SECONDS: u64 = 7 * 24 * 3600;

impl Trace {
    /// Parses `t_seconds,arrivals[,service_rate]` with a header line.
    pub fn parse(text: &str, path: &str) -> Result<Trace, Error> {
        let bad = |line: usize, message: String| Error::Trace {
            path: path.to_owned(),
            line,
            message,
        };
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let (n, header) = lines
            .next()
            .ok_or_else(|| bad(1, "empty: expected a header 't_seconds,arrivals'".into()))?;
        let columns: Vec<&str> = header.split(',').map(str::trim).collect();
        let has_rate = match columns.as_slice() {
            ["t_seconds", "arrivals"] => false,
            ["t_seconds", "arrivals", "service_rate"] => true,
            _ => {
                return Err(bad(
                    n,
                    format!("header must be 't_seconds,arrivals[,service_rate]', found '{header}'"),
                ));
            }
        };
        let mut seconds: Vec<Second> = Vec::new();
        for (n, line) in lines {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() != columns.len() {
                return Err(bad(
                    n,
                    format!("expected {} fields, found {}", columns.len(), fields.len()),
                ));
            }
            let t: u64 = fields[0].parse().map_err(|_| {
                bad(
                    n,
                    format!("t_seconds '{}' is not a whole number", fields[0]),
                )
            })?;
            if t >= MAX_TRACE_SECONDS {
                return Err(bad(
                    n,
                    format!("t_seconds {t} is past the longest trace ({MAX_TRACE_SECONDS} s)"),
                ));
            }
            if (t as usize) < seconds.len() {
                return Err(bad(
                    n,
                    format!("t_seconds {t} is not after the previous line"),
                ));
            }
            let arrivals: u64 = fields[1]
                .parse()
                .map_err(|_| bad(n, format!("arrivals '{}' is not a whole number", fields[1])))?;
            let service_rate = if has_rate && !fields[2].is_empty() {
                let rate: f64 = fields[2]
                    .parse()
                    .ok()
                    .filter(|r: &f64| r.is_finite() && *r > 0.0)
                    .ok_or_else(|| {
                        bad(
                            n,
                            format!("service_rate '{}' is not a positive number", fields[2]),
                        )
                    })?;
                Some(rate)
            } else {
                None
            };
            seconds.resize(
                t as usize,
                Second {
                    arrivals: 0,
                    service_rate: None,
                },
            );
            seconds.push(Second {
                arrivals,
                service_rate,
            });
        }
        if seconds.is_empty() {
            return Err(bad(n, "no data lines after the header".into()));
        }
        Ok(Trace { seconds })
    }

    pub fn read(path: &Path) -> Result<Trace, Error> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: shown.clone(),
            source,
        })?;
        Trace::parse(&text, &shown)
    }
}

/// What the model assumes of the workers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Facts {
    /// Events one worker handles per second (unless the trace says).
    pub service_rate: f64,
    /// Seconds from asking for a pod to its being ready.
    pub start_delay_secs: u64,
    /// Workers running when the trace starts (ready).
    pub initial_replicas: u32,
}

/// A scaling policy as the simulator drives it.
pub trait Policy {
    /// Its name in the output.
    fn name(&self) -> &'static str;
    /// Called every second with what the probe would see now; returns a new
    /// replica count when the policy acts this second.
    fn tick(&mut self, observation: &Observation) -> Option<u32>;
    /// The drain-time target a run is judged by, in seconds.
    fn drain_seconds(&self) -> f64;
    /// Two scale changes in opposite directions closer than this count as a
    /// reversal inside a window, when the second goes to `to` workers: the
    /// window the policy waits out before such a change (its scale-to-zero
    /// wait, for a change to zero).
    fn window_secs(&self, to: u32) -> f64;
}

/// One second of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tick {
    pub t: u64,
    pub arrivals: u64,
    /// Events waiting (undelivered or unacknowledged) at the end of the
    /// second.
    pub backlog: u64,
    /// What the policy last asked for.
    pub desired: u32,
    /// Pods that exist (ready or starting): what is paid for.
    pub replicas: u32,
    pub ready: u32,
}

/// How a run went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Pod-seconds paid for (ready or starting).
    pub replica_seconds: u64,
    pub peak_backlog: u64,
    /// Seconds in which the oldest waiting event had waited longer than the
    /// drain-time target.
    pub drain_target_missed_seconds: u64,
    /// Times the desired count changed.
    pub scale_changes: u64,
    /// Changes in the opposite direction of the previous one, less than a
    /// stabilization window after it.
    pub reversals_inside_window: u64,
    /// Changes in the opposite direction of the previous one, less than
    /// [`REVERSAL_HORIZON_SECS`] after it: flapping on one scale for every
    /// policy.
    pub reversals_within_300s: u64,
    /// Worst time from the first event after idle (no ready worker) to the
    /// first ready worker; `None` when the trace never woke the workers.
    pub wake_seconds: Option<u64>,
    /// Events left waiting when the trace ended.
    pub backlog_at_end: u64,
    /// Seconds with no pod at all: what scale to zero saves (issue 17 wants
    /// a trickle's workers at zero most of the time).
    pub seconds_at_zero: u64,
    /// The trace's floor: no policy can pay for fewer replica-seconds
    /// ([`floor::replica_seconds`]).
    pub floor_replica_seconds: f64,
    /// `replica_seconds` over the floor; `None` when the trace has no
    /// events (and so no floor).
    pub ratio_to_floor: Option<f64>,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub policy: &'static str,
    pub summary: Summary,
    pub timeline: Vec<Tick>,
}

/// The workers' queue and pods.
struct Model {
    /// Waiting events as (arrival second, count), oldest first.
    waiting: VecDeque<(u64, u64)>,
    backlog: u64,
    /// Seconds at which each existing pod is (or became) ready.
    pods: Vec<u64>,
    desired: u32,
    entries_added: u64,
    served: u64,
    /// Service capacity not yet used up, carried between seconds so
    /// fractional rates are honoured.
    credit: f64,
}

impl Model {
    fn ready(&self, t: u64) -> u32 {
        self.pods.iter().filter(|at| **at <= t).count() as u32
    }

    fn scale(&mut self, t: u64, to: u32, start_delay: u64) {
        let to = to as usize;
        if to > self.pods.len() {
            self.pods.resize(to, t + start_delay);
        } else {
            // Starting pods go first: a ReplicaSet removes unready pods
            // before ready ones.
            self.pods.sort_unstable();
            self.pods.truncate(to);
        }
        self.desired = to as u32;
    }

    fn serve(&mut self, ready: u32, rate: f64) {
        if self.backlog == 0 {
            self.credit = 0.0;
            return;
        }
        self.credit += f64::from(ready) * rate;
        let mut budget = (self.credit.floor() as u64).min(self.backlog);
        self.backlog -= budget;
        // Only a fraction of an event carries over; capacity the backlog
        // did not need is gone (the workers idled).
        self.credit = if self.backlog == 0 {
            0.0
        } else {
            self.credit - budget as f64
        };
        self.served += budget;
        while budget > 0 {
            let Some(front) = self.waiting.front_mut() else {
                break;
            };
            let take = front.1.min(budget);
            front.1 -= take;
            budget -= take;
            if front.1 == 0 {
                self.waiting.pop_front();
            }
        }
    }

    fn observe(&self, t: u64, ready: u32) -> Observation {
        let pending = self.backlog.min(u64::from(ready) * IN_FLIGHT_PER_WORKER);
        Observation {
            at_secs: t as f64,
            lag: Some(self.backlog - pending),
            pending,
            entries_added: self.entries_added,
            entries_read: Some(self.served + pending),
            current_replicas: self.desired,
            ready_replicas: ready,
        }
    }
}

/// Replays `trace` through `policy` with the workers described by `facts`.
pub fn run(policy: &mut dyn Policy, trace: &Trace, facts: &Facts) -> Run {
    let mut model = Model {
        waiting: VecDeque::new(),
        backlog: 0,
        pods: vec![0; facts.initial_replicas as usize],
        desired: facts.initial_replicas,
        entries_added: 0,
        served: 0,
        credit: 0.0,
    };
    let drain = policy.drain_seconds();
    let mut timeline = Vec::with_capacity(trace.seconds.len());
    let mut summary = Summary {
        replica_seconds: 0,
        peak_backlog: 0,
        drain_target_missed_seconds: 0,
        scale_changes: 0,
        reversals_inside_window: 0,
        reversals_within_300s: 0,
        wake_seconds: None,
        backlog_at_end: 0,
        seconds_at_zero: 0,
        floor_replica_seconds: floor::replica_seconds(trace, facts),
        ratio_to_floor: None,
    };
    let mut last_change: Option<(u64, bool)> = None;
    let mut asleep_since: Option<u64> = None;

    for (t, second) in trace.seconds.iter().enumerate() {
        let t = t as u64;
        if second.arrivals > 0 {
            model.waiting.push_back((t, second.arrivals));
            model.backlog += second.arrivals;
            model.entries_added += second.arrivals;
        }
        let ready = model.ready(t);
        if ready == 0 && model.backlog > 0 && asleep_since.is_none() {
            asleep_since = Some(t);
        }
        if ready > 0
            && let Some(since) = asleep_since.take()
        {
            let waited = t - since;
            summary.wake_seconds = Some(summary.wake_seconds.map_or(waited, |w| w.max(waited)));
        }
        model.serve(ready, second.service_rate.unwrap_or(facts.service_rate));

        if let Some(to) = policy.tick(&model.observe(t, ready)) {
            if to != model.desired {
                let up = to > model.desired;
                summary.scale_changes += 1;
                if let Some((at, was_up)) = last_change
                    && was_up != up
                {
                    if ((t - at) as f64) < policy.window_secs(to) {
                        summary.reversals_inside_window += 1;
                    }
                    if t - at < REVERSAL_HORIZON_SECS {
                        summary.reversals_within_300s += 1;
                    }
                }
                last_change = Some((t, up));
            }
            model.scale(t, to, facts.start_delay_secs);
        }

        let oldest = model.waiting.front().map(|(at, _)| t - at);
        if oldest.is_some_and(|age| age as f64 > drain) {
            summary.drain_target_missed_seconds += 1;
        }
        summary.peak_backlog = summary.peak_backlog.max(model.backlog);
        summary.replica_seconds += model.pods.len() as u64;
        if model.pods.is_empty() {
            summary.seconds_at_zero += 1;
        }
        timeline.push(Tick {
            t,
            arrivals: second.arrivals,
            backlog: model.backlog,
            desired: model.desired,
            replicas: model.pods.len() as u32,
            ready: model.ready(t),
        });
    }
    summary.backlog_at_end = model.backlog;
    summary.ratio_to_floor = floor::ratio(summary.replica_seconds, summary.floor_replica_seconds);
    Run {
        policy: policy.name(),
        summary,
        timeline,
    }
}
