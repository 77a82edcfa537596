//! The worker autoscaling policy: a pure function from what Redis says about
//! the streams (and what the policy remembers) to a worker count, with the
//! reason. The operator runs it every poll interval; the simulator replays
//! traces through the very same code. [`step`] (with the `redis` feature)
//! is the loop around it: observe, decide, scale, generic over what is
//! scaled and where the backlog is read.
//!
//! # The policy
//!
//! Every poll, with `B` the backlog (lag + pending, over all streams), `λ`
//! the arrival rate (growth of entries-added) and `μ` the rate one worker
//! serves (growth of entries-read per ready worker, learned only while the
//! workers were saturated: undelivered entries all through an interval),
//! `n` workers serve every entry within `W` seconds for the next `H`
//! seconds when
//!
//! ```text
//! n ≥ need(W, H) = max( B / (μ·W),  (B + λ·H) / (μ·(W + H)) )
//! ```
//!
//! (the newest entry waits for the backlog ahead of it; one arriving `H`
//! seconds later, for that backlog grown or shrunk by `λ − nμ`). Then:
//!
//! - **up** to `wanted = ceil(need(D, D))`, the fewest workers that meet
//!   the drain target `D`, only when the workers there are would miss it:
//!   a spike they serve in time passes;
//! - **down** only to `keep = ceil(need(u·D, max(u·D, window)))`, the
//!   fewest that meet the target with margin (`u`, `target_utilization`)
//!   for a whole scale-down window: noise does not bounce the count;
//! - unknown lag (no group, or Redis cannot compute it) is never read as
//!   zero: the count holds, and never drops below one;
//! - scale-up follows the lowest recommendation of the scale-up window (zero
//!   by default: at once), scale-down the highest of the scale-down window
//!   (a sustained drop only), so no direction reverses inside a window
//!   (a scale to zero waits `idle_seconds` instead, below);
//! - steps are limited, then the count is clamped to `[min, max]`;
//! - with scale-to-zero, the count goes to zero `idle_seconds` after the
//!   last event (entries added, or a backlog above the activation
//!   threshold), with no window on top, and back up as soon as one entry
//!   waits (not the second), whatever the windows say.

use std::collections::VecDeque;

/// How the policy behaves; the operator fills it from
/// `FeedCluster.spec.autoscaling`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Fewest workers while there is any work (or always, without
    /// scale-to-zero).
    pub min_replicas: u32,
    /// Most workers.
    pub max_replicas: u32,
    /// Drain the backlog within this many seconds.
    pub drain_seconds: f64,
    /// Margin before scaling down (0 < u ≤ 1): fewer workers only if they
    /// would serve every entry within `u` × `drain_seconds` and their capacity
    /// is at least `u` × the arrival rate (the backlog takes the rest until a
    /// scale-up). Up is at the drain target itself; the gap between the two
    /// is hysteresis against noise.
    pub target_utilization: f64,
    /// Events one worker is assumed to serve per second until the policy has
    /// measured it.
    pub assumed_rate_per_replica: f64,
    /// Scale up to the lowest recommendation of this many seconds.
    pub scale_up_window_secs: f64,
    /// Scale down to the highest recommendation of this many seconds.
    pub scale_down_window_secs: f64,
    /// Most workers added by one decision.
    pub max_scale_up_step: u32,
    /// Most workers removed by one decision.
    pub max_scale_down_step: u32,
    /// Go to zero workers when idle.
    pub scale_to_zero: bool,
    /// Seconds without backlog or arrivals before scaling to zero.
    pub idle_seconds: f64,
    /// Wake from zero when the backlog exceeds this many entries (0: the
    /// first entry wakes a worker).
    pub activation_backlog: u64,
}

impl Settings {
    /// The defaults, the one place they are written: a FeedCluster's
    /// `spec.workers` and `spec.autoscaling` default to these (the operator's
    /// CRD reads them), and so does the simulator without settings.
    pub const DEFAULT: Settings = Settings {
        min_replicas: 1,
        max_replicas: 10,
        drain_seconds: 30.0,
        target_utilization: 0.8,
        assumed_rate_per_replica: 200.0,
        scale_up_window_secs: 0.0,
        scale_down_window_secs: 300.0,
        max_scale_up_step: 4,
        max_scale_down_step: 2,
        scale_to_zero: false,
        idle_seconds: 300.0,
        activation_backlog: 0,
    };
}

impl Default for Settings {
    fn default() -> Self {
        Settings::DEFAULT
    }
}

impl Settings {
    /// Rejects settings the policy cannot honour, saying which field.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_replicas == 0 {
            return Err("maxReplicas must be at least 1".into());
        }
        if self.min_replicas > self.max_replicas {
            return Err("minReplicas must not exceed maxReplicas".into());
        }
        if !self.drain_seconds.is_finite() || self.drain_seconds <= 0.0 {
            return Err("drainSeconds must be positive".into());
        }
        if !(self.target_utilization > 0.0 && self.target_utilization <= 1.0) {
            return Err("targetUtilization must be in (0, 1]".into());
        }
        if !self.assumed_rate_per_replica.is_finite() || self.assumed_rate_per_replica <= 0.0 {
            return Err("the assumed rate per replica must be positive".into());
        }
        if self.max_scale_up_step == 0 || self.max_scale_down_step == 0 {
            return Err("scale steps must be at least 1".into());
        }
        if self.scale_up_window_secs < 0.0
            || self.scale_down_window_secs < 0.0
            || self.idle_seconds < 0.0
        {
            return Err("windows and idle time must not be negative".into());
        }
        Ok(())
    }
}

/// What one poll of Redis and the worker Deployment saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Seconds since any fixed origin (monotonic).
    pub at_secs: f64,
    /// Undelivered entries over all streams; `None` when unknown.
    pub lag: Option<u64>,
    /// Delivered, unacknowledged entries over all streams, poison excluded.
    pub pending: u64,
    /// Entries ever added over all streams (a counter).
    pub entries_added: u64,
    /// Entries the group ever read over all streams; `None` when unknown.
    pub entries_read: Option<u64>,
    /// Workers the Deployment asks for now.
    pub current_replicas: u32,
    /// Workers ready now.
    pub ready_replicas: u32,
}

/// Which rule settled the count when it is not simply what the load asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Lag unknown: holding.
    UnknownLag,
    /// A recommendation inside a stabilization window held the count.
    Stabilization,
    /// Fewer workers would meet the drain target, but not with the margin
    /// a scale-down needs.
    Margin,
    /// The step limit capped a scale-up.
    MaxScaleUpStep,
    /// The step limit capped a scale-down.
    MaxScaleDownStep,
    /// Clamped up to `min_replicas`.
    MinReplicas,
    /// Clamped down to `max_replicas`.
    MaxReplicas,
}

/// Which way the decision goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
    None,
}

/// A decision with everything needed to explain it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Workers to run.
    pub desired: u32,
    /// What the load alone asks for, before windows, steps and clamps.
    pub wanted: u32,
    pub direction: Direction,
    /// The rule that settled `desired`, if not the load.
    pub limited_by: Option<Limit>,
    /// The estimates the decision used.
    pub backlog: Option<u64>,
    pub arrival_rate: f64,
    pub service_rate_per_replica: f64,
    /// One sentence for `.status`, Events and logs.
    pub reason: String,
}

/// What the policy remembers between polls of one FeedCluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    previous: Option<Observation>,
    arrival_rate: Option<f64>,
    service_rate: Option<f64>,
    /// Recent recommendations (time, wanted), oldest first.
    history: VecDeque<(f64, u32)>,
    /// When there was last backlog or arrivals.
    last_active_secs: Option<f64>,
    /// No scale-down before this time: a policy that just started (the
    /// operator restarted, or failed over) knows nothing of the window
    /// behind it.
    hold_down_until: Option<f64>,
}

/// Weight of the newest rate sample in the moving averages: reacts within a
/// few polls, ignores a single noisy one.
const SMOOTHING: f64 = 0.5;

fn smooth(old: Option<f64>, sample: f64) -> f64 {
    match old {
        Some(old) => old + SMOOTHING * (sample - old),
        None => sample,
    }
}

/// Decides how many workers to run now, and remembers what it needs for the
/// next decision.
pub fn decide(settings: &Settings, memory: &mut Memory, now: Observation) -> Decision {
    let backlog = now.lag.map(|lag| lag + now.pending);
    let hold_down_until = *memory
        .hold_down_until
        .get_or_insert(now.at_secs + settings.scale_down_window_secs);
    learn_rates(memory, &now, settings.assumed_rate_per_replica);
    let arrival_rate = memory.arrival_rate.unwrap_or(0.0);
    let service_rate = memory
        .service_rate
        .unwrap_or(settings.assumed_rate_per_replica);
    // Activity is an event, not a rate: the smoothed arrival rate only
    // halves each poll after the last event and would keep a trickle awake.
    let arrived = memory
        .previous
        .is_some_and(|prev| now.entries_added > prev.entries_added);
    let active = backlog.is_none_or(|b| b > settings.activation_backlog) || arrived;
    if active || memory.last_active_secs.is_none() {
        memory.last_active_secs = Some(now.at_secs);
    }
    let current = now.current_replicas;

    let Some(backlog) = backlog else {
        // Work may be waiting that Redis cannot count: never scale down on it.
        let desired = current
            .max(1)
            .max(settings.min_replicas)
            .min(settings.max_replicas.max(1));
        memory.previous = Some(now);
        return Decision {
            desired,
            wanted: desired,
            direction: direction(current, desired),
            limited_by: Some(Limit::UnknownLag),
            backlog: None,
            arrival_rate,
            service_rate_per_replica: service_rate,
            reason: format!("lag is unknown; holding {desired} worker(s)"),
        };
    };

    // The fewest workers that meet the drain target over the next drain
    // time; and the fewest that meet it with margin (`target_utilization`
    // of it) for a whole scale-down window, below which the count does not
    // go.
    let wanted = whole(workers_needed(
        backlog,
        arrival_rate,
        service_rate,
        settings.drain_seconds,
        settings.drain_seconds,
    ));
    let margin = settings.drain_seconds * settings.target_utilization;
    let keep = whole(workers_needed(
        backlog,
        arrival_rate,
        service_rate,
        margin,
        margin.max(settings.scale_down_window_secs),
    ));
    let idle_for = now.at_secs - memory.last_active_secs.unwrap_or(now.at_secs);
    // At zero, stay there until the backlog passes the activation threshold;
    // above zero, go to zero `idle_seconds` after the last event.
    let idle = settings.scale_to_zero
        && backlog <= settings.activation_backlog
        && (current == 0 || (backlog == 0 && idle_for >= settings.idle_seconds));
    let floor = settings.min_replicas.max(1);
    // Up only when the workers there are would miss the target (a spike
    // they drain in time passes); down only to a count that meets it with
    // margin (noise does not bounce the count).
    let held = wanted.max(keep.min(current));
    let recommended = if idle { 0 } else { held.max(floor) };

    memory.history.push_back((now.at_secs, recommended));
    let remember = settings
        .scale_up_window_secs
        .max(settings.scale_down_window_secs);
    while memory
        .history
        .front()
        .is_some_and(|(t, _)| now.at_secs - t > remember)
    {
        memory.history.pop_front();
    }
    let within = |window: f64| {
        memory
            .history
            .iter()
            .filter(move |(t, _)| now.at_secs - t <= window)
            .map(|(_, w)| *w)
    };
    let up_to = within(settings.scale_up_window_secs)
        .min()
        .unwrap_or(recommended);
    let mut down_to = within(settings.scale_down_window_secs)
        .max()
        .unwrap_or(recommended);
    if now.at_secs < hold_down_until {
        down_to = down_to.max(current);
    }

    let mut limited_by = if recommended > held {
        Some(Limit::MinReplicas)
    } else if recommended > wanted {
        Some(Limit::Margin)
    } else {
        None
    };
    let mut desired = if current == 0 && !idle {
        // Waking: the first waiting entry gets a worker, whatever the windows.
        recommended
    } else if idle {
        // Idle since the last event for `idle_seconds`: that wait is the
        // window, none on top of it.
        0
    } else if up_to > current {
        if up_to < recommended {
            limited_by = Some(Limit::Stabilization);
        }
        up_to
    } else if down_to < current {
        if down_to > recommended {
            // Part of the way down: the window still holds the rest.
            limited_by = Some(Limit::Stabilization);
        }
        down_to
    } else {
        if recommended != current {
            limited_by = Some(Limit::Stabilization);
        }
        current
    };
    if desired > current && desired - current > settings.max_scale_up_step {
        desired = current + settings.max_scale_up_step;
        limited_by = Some(Limit::MaxScaleUpStep);
    }
    if desired < current && current - desired > settings.max_scale_down_step && !idle {
        desired = current - settings.max_scale_down_step;
        limited_by = Some(Limit::MaxScaleDownStep);
    }
    if desired > settings.max_replicas {
        desired = settings.max_replicas;
        limited_by = Some(Limit::MaxReplicas);
    }
    memory.previous = Some(now);

    let reason = reason(
        desired,
        wanted,
        current,
        backlog,
        arrival_rate,
        service_rate,
        limited_by,
        idle,
    );
    Decision {
        desired,
        wanted,
        direction: direction(current, desired),
        limited_by,
        backlog: Some(backlog),
        arrival_rate,
        service_rate_per_replica: service_rate,
        reason,
    }
}

/// Workers (a real number) that serve every entry within `wait` seconds of
/// its arrival, for the next `horizon` seconds, with backlog `b`, arrivals
/// `λ` and `μ` per worker. An entry arriving now waits `b / (nμ)` (the
/// backlog ahead of it), one arriving `horizon` seconds from now
/// `(b + (λ − nμ)·horizon) / (nμ)`; both within `wait` gives
///
/// ```text
/// n ≥ max( b / (μ·wait),  (b + λ·horizon) / (μ·(wait + horizon)) )
/// ```
///
/// Sizing to clear the whole backlog within `D`, `n ≥ (λ + b/D) / μ`,
/// asks for a worker more whenever arrivals sit at a whole number of
/// workers and any backlog waits: 1.5× the floor on the lab's steady and
/// spiky traces. A standing backlog that every entry passes through within
/// the target is what the drain target allows.
fn workers_needed(backlog: u64, arrival: f64, service: f64, wait: f64, horizon: f64) -> f64 {
    let b = backlog as f64;
    (b / (service * wait)).max((b + arrival * horizon) / (service * (wait + horizon)))
}

/// The whole number of workers for a real one, saturating.
fn whole(workers: f64) -> u32 {
    let n = workers.ceil();
    if n.is_finite() {
        n.clamp(0.0, u32::MAX as f64) as u32
    } else {
        u32::MAX
    }
}

/// Updates the arrival and per-worker service rates from the counters'
/// growth since the previous poll.
fn learn_rates(memory: &mut Memory, now: &Observation, assumed_rate: f64) {
    let Some(prev) = memory.previous else { return };
    let dt = now.at_secs - prev.at_secs;
    if dt <= 0.0 {
        return;
    }
    // A counter that went backwards means Redis restarted: skip the sample.
    if let Some(added) = now.entries_added.checked_sub(prev.entries_added) {
        memory.arrival_rate = Some(smooth(memory.arrival_rate, added as f64 / dt));
    }
    // Pods that became ready (or left) inside the interval served part of
    // it, for an unknown part: such an interval teaches nothing.
    if prev.ready_replicas == 0 || prev.ready_replicas != now.ready_replicas {
        return;
    }
    let Some(read) = now
        .entries_read
        .zip(prev.entries_read)
        .and_then(|(now, prev)| now.checked_sub(prev))
    else {
        return;
    };
    let per_replica = read as f64 / dt / f64::from(now.ready_replicas);
    // Entries-read grows by what the workers can do only while they were
    // never short of work (undelivered entries at both ends of the
    // interval); otherwise by what arrived, which is only a lower bound on
    // what they can do. Learning a rate from that would underrate the
    // workers and overprovision, and keep doing so (more workers, less each
    // reads, lower still the estimate), so it may only raise the estimate.
    let saturated = prev.lag.is_some_and(|lag| lag > 0) && now.lag.is_some_and(|lag| lag > 0);
    if saturated && read > 0 {
        memory.service_rate = Some(smooth(memory.service_rate, per_replica));
    } else if per_replica > memory.service_rate.unwrap_or(assumed_rate) {
        memory.service_rate = Some(per_replica);
    }
}

fn direction(current: u32, desired: u32) -> Direction {
    match desired.cmp(&current) {
        std::cmp::Ordering::Greater => Direction::Up,
        std::cmp::Ordering::Less => Direction::Down,
        std::cmp::Ordering::Equal => Direction::None,
    }
}

#[allow(clippy::too_many_arguments)]
fn reason(
    desired: u32,
    wanted: u32,
    current: u32,
    backlog: u64,
    arrival: f64,
    service: f64,
    limited_by: Option<Limit>,
    idle: bool,
) -> String {
    let load = format!(
        "backlog {backlog}, arrivals {arrival:.1}/s, {service:.1}/s per worker: the load asks for {wanted}"
    );
    let why = match limited_by {
        _ if idle && desired == 0 => "idle long enough: scaling to zero".to_owned(),
        None if desired == current => "no change".to_owned(),
        None => format!("scaling {current} -> {desired}"),
        Some(Limit::Stabilization) if desired == current => {
            format!("holding {current} inside the stabilization window")
        }
        Some(Limit::Stabilization) => {
            format!("scaling {current} -> {desired}, as far as the stabilization window allows")
        }
        Some(Limit::Margin) if desired == current => {
            format!("holding {current}: fewer would not meet the drain target with margin")
        }
        Some(Limit::Margin) => format!(
            "scaling {current} -> {desired}: fewer would not meet the drain target with margin"
        ),
        Some(Limit::MaxScaleUpStep) => {
            format!("scaling {current} -> {desired}, capped by the scale-up step")
        }
        Some(Limit::MaxScaleDownStep) => {
            format!("scaling {current} -> {desired}, capped by the scale-down step")
        }
        Some(Limit::MinReplicas) => format!("{desired}: the minimum"),
        Some(Limit::MaxReplicas) => format!("{desired}: the maximum"),
        Some(Limit::UnknownLag) => format!("holding {desired}: lag unknown"),
    };
    format!("{load}; {why}")
}

#[cfg(feature = "redis")]
pub mod step;
#[cfg(test)]
mod tests;
