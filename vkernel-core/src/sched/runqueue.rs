//! A per-CPU runqueue: the ordered list of scheduler classes plus the
//! CPU's current task and counters.

use super::class::SchedClass;
use super::task::{Policy, TaskId};

/// One CPU's runqueue.
#[derive(Debug)]
pub struct RunQueue {
    cpu: usize,
    pub(super) classes: Vec<Box<dyn SchedClass>>,
    pub(super) curr: Option<TaskId>,
    pub(super) need_resched: bool,
    pub(super) nr_switches: u64,
    pub(super) clock: u64,
}

impl RunQueue {
    /// A runqueue for `cpu` with `classes` in priority order (the first
    /// class with a runnable task picks).
    pub fn new(cpu: usize, classes: Vec<Box<dyn SchedClass>>) -> Self {
        RunQueue {
            cpu,
            classes,
            curr: None,
            need_resched: false,
            nr_switches: 0,
            clock: 0,
        }
    }

    /// The CPU this runqueue belongs to.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    /// The running task, if any.
    pub fn current(&self) -> Option<TaskId> {
        self.curr
    }

    /// Whether the running task should be switched out at the next
    /// opportunity (call `Scheduler::schedule`).
    pub fn need_resched(&self) -> bool {
        self.need_resched
    }

    /// Number of runnable tasks on this runqueue, the running one included.
    pub fn nr_running(&self) -> usize {
        self.classes.iter().map(|c| c.nr_running()).sum()
    }

    /// Number of context switches: times a different task than the
    /// previous one was picked.
    pub fn nr_switches(&self) -> u64 {
        self.nr_switches
    }

    /// The latest time this runqueue has seen.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// The scheduler classes, in priority order.
    pub fn classes(&self) -> &[Box<dyn SchedClass>] {
        &self.classes
    }

    /// The index of the first class that accepts `policy`.
    pub fn class_index(&self, policy: &Policy) -> Option<usize> {
        self.classes.iter().position(|c| c.handles(policy))
    }

    /// Advances the runqueue clock to `now` (never backwards) and returns
    /// the clock.
    pub(super) fn observe(&mut self, now: u64) -> u64 {
        self.clock = self.clock.max(now);
        for c in &mut self.classes {
            c.update_clock(self.clock);
        }
        self.clock
    }

    /// Whether one of the first `upto` classes has a task it may run now
    /// (runnable and not throttled).
    pub(super) fn pickable(&self, upto: usize) -> bool {
        self.classes
            .iter()
            .take(upto)
            .any(|c| c.nr_running() > 0 && !c.throttled())
    }

    /// Whether real-time (or any other) throttling holds back runnable
    /// tasks of some class on this runqueue.
    pub fn throttled(&self) -> bool {
        self.classes
            .iter()
            .any(|c| c.throttled() && c.nr_running() > 0)
    }

    /// The earliest time a throttled class on this runqueue may run again.
    pub fn unthrottle_at(&self) -> Option<u64> {
        self.classes.iter().filter_map(|c| c.unthrottle_at()).min()
    }
}
