//! `kubectl fanout`: how a FeedCluster is doing in one command, its pause
//! switch, and the autoscale lab run on its own autoscaling settings.
//!
//! kubectl runs any `kubectl-NAME` binary on the PATH as `kubectl NAME`.
//! The rules it shows are not copied here: the CRD types and the pause
//! annotation are the operator's ([`operator::crd`], [`operator::pause`]),
//! the backlog is read as the autoscaler reads it ([`feed_core::bus`]), and
//! the simulation is the autoscale lab's. It lives in a crate of its own so
//! the operator never links the lab (and its plotting).
//!
//! - [`cli`]: the commands and flags.
//! - [`cluster`]: reaching the cluster and the FeedCluster, and errors that
//!   say what to do.
//! - [`status`]: `status NAME`, gathered and rendered.
//! - [`switch`]: `pause NAME` and `resume NAME`.
//! - [`simulate`]: `simulate NAME --trace FILE`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod cluster;
pub mod simulate;
pub mod status;
pub mod switch;

pub use cluster::Error;

/// Runs one `kubectl fanout` command, writing what it has to say to
/// standard output.
pub async fn run(cli: cli::Cli) -> Result<(), Error> {
    let target = cluster::connect(
        cli.kubeconfig.as_deref(),
        cli.context.as_deref(),
        cli.namespace.as_deref(),
    )
    .await?;
    match cli.command {
        cli::Command::Status(args) => {
            let report = status::gather(&target, &args).await?;
            print!("{}", status::render(&report));
        }
        cli::Command::Pause(args) => {
            println!("{}", switch::set(&target, &args, true).await?);
        }
        cli::Command::Resume(args) => {
            println!("{}", switch::set(&target, &args, false).await?);
        }
        cli::Command::Simulate(args) => simulate::run(&target, &args).await?,
    }
    Ok(())
}
