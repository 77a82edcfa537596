//! `fanout-drills`: the real `feed-api` and `feed-worker` binaries, real
//! PostgreSQL and Redis processes, a writer posting and a reader reading,
//! and one fault after another. For each fault it reports how many posts
//! were acknowledged (201), how many of them are missing from followers'
//! home feeds or shown twice once the fault has healed, and how long the
//! feeds took to hold them all. `make drills` (and CI) runs it; it exits
//! non-zero if anything was lost or duplicated.
//!
//! # Layout
//!
//! - [`system`]: the processes, and how each is killed and brought back;
//! - [`workload`]: the users, the load and the check of their feeds;
//! - [`faults`]: the drills themselves.
#![forbid(unsafe_code)]

mod faults;
mod system;
mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::faults::Fault;
use crate::system::{Setup, System};
use crate::workload::{Expectation, Load, People};

/// Runs every fault drill against the real binaries, loopback only.
#[derive(Debug, Parser)]
#[command(name = "fanout-drills")]
struct Args {
    /// Where feed-api and feed-worker are.
    #[arg(long, default_value = "target/debug")]
    bin_dir: PathBuf,
    /// The drills' data folder, where scripts/services.sh keeps PostgreSQL.
    #[arg(long, default_value = ".data/drills")]
    data: PathBuf,
    /// The PostgreSQL that `scripts/services.sh up DATA PORT` started.
    #[arg(long, default_value_t = 25436)]
    pg_port: u16,
    #[arg(long, default_value_t = 26383)]
    redis_port: u16,
    #[arg(long, default_value_t = 26384)]
    feed_redis_port: u16,
    #[arg(long, default_value_t = 28280)]
    api_port: u16,
    #[arg(long, default_value_t = 28290)]
    worker_port: u16,
    /// Where the table goes (Markdown), besides standard output.
    #[arg(long, default_value = ".data/drills/report.md")]
    report: PathBuf,
}

/// Steady load before a fault, so it strikes mid-stream.
const BEFORE_FAULT: Duration = Duration::from_millis(1500);
/// Load after the fault healed, so writes resume through it.
const AFTER_HEAL: Duration = Duration::from_secs(1);
/// Longest wait for the feeds to converge after a fault healed.
const CONVERGE_WITHIN: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let setup = Setup {
        bin_dir: args.bin_dir,
        data: std::fs::canonicalize(&args.data)?,
        pg_port: args.pg_port,
        redis_port: args.redis_port,
        feed_redis_port: args.feed_redis_port,
        api_port: args.api_port,
        worker_port: args.worker_port,
    };
    let api = setup.api_url();
    let mut system = System::start(setup, &uuid::Uuid::new_v4().to_string().repeat(2)).await?;
    let result = drill_all(&mut system, &api).await;
    system.stop().await;
    let rows = result?;

    let mut table = String::from(
        "| fault | posts acknowledged (deleted) | missing (reader, post) | duplicated | removed still kept | converged after |\n|---|---|---|---|---|---|\n",
    );
    let mut failed = false;
    for (fault, written, outcome) in &rows {
        failed |= outcome.lost > 0 || outcome.duplicated > 0 || outcome.undeleted > 0;
        table.push_str(&row(&fault.to_string(), written, outcome));
    }
    println!("{table}");
    std::fs::write(&args.report, &table)?;
    if failed {
        anyhow::bail!(
            "a drill lost or duplicated acknowledged posts, or kept deleted or unfollowed ones"
        );
    }
    Ok(())
}

/// A line of the table.
fn row(fault: &str, written: &workload::Written, outcome: &workload::Outcome) -> String {
    let converged = outcome
        .converged_after
        .map_or("never (60 s)".to_owned(), |d| {
            format!("{:.1} s", d.as_secs_f64())
        });
    format!(
        "| {fault} | {} ({}) | {} | {} | {} | {converged} |\n",
        written.posts.len(),
        written.deleted.len(),
        outcome.lost,
        outcome.duplicated,
        outcome.undeleted
    )
}

async fn drill_all(
    system: &mut System,
    api: &str,
) -> anyhow::Result<Vec<(Fault, workload::Written, workload::Outcome)>> {
    let people = People::sign_up(api, 3, 12, Fault::ALL.len()).await?;
    let feed_redis = system.setup.feed_redis_url();
    let first = &people.authors[0];
    // Every post the first author wrote, over all drills.
    let mut by_first: Vec<uuid::Uuid> = Vec::new();
    let mut rows = Vec::new();
    for (n, fault) in Fault::ALL.into_iter().enumerate() {
        println!("drill: {fault}");
        let load = Load::start(api, &people);
        tokio::time::sleep(BEFORE_FAULT).await;
        // Just before the fault, a late follower follows the first author
        // (its backfill is in flight as the fault strikes), and the previous
        // drill's unfollows (the removal of that author's posts likewise).
        let late = &people.late[n];
        let followed = workload::follow(api, late, first, true).await;
        let unfollowed = match n.checked_sub(1).map(|m| &people.late[m]) {
            Some(previous) => workload::follow(api, previous, first, false)
                .await
                .then_some(previous),
            None => None,
        };
        fault.inject(system).await?;
        fault.heal(system).await?;
        let healed = Instant::now();
        tokio::time::sleep(AFTER_HEAL).await;
        let written = load.stop().await;
        by_first.extend(written.by(0));
        let mut expectations: Vec<Expectation> = people
            .followers
            .iter()
            .map(|f| Expectation {
                reader: f.clone(),
                present: written.standing(),
                absent: written.deleted.clone(),
            })
            .collect();
        if followed {
            // The first author's posts, written before the follow (by
            // backfill) and after it (by fan-out).
            expectations.push(Expectation {
                reader: late.clone(),
                present: written.standing_by(Some(0)),
                absent: written.deleted.clone(),
            });
        }
        if let Some(previous) = unfollowed {
            expectations.push(Expectation {
                reader: previous.clone(),
                present: Vec::new(),
                absent: by_first.clone(),
            });
        }
        let outcome =
            workload::check(api, &feed_redis, &expectations, healed, CONVERGE_WITHIN).await;
        print!("{}", row("  done", &written, &outcome));
        rows.push((fault, written, outcome));
    }
    Ok(rows)
}
