//! The single-instance PostgreSQL and Redis the operator runs for
//! development (`managed: {}`).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Secret, Service};
use serde_json::{Value, json};

use super::{
    Names, POSTGRES_PORT, REDIS_PORT, meta_json, metadata, restricted_container, restricted_pod,
    selector, typed,
};
use crate::crd::{FeedCluster, ManagedDatastore};

/// UID of the `postgres` user in the official Alpine image.
const POSTGRES_UID: i64 = 70;
/// UID of the `redis` user in the official Alpine image.
const REDIS_UID: i64 = 999;

/// The managed PostgreSQL's credentials and URL. The password is generated
/// by the reconciler once (this Secret is created, never overwritten).
pub fn postgres_secret(fc: &FeedCluster, password: &str) -> Secret {
    let names = Names::of(fc);
    let url = format!(
        "postgres://fanout:{password}@{}:{POSTGRES_PORT}/fanout",
        names.postgres()
    );
    typed(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta_json(metadata(fc, names.postgres(), "postgres")),
        "type": "Opaque",
        "stringData": {"password": password, "url": url}
    }))
}

fn service(fc: &FeedCluster, name: String, component: &str, port: i32) -> Service {
    typed(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta_json(metadata(fc, name, component)),
        "spec": {
            "selector": selector(fc, component),
            "ports": [{"name": component, "port": port, "targetPort": port}]
        }
    }))
}

pub fn postgres_service(fc: &FeedCluster) -> Service {
    service(fc, Names::of(fc).postgres(), "postgres", POSTGRES_PORT)
}

pub fn redis_service(fc: &FeedCluster) -> Service {
    service(fc, Names::of(fc).redis(), "redis", REDIS_PORT)
}

#[allow(clippy::too_many_arguments)]
fn statefulset(
    fc: &FeedCluster,
    name: String,
    component: &str,
    managed: &ManagedDatastore,
    image: &str,
    uid: i64,
    env: Value,
    args: Value,
    port: i32,
    data_path: &str,
    probe: Value,
) -> StatefulSet {
    let mut container = json!({
        "name": component,
        "image": managed.image.as_deref().unwrap_or(image),
        "env": env,
        "ports": [{"name": component, "containerPort": port}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": restricted_container(),
        "volumeMounts": [
            {"name": "data", "mountPath": data_path},
            // Writable scratch space under the read-only root filesystem.
            {"name": "run", "mountPath": "/var/run/postgresql"},
            {"name": "tmp", "mountPath": "/tmp"}
        ],
        "readinessProbe": probe.clone(),
        "livenessProbe": probe.clone(),
        // A first start (initdb) may take a while on a slow disk.
        "startupProbe": {
            "exec": probe["exec"].clone(),
            "periodSeconds": 5,
            "failureThreshold": 60
        },
    });
    if !args.is_null() {
        container["args"] = args;
    }
    typed(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta_json(metadata(fc, name.clone(), component)),
        "spec": {
            "serviceName": name,
            "replicas": 1,
            // Deleting the FeedCluster deletes the data too: a managed
            // datastore is for trials, and a re-created FeedCluster must not
            // meet old data under a new password.
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
            "selector": {"matchLabels": selector(fc, component)},
            "template": {
                "metadata": {"labels": super::labels(fc, component)},
                "spec": {
                    "securityContext": restricted_pod(uid),
                    "containers": [container],
                    "volumes": [{"name": "run", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
                }
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data", "labels": super::labels(fc, component)},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": managed.storage}}
                }
            }]
        }
    }))
}

/// The managed PostgreSQL, if the spec asks for one.
pub fn postgres_statefulset(fc: &FeedCluster) -> Option<StatefulSet> {
    let managed = fc.spec.postgres.managed.as_ref()?;
    let names = Names::of(fc);
    let env = json!([
        {"name": "POSTGRES_USER", "value": "fanout"},
        {"name": "POSTGRES_DB", "value": "fanout"},
        {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": names.postgres(), "key": "password"}}},
        {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}
    ]);
    let probe = json!({"exec": {"command": ["pg_isready", "-U", "fanout", "-d", "fanout"]}, "periodSeconds": 10});
    Some(statefulset(
        fc,
        names.postgres(),
        "postgres",
        managed,
        "postgres:15-alpine",
        POSTGRES_UID,
        env,
        Value::Null,
        POSTGRES_PORT,
        "/var/lib/postgresql/data",
        probe,
    ))
}

/// The managed Redis, if the spec asks for one.
pub fn redis_statefulset(fc: &FeedCluster) -> Option<StatefulSet> {
    let managed = fc.spec.redis.managed.as_ref()?;
    let args = json!(["--appendonly", "yes", "--dir", "/data", "--save", ""]);
    let probe = json!({"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 10});
    Some(statefulset(
        fc,
        Names::of(fc).redis(),
        "redis",
        managed,
        "redis:7-alpine",
        REDIS_UID,
        json!([]),
        args,
        REDIS_PORT,
        "/data",
        probe,
    ))
}
