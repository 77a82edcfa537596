//! Fanout's shared library: the plain domain every binary agrees on, and the
//! adapters to PostgreSQL and Redis for the binaries that need them.
//!
//! # Layout
//!
//! - [`events`]: the event envelope and its versioned payloads (the schema
//!   registry is this code; `docs/events/*.schema.json` is generated from it).
//! - [`ids`]: time-ordered ids (UUIDv7) and the time they encode.
//! - [`keys`]: Redis key and stream names, so every process spells them alike.
//! - [`validate`]: rules for user input (handles, post content, page sizes).
//! - [`autoscale`]: the worker autoscaling policy, a pure function.
//! - [`cursor`]: opaque pagination cursors.
//! - `db` (feature `db`): the sqlx pool, migrations and repositories.
//! - `bus` (feature `redis`): publishing to and consuming from Redis Streams,
//!   and the stream statistics the autoscaler and `/debug` read.
//! - `feed_store` (feature `redis`): home feeds as capped sorted sets.
//! - `live` (feature `redis`): the Pub/Sub notes open feed streams hear.
//! - `removals` (feature `redis`): what deletes and unfollows leave behind
//!   so that fan-outs and rebuilds racing them do not undo them.
//! - `runtime` (feature `runtime`): settings shared by the binaries, logging
//!   and the shutdown signal.
//!
//! The operator links this crate without `db`, so it never pulls in sqlx.
#![forbid(unsafe_code)]

pub mod autoscale;
pub mod cursor;
pub mod events;
pub mod ids;
pub mod keys;
pub mod validate;

#[cfg(feature = "redis")]
pub mod bus;
#[cfg(feature = "db")]
pub mod db;
#[cfg(feature = "redis")]
pub mod delivery;
#[cfg(feature = "redis")]
pub mod feed_store;
#[cfg(feature = "redis")]
pub mod live;
#[cfg(feature = "redis")]
pub mod removals;
#[cfg(feature = "runtime")]
pub mod runtime;
