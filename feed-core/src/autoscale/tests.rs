use proptest::prelude::*;

use super::*;

/// A poll every 15 s, as the operator does by default.
const POLL: f64 = 15.0;

fn obs(at: f64, lag: u64, pending: u64, added: u64, read: u64, current: u32) -> Observation {
    Observation {
        at_secs: at,
        lag: Some(lag),
        pending,
        entries_added: added,
        entries_read: Some(read),
        current_replicas: current,
        ready_replicas: current,
    }
}

fn settings() -> Settings {
    Settings {
        min_replicas: 1,
        max_replicas: 20,
        drain_seconds: 30.0,
        target_utilization: 0.8,
        assumed_rate_per_replica: 100.0,
        scale_up_window_secs: 0.0,
        scale_down_window_secs: 60.0,
        max_scale_up_step: 100,
        max_scale_down_step: 100,
        scale_to_zero: false,
        idle_seconds: 120.0,
        activation_backlog: 0,
    }
}

#[test]
fn unsaturated_workers_only_ever_raise_the_service_rate() {
    let s = settings();
    let mut memory = Memory::default();
    let mut added = 0;
    let mut read = 0;
    let mut d = decide(&s, &mut memory, obs(0.0, 0, 0, 0, 0, 2));
    // Two workers keep up with 300/s: each does at least 150/s, more than
    // the 100/s assumed.
    for i in 1..4 {
        added += 300 * POLL as u64;
        read = added;
        d = decide(&s, &mut memory, obs(i as f64 * POLL, 0, 0, added, read, 2));
    }
    assert!((d.service_rate_per_replica - 150.0).abs() < 1e-6);
    // Quieter: 100/s. What they did is no longer what they can do.
    for i in 4..8 {
        added += 100 * POLL as u64;
        read = added;
        d = decide(&s, &mut memory, obs(i as f64 * POLL, 0, 0, added, read, 2));
    }
    assert!((d.service_rate_per_replica - 150.0).abs() < 1e-6);
    // An interval in which a pod became ready teaches nothing.
    let mut o = obs(8.0 * POLL, 0, 0, added + 9_000, read + 9_000, 3);
    o.ready_replicas = 3;
    d = decide(&s, &mut memory, o);
    assert!((d.service_rate_per_replica - 150.0).abs() < 1e-6);
}

#[test]
fn a_backlog_is_drained_within_the_drain_time() {
    let mut memory = Memory::default();
    // 9,000 waiting, 100/s per worker, 30 s to drain: 3 workers.
    let d = decide(&settings(), &mut memory, obs(0.0, 9_000, 0, 9_000, 0, 1));
    assert_eq!(d.wanted, 3);
    assert_eq!(d.desired, 3);
    assert_eq!(d.direction, Direction::Up);
    assert!(d.reason.contains("backlog 9000"), "{}", d.reason);
}

#[test]
fn steady_arrivals_get_the_workers_they_need_not_a_fixed_overprovision() {
    // Fewer workers must last a scale-down window (here 120 s) within the
    // margin before the count goes down.
    let s = Settings {
        scale_down_window_secs: 120.0,
        ..settings()
    };
    let mut memory = Memory::default();
    let mut added = 0;
    let mut d = decide(&s, &mut memory, obs(0.0, 0, 0, added, added, 5));
    for i in 1..14 {
        // 400 events/s arrive and the workers serve them at once: no
        // backlog.
        added += 400 * POLL as u64;
        d = decide(
            &s,
            &mut memory,
            obs(i as f64 * POLL, 0, 0, added, added, d.desired),
        );
    }
    // 400/s at 100/s per worker: 4 workers, not 5 (the old 400 / (100 ·
    // 0.8)).
    assert_eq!(d.desired, 4);
    assert!((d.arrival_rate - 400.0).abs() < 1e-6);
    // Two would serve every entry within the target for a while; four do
    // it with margin for a whole window.
    assert_eq!((d.wanted, d.limited_by), (2, Some(Limit::Margin)));
    assert!(
        d.reason.contains("holding 4: fewer would not meet"),
        "{}",
        d.reason
    );
}

#[test]
fn a_spike_the_workers_drain_in_time_passes_without_scaling_up() {
    let s = settings();
    let mut memory = Memory::default();
    let mut added = 0;
    let mut d = decide(&s, &mut memory, obs(0.0, 0, 0, 0, 0, 2));
    for i in 1..10 {
        added += 150 * POLL as u64;
        d = decide(&s, &mut memory, obs(i as f64 * POLL, 0, 0, added, added, 2));
    }
    assert_eq!(d.desired, 2);
    // 2,500 entries at once: two workers (200/s) serve the newest within
    // 12.5 s, and keep up with the 150/s around it. No scale-up (the old
    // policy went to 4).
    added += 150 * POLL as u64 + 2_500;
    let d = decide(
        &s,
        &mut memory,
        obs(10.0 * POLL, 2_500, 0, added, added - 2_500, 2),
    );
    assert_eq!(d.direction, Direction::None, "{}", d.reason);
    assert_eq!(d.desired, 2);
}

#[test]
fn noise_around_the_capacity_does_not_bounce_the_count() {
    let s = settings();
    let mut memory = Memory::default();
    let mut added = 0;
    let mut read = 0;
    let mut current = 2;
    for i in 0..30 {
        // 190 and 210 events/s in turn against two workers' 200/s: what
        // the workers fall behind by in one poll they catch up in the next.
        let rate = if i % 2 == 0 { 190 } else { 210 };
        added += rate * POLL as u64;
        read = (read + 200 * POLL as u64).min(added);
        let d = decide(
            &s,
            &mut memory,
            obs(i as f64 * POLL, added - read, 0, added, read, current),
        );
        assert_eq!(d.desired, 2, "poll {i}: {}", d.reason);
        current = d.desired;
    }
}

#[test]
fn the_service_rate_is_learned_while_workers_are_busy() {
    let s = settings();
    let mut memory = Memory::default();
    decide(&s, &mut memory, obs(0.0, 10_000, 0, 10_000, 0, 2));
    // Two workers read 6,000 in 15 s while a backlog waited: 200/s each.
    let d = decide(&s, &mut memory, obs(POLL, 4_000, 0, 10_000, 6_000, 2));
    assert!((d.service_rate_per_replica - 200.0).abs() < 1e-6);
    // An idle interval teaches nothing about capacity.
    let d = decide(&s, &mut memory, obs(2.0 * POLL, 0, 0, 10_000, 10_000, 2));
    let d2 = decide(&s, &mut memory, obs(3.0 * POLL, 0, 0, 10_010, 10_010, 2));
    assert_eq!(d.service_rate_per_replica, d2.service_rate_per_replica);
}

#[test]
fn unknown_lag_never_scales_down_and_wakes_a_worker() {
    let s = settings();
    let mut memory = Memory::default();
    let mut o = obs(0.0, 0, 0, 0, 0, 6);
    o.lag = None;
    let d = decide(&s, &mut memory, o);
    assert_eq!(d.desired, 6);
    assert_eq!(d.limited_by, Some(Limit::UnknownLag));
    let zero = Settings {
        scale_to_zero: true,
        ..settings()
    };
    o.current_replicas = 0;
    let d = decide(&zero, &mut Memory::default(), o);
    assert_eq!(d.desired, 1, "unknown is not zero: keep one worker");
}

#[test]
fn scale_down_waits_for_a_sustained_drop() {
    let s = settings();
    let mut memory = Memory::default();
    let d = decide(&s, &mut memory, obs(0.0, 9_000, 0, 9_000, 0, 1));
    assert_eq!(d.desired, 3);
    // The backlog is gone 15 s later: the 60 s window still remembers it.
    let d = decide(&s, &mut memory, obs(POLL, 0, 0, 9_000, 9_000, 3));
    assert_eq!(d.desired, 3);
    assert_eq!(d.limited_by, Some(Limit::Stabilization));
    let mut d = d;
    let mut t = POLL;
    while t <= 60.0 {
        t += POLL;
        d = decide(&s, &mut memory, obs(t, 0, 0, 9_000, 9_000, d.desired));
    }
    assert_eq!(d.desired, 1, "after the window, down to the minimum");
    assert_eq!(d.direction, Direction::Down);
}

#[test]
fn a_restarted_policy_does_not_scale_down_before_a_window_has_passed() {
    let s = settings();
    let mut memory = Memory::default();
    // Six workers, no backlog: the load alone asks for one.
    let d = decide(&s, &mut memory, obs(1_000.0, 0, 0, 5_000, 5_000, 6));
    assert_eq!(d.desired, 6, "what happened before the restart is unknown");
    assert_eq!(d.limited_by, Some(Limit::Stabilization));
    let d = decide(
        &s,
        &mut memory,
        obs(
            1_000.0 + s.scale_down_window_secs + POLL,
            0,
            0,
            5_000,
            5_000,
            6,
        ),
    );
    assert!(d.desired < 6, "after a full window, down");
}

#[test]
fn steps_and_bounds_are_applied_and_reported() {
    let s = Settings {
        max_scale_up_step: 2,
        max_replicas: 10,
        ..settings()
    };
    let d = decide(
        &s,
        &mut Memory::default(),
        obs(0.0, 90_000, 0, 90_000, 0, 1),
    );
    assert_eq!((d.wanted, d.desired), (30, 3));
    assert_eq!(d.limited_by, Some(Limit::MaxScaleUpStep));
    let s = Settings {
        max_replicas: 10,
        ..settings()
    };
    let d = decide(
        &s,
        &mut Memory::default(),
        obs(0.0, 90_000, 0, 90_000, 0, 1),
    );
    assert_eq!(d.desired, 10);
    assert_eq!(d.limited_by, Some(Limit::MaxReplicas));
    let d = decide(&settings(), &mut Memory::default(), obs(0.0, 0, 0, 0, 0, 1));
    assert_eq!(d.desired, 1);
}

#[test]
fn idle_workers_go_to_zero_and_the_first_entry_wakes_one() {
    let s = Settings {
        scale_to_zero: true,
        idle_seconds: 60.0,
        scale_down_window_secs: 30.0,
        ..settings()
    };
    let mut memory = Memory::default();
    let mut d = decide(&s, &mut memory, obs(0.0, 0, 0, 0, 0, 1));
    assert_eq!(d.desired, 1, "not idle long enough yet");
    let mut t = 0.0;
    while d.desired > 0 {
        t += POLL;
        // Idle for 60 s: zero, with no window on top.
        assert!(t <= 60.0 + POLL, "never scaled to zero");
        d = decide(&s, &mut memory, obs(t, 0, 0, 0, 0, d.desired));
    }
    assert!(
        t >= 60.0,
        "scaled to zero after {t} s, before the idle period"
    );
    // Still nothing: stay at zero.
    t += POLL;
    d = decide(&s, &mut memory, obs(t, 0, 0, 0, 0, 0));
    assert_eq!(d.desired, 0);
    // One entry arrives: one worker at once.
    t += POLL;
    d = decide(&s, &mut memory, obs(t, 1, 0, 1, 0, 0));
    assert_eq!(d.desired, 1);
    assert_eq!(d.direction, Direction::Up);
}

#[test]
fn idle_to_zero_counts_from_the_last_event_not_the_window_too() {
    // The scale-down window (120 s) is longer than the idle time (60 s).
    let s = Settings {
        scale_to_zero: true,
        idle_seconds: 60.0,
        scale_down_window_secs: 120.0,
        ..settings()
    };
    let mut memory = Memory::default();
    let d = decide(&s, &mut memory, obs(0.0, 0, 0, 0, 0, 0));
    assert_eq!(d.desired, 0);
    // One event: one worker at once, which serves it.
    let d = decide(&s, &mut memory, obs(POLL, 1, 0, 1, 0, 0));
    assert_eq!(d.desired, 1);
    let mut t = POLL;
    let mut d = d;
    while d.desired > 0 {
        t += POLL;
        assert!(
            t <= POLL + 60.0 + POLL,
            "still {} worker(s) {} s after the last event: {}",
            d.desired,
            t - POLL,
            d.reason
        );
        // The arrival rate, smoothed, is still above zero: no event is.
        d = decide(&s, &mut memory, obs(t, 0, 0, 1, 1, d.desired));
    }
    assert!(t - POLL >= 60.0, "zero {} s after the last event", t - POLL);
}

#[test]
fn the_activation_threshold_holds_zero_until_exceeded() {
    let s = Settings {
        scale_to_zero: true,
        activation_backlog: 5,
        ..settings()
    };
    let mut memory = Memory::default();
    let d = decide(&s, &mut memory, obs(0.0, 5, 0, 5, 0, 0));
    assert_eq!(d.desired, 0);
    let d = decide(&s, &mut memory, obs(POLL, 6, 0, 6, 0, 0));
    assert_eq!(d.desired, 1);
}

#[test]
fn invalid_settings_name_the_field() {
    let bad = Settings {
        min_replicas: 5,
        max_replicas: 2,
        ..settings()
    };
    assert!(bad.validate().unwrap_err().contains("minReplicas"));
    assert!(settings().validate().is_ok());
    assert!(Settings::default().validate().is_ok());
}

fn arb_settings() -> impl Strategy<Value = Settings> {
    (0u32..4, 1u32..30, 1u32..6, 1u32..6, any::<bool>(), 0u64..3).prop_map(
        |(min, span, up, down, to_zero, activation)| Settings {
            min_replicas: min,
            max_replicas: min.max(1) + span,
            max_scale_up_step: up,
            max_scale_down_step: down,
            scale_to_zero: to_zero,
            activation_backlog: activation,
            ..settings()
        },
    )
}

proptest! {
    #[test]
    fn decisions_stay_within_bounds(
        s in arb_settings(),
        lag in 0u64..1_000_000,
        pending in 0u64..100_000,
        current in 0u32..40,
    ) {
        let d = decide(&s, &mut Memory::default(), obs(0.0, lag, pending, lag, 0, current));
        prop_assert!(d.desired <= s.max_replicas);
        if d.desired == 0 {
            prop_assert!(s.scale_to_zero);
        } else if d.direction != Direction::Down {
            prop_assert!(d.desired >= s.min_replicas.min(current.max(1)) || current == 0);
        }
        if d.direction == Direction::Up {
            prop_assert!(d.desired - current <= s.max_scale_up_step);
        }
    }

    #[test]
    fn more_backlog_never_means_fewer_workers(
        s in arb_settings(),
        lag in 0u64..500_000,
        extra in 0u64..500_000,
        current in 0u32..40,
    ) {
        let small = decide(&s, &mut Memory::default(), obs(0.0, lag, 0, lag, 0, current));
        let large = decide(&s, &mut Memory::default(), obs(0.0, lag + extra, 0, lag + extra, 0, current));
        prop_assert!(large.desired >= small.desired, "{} then {}", small.desired, large.desired);
        prop_assert!(large.wanted >= small.wanted);
    }

    #[test]
    fn no_scale_down_inside_the_window_after_a_scale_up(
        s in arb_settings(),
        lags in proptest::collection::vec(0u64..200_000, 2..40),
    ) {
        let mut memory = Memory::default();
        let mut current = 1;
        let mut last_up: Option<f64> = None;
        let mut added = 0;
        for (i, lag) in lags.into_iter().enumerate() {
            let at = i as f64 * POLL;
            added += lag;
            let d = decide(&s, &mut memory, obs(at, lag, 0, added, added.saturating_sub(lag), current));
            match d.direction {
                Direction::Up => last_up = Some(at),
                Direction::Down => {
                    if let Some(up) = last_up {
                        prop_assert!(at - up > s.scale_down_window_secs, "down at {at} s after up at {up} s");
                    }
                }
                Direction::None => {}
            }
            current = d.desired;
        }
    }
}

#[test]
fn a_scale_down_held_part_way_by_the_window_says_so() {
    let s = settings();
    let mut memory = Memory::default();
    // 15,000 delivered and waiting at t=0: 5 workers.
    let d = decide(&s, &mut memory, obs(0.0, 0, 15_000, 15_000, 15_000, 5));
    assert_eq!(d.desired, 5);
    // 9,000 left at t=40 (3 meet the target, 4 with margin), none at
    // t=70: the 60 s window still holds the 4 of t=40 (and the hold-down
    // after start is over).
    decide(&s, &mut memory, obs(40.0, 0, 9_000, 15_000, 15_000, 5));
    let d = decide(&s, &mut memory, obs(70.0, 0, 0, 15_000, 15_000, 5));
    assert_eq!(d.desired, 4);
    assert_eq!(d.limited_by, Some(Limit::Stabilization));
    assert!(
        d.reason
            .contains("5 -> 4, as far as the stabilization window allows"),
        "{}",
        d.reason
    );
}
