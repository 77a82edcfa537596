//! The Kubernetes objects a FeedCluster becomes, as pure functions of the
//! FeedCluster (and the operator's own image): the reconciler applies them,
//! tests inspect them, nothing here talks to a cluster.
//!
//! Every object carries the FeedCluster as its controller owner, so deleting
//! the FeedCluster garbage-collects them, and the standard
//! `app.kubernetes.io/*` labels. Every pod meets the `restricted` Pod
//! Security Standard, and, unless `networkPolicies` is off, NetworkPolicies
//! limit who reaches it.

mod app;
mod datastores;
mod network;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

pub use app::{
    api_deployment, api_pdb, api_service, config_map, migration_job, worker_deployment, worker_pdb,
};
pub use datastores::{
    postgres_secret, postgres_service, postgres_statefulset, redis_service, redis_statefulset,
};
pub use network::{OPERATOR_POD_LABEL, network_policies};

use crate::crd::FeedCluster;

/// Port the API listens on inside its pod.
pub const API_PORT: i32 = 8080;
/// Port of a worker's probes and metrics.
pub const WORKER_PORT: i32 = 9091;
/// Port of the managed PostgreSQL (the image's standard one).
pub const POSTGRES_PORT: i32 = 5432;
/// Port of the managed Redis (the image's standard one).
pub const REDIS_PORT: i32 = 6379;
/// UID the Fanout image runs as (distroless `nonroot`).
const NONROOT_UID: i64 = 65532;

/// Names of the objects a FeedCluster owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub cluster: String,
    pub namespace: String,
}

impl Names {
    pub fn of(fc: &FeedCluster) -> Names {
        Names {
            cluster: fc.name_any(),
            namespace: fc.namespace().unwrap_or_else(|| "default".into()),
        }
    }
    pub fn config(&self) -> String {
        format!("{}-config", self.cluster)
    }
    pub fn api(&self) -> String {
        format!("{}-api", self.cluster)
    }
    pub fn workers(&self) -> String {
        format!("{}-workers", self.cluster)
    }
    pub fn postgres(&self) -> String {
        format!("{}-postgres", self.cluster)
    }
    pub fn redis(&self) -> String {
        format!("{}-redis", self.cluster)
    }
    /// The managed PostgreSQL's volume claim (the StatefulSet's claim
    /// template `data`, pod 0).
    pub fn postgres_volume(&self) -> String {
        format!("data-{}-0", self.postgres())
    }
    /// The generated JWT Secret (when the spec names none).
    pub fn jwt(&self) -> String {
        format!("{}-jwt", self.cluster)
    }
    pub fn migration(&self, image: &str) -> String {
        // One Job per image: a new version migrates again, a re-apply does not.
        format!(
            "{}-migrate-{:08x}",
            self.cluster,
            fnv1a(image.as_bytes()) as u32
        )
    }
}

/// Where a managed datastore is reached from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// A pod in the FeedCluster's namespace (the API and the workers): the
    /// Service's short name.
    Namespace,
    /// Any namespace (the operator's own): the namespace-qualified name.
    Cluster,
}

impl Names {
    /// The managed Redis' URL, as a client at `reach` dials it.
    pub fn redis_url(&self, reach: Reach) -> String {
        let host = match reach {
            Reach::Namespace => self.redis(),
            Reach::Cluster => format!("{}.{}.svc", self.redis(), self.namespace),
        };
        format!("redis://{host}:{REDIS_PORT}")
    }
}

/// A stable hash for names and rollout annotations (not for security).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The label naming the FeedCluster an object belongs to.
const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// The labels of every object of a component: its [`selector`] and
/// [`managed`] labels, and the application's name.
pub fn labels(fc: &FeedCluster, component: &str) -> BTreeMap<String, String> {
    let mut labels = selector(fc, component);
    labels.extend(managed(fc));
    labels.insert("app.kubernetes.io/name".to_owned(), "fanout".to_owned());
    labels
}

/// The labels that select a component's pods (a subset that never changes).
pub fn selector(fc: &FeedCluster, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (INSTANCE_LABEL.to_owned(), fc.name_any()),
        (
            "app.kubernetes.io/component".to_owned(),
            component.to_owned(),
        ),
    ])
}

/// The labels every object this operator made for a FeedCluster carries,
/// whatever its component: to list them all.
pub fn managed(fc: &FeedCluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        (INSTANCE_LABEL.to_owned(), fc.name_any()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "fanout-operator".to_owned(),
        ),
    ])
}

/// Labels as a list call's label selector: `key=value`, comma-separated,
/// every one required.
pub fn label_selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Metadata of an owned object: name, namespace, labels, controller owner.
pub fn metadata(fc: &FeedCluster, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: fc.namespace(),
        labels: Some(labels(fc, component)),
        owner_references: fc.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The container security context of the `restricted` Pod Security Standard.
fn restricted_container() -> Value {
    json!({
        "runAsNonRoot": true,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}
    })
}

/// The pod security context of the `restricted` Pod Security Standard.
fn restricted_pod(uid: i64) -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"}
    })
}

/// Builds a typed object from JSON whose shape the tests pin down.
fn typed<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("resource builders produce well-formed objects")
}

/// Serializes metadata for embedding in a JSON builder.
fn meta_json(meta: ObjectMeta) -> Value {
    serde_json::to_value(meta).expect("metadata serializes")
}
