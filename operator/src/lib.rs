//! The Fanout operator: deploys Fanout from `FeedCluster` resources and
//! scales its workers by the backlog of the Redis Streams they consume.
//!
//! # Layout
//!
//! - [`crd`]: the `FeedCluster` resource, its spec and status.
//! - [`resources`]: the objects a FeedCluster becomes, as pure functions.
//! - [`context`]: what the reconciler and the autoscaler share: their
//!   context, field managers, errors, status patches and Events.
//! - [`controller`]: the reconciler (server-side apply, status, events).
//! - [`autoscaler`]: scales workers by stream backlog with the shared policy.
//! - [`pause`]: the `fanout.dev/paused` switch that stops both.
//! - [`scale_target`]: what it scales: the worker Deployment.
//! - [`metrics`]: the operator's Prometheus metrics.
//! - [`config`] and [`run`]: settings, probes, leader election, wiring.
//!
//! The autoscaling policy and the step around it (observe, decide, scale)
//! are plain Rust in `feed_core::autoscale`, so the autoscale lab (its
//! simulator and local workers) and the operator run the same code.
#![forbid(unsafe_code)]

pub mod autoscaler;
pub mod config;
pub mod context;
pub mod controller;
pub mod crd;
#[cfg(test)]
mod fixtures;
pub mod metrics;
pub mod pause;
pub mod resources;
pub mod scale_target;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::Context as _;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Name of the Lease the replicas elect a leader with; an operator that
/// watches one namespace adds its name, so operators watching different
/// namespaces lead apart.
const LEASE_NAME: &str = "fanout-operator";
/// Seconds a leader's claim lasts without renewal; a crashed leader is
/// replaced within this.
const LEASE_SECONDS: u64 = 15;
/// Seconds before expiry at which the leader renews (tolerated clock skew).
const LEASE_GRACE_SECONDS: u64 = 5;

/// What this replica is doing, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Role {
    /// Preparing leader election.
    Starting = 0,
    /// Healthy, waiting for the Lease.
    Standby = 1,
    /// Holding the Lease: reconciling and autoscaling.
    Leading = 2,
    /// Lost the Lease, or leader election stopped: about to exit.
    Stopped = 3,
}

/// The replica's role, shared with the probes.
#[derive(Default)]
struct RoleCell(AtomicU8);

impl RoleCell {
    fn set(&self, role: Role) {
        self.0.store(role as u8, Ordering::Relaxed);
    }

    fn get(&self) -> Role {
        match self.0.load(Ordering::Relaxed) {
            1 => Role::Standby,
            2 => Role::Leading,
            3 => Role::Stopped,
            _ => Role::Starting,
        }
    }
}

/// `/readyz`: ready while leading or standing by; not while starting or
/// once leadership is lost (the process is then on its way out).
async fn readiness(role: Arc<RoleCell>) -> (StatusCode, &'static str) {
    match role.get() {
        Role::Leading => (StatusCode::OK, "ready: leading"),
        Role::Standby => (StatusCode::OK, "ready: standing by"),
        Role::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        Role::Stopped => (StatusCode::SERVICE_UNAVAILABLE, "stopped: lost the Lease"),
    }
}

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
    let ctx = Arc::new(context::Context::new(
        client.clone(),
        recorder,
        metrics.clone(),
        config.image.clone(),
        config.namespace.clone(),
    ));

    let role = Arc::new(RoleCell::default());
    let probes = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get({
                let role = role.clone();
                move || readiness(role.clone())
            }),
        )
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

    // Leadership: wait for the Lease; losing it, or leader election itself
    // stopping, stops the work (and the process, so it restarts as a clean
    // standby).
    let work = shutdown.child_token();
    if config.leader_election {
        let lease = match &config.watch_namespace {
            Some(ns) => format!("{LEASE_NAME}-{ns}"),
            None => LEASE_NAME.to_owned(),
        };
        let manager = kube_lease_manager::LeaseManagerBuilder::new(client, &lease)
            .with_namespace(config.namespace.clone())
            .with_identity(config.identity.clone())
            .with_duration(LEASE_SECONDS)
            .with_grace(LEASE_GRACE_SECONDS)
            .build()
            .await
            .context("preparing leader election")?;
        let (mut lead, task) = manager.watch().await;
        role.set(Role::Standby);
        info!(identity = %config.identity, %lease, "waiting to lead");
        while !*lead.borrow_and_update() {
            tokio::select! {
                changed = lead.changed() => if changed.is_err() {
                    role.set(Role::Stopped);
                    let why = match task.await {
                        Ok(Err(e)) => e.to_string(),
                        Ok(Ok(_)) => "it ended".to_owned(),
                        Err(e) => e.to_string(),
                    };
                    anyhow::bail!("leader election stopped before this replica led: {why}");
                },
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
        role.set(Role::Leading);
        let lost = work.clone();
        let role = role.clone();
        tokio::spawn(async move {
            // Err: the election task ended, so nothing renews the Lease any
            // more; that is a loss too.
            while lead.changed().await.is_ok() && *lead.borrow_and_update() {}
            warn!("lost the Lease (or leader election stopped); stopping");
            role.set(Role::Stopped);
            lost.cancel();
            match task.await {
                Ok(Err(e)) => warn!(error = %e, "leader election failed"),
                Err(e) => warn!(error = %e, "leader election panicked"),
                Ok(Ok(_)) => {}
            }
        });
    } else {
        role.set(Role::Leading);
    }
    info!("leading: reconciling FeedClusters and autoscaling workers");

    let controller = controller::controller(&ctx.client, config.watch_namespace.as_deref());
    let autoscaler = tokio::spawn(autoscaler::run(
        ctx.clone(),
        controller.store(),
        work.clone(),
    ));
    let until = work.clone();
    controller::run(controller, ctx, async move { until.cancelled().await }).await;
    work.cancel();
    let _ = autoscaler.await;
    let lost = role.get() == Role::Stopped;
    shutdown.cancel();
    http.await??;
    if lost {
        anyhow::bail!("lost leadership");
    }
    Ok(())
}
