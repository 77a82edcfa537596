//! `autoscale-lab traces`: writes the wider trace set the autoscaler is
//! judged on (issue 17) from a seed, so the committed CSVs can be
//! reproduced and anyone can add a shape: add a [`Shape`], give it a name
//! and an `arrivals` rule, and run the command.
//!
//! Each trace draws from its own random stream (the seed mixed with the
//! shape's position in [`Shape::ALL`]), so adding a shape at the end leaves
//! the other traces as they were. The streams are rand's `StdRng`, which is
//! reproducible for a given rand version (the workspace's lock pins it);
//! `traces_match_the_generator` in the tests notices when it is not.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The seed the committed traces in `autoscale-lab/traces/wide/` were drawn
/// with (the number; any fixed value would do).
pub const DEFAULT_SEED: u64 = 17;

/// Steady arrivals, events per second: two workers' worth at the lab's
/// 200 events/s per worker, as the shipped `steady.csv`.
const STEADY_MEAN: f64 = 400.0;
/// Spikes on the noisy trace are this many times the mean, for one second.
const SPIKE_FACTOR: f64 = 10.0;
/// Chance that a second of the noisy trace is a spike: one in two minutes
/// on average, rare next to the 10 s poll yet several per scale-down window.
const SPIKE_PROBABILITY: f64 = 1.0 / 120.0;
/// The ramp climbs linearly between these rates (half the lab's 20-worker
/// maximum at the top, so the ceiling does not decide the result).
const RAMP_FROM: f64 = 50.0;
const RAMP_TO: f64 = 2_000.0;
/// The diurnal wave's trough and peak, as the shipped `diurnal.csv`.
const DIURNAL_LOW: f64 = 50.0;
const DIURNAL_HIGH: f64 = 1_500.0;
/// Sawtooth: this rate for `SAWTOOTH_HALF_PERIOD` seconds, then nothing as
/// long (the 60 s on / 60 s off, shorter than the 120 s scale-down
/// window, so holding and dropping the workers both cost something).
const SAWTOOTH_ON: f64 = 1_000.0;
const SAWTOOTH_HALF_PERIOD: usize = 60;
/// Flash crowd: the base load, and 50 times it for 20 s (2,000 events/s:
/// ten workers' worth) starting ten minutes in.
const FLASH_BASE: f64 = 40.0;
const FLASH_FACTOR: f64 = 50.0;
const FLASH_START: usize = 600;
const FLASH_SECONDS: usize = 20;
/// Trickle: one event every this many seconds (longer than the lab's 120 s
/// `idleSeconds`, so the workers could sleep between events).
const TRICKLE_EVERY: usize = 200;
/// Long idle: an hour of nothing, then one event, then five minutes to see
/// it handled and the workers gone again.
const LONG_IDLE: usize = 3_600;
const AFTER_THE_EVENT: usize = 300;
/// Length of the traces that do not say otherwise: 30 minutes.
const HALF_HOUR: usize = 1_800;
/// Length of the diurnal trace: a day compressed into two hours.
const TWO_HOURS: usize = 7_200;
/// Below this mean a Poisson draw is exact (Knuth's method); above it the
/// normal approximation is within a fraction of a percent.
const EXACT_POISSON_BELOW: f64 = 30.0;

/// Writes the trace set, one CSV per shape, drawn from a seed.
#[derive(Debug, Clone, Args)]
pub struct TracesArgs {
    /// The random seed; the committed set uses the default.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// The directory to write `<shape>.csv` into (created if missing).
    #[arg(long, default_value = "autoscale-lab/traces/wide")]
    pub out: PathBuf,
}

/// `autoscale-lab traces`: writes the set and names each file on standard
/// error.
pub fn execute(args: &TracesArgs) -> Result<(), Error> {
    for path in write_set(args.seed, &args.out)? {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Why the trace set could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// A kind of load, one CSV each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Steady,
    Spiky,
    Ramp,
    Diurnal,
    Sawtooth,
    FlashCrowd,
    Trickle,
    IdleThenOne,
}

impl Shape {
    /// Every shape, in the order of the set (and of its random streams: add
    /// new ones at the end).
    pub const ALL: [Shape; 8] = [
        Shape::Steady,
        Shape::Spiky,
        Shape::Ramp,
        Shape::Diurnal,
        Shape::Sawtooth,
        Shape::FlashCrowd,
        Shape::Trickle,
        Shape::IdleThenOne,
    ];

    /// The file's name, without `.csv`.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Steady => "steady",
            Shape::Spiky => "spiky",
            Shape::Ramp => "ramp",
            Shape::Diurnal => "diurnal",
            Shape::Sawtooth => "sawtooth",
            Shape::FlashCrowd => "flash-crowd",
            Shape::Trickle => "trickle",
            Shape::IdleThenOne => "idle-then-one",
        }
    }

    /// One line on what it is (the CSV's comment and the docs' table).
    pub fn about(self) -> &'static str {
        match self {
            Shape::Steady => "Poisson arrivals around 400 events/s for 30 minutes",
            Shape::Spiky => {
                "400 events/s with one-second spikes of 10x, one in 120 s on average, for 30 minutes"
            }
            Shape::Ramp => "a linear ramp from 50 to 2000 events/s over 30 minutes",
            Shape::Diurnal => "a day compressed into 2 hours: 50 to 1500 events/s",
            Shape::Sawtooth => "1000 events/s for 60 s, then 60 s of nothing, for 30 minutes",
            Shape::FlashCrowd => {
                "40 events/s with a flash crowd of 50x (2000 events/s) for 20 s at 600 s, for 30 minutes"
            }
            Shape::Trickle => "one event every 200 s for 30 minutes",
            Shape::IdleThenOne => "an hour of nothing, one event, then 5 minutes of nothing",
        }
    }

    /// Mean arrivals in each second (before Poisson noise), or exact counts
    /// for the shapes that have no noise.
    fn arrivals(self, rng: &mut StdRng) -> Vec<u64> {
        let poisson = |means: Vec<f64>, rng: &mut StdRng| -> Vec<u64> {
            means.into_iter().map(|m| poisson(m, rng)).collect()
        };
        match self {
            Shape::Steady => poisson(vec![STEADY_MEAN; HALF_HOUR], rng),
            Shape::Spiky => {
                let means = (0..HALF_HOUR)
                    .map(|_| {
                        if rng.random_bool(SPIKE_PROBABILITY) {
                            STEADY_MEAN * SPIKE_FACTOR
                        } else {
                            STEADY_MEAN
                        }
                    })
                    .collect();
                poisson(means, rng)
            }
            Shape::Ramp => {
                let step = (RAMP_TO - RAMP_FROM) / (HALF_HOUR - 1) as f64;
                poisson(
                    (0..HALF_HOUR)
                        .map(|t| RAMP_FROM + step * t as f64)
                        .collect(),
                    rng,
                )
            }
            Shape::Diurnal => {
                let middle = (DIURNAL_LOW + DIURNAL_HIGH) / 2.0;
                let swing = (DIURNAL_HIGH - DIURNAL_LOW) / 2.0;
                let means = (0..TWO_HOURS)
                    .map(|t| {
                        let phase = std::f64::consts::TAU * t as f64 / TWO_HOURS as f64;
                        middle - swing * phase.cos()
                    })
                    .collect();
                poisson(means, rng)
            }
            Shape::Sawtooth => {
                let means = (0..HALF_HOUR)
                    .map(|t| {
                        if (t / SAWTOOTH_HALF_PERIOD).is_multiple_of(2) {
                            SAWTOOTH_ON
                        } else {
                            0.0
                        }
                    })
                    .collect();
                poisson(means, rng)
            }
            Shape::FlashCrowd => {
                let crowd = FLASH_START..FLASH_START + FLASH_SECONDS;
                let means = (0..HALF_HOUR)
                    .map(|t| {
                        if crowd.contains(&t) {
                            FLASH_BASE * FLASH_FACTOR
                        } else {
                            FLASH_BASE
                        }
                    })
                    .collect();
                poisson(means, rng)
            }
            // Offset by half a period so the first event does not meet the
            // workers at t = 0.
            Shape::Trickle => (0..HALF_HOUR)
                .map(|t| u64::from(t % TRICKLE_EVERY == TRICKLE_EVERY / 2))
                .collect(),
            Shape::IdleThenOne => (0..LONG_IDLE + AFTER_THE_EVENT)
                .map(|t| u64::from(t == LONG_IDLE))
                .collect(),
        }
    }

    /// The trace as a CSV (`t_seconds,arrivals`, every second), drawn with
    /// `seed`.
    pub fn csv(self, seed: u64) -> String {
        let index = Shape::ALL.iter().position(|s| *s == self).unwrap_or(0) as u64;
        // A large odd constant spreads neighbouring indexes across the
        // seed space (the golden ratio's, as in SplitMix64).
        let mut rng = StdRng::seed_from_u64(seed ^ (index + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut out = format!(
            "# {}\n# autoscale-lab traces --seed {seed}\nt_seconds,arrivals\n",
            self.about()
        );
        for (t, n) in self.arrivals(&mut rng).into_iter().enumerate() {
            // Writing into a String cannot fail.
            let _ = writeln!(out, "{t},{n}");
        }
        out
    }
}

/// One draw from a Poisson distribution with mean `mean` (events in a
/// second when they arrive independently at that rate).
fn poisson(mean: f64, rng: &mut StdRng) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    if mean < EXACT_POISSON_BELOW {
        let limit = (-mean).exp();
        let mut product: f64 = rng.random();
        let mut n = 0;
        while product > limit {
            product *= rng.random::<f64>();
            n += 1;
        }
        return n;
    }
    // Box–Muller; 1 - u keeps the logarithm's argument in (0, 1].
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    (mean + mean.sqrt() * z).round().max(0.0) as u64
}

/// Writes every shape's CSV into `dir` (created if missing); returns the
/// files written.
pub fn write_set(seed: u64, dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let failed = |path: &Path| {
        let path = path.display().to_string();
        move |source| Error::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(failed(dir))?;
    Shape::ALL
        .iter()
        .map(|shape| {
            let path = dir.join(format!("{}.csv", shape.name()));
            std::fs::write(&path, shape.csv(seed)).map_err(failed(&path))?;
            Ok(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::Trace;

    fn trace(shape: Shape, seed: u64) -> Vec<u64> {
        Trace::parse(&shape.csv(seed), shape.name())
            .unwrap()
            .seconds
            .iter()
            .map(|s| s.arrivals)
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_traces_and_another_seed_other_ones() {
        for shape in Shape::ALL {
            assert_eq!(shape.csv(5), shape.csv(5), "{}", shape.name());
        }
        assert_ne!(trace(Shape::Steady, 5), trace(Shape::Steady, 6));
        // Each shape has its own stream.
        assert_ne!(
            trace(Shape::Steady, 5)[..100],
            trace(Shape::Spiky, 5)[..100]
        );
    }

    #[test]
    fn the_shapes_are_what_they_say() {
        let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len() as f64;
        let steady = trace(Shape::Steady, 1);
        assert_eq!(steady.len(), HALF_HOUR);
        assert!(
            (mean(&steady) - STEADY_MEAN).abs() < 5.0,
            "{}",
            mean(&steady)
        );

        let spiky = trace(Shape::Spiky, 1);
        let spikes = spiky.iter().filter(|n| **n > 2_000).count();
        // 1,800 s at one in 120: about 15.
        assert!((5..=30).contains(&spikes), "{spikes} spikes");
        assert!(spiky.iter().all(|n| *n < 2 * 4_000));

        let ramp = trace(Shape::Ramp, 1);
        assert!(mean(&ramp[..60]) < 100.0 && mean(&ramp[ramp.len() - 60..]) > 1_900.0);

        let sawtooth = trace(Shape::Sawtooth, 1);
        assert!(sawtooth[60..120].iter().all(|n| *n == 0));
        assert!(sawtooth[120..180].iter().all(|n| *n > 800));

        let flash = trace(Shape::FlashCrowd, 1);
        assert!(mean(&flash[FLASH_START..FLASH_START + FLASH_SECONDS]) > 1_900.0);
        assert!(mean(&flash[..FLASH_START]) < 50.0);

        let trickle = trace(Shape::Trickle, 1);
        let at: Vec<usize> = (0..trickle.len()).filter(|t| trickle[*t] > 0).collect();
        assert_eq!(at, (100..HALF_HOUR).step_by(200).collect::<Vec<_>>());

        let idle = trace(Shape::IdleThenOne, 1);
        assert_eq!(idle.iter().sum::<u64>(), 1);
        assert_eq!(idle[LONG_IDLE], 1);
    }

    #[test]
    fn small_poisson_means_have_their_mean() {
        let mut rng = StdRng::seed_from_u64(3);
        let draws: u64 = (0..10_000).map(|_| poisson(2.5, &mut rng)).sum();
        assert!((24_000..26_000).contains(&draws), "{draws}");
    }

    /// The committed traces are the generator's output for the documented
    /// seed: regenerate them with `autoscale-lab traces` after a change.
    #[test]
    fn traces_match_the_generator() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("traces/wide");
        for shape in Shape::ALL {
            let path = dir.join(format!("{}.csv", shape.name()));
            let committed = std::fs::read_to_string(&path).unwrap();
            assert!(
                committed == shape.csv(DEFAULT_SEED),
                "{} differs from `autoscale-lab traces --seed {DEFAULT_SEED}`",
                path.display()
            );
        }
    }
}
