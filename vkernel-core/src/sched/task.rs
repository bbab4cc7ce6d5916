//! Task identity, scheduling policy and the per-task scheduling state.

use std::fmt;

use super::weights::{nice_to_weight, NICE_0_LOAD};

/// Identifies a task (a vproc or thread) to the scheduler. The caller picks
/// the numbers; they must be unique among live tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub u64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}", self.0)
    }
}

/// A user ID; the unit of fairness when uid fairness is on.
pub type Uid = u32;

/// The lowest real-time priority.
pub const MIN_RT_PRIO: u8 = 1;

/// The highest real-time priority.
pub const MAX_RT_PRIO: u8 = 99;

/// A task's scheduling policy, which selects its scheduler class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// SCHED_OTHER/SCHED_NORMAL: the fair class, weighted by nice (-20..=19).
    Fair {
        /// The nice value, -20 (most CPU) ..= 19 (least CPU).
        nice: i8,
    },
    /// SCHED_FIFO: real time, runs until it blocks, yields or is preempted
    /// by a higher priority.
    Fifo {
        /// Real-time priority 1..=99; higher runs first.
        prio: u8,
    },
    /// SCHED_RR: like FIFO, but rotates with its equal-priority peers when
    /// its timeslice is used up.
    RoundRobin {
        /// Real-time priority 1..=99; higher runs first.
        prio: u8,
    },
}

impl Policy {
    /// The fair policy at nice 0.
    pub const NORMAL: Policy = Policy::Fair { nice: 0 };

    /// Whether this is a real-time policy (FIFO or round-robin).
    pub fn is_rt(&self) -> bool {
        !matches!(self, Policy::Fair { .. })
    }

    /// The real-time priority, or `None` for the fair policy.
    pub fn rt_prio(&self) -> Option<u8> {
        match *self {
            Policy::Fair { .. } => None,
            Policy::Fifo { prio } | Policy::RoundRobin { prio } => Some(prio),
        }
    }

    /// The nice value, or `None` for real-time policies.
    pub fn nice(&self) -> Option<i8> {
        match *self {
            Policy::Fair { nice } => Some(nice),
            _ => None,
        }
    }
}

/// Where a task is in its life cycle as far as the scheduler knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// On a runqueue, waiting for a CPU.
    Runnable,
    /// On a runqueue and currently the CPU's running task.
    Running,
    /// Not runnable (blocked or sleeping); not on any runqueue.
    Sleeping,
}

/// A task as the scheduler sees it: identity, policy and accounting.
///
/// The core scheduler owns the tasks and hands them to scheduler classes by
/// `&mut`; classes keep their own per-task fields here (vruntime, weight,
/// time slice). All times are nanoseconds; none are read from a clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The task's id.
    pub id: TaskId,
    /// The owning user; the unit of fairness when uid fairness is on.
    pub uid: Uid,
    /// The scheduling policy; picks the class.
    pub policy: Policy,
    /// The CPU whose runqueue the task is on (or last ran on, if sleeping).
    pub cpu: usize,
    /// Runnable, running or sleeping.
    pub state: TaskState,
    /// Load weight (fair class), from the nice value.
    pub weight: u64,
    /// Virtual runtime (fair class). Absolute on its runqueue while queued
    /// or sleeping; temporarily relative to `min_vruntime` while detached.
    pub vruntime: u64,
    /// Total CPU time the task has consumed.
    pub sum_exec_runtime: u64,
    /// `sum_exec_runtime` when the task was last picked to run.
    pub prev_sum_exec_runtime: u64,
    /// Time stamp up to which the running task's execution is accounted.
    pub exec_start: u64,
    /// Remaining round-robin timeslice (real-time class).
    pub time_slice: u64,
    /// How many times the task was switched onto a CPU.
    pub nr_switches: u64,
    /// The CPUs it may run on, one bit each (`u64::MAX`: any); see
    /// [`super::Scheduler::set_affinity`].
    pub allowed: u64,
}

impl Task {
    /// A new sleeping task; the core scheduler initialises it with its
    /// class's `task_init` and `task_new` before it first runs.
    pub fn new(id: TaskId, policy: Policy, uid: Uid, cpu: usize) -> Self {
        let weight = policy.nice().map_or(NICE_0_LOAD, nice_to_weight);
        Task {
            id,
            uid,
            policy,
            cpu,
            state: TaskState::Sleeping,
            weight,
            vruntime: 0,
            sum_exec_runtime: 0,
            prev_sum_exec_runtime: 0,
            exec_start: 0,
            time_slice: 0,
            nr_switches: 0,
            allowed: u64::MAX,
        }
    }

    /// May the task run on `cpu`?
    pub fn allows(&self, cpu: usize) -> bool {
        cpu >= 64 || self.allowed & (1 << cpu) != 0
    }

    /// Whether the task is on a runqueue (runnable or running).
    pub fn is_queued(&self) -> bool {
        self.state != TaskState::Sleeping
    }

    /// Accounts execution from `exec_start` up to `now`: adds the elapsed
    /// time to `sum_exec_runtime`, moves `exec_start` to `now` and returns
    /// the elapsed time (0 if `now` is not later than `exec_start`).
    pub fn account_exec(&mut self, now: u64) -> u64 {
        let delta = now.saturating_sub(self.exec_start);
        self.exec_start = self.exec_start.max(now);
        self.sum_exec_runtime = self.sum_exec_runtime.saturating_add(delta);
        delta
    }
}
