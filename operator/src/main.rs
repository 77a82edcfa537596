#![forbid(unsafe_code)]

use clap::Parser;
use feed_core::runtime;
use operator::config::Config;

/// Deploys Fanout from FeedCluster resources and scales its workers by
/// stream backlog.
#[derive(Debug, Parser)]
#[command(name = "fanout-operator", version)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    runtime::init_logging(&cli.config.log);
    operator::run(cli.config, runtime::shutdown_token()).await
}
