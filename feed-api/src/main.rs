#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use feed_api::config::Config;
use feed_core::{db, runtime};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    runtime::init_logging(&config.log);
    config
        .validate()
        .map_err(anyhow::Error::msg)
        .context("invalid configuration")?;
    let pool = config.postgres.pool()?;
    if config.migrate || config.migrate_only {
        db::MIGRATOR
            .run(&pool)
            .await
            .context("applying database migrations")?;
        tracing::info!("database migrations applied");
    }
    if config.migrate_only {
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding FANOUT_HTTP_ADDR {}", config.http_addr))?;

    let shutdown = runtime::shutdown_token();
    feed_api::serve(config, pool, listener, shutdown).await
}
