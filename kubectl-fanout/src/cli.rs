//! The commands and flags of `kubectl fanout`.

use std::path::PathBuf;

use autoscale_lab::simulate::command::RunArgs;
use clap::{Args, Parser, Subcommand};

/// How a Fanout FeedCluster is doing, its pause switch, and autoscaling
/// simulations on its own settings.
///
/// Install by putting `kubectl-fanout` on the PATH; kubectl then runs it as
/// `kubectl fanout`. The cluster is found as kubectl finds it: --kubeconfig,
/// else $KUBECONFIG, else ~/.kube/config, else the pod's ServiceAccount.
#[derive(Debug, Parser)]
#[command(name = "kubectl-fanout", bin_name = "kubectl fanout", version)]
pub struct Cli {
    /// Namespace of the FeedCluster; default: the kubeconfig context's
    /// namespace, else `default`.
    #[arg(short, long, global = true, env = "FANOUT_NAMESPACE")]
    pub namespace: Option<String>,
    /// The kubeconfig file to use instead of $KUBECONFIG or ~/.kube/config.
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use instead of its current one.
    #[arg(long, global = true)]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// What `kubectl fanout` does.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Conditions, replicas, backlog per stream (live from the
    /// FeedCluster's Redis when reachable, else as last recorded in its
    /// status), and the autoscaler's last decisions with their reasons.
    Status(StatusArgs),
    /// Stop the operator reconciling and autoscaling a FeedCluster (the
    /// annotation fanout.dev/paused="true"): for hands-on repairs it would
    /// otherwise undo.
    Pause(SwitchArgs),
    /// Let the operator reconcile and autoscale a paused FeedCluster again
    /// (removes fanout.dev/paused).
    Resume(SwitchArgs),
    /// Replay a trace of arrivals through the autoscaler with the
    /// FeedCluster's own spec.workers and spec.autoscaling (the autoscale
    /// lab, offline: nothing in the cluster changes). Writes the runs as
    /// JSON (to --out, else standard output) and a summary line per run to
    /// standard error.
    Simulate(SimulateArgs),
}

/// `kubectl fanout status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The FeedCluster.
    pub name: String,
    /// Read the backlog from this Redis instead of the FeedCluster's own
    /// (e.g. `redis://127.0.0.1:6379` through `kubectl port-forward
    /// svc/NAME-redis 6379`): a managed Redis is only reachable inside the
    /// cluster.
    #[arg(long, env = "FANOUT_REDIS_URL")]
    pub redis_url: Option<String>,
    /// How many of the autoscaler's latest decisions (its Events) to show.
    #[arg(long, default_value_t = 5)]
    pub decisions: usize,
}

/// `kubectl fanout pause` and `resume`.
#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// The FeedCluster.
    pub name: String,
    /// Seconds to wait for the operator to confirm (its `Paused`
    /// condition); 0: do not wait.
    #[arg(long, default_value_t = 30)]
    pub wait: u64,
}

/// `kubectl fanout simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The FeedCluster whose settings to simulate.
    pub name: String,
    #[command(flatten)]
    pub run: RunArgs,
}
