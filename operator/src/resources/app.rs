//! The API, the workers, their configuration and the migration Job.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{Value, json};

use super::{
    API_PORT, NONROOT_UID, Names, Reach, WORKER_PORT, fnv1a, labels, meta_json, metadata,
    restricted_container, restricted_pod, selector, typed,
};
use crate::crd::{DatastoreSpec, FeedCluster, ServiceType};

/// Settings shared by the API and the workers (secrets excluded).
pub fn config_map(fc: &FeedCluster) -> ConfigMap {
    let names = Names::of(fc);
    let feed = &fc.spec.feed;
    typed(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta_json(metadata(fc, names.config(), "config")),
        "data": {
            "FANOUT_FEED_MAX_LEN": feed.max_length.to_string(),
            "FANOUT_CELEBRITY_THRESHOLD": feed.celebrity_threshold.to_string(),
            "FANOUT_LOG_FORMAT": "json",
            "FANOUT_HTTP_ADDR": format!("0.0.0.0:{API_PORT}"),
            "FANOUT_WORKER_HTTP_ADDR": format!("0.0.0.0:{WORKER_PORT}"),
        }
    }))
}

/// Where a datastore's URL comes from: a Secret key (external, or the
/// managed PostgreSQL's generated Secret) or a fixed in-cluster address.
fn url_source(
    store: &DatastoreSpec,
    managed_secret: Option<(String, &str)>,
    managed_value: Option<String>,
) -> Value {
    match (&store.external, managed_secret, managed_value) {
        (Some(ext), _, _) => json!({"secretKeyRef": {"name": ext.secret_name, "key": ext.key}}),
        (None, Some((name, key)), _) => json!({"secretKeyRef": {"name": name, "key": key}}),
        (None, None, Some(value)) => json!(value),
        (None, None, None) => json!(""),
    }
}

/// The environment every Fanout container gets.
fn env(fc: &FeedCluster) -> Vec<Value> {
    let names = Names::of(fc);
    let jwt = fc
        .spec
        .auth
        .jwt_secret_name
        .clone()
        .unwrap_or_else(|| names.jwt());
    let db = url_source(&fc.spec.postgres, Some((names.postgres(), "url")), None);
    let redis = url_source(
        &fc.spec.redis,
        None,
        Some(names.redis_url(Reach::Namespace)),
    );
    let var = |name: &str, source: Value| match source {
        Value::String(value) => json!({"name": name, "value": value}),
        from => json!({"name": name, "valueFrom": from}),
    };
    let mut env = vec![
        var("FANOUT_DATABASE_URL", db),
        var("FANOUT_REDIS_URL", redis),
        var(
            "FANOUT_JWT_SECRET",
            json!({"secretKeyRef": {"name": jwt, "key": "jwt-secret"}}),
        ),
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
    ];
    if let Some(feeds) = &fc.spec.feed_redis {
        env.push(var(
            "FANOUT_FEED_REDIS_URL",
            json!({"secretKeyRef": {"name": feeds.secret_name, "key": feeds.key}}),
        ));
    }
    env
}

fn resources(requested: Option<&k8s_openapi::api::core::v1::ResourceRequirements>) -> Value {
    match requested {
        Some(r) => serde_json::to_value(r).expect("resources serialize"),
        // Enough for the measured footprint (well under 64 MiB), capped so a
        // leak cannot take the node.
        None => {
            json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}})
        }
    }
}

/// A pod template running one Fanout binary.
fn pod_template(
    fc: &FeedCluster,
    component: &str,
    command: &[&str],
    port: i32,
    image: &str,
) -> Value {
    let config_hash = format!(
        "{:016x}",
        fnv1a(&serde_json::to_vec(&config_map(fc).data).unwrap_or_default())
    );
    let requested = match component {
        "api" => fc.spec.api.resources.as_ref(),
        _ => fc.spec.workers.resources.as_ref(),
    };
    let probe =
        |path: &str| json!({"httpGet": {"path": path, "port": "http"}, "periodSeconds": 10});
    json!({
        "metadata": {
            "labels": labels(fc, component),
            // A configuration change rolls the pods.
            "annotations": {"fanout.dev/config-hash": config_hash}
        },
        "spec": {
            "securityContext": restricted_pod(NONROOT_UID),
            "terminationGracePeriodSeconds": 30,
            "containers": [{
                "name": component,
                "image": image,
                "command": command,
                "ports": [{"name": "http", "containerPort": port}],
                "env": env(fc),
                "envFrom": [{"configMapRef": {"name": Names::of(fc).config()}}],
                "resources": resources(requested),
                "securityContext": restricted_container(),
                "livenessProbe": probe("/healthz"),
                "readinessProbe": probe("/readyz"),
            }]
        }
    })
}

/// The API Deployment.
pub fn api_deployment(fc: &FeedCluster, image: &str) -> Deployment {
    let names = Names::of(fc);
    typed(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta_json(metadata(fc, names.api(), "api")),
        "spec": {
            "replicas": fc.spec.api.replicas,
            "selector": {"matchLabels": selector(fc, "api")},
            "template": pod_template(fc, "api", &["/usr/local/bin/feed-api"], API_PORT, image),
        }
    }))
}

/// The Service in front of the API.
pub fn api_service(fc: &FeedCluster) -> Service {
    let names = Names::of(fc);
    let svc = &fc.spec.api.service;
    let kind = match svc.type_ {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    let mut port = json!({"name": "http", "port": svc.port, "targetPort": "http"});
    if let Some(node_port) = svc.node_port {
        port["nodePort"] = json!(node_port);
    }
    typed(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta_json(metadata(fc, names.api(), "api")),
        "spec": {"type": kind, "selector": selector(fc, "api"), "ports": [port]}
    }))
}

/// The worker Deployment. With autoscaling on the replica count is left
/// out: the autoscaler owns it (and in `RecommendOnly` mode leaves it as it
/// is), so re-applying this object never resets it.
pub fn worker_deployment(fc: &FeedCluster, image: &str) -> Deployment {
    let names = Names::of(fc);
    let autoscaled = fc.spec.autoscaling.enabled;
    let mut spec = json!({
        "selector": {"matchLabels": selector(fc, "worker")},
        "template": pod_template(fc, "worker", &["/usr/local/bin/feed-worker"], WORKER_PORT, image),
    });
    if !autoscaled {
        spec["replicas"] = json!(fc.spec.workers.min_replicas.max(1));
    }
    typed(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta_json(metadata(fc, names.workers(), "worker")),
        "spec": spec,
    }))
}

fn pdb(fc: &FeedCluster, name: String, component: &str) -> PodDisruptionBudget {
    typed(json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta_json(metadata(fc, name, component)),
        // Voluntary evictions take one pod at a time: a drained worker's
        // entries are claimed by the others.
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(fc, component)}}
    }))
}

/// Keeps node drains from taking the API down.
pub fn api_pdb(fc: &FeedCluster) -> PodDisruptionBudget {
    pdb(fc, Names::of(fc).api(), "api")
}

/// Keeps node drains to one worker at a time.
pub fn worker_pdb(fc: &FeedCluster) -> PodDisruptionBudget {
    pdb(fc, Names::of(fc).workers(), "worker")
}

/// Applies the schema migrations for an image; the API rolls out after it
/// succeeds.
pub fn migration_job(fc: &FeedCluster, image: &str) -> Job {
    let names = Names::of(fc);
    let mut template = pod_template(
        fc,
        "migrate",
        &["/usr/local/bin/feed-api", "--migrate-only"],
        API_PORT,
        image,
    );
    let container = &mut template["spec"]["containers"][0];
    if let Some(c) = container.as_object_mut() {
        c.remove("livenessProbe");
        c.remove("readinessProbe");
        c.remove("ports");
    }
    template["spec"]["restartPolicy"] = json!("OnFailure");
    typed(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta_json(metadata(fc, names.migration(image), "migrate")),
        "spec": {
            "backoffLimit": 10,
            // Finished Jobs go away after a day; the name is per image, so a
            // re-created Job for the same image is harmless (migrations are
            // idempotent).
            "ttlSecondsAfterFinished": 86400,
            "template": template,
        }
    }))
}
