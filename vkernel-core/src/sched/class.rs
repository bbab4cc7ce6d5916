//! The modular scheduler-class interface.
//!
//! Each CPU's runqueue holds an ordered list of scheduler classes; the
//! first class that has a runnable task picks the next one to run. The
//! methods follow the CFS posting: `enqueue_task`, `dequeue_task`,
//! `requeue_task`, `task_new`, `task_init`, `task_tick`,
//! `check_preempt_curr`, `pick_next_task`, `put_prev_task`,
//! `load_balance_start` and `load_balance_next`, plus `update_curr`,
//! `set_curr_task` and `set_tunables` which the core needs to keep
//! accounting current and to change a running task or a tunable.
//!
//! One class instance belongs to one runqueue, so `&mut self` is the
//! class's part of that runqueue. Tasks are owned by the core scheduler and
//! lent to the class for each call.

use std::fmt;

use super::task::{Policy, Task, TaskId};

/// How a task arrives on a runqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnqueueKind {
    /// A new task, already placed by `task_new`.
    New,
    /// A task waking from sleep; the fair class credits it for the sleep,
    /// at most one latency period.
    Wakeup,
    /// A task that was detached (`DequeueKind::Detach`): migrated from
    /// another CPU, or re-added after a renice or a tunable change. Its
    /// vruntime is relative to the old queue's `min_vruntime`.
    Attach,
}

/// How a task leaves a runqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DequeueKind {
    /// The task blocks, sleeps or exits; its vruntime stays absolute.
    Sleep,
    /// The task is taken off to be re-added (elsewhere, or after a change);
    /// the fair class makes its vruntime relative to `min_vruntime`.
    Detach,
}

/// Scheduler tunables, shared by all runqueues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tunables {
    /// The CFS granularity in nanoseconds: how far past strict fairness the
    /// running fair task may run before a tick preempts it, and how much
    /// fairer a waking task must be to preempt. Low: lower latency, more
    /// context switches; high: fewer switches, better throughput.
    pub granularity_ns: u64,
    /// The latency period in nanoseconds: a waking fair task is credited at
    /// most this much virtual time for its sleep.
    pub latency_ns: u64,
    /// The SCHED_RR timeslice in nanoseconds.
    pub rr_timeslice_ns: u64,
    /// Fairness by user ID first: each uid gets an equal share of a CPU,
    /// then its tasks share that.
    pub uid_fairness: bool,
    /// Real-time throttling period in nanoseconds (Linux's
    /// `sched_rt_period_us`, default 1 s): each CPU's real-time tasks get
    /// at most [`Tunables::rt_runtime_ns`] of CPU time per period.
    pub rt_period_ns: u64,
    /// Real-time runtime per period in nanoseconds (Linux's
    /// `sched_rt_runtime_us`, default 0.95 s), or `None` for no throttling
    /// (Linux's -1). Once a CPU's real-time tasks have used it up they
    /// are throttled, so fair tasks run, until the period refreshes.
    pub rt_runtime_ns: Option<u64>,
}

impl Default for Tunables {
    fn default() -> Self {
        Tunables {
            granularity_ns: 4_000_000,
            latency_ns: 20_000_000,
            rr_timeslice_ns: 100_000_000,
            uid_fairness: false,
            rt_period_ns: 1_000_000_000,
            rt_runtime_ns: Some(950_000_000),
        }
    }
}

impl Tunables {
    /// Checks that the values are usable: the RR timeslice and the
    /// real-time period must be non-zero and the real-time runtime at most
    /// the period (as Linux's sysctls require).
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.rr_timeslice_ns == 0 {
            return Err("rr_timeslice_ns must be non-zero");
        }
        if self.rt_period_ns == 0 {
            return Err("rt_period_ns must be non-zero");
        }
        if self.rt_runtime_ns.is_some_and(|r| r > self.rt_period_ns) {
            return Err("rt_runtime_ns must not exceed rt_period_ns");
        }
        Ok(())
    }
}

/// A scheduler class: one scheduling regime's part of a runqueue.
///
/// Contract with the core scheduler:
/// - a task is enqueued once, when it becomes runnable, and dequeued once,
///   when it stops being runnable; the running task stays enqueued;
/// - `pick_next_task` makes its result the class's current task until
///   `put_prev_task` (or `dequeue_task`) of that task;
/// - before `dequeue_task` with [`DequeueKind::Detach`] of the current task
///   the core calls `put_prev_task`, and after re-enqueueing it calls
///   `set_curr_task`;
/// - `update_curr`, `task_tick` and `check_preempt_curr` get the CPU's
///   running task, which belongs to this class;
/// - `now` never goes backwards on one runqueue.
pub trait SchedClass: fmt::Debug + Send {
    /// A short name for diagnostics ("rt", "fair").
    fn name(&self) -> &'static str;

    /// Whether tasks with this policy belong to this class.
    fn handles(&self, policy: &Policy) -> bool;

    /// Number of this class's tasks on the runqueue, the running one
    /// included.
    fn nr_running(&self) -> usize;

    /// Whether switching to `new` needs the core to detach this class's
    /// tasks before `set_tunables` and re-attach them after.
    fn tunables_need_requeue(&self, _new: &Tunables) -> bool {
        false
    }

    /// Applies new tunables.
    fn set_tunables(&mut self, tunables: &Tunables);

    /// The runqueue's clock advanced to `now` (called at every scheduler
    /// operation on the runqueue, before anything else): the real-time
    /// class refreshes its throttling period here.
    fn update_clock(&mut self, _now: u64) {}

    /// Whether the class's tasks may not run now although runnable (the
    /// real-time class after using up its runtime in this period). A
    /// throttled class picks nothing and preempts nothing.
    fn throttled(&self) -> bool {
        false
    }

    /// When a throttled class may run again (the end of its period), in
    /// the runqueue's clock.
    fn unthrottle_at(&self) -> Option<u64> {
        None
    }

    /// The task becomes runnable on this runqueue.
    fn enqueue_task(&mut self, task: &mut Task, kind: EnqueueKind);

    /// The task stops being runnable on this runqueue.
    fn dequeue_task(&mut self, task: &mut Task, now: u64, kind: DequeueKind);

    /// Puts the task behind all others at its priority (sched_yield).
    fn requeue_task(&mut self, task: &mut Task, now: u64);

    /// A task was created: place it (the fair class puts it at the
    /// runqueue's `min_vruntime`). Called after `task_init`.
    fn task_new(&mut self, task: &mut Task);

    /// (Re)computes priority-derived fields: weight from nice, timeslice.
    /// Called at creation and on renice, while the task is off the queue.
    fn task_init(&mut self, task: &mut Task);

    /// Timer tick for the running task: update accounting and return
    /// whether it should be preempted.
    fn task_tick(&mut self, task: &mut Task, now: u64) -> bool;

    /// Whether the newly runnable `woken` (of this class) should preempt
    /// `curr` (also of this class, the running task).
    fn check_preempt_curr(&mut self, curr: &mut Task, woken: &Task, now: u64) -> bool;

    /// Chooses the next task of this class to run, if any, and makes it
    /// current.
    fn pick_next_task(&mut self) -> Option<TaskId>;

    /// The current task is switched out (it may still be runnable).
    fn put_prev_task(&mut self, task: &mut Task, now: u64);

    /// Makes an enqueued task the current one without a pick (after it was
    /// detached and re-attached while running).
    fn set_curr_task(&mut self, task: &mut Task, now: u64);

    /// Accounts the running task's execution up to `now`.
    fn update_curr(&mut self, task: &mut Task, now: u64);

    /// A sleeping task is about to move from this runqueue to another: make
    /// its class state independent of this runqueue (the fair class makes
    /// its vruntime relative to `min_vruntime`).
    fn migrate_task_from(&mut self, _task: &mut Task) {}

    /// A sleeping task has moved to this runqueue: undo
    /// `migrate_task_from` against this runqueue.
    fn migrate_task_to(&mut self, _task: &mut Task) {}

    /// Starts an iteration over the tasks that could be migrated to
    /// another CPU (enqueued, not running) and returns the first.
    fn load_balance_start(&mut self) -> Option<TaskId>;

    /// The next migratable task of the iteration, or `None` at the end.
    fn load_balance_next(&mut self) -> Option<TaskId>;
}
