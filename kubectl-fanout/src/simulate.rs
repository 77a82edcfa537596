//! `kubectl fanout simulate`: the autoscale lab's replay of a trace, on a
//! live FeedCluster's own `spec.workers` and `spec.autoscaling`.

use autoscale_lab::simulate::command::{self, SimulateArgs as LabArgs};

use crate::cli::SimulateArgs;
use crate::cluster::{Error, Target};

/// Reads the FeedCluster, replays the trace on its settings and writes the
/// result as the lab does.
pub async fn run(target: &Target, args: &SimulateArgs) -> Result<(), Error> {
    let fc = target.feed_cluster(&args.name).await?;
    let lab = LabArgs::of(args.run.clone());
    let output = command::simulate_with(&lab, &fc.spec.workers, &fc.spec.autoscaling)
        .map_err(Error::Simulation)?;
    eprintln!(
        "FeedCluster {}/{}: workers {}..{}, poll every {} s, drain within {} s",
        target.namespace,
        args.name,
        fc.spec.workers.min_replicas,
        fc.spec.workers.max_replicas,
        fc.spec.autoscaling.poll_interval_seconds,
        fc.spec.autoscaling.drain_seconds,
    );
    command::report(&lab, &output).map_err(Error::Simulation)
}
