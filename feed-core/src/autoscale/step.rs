//! One autoscaling step, whatever is scaled and wherever the backlog comes
//! from: observe (the streams' backlog and the workers' replicas), decide
//! ([`super::decide`]), scale. The operator runs it on a worker Deployment,
//! the autoscale lab and the real-worker test on `feed-worker` processes:
//! the same code, so what is tried locally is what the operator does.
//!
//! The traits name no Kubernetes or process types: each target brings its
//! own error type, and this crate stays free of both.

use std::future::Future;

use super::{Decision, Direction, Memory, Observation, Settings, decide};
use crate::bus::Backlog;

/// How many workers are asked for, and how many are ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Replicas {
    pub desired: u32,
    pub ready: u32,
}

/// A set of workers whose number the autoscaler sets.
pub trait ScaleTarget: Send + Sync {
    /// Why the workers could not be read or scaled.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The workers now; `None` when the target does not exist (yet).
    fn replicas(&self) -> impl Future<Output = Result<Option<Replicas>, Self::Error>> + Send;
    /// Asks for `to` workers.
    fn scale(&self, to: u32) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Where the streams' backlog is read from.
pub trait BacklogSource: Send + Sync {
    /// The backlog now; `None` when it cannot be read, which the policy
    /// never takes for zero. The source reports why, since it knows what to
    /// name in the report (a FeedCluster, a test).
    fn backlog(&self) -> impl Future<Output = Option<Backlog>> + Send;
}

/// What the policy sees: the backlog (unknown when Redis could not be read)
/// and the workers' replicas.
pub fn observe(backlog: Option<&Backlog>, replicas: Replicas, at_secs: f64) -> Observation {
    Observation {
        at_secs,
        lag: backlog.and_then(|b| b.lag),
        pending: backlog.map_or(0, |b| b.pending),
        entries_added: backlog.map_or(0, |b| b.entries_added),
        entries_read: backlog.and_then(|b| b.entries_read),
        current_replicas: replicas.desired,
        ready_replicas: replicas.ready,
    }
}

/// What one step saw and decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The backlog as read; `None` when unknown.
    pub backlog: Option<Backlog>,
    /// The workers before the decision.
    pub replicas: Replicas,
    pub decision: Decision,
}

/// Observes and decides: reads the backlog, then the replicas, and runs the
/// policy on them at `now()` (seconds on a monotonic clock, read after
/// both). `None` when the target does not exist (yet): nothing to decide.
///
/// Scaling is left to [`apply`], so a caller can act in between (the
/// operator marks pods' deletion costs before a scale-down) or only report
/// the decision.
pub async fn decide_step<S, T>(
    settings: &Settings,
    memory: &mut Memory,
    source: &S,
    target: &T,
    now: impl FnOnce() -> f64,
) -> Result<Option<Step>, T::Error>
where
    S: BacklogSource,
    T: ScaleTarget,
{
    let backlog = source.backlog().await;
    let Some(replicas) = target.replicas().await? else {
        return Ok(None);
    };
    let observation = observe(backlog.as_ref(), replicas, now());
    let decision = decide(settings, memory, observation);
    Ok(Some(Step {
        backlog,
        replicas,
        decision,
    }))
}

/// Scales `target` to what `decision` asks, when it asks for a change;
/// returns whether it did.
pub async fn apply<T: ScaleTarget>(target: &T, decision: &Decision) -> Result<bool, T::Error> {
    if decision.direction == Direction::None {
        return Ok(false);
    }
    target.scale(decision.desired).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Workers that are all ready at once, recording each scale order.
    #[derive(Default)]
    struct Workers {
        count: Mutex<Option<u32>>,
        orders: Mutex<Vec<u32>>,
    }

    impl ScaleTarget for Workers {
        type Error = std::io::Error;
        async fn replicas(&self) -> Result<Option<Replicas>, std::io::Error> {
            Ok(self.count.lock().unwrap().map(|n| Replicas {
                desired: n,
                ready: n,
            }))
        }
        async fn scale(&self, to: u32) -> Result<(), std::io::Error> {
            *self.count.lock().unwrap() = Some(to);
            self.orders.lock().unwrap().push(to);
            Ok(())
        }
    }

    struct Fixed(Option<Backlog>);

    impl BacklogSource for Fixed {
        async fn backlog(&self) -> Option<Backlog> {
            self.0.clone()
        }
    }

    fn lagging(lag: u64) -> Backlog {
        Backlog {
            lag: Some(lag),
            entries_read: Some(0),
            ..Backlog::default()
        }
    }

    #[tokio::test]
    async fn a_step_observes_decides_and_scales_only_on_a_change() {
        let settings = Settings::default();
        let mut memory = Memory::default();
        let workers = Workers::default();
        let source = Fixed(Some(lagging(13_500)));

        let none = decide_step(&settings, &mut memory, &source, &workers, || 0.0).await;
        assert!(none.unwrap().is_none(), "no target: nothing decided");
        assert_eq!(memory, Memory::default(), "and nothing remembered");

        *workers.count.lock().unwrap() = Some(1);
        let step = decide_step(&settings, &mut memory, &source, &workers, || 0.0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            step.replicas,
            Replicas {
                desired: 1,
                ready: 1
            }
        );
        assert_eq!(step.backlog, Some(lagging(13_500)));
        assert_eq!(step.decision.direction, Direction::Up);
        assert!(
            workers.orders.lock().unwrap().is_empty(),
            "deciding scales nothing"
        );
        assert!(apply(&workers, &step.decision).await.unwrap());
        assert_eq!(*workers.orders.lock().unwrap(), [step.decision.desired]);

        let step = decide_step(&settings, &mut memory, &source, &workers, || 1.0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(step.decision.direction, Direction::None);
        assert!(!apply(&workers, &step.decision).await.unwrap());
        assert_eq!(workers.orders.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_unreadable_backlog_holds_the_workers() {
        let mut memory = Memory::default();
        let workers = Workers::default();
        *workers.count.lock().unwrap() = Some(3);
        let step = decide_step(
            &Settings::default(),
            &mut memory,
            &Fixed(None),
            &workers,
            || 0.0,
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(step.backlog, None);
        assert_eq!(step.decision.desired, 3);
        assert_eq!(
            step.decision.limited_by,
            Some(super::super::Limit::UnknownLag)
        );
    }
}
