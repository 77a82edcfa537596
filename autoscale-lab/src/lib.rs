//! The autoscale lab: the worker autoscaler tried away from Kubernetes.
//! Offline, a trace of arrivals is replayed through the policy and a model
//! of the workers' queue (`autoscale-lab simulate`); on this machine, real
//! `feed-worker` processes are scaled by the same step the operator runs
//! (`feed_core::autoscale::step`). None of it ships in the operator.
//!
//! # Layout
//!
//! - [`simulate`]: the trace, the queue model, the run loop and its
//!   summary; its submodules hold the policies compared, the plots and the
//!   `simulate` command.
//! - [`generate`]: the trace set, drawn from a seed (`autoscale-lab
//!   traces`).
//! - [`local_workers`]: `feed-worker` processes as a scale target.
//!
//! The binary (`src/main.rs`) only parses the command line and calls
//! [`simulate::command::execute`] or [`generate::execute`].
#![forbid(unsafe_code)]

pub mod generate;
pub mod local_workers;
pub mod simulate;
