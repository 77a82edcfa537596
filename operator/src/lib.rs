//! The Fanout operator: deploys Fanout from `FeedCluster` resources and
//! scales its workers by the backlog of the Redis Streams they consume.
//!
//! # Layout
//!
//! - [`crd`]: the `FeedCluster` resource, its spec and status.
//! - [`resources`]: the objects a FeedCluster becomes, as pure functions.
//!
//! The autoscaling policy itself is plain Rust in `feed_core::autoscale`, so
//! the simulator and the operator run the same code.
#![forbid(unsafe_code)]

pub mod crd;
pub mod resources;
