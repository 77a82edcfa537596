//! The `simulate` subcommand: reads a trace and a FeedCluster's autoscaling
//! settings, runs the policy (and, if asked, the KEDA + HPA baseline), and
//! writes the runs as JSON and, if asked, a plot.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde::Serialize;
use serde_json::Value;

use super::policies::{Fanout, KedaHpa};
use super::sweep::{self, LAG_COUNTS};
use super::{Facts, Run, Trace, floor, frontier, plot, run};
use operator::crd::{AutoscalingSpec, WorkersSpec, policy};

/// Replays a trace of arrivals through the worker autoscaler (the code the
/// operator runs) and a model of the workers' queue, to tune
/// `spec.autoscaling` before deploying it.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// YAML with the settings: a FeedCluster manifest, or a block with
    /// `workers:` and `autoscaling:` as in its spec. Absent: the defaults.
    #[arg(long)]
    pub autoscaling: Option<PathBuf>,
    /// The baseline's `activationLagCount`: KEDA wakes from zero once the
    /// lag is greater than this (KEDA requires it with `lagCount`; its
    /// documentation's example uses 3).
    #[arg(long, default_value_t = 1)]
    pub keda_activation_lag: u64,
    /// The baseline's `lagCount` (lag per replica the HPA aims at); default:
    /// `sweep::DEFAULT_LAG_COUNT` (1000).
    #[arg(long)]
    pub keda_lag_count: Option<u64>,
    /// Also run the KEDA + HPA model at each of these `lagCount`s and
    /// report the best (fewest seconds over the drain target, then
    /// cheapest); `--keda-sweep` alone sweeps 50, 100, 200, 500, 1000,
    /// 2000, 5000 and 10000.
    #[arg(long, value_delimiter = ',', num_args = 0.., default_missing_value = "50,100,200,500,1000,2000,5000,10000")]
    pub keda_sweep: Option<Vec<u64>>,
    /// Draw the cost/miss frontier (the `--keda-sweep`, Fanout's policy
    /// and the floor) into this PNG; without `--keda-sweep`, sweeps the
    /// default `lagCount`s.
    #[arg(long)]
    pub frontier: Option<PathBuf>,
}

impl SimulateArgs {
    /// A run on settings given by the caller (`kubectl fanout simulate`):
    /// the baseline's defaults, no sweep, no frontier.
    pub fn of(run: RunArgs) -> SimulateArgs {
        SimulateArgs {
            run,
            autoscaling: None,
            keda_activation_lag: 1,
            keda_lag_count: None,
            keda_sweep: None,
            frontier: None,
        }
    }
}

/// What every replay takes, in the lab and in `kubectl fanout simulate`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// CSV with a header `t_seconds,arrivals[,service_rate]`: events
    /// arriving in each second, and optionally what one worker handles then
    /// (autoscale-lab/traces/ has examples).
    #[arg(long)]
    pub trace: PathBuf,
    /// Events one worker handles per second (where the trace does not say).
    #[arg(long, default_value_t = 200.0)]
    pub service_rate: f64,
    /// Seconds from asking for a worker pod to its being ready.
    #[arg(long, default_value_t = 10)]
    pub start_delay: u64,
    /// Workers running at the start; default: the minimum (0 with scale to
    /// zero).
    #[arg(long)]
    pub initial_replicas: Option<u32>,
    /// Also run the trace through a baseline policy.
    #[arg(long, value_enum)]
    pub baseline: Option<Baseline>,
    /// Write the result here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Draw backlog and replicas over time into this PNG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// Policies to compare against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Baseline {
    /// KEDA's redis-streams scaler (lagCount) with an HPA's defaults.
    KedaHpa,
}

/// What `simulate` writes.
#[derive(Debug, Serialize)]
pub struct Output {
    pub trace: String,
    pub facts: Facts,
    /// Replica-seconds no policy can go below on this trace
    /// ([`floor::replica_seconds`]); each run's summary has its ratio.
    pub floor_replica_seconds: f64,
    pub runs: Vec<Run>,
    /// The KEDA + HPA model at each `lagCount` of `--keda-sweep`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keda_sweep: Vec<sweep::Point>,
}

/// The `workers` and `autoscaling` blocks from a FeedCluster manifest or a
/// bare block.
pub fn read_settings(path: &Path) -> anyhow::Result<(WorkersSpec, AutoscalingSpec)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value =
        serde_saphyr::from_str(&text).with_context(|| format!("{} is not YAML", path.display()))?;
    let spec = doc.get("spec").unwrap_or(&doc);
    let part = |key: &str| {
        spec.get(key)
            .cloned()
            .unwrap_or(Value::Object(Default::default()))
    };
    let workers: WorkersSpec = serde_json::from_value(part("workers"))
        .with_context(|| format!("{}: workers", path.display()))?;
    let autoscaling: AutoscalingSpec = serde_json::from_value(part("autoscaling"))
        .with_context(|| format!("{}: autoscaling", path.display()))?;
    Ok((workers, autoscaling))
}

/// Runs the simulation `args` describe.
pub fn simulate(args: &SimulateArgs) -> anyhow::Result<Output> {
    let (workers, autoscaling) = match &args.autoscaling {
        Some(path) => read_settings(path)?,
        None => (WorkersSpec::default(), AutoscalingSpec::default()),
    };
    simulate_with(args, &workers, &autoscaling)
}

/// Runs the simulation `args` describe on these settings instead of
/// `args.autoscaling`'s (`kubectl fanout simulate` hands a live
/// FeedCluster's).
pub fn simulate_with(
    args: &SimulateArgs,
    workers: &WorkersSpec,
    autoscaling: &AutoscalingSpec,
) -> anyhow::Result<Output> {
    if !(args.run.service_rate.is_finite() && args.run.service_rate > 0.0) {
        anyhow::bail!("--service-rate must be a positive number of events per second");
    }
    let settings = policy(workers, autoscaling);
    settings
        .validate()
        .map_err(|e| anyhow::anyhow!("the autoscaling settings: {e}"))?;
    let trace = Trace::read(&args.run.trace)?;
    let initial = args
        .run
        .initial_replicas
        .unwrap_or(if settings.scale_to_zero {
            0
        } else {
            settings.min_replicas
        });
    let facts = Facts {
        service_rate: args.run.service_rate,
        start_delay_secs: args.run.start_delay,
        initial_replicas: initial.min(settings.max_replicas),
    };
    let poll = autoscaling.poll_interval_seconds.max(1) as u64;
    let mut runs = vec![run(
        &mut Fanout::new(settings.clone(), poll),
        &trace,
        &facts,
    )];
    if args.run.baseline == Some(Baseline::KedaHpa) {
        runs.push(run(
            &mut KedaHpa::new(
                &settings,
                args.keda_lag_count
                    .unwrap_or(super::sweep::DEFAULT_LAG_COUNT),
                args.keda_activation_lag,
            ),
            &trace,
            &facts,
        ));
    }
    let keda_sweep = match &args.keda_sweep {
        Some(counts) if counts.is_empty() => LAG_COUNTS.to_vec(),
        Some(counts) => counts.clone(),
        None if args.frontier.is_some() => LAG_COUNTS.to_vec(),
        None => Vec::new(),
    };
    if keda_sweep.contains(&0) {
        anyhow::bail!("--keda-sweep: a lagCount must be at least 1");
    }
    let keda_sweep = sweep::keda_lag_counts(
        &trace,
        &facts,
        &settings,
        args.keda_activation_lag,
        &keda_sweep,
    );
    Ok(Output {
        trace: args.run.trace.display().to_string(),
        floor_replica_seconds: floor::replica_seconds(&trace, &facts),
        facts,
        runs,
        keda_sweep,
    })
}

/// `autoscale-lab simulate`.
pub fn execute(args: &SimulateArgs) -> anyhow::Result<()> {
    report(args, &simulate(args)?)
}

/// Writes a simulation's output where `args` ask (JSON, plots) and its
/// summary, a line per run, to standard error.
pub fn report(args: &SimulateArgs, output: &Output) -> anyhow::Result<()> {
    let title = args
        .run
        .trace
        .file_stem()
        .map_or_else(|| "trace".into(), |s| s.to_string_lossy().into_owned());
    if let Some(png) = &args.run.plot {
        let runs: Vec<&Run> = output.runs.iter().collect();
        plot::draw(&title, &runs, png)?;
    }
    if let Some(png) = &args.frontier {
        frontier::draw(
            &title,
            &output.runs[0].summary,
            &output.keda_sweep,
            output.floor_replica_seconds,
            png,
        )?;
    }
    let json = serde_json::to_string_pretty(output)?;
    match &args.run.out {
        Some(path) => std::fs::write(path, json + "\n")
            .with_context(|| format!("writing {}", path.display()))?,
        None => println!("{json}"),
    }
    eprintln!(
        "    floor: {:.0} pod-seconds (events / per-worker rate)",
        output.floor_replica_seconds
    );
    for r in &output.runs {
        eprintln!("{:>9}: {}", r.policy, describe(&r.summary));
    }
    for p in &output.keda_sweep {
        eprintln!("lagCount {:>6}: {}", p.lag_count, describe(&p.summary));
    }
    if let Some(best) = sweep::best(&output.keda_sweep) {
        eprintln!("KEDA + HPA at its best: lagCount {}", best.lag_count);
    }
    Ok(())
}

/// A run's summary on one line.
fn describe(s: &super::Summary) -> String {
    format!(
        "{} pod-seconds ({} the floor), peak backlog {}, drain target missed {} s, {} scale changes, {} reversals inside a window, {} within 300 s, {} s at zero, wake {}",
        s.replica_seconds,
        s.ratio_to_floor
            .map_or_else(|| "no".to_owned(), |r| format!("{r:.2}x")),
        s.peak_backlog,
        s.drain_target_missed_seconds,
        s.scale_changes,
        s.reversals_inside_window,
        s.reversals_within_300s,
        s.seconds_at_zero,
        s.wake_seconds
            .map_or_else(|| "-".to_owned(), |w| format!("{w} s")),
    )
}
