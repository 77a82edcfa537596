#![forbid(unsafe_code)]

use clap::Parser;
use feed_core::runtime;
use operator::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    runtime::init_logging(&config.log);
    operator::run(config, runtime::shutdown_token()).await
}
