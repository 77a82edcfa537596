//! The policies a simulation can run: Fanout's own, and a model of KEDA's
//! redis-streams scaler driving a HorizontalPodAutoscaler with its defaults.

use std::collections::VecDeque;

use feed_core::autoscale::{self, Memory, Observation, Settings};

use super::Policy;

/// Fanout's policy: `feed_core::autoscale::decide`, the function the
/// operator calls, at the FeedCluster's poll interval.
pub struct Fanout {
    settings: Settings,
    memory: Memory,
    poll_secs: u64,
}

impl Fanout {
    pub fn new(settings: Settings, poll_secs: u64) -> Fanout {
        Fanout {
            settings,
            memory: Memory::default(),
            poll_secs: poll_secs.max(1),
        }
    }
}

impl Policy for Fanout {
    fn name(&self) -> &'static str {
        "fanout"
    }

    fn tick(&mut self, observation: &Observation) -> Option<u32> {
        let t = observation.at_secs as u64;
        if !t.is_multiple_of(self.poll_secs) {
            return None;
        }
        Some(autoscale::decide(&self.settings, &mut self.memory, *observation).desired)
    }

    fn drain_seconds(&self) -> f64 {
        self.settings.drain_seconds
    }

    fn window_secs(&self, to: u32) -> f64 {
        if to == 0 && self.settings.scale_to_zero {
            self.settings.idle_seconds
        } else {
            self.settings.scale_down_window_secs
        }
    }
}

/// KEDA's polling interval: how often it checks activity, and so the pace
/// of 0 ↔ 1 (`pollingInterval`, default 30 s).
const KEDA_POLLING_SECS: u64 = 30;
/// KEDA's `cooldownPeriod` (default 300 s): inactive this long before 1 → 0.
const KEDA_COOLDOWN_SECS: u64 = 300;
/// The HPA controller's sync period (`--horizontal-pod-autoscaler-sync-period`,
/// default 15 s).
const HPA_SYNC_SECS: u64 = 15;
/// The HPA's tolerance (default 0.1): ratios within 10 % of 1 change nothing.
const HPA_TOLERANCE: f64 = 0.1;
/// Default scale-up policies: add the larger of 4 pods or 100 % per 15 s.
const HPA_UP_PODS: u32 = 4;
/// Default scale-down stabilization window: the highest recommendation of
/// the last 300 s.
const HPA_DOWN_WINDOW_SECS: u64 = 300;

/// KEDA's redis-streams scaler in lag mode (`lagCount`), feeding an HPA
/// with its default behaviour. It sees the lag alone (pending entries do not
/// count), reads an unknown lag as 0, and is given the lag summed over all
/// streams (real KEDA watches one stream per trigger: a generous model).
pub struct KedaHpa {
    /// `lagCount`: lag per replica the HPA aims at (an `AverageValue`).
    lag_count: f64,
    /// `activationLagCount`: active while lag is strictly greater.
    activation_lag: u64,
    /// `minReplicaCount` (0 allows scale to zero) and `maxReplicaCount`.
    min_replicas: u32,
    max_replicas: u32,
    drain_seconds: f64,
    window_secs: f64,
    last_active: Option<u64>,
    /// HPA recommendations (time, replicas), oldest first.
    recommendations: VecDeque<(u64, u32)>,
}

impl KedaHpa {
    /// A KEDA + HPA with the FeedCluster's bounds (and scale to zero when
    /// it has it), `lag_count` for `lagCount` and `activation_lag` for
    /// `activationLagCount`.
    pub fn new(settings: &Settings, lag_count: u64, activation_lag: u64) -> KedaHpa {
        KedaHpa {
            lag_count: lag_count.max(1) as f64,
            activation_lag,
            min_replicas: if settings.scale_to_zero {
                0
            } else {
                settings.min_replicas
            },
            max_replicas: settings.max_replicas,
            drain_seconds: settings.drain_seconds,
            window_secs: settings.scale_down_window_secs,
            last_active: None,
            recommendations: VecDeque::new(),
        }
    }

    /// The HPA's decision at a sync, for `current` ≥ 1 replicas.
    fn hpa(&mut self, t: u64, current: u32, lag: u64) -> u32 {
        let floor = self.min_replicas.max(1);
        let ratio = lag as f64 / (self.lag_count * f64::from(current));
        let recommended = if (ratio - 1.0).abs() <= HPA_TOLERANCE {
            current
        } else {
            (lag as f64 / self.lag_count).ceil() as u32
        }
        .clamp(floor, self.max_replicas);
        self.recommendations.push_back((t, recommended));
        while self
            .recommendations
            .front()
            .is_some_and(|(at, _)| t - at > HPA_DOWN_WINDOW_SECS)
        {
            self.recommendations.pop_front();
        }
        if recommended > current {
            // Scale-up window 0; the larger of 4 pods or 100 % per period.
            recommended.min(current + HPA_UP_PODS.max(current))
        } else {
            let stabilized = self
                .recommendations
                .iter()
                .map(|(_, r)| *r)
                .max()
                .unwrap_or(recommended);
            stabilized.min(current)
        }
    }
}

impl Policy for KedaHpa {
    fn name(&self) -> &'static str {
        "keda-hpa"
    }

    fn tick(&mut self, observation: &Observation) -> Option<u32> {
        let t = observation.at_secs as u64;
        let current = observation.current_replicas;
        // KEDA reads an unknown lag as zero.
        let lag = observation.lag.unwrap_or(0);
        if t.is_multiple_of(KEDA_POLLING_SECS) {
            let active = lag > self.activation_lag;
            if active {
                self.last_active = Some(t);
            }
            if current == 0 {
                return active.then_some(1.min(self.max_replicas));
            }
            let cooled = self
                .last_active
                .is_none_or(|at| t - at >= KEDA_COOLDOWN_SECS);
            if self.min_replicas == 0 && !active && cooled {
                self.recommendations.clear();
                return Some(0);
            }
        }
        if current > 0 && t.is_multiple_of(HPA_SYNC_SECS) {
            return Some(self.hpa(t, current, lag));
        }
        None
    }

    fn drain_seconds(&self) -> f64 {
        self.drain_seconds
    }

    fn window_secs(&self, to: u32) -> f64 {
        if to == 0 {
            KEDA_COOLDOWN_SECS as f64
        } else {
            self.window_secs
        }
    }
}
