#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use feed_core::runtime;
use feed_worker::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    runtime::init_logging(&config.log);
    config
        .validate()
        .map_err(anyhow::Error::msg)
        .context("invalid configuration")?;
    let pool = config.postgres.pool()?;

    let shutdown = runtime::shutdown_token();
    feed_worker::run(config, pool, shutdown).await
}
