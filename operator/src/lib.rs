//! The Fanout operator: deploys Fanout from `FeedCluster` resources and
//! scales its workers by the backlog of the Redis Streams they consume.
//!
//! # Layout
//!
//! - [`crd`]: the `FeedCluster` resource, its spec and status.
//! - [`resources`]: the objects a FeedCluster becomes, as pure functions.
//! - [`controller`]: the reconciler (server-side apply, status, events).
//! - [`autoscaler`]: scales workers by stream backlog with the shared policy.
//! - [`scale_target`]: what it scales: a Deployment, or local processes.
//! - [`metrics`]: the operator's Prometheus metrics.
//! - [`simulate`]: `fanout-operator simulate`, the policy replayed offline.
//! - [`config`] and [`run`]: settings, probes, leader election, wiring.
//!
//! The autoscaling policy itself is plain Rust in `feed_core::autoscale`, so
//! the simulator and the operator run the same code.
#![forbid(unsafe_code)]

pub mod autoscaler;
pub mod config;
pub mod controller;
pub mod crd;
#[cfg(test)]
mod fixtures;
pub mod metrics;
pub mod resources;
pub mod scale_target;
pub mod simulate;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Name of the Lease the replicas elect a leader with.
const LEASE_NAME: &str = "fanout-operator";
/// Seconds a leader's claim lasts without renewal; a crashed leader is
/// replaced within this.
const LEASE_SECONDS: u64 = 15;
/// Seconds before expiry at which the leader renews (tolerated clock skew).
const LEASE_GRACE_SECONDS: u64 = 5;

/// Runs the operator until `shutdown`: probes and metrics at once; the
/// controller and the autoscaler while this replica leads.
pub async fn run(config: config::Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let metrics = Arc::new(metrics::Metrics::default());
    let reporter = Reporter {
        controller: "fanout-operator".into(),
        instance: Some(config.identity.clone()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let ctx = Arc::new(controller::Context::new(
        client.clone(),
        recorder,
        metrics.clone(),
        config.image.clone(),
        config.namespace.clone(),
    ));

    let leading = Arc::new(AtomicBool::new(false));
    let probes = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { feed_core::runtime::render_metrics(&metrics.registry) }
            }),
        );
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding FANOUT_OPERATOR_HTTP_ADDR {}", config.http_addr))?;
    let http_shutdown = shutdown.clone();
    let http = tokio::spawn(async move {
        axum::serve(listener, probes)
            .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
            .await
    });

    // Leadership: wait for the Lease; losing it stops the work (and the
    // process, so it restarts as a clean standby).
    let work = shutdown.child_token();
    let _lease = if config.leader_election {
        let manager = kube_lease_manager::LeaseManagerBuilder::new(client, LEASE_NAME)
            .with_namespace(config.namespace.clone())
            .with_identity(config.identity.clone())
            .with_duration(LEASE_SECONDS)
            .with_grace(LEASE_GRACE_SECONDS)
            .build()
            .await
            .context("preparing leader election")?;
        let (mut lead, task) = manager.watch().await;
        info!(identity = %config.identity, "waiting to lead");
        while !*lead.borrow_and_update() {
            tokio::select! {
                changed = lead.changed() => changed.context("leader election stopped")?,
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
        let lost = work.clone();
        let flag = leading.clone();
        tokio::spawn(async move {
            while lead.changed().await.is_ok() {
                if !*lead.borrow_and_update() {
                    tracing::warn!("lost the Lease; stopping");
                    flag.store(false, Ordering::Relaxed);
                    lost.cancel();
                    return;
                }
            }
        });
        Some(task)
    } else {
        None
    };
    leading.store(true, Ordering::Relaxed);
    info!("leading: reconciling FeedClusters and autoscaling workers");

    let controller = controller::controller(&ctx.client);
    let autoscaler = tokio::spawn(autoscaler::run(
        ctx.clone(),
        controller.store(),
        work.clone(),
    ));
    let until = work.clone();
    controller::run(controller, ctx, async move { until.cancelled().await }).await;
    work.cancel();
    let _ = autoscaler.await;
    shutdown.cancel();
    http.await??;
    Ok(())
}
