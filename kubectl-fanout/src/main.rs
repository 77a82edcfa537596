//! `kubectl-fanout`: parse, run, and say what went wrong in one line (with
//! its causes), as kubectl does, instead of a debug dump.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use kubectl_fanout::cli::Cli;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let result: anyhow::Result<()> = kubectl_fanout::run(Cli::parse()).await.map_err(Into::into);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
