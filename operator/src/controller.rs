//! The reconciler: makes the cluster match each FeedCluster, reports what it
//! found in `.status`, and backs off on errors.
//!
//! Order: the CRD types ([`crate::crd`]) → [`Context`] (in
//! [`crate::context`]) → [`reconcile`] → [`error_policy`] → [`run`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, ObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use rand::RngCore;
use serde_json::json;
use tracing::{info, warn};

use crate::context::{Context, Error, key, patch_status, publish};
use crate::crd::{FeedCluster, FeedClusterStatus, ReplicaStatus};
use crate::pause::{self, ACTIVE_MESSAGE, ACTIVE_REASON, PAUSED_CONDITION};
use crate::resources::{self, Names};
use children::{apply_object, get_or_create};

/// How often a healthy FeedCluster is looked at again without any change.
const RESYNC: Duration = Duration::from_secs(300);
/// How soon to look again while something is rolling out.
const PROGRESS_POLL: Duration = Duration::from_secs(10);
/// First retry after an error; doubles per consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest wait between retries after errors.
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Brings one FeedCluster's objects to what its spec asks, then writes its
/// status.
pub async fn reconcile(fc: Arc<FeedCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    if pause::is_paused(&fc) {
        let result = paused::hold(&fc, &ctx).await;
        if result.is_ok() {
            ctx.metrics.reconciles.with_label_values(&["paused"]).inc();
        }
        return result;
    }
    let result = apply(&fc, &ctx).await;
    ctx.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => {
            ctx.metrics.reconciles.with_label_values(&["ok"]).inc();
            ctx.failures.lock().expect("not poisoned").remove(&key(&fc));
        }
        // Reported where it was found.
        Err(Error::InvalidSpec(_)) => {}
        Err(e) => report_failure(&fc, &ctx, e).await,
    }
    result
}

/// Tells the FeedCluster's owner that reconciling failed: a Warning Event and
/// the Degraded condition (best effort: the API server may be what failed).
async fn report_failure(fc: &FeedCluster, ctx: &Context, error: &Error) {
    let why = &error.to_string();
    let reason = match error {
        Error::CredentialLost(_) => "CredentialLost",
        _ => "ReconcileFailed",
    };
    publish(ctx, fc, EventType::Warning, reason, why).await;
    let mut conditions: Vec<Condition> = fc
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != "Degraded")
        .collect();
    let previous = fc.status.clone().unwrap_or_default();
    conditions.push(condition(&previous, "Degraded", true, reason, why));
    let status = json!({ "conditions": conditions });
    if let Err(e) = patch_status(ctx, fc, &status).await {
        warn!(error = %e, "recording the failure in status failed");
    }
}

/// Retries with exponential backoff per FeedCluster, so a broken one neither
/// spins nor waits forever.
pub fn error_policy(fc: Arc<FeedCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconciles.with_label_values(&["error"]).inc();
    ctx.metrics.errors.with_label_values(&[error.label()]).inc();
    let mut failures = ctx.failures.lock().expect("not poisoned");
    let n = failures.entry(key(&fc)).or_insert(0);
    *n = n.saturating_add(1);
    let delay = BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(16)))
        .min(BACKOFF_MAX);
    warn!(feedcluster = %key(&fc), error = %error, retry_in_s = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

async fn apply(fc: &FeedCluster, ctx: &Context) -> Result<Action, Error> {
    let ns = fc.namespace().unwrap_or_else(|| "default".into());
    let names = Names::of(fc);
    let previous = fc.status.clone().unwrap_or_default();
    if let Err(why) = fc.spec.policy().validate() {
        publish(ctx, fc, EventType::Warning, "InvalidSpec", &why).await;
        let status = json!({
            "observedGeneration": fc.metadata.generation,
            "conditions": [
                condition(&previous, "Ready", false, "InvalidSpec", &why),
                condition(&previous, "Degraded", true, "InvalidSpec", &why),
                condition(&previous, PAUSED_CONDITION, false, ACTIVE_REASON, ACTIVE_MESSAGE),
            ],
        });
        patch_status(ctx, fc, &status).await?;
        return Err(Error::InvalidSpec(why));
    }
    let image = fc
        .spec
        .image
        .clone()
        .unwrap_or_else(|| ctx.default_image.clone());
    let client = ctx.client.clone();

    if fc.spec.auth.jwt_secret_name.is_none() {
        let secret = jwt_secret(fc, &names);
        get_or_create(Api::<Secret>::namespaced(client.clone(), &ns), secret).await?;
    }
    // NetworkPolicies before the pods they fence in, so no datastore ever
    // runs open; switched off, the ones made earlier go.
    if fc.spec.network_policies {
        for policy in resources::network_policies(fc, &ctx.operator_namespace) {
            apply_object(&client, &ns, policy).await?;
        }
    } else {
        children::remove_network_policies(fc, &client, &ns).await?;
    }
    match resources::postgres_statefulset(fc) {
        Some(set) => {
            children::ensure_postgres_secret(fc, &client, &ns, || random_hex(16)).await?;
            apply_object(&client, &ns, resources::postgres_service(fc)).await?;
            apply_object(&client, &ns, set).await?;
        }
        None => {
            children::remove_managed_datastore(fc, &client, &ns, &names.postgres(), true).await?
        }
    }
    match resources::redis_statefulset(fc) {
        Some(set) => {
            apply_object(&client, &ns, resources::redis_service(fc)).await?;
            apply_object(&client, &ns, set).await?;
        }
        None => children::remove_managed_datastore(fc, &client, &ns, &names.redis(), false).await?,
    }
    apply_object(&client, &ns, resources::config_map(fc)).await?;

    // Migrations run once per image, before the API and the workers roll
    // out on it. The Job is created, never re-applied (its template is
    // immutable); its success is remembered in status, so a Job cleaned up
    // after a day is not run again.
    let previous = fc.status.clone().unwrap_or_default();
    let mut migration_failed = None;
    let migrated = previous.migrated_image.as_deref() == Some(image.as_str()) || {
        let jobs = Api::<Job>::namespaced(client.clone(), &ns);
        let job = get_or_create(jobs, resources::migration_job(fc, &image)).await?;
        let status = job.status.unwrap_or_default();
        if let Some(failed) = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Failed" && c.status == "True")
        {
            migration_failed = Some(
                failed
                    .message
                    .clone()
                    .unwrap_or_else(|| "the migration Job failed".into()),
            );
        }
        status.succeeded.unwrap_or(0) > 0
    };
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    let (api, workers) = if migrated {
        let api = apply_object(&client, &ns, resources::api_deployment(fc, &image)).await?;
        children::hand_replicas_to_autoscaler(fc, &deployments, &names).await?;
        let workers = apply_object(&client, &ns, resources::worker_deployment(fc, &image)).await?;
        (Some(api), Some(workers))
    } else {
        (
            deployments.get_opt(&names.api()).await?,
            deployments.get_opt(&names.workers()).await?,
        )
    };
    apply_object(&client, &ns, resources::api_service(fc)).await?;
    apply_object(&client, &ns, resources::api_pdb(fc)).await?;
    apply_object(&client, &ns, resources::worker_pdb(fc)).await?;

    let api = replicas(api.as_ref());
    let workers = replicas(workers.as_ref());
    let ready = migrated && api.ready >= 1 && (workers.desired == 0 || workers.ready >= 1);
    let progressing = !migrated || api.ready < api.desired || workers.ready < workers.desired;
    let (reason, message) = if let Some(why) = &migration_failed {
        (
            "MigrationFailed",
            format!("Job {} failed: {why}", names.migration(&image)),
        )
    } else if !migrated {
        (
            "Migrating",
            format!(
                "waiting for Job {} to apply the schema",
                names.migration(&image)
            ),
        )
    } else if progressing {
        (
            "RollingOut",
            format!("API {}, workers {}", api.summary, workers.summary),
        )
    } else {
        (
            "Available",
            format!("API {}, workers {}", api.summary, workers.summary),
        )
    };
    let degraded = migration_failed.is_some();
    let conditions = vec![
        condition(&previous, "Ready", ready, reason, &message),
        condition(
            &previous,
            "Progressing",
            progressing && !degraded,
            reason,
            &message,
        ),
        if degraded {
            condition(&previous, "Degraded", true, reason, &message)
        } else {
            condition(&previous, "Degraded", false, "AsExpected", "no errors")
        },
        condition(
            &previous,
            PAUSED_CONDITION,
            false,
            ACTIVE_REASON,
            ACTIVE_MESSAGE,
        ),
    ];
    // Only the reconciler's own status fields: the backlog and the last
    // scale decision belong to the autoscaler.
    let status = json!({
        "observedGeneration": fc.metadata.generation,
        "conditions": conditions,
        "api": api,
        "workers": workers,
        "migratedImage": if migrated { Some(image.as_str()) } else { previous.migrated_image.as_deref() },
    });
    let became_ready = ready && !is_true(&previous, "Ready");
    let resumed = is_true(&previous, PAUSED_CONDITION);
    patch_status(ctx, fc, &status).await?;
    if resumed {
        publish(ctx, fc, EventType::Normal, "Resumed", ACTIVE_MESSAGE).await;
    }
    if became_ready {
        publish(ctx, fc, EventType::Normal, "Ready", &message).await;
    }
    info!(feedcluster = %key(fc), ready, migrated, "reconciled");
    Ok(Action::requeue(if progressing {
        PROGRESS_POLL
    } else {
        RESYNC
    }))
}

fn jwt_secret(fc: &FeedCluster, names: &Names) -> Secret {
    Secret {
        metadata: ObjectMeta {
            ..resources::metadata(fc, names.jwt(), "auth")
        },
        type_: Some("Opaque".into()),
        string_data: Some([("jwt-secret".to_owned(), random_hex(32))].into()),
        ..Secret::default()
    }
}

/// `bytes` random bytes as hex.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn replicas(deployment: Option<&Deployment>) -> ReplicaStatus {
    let desired = deployment
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(0);
    let ready = deployment
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    ReplicaStatus {
        desired,
        ready,
        summary: format!("{ready}/{desired}"),
    }
}

/// A condition; its transition time moves only when its status changes, so
/// an unchanged FeedCluster gets an unchanged status.
fn condition(
    previous: &FeedClusterStatus,
    kind: &str,
    status: bool,
    reason: &str,
    message: &str,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_owned();
    let last_transition_time = previous
        .conditions
        .iter()
        .find(|c| c.type_ == kind && c.status == status)
        .map_or_else(
            || Time(k8s_openapi::jiff::Timestamp::now()),
            |c| c.last_transition_time.clone(),
        );
    Condition {
        type_: kind.to_owned(),
        status,
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time,
        observed_generation: None,
    }
}

fn is_true(status: &FeedClusterStatus, kind: &str) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == kind && c.status == "True")
}

/// The Kubernetes API of `K`: in `namespace`, or in every namespace.
pub fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The controller: watches FeedClusters (in `namespace`, or everywhere) and
/// everything they own, so a deleted or edited child is put back. A
/// FeedCluster is reconciled when its spec changes (its generation) or it is
/// paused or resumed ([`pause::generation_or_pause`]), not when its status
/// does: the reconciler's and the autoscaler's own status
/// writes do not set off another round. Its store of FeedClusters, status
/// included, is shared with the autoscaler, which never lists them itself.
pub fn controller(client: &Client, namespace: Option<&str>) -> Controller<FeedCluster> {
    let clusters: Api<FeedCluster> = scoped(client, namespace);
    let (store, writer) = reflector::store();
    let changes = watcher(clusters, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(pause::generation_or_pause, Default::default());
    let config = watcher::Config::default().labels("app.kubernetes.io/managed-by=fanout-operator");
    Controller::for_stream(changes, store)
        .owns(scoped::<Deployment>(client, namespace), config.clone())
        .owns(scoped::<StatefulSet>(client, namespace), config.clone())
        .owns(scoped::<Service>(client, namespace), config.clone())
        .owns(scoped::<ConfigMap>(client, namespace), config.clone())
        .owns(scoped::<Job>(client, namespace), config.clone())
        .owns(
            scoped::<PodDisruptionBudget>(client, namespace),
            config.clone(),
        )
        .owns(scoped::<NetworkPolicy>(client, namespace), config)
}

/// Runs `controller` until `shutdown` resolves.
pub async fn run(
    controller: Controller<FeedCluster>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "controller stream error");
            }
        })
        .await;
}

mod children;
mod paused;
#[cfg(test)]
mod tests;
