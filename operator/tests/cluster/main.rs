//! The operator on a real Kubernetes control plane: kube-apiserver, etcd,
//! kube-controller-manager, kube-scheduler and kwok's fake Node, built from
//! the pinned Go module in `controlplane/` and started on loopback by
//! `scripts/control-plane.sh` (`make test` does both). Pods do not run
//! (there is no kubelet; kwok marks them Running and Ready, and Job pods
//! Succeeded), so the data plane is the test's own Redis and PostgreSQL,
//! reached through external Secrets. The operator runs as a local process
//! with a token of the Helm chart's ServiceAccount: any request the chart's
//! RBAC refuses fails the test.
//!
//! Each test has a namespace and an operator of its own (watching only that
//! namespace, leading on a Lease of its own), so they run side by side.

mod admission;
mod autoscaling;
mod datastores;
mod harness;
mod kubectl_fanout;
mod leadership;
mod lifecycle;
mod pause;
mod process;
