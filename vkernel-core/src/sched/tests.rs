//! Unit tests of the scheduler (no KVM).

use super::*;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

fn fair(nice: i8) -> Policy {
    Policy::Fair { nice }
}

/// Ticks every CPU every `tick` ns from `start` for `dur` ns, calling
/// schedule whenever a tick asks for it; returns the end time.
fn simulate(s: &mut Scheduler, start: u64, dur: u64, tick: u64) -> u64 {
    for cpu in 0..s.nr_cpus() {
        if s.current(cpu).is_none() || s.need_resched(cpu) {
            s.schedule(cpu, start).unwrap();
        }
    }
    let mut now = start;
    while now < start + dur {
        now += tick;
        for cpu in 0..s.nr_cpus() {
            if s.tick(cpu, now).unwrap() {
                s.schedule(cpu, now).unwrap();
            }
        }
    }
    for cpu in 0..s.nr_cpus() {
        s.update_accounting(cpu, now).unwrap();
    }
    now
}

#[test]
fn scheduler_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Scheduler>();
}

#[test]
fn lowest_vruntime_runs_first() {
    let mut s = Scheduler::new(1).unwrap();
    s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
    s.add_task(TaskId(2), fair(0), 0, 0, 0).unwrap();
    assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
    assert_eq!(s.task(TaskId(1)).unwrap().state, TaskState::Running);
    // Task 1 ran 10 ms; task 2 (vruntime 0) is now the leftmost.
    assert_eq!(s.schedule(0, 10 * MS).unwrap(), Some(TaskId(2)));
    assert_eq!(s.vruntime(TaskId(1)), Some(10 * MS));
    assert_eq!(s.task(TaskId(1)).unwrap().state, TaskState::Runnable);
    assert_eq!(s.schedule(0, 13 * MS).unwrap(), Some(TaskId(2)));
    assert_eq!(s.schedule(0, 25 * MS).unwrap(), Some(TaskId(1)));
    assert_eq!(s.context_switches(0), 3);
}

/// Tunables without real-time throttling (Linux's `sched_rt_runtime_us`
/// = -1).
fn unthrottled() -> Tunables {
    Tunables {
        rt_runtime_ns: None,
        ..Tunables::default()
    }
}

#[test]
fn rt_runs_before_fair_and_always_preempts_it() {
    let mut s = Scheduler::with_tunables(1, unthrottled()).unwrap();
    assert!(s.add_task(TaskId(1), fair(-20), 0, 0, 0).unwrap());
    assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
    assert!(s
        .add_task(TaskId(2), Policy::Fifo { prio: 1 }, 0, 0, MS)
        .unwrap());
    assert!(s.need_resched(0));
    assert_eq!(s.schedule(0, MS).unwrap(), Some(TaskId(2)));
    // The fair task never runs while the RT task is runnable.
    simulate(&mut s, MS, SEC, MS);
    assert_eq!(s.current(0), Some(TaskId(2)));
    assert_eq!(s.runtime(TaskId(1)), Some(MS));
    // A fair task waking does not preempt RT.
    s.sleep(TaskId(1), SEC + MS).unwrap();
    assert!(!s.wake(TaskId(1), SEC + 2 * MS).unwrap());
    // Once the RT task blocks the fair one runs; RT waking preempts it.
    s.sleep(TaskId(2), SEC + 3 * MS).unwrap();
    assert_eq!(s.schedule(0, SEC + 3 * MS).unwrap(), Some(TaskId(1)));
    assert!(s.wake(TaskId(2), SEC + 4 * MS).unwrap());
    assert_eq!(s.schedule(0, SEC + 4 * MS).unwrap(), Some(TaskId(2)));
}

#[test]
fn higher_rt_priority_first() {
    let mut s = Scheduler::new(1).unwrap();
    s.add_task(TaskId(1), Policy::RoundRobin { prio: 10 }, 0, 0, 0)
        .unwrap();
    s.add_task(TaskId(2), Policy::Fifo { prio: 90 }, 0, 0, 0)
        .unwrap();
    s.add_task(TaskId(3), Policy::Fifo { prio: 50 }, 0, 0, 0)
        .unwrap();
    assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(2)));
    s.sleep(TaskId(2), MS).unwrap();
    assert_eq!(s.schedule(0, MS).unwrap(), Some(TaskId(3)));
    // Lower priority waking does not preempt; higher does.
    assert!(s
        .add_task(TaskId(4), Policy::Fifo { prio: 20 }, 0, 0, 2 * MS)
        .is_ok());
    assert!(!s.need_resched(0));
    assert!(s.wake(TaskId(2), 3 * MS).unwrap());
    assert_eq!(s.schedule(0, 3 * MS).unwrap(), Some(TaskId(2)));
}

#[test]
fn fifo_not_preempted_by_equal_priority() {
    let mut s = Scheduler::with_tunables(1, unthrottled()).unwrap();
    s.add_task(TaskId(1), Policy::Fifo { prio: 10 }, 0, 0, 0)
        .unwrap();
    assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
    assert!(!s
        .add_task(TaskId(2), Policy::Fifo { prio: 10 }, 0, 0, 0)
        .unwrap());
    let end = simulate(&mut s, 0, 2 * SEC, MS);
    assert_eq!(s.current(0), Some(TaskId(1)));
    assert_eq!(s.runtime(TaskId(1)), Some(end));
    assert_eq!(s.runtime(TaskId(2)), Some(0));
    assert_eq!(s.context_switches(0), 1);
}

#[test]
fn round_robin_rotates_after_its_slice() {
    let tun = Tunables {
        rr_timeslice_ns: 100 * MS,
        ..Tunables::default()
    };
    let mut s = Scheduler::with_tunables(1, tun).unwrap();
    s.add_task(TaskId(1), Policy::RoundRobin { prio: 10 }, 0, 0, 0)
        .unwrap();
    s.add_task(TaskId(2), Policy::RoundRobin { prio: 10 }, 0, 0, 0)
        .unwrap();
    assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
    for t in 1..100 {
        assert!(!s.tick(0, t * MS).unwrap(), "tick {t}");
    }
    assert!(s.tick(0, 100 * MS).unwrap());
    assert_eq!(s.schedule(0, 100 * MS).unwrap(), Some(TaskId(2)));
    for t in 101..200 {
        assert!(!s.tick(0, t * MS).unwrap(), "tick {t}");
    }
    assert!(s.tick(0, 200 * MS).unwrap());
    assert_eq!(s.schedule(0, 200 * MS).unwrap(), Some(TaskId(1)));
    assert_eq!(s.runtime(TaskId(1)), Some(100 * MS));
    assert_eq!(s.runtime(TaskId(2)), Some(100 * MS));
    // A lone RR task just gets a new slice.
    s.sleep(TaskId(2), 200 * MS).unwrap();
    for t in 201..=400 {
        assert!(!s.tick(0, t * MS).unwrap());
    }
}

#[test]
fn vruntime_accounting_by_weight() {
    let mut s = Scheduler::new(1).unwrap();
    s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
    s.schedule(0, 0).unwrap();
    s.tick(0, 7 * MS).unwrap();
    assert_eq!(s.runtime(TaskId(1)), Some(7 * MS));
    assert_eq!(s.vruntime(TaskId(1)), Some(7 * MS));
    s.remove_task(TaskId(1), 7 * MS).unwrap();

    let mut s = Scheduler::new(1).unwrap();
    s.add_task(TaskId(2), fair(5), 0, 0, 0).unwrap();
    s.schedule(0, 0).unwrap();
    s.tick(0, 7 * MS).unwrap();
    assert_eq!(s.runtime(TaskId(2)), Some(7 * MS));
    let v = s.vruntime(TaskId(2)).unwrap();
    assert_eq!(v, 7 * MS * 1024 / 335);
    let ratio = v as f64 / (7 * MS) as f64;
    assert!((ratio - 1024.0 / 335.0).abs() < 1e-6);
}

#[test]
fn nice_0_vs_nice_5_runtime_ratio() {
    let mut s = Scheduler::new(1).unwrap();
    s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
    s.add_task(TaskId(2), fair(5), 0, 0, 0).unwrap();
    let end = simulate(&mut s, 0, 10 * SEC, MS);
    let a = s.runtime(TaskId(1)).unwrap();
    let b = s.runtime(TaskId(2)).unwrap();
    assert_eq!(a + b, end);
    let ratio = a as f64 / b as f64;
    let want = 1024.0 / 335.0;
    assert!((ratio - want).abs() / want < 0.02, "ratio {ratio}");
}

fn switches_with_granularity(gran: u64) -> (u64, u64, u64) {
    let tun = Tunables {
        granularity_ns: gran,
        ..Tunables::default()
    };
    let mut s = Scheduler::with_tunables(1, tun).unwrap();
    s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
    s.add_task(TaskId(2), fair(0), 0, 0, 0).unwrap();
    simulate(&mut s, 0, 5 * SEC, MS);
    (
        s.context_switches(0),
        s.runtime(TaskId(1)).unwrap(),
        s.runtime(TaskId(2)).unwrap(),
    )
}

#[test]
fn higher_granularity_fewer_preemptions() {
    let (low, a1, b1) = switches_with_granularity(MS);
    let (high, a2, b2) = switches_with_granularity(20 * MS);
    assert!(low > 3 * high, "low {low} high {high}");
    // Both stay fair over the long run.
    for (a, b) in [(a1, b1), (a2, b2)] {
        let share = a as f64 / (a + b) as f64;
        assert!((share - 0.5).abs() < 0.01, "share {share}");
    }
    // Changing it at runtime takes effect.
    let mut s = Scheduler::new(1).unwrap();
    s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
    s.add_task(TaskId(2), fair(0), 0, 0, 0).unwrap();
    let t = simulate(&mut s, 0, SEC, MS);
    let before = s.context_switches(0);
    s.set_granularity(50 * MS, t).unwrap();
    simulate(&mut s, t, SEC, MS);
    let after = s.context_switches(0) - before;
    assert!(after * 3 < before, "before {before} after {after}");
}

#[test]
fn wakeup_preemption_decisions() {
    let mut s = Scheduler::new(1).unwrap();
    s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
    s.add_task(TaskId(2), fair(0), 0, 0, 0).unwrap();
    assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
    s.sleep(TaskId(2), 0).unwrap();
    s.tick(0, MS).unwrap();
    // Task 2 is only 1 ms behind: within the 4 ms granularity.
    assert!(!s.wake(TaskId(2), MS).unwrap());
    assert!(!s.need_resched(0));
    s.sleep(TaskId(2), MS).unwrap();
    s.tick(0, 100 * MS).unwrap();
    // After a long sleep it is placed one latency period (20 ms) behind.
    assert!(s.wake(TaskId(2), 100 * MS).unwrap());
    assert_eq!(s.vruntime(TaskId(2)), Some(80 * MS));
    assert!(s.need_resched(0));
    assert_eq!(s.schedule(0, 100 * MS).unwrap(), Some(TaskId(2)));
    // A brand-new task starts at min_vruntime, which never goes back
    // (it reached 100 ms while task 1 ran alone): no preemption.
    assert!(!s.add_task(TaskId(3), fair(0), 0, 0, 101 * MS).unwrap());
    assert_eq!(s.vruntime(TaskId(3)), Some(100 * MS));
    // Real time always preempts fair.
    assert!(s
        .add_task(TaskId(4), Policy::RoundRobin { prio: 1 }, 0, 0, 102 * MS)
        .unwrap());
}

fn uid_share(on: bool) -> f64 {
    let tun = Tunables {
        uid_fairness: on,
        ..Tunables::default()
    };
    let mut s = Scheduler::with_tunables(1, tun).unwrap();
    s.add_task(TaskId(1), fair(0), 1000, 0, 0).unwrap();
    for i in 0..9 {
        s.add_task(TaskId(100 + i), fair(0), 2000, 0, 0).unwrap();
    }
    let end = simulate(&mut s, 0, 10 * SEC, MS);
    assert_eq!(s.uid_runtime(1000) + s.uid_runtime(2000), end);
    s.uid_runtime(1000) as f64 / end as f64
}

#[test]
fn uid_fairness_on_and_off() {
    let on = uid_share(true);
    assert!((on - 0.5).abs() < 0.02, "on {on}");
    let off = uid_share(false);
    assert!((off - 0.1).abs() < 0.02, "off {off}");
}

#[test]
fn uid_fairness_switchable_at_runtime() {
    let mut s = Scheduler::new(2).unwrap();
    s.add_task(TaskId(1), fair(0), 1, 0, 0).unwrap();
    for i in 0..9 {
        s.add_task(TaskId(10 + i), fair(0), 2, 0, 0).unwrap();
    }
    // A sleeping task of uid 2 and a second CPU with uid 2 only.
    s.add_task(TaskId(50), fair(0), 2, 0, 0).unwrap();
    s.sleep(TaskId(50), 0).unwrap();
    s.add_task(TaskId(60), fair(0), 2, 1, 0).unwrap();
    let t = simulate(&mut s, 0, 5 * SEC, MS);
    let a0 = s.uid_runtime(1);
    assert!((a0 as f64 / t as f64 - 0.1).abs() < 0.02);
    s.set_uid_fairness(true, t).unwrap();
    assert!(s.tunables().uid_fairness);
    // The running tasks stayed running.
    assert!(s.current(0).is_some() && s.current(1) == Some(TaskId(60)));
    let t2 = simulate(&mut s, t, 5 * SEC, MS);
    let share = (s.uid_runtime(1) - a0) as f64 / (t2 - t) as f64;
    assert!((share - 0.5).abs() < 0.02, "share {share}");
    assert_eq!(s.runtime(TaskId(60)), Some(t2));
    s.wake(TaskId(50), t2).unwrap();
    s.set_uid_fairness(false, t2).unwrap();
    let a2 = s.uid_runtime(1);
    let t3 = simulate(&mut s, t2, 5 * SEC, MS);
    // CPU 0 now has 1 task of uid 1 and 10 of uid 2.
    let share = (s.uid_runtime(1) - a2) as f64 / (t3 - t2) as f64;
    assert!((share - 1.0 / 11.0).abs() < 0.02, "share {share}");
    for cpu in 0..2 {
        assert_eq!(
            s.runqueue(cpu).unwrap().nr_running(),
            s.tasks().filter(|t| t.cpu == cpu && t.is_queued()).count()
        );
    }
}

#[test]
fn load_balance_evens_out_tasks() {
    let mut s = Scheduler::new(2).unwrap();
    for i in 0..8 {
        s.add_task(TaskId(i), fair(0), 0, 0, 0).unwrap();
    }
    s.schedule(0, 0).unwrap();
    assert_eq!(s.nr_running(0), 8);
    assert_eq!(s.nr_running(1), 0);
    assert_eq!(s.load_balance(0), 4);
    assert_eq!(s.nr_running(0), 4);
    assert_eq!(s.nr_running(1), 4);
    assert!(s.need_resched(1));
    assert_eq!(s.load_balance(0), 0);
    // The running task on CPU 0 was not moved.
    let curr = s.current(0).unwrap();
    assert_eq!(s.task(curr).unwrap().cpu, 0);
    let end = simulate(&mut s, 0, 4 * SEC, MS);
    for t in s.tasks() {
        let share = t.sum_exec_runtime as f64 / end as f64;
        assert!((share - 0.25).abs() < 0.01, "{} share {share}", t.id);
    }
    // Uneven again after exits on CPU 1.
    let on1: Vec<TaskId> = s.tasks().filter(|t| t.cpu == 1).map(|t| t.id).collect();
    for id in &on1[..3] {
        s.remove_task(*id, end).unwrap();
    }
    assert_eq!(s.load_balance(end), 1);
    assert_eq!(s.nr_running(0), 3);
    assert_eq!(s.nr_running(1), 2);
}

#[test]
fn migrated_task_keeps_relative_vruntime() {
    let mut s = Scheduler::new(2).unwrap();
    s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
    s.add_task(TaskId(2), fair(0), 0, 0, 0).unwrap();
    s.add_task(TaskId(3), fair(0), 0, 1, 0).unwrap();
    let t = simulate(&mut s, 0, SEC, MS);
    // CPU 1's lone task has a much larger vruntime than CPU 0's pair.
    let v3 = s.vruntime(TaskId(3)).unwrap();
    assert!(v3 > s.vruntime(TaskId(1)).unwrap() + 400 * MS);
    let queued = if s.current(0) == Some(TaskId(1)) {
        TaskId(2)
    } else {
        TaskId(1)
    };
    s.migrate(queued, 1, t).unwrap();
    let v = s.vruntime(queued).unwrap();
    assert!(v + 10 * MS > v3 && v < v3 + 10 * MS, "v {v} v3 {v3}");
    // Migrating the running task flags its old CPU.
    let running = s.current(0).unwrap();
    s.migrate(running, 1, t).unwrap();
    assert!(s.need_resched(0));
    assert_eq!(s.schedule(0, t).unwrap(), None);
    assert_eq!(s.nr_running(1), 3);
}

#[test]
fn sched_yield_requeues_behind_peers() {
    let mut s = Scheduler::new(1).unwrap();
    for i in 1..=3 {
        s.add_task(TaskId(i), fair(0), 0, 0, 0).unwrap();
    }
    assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
    s.yield_now(TaskId(1), 0).unwrap();
    assert!(s.need_resched(0));
    assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(2)));
    s.yield_now(TaskId(2), 0).unwrap();
    assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(3)));
    s.yield_now(TaskId(3), 0).unwrap();
    assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));

    // Real-time: behind equal priority, still ahead of lower priority.
    let mut s = Scheduler::new(1).unwrap();
    s.add_task(TaskId(1), Policy::Fifo { prio: 5 }, 0, 0, 0)
        .unwrap();
    s.add_task(TaskId(2), Policy::Fifo { prio: 5 }, 0, 0, 0)
        .unwrap();
    s.add_task(TaskId(3), Policy::Fifo { prio: 4 }, 0, 0, 0)
        .unwrap();
    assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
    s.yield_now(TaskId(1), MS).unwrap();
    assert_eq!(s.schedule(0, MS).unwrap(), Some(TaskId(2)));
    s.yield_now(TaskId(2), 2 * MS).unwrap();
    assert_eq!(s.schedule(0, 2 * MS).unwrap(), Some(TaskId(1)));
    // A lone task yielding keeps running.
    let mut s = Scheduler::new(1).unwrap();
    s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
    s.schedule(0, 0).unwrap();
    s.yield_now(TaskId(1), 0).unwrap();
    assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
}

#[test]
fn renice_changes_weight_and_share() {
    let mut s = Scheduler::new(1).unwrap();
    s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
    s.add_task(TaskId(2), fair(0), 0, 0, 0).unwrap();
    let t = simulate(&mut s, 0, SEC, MS);
    let (a0, b0) = (s.runtime(TaskId(1)).unwrap(), s.runtime(TaskId(2)).unwrap());
    assert!((a0 as f64 / b0 as f64 - 1.0).abs() < 0.02);
    // Renice both the running and the waiting task.
    s.set_nice(TaskId(1), -5, t).unwrap();
    s.set_nice(TaskId(2), 5, t).unwrap();
    assert_eq!(s.task(TaskId(1)).unwrap().weight, 3121);
    assert_eq!(s.task(TaskId(2)).unwrap().weight, 335);
    assert_eq!(s.task(TaskId(2)).unwrap().policy, fair(5));
    let end = simulate(&mut s, t, 10 * SEC, MS);
    let a = s.runtime(TaskId(1)).unwrap() - a0;
    let b = s.runtime(TaskId(2)).unwrap() - b0;
    assert_eq!(a + b, end - t);
    let ratio = a as f64 / b as f64;
    let want = 3121.0 / 335.0;
    assert!((ratio - want).abs() / want < 0.05, "ratio {ratio}");
    assert_eq!(
        s.set_nice(TaskId(1), 20, end),
        Err(SchedError::InvalidNice(20))
    );
    assert_eq!(s.task(TaskId(1)).unwrap().weight, 3121);
}

#[test]
fn set_policy_moves_between_classes() {
    let mut s = Scheduler::new(1).unwrap();
    s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
    s.add_task(TaskId(2), fair(0), 0, 0, 0).unwrap();
    assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
    // The waiting fair task becomes RT: it preempts.
    s.set_policy(TaskId(2), Policy::Fifo { prio: 3 }, MS)
        .unwrap();
    assert!(s.need_resched(0));
    assert_eq!(s.schedule(0, MS).unwrap(), Some(TaskId(2)));
    // The running RT task becomes fair again: resched, fair order.
    s.set_policy(TaskId(2), fair(0), 2 * MS).unwrap();
    assert!(s.need_resched(0));
    assert_eq!(s.runqueue(0).unwrap().classes()[0].nr_running(), 0);
    assert_eq!(s.runqueue(0).unwrap().classes()[1].nr_running(), 2);
    assert!(s.schedule(0, 2 * MS).unwrap().is_some());
    assert_eq!(
        s.set_nice(TaskId(9), 0, 0),
        Err(SchedError::UnknownTask(TaskId(9)))
    );
}

#[test]
fn sleep_wake_remove_and_errors() {
    assert_eq!(Scheduler::new(0).unwrap_err(), SchedError::NoCpus);
    let bad = Tunables {
        rr_timeslice_ns: 0,
        ..Tunables::default()
    };
    assert!(matches!(
        Scheduler::with_tunables(1, bad),
        Err(SchedError::InvalidTunable(_))
    ));
    let mut s = Scheduler::new(2).unwrap();
    assert_eq!(
        s.add_task(TaskId(1), fair(0), 7, 2, 0),
        Err(SchedError::InvalidCpu { cpu: 2, nr_cpus: 2 })
    );
    assert_eq!(
        s.add_task(TaskId(1), fair(-21), 7, 0, 0),
        Err(SchedError::InvalidNice(-21))
    );
    assert_eq!(
        s.add_task(TaskId(1), Policy::Fifo { prio: 0 }, 7, 0, 0),
        Err(SchedError::InvalidRtPriority(0))
    );
    assert_eq!(
        s.add_task(TaskId(1), Policy::RoundRobin { prio: 100 }, 7, 0, 0),
        Err(SchedError::InvalidRtPriority(100))
    );
    assert!(s.tasks().next().is_none());
    assert!(s.add_task(TaskId(1), fair(0), 7, 0, 0).unwrap());
    assert_eq!(
        s.add_task(TaskId(1), fair(0), 7, 0, 0),
        Err(SchedError::DuplicateTask(TaskId(1)))
    );
    assert_eq!(
        s.wake(TaskId(1), 0),
        Err(SchedError::AlreadyRunnable(TaskId(1)))
    );
    assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
    s.tick(0, 5 * MS).unwrap();
    s.sleep(TaskId(1), 6 * MS).unwrap();
    assert_eq!(
        s.sleep(TaskId(1), 6 * MS),
        Err(SchedError::NotRunnable(TaskId(1)))
    );
    assert_eq!(
        s.yield_now(TaskId(1), 6 * MS),
        Err(SchedError::NotRunnable(TaskId(1)))
    );
    assert_eq!(s.task(TaskId(1)).unwrap().state, TaskState::Sleeping);
    assert_eq!(s.current(0), None);
    assert!(s.need_resched(0));
    assert_eq!(s.schedule(0, 6 * MS).unwrap(), None);
    assert!(!s.tick(0, 7 * MS).unwrap());
    assert_eq!(s.runtime(TaskId(1)), Some(6 * MS));
    // Wake on an idle CPU: it should schedule.
    assert!(s.wake(TaskId(1), 10 * MS).unwrap());
    assert_eq!(s.schedule(0, 10 * MS).unwrap(), Some(TaskId(1)));
    s.remove_task(TaskId(1), 12 * MS).unwrap();
    assert!(s.need_resched(0));
    assert_eq!(s.task(TaskId(1)), None);
    assert_eq!(s.uid_runtime(7), 8 * MS);
    assert_eq!(
        s.remove_task(TaskId(1), 0),
        Err(SchedError::UnknownTask(TaskId(1)))
    );
    assert_eq!(s.schedule(0, 12 * MS).unwrap(), None);
    assert!(s.tick(5, 0).is_err());
    // A clock going backwards is ignored.
    s.add_task(TaskId(2), fair(0), 7, 1, 20 * MS).unwrap();
    s.schedule(1, 20 * MS).unwrap();
    s.tick(1, 10 * MS).unwrap();
    s.tick(1, 25 * MS).unwrap();
    assert_eq!(s.runtime(TaskId(2)), Some(5 * MS));
    // Errors display.
    let e: Box<dyn std::error::Error> = Box::new(SchedError::InvalidNice(30));
    assert_eq!(e.to_string(), "nice 30 is outside -20..=19");
}

// Real-time throttling (sched_rt_period_us / sched_rt_runtime_us).

#[test]
fn rt_throttled_to_95_percent_by_default_then_fair_runs() {
    let mut s = Scheduler::new(1).unwrap();
    assert_eq!(s.tunables().rt_period_ns, SEC);
    assert_eq!(s.tunables().rt_runtime_ns, Some(950 * MS));
    s.add_task(TaskId(1), Policy::Fifo { prio: 10 }, 0, 0, 0)
        .unwrap();
    s.add_task(TaskId(2), Policy::Fifo { prio: 10 }, 0, 0, 0)
        .unwrap();
    s.add_task(TaskId(3), fair(0), 0, 0, 0).unwrap();
    // Up to the runtime the spinners own the CPU.
    let now = simulate(&mut s, 0, 940 * MS, MS);
    assert_eq!(s.current(0), Some(TaskId(1)));
    assert_eq!(s.runtime(TaskId(3)), Some(0));
    assert!(!s.throttled(0));
    // Past it, the RT class is throttled and the fair task runs until the
    // period ends.
    let now = simulate(&mut s, now, 20 * MS, MS);
    assert!(s.throttled(0));
    assert_eq!(s.unthrottle_at(0), Some(SEC));
    assert_eq!(s.current(0), Some(TaskId(3)));
    // The next period gives the CPU back to the head of the FIFO list.
    let now = simulate(&mut s, now, 45 * MS, MS);
    assert_eq!(now, SEC + 5 * MS);
    assert!(!s.throttled(0));
    assert_eq!(s.current(0), Some(TaskId(1)));
    // Over 3 periods: about 5% for the fair task, FIFO order kept (the
    // second spinner of equal priority never runs).
    let end = simulate(&mut s, now, 2 * SEC - 5 * MS, MS);
    assert_eq!(end, 3 * SEC);
    let fair_ns = s.runtime(TaskId(3)).unwrap();
    assert!(
        (140 * MS..=160 * MS).contains(&fair_ns),
        "fair task got {fair_ns} ns of 3 s"
    );
    assert_eq!(s.runtime(TaskId(2)), Some(0));
    assert_eq!(s.runtime(TaskId(1)).unwrap() + fair_ns, 3 * SEC);
}

#[test]
fn rt_runtime_none_never_throttles() {
    let mut s = Scheduler::with_tunables(1, unthrottled()).unwrap();
    s.add_task(TaskId(1), Policy::RoundRobin { prio: 1 }, 0, 0, 0)
        .unwrap();
    s.add_task(TaskId(2), fair(-20), 0, 0, 0).unwrap();
    simulate(&mut s, 0, 5 * SEC, MS);
    assert_eq!(s.runtime(TaskId(2)), Some(0));
    assert!(!s.throttled(0));
    assert_eq!(s.unthrottle_at(0), None);
    // A runtime equal to the period is no throttling either (as on Linux).
    let t = Tunables {
        rt_runtime_ns: Some(SEC),
        ..Tunables::default()
    };
    let mut s = Scheduler::with_tunables(1, t).unwrap();
    s.add_task(TaskId(1), Policy::Fifo { prio: 1 }, 0, 0, 0)
        .unwrap();
    s.add_task(TaskId(2), fair(0), 0, 0, 0).unwrap();
    simulate(&mut s, 0, 3 * SEC, MS);
    assert_eq!(s.runtime(TaskId(2)), Some(0));
}

#[test]
fn throttled_rt_alone_idles_until_the_period_refreshes() {
    let t = Tunables {
        rt_period_ns: 100 * MS,
        rt_runtime_ns: Some(60 * MS),
        ..Tunables::default()
    };
    let mut s = Scheduler::with_tunables(1, t).unwrap();
    s.add_task(TaskId(1), Policy::Fifo { prio: 50 }, 0, 0, 0)
        .unwrap();
    let now = simulate(&mut s, 0, 70 * MS, MS);
    assert_eq!(s.current(0), None);
    assert!(s.throttled(0));
    assert_eq!(s.unthrottle_at(0), Some(100 * MS));
    // An idle tick before the refresh finds nothing to run.
    assert!(!s.tick(0, 90 * MS).unwrap());
    // At the refresh it runs again.
    assert!(s.tick(0, 100 * MS).unwrap());
    assert_eq!(s.schedule(0, 100 * MS).unwrap(), Some(TaskId(1)));
    // Long idle stretches (no clock updates) refresh all elapsed periods.
    let end = simulate(&mut s, now + 30 * MS, 900 * MS, MS);
    assert_eq!(end, SEC);
    let rt = s.runtime(TaskId(1)).unwrap();
    assert!(
        (600 * MS..=620 * MS).contains(&rt),
        "60% of 1 s expected, got {rt} ns"
    );
}

#[test]
fn throttled_rt_wakeups_do_not_preempt_fair_until_the_refresh() {
    let t = Tunables {
        rt_period_ns: 100 * MS,
        rt_runtime_ns: Some(50 * MS),
        ..Tunables::default()
    };
    let mut s = Scheduler::with_tunables(1, t).unwrap();
    s.add_task(TaskId(1), Policy::Fifo { prio: 5 }, 0, 0, 0)
        .unwrap();
    s.add_task(TaskId(2), fair(0), 0, 0, 0).unwrap();
    s.add_task(TaskId(3), Policy::Fifo { prio: 90 }, 0, 0, 0)
        .unwrap();
    s.sleep(TaskId(3), 0).unwrap();
    simulate(&mut s, 0, 60 * MS, MS);
    assert_eq!(s.current(0), Some(TaskId(2)));
    // Even a higher RT priority waits while the CPU's RT class is
    // throttled; a new RT task too.
    assert!(!s.wake(TaskId(3), 61 * MS).unwrap());
    assert!(!s.need_resched(0));
    assert!(!s
        .add_task(TaskId(4), Policy::RoundRobin { prio: 7 }, 0, 0, 62 * MS)
        .unwrap());
    assert!(!s.tick(0, 63 * MS).unwrap());
    // The tick at the period's end preempts the fair task.
    assert!(s.tick(0, 100 * MS).unwrap());
    assert_eq!(s.schedule(0, 100 * MS).unwrap(), Some(TaskId(3)));
}

#[test]
fn rt_throttling_is_per_cpu_and_switchable() {
    let mut s = Scheduler::new(2).unwrap();
    s.add_task(TaskId(1), Policy::Fifo { prio: 1 }, 0, 0, 0)
        .unwrap();
    s.add_task(TaskId(2), fair(0), 0, 0, 0).unwrap();
    s.add_task(TaskId(3), fair(0), 0, 1, 0).unwrap();
    simulate(&mut s, 0, 960 * MS, MS);
    assert!(s.throttled(0));
    assert!(!s.throttled(1));
    assert_eq!(s.current(0), Some(TaskId(2)));
    // Throttling switched off: the RT task may run at once.
    s.set_tunables(unthrottled(), 961 * MS).unwrap();
    assert!(!s.throttled(0));
    assert!(s.tick(0, 962 * MS).unwrap());
    assert_eq!(s.schedule(0, 962 * MS).unwrap(), Some(TaskId(1)));
    simulate(&mut s, 962 * MS, 2 * SEC, MS);
    assert_eq!(s.current(0), Some(TaskId(1)));
    assert!(!s.throttled(0));
}

#[test]
fn rt_throttling_tunables_are_validated() {
    for bad in [
        Tunables {
            rt_period_ns: 0,
            ..Tunables::default()
        },
        Tunables {
            rt_period_ns: SEC,
            rt_runtime_ns: Some(SEC + 1),
            ..Tunables::default()
        },
    ] {
        assert!(matches!(
            Scheduler::with_tunables(1, bad),
            Err(SchedError::InvalidTunable(_))
        ));
    }
    let zero = Tunables {
        rt_runtime_ns: Some(0),
        ..Tunables::default()
    };
    assert!(Scheduler::with_tunables(1, zero).is_ok());
}

#[test]
fn a_long_unaccounted_rt_run_is_charged_to_the_current_period_only() {
    let mut s = Scheduler::new(1).unwrap();
    s.add_task(TaskId(1), Policy::Fifo { prio: 1 }, 0, 0, 0)
        .unwrap();
    assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
    // Alone on its CPU for 10 s without a tick; then a fair task arrives
    // 100 ms into a period: the RT task is not throttled for 10 periods.
    s.add_task(TaskId(2), fair(0), 0, 0, 10 * SEC + 100 * MS)
        .unwrap();
    assert!(!s.throttled(0));
    let rt = &s.runqueue(0).unwrap().classes()[0];
    assert_eq!(rt.name(), "rt");
    // Charged 100 ms for this period already: throttled at 10.95 s.
    simulate(&mut s, 10 * SEC + 100 * MS, 840 * MS, MS);
    assert!(!s.throttled(0));
    simulate(&mut s, 10 * SEC + 940 * MS, 20 * MS, MS);
    assert!(s.throttled(0));
    assert_eq!(s.current(0), Some(TaskId(2)));
    assert_eq!(s.unthrottle_at(0), Some(11 * SEC));
}

#[test]
fn rr_interval_by_policy() {
    let mut s = Scheduler::new(1).unwrap();
    s.add_task(TaskId(1), Policy::RoundRobin { prio: 3 }, 0, 0, 0)
        .unwrap();
    s.add_task(TaskId(2), Policy::Fifo { prio: 3 }, 0, 0, 0)
        .unwrap();
    s.add_task(TaskId(3), fair(0), 0, 0, 0).unwrap();
    assert_eq!(s.rr_interval(TaskId(1)), Some(100 * MS));
    assert_eq!(s.rr_interval(TaskId(2)), Some(0));
    // Alone among fair tasks: the whole latency period.
    assert_eq!(s.rr_interval(TaskId(3)), Some(20 * MS));
    s.add_task(TaskId(4), fair(0), 0, 0, 0).unwrap();
    assert_eq!(s.rr_interval(TaskId(3)), Some(10 * MS));
    assert_eq!(s.rr_interval(TaskId(9)), None);
}

#[test]
fn load_balance_moves_the_task_that_would_run_last() {
    let mut s = Scheduler::new(2).unwrap();
    // A CPU-bound task with a lot of virtual runtime, and two that just
    // arrived (placed at min_vruntime): the CPU-bound one moves, the
    // newcomers stay where they are about to run.
    s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
    s.add_task(TaskId(2), fair(0), 0, 1, 0).unwrap();
    simulate(&mut s, 0, 100 * MS, MS);
    s.add_task(TaskId(3), fair(0), 0, 0, 100 * MS).unwrap();
    s.add_task(TaskId(4), fair(0), 0, 0, 100 * MS).unwrap();
    assert_eq!(s.current(0), Some(TaskId(1)));
    // Task 1 runs on; 3 and 4 wait at min_vruntime. Put 1 back in the
    // queue by a switch to 3.
    s.yield_now(TaskId(1), 101 * MS).unwrap();
    assert_eq!(s.schedule(0, 101 * MS).unwrap(), Some(TaskId(3)));
    assert_eq!(s.nr_running(0), 3);
    assert_eq!(s.load_balance(101 * MS), 1);
    assert_eq!(s.task(TaskId(1)).unwrap().cpu, 1);
    assert_eq!(s.task(TaskId(4)).unwrap().cpu, 0);
}

#[test]
fn affinity_moves_a_task_and_load_balance_keeps_to_it() {
    let mut s = Scheduler::new(2).unwrap();
    for i in 1..=3 {
        s.add_task(TaskId(i), fair(0), 0, 0, 0).unwrap();
        s.wake(TaskId(i), 0).ok();
    }
    // All three may only use CPU 0: nothing moves to the idle CPU 1.
    for i in 1..=3 {
        s.set_affinity(TaskId(i), 0b01, 0).unwrap();
    }
    assert_eq!(s.load_balance(MS), 0);
    assert!((1..=3).all(|i| s.task(TaskId(i)).unwrap().cpu == 0));
    // Task 3 may use CPU 1 too: it is the one that moves.
    s.set_affinity(TaskId(3), 0b11, MS).unwrap();
    assert_eq!(s.load_balance(2 * MS), 1);
    assert_eq!(s.task(TaskId(3)).unwrap().cpu, 1);
    // Restricting a task to a CPU it is not on moves it there.
    s.set_affinity(TaskId(1), 0b10, 3 * MS).unwrap();
    assert_eq!(s.task(TaskId(1)).unwrap().cpu, 1);
    assert_eq!(s.affinity(TaskId(1)), Some(0b10));
    assert_eq!(s.allowed_cpu(TaskId(1), 0), 1);
    // A mask naming no CPU of the scheduler is refused and changes nothing.
    assert_eq!(
        s.set_affinity(TaskId(1), 0b100, 4 * MS),
        Err(SchedError::NoAllowedCpu(0b100))
    );
    assert_eq!(s.affinity(TaskId(1)), Some(0b10));
}
