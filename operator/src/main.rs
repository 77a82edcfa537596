#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use feed_core::runtime;
use operator::config::Config;
use operator::simulate::command::SimulateArgs;

/// Deploys Fanout from FeedCluster resources and scales its workers by
/// stream backlog; `simulate` replays a trace through the autoscaler.
#[derive(Debug, Parser)]
#[command(
    name = "fanout-operator",
    version,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay a trace of arrivals through the worker autoscaler, offline.
    Simulate(SimulateArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Simulate(args)) => operator::simulate::command::execute(&args),
        None => {
            runtime::init_logging(&cli.config.log);
            operator::run(cli.config, runtime::shutdown_token()).await
        }
    }
}
