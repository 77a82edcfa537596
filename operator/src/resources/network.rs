//! NetworkPolicies that fence in the pods a FeedCluster runs: its managed
//! PostgreSQL and Redis admit only the pods that use them, on their port;
//! the API, the public service, admits anyone on its port; the workers admit
//! anyone on their probe and metrics port, and nothing else.
//!
//! Only ingress is restricted; egress is left open. Restricting it would
//! take rules for DNS, whose servers and ports differ between clusters, and
//! for an external PostgreSQL or Redis, known only by the host in a user's
//! Secret, not by the addresses a policy needs (which may change under it).
//! The Kubernetes API needs no rule either way: these pods do not use it.
//! Peers are matched by the labels the builders put on every pod, including
//! `app.kubernetes.io/instance`, so another FeedCluster's pods in the same
//! namespace are not admitted.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};

use super::{
    API_PORT, Names, POSTGRES_PORT, REDIS_PORT, WORKER_PORT, meta_json, metadata, selector, typed,
};
use crate::crd::FeedCluster;

/// The label the Helm chart gives the operator's pods (`fanout.selector` in
/// charts/fanout/templates/_helpers.tpl): the managed Redis admits them,
/// because the autoscaler reads the stream backlog from it.
pub const OPERATOR_POD_LABEL: (&str, &str) = ("app.kubernetes.io/name", "fanout-operator");

/// The label every namespace carries with its own name (set by the API
/// server since Kubernetes 1.22), to pick the operator's namespace.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The FeedCluster's NetworkPolicies: none with `networkPolicies: false`;
/// otherwise the API's, the workers', and one per managed datastore (an
/// external one is not the operator's to fence). `operator_namespace` is
/// where the operator's own pods run.
pub fn network_policies(fc: &FeedCluster, operator_namespace: &str) -> Vec<NetworkPolicy> {
    if !fc.spec.network_policies {
        return Vec::new();
    }
    let names = Names::of(fc);
    let mut policies = vec![
        policy(fc, names.api(), "api", json!([{"ports": [tcp(API_PORT)]}])),
        policy(
            fc,
            names.workers(),
            "worker",
            json!([{"ports": [tcp(WORKER_PORT)]}]),
        ),
    ];
    if fc.spec.postgres.managed.is_some() {
        // The migration Job applies the schema; the API and the workers read
        // and write.
        let from = json!([pods(fc, "api"), pods(fc, "worker"), pods(fc, "migrate")]);
        policies.push(policy(
            fc,
            names.postgres(),
            "postgres",
            json!([{"from": from, "ports": [tcp(POSTGRES_PORT)]}]),
        ));
    }
    if fc.spec.redis.managed.is_some() {
        // Not the migration Job: `--migrate-only` never connects to Redis.
        let operator = json!({
            "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: operator_namespace}},
            "podSelector": {"matchLabels": {OPERATOR_POD_LABEL.0: OPERATOR_POD_LABEL.1}},
        });
        let from = json!([pods(fc, "api"), pods(fc, "worker"), operator]);
        policies.push(policy(
            fc,
            names.redis(),
            "redis",
            json!([{"from": from, "ports": [tcp(REDIS_PORT)]}]),
        ));
    }
    policies
}

/// The labels of one component's pods of this FeedCluster: its selector plus
/// `app.kubernetes.io/name`, so that another application's pods that happen
/// to share the common instance and component labels are not matched.
fn pod_labels(fc: &FeedCluster, component: &str) -> BTreeMap<String, String> {
    let mut labels = selector(fc, component);
    labels.insert("app.kubernetes.io/name".into(), "fanout".into());
    labels
}

/// A peer: one component's pods of this FeedCluster, in its namespace.
fn pods(fc: &FeedCluster, component: &str) -> Value {
    json!({"podSelector": {"matchLabels": pod_labels(fc, component)}})
}

fn tcp(port: i32) -> Value {
    json!({"protocol": "TCP", "port": port})
}

/// An ingress-only policy over one component's pods.
fn policy(fc: &FeedCluster, name: String, component: &str, ingress: Value) -> NetworkPolicy {
    typed(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta_json(metadata(fc, name, component)),
        "spec": {
            "podSelector": {"matchLabels": pod_labels(fc, component)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        }
    }))
}
