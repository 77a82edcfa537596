//! The worker autoscaler: every poll interval, per FeedCluster with
//! autoscaling on, read the streams' backlog from Redis and the worker
//! Deployment's replicas, run the policy (`feed_core::autoscale`), and act:
//! scale the Deployment (its `scale` subresource, under a field manager of
//! its own, so the reconciler never resets it), explain the decision in
//! `.status.lastScale`, an Event and metrics. A paused FeedCluster
//! ([`crate::pause`]) is neither read nor scaled; its skipped polls are
//! counted.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use feed_core::autoscale::step::{self, BacklogSource, Step};
use feed_core::autoscale::{Decision, Direction, Memory};
use feed_core::bus::{self, Backlog};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use serde_json::json;
use tracing::{info, warn};

use crate::context::{AUTOSCALER_FIELD_MANAGER, Context, Error, key, patch_status, publish};
use crate::crd::{AutoscalingMode, FeedCluster, StreamStatus};
use crate::pause;
use crate::resources::{Names, Reach, label_selector, selector};
use crate::scale_target::DeploymentScale;

/// How often the loop looks through the FeedClusters (the controller's
/// cache, no API call) for those due a poll: the finest poll interval
/// worth honouring.
const TICK: Duration = Duration::from_secs(2);

/// What the autoscaler keeps per FeedCluster.
struct Tracked {
    memory: Memory,
    redis_url: String,
    redis: feed_core::bus::Redis,
}

/// The URL of a FeedCluster's Redis: the managed Service, or the external
/// Secret's key.
async fn redis_url(ctx: &Context, fc: &FeedCluster) -> Result<String, Error> {
    let names = Names::of(fc);
    match &fc.spec.redis.external {
        None => Ok(names.redis_url(Reach::Cluster)),
        Some(ext) => {
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
            let secret = secrets.get(&ext.secret_name).await?;
            secret
                .data
                .and_then(|d| d.get(&ext.key).cloned())
                .and_then(|b| String::from_utf8(b.0).ok())
                .ok_or_else(|| {
                    Error::InvalidSpec(format!("Secret {} has no key {}", ext.secret_name, ext.key))
                })
        }
    }
}

/// Runs until `shutdown` is cancelled, over the FeedClusters in `clusters`
/// (the controller's reflector store). It does not wait for the store to
/// fill: until it has, a tick finds nothing to poll. Each tick it also
/// keeps the `paused` gauge of every FeedCluster, and drops the gauges of
/// those it no longer observes.
pub async fn run(
    ctx: Arc<Context>,
    clusters: Store<FeedCluster>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tracked: HashMap<String, Tracked> = HashMap::new();
    // Kept apart from `tracked`, so a poll that fails before tracking starts
    // still waits its interval instead of retrying every tick.
    let mut due: HashMap<String, Instant> = HashMap::new();
    // FeedClusters with series in the metrics, to drop theirs once gone.
    let mut known: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.cancelled() => return,
        }
        let list = clusters.state();
        let live: HashSet<String> = list.iter().map(|fc| key(fc)).collect();
        tracked.retain(|k, _| live.contains(k));
        due.retain(|k, _| live.contains(k));
        for gone in known.difference(&live) {
            ctx.metrics.forget_observed(gone);
            let _ = ctx.metrics.paused.remove_label_values(&[gone.as_str()]);
        }
        known = live;
        for fc in &list {
            let k = key(fc);
            let paused = pause::is_paused(fc);
            ctx.metrics
                .paused
                .with_label_values(&[k.as_str()])
                .set(i64::from(paused));
            if paused || !fc.spec.autoscaling.enabled {
                ctx.metrics.forget_observed(&k);
            }
        }
        for fc in list.into_iter().filter(|fc| fc.spec.autoscaling.enabled) {
            let k = key(&fc);
            if due.get(&k).is_some_and(|at| *at > Instant::now()) {
                continue;
            }
            due.insert(k.clone(), Instant::now() + poll_interval(&fc));
            if pause::is_paused(&fc) {
                // What it remembered is stale by the time it resumes: it
                // starts afresh, as after a restart.
                tracked.remove(&k);
                ctx.metrics
                    .paused_polls
                    .with_label_values(&[k.as_str()])
                    .inc();
                continue;
            }
            if let Err(e) = poll(&ctx, &fc, &mut tracked).await {
                warn!(feedcluster = %k, error = %e, "autoscaling poll failed");
            }
        }
    }
}

fn poll_interval(fc: &FeedCluster) -> Duration {
    Duration::from_secs(fc.spec.autoscaling.poll_interval_seconds.max(1) as u64)
}

async fn poll(
    ctx: &Context,
    fc: &FeedCluster,
    tracked: &mut HashMap<String, Tracked>,
) -> Result<(), Error> {
    let k = key(fc);
    let url = redis_url(ctx, fc).await?;
    if tracked.get(&k).is_none_or(|t| t.redis_url != url) {
        let redis =
            feed_core::bus::Redis::new(&url, Duration::from_secs(2)).map_err(Error::RedisUrl)?;
        tracked.insert(
            k.clone(),
            Tracked {
                memory: Memory::default(),
                redis_url: url,
                redis,
            },
        );
    }
    let t = tracked.get_mut(&k).expect("inserted above");
    let source = ClusterBacklog {
        redis: &t.redis,
        feedcluster: &k,
    };
    let target = workers(ctx, fc);
    let Some(Step {
        backlog,
        replicas,
        decision,
    }) = step::decide_step(
        &fc.spec.policy(),
        &mut t.memory,
        &source,
        &target,
        uptime_secs,
    )
    .await?
    else {
        return Ok(());
    };
    let consumers = match t.redis.conn().await {
        Ok(mut conn) => bus::consumers(&mut conn).await.ok(),
        Err(_) => None,
    };
    let scaling_down =
        decision.direction == Direction::Down && fc.spec.autoscaling.mode == AutoscalingMode::Scale;
    if let (true, Some(consumers)) = (scaling_down, &consumers)
        && let Err(e) = set_deletion_costs(ctx, fc, consumers).await
    {
        warn!(feedcluster = %k, error = %e, "marking workers' deletion costs failed");
    }
    act(ctx, fc, backlog.as_ref(), &decision, replicas.desired).await?;
    if let (Some(consumers), Ok(mut conn)) = (&consumers, t.redis.conn().await) {
        let pods = worker_pods(ctx, fc).await?;
        for (name, consumer) in consumers {
            let gone = !pods.iter().any(|p| p.name_any() == *name);
            if gone && consumer.pending == 0 && consumer.idle_ms >= GONE_CONSUMER_IDLE_MS {
                match bus::remove_consumer(&mut conn, name).await {
                    Ok(true) => {
                        info!(feedcluster = %k, consumer = %name, "removed the consumer of a gone worker")
                    }
                    Ok(false) => {}
                    Err(e) => warn!(consumer = %name, error = %e, "removing a consumer failed"),
                }
            }
        }
    }
    Ok(())
}

/// A consumer with no pod, nothing pending and this long idle is removed
/// from the group (its pending entries, if any, are claimed first by the
/// live workers).
const GONE_CONSUMER_IDLE_MS: u64 = 60_000;

/// The annotation the ReplicaSet controller reads to pick pods to delete
/// first on scale-down: lowest cost first.
const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

async fn worker_pods(ctx: &Context, fc: &FeedCluster) -> Result<Vec<Pod>, Error> {
    let names = Names::of(fc);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let selector = label_selector(&selector(fc, "worker"));
    Ok(pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items)
}

/// Before a scale-down, marks each worker pod with what it holds pending, so
/// the idle ones are removed first and fewer entries wait to be reclaimed.
/// Best effort, pod by pod: a pod that has just gone (a merge patch of a
/// missing pod is a 404, never a create) or any other failure is logged and
/// skipped, and the scale-down goes ahead without its hint.
pub async fn set_deletion_costs(
    ctx: &Context,
    fc: &FeedCluster,
    consumers: &HashMap<String, bus::Consumer>,
) -> Result<(), Error> {
    let names = Names::of(fc);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let params = PatchParams {
        field_manager: Some(AUTOSCALER_FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    for pod in worker_pods(ctx, fc).await? {
        let name = pod.name_any();
        let cost = consumers
            .get(&name)
            .map_or(0, |c| c.pending)
            .min(i32::MAX as u64)
            .to_string();
        if pod.annotations().get(DELETION_COST) == Some(&cost) {
            continue;
        }
        let patch = json!({"metadata": {"annotations": {DELETION_COST: cost}}});
        match pods.patch(&name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                warn!(feedcluster = %key(fc), pod = %name, error = %e, "marking a worker's deletion cost failed")
            }
        }
    }
    Ok(())
}

/// A monotonic clock for the policy: seconds since the first poll.
fn uptime_secs() -> f64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// A FeedCluster's worker Deployment as a scale target.
fn workers(ctx: &Context, fc: &FeedCluster) -> DeploymentScale {
    let names = Names::of(fc);
    DeploymentScale {
        api: Api::namespaced(ctx.client.clone(), &names.namespace),
        name: names.workers(),
    }
}

/// A FeedCluster's streams as the step's backlog source: an unreadable
/// backlog is logged under the FeedCluster's name, and unknown to the policy.
struct ClusterBacklog<'a> {
    redis: &'a bus::Redis,
    feedcluster: &'a str,
}

impl BacklogSource for ClusterBacklog<'_> {
    async fn backlog(&self) -> Option<Backlog> {
        let read = async {
            let mut conn = self.redis.conn().await?;
            bus::backlog(&mut conn, bus::DEFAULT_MAX_DELIVERIES).await
        };
        match read.await {
            Ok(b) => Some(b),
            Err(e) => {
                // Unreachable Redis: unknown backlog, which the policy never
                // reads as zero.
                warn!(feedcluster = %self.feedcluster, error = %e, "reading the backlog failed");
                None
            }
        }
    }
}

/// Each stream's lag, pending entries and oldest unfinished entry's age,
/// for the dashboards and alerts.
fn record_streams(metrics: &crate::metrics::Metrics, feedcluster: &str, backlog: &Backlog) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    for s in &backlog.streams {
        let labels = [feedcluster, s.stream.as_str()];
        match s.lag {
            Some(lag) => metrics
                .stream_lag
                .with_label_values(&labels)
                .set(lag as i64),
            // Unknown is not zero.
            None => {
                let _ = metrics.stream_lag.remove_label_values(&labels);
            }
        }
        metrics
            .stream_pending
            .with_label_values(&labels)
            .set(s.pending as i64);
        let age_ms = s.oldest_unfinished_ms.map_or(0, |at| (now_ms - at).max(0));
        metrics
            .stream_oldest_unfinished
            .with_label_values(&labels)
            .set(age_ms as f64 / 1000.0);
    }
}

/// Applies (or, in RecommendOnly mode, only reports) a decision.
pub async fn act(
    ctx: &Context,
    fc: &FeedCluster,
    backlog: Option<&Backlog>,
    decision: &Decision,
    current: u32,
) -> Result<(), Error> {
    let apply = fc.spec.autoscaling.mode == AutoscalingMode::Scale;
    let change = decision.direction != Direction::None;
    if apply {
        step::apply(&workers(ctx, fc), decision).await?;
    }
    let direction = match decision.direction {
        Direction::Up => "Up",
        Direction::Down => "Down",
        Direction::None => "None",
    };
    let k = key(fc);
    let observed = &ctx.metrics.observed;
    match backlog.and_then(|b| b.lag.map(|lag| (lag, b))) {
        Some((lag, b)) => {
            observed
                .with_label_values(&[k.as_str(), "lag"])
                .set(lag as i64);
            observed
                .with_label_values(&[k.as_str(), "pending"])
                .set(b.pending as i64);
            observed
                .with_label_values(&[k.as_str(), "poison"])
                .set(b.poison as i64);
        }
        None => {
            // Unknown is not zero: drop the series rather than report 0.
            for measure in ["lag", "pending", "poison"] {
                let _ = observed.remove_label_values(&[k.as_str(), measure]);
            }
        }
    }
    if let Some(b) = backlog {
        record_streams(&ctx.metrics, &k, b);
    }
    observed
        .with_label_values(&[k.as_str(), "desired"])
        .set(i64::from(decision.desired));
    observed
        .with_label_values(&[k.as_str(), "replicas"])
        .set(i64::from(current));
    observed
        .with_label_values(&[k.as_str(), "max_replicas"])
        .set(i64::from(fc.spec.policy().max_replicas));
    ctx.metrics
        .decisions
        .with_label_values(&[
            k.as_str(),
            direction,
            if change && apply { "true" } else { "false" },
        ])
        .inc();
    let mut status = json!({
        "backlog": backlog.and_then(|b| b.lag.map(|lag| (lag + b.pending) as i64)),
        "streams": backlog.map(|b| b.streams.iter().map(|s| StreamStatus {
            name: s.stream.clone(),
            lag: s.lag.map(|l| l as i64),
            pending: s.pending as i64,
        }).collect::<Vec<_>>()).unwrap_or_default(),
    });
    if change {
        status["lastScale"] = json!({
            "time": Time(k8s_openapi::jiff::Timestamp::now()),
            "direction": direction,
            "from": current,
            "to": decision.desired,
            "reason": decision.reason,
            "applied": apply,
        });
        let verb = if apply { "Scaled" } else { "Recommended" };
        publish(ctx, fc, EventType::Normal, verb, &decision.reason).await;
        info!(feedcluster = %k, from = current, to = decision.desired, applied = apply, reason = %decision.reason, "autoscaling decision");
    }
    patch_status(ctx, fc, &status).await
}

#[cfg(test)]
mod tests;
