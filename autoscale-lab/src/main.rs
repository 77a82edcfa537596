#![forbid(unsafe_code)]

use autoscale_lab::generate::{self, TracesArgs};
use autoscale_lab::simulate::command::{SimulateArgs, execute};
use clap::{Parser, Subcommand};

/// The worker autoscaler tried away from Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "autoscale-lab", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay a trace of arrivals through the worker autoscaler, offline.
    Simulate(SimulateArgs),
    /// Write the trace set (steady, spiky, ramp, diurnal, sawtooth, flash
    /// crowd, trickle, long idle) from a seed.
    Traces(TracesArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Simulate(args) => execute(&args),
        Command::Traces(args) => Ok(generate::execute(&args)?),
    }
}
