//! The operator's settings: flags, each with an environment variable.

use std::net::SocketAddr;

use clap::Parser;
use feed_core::runtime::LogArgs;

/// Deploys Fanout from FeedCluster resources and scales its workers by
/// stream backlog.
#[derive(Debug, Clone, Parser)]
#[command(name = "fanout-operator", version)]
pub struct Config {
    #[command(flatten)]
    pub log: LogArgs,
    /// Image FeedClusters run unless they name one: the operator's own, so
    /// every part runs the same version (the Helm chart sets it).
    #[arg(long, env = "FANOUT_OPERATOR_IMAGE", default_value = concat!("ghcr.io/fanout-dev/fanout:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "FANOUT_OPERATOR_HTTP_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub http_addr: SocketAddr,
    /// Act only while holding the Lease, so several replicas never both act.
    #[arg(long, env = "FANOUT_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// The operator's own namespace: where its Lease is, and where a managed
    /// Redis's NetworkPolicy expects the operator's pods.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Serve only the FeedClusters of this namespace (unset: every
    /// namespace). Operators watching different namespaces elect their
    /// leaders apart, on Leases named after what they watch.
    #[arg(long, env = "FANOUT_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// This replica's identity in the Lease (its pod name).
    #[arg(long, env = "POD_NAME", default_value = "fanout-operator")]
    pub identity: String,
}
