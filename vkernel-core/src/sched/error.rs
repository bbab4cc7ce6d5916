//! The scheduler's error type.

use std::error::Error;
use std::fmt;

use super::task::TaskId;

/// Why a scheduler operation was refused. A refused operation leaves the
/// scheduler's state unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchedError {
    /// A scheduler needs at least one CPU.
    NoCpus,
    /// The CPU number is not below the number of CPUs.
    InvalidCpu {
        /// The CPU asked for.
        cpu: usize,
        /// How many CPUs the scheduler has.
        nr_cpus: usize,
    },
    /// No live task has this id.
    UnknownTask(TaskId),
    /// A live task already has this id.
    DuplicateTask(TaskId),
    /// The nice value is outside -20..=19.
    InvalidNice(i8),
    /// The real-time priority is outside 1..=99.
    InvalidRtPriority(u8),
    /// No scheduler class accepts the policy.
    NoClassForPolicy,
    /// The operation needs a runnable task but the task is sleeping.
    NotRunnable(TaskId),
    /// The operation needs a sleeping task but the task is runnable.
    AlreadyRunnable(TaskId),
    /// The operation applies to fair-class tasks only.
    NotFair(TaskId),
    /// A tunable has an unusable value.
    InvalidTunable(&'static str),
    /// An affinity mask names none of the scheduler's CPUs.
    NoAllowedCpu(u64),
}

impl fmt::Display for SchedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchedError::NoCpus => write!(f, "a scheduler needs at least one CPU"),
            SchedError::InvalidCpu { cpu, nr_cpus } => {
                write!(f, "CPU {cpu} does not exist (the scheduler has {nr_cpus})")
            }
            SchedError::UnknownTask(id) => write!(f, "{id} is not known to the scheduler"),
            SchedError::DuplicateTask(id) => write!(f, "{id} already exists"),
            SchedError::InvalidNice(n) => write!(f, "nice {n} is outside -20..=19"),
            SchedError::InvalidRtPriority(p) => {
                write!(f, "real-time priority {p} is outside 1..=99")
            }
            SchedError::NoClassForPolicy => write!(f, "no scheduler class accepts the policy"),
            SchedError::NotRunnable(id) => write!(f, "{id} is not runnable"),
            SchedError::AlreadyRunnable(id) => write!(f, "{id} is already runnable"),
            SchedError::NotFair(id) => write!(f, "{id} is not in the fair class"),
            SchedError::InvalidTunable(what) => write!(f, "invalid tunable: {what}"),
            SchedError::NoAllowedCpu(m) => {
                write!(f, "the affinity mask {m:#x} names none of the CPUs")
            }
        }
    }
}

impl Error for SchedError {}
