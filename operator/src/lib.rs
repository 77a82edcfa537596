//! The Fanout operator: deploys Fanout from `FeedCluster` resources and
//! scales its workers by the backlog of the Redis Streams they consume.
//!
//! # Layout
//!
//! - [`crd`]: the `FeedCluster` resource, its spec and status.
//! - [`resources`]: the objects a FeedCluster becomes, as pure functions.
//! - [`controller`]: the reconciler (server-side apply, status, events).
//! - [`metrics`]: the operator's Prometheus metrics.
//!
//! The autoscaling policy itself is plain Rust in `feed_core::autoscale`, so
//! the simulator and the operator run the same code.
#![forbid(unsafe_code)]

pub mod controller;
pub mod crd;
#[cfg(test)]
mod fixtures;
pub mod metrics;
pub mod resources;
