use std::path::{Path, PathBuf};

use feed_core::autoscale::{self, Memory, Settings};

use super::policies::{Fanout, KedaHpa};
use super::*;

fn traces() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("traces")
}

fn lab_settings() -> (Settings, u64) {
    let (workers, autoscaling) =
        command::read_settings(&traces().join("autoscaling.yaml")).unwrap();
    (
        operator::crd::policy(&workers, &autoscaling),
        autoscaling.poll_interval_seconds as u64,
    )
}

fn flat(seconds: usize, arrivals: u64) -> Trace {
    Trace {
        seconds: vec![
            Second {
                arrivals,
                service_rate: None,
            };
            seconds
        ],
    }
}

/// A policy that never changes anything.
struct Fixed;

impl Policy for Fixed {
    fn name(&self) -> &'static str {
        "fixed"
    }
    fn tick(&mut self, _: &Observation) -> Option<u32> {
        None
    }
    fn drain_seconds(&self) -> f64 {
        30.0
    }
    fn window_secs(&self, _to: u32) -> f64 {
        60.0
    }
}

/// Records what a policy was shown and what it answered.
struct Recording<P> {
    inner: P,
    seen: Vec<(Observation, Option<u32>)>,
}

impl<P: Policy> Policy for Recording<P> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn tick(&mut self, observation: &Observation) -> Option<u32> {
        let answer = self.inner.tick(observation);
        self.seen.push((*observation, answer));
        answer
    }
    fn drain_seconds(&self) -> f64 {
        self.inner.drain_seconds()
    }
    fn window_secs(&self, to: u32) -> f64 {
        self.inner.window_secs(to)
    }
}

#[test]
fn traces_parse_with_gaps_and_rates_and_bad_lines_are_named() {
    let trace = Trace::parse(
        "# a comment\nt_seconds,arrivals,service_rate\n0,5,\n3,7,150.5\n",
        "t.csv",
    )
    .unwrap();
    assert_eq!(trace.seconds.len(), 4);
    assert_eq!(trace.seconds[1].arrivals, 0);
    assert_eq!(trace.seconds[3].arrivals, 7);
    assert_eq!(trace.seconds[3].service_rate, Some(150.5));

    for (text, says) in [
        ("", "empty"),
        ("time,count\n0,1\n", "header must be"),
        ("t_seconds,arrivals\n", "no data lines"),
        ("t_seconds,arrivals\n0,1,2\n", "line 2: expected 2 fields"),
        ("t_seconds,arrivals\n0,-3\n", "arrivals '-3'"),
        (
            "t_seconds,arrivals\n5,1\n2,1\n",
            "line 3: t_seconds 2 is not after",
        ),
        (
            "t_seconds,arrivals,service_rate\n0,1,0\n",
            "service_rate '0'",
        ),
        ("t_seconds,arrivals\n99999999,1\n", "past the longest trace"),
    ] {
        let e = Trace::parse(text, "t.csv").unwrap_err().to_string();
        assert!(e.contains(says), "{text:?}: {e}");
    }
}

#[test]
fn the_queue_grows_by_arrivals_and_shrinks_by_what_ready_workers_serve() {
    let facts = Facts {
        service_rate: 60.0,
        start_delay_secs: 0,
        initial_replicas: 1,
    };
    let run = run(&mut Fixed, &flat(10, 100), &facts);
    // 100 arrive and 60 leave every second.
    let backlogs: Vec<u64> = run.timeline.iter().map(|t| t.backlog).collect();
    assert_eq!(backlogs, (1..=10).map(|s| 40 * s).collect::<Vec<u64>>());
    assert_eq!(run.summary.replica_seconds, 10);
    // The events of second 0 have waited 9 s: within 30 s.
    assert_eq!(run.summary.drain_target_missed_seconds, 0);
    let slow = super::run(&mut Fixed, &flat(100, 100), &facts);
    // By the end of second t, 60 (t + 1) have been served, oldest first:
    // the oldest waiting arrived in second 0.6 (t + 1), rounded down, and
    // has waited more than 30 s from second 77 on.
    assert_eq!(slow.summary.drain_target_missed_seconds, 23);
    assert_eq!(slow.summary.peak_backlog, 4000);
}

#[test]
fn fractional_rates_and_the_traces_own_rates_are_honoured() {
    let mut trace = flat(10, 10);
    trace.seconds[5].service_rate = Some(1000.0);
    let facts = Facts {
        service_rate: 2.5,
        start_delay_secs: 0,
        initial_replicas: 2,
    };
    let run = run(&mut Fixed, &trace, &facts);
    // 5 served per second (2 x 2.5), until second 5 clears everything.
    assert_eq!(run.timeline[4].backlog, 25);
    assert_eq!(run.timeline[5].backlog, 0);
    assert_eq!(run.timeline[9].backlog, 20);
}

#[test]
fn new_pods_serve_only_after_the_start_delay() {
    struct UpAtOnce;
    impl Policy for UpAtOnce {
        fn name(&self) -> &'static str {
            "up"
        }
        fn tick(&mut self, o: &Observation) -> Option<u32> {
            (o.at_secs == 0.0).then_some(3)
        }
        fn drain_seconds(&self) -> f64 {
            30.0
        }
        fn window_secs(&self, _to: u32) -> f64 {
            60.0
        }
    }
    let facts = Facts {
        service_rate: 10.0,
        start_delay_secs: 5,
        initial_replicas: 1,
    };
    let run = run(&mut UpAtOnce, &flat(8, 0), &facts);
    let ready: Vec<u32> = run.timeline.iter().map(|t| t.ready).collect();
    assert_eq!(ready, [1, 1, 1, 1, 1, 3, 3, 3]);
    assert_eq!(run.summary.seconds_at_zero, 0);
    // Paid for from the moment they were asked for.
    assert!(run.timeline.iter().all(|t| t.replicas == 3));
}

#[test]
fn the_simulator_runs_the_operators_own_policy() {
    let (settings, poll) = lab_settings();
    let trace = Trace::read(&traces().join("burst.csv")).unwrap();
    let facts = Facts {
        service_rate: 200.0,
        start_delay_secs: 10,
        initial_replicas: 1,
    };
    let mut recording = Recording {
        inner: Fanout::new(settings.clone(), poll),
        seen: Vec::new(),
    };
    run(&mut recording, &trace, &facts);
    // Replaying what it was shown through `feed_core::autoscale::decide`,
    // the function the operator's autoscaler calls, gives every decision.
    let mut memory = Memory::default();
    let polls: Vec<_> = recording
        .seen
        .iter()
        .filter(|(o, _)| (o.at_secs as u64).is_multiple_of(poll))
        .collect();
    assert_eq!(polls.len(), trace.seconds.len().div_ceil(poll as usize));
    for (observation, answer) in polls {
        let decision = autoscale::decide(&settings, &mut memory, *observation);
        assert_eq!(
            Some(decision.desired),
            *answer,
            "at {}",
            observation.at_secs
        );
    }
    assert!(
        recording
            .seen
            .iter()
            .filter(|(o, _)| !(o.at_secs as u64).is_multiple_of(poll))
            .all(|(_, a)| a.is_none()),
        "it acts only at its poll interval"
    );
}

#[test]
fn keda_and_the_hpa_follow_their_documented_defaults() {
    let settings = Settings {
        min_replicas: 1,
        max_replicas: 50,
        ..Settings::default()
    };
    let mut keda = KedaHpa::new(&settings, 100, 1);
    let at = |t: u64, lag: u64, current: u32| Observation {
        at_secs: t as f64,
        lag: Some(lag),
        pending: 0,
        entries_added: 0,
        entries_read: Some(0),
        current_replicas: current,
        ready_replicas: current,
    };
    // Only HPA syncs (every 15 s) act.
    assert_eq!(keda.tick(&at(1, 10_000, 1)), None);
    // Scale-up: at most the larger of 4 pods or 100 % per sync.
    assert_eq!(keda.tick(&at(15, 10_000, 1)), Some(5));
    assert_eq!(keda.tick(&at(30, 10_000, 5)), Some(10));
    // Within the 10 % tolerance nothing changes.
    assert_eq!(keda.tick(&at(45, 1_050, 10)), Some(10));
    // Scale-down follows the highest recommendation of the last 300 s.
    assert_eq!(keda.tick(&at(60, 0, 10)), Some(10));
    assert_eq!(keda.tick(&at(345, 0, 10)), Some(10));
    assert_eq!(keda.tick(&at(360, 0, 10)), Some(1));
    // An unknown lag reads as zero.
    let mut unknown = at(375, 0, 1);
    unknown.lag = None;
    assert_eq!(keda.tick(&unknown), Some(1));
}

#[test]
fn keda_wakes_only_above_its_activation_lag_at_its_polling_interval() {
    let settings = Settings {
        scale_to_zero: true,
        ..Settings::default()
    };
    let trace = Trace::read(&traces().join("idle-then-one.csv")).unwrap();
    let facts = Facts {
        service_rate: 200.0,
        start_delay_secs: 10,
        initial_replicas: 0,
    };
    // `activationLagCount: 1`: one event is not "greater than 1".
    let asleep = run(&mut KedaHpa::new(&settings, 1000, 1), &trace, &facts);
    assert_eq!(asleep.summary.wake_seconds, None);
    assert_eq!(asleep.summary.backlog_at_end, 1);
    // It never had a pod.
    assert_eq!(asleep.summary.seconds_at_zero, trace.seconds.len() as u64);
    // `activationLagCount: 0`: it wakes at its next 30 s poll.
    let awake = run(&mut KedaHpa::new(&settings, 1000, 0), &trace, &facts);
    assert!(awake.summary.wake_seconds.unwrap() <= 30 + 10);
    assert_eq!(awake.summary.backlog_at_end, 0);
}

/// The policy against KEDA + HPA on every shipped trace: the goals
/// docs/autoscaling.md reports.
#[test]
fn on_the_shipped_traces_the_policy_meets_its_goals() {
    let (settings, poll) = lab_settings();
    let facts = Facts {
        service_rate: 200.0,
        start_delay_secs: 10,
        initial_replicas: 0,
    };
    for name in ["steady", "burst", "diurnal", "sawtooth", "idle-then-one"] {
        let trace = Trace::read(&traces().join(format!("{name}.csv"))).unwrap();
        let ours = run(&mut Fanout::new(settings.clone(), poll), &trace, &facts);
        let keda = run(
            &mut KedaHpa::new(&settings, super::sweep::DEFAULT_LAG_COUNT, 1),
            &trace,
            &facts,
        );
        let (o, k) = (&ours.summary, &keda.summary);
        assert!(
            o.drain_target_missed_seconds <= k.drain_target_missed_seconds,
            "{name}: {o:?} vs {k:?}"
        );
        assert_eq!(o.reversals_inside_window, 0, "{name}: {o:?}");
        // A standing backlog is allowed (the fewest workers that meet the
        // drain target run flat out over one), as long as the workers
        // there are serve what is left within the target.
        let ready = ours.timeline.last().map_or(0, |t| t.ready);
        assert!(
            o.backlog_at_end as f64
                <= f64::from(ready) * facts.service_rate * settings.drain_seconds,
            "{name}: {o:?}"
        );
        // The first event after idle gets a worker within one poll and one
        // pod start.
        assert!(
            o.wake_seconds
                .is_some_and(|w| w <= poll + facts.start_delay_secs),
            "{name}: {o:?}"
        );
    }
}

#[test]
fn the_floor_is_events_over_each_seconds_per_worker_rate() {
    let mut trace = flat(10, 100);
    // One second served at the trace's own rate: 100 / 50 = 2.
    trace.seconds[3].service_rate = Some(50.0);
    let facts = Facts {
        service_rate: 200.0,
        start_delay_secs: 0,
        initial_replicas: 1,
    };
    // Nine seconds of 100 / 200 and one of 100 / 50.
    assert_eq!(floor::replica_seconds(&trace, &facts), 9.0 * 0.5 + 2.0);
    let run = run(&mut Fixed, &trace, &facts);
    assert_eq!(run.summary.floor_replica_seconds, 6.5);
    // One worker for 10 s against 6.5 replica-seconds of work.
    assert_eq!(run.summary.ratio_to_floor, Some(10.0 / 6.5));
    // Without events there is no floor to compare with.
    assert_eq!(floor::replica_seconds(&flat(10, 0), &facts), 0.0);
    assert_eq!(
        super::run(&mut Fixed, &flat(10, 0), &facts)
            .summary
            .ratio_to_floor,
        None
    );
    assert_eq!(floor::ratio(0, 0.0), None);
}

/// Asks for the counts it is given at the seconds it is given.
struct Scripted(Vec<(u64, u32)>);

impl Policy for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn tick(&mut self, o: &Observation) -> Option<u32> {
        let t = o.at_secs as u64;
        self.0.iter().find(|(at, _)| *at == t).map(|(_, n)| *n)
    }
    fn drain_seconds(&self) -> f64 {
        30.0
    }
    fn window_secs(&self, _to: u32) -> f64 {
        60.0
    }
}

#[test]
fn reversals_within_300_s_count_direction_changes_closer_than_300_s() {
    let facts = Facts {
        service_rate: 100.0,
        start_delay_secs: 0,
        initial_replicas: 1,
    };
    // Up, down 100 s later (a reversal within 300 s, outside the 60 s
    // window), down again (same direction), up 299 s later (a reversal),
    // down 300 s later (not within 300 s), up 10 s later (inside both).
    let mut policy = Scripted(vec![
        (0, 3),
        (100, 2),
        (150, 1),
        (449, 4),
        (749, 2),
        (759, 3),
    ]);
    let run = run(&mut policy, &flat(800, 0), &facts);
    assert_eq!(run.summary.scale_changes, 6);
    assert_eq!(run.summary.reversals_within_300s, 3);
    assert_eq!(run.summary.reversals_inside_window, 1);
    assert_eq!(run.summary.seconds_at_zero, 0);
    // At zero from second 5 (the count applies within the second) until
    // second 8 asks for two again.
    let naps = super::run(&mut Scripted(vec![(5, 0), (8, 2)]), &flat(10, 0), &facts);
    assert_eq!(naps.summary.seconds_at_zero, 3);
}

#[test]
fn the_sweep_runs_keda_at_each_lag_count_and_its_best_misses_least_then_costs_least() {
    let (settings, _) = lab_settings();
    let facts = Facts {
        service_rate: 200.0,
        start_delay_secs: 10,
        initial_replicas: 0,
    };
    let trace = Trace::read(&traces().join("burst.csv")).unwrap();
    let points = sweep::keda_lag_counts(&trace, &facts, &settings, 1, &[500, 1000, 4000]);
    assert_eq!(
        points.iter().map(|p| p.lag_count).collect::<Vec<_>>(),
        [500, 1000, 4000]
    );
    // Each point is the baseline run at that lagCount.
    let at_1000 = run(&mut KedaHpa::new(&settings, 1000, 1), &trace, &facts);
    assert_eq!(points[1].summary, at_1000.summary);

    let point = |lag_count, missed, cost| sweep::Point {
        lag_count,
        summary: Summary {
            drain_target_missed_seconds: missed,
            replica_seconds: cost,
            ..at_1000.summary.clone()
        },
    };
    let made_up = [
        point(1, 10, 100),
        point(2, 5, 900),
        point(3, 5, 800),
        point(4, 5, 800),
    ];
    assert_eq!(sweep::best(&made_up).map(|p| p.lag_count), Some(3));
    assert_eq!(sweep::best(&[]), None);
}

#[test]
fn the_frontier_keeps_the_points_nothing_beats_on_both_cost_and_misses() {
    // (pod-seconds, missed seconds)
    let points = [
        (500, 100), // cheapest
        (900, 0),   // no misses
        (700, 40),  // between the two
        (800, 40),  // costs more than (700, 40) for the same misses
        (600, 120), // beaten by (500, 100)
        (900, 5),   // beaten by (900, 0)
        (700, 40),  // equal to a kept point: the first is kept
    ];
    assert_eq!(frontier::frontier(&points), [0, 2, 1]);
    assert_eq!(frontier::frontier(&[]), Vec::<usize>::new());
}
